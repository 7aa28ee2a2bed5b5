"""Iterator shared by the sources: keeps working after a SourceError (Qt-free)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from loupe.sources.base import Frame


class FrameIterator(Iterator[Frame]):
    """Yields ``read()`` results until it returns None.

    Unlike a generator, it is still usable after ``read()`` raised SourceError, so a caller
    that reported the error (a damaged image, a bad video packet) can continue with
    ``next(it)`` from the source's current position.
    """

    __slots__ = ("_read",)

    def __init__(self, read: Callable[[], Frame | None]) -> None:
        self._read = read

    def __iter__(self) -> FrameIterator:
        return self

    def __next__(self) -> Frame:
        frame = self._read()
        if frame is None:
            raise StopIteration
        return frame
