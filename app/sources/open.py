"""Pick the right source for what the user gave: a camera, a file or a folder (Qt-free)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from loupe.sources.base import Source, SourceError, unexpected_error
from loupe.sources.camera import CameraSource
from loupe.sources.dicom import (
    DICOM_EXTENSIONS,
    DicomSource,
    is_dicom_file,
    list_dicom_files,
)
from loupe.sources.images import IMAGE_EXTENSIONS, ImageSource, list_images
from loupe.sources.series import DicomFolderSource, open_series, parse_series_spec
from loupe.sources.video import VideoSource

logger = logging.getLogger(__name__)

__all__ = [
    "MODEL_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "classify_path",
    "folder_dicom_files",
    "open_source",
    "parse_camera",
]

#: Suffixes taken as video without looking inside (anything FFmpeg reads also works).
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".flv", ".mpg", ".mpeg",
        ".m2v", ".ts", ".mts", ".m2ts", ".3gp", ".ogv", ".gif", ".y4m", ".mxf", ".h264",
        ".h265", ".hevc", ".ivf", ".nut",
    }
)  # fmt: skip
MODEL_EXTENSIONS: frozenset[str] = frozenset({".onnx"})

_CAMERA = re.compile(r"(?:camera|cam):\s*(\d+)|(\d+)", re.IGNORECASE)


def parse_camera(spec: str | int) -> int | None:
    """The camera index in ``"camera:N"``, ``"cam:N"``, ``"N"`` or an int; None otherwise."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        return spec if spec >= 0 else None
    match = _CAMERA.fullmatch(str(spec).strip())
    if not match:
        return None
    return int(match.group(1) or match.group(2))


def classify_path(path: str | Path) -> str:
    """What a dropped path is: ``'video'``, ``'image'``, ``'folder'``, ``'dicom'``,
    ``'model'`` (an .onnx file) or ``'unknown'``.

    Decided by the suffix; a file with another suffix (or none) is ``'dicom'`` when it
    carries the DICOM preamble. A path that does not exist is classified by its suffix.
    """
    path = Path(path)
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in MODEL_EXTENSIONS:
        return "model"
    if suffix in DICOM_EXTENSIONS:
        return "dicom"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if path.is_file() and is_dicom_file(path):
        return "dicom"
    return "unknown"


def folder_dicom_files(folder: str | Path) -> list[Path] | None:
    """The DICOM files of ``folder`` when it is a DICOM folder (it holds at least as many
    DICOM files as images, and some), else None. Raises SourceError if it cannot be listed."""
    folder = Path(folder)
    try:
        images = list_images(folder)
        dicoms = list_dicom_files(folder)
    except OSError as exc:
        raise SourceError(f"Cannot list folder {folder}: {exc.strerror or exc}") from exc
    return dicoms if dicoms and len(dicoms) >= len(images) else None


def _open_folder(folder: Path) -> Source:
    dicoms = folder_dicom_files(folder)
    if dicoms is not None:
        logger.info("opening %s as a DICOM folder (%d files)", folder, len(dicoms))
        return DicomFolderSource(folder, dicoms)
    if list_images(folder):
        return ImageSource(folder)
    raise SourceError(f"No images or DICOM files in folder {folder}")


def open_source(spec: str | Path | int) -> Source:
    """Open what ``spec`` names.

    * ``"camera:N"``, ``"N"`` or an int: camera N (``CameraSource``);
    * a folder: a ``DicomFolderSource`` when it holds at least as many DICOM files as
      images (it plays the first series and lists them all in ``.series``), else an
      ``ImageSource`` of its images;
    * ``"<folder>#<series uid>"``: that series of the folder (``open_series``);
    * a file: DICOM (``DICM`` preamble or a .dcm suffix) -> ``DicomSource``; an image
      suffix -> ``ImageSource``; anything else -> ``VideoSource`` (FFmpeg decides).

    Raises SourceError with a message for the user when nothing can be opened; an exception
    no source foresaw (a library's API change, a decoder bug) becomes one too, naming the file
    (its traceback goes to the log).
    """
    try:
        return _open_source(spec)
    except SourceError:
        raise
    except Exception as exc:
        name = Path(str(spec).strip()).name or str(spec)
        raise unexpected_error(exc, f"Cannot open {name}") from exc


def _open_source(spec: str | Path | int) -> Source:
    if not isinstance(spec, Path):
        camera = parse_camera(spec)
        if camera is not None:
            return CameraSource(camera)
    path = Path(str(spec).strip()).expanduser()
    if not path.exists():
        series = parse_series_spec(path)
        if series is not None:
            return open_series(*series)
        raise SourceError(f"No such file: {path}")
    if path.is_dir():
        return _open_folder(path)
    kind = classify_path(path)
    if kind == "model":
        raise SourceError(
            f"{path.name} is an ONNX model, not something to look at: load it as the model"
        )
    if kind == "dicom" or is_dicom_file(path):
        return DicomSource(path)
    if kind == "image":
        return ImageSource(path)
    return VideoSource(path)
