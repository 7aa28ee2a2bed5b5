"""DICOM files (single and multi-frame), through pydicom 3 (Qt-free).

Monochrome frames come out as float32 in modality units (rescale slope/intercept applied,
e.g. Hounsfield units for CT; MONOCHROME1 inverted so that bright means high); colour frames
(RGB, YBR_* converted by pydicom, PALETTE COLOR expanded) as RGB uint8 ``H x W x 3``.
Compressed pixel data (JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, HTJ2K, RLE) is
decoded through pydicom's plugins (pylibjpeg-libjpeg, pylibjpeg-openjpeg, pydicom's own RLE);
without one, the error names the transfer syntax and the package to install.

Folders and series (grouping by Series Instance UID, order along the slice normal) live in
``loupe.sources.series``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID

from loupe.base.limits import current as current_limits
from loupe.sources.base import Frame, IndexedSource, SourceError
from loupe.sources.dicom_values import (
    as_float,
    as_floats,
    as_int,
    frame_position,
    frame_total,
    lookup,
    nominal_slice_spacing,
    slice_spacing,
)
from loupe.sources.images import IMAGE_EXTENSIONS, natural_key

logger = logging.getLogger(__name__)
# pydicom logs every frame its decoders refuse, with a traceback, on its own stderr handler (set up
# when pydicom is imported); Loupe reports the reason itself. LOUPE_LOG=DEBUG keeps pydicom's log.
if os.environ.get("LOUPE_LOG", "").upper() != "DEBUG":
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)

__all__ = [
    "DICOM_EXTENSIONS",
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
            from loupe.sources.sniff import describe_content

            what = describe_content(path)
            raise SourceError(f"{name} is not a DICOM file" + (f" (it is {what})" if what else "")) from exc
        return ds
    except PermissionError as exc:
        raise SourceError(f"Cannot read {name}: permission denied") from exc
    except Exception as exc:
        raise SourceError(f"{name} is not a readable DICOM file (damaged?): {exc}") from exc


_ITEM_TAG = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian: the first item of encapsulated data


def pixel_claims_problem(ds: Dataset, uid: UID, frames: int) -> str | None:
    """Why the pixels a dataset's header claims cannot be decoded safely, or None.

    Checked before anything is decoded: the frame size against the pixel limit and the memory
    budget (``loupe.base.limits``), the pixel data against the frame count and transfer syntax (a
    header that claims more frames than the data holds, or a compressed syntax over raw pixels),
    then the frame count against the frames-per-file limit."""
    limits = current_limits()
    rows, cols = as_int(ds.get("Rows")) or 0, as_int(ds.get("Columns")) or 0
    samples = as_int(ds.get("SamplesPerPixel")) or 1
    bits = as_int(ds.get("BitsAllocated")) or 16
    if rows <= 0 or cols <= 0:
        return f"its header gives no usable image size (Rows {rows}, Columns {cols})"
    decoded = max(samples * bits / 8, 3.0 if samples >= 3 else 4.0)  # as stored, or float32 after rescale
    problem = limits.frame_problem(cols, rows, decoded)
    if problem:
        return problem
    if "PixelData" in ds:
        raw = ds.PixelData
        raw = raw if isinstance(raw, (bytes, bytearray)) else b""
        if uid.is_encapsulated:
            if not raw.startswith(_ITEM_TAG):
                return (
                    f"its transfer syntax says {uid.name} (compressed) but its pixel data is not "
                    f"encapsulated: the header does not match the data"
                )
            try:
                fragments = pydicom.encaps.parse_fragments(raw[8 + int.from_bytes(raw[4:8], "little"):])[0]
            except (ValueError, TypeError, IndexError):
                fragments = None
            if fragments is not None and frames > max(fragments, 1):
                return (
                    f"it says it holds {frames} frames but its compressed pixel data holds at most "
                    f"{fragments}: the file is truncated or damaged, or its header is wrong"
                )
        else:
            if raw.startswith(_ITEM_TAG) and uid.is_transfer_syntax:
                return (
                    f"its pixel data is encapsulated (compressed) but its transfer syntax says "
                    f"{uid.name}: the header does not match the data"
                )
            frame_bits = rows * cols * samples * bits
            if str(ds.get("PhotometricInterpretation", "")).upper() == "YBR_FULL_422":
                frame_bits = rows * cols * 2 * bits  # chroma shared by pixel pairs: 2 samples a pixel
            have = (len(raw) * 8) // frame_bits
            if frames > have:
                need = -(-frames * frame_bits // 8)
                return (
                    f"it says it holds {frames} frame{'s' if frames != 1 else ''} but its pixel data "
                    f"holds {have} ({len(raw)} of {need} bytes): the file is truncated or damaged, or "
                    f"its header is wrong"
                )
    return limits.frames_problem(frames)


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


class DicomSource(IndexedSource):
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
    (mm, ``[row, col]``), ``series_uid``, ``series_description``, ``instance``,
    ``slice_position_mm`` (Image Position projected on the slice normal, else Slice
    Location), ``slice_spacing_mm`` (median step between the file's frame positions; for a
    single frame or unknown positions Spacing Between Slices, else Slice Thickness; None
    when all frames lie at one position, i.e. a time series) and ``frames`` (count).
    Enhanced multi-frame files are read through their functional groups.
    """

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
        self._count = frame_total(ds)
        problem = pixel_claims_problem(ds, self._uid, self._count)
        if problem:
            raise SourceError(f"{self.name} is refused: {problem}")
        self._photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
        self._modality = str(ds.get("Modality", "") or "") or None
        self._fps, self._frame_time = self._timing(ds)
        self._positions = [frame_position(ds, i, self._count) for i in range(self._count)]
        self._slice_spacing = slice_spacing(self._positions, nominal_slice_spacing(ds))
        self._default_window: tuple[float, float] | None = None
        first = self._decode(0)
        self._default_window = self._fallback_window(first)
        self._cached: tuple[int, np.ndarray] | None = (0, first)

    # ------------------------------------------------------------------ opening

    def _check_decoder(self) -> None:
        uid = self._uid
        if not uid:
            raise SourceError(f"{self.name} has no transfer syntax: cannot decode its pixels")
        if uid.name == str(uid) or not uid.is_transfer_syntax:
            raise SourceError(
                f"{self.name} has an unknown transfer syntax ({uid}): Loupe cannot tell how its "
                f"pixels are stored"
            )
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
    def _timing(ds: Dataset) -> tuple[float | None, float | None]:
        frame_time = as_float(ds.get("FrameTime"))
        if frame_time and frame_time > 0:
            return 1000.0 / frame_time, frame_time
        for keyword in ("RecommendedDisplayFrameRate", "CineRate"):
            rate = as_float(ds.get(keyword))
            if rate and rate > 0:
                return rate, None
        return None, None

    # ------------------------------------------------------------------ attributes

    @property
    def dataset(self) -> Dataset:
        """The pydicom dataset (header and pixel data)."""
        return self._ds

    @property
    def default_window(self) -> tuple[float, float]:
        """(centre, width) used for frames whose file gives no window."""
        assert self._default_window is not None
        return self._default_window

    @property
    def slice_spacing_mm(self) -> float | None:
        """Distance between the file's frames along the slice normal (see ``_slice_spacing``)."""
        return self._slice_spacing

    def _lookup(self, index: int, sequence: str, keyword: str) -> Any:
        return lookup(self._ds, index, sequence, keyword)

    def _rescale(self, index: int) -> tuple[float, float]:
        slope = as_float(self._lookup(index, "PixelValueTransformationSequence", "RescaleSlope"))
        intercept = as_float(
            self._lookup(index, "PixelValueTransformationSequence", "RescaleIntercept")
        )
        if slope is None:
            scaling = as_float(self._ds.get("DoseGridScaling"))
            if scaling is not None:
                return scaling, 0.0
        return (1.0 if slope is None else slope), (0.0 if intercept is None else intercept)

    @property
    def _uses_modality_lut(self) -> bool:
        return bool(self._ds.get("ModalityLUTSequence"))

    def _nominal_range(self, index: int) -> tuple[float, float]:
        """Lowest and highest value the data can take, in output units."""
        ds = self._ds
        if self._uses_modality_lut:
            depth = as_int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) or 16
            return 0.0, float(2**depth - 1)
        bits = as_int(ds.get("BitsStored")) or as_int(ds.get("BitsAllocated")) or 16
        if as_int(ds.get("PixelRepresentation")) == 1:
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
            if "Unable to decode" in str(exc):  # every decoder plugin refused the data
                lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
                first = f" ({lines[0]})" if lines else ""
                raise SourceError(
                    f"Decoding frame {index} of {self.name} failed: its pixel data is not valid "
                    f"{self._uid.name} data{first}"
                ) from exc
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
                bits = as_int(ds.get("BitsStored")) or 8
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
            center = as_float(self._lookup(index, "FrameVOILUTSequence", "WindowCenter"))
            width = as_float(self._lookup(index, "FrameVOILUTSequence", "WindowWidth"))
            if center is not None and width is not None and width > 0:
                if self._photometric == "MONOCHROME1":
                    low, high = self._nominal_range(index)
                    center = low + high - center
                return center, width, True
        assert self._default_window is not None
        return self._default_window[0], self._default_window[1], False

    def _metadata(self, index: int, pixels: np.ndarray) -> dict[str, Any]:
        ds = self._ds
        is_color = pixels.ndim == 3
        center, width, from_file = self._window(index, is_color)
        if is_color or self._uses_modality_lut:
            slope: float | None = None if self._uses_modality_lut else 1.0
            intercept: float | None = None if self._uses_modality_lut else 0.0
        else:
            slope, intercept = self._rescale(index)
        spacing = as_floats(self._lookup(index, "PixelMeasuresSequence", "PixelSpacing"), 2)
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
            "series_description": str(ds.get("SeriesDescription", "") or "") or None,
            "instance": as_int(ds.get("InstanceNumber")),
            "slice_position_mm": self._positions[index],
            "slice_spacing_mm": self._slice_spacing,
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
        index = self._checked_index(index)
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

    def _release(self) -> None:
        self._cached = None

    def __repr__(self) -> str:
        return f"DicomSource({str(self.path)!r}, {self._count} frames)"

