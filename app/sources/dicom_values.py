"""Values from a DICOM header (Qt-free): numbers that tolerate odd data, a value for one frame
of an enhanced multi-frame file (its functional groups), and slice geometry (position along
the slice normal, spacing between slices). Used by ``loupe.sources.dicom`` and ``.series``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset


def first_value(value: Any) -> Any:
    """The first item of a multi-valued element (a string or bytes counts as one value)."""
    if value is None or isinstance(value, (str, bytes)):
        return value
    try:
        return value[0] if len(value) else None
    except TypeError:
        return value


def as_float(value: Any) -> float | None:
    """A finite float from an element's (first) value, or None when it is missing or odd."""
    value = first_value(value)
    if value is None or value == "":
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if np.isfinite(result) else None


def as_int(value: Any) -> int | None:
    number = as_float(value)
    return int(number) if number is not None else None


def as_floats(value: Any, count: int) -> list[float] | None:
    """``count`` floats from a multi-valued element, or None."""
    if value is None:
        return None
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count else None


def lookup(ds: Dataset, index: int, sequence: str, keyword: str) -> Any:
    """A value for frame ``index`` from the per-frame, then the shared functional groups
    (enhanced multi-frame files), then the top level of the dataset."""
    groups = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and index < len(per_frame):
        groups.append(per_frame[index])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        items = group.get(sequence)
        if items:
            value = items[0].get(keyword)
            if value is not None and value != "":
                return value
    return ds.get(keyword)


def frame_total(ds: Dataset) -> int:
    count = as_int(ds.get("NumberOfFrames"))
    return count if count and count > 0 else 1


def frame_plane(ds: Dataset, index: int) -> tuple[list[float] | None, list[float] | None]:
    """Image Position (Patient) and Image Orientation (Patient) of frame ``index``."""
    position = as_floats(lookup(ds, index, "PlanePositionSequence", "ImagePositionPatient"), 3)
    orientation = as_floats(
        lookup(ds, index, "PlaneOrientationSequence", "ImageOrientationPatient"), 6
    )
    return position, orientation


def slice_normal(orientation: Sequence[float] | None) -> np.ndarray | None:
    """Unit normal of the image plane: row cosines x column cosines; None if degenerate."""
    if orientation is None:
        return None
    normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float))
    norm = float(np.linalg.norm(normal))
    return normal / norm if norm > 1e-6 else None


def frame_offset(ds: Dataset, index: int, count: int) -> float:
    """Extra distance along the normal from a Grid Frame Offset Vector (RT dose, old NM)."""
    offsets = ds.get("GridFrameOffsetVector")
    if offsets is None or ds.get("PerFrameFunctionalGroupsSequence") or len(offsets) != count:
        return 0.0
    try:
        return float(offsets[index]) - float(offsets[0])
    except (TypeError, ValueError):
        return 0.0


def frame_position(
    ds: Dataset, index: int, count: int, normal: np.ndarray | None = None
) -> float | None:
    """Slice position of frame ``index`` in mm: its Image Position projected on ``normal``
    (default: the frame's own plane normal); else the Slice Location; else None."""
    position, orientation = frame_plane(ds, index)
    if normal is None:
        normal = slice_normal(orientation)
    if position is not None and normal is not None:
        return float(np.dot(position, normal)) + frame_offset(ds, index, count)
    return as_float(ds.get("SliceLocation"))


def nominal_slice_spacing(ds: Dataset) -> float | None:
    """Spacing Between Slices, else Slice Thickness (mm), when positive."""
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = as_float(lookup(ds, 0, "PixelMeasuresSequence", keyword))
        if value is not None and value > 0:
            return value
    return None


def slice_spacing(positions: Sequence[float | None], nominal: float | None) -> float | None:
    """Distance between consecutive slices (mm) for frames at ``positions`` (play order).

    Several frames with known positions: the median of the non-zero steps between
    consecutive positions; all at one position (a time series, not a volume): None. One
    frame, or positions unknown: ``nominal`` (Spacing Between Slices / Slice Thickness).
    """
    if len(positions) < 2 or any(p is None for p in positions):
        return nominal
    steps = np.abs(np.diff(np.asarray(positions, float)))
    steps = steps[steps > 1e-4]
    return round(float(np.median(steps)), 6) if steps.size else None
