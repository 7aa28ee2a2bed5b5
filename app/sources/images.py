"""Still images: one file or a folder of them, played as frames (Qt-free)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2
import numpy as np

from loupe.base.text import natural_key  # re-exported: the sources sort by it
from loupe.sources.base import Frame, IndexedSource, SourceError
from loupe.sources.sniff import check_file

logger = logging.getLogger(__name__)

__all__ = ["IMAGE_EXTENSIONS", "ImageSource", "list_images", "natural_key", "read_image"]

#: File name suffixes read as images (lower case, with the dot).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
)

def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder`` (not hidden), in natural order."""
    folder = Path(folder)
    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(files, key=natural_key)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    data = image.astype(np.float32)
    finite = data[np.isfinite(data)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip((np.nan_to_num(data, nan=low) - low) * scale, 0, 255).astype(np.uint8)


def read_image(path: str | Path) -> np.ndarray:
    """Read one image: RGB uint8 ``H x W x 3``, or greyscale ``H x W`` kept as uint8/uint16
    (other greyscale depths become float32). Alpha is dropped; 16-bit colour becomes 8-bit.

    Raises SourceError when the file cannot be read or decoded.
    """
    path = Path(path)
    check_file(path, "image")  # empty, not an image, or a header claiming too many pixels
    try:
        data = np.fromfile(path, dtype=np.uint8)  # works with non-ASCII paths on Windows
    except OSError as exc:
        raise SourceError(f"Cannot read image {path.name}: {exc.strerror or exc}") from exc
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error as exc:  # OpenCV's own guards (e.g. its pixel limit) raise
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "decoder error"
        raise SourceError(f"Cannot read image {path.name}: OpenCV refused it ({reason})") from None
    if image is None:
        raise SourceError(f"Cannot read image {path.name}: not an image or the file is damaged")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 2:  # grey + alpha
        image = image[:, :, 0]
    if image.ndim == 2:
        if image.dtype in (np.uint8, np.uint16, np.float32):
            return np.ascontiguousarray(image)
        return image.astype(np.float32)
    image = _to_uint8(image)
    code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


class ImageSource(IndexedSource):
    """One image file or a folder of images (natural order: ``img2`` before ``img10``).

    Frames: RGB uint8 ``H x W x 3`` or greyscale ``H x W`` (uint8/uint16 kept). There is no
    frame rate (``fps`` is None); the timestamp of a frame is its index, in seconds.
    Metadata of every frame: ``path`` and ``file_name``.

    A file that cannot be read raises SourceError naming it when its turn comes; the
    position has then already moved past it, so iterating again continues with the next file.
    """

    _unit = "image"

    def __init__(self, path: str | Path | Sequence[str | Path]) -> None:
        self._lock = threading.Lock()
        self._index = 0
        self._closed = False
        if isinstance(path, (str, Path)):
            self.path = Path(path)
            self.name = self.path.name or str(self.path)
            self._files = self._collect(self.path)
        else:
            self._files = [Path(p) for p in path]
            if not self._files:
                raise SourceError("No images to show")
            self.path = self._files[0].parent
            self.name = self.path.name or str(self.path)
        self._count = len(self._files)

    @staticmethod
    def _collect(path: Path) -> list[Path]:
        if path.is_dir():
            try:
                files = list_images(path)
            except OSError as exc:
                raise SourceError(f"Cannot list folder {path}: {exc.strerror or exc}") from exc
            if not files:
                extensions = " ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
                raise SourceError(f"No images in folder {path} (looked for: {extensions})")
            return files
        if path.is_file():
            return [path]
        raise SourceError(f"No such file: {path}")

    @property
    def files(self) -> list[Path]:
        """The image files, in playing order."""
        return list(self._files)

    def frame_at(self, index: int) -> Frame:
        """The frame at ``index`` without moving the position."""
        index = self._checked_index(index)
        path = self._files[index]
        try:
            pixels = read_image(path)
        except SourceError as exc:
            logger.info("image %d (%s) unreadable: %s", index, path, exc)  # the error says it
            raise SourceError(f"Image {index + 1} of {len(self._files)}: {exc}") from exc
        return Frame(
            pixels=pixels,
            index=index,
            timestamp=float(index),
            metadata={"path": str(path), "file_name": path.name},
        )

    def __repr__(self) -> str:
        return f"ImageSource({str(self.path)!r}, {len(self._files)} images)"
