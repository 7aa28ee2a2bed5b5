"""Live cameras through OpenCV's ``cv2.VideoCapture`` (Qt-free)."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

# OpenCV prints a warning for every camera index it fails to open; keep probing quiet
# unless the user asked for more.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2
import numpy as np

from loupe.sources.base import Frame, ReaderSource, SourceError

logger = logging.getLogger(__name__)

__all__ = ["CameraSource", "list_cameras"]


def _quiet_opencv_logging() -> None:
    """The env variable only works before cv2's first import (the app may import it
    earlier); apply the same level at run time unless the user chose another one."""
    if os.environ.get("OPENCV_LOG_LEVEL", "").upper() != "ERROR":
        return
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except Exception:  # pragma: no cover - older or stripped OpenCV builds
        logger.debug("could not lower OpenCV's log level", exc_info=True)


_quiet_opencv_logging()


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """BGR / BGRA / greyscale camera image -> RGB uint8 H x W x 3 (greyscale kept H x W)."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class CameraSource(ReaderSource):
    """Frames from a local camera; ``live`` (the newest frame wins), no frame count.

    Frames are RGB uint8 ``H x W x 3``. Timestamps are seconds since the camera was opened,
    taken with ``time.monotonic()`` right after each frame was grabbed. Metadata of every
    frame: ``device`` (index) and ``capture_time`` (the raw ``time.monotonic()`` value).

    ``width``, ``height`` and ``fps`` are requests to the driver; the camera may pick the
    nearest mode it supports. A camera whose reads fail ``max_failures`` times in a row
    (unplugged, taken by another program) raises SourceError. Iteration ends quietly once
    ``close()`` has been called (also from another thread). ``seek`` does nothing.
    """

    live: bool = True

    def __init__(
        self,
        device: int = 0,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        *,
        max_failures: int = 5,
        retry_delay: float = 0.05,
    ) -> None:
        self.device = int(device)
        self.name = f"Camera {self.device}"
        self.max_failures = max(1, int(max_failures))
        self.retry_delay = max(0.0, float(retry_delay))
        self._requested_fps = fps
        self._requested_size = (width, height)
        self.reconnects = 0  # times the camera came back after failing
        self._lock = threading.Lock()
        self._closed = False
        self._reading = False
        self._index = 0
        capture = cv2.VideoCapture(self.device)
        if capture is None or not capture.isOpened():
            if capture is not None:
                capture.release()
            raise SourceError(
                f"Camera {self.device} could not be opened: no such device or it is in use"
            )
        self._capture: Any = capture
        if width is not None:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, float(width))
        if height is not None:
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, float(height))
        if fps is not None:
            capture.set(cv2.CAP_PROP_FPS, float(fps))
        self._start = time.monotonic()
        logger.info(
            "opened camera %d (%sx%s @ %s fps)",
            self.device,
            self._get(cv2.CAP_PROP_FRAME_WIDTH),
            self._get(cv2.CAP_PROP_FRAME_HEIGHT),
            self._get(cv2.CAP_PROP_FPS),
        )

    def _get(self, prop: int) -> float | None:
        capture = self._capture
        if capture is None:
            return None
        try:
            value = float(capture.get(prop))
        except Exception:
            return None
        return value if value > 0 else None

    @property
    def frame_count(self) -> int | None:
        return None

    @property
    def fps(self) -> float | None:
        """The rate the driver reports, else the requested one, else None."""
        return self._get(cv2.CAP_PROP_FPS) or self._requested_fps

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) the driver reports, or None when unknown."""
        width, height = self._get(cv2.CAP_PROP_FRAME_WIDTH), self._get(cv2.CAP_PROP_FRAME_HEIGHT)
        return (int(width), int(height)) if width and height else None

    def read(self) -> Frame | None:
        """Grab the next frame (blocking), or None once closed.

        Raises SourceError when the camera stops delivering frames.
        """
        failures = 0
        while True:
            with self._lock:
                if self._closed or self._capture is None or self._reading:
                    return None
                self._reading = True
                capture = self._capture
            try:
                ok, image = capture.read()  # blocks up to a frame period, outside the lock
            finally:
                captured = time.monotonic()
                with self._lock:
                    self._reading = False
                    closed_meanwhile = self._closed
                    if closed_meanwhile:
                        self._capture = None
            if closed_meanwhile:  # close() came during the read: release here
                self._release(capture)
                return None
            if ok and image is not None and getattr(image, "size", 0):
                index = self._index
                self._index += 1
                break
            failures += 1
            if failures >= self.max_failures:
                logger.warning("camera %d: %d failed reads in a row", self.device, failures)
                raise SourceError(f"Camera {self.device} stopped delivering frames (disconnected?)")
            if self.retry_delay:
                time.sleep(self.retry_delay)
        return Frame(
            pixels=_to_rgb(np.asarray(image)),
            index=index,
            timestamp=captured - self._start,
            metadata={"device": self.device, "capture_time": captured},
        )

    def reconnect(self) -> bool:
        """Try once to open the device again (after it stopped delivering: unplugged, taken by
        another program). True when it opened; the next ``read`` tells whether frames come.
        Frame indices and timestamps continue from where they were. False once closed."""
        with self._lock:
            if self._closed or self._reading:
                return False
            old, self._capture = self._capture, None
        self._release(old)
        try:
            capture = cv2.VideoCapture(self.device)
        except Exception:
            logger.debug("reopening camera %d failed", self.device, exc_info=True)
            return False
        if capture is None or not capture.isOpened():
            if capture is not None:
                self._release(capture)
            return False
        width, height = self._requested_size
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                            (cv2.CAP_PROP_FPS, self._requested_fps)):
            if value is not None:
                capture.set(prop, float(value))
        with self._lock:
            if self._closed:  # closed while reopening
                closed = True
            else:
                closed = False
                self._capture = capture
        if closed:
            self._release(capture)
            return False
        self.reconnects += 1
        logger.info("camera %d reopened (reconnect %d)", self.device, self.reconnects)
        return True

    def seek(self, index: int) -> None:
        """A live camera cannot seek; this does nothing."""
        logger.debug("seek(%s) ignored: %s is live", index, self.name)

    def close(self) -> None:
        """Release the camera. Never blocks: during a read, the reader releases it."""
        with self._lock:
            self._closed = True
            if self._reading:
                return
            capture, self._capture = self._capture, None
        self._release(capture)

    def _release(self, capture: Any) -> None:
        if capture is None:
            return
        try:
            capture.release()
        except Exception:  # pragma: no cover - releasing must never raise
            logger.debug("error releasing camera %d", self.device, exc_info=True)

    def __repr__(self) -> str:
        return f"CameraSource({self.device})"


def list_cameras(max_index: int = 5) -> list[int]:
    """Indices in ``0 .. max_index - 1`` of cameras that open right now.

    Probing opens each device briefly; an index in use by another program is not listed.
    """
    found: list[int] = []
    for index in range(max(0, int(max_index))):
        capture = None
        try:
            capture = cv2.VideoCapture(index)
            if capture is not None and capture.isOpened():
                found.append(index)
        except Exception:
            logger.debug("probing camera %d failed", index, exc_info=True)
        finally:
            if capture is not None:
                try:
                    capture.release()
                except Exception:
                    logger.debug("releasing camera %d failed", index, exc_info=True)
    return found
