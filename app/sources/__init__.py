"""Qt-free frame sources: camera, video file, images and folders, DICOM.

``Frame``, ``Source`` and ``SourceError`` are imported eagerly; the concrete sources (which
pull in PyAV, OpenCV and pydicom) load on first use, e.g. ``loupe.sources.open_source``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from loupe.sources.base import Frame, Source, SourceError

_LAZY = {
    "CameraSource": "loupe.sources.camera",
    "list_cameras": "loupe.sources.camera",
    "DicomFolderSource": "loupe.sources.series",
    "DicomSeriesSource": "loupe.sources.series",
    "scan_series": "loupe.sources.series",
    "open_series": "loupe.sources.series",
    "DicomSource": "loupe.sources.dicom",
    "ImageSource": "loupe.sources.images",
    "VideoSource": "loupe.sources.video",
    "classify_path": "loupe.sources.open",
    "open_source": "loupe.sources.open",
}

__all__ = ["Frame", "Source", "SourceError", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
