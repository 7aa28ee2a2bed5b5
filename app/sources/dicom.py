"""DICOM files (single and multi-frame) and folders of them, through pydicom 3 (Qt-free).

Monochrome frames come out as float32 in modality units (rescale slope/intercept applied,
e.g. Hounsfield units for CT; MONOCHROME1 inverted so that bright means high); colour frames
(RGB, YBR_* converted by pydicom, PALETTE COLOR expanded) as RGB uint8 ``H x W x 3``.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import operator
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pydicom
from loupe.sources._reader import FrameIterator
from loupe.sources.base import Frame, SourceError
from loupe.sources.images import IMAGE_EXTENSIONS, natural_key
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID

logger = logging.getLogger(__name__)

__all__ = [
    "DICOM_EXTENSIONS",
    "DicomFolderSource",
    "DicomSource",
    "decoder_hint",
    "is_dicom_file",
    "list_dicom_files",
]

#: File name suffixes taken as DICOM without looking inside (lower case, with the dot).
DICOM_EXTENSIONS: frozenset[str] = frozenset({".dcm", ".dicom", ".dic"})

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

# Transfer syntax UID -> (recommended package, alternatives) for compressed pixel data.
_LIBJPEG = ("pylibjpeg-libjpeg", ("pillow", "python-gdcm"))
_LIBJPEG_LS = ("pylibjpeg-libjpeg", ("pyjpegls", "python-gdcm"))
_OPENJPEG = ("pylibjpeg-openjpeg", ("pillow", "python-gdcm"))
_DECODER_PACKAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "1.2.840.10008.1.2.4.50": _LIBJPEG,  # JPEG Baseline 8-bit
    "1.2.840.10008.1.2.4.51": _LIBJPEG,  # JPEG Extended 12-bit
    "1.2.840.10008.1.2.4.57": ("pylibjpeg-libjpeg", ("python-gdcm",)),  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": ("pylibjpeg-libjpeg", ("python-gdcm",)),  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": _LIBJPEG_LS,  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": _LIBJPEG_LS,  # JPEG-LS Near Lossless
    "1.2.840.10008.1.2.4.90": _OPENJPEG,  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": _OPENJPEG,  # JPEG 2000
    "1.2.840.10008.1.2.4.201": ("pylibjpeg-openjpeg", ()),  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202": ("pylibjpeg-openjpeg", ()),  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203": ("pylibjpeg-openjpeg", ()),  # HTJ2K
    "1.2.840.10008.1.2.5": ("pylibjpeg-rle", ()),  # RLE Lossless
}

# CT default window when the file has none: soft tissue.
_CT_WINDOW = (40.0, 400.0)


# ---------------------------------------------------------------------------- helpers


def decoder_hint(uid: str) -> str:
    """What to install to decode pixel data in transfer syntax ``uid``."""
    package, alternatives = _DECODER_PACKAGES.get(str(uid), ("pylibjpeg-libjpeg", ()))
    hint = f"install {package} (pip install pylibjpeg {package})"
    if alternatives:
        hint += f" or {' or '.join(alternatives)}"
    return hint


def _missing_decoder_message(name: str, uid: UID) -> str:
    return f"Cannot decode {name}: {uid.name} ({uid}): {decoder_hint(uid)}"


def is_dicom_file(path: str | Path) -> bool:
    """True when the file starts with the DICOM preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def list_dicom_files(folder: str | Path) -> list[Path]:
    """DICOM files directly inside ``folder``, in natural name order.

    A file counts when its suffix is a DICOM one or, for other non-image files, when it
    carries the DICOM preamble (exports often have no suffix). ``DICOMDIR`` is skipped.
    """
    found = []
    for path in Path(folder).iterdir():
        if path.name.startswith(".") or path.name.upper() == "DICOMDIR" or not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix in DICOM_EXTENSIONS or (
            suffix not in IMAGE_EXTENSIONS and suffix != ".onnx" and is_dicom_file(path)
        ):
            found.append(path)
    return sorted(found, key=natural_key)


@contextlib.contextmanager
def _pydicom_warnings_logged() -> Iterator[None]:
    """pydicom warns about every oddity in a file; log those instead of warning the user."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for item in caught:
        logger.debug("pydicom: %s", item.message)


def _first(value: Any) -> Any:
    if value is None or isinstance(value, (str, bytes)):
        return value
    try:
        return value[0] if len(value) else None
    except TypeError:
        return value


def _float(value: Any) -> float | None:
    value = _first(value)
    if value is None or value == "":
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if np.isfinite(result) else None


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


def _floats(value: Any, count: int) -> list[float] | None:
    if value is None:
        return None
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count else None


def _read_dataset(path: Path, *, header_only: bool = False) -> Dataset:
    """dcmread with user-facing errors; accepts preamble-less files that hold an image."""
    name = path.name
    if not path.exists():
        raise SourceError(f"No such file: {path}")
    if path.is_dir():
        raise SourceError(f"{path} is a folder, not a DICOM file")
    try:
        with _pydicom_warnings_logged():
            return pydicom.dcmread(path, stop_before_pixels=header_only)
    except InvalidDicomError as exc:
        # Old files without the preamble: accept only if they parse into an image.
        ds = _read_forced(path, header_only)
        if ds is None:
            raise SourceError(f"{name} is not a DICOM file") from exc
        return ds
    except PermissionError as exc:
        raise SourceError(f"Cannot read {name}: permission denied") from exc
    except Exception as exc:
        raise SourceError(f"{name} is not a readable DICOM file (damaged?): {exc}") from exc


def _no_image_message(name: str, ds: Dataset) -> str:
    kind = ds.get("Modality") or getattr(ds.get("SOPClassUID"), "name", None)
    what = f" (it is a {kind} object)" if kind else ""
    return f"{name} holds no image: it has no pixel data{what}"


def _read_forced(path: Path, header_only: bool) -> Dataset | None:
    """Read a DICOM file that lacks the preamble; None unless it parses into DICOM."""
    try:
        with _pydicom_warnings_logged():
            ds = pydicom.dcmread(path, stop_before_pixels=header_only, force=True)
            is_image = "Rows" in ds and "Columns" in ds and "BitsAllocated" in ds
            if is_image:
                _set_transfer_syntax(ds)
                return ds
            is_dicom = "SOPClassUID" in ds and "Modality" in ds
    except Exception:
        logger.debug("forced read of %s failed", path, exc_info=True)
        return None
    if is_dicom:
        raise SourceError(_no_image_message(path.name, ds))
    return None


def _set_transfer_syntax(ds: Dataset) -> None:
    meta = ds.file_meta
    if meta.get("TransferSyntaxUID"):
        return
    implicit, little = ds.original_encoding
    if implicit:
        meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    elif little is False:
        meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
    else:
        meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian


# ---------------------------------------------------------------------------- one file


class DicomSource:
    """The frames of one DICOM file (single or multi-frame).

    Frames: float32 ``H x W`` for monochrome data in modality units (rescale applied; for
    RTDOSE the dose grid scaling); RGB uint8 ``H x W x 3`` for colour. MONOCHROME1 is
    inverted (and its window mirrored) so that high values are bright.

    Timestamps: ``index * FrameTime / 1000`` when the file has a Frame Time, else
    ``index / rate`` for a Cine Rate or Recommended Display Frame Rate, else the index.

    Metadata of every frame (None where the file does not say): ``path``, ``modality``,
    ``photometric`` (as stored), ``inverted``, ``transfer_syntax`` (UID),
    ``transfer_syntax_name``, ``window_center``, ``window_width`` (from the file; if absent
    CT gets 40/400 and other data the full range of the first frame; colour 127.5/255),
    ``window_from_file``, ``rescale_slope``, ``rescale_intercept``, ``pixel_spacing``
    (mm, ``[row, col]``), ``series_uid``, ``instance``, ``slice_position_mm`` (Image
    Position projected on the slice normal, else Slice Location) and ``frames`` (count).
    Enhanced multi-frame files are read through their functional groups.
    """

    live: bool = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self._lock = threading.RLock()
        self._index = 0
        self._closed = False
        with _pydicom_warnings_logged():
            self._open()

    def _open(self) -> None:
        ds = _read_dataset(self.path)
        if not any(k in ds for k in _PIXEL_KEYWORDS):
            if "Rows" in ds:
                raise SourceError(
                    f"{self.name} is damaged or truncated: it describes an image but its "
                    f"pixel data is missing"
                )
            raise SourceError(_no_image_message(self.name, ds))
        self._ds = ds
        self._uid = UID(str(ds.file_meta.get("TransferSyntaxUID") or ""))
        self._check_decoder()
        self._count = self._frame_total(ds)
        self._photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
        self._modality = str(ds.get("Modality", "") or "") or None
        self._fps, self._frame_time = self._timing(ds)
        self._default_window: tuple[float, float] | None = None
        first = self._decode(0)
        self._default_window = self._fallback_window(first)
        self._cached: tuple[int, np.ndarray] | None = (0, first)

    # ------------------------------------------------------------------ opening

    def _check_decoder(self) -> None:
        uid = self._uid
        if not uid:
            raise SourceError(f"{self.name} has no transfer syntax: cannot decode its pixels")
        try:
            decoder = get_decoder(uid)
        except NotImplementedError as exc:
            raise SourceError(
                f"Cannot decode {self.name}: {uid.name} ({uid}) pixel data is not supported "
                f"by pydicom"
            ) from exc
        if not decoder.is_available:
            raise SourceError(_missing_decoder_message(self.name, uid))

    @staticmethod
    def _frame_total(ds: Dataset) -> int:
        count = _int(ds.get("NumberOfFrames"))
        return count if count and count > 0 else 1

    @staticmethod
    def _timing(ds: Dataset) -> tuple[float | None, float | None]:
        frame_time = _float(ds.get("FrameTime"))
        if frame_time and frame_time > 0:
            return 1000.0 / frame_time, frame_time
        for keyword in ("RecommendedDisplayFrameRate", "CineRate"):
            rate = _float(ds.get(keyword))
            if rate and rate > 0:
                return rate, None
        return None, None

    # ------------------------------------------------------------------ attributes

    @property
    def dataset(self) -> Dataset:
        """The pydicom dataset (header and pixel data)."""
        return self._ds

    @property
    def frame_count(self) -> int | None:
        return self._count

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def position(self) -> int:
        """Index of the frame the next read returns."""
        return self._index

    def _lookup(self, index: int, sequence: str, keyword: str) -> Any:
        """A value from the per-frame, then shared functional groups, then the top level."""
        ds = self._ds
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

    def _rescale(self, index: int) -> tuple[float, float]:
        slope = _float(self._lookup(index, "PixelValueTransformationSequence", "RescaleSlope"))
        intercept = _float(
            self._lookup(index, "PixelValueTransformationSequence", "RescaleIntercept")
        )
        if slope is None:
            scaling = _float(self._ds.get("DoseGridScaling"))
            if scaling is not None:
                return scaling, 0.0
        return (1.0 if slope is None else slope), (0.0 if intercept is None else intercept)

    @property
    def _is_color(self) -> bool:
        samples = _int(self._ds.get("SamplesPerPixel")) or 1
        return samples >= 3 or self._photometric == "PALETTE COLOR"

    @property
    def _uses_modality_lut(self) -> bool:
        return bool(self._ds.get("ModalityLUTSequence"))

    def _nominal_range(self, index: int) -> tuple[float, float]:
        """Lowest and highest value the data can take, in output units."""
        ds = self._ds
        if self._uses_modality_lut:
            depth = _int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) or 16
            return 0.0, float(2**depth - 1)
        bits = _int(ds.get("BitsStored")) or _int(ds.get("BitsAllocated")) or 16
        if _int(ds.get("PixelRepresentation")) == 1:
            low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        else:
            low, high = 0, 2**bits - 1
        slope, intercept = self._rescale(index)
        ends = sorted((low * slope + intercept, high * slope + intercept))
        return float(ends[0]), float(ends[1])

    # ------------------------------------------------------------------ decoding

    def _decode(self, index: int) -> np.ndarray:
        try:
            raw = pixel_array(self._ds, index=index)
            return self._convert(raw, index)
        except SourceError:
            raise
        except RuntimeError as exc:
            if "missing dependencies" in str(exc):
                raise SourceError(_missing_decoder_message(self.name, self._uid)) from exc
            raise SourceError(
                f"Decoding frame {index} of {self.name} failed ({self._uid.name}): {exc}"
            ) from exc
        except Exception as exc:
            logger.warning("decoding frame %d of %s failed", index, self.name, exc_info=True)
            raise SourceError(
                f"Decoding frame {index} of {self.name} failed (damaged file?): {exc}"
            ) from exc

    def _convert(self, raw: np.ndarray, index: int) -> np.ndarray:
        ds = self._ds
        if self._photometric == "PALETTE COLOR":
            rgb = apply_color_lut(raw, ds)
            return self._color_to_uint8(rgb, 16 if rgb.dtype != np.uint8 else 8)
        if raw.ndim == 3:
            if raw.shape[2] == 1:
                raw = raw[:, :, 0]
            else:
                bits = _int(ds.get("BitsStored")) or 8
                return self._color_to_uint8(raw[:, :, :3], bits)
        if self._uses_modality_lut:
            data = apply_modality_lut(raw, ds).astype(np.float32)
        else:
            slope, intercept = self._rescale(index)
            data = raw.astype(np.float32)
            if slope != 1.0:
                data *= np.float32(slope)
            if intercept != 0.0:
                data += np.float32(intercept)
        if self._photometric == "MONOCHROME1":
            low, high = self._nominal_range(index)
            data = np.float32(low + high) - data
        return np.ascontiguousarray(data)

    @staticmethod
    def _color_to_uint8(rgb: np.ndarray, bits: int) -> np.ndarray:
        if rgb.dtype == np.uint8:
            return np.ascontiguousarray(rgb)
        if np.issubdtype(rgb.dtype, np.integer) and bits <= 8:
            return np.clip(rgb, 0, 255).astype(np.uint8)
        top = float(2**bits - 1) if np.issubdtype(rgb.dtype, np.integer) else float(rgb.max() or 1)
        scaled = rgb.astype(np.float32) * np.float32(255.0 / top)
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)

    def _fallback_window(self, first: np.ndarray) -> tuple[float, float]:
        if first.ndim == 3:
            return 127.5, 255.0
        if (self._modality or "").upper() == "CT":
            return _CT_WINDOW
        finite = first[np.isfinite(first)]
        if not finite.size:
            return 0.5, 1.0
        low, high = float(finite.min()), float(finite.max())
        return (low + high) / 2.0, (high - low) if high > low else 1.0

    def _window(self, index: int, is_color: bool) -> tuple[float, float, bool]:
        if not is_color:
            center = _float(self._lookup(index, "FrameVOILUTSequence", "WindowCenter"))
            width = _float(self._lookup(index, "FrameVOILUTSequence", "WindowWidth"))
            if center is not None and width is not None and width > 0:
                if self._photometric == "MONOCHROME1":
                    low, high = self._nominal_range(index)
                    center = low + high - center
                return center, width, True
        assert self._default_window is not None
        return self._default_window[0], self._default_window[1], False

    def _slice_position(self, index: int) -> float | None:
        ds = self._ds
        position = _floats(self._lookup(index, "PlanePositionSequence", "ImagePositionPatient"), 3)
        orientation = _floats(
            self._lookup(index, "PlaneOrientationSequence", "ImageOrientationPatient"), 6
        )
        if position is not None and orientation is not None:
            normal = np.cross(orientation[:3], orientation[3:])
            if np.linalg.norm(normal) > 0:
                value = float(np.dot(position, normal) / np.linalg.norm(normal))
                offsets = ds.get("GridFrameOffsetVector")
                per_frame = ds.get("PerFrameFunctionalGroupsSequence")
                if offsets is not None and not per_frame and len(offsets) == self._count:
                    value += float(offsets[index]) - float(offsets[0])
                return value
        return _float(ds.get("SliceLocation"))

    def _metadata(self, index: int, pixels: np.ndarray) -> dict[str, Any]:
        ds = self._ds
        is_color = pixels.ndim == 3
        center, width, from_file = self._window(index, is_color)
        if is_color or self._uses_modality_lut:
            slope: float | None = None if self._uses_modality_lut else 1.0
            intercept: float | None = None if self._uses_modality_lut else 0.0
        else:
            slope, intercept = self._rescale(index)
        spacing = _floats(self._lookup(index, "PixelMeasuresSequence", "PixelSpacing"), 2)
        series = ds.get("SeriesInstanceUID")
        return {
            "path": str(self.path),
            "modality": self._modality,
            "photometric": self._photometric or None,
            "inverted": self._photometric == "MONOCHROME1",
            "transfer_syntax": str(self._uid),
            "transfer_syntax_name": self._uid.name,
            "window_center": float(center),
            "window_width": float(width),
            "window_from_file": from_file,
            "rescale_slope": slope,
            "rescale_intercept": intercept,
            "pixel_spacing": spacing,
            "series_uid": str(series) if series else None,
            "instance": _int(ds.get("InstanceNumber")),
            "slice_position_mm": self._slice_position(index),
            "frames": self._count,
        }

    def _timestamp(self, index: int) -> float:
        if self._frame_time:
            return index * self._frame_time / 1000.0
        if self._fps:
            return index / self._fps
        return float(index)

    # ------------------------------------------------------------------ Source protocol

    def frame_at(self, index: int) -> Frame:
        """Frame ``index`` without moving the position."""
        index = operator.index(index)
        if not 0 <= index < self._count:
            raise SourceError(f"{self.name} has no frame {index} (it has {self._count})")
        with self._lock, _pydicom_warnings_logged():
            if self._cached is not None and self._cached[0] == index:
                pixels = self._cached[1]
            else:
                pixels = self._decode(index)
                self._cached = (index, pixels)
            metadata = self._metadata(index, pixels)
        return Frame(
            pixels=pixels, index=index, timestamp=self._timestamp(index), metadata=metadata
        )

    def read(self) -> Frame | None:
        """The next frame, or None after the last one (or once closed)."""
        with self._lock:
            if self._closed or self._index >= self._count:
                return None
            index = self._index
            self._index += 1
            return self.frame_at(index)

    def __iter__(self) -> Iterator[Frame]:
        return FrameIterator(self.read)

    def seek(self, index: int) -> None:
        index = operator.index(index)
        if not 0 <= index <= self._count:
            raise SourceError(
                f"Cannot seek {self.name} to frame {index}: it has {self._count} frames"
            )
        with self._lock:
            self._index = index

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cached = None

    def __enter__(self) -> DicomSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DicomSource({str(self.path)!r}, {self._count} frames)"


# ---------------------------------------------------------------------------- folders


class _Entry:
    __slots__ = ("frames", "instance", "path", "position", "series", "series_number")

    def __init__(self, path: Path, ds: Dataset) -> None:
        self.path = path
        series = ds.get("SeriesInstanceUID")
        self.series = str(series) if series else ""
        self.series_number = _int(ds.get("SeriesNumber"))
        self.instance = _int(ds.get("InstanceNumber"))
        self.frames = DicomSource._frame_total(ds)
        position = _floats(ds.get("ImagePositionPatient"), 3)
        orientation = _floats(ds.get("ImageOrientationPatient"), 6)
        self.position: float | None = None
        if position is not None and orientation is not None:
            normal = np.cross(orientation[:3], orientation[3:])
            norm = float(np.linalg.norm(normal))
            if norm > 0:
                self.position = float(np.dot(position, normal) / norm)
        if self.position is None:
            self.position = _float(ds.get("SliceLocation"))

    def key(self) -> tuple[Any, ...]:
        return (
            self.position is None,
            self.position or 0.0,
            self.instance is None,
            self.instance or 0,
            natural_key(self.path),
        )


class DicomFolderSource:
    """All DICOM images in a folder, played file after file.

    Files are grouped by series (ordered by Series Number, then UID) and, within a series,
    sorted by slice position (mm along the slice normal), then Instance Number, then
    file name. Multi-frame files contribute all their frames. Files without an image
    (structured reports, RT structure sets, DICOMDIR) or that cannot be read are skipped
    (logged). Frames and their metadata are those of ``DicomSource``, with ``index`` and
    ``timestamp`` (= index, seconds) counted over the whole folder and extra metadata
    ``file_index`` (position of the file in the play order) and ``frame_in_file``.
    """

    live: bool = False

    def __init__(self, folder: str | Path, files: Sequence[str | Path] | None = None) -> None:
        self.path = Path(folder)
        self.name = self.path.name or str(self.path)
        self._lock = threading.RLock()
        self._index = 0
        self._closed = False
        self._current: DicomSource | None = None
        self._current_file = -1
        if files is None:
            if not self.path.is_dir():
                raise SourceError(f"No such folder: {self.path}")
            files = list_dicom_files(self.path)
        entries = []
        skipped = 0
        for file in files:
            file = Path(file)
            try:
                ds = _read_dataset(file, header_only=True)
            except SourceError as exc:
                logger.warning("skipping %s: %s", file, exc)
                skipped += 1
                continue
            if "Rows" not in ds:
                logger.info("skipping %s: no image", file)
                skipped += 1
                continue
            with _pydicom_warnings_logged():
                entries.append(_Entry(file, ds))
        if not entries:
            why = f" ({skipped} DICOM files without a readable image)" if skipped else ""
            raise SourceError(f"No DICOM images in folder {self.path}{why}")
        series_order: dict[str, tuple[Any, ...]] = {}
        for entry in entries:
            rank = (entry.series_number is None, entry.series_number or 0, entry.series)
            series_order[entry.series] = min(series_order.get(entry.series, rank), rank)
        entries.sort(key=lambda e: (series_order[e.series], e.key()))
        self._entries = entries
        self._starts: list[int] = []
        total = 0
        for entry in entries:
            self._starts.append(total)
            total += entry.frames
        self._count = total

    @property
    def files(self) -> list[Path]:
        """The DICOM files, in playing order."""
        return [entry.path for entry in self._entries]

    @property
    def frame_count(self) -> int | None:
        return self._count

    @property
    def fps(self) -> float | None:
        return None

    @property
    def position(self) -> int:
        """Index of the frame the next read returns."""
        return self._index

    def _source_for(self, file_index: int) -> DicomSource:
        if self._current is None or self._current_file != file_index:
            if self._current is not None:
                self._current.close()
                self._current = None
            self._current = DicomSource(self._entries[file_index].path)
            self._current_file = file_index
        return self._current

    def frame_at(self, index: int) -> Frame:
        """Frame ``index`` (over the whole folder) without moving the position."""
        index = operator.index(index)
        if not 0 <= index < self._count:
            raise SourceError(f"{self.name} has no frame {index} (it has {self._count})")
        with self._lock:
            file_index = bisect.bisect_right(self._starts, index) - 1
            local = index - self._starts[file_index]
            try:
                frame = self._source_for(file_index).frame_at(local)
            except SourceError as exc:
                name = self._entries[file_index].path.name
                raise SourceError(f"Frame {index} of {self.name} ({name}): {exc}") from exc
        metadata = dict(frame.metadata, file_index=file_index, frame_in_file=local)
        return Frame(pixels=frame.pixels, index=index, timestamp=float(index), metadata=metadata)

    def read(self) -> Frame | None:
        """The next frame, or None after the last one (or once closed)."""
        with self._lock:
            if self._closed or self._index >= self._count:
                return None
            index = self._index
            self._index += 1
            return self.frame_at(index)

    def __iter__(self) -> Iterator[Frame]:
        return FrameIterator(self.read)

    def seek(self, index: int) -> None:
        index = operator.index(index)
        if not 0 <= index <= self._count:
            raise SourceError(
                f"Cannot seek {self.name} to frame {index}: it has {self._count} frames"
            )
        with self._lock:
            self._index = index

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._current is not None:
                self._current.close()
                self._current = None
                self._current_file = -1

    def __enter__(self) -> DicomFolderSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DicomFolderSource({str(self.path)!r}, {len(self._entries)} files)"
