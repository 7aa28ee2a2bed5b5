"""DICOM series: files grouped by Series Instance UID and played as one stack (Qt-free).

``scan_series(folder or files)`` reads headers only (``stop_before_pixels``; results are
cached per file by modification time and size, so scanning a folder again is cheap) and
returns one ``SeriesInfo`` per series. Within a series, files are ordered by the position of
their first frame along the slice normal (Image Position (Patient) projected on the cross
product of the Image Orientation (Patient) row and column cosines; the normal of the series'
first oriented file is used for every file); when any file lacks a position, by Instance
Number, then by file name. Frames of a multi-frame file (enhanced CT/MR, ultrasound cine)
stay in their stored order. Series are ordered by Series Number, then UID.

``DicomSeriesSource(info)`` plays a series as frames; ``DicomFolderSource(folder)`` opens a
folder's first series (or the one asked for) and lists them all in ``.series`` for a
picker; ``open_series(folder, uid)`` opens one. A series is also named by the string
``"<folder>#<series uid>"`` (``series_spec``), which ``open_source`` and ``loupe analyze``
accept.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from loupe.base.limits import current as current_limits
from loupe.sources.base import Frame, IndexedSource, SourceError
from loupe.sources.dicom import (
    DicomSource,
    _pydicom_warnings_logged,
    _read_dataset,
    list_dicom_files,
)
from loupe.sources.dicom_values import (
    as_float,
    as_int,
    frame_offset,
    frame_plane,
    frame_total,
    nominal_slice_spacing,
    slice_normal,
    slice_spacing,
)
from loupe.sources.images import natural_key

logger = logging.getLogger(__name__)

__all__ = [
    "SERIES_SEPARATOR",
    "DicomFolderSource",
    "DicomSeriesSource",
    "SeriesInfo",
    "open_series",
    "parse_series_spec",
    "scan_series",
    "series_spec",
]

#: Separates the folder from the Series Instance UID in a series spec (``folder#uid``).
SERIES_SEPARATOR = "#"


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series as found by ``scan_series`` (headers only).

    uid: Series Instance UID ("" for files that have none); description: Series
    Description ("" when absent); modality; number: Series Number; files: the files in
    playing order; frames_per_file: frame count of each file; positions: slice position of
    every frame in playing order (mm along the series' slice normal; None where unknown);
    slice_spacing_mm: distance between consecutive slices (median step of ``positions``, or
    Spacing Between Slices / Slice Thickness for a single slice or unknown positions; None
    for frames all at one position); folder: the folder scanned (None for a list of files).
    """

    uid: str
    description: str
    modality: str | None
    number: int | None
    files: tuple[Path, ...]
    frames_per_file: tuple[int, ...]
    positions: tuple[float | None, ...]
    slice_spacing_mm: float | None
    folder: Path | None = None
    #: why the files cannot play as one stack (sizes or orientations differ); None when they can
    problem: str | None = None

    @property
    def file_count(self) -> int:
        return len(self.files)

    @property
    def frame_count(self) -> int:
        return sum(self.frames_per_file)

    @property
    def label(self) -> str:
        """A short line for a series picker, e.g. ``3: Axial 2.5 mm (CT, 120 images)``."""
        name = self.description or (self.uid[-12:] if self.uid else "no series UID")
        head = f"{self.number}: {name}" if self.number is not None else name
        count = self.frame_count
        noun = "image" if count == 1 else "images"
        kind = f"{self.modality}, " if self.modality else ""
        return f"{head} ({kind}{count} {noun})"

    @property
    def spec(self) -> str | None:
        """``"<folder>#<uid>"`` (see ``open_source``); None without a folder."""
        return series_spec(self.folder, self.uid) if self.folder is not None else None


def series_spec(folder: str | Path, uid: str) -> str:
    """The string naming series ``uid`` of ``folder``: ``"<folder>#<uid>"``."""
    return f"{folder}{SERIES_SEPARATOR}{uid}"


def parse_series_spec(spec: str | Path) -> tuple[Path, str] | None:
    """``(folder, uid)`` for a ``"<folder>#<uid>"`` spec whose folder exists; else None.

    A path that exists as such (a file or folder with ``#`` in its name) is not a spec.
    """
    text = str(spec)
    if SERIES_SEPARATOR not in text or Path(text).exists():
        return None
    folder, uid = text.rsplit(SERIES_SEPARATOR, 1)
    if not folder or "/" in uid or "\\" in uid or not Path(folder).is_dir():
        return None
    return Path(folder), uid.strip()


# ---------------------------------------------------------------------------- headers


class _Header:
    """What scanning needs from one file's header (no pixel data kept)."""

    __slots__ = (
        "description",
        "frames",
        "instance",
        "modality",
        "nominal_spacing",
        "number",
        "offsets",
        "orientation",
        "path",
        "positions",
        "series",
        "size",
        "slice_location",
    )

    def __init__(self, path: Path, ds: Dataset) -> None:
        self.path = path
        series = ds.get("SeriesInstanceUID")
        self.series = str(series).strip() if series else ""
        self.number = as_int(ds.get("SeriesNumber"))
        self.description = str(ds.get("SeriesDescription", "") or "").strip()
        self.modality = str(ds.get("Modality", "") or "").strip() or None
        self.instance = as_int(ds.get("InstanceNumber"))
        self.frames = frame_total(ds)
        planes = [frame_plane(ds, i) for i in range(self.frames)]
        self.positions = [position for position, _ in planes]
        self.orientation = next((o for _, o in planes if o is not None), None)
        self.offsets = [frame_offset(ds, i, self.frames) for i in range(self.frames)]
        self.slice_location = as_float(ds.get("SliceLocation"))
        self.nominal_spacing = nominal_slice_spacing(ds)
        self.size = (as_int(ds.get("Columns")), as_int(ds.get("Rows")))

    def frame_positions(self, normal: np.ndarray | None) -> list[float | None]:
        """Every frame's position along ``normal`` (mm); Slice Location as a fallback."""
        out: list[float | None] = []
        for position, offset in zip(self.positions, self.offsets, strict=True):
            if position is not None and normal is not None:
                out.append(float(np.dot(position, normal)) + offset)
            elif self.frames == 1:
                out.append(self.slice_location)
            else:
                out.append(None)
        return out


_CACHE_LIMIT = 50_000
_cache: dict[str, tuple[tuple[int, int], _Header | str]] = {}
_cache_lock = threading.Lock()


def _header(path: Path) -> _Header | str:
    """The header facts of ``path``, or why it was skipped (cached by mtime and size)."""
    try:
        stat = path.stat()
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    key = str(path.absolute())
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    result: _Header | str
    try:
        ds = _read_dataset(path, header_only=True)
    except SourceError as exc:
        result = str(exc)
    else:
        if "Rows" not in ds:
            result = "it holds no image"
        elif (too_many := current_limits().frames_problem(frame_total(ds))) is not None:
            result = too_many
        else:
            with _pydicom_warnings_logged():
                try:
                    result = _Header(path, ds)
                except Exception as exc:  # a damaged header: skip the file, keep the rest
                    logger.debug("header of %s unusable", path, exc_info=True)
                    result = f"its header cannot be used: {exc}"
    with _cache_lock:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[key] = (stamp, result)
    return result


def _order_series(uid: str, headers: list[_Header], folder: Path | None) -> SeriesInfo:
    headers = sorted(headers, key=lambda h: natural_key(h.path))
    normal = next((n for h in headers if (n := slice_normal(h.orientation)) is not None), None)
    positions = {id(h): h.frame_positions(normal) for h in headers}
    if all(positions[id(h)][0] is not None for h in headers):

        def key(h: _Header) -> tuple[Any, ...]:
            first = positions[id(h)][0]
            return (first, h.instance is None, h.instance or 0, natural_key(h.path))

    else:

        def key(h: _Header) -> tuple[Any, ...]:
            return (h.instance is None, h.instance or 0, natural_key(h.path))

    headers.sort(key=key)
    ordered = [p for h in headers for p in positions[id(h)]]
    first = headers[0]
    problem = _geometry_problem(headers)
    if problem:
        logger.info("series %s: %s", uid, problem)
    return SeriesInfo(
        uid=uid,
        description=next((h.description for h in headers if h.description), ""),
        modality=next((h.modality for h in headers if h.modality), None),
        number=next((h.number for h in headers if h.number is not None), None),
        files=tuple(h.path for h in headers),
        frames_per_file=tuple(h.frames for h in headers),
        positions=tuple(ordered),
        slice_spacing_mm=slice_spacing(ordered, first.nominal_spacing),
        folder=folder,
        problem=problem,
    )


def _geometry_problem(headers: Sequence[_Header]) -> str | None:
    """Why a series' files do not form one stack: different frame sizes, or image planes that
    are not parallel (orientation cosines differing by more than 0.01); None when they do."""
    sizes: dict[tuple[int | None, int | None], Path] = {}
    for h in headers:
        sizes.setdefault(h.size, h.path)
    if len(sizes) > 1:
        shown = ", ".join(f"{w} x {hh} in {p.name}" for (w, hh), p in list(sizes.items())[:3])
        return f"the series is inconsistent: its slices are not all the same size ({shown}); Loupe plays a series as one stack"
    oriented = [h for h in headers if h.orientation is not None]
    if oriented:
        ref = np.asarray(oriented[0].orientation, float)
        for h in oriented[1:]:
            if float(np.max(np.abs(np.asarray(h.orientation, float) - ref))) > 0.01:
                return (
                    f"the series is inconsistent: the orientation of {h.path.name} "
                    f"({', '.join(f'{v:g}' for v in h.orientation)}) differs from that of "
                    f"{oriented[0].path.name} ({', '.join(f'{v:g}' for v in ref)}); Loupe plays a series as one stack"
                )
    return None


def _scan(
    source: str | Path | Iterable[str | Path],
) -> tuple[list[SeriesInfo], int, Path | None]:
    """Series found in ``source``, how many DICOM files were skipped, the folder (if one)."""
    folder: Path | None = None
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            folder = path
            try:
                files = list_dicom_files(path)
            except OSError as exc:
                raise SourceError(f"Cannot list folder {path}: {exc.strerror or exc}") from exc
        elif path.exists():
            files = [path]
        else:
            raise SourceError(f"No such file or folder: {path}")
    else:
        files = [Path(f) for f in source]
    groups: dict[str, list[_Header]] = {}
    skipped = 0
    for file in files:
        header = _header(file)
        if isinstance(header, str):
            logger.info("skipping %s: %s", file, header)
            skipped += 1
            continue
        groups.setdefault(header.series, []).append(header)
    series = [_order_series(uid, headers, folder) for uid, headers in groups.items()]
    series.sort(key=lambda s: (s.number is None, s.number or 0, s.uid))
    return series, skipped, folder


def scan_series(source: str | Path | Iterable[str | Path]) -> list[SeriesInfo]:
    """The DICOM series in a folder (its direct DICOM files) or in a list of files.

    Reads headers only. Files that are not DICOM images (structured reports, RT plans,
    damaged files) are skipped (logged). Returns an empty list when no image is found;
    raises SourceError when ``source`` names nothing that exists.
    """
    return _scan(source)[0]


# ---------------------------------------------------------------------------- sources


class DicomSeriesSource(IndexedSource):
    """The frames of one DICOM series, file after file in ``SeriesInfo`` order.

    Frames and their metadata are those of ``DicomSource`` (float32 modality units or RGB
    uint8), with ``index`` counted over the series and these keys set for the series:
    ``series_uid``, ``series_description``, ``series_number``, ``slice_position_mm`` (mm
    along the series' slice normal, as used for sorting), ``slice_spacing_mm`` (the series'
    slice spacing), ``file_index`` (position of the file in playing order),
    ``frame_in_file`` and ``series_frames`` (frames in the series). Frames whose file has no
    window share one series window (that of the middle file), so scrolling does not
    re-level. A series of one file keeps that file's timing (e.g. ultrasound cine Frame
    Time); otherwise ``timestamp`` is the frame index and ``fps`` is None.

    ``series`` lists the series offered with this one (all of a folder's for
    ``DicomFolderSource``; just this one otherwise); ``info`` is the one playing.
    """

    def __init__(self, series: SeriesInfo, all_series: Sequence[SeriesInfo] | None = None) -> None:
        if not series.files:
            raise SourceError("The DICOM series holds no files")
        if series.problem:
            where = series.folder.name if series.folder is not None else series.files[0].name
            raise SourceError(f"{where} [{series.label}]: {series.problem}")
        self.info = series
        self.series: list[SeriesInfo] = list(all_series) if all_series else [series]
        if series not in self.series:
            self.series.insert(0, series)
        self.path = series.folder if series.folder is not None else series.files[0]
        base = self.path.name or str(self.path)
        self.name = f"{base} [{series.description}]" if series.description else base
        self._lock = threading.RLock()
        self._index = 0
        self._closed = False
        self._current: DicomSource | None = None
        self._current_file = -1
        self._window: tuple[float, float] | None = None
        self._starts: list[int] = []
        total = 0
        for count in series.frames_per_file:
            self._starts.append(total)
            total += count
        self._count = total
        first = self._source_for(0)  # fail early (e.g. a missing decoder), not mid-play
        # One (multi-frame) file keeps its own timing; a stack of files has none.
        self._fps: float | None = first.fps if len(series.files) == 1 else None

    # ------------------------------------------------------------------ attributes

    @property
    def files(self) -> list[Path]:
        """The series' files, in playing order."""
        return list(self.info.files)

    # ------------------------------------------------------------------ reading

    def _source_for(self, file_index: int) -> DicomSource:
        if self._current is None or self._current_file != file_index:
            if self._current is not None:
                self._current.close()
                self._current = None
            self._current = DicomSource(self.info.files[file_index])
            self._current_file = file_index
        return self._current

    def _series_window(self) -> tuple[float, float]:
        """The fallback window of the middle file, shared by the whole series."""
        if self._window is None:
            middle = self.info.files[len(self.info.files) // 2]
            try:
                with DicomSource(middle) as source:
                    self._window = source.default_window
            except SourceError:
                logger.debug("no series window from %s", middle, exc_info=True)
                self._window = (0.0, 0.0)  # unusable: keep each file's own
        return self._window

    def frame_at(self, index: int) -> Frame:
        """Frame ``index`` (over the whole series) without moving the position."""
        index = self._checked_index(index)
        with self._lock:
            file_index = bisect.bisect_right(self._starts, index) - 1
            local = index - self._starts[file_index]
            try:
                frame = self._source_for(file_index).frame_at(local)
            except SourceError as exc:
                name = self.info.files[file_index].name
                raise SourceError(f"Frame {index} of {self.name} ({name}): {exc}") from exc
            metadata = dict(frame.metadata)
            single = len(self.info.files) == 1
            if frame.pixels.ndim == 2 and not metadata.get("window_from_file") and not single:
                center, width = self._series_window()
                if width > 0:
                    metadata["window_center"], metadata["window_width"] = center, width
        position = self.info.positions[index]
        info = self.info
        metadata.update(
            series_uid=info.uid or None,
            series_description=info.description or None,
            series_number=info.number,
            slice_position_mm=metadata.get("slice_position_mm") if position is None else position,
            slice_spacing_mm=info.slice_spacing_mm,
            file_index=file_index,
            frame_in_file=local,
            series_frames=self._count,
        )
        timestamp = frame.timestamp if single else float(index)
        return Frame(pixels=frame.pixels, index=index, timestamp=timestamp, metadata=metadata)

    def _release(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
            self._current_file = -1

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, series {self.info.uid!r}, "
            f"{len(self.info.files)} files, {self._count} frames)"
        )


class DicomFolderSource(DicomSeriesSource):
    """A folder of DICOM files: plays one series (the first, or ``series_uid``).

    ``series`` lists every series in the folder (for a picker; open another with
    ``open_series(folder, uid)``). ``files`` limits the scan to those files (default: the
    folder's DICOM files). Files without an image are skipped (logged).
    """

    def __init__(
        self,
        folder: str | Path,
        files: Sequence[str | Path] | None = None,
        series_uid: str | None = None,
    ) -> None:
        folder = Path(folder)
        if files is None and not folder.is_dir():
            raise SourceError(f"No such folder: {folder}")
        found, skipped, _ = _scan(folder if files is None else files)
        if not found:
            why = f" ({skipped} DICOM files without a readable image)" if skipped else ""
            raise SourceError(f"No DICOM images in folder {folder}{why}")
        found = [s if s.folder == folder else replace(s, folder=folder) for s in found]
        chosen = found[0]
        if series_uid is not None:
            matches = [s for s in found if s.uid == series_uid]
            if not matches:
                raise SourceError(
                    f"No series {series_uid or '(without UID)'} in folder {folder} "
                    f"(it has {len(found)}: {', '.join(s.label for s in found)})"
                )
            chosen = matches[0]
        super().__init__(chosen, found)
        base = folder.name or str(folder)
        self.name = f"{base} [{chosen.label}]" if len(found) > 1 else base


def open_series(folder: str | Path, uid: str) -> DicomFolderSource:
    """Series ``uid`` of ``folder`` (with every series of the folder in ``.series``)."""
    return DicomFolderSource(folder, series_uid=uid)
