"""Frame record and the interface every source follows (Qt-free)."""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from loupe.base.errors import LoupeError

logger = logging.getLogger(__name__)


class SourceError(LoupeError):
    """A source cannot be opened or read; the message is meant for the user."""


def unexpected_error(exc: BaseException, doing: str) -> SourceError:
    """The SourceError for an exception a library raised that no source foresaw (a new PyAV
    that changed its API, a decoder bug): one line for the user, ``doing`` naming the file
    (e.g. ``"Cannot open bikes.mp4"``); the traceback goes to the log (INFO: ``loupe -v``)."""
    logger.info("%s: unexpected error", doing, exc_info=exc)
    reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    what = type(exc).__name__ + (f": {reason}" if reason else "")
    return SourceError(f"{doing}: unexpected error from a library ({what})")


@dataclass(frozen=True)
class Frame:
    """One frame from any source.

    pixels: H x W x C (C = 3, RGB order) uint8, or H x W greyscale uint8/uint16/float32
            (DICOM frames are float32 after rescale slope/intercept).
    index:  0-based frame index within its source.
    timestamp: seconds from the start of the source (capture time for a camera).
    metadata: source facts: e.g. ``window_center``, ``window_width``, ``modality``,
            ``pixel_spacing``, ``series_uid``, ``instance``, ``slice_position_mm``, ``path``.
    """

    pixels: np.ndarray
    index: int
    timestamp: float
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = self.pixels
        if not isinstance(p, np.ndarray):
            raise TypeError(f"Frame.pixels must be a numpy array, got {type(p).__name__}")
        if p.ndim not in (2, 3) or (p.ndim == 3 and p.shape[2] not in (1, 3, 4)):
            raise ValueError(f"Frame.pixels must be HxW or HxWxC with C in (1, 3, 4), got {p.shape}")

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def is_color(self) -> bool:
        return self.pixels.ndim == 3 and self.pixels.shape[2] >= 3


class FrameIterator(Iterator[Frame]):
    """Yields ``read()`` results until it returns None. Unlike a generator it stays usable after
    ``read()`` raised SourceError, so a caller that reported the error (a damaged image, a bad
    packet) can continue with ``next(it)`` from the source's current position."""

    __slots__ = ("_owner", "_read")

    def __init__(self, read, owner: Any = None) -> None:
        self._read = read
        self._owner = owner

    def __iter__(self) -> FrameIterator:
        return self

    def __next__(self) -> Frame:
        try:
            frame = self._read()
        except (SourceError, StopIteration):
            raise
        except Exception as exc:  # never a raw library traceback: a SourceError naming the file
            name = getattr(self._owner, "name", None) or "the source"
            at = getattr(self._owner, "position", None)
            raise unexpected_error(exc, f"Reading {name} failed" + (f" at frame {at}" if isinstance(at, int) else "")) from exc
        if frame is None:
            raise StopIteration
        return frame


class ReaderSource:
    """Shared plumbing for the concrete sources: iteration through ``read()`` (an iterator that
    stays usable after a SourceError), use as a context manager (``close()`` on exit), and
    ``fps`` / ``position`` from ``_fps`` / ``_index``."""

    _fps: float | None = None
    _index: int = 0

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def position(self) -> int:
        """Index of the frame the next read returns."""
        return self._index

    def read(self) -> Frame | None:  # pragma: no cover - every source implements it
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - every source implements it
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        return FrameIterator(self.read, self)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


class IndexedSource(ReaderSource):
    """A file source whose frames are all reachable by index (a DICOM file or series, images):
    ``read``, ``seek``, ``close`` and ``frame_count`` over ``frame_at(index)`` and ``_count``.
    A subclass sets ``name``, ``_count``, ``_lock``, ``_closed``; ``_release()`` (under the
    lock) lets go of what it holds on ``close()``. ``_unit`` names a frame in messages."""

    live: bool = False
    _unit = "frame"
    _count: int
    _closed: bool
    _lock: Any
    name: str

    @property
    def frame_count(self) -> int | None:
        return self._count

    def frame_at(self, index: int) -> Frame:  # pragma: no cover - every source implements it
        raise NotImplementedError

    def _checked_index(self, index: int) -> int:
        """``index`` as an int, or SourceError when the source has no such frame."""
        index = operator.index(index)
        if not 0 <= index < self._count:
            raise SourceError(f"{self.name} has no {self._unit} {index} (it has {self._count})")
        return index

    def read(self) -> Frame | None:
        """The next frame, or None after the last one (or once closed). The position moves
        before the frame is decoded, so after a SourceError iterating goes on with the next."""
        with self._lock:
            if self._closed or self._index >= self._count:
                return None
            index = self._index
            self._index += 1
        return self.frame_at(index)

    def seek(self, index: int) -> None:
        index = operator.index(index)
        if not 0 <= index <= self._count:
            raise SourceError(
                f"Cannot seek {self.name} to {self._unit} {index}: it has {self._count} {self._unit}s"
            )
        with self._lock:
            self._index = index

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._release()

    def _release(self) -> None:
        """Let go of decoded data or open files (called under the lock by ``close``)."""


class Source(Protocol):
    """What the worker and ``analyze`` need from a source.

    ``name`` is shown to the user; ``live`` is True for cameras (newest frame wins);
    ``frame_count`` is None when unknown (camera, some streams); ``fps`` is the nominal rate
    (None when unknown). Iterating yields Frames from the current position; ``seek(index)``
    moves the position (file sources only). ``close()`` releases the device or file.
    """

    name: str
    live: bool

    @property
    def frame_count(self) -> int | None: ...

    @property
    def fps(self) -> float | None: ...

    def __iter__(self) -> Iterator[Frame]: ...

    def seek(self, index: int) -> None: ...

    def close(self) -> None: ...
