"""Video files through PyAV: any container and codec the bundled FFmpeg decodes (Qt-free)."""

from __future__ import annotations

import logging
import operator
import re
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.logging
import numpy as np

from loupe.base.limits import current as current_limits
from loupe.sources.base import Frame, ReaderSource, SourceError, unexpected_error
from loupe.sources.sniff import check_file, mp4_structure_problem

logger = logging.getLogger(__name__)

__all__ = ["VideoSource"]

_ATTACHED_PIC = 1 << 10  # AV_DISPOSITION_ATTACHED_PIC: cover art, not a video
# Frames a stream may fall short of its header's count before it counts as truncated
# (edit lists and decoders that drop leading pictures legitimately lose a frame or two).
_SLACK = 2


def _open_options() -> dict[str, Any]:
    """Keyword arguments for ``av.open`` so a tag in another encoding never fails the file:
    PyAV before 19 decodes metadata strictly unless told ``metadata_errors="replace"``; PyAV 19
    removed that argument (it always reads metadata as UTF-8 with ``surrogateescape``)."""
    try:
        major = int(str(av.__version__).split(".")[0])
    except ValueError:
        major = 19
    return {"metadata_errors": "replace"} if major < 19 else {}


_OPEN_OPTIONS = _open_options()


def _rational(value: Any) -> Fraction | None:
    """A stream's time base or rate as a Fraction, None when unset: PyAV 19 returns
    ``av.AVRational`` and gives an unset one as the falsy ``0/1``; older PyAV a Fraction or None."""
    if not value:
        return None
    try:
        return Fraction(int(value.numerator), int(value.denominator))
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return None


def _ffmpeg_reason(exc: BaseException) -> str:
    """The human part of an FFmpeg error (no errno, no file name)."""
    reason = getattr(exc, "strerror", None)
    return str(reason) if reason else str(exc)


class VideoSource(ReaderSource):
    """Frames of the first video stream of a media file, decoded by FFmpeg (PyAV).

    Frames are RGB uint8 ``H x W x 3`` (display rotation from the file applied); timestamps
    are seconds from the start of the stream (``pts * time_base``). ``seek(index)`` is
    frame-exact: it seeks to the keyframe at or before the frame and decodes forward.

    Metadata of every frame: ``path``, ``codec`` (FFmpeg decoder name), ``container``
    (FFmpeg format name, e.g. ``"mp4"``), ``pts`` (raw presentation timestamp or None) and
    ``rotation`` (degrees counter-clockwise that were applied, usually 0).

    A decoding error in the middle of the file raises SourceError naming the frame index;
    iterating again resumes after the damaged data, ``seek()`` re-synchronises. A stream that
    ends well before the frame count its container announced (a truncated download) raises
    SourceError once at the end.
    Calls are serialised by a lock, so ``close()`` from another thread is safe.
    """

    live: bool = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self._lock = threading.RLock()
        self._container: Any = None
        self._stream: Any = None
        self._decoder: Iterator[Any] | None = None
        self._pending: Frame | None = None
        self._index = 0  # index of the next frame to be returned
        self._closed = False
        self._start_pts: int | None = None
        self._time_base: Fraction | None = None
        self._frame_count: int | None = None
        self._pts_table: list[int] | None = None
        self._table_built = False
        self._fps: float | None = None
        self._header_frames = 0  # frame count announced by the container (0: unknown)
        self._truncation_reported = False
        self._codec = ""
        self._container_name = ""
        self._open()
        # Decode the first frame now so a file that cannot be decoded fails at open time.
        try:
            first = self._decode_next(0)
        except SourceError:
            self.close()
            raise
        if first is None:
            self.close()
            raise SourceError(f"{self.name} contains no decodable video frames")
        self._pending = first

    # ------------------------------------------------------------------ opening

    def _open(self) -> None:
        if not self.path.exists():
            raise SourceError(f"No such file: {self.path}")
        if self.path.is_dir():
            raise SourceError(f"{self.path} is a folder, not a video file")
        check_file(self.path, "video")  # empty, not a video at all, or a header claiming too much
        try:
            container = av.open(str(self.path), mode="r", **_OPEN_OPTIONS)
        except PermissionError as exc:
            raise SourceError(f"Cannot read {self.name}: permission denied") from exc
        except (av.FFmpegError, OSError) as exc:
            structure = mp4_structure_problem(self.path)
            if structure:
                raise SourceError(f"{self.name} cannot be opened: {structure}") from exc
            raise SourceError(
                f"{self.name} is not a video file FFmpeg can read, or it is damaged or "
                f"truncated ({_ffmpeg_reason(exc)})"
            ) from exc
        except Exception as exc:  # PyAV failed unforeseen (e.g. an API change): one line, the file named
            raise unexpected_error(exc, f"Cannot open {self.name}") from exc

        try:
            stream = self._pick_stream(container)
        except SourceError:
            container.close()
            raise

        ctx = stream.codec_context
        too_big = current_limits().frame_problem(ctx.width, ctx.height, 3.0) if ctx.width and ctx.height else None
        if too_big:
            container.close()
            raise SourceError(f"{self.name} is refused: {too_big}")
        stream.thread_type = "AUTO"
        self._container = container
        self._stream = stream
        self._decoder = None
        self._time_base = _rational(stream.time_base)
        if self._start_pts is None and stream.start_time is not None:
            self._start_pts = int(stream.start_time)
        self._header_frames = max(int(stream.frames or 0), 0)
        rate = _rational(stream.average_rate) or _rational(stream.guessed_rate) or _rational(stream.base_rate)
        self._fps = float(rate) if rate else None
        self._codec = stream.codec_context.name
        names = container.format.name.split(",")
        suffix = self.path.suffix.lower().lstrip(".")
        self._container_name = suffix if suffix in names else names[0]

    def _pick_stream(self, container: Any) -> Any:
        videos = [s for s in container.streams.video if not int(s.disposition) & _ATTACHED_PIC]
        if not videos:
            kinds = sorted({s.type for s in container.streams if s.type != "video"})
            held = f" (it holds only {' and '.join(kinds)})" if kinds else ""
            raise SourceError(f"{self.name} has no video stream{held}")
        decodable = [s for s in videos if s.codec_context is not None]
        if not decodable:
            codec = self._describe_codec(container, videos[0].index)
            raise SourceError(
                f"Cannot decode {self.name}: this FFmpeg build has no decoder for its "
                f"video codec {codec}"
            )
        return decodable[0]

    @staticmethod
    def _describe_codec(container: Any, index: int) -> str:
        """Codec name and fourcc of a stream PyAV has no decoder for, from FFmpeg's dump."""
        old_level = av.logging.get_level()
        try:
            av.logging.set_level(av.logging.INFO)
            dump = container.dumps_format()
        except Exception:
            dump = ""
        finally:
            av.logging.set_level(old_level)
        match = re.search(rf"Stream #\d+:{index}\S*: Video: ([^,]+)", dump)
        if not match:
            return "(unknown codec)"
        parts = re.match(r"(\S+)(?: \((\S+) / 0x[0-9a-fA-F]+\))?", match.group(1).strip())
        if not parts:
            return "(unknown codec)"
        codec, fourcc = parts.group(1), parts.group(2)
        if codec == "none":
            return f"(unknown codec, fourcc {fourcc!r})" if fourcc else "(unknown codec)"
        return f"{codec!r} (fourcc {fourcc!r})" if fourcc else repr(codec)

    # ------------------------------------------------------------------ Source protocol

    @property
    def frame_count(self) -> int | None:
        """Frames in the stream: the container's count, else counted by demuxing once."""
        if self._frame_count is None:
            with self._lock:
                # (PyAV 19 refuses to read a stream of a closed container)
                n = int(self._stream.frames) if self._stream is not None and self._container is not None else 0
                if n <= 0:
                    table = self._table()
                    n = len(table) if table else 0
                self._frame_count = n if n > 0 else None
        return self._frame_count

    def read(self) -> Frame | None:
        """The next frame, or None at the end of the stream (or once closed)."""
        with self._lock:
            if self._closed or self._container is None:
                return None
            if self._pending is not None:
                frame, self._pending = self._pending, None
            else:
                frame = self._decode_next(self._index)
                if frame is None:
                    self._check_complete()
                    return None
            self._index = frame.index + 1
            return frame

    def seek(self, index: int) -> None:
        """Position so that the next frame returned is frame ``index`` (exact)."""
        index = operator.index(index)
        with self._lock:
            self._check_open()
            count = self.frame_count
            if index < 0 or (count is not None and index > count):
                raise SourceError(
                    f"Cannot seek {self.name} to frame {index}: it has {count} frames"
                )
            if self._pending is not None and self._pending.index == index:
                return
            self._pending = None
            if count is not None and index == count:  # the end: nothing more to read
                self._decoder = iter(())
                self._index = index
                return
            if index == 0 and self._seek_start():
                return
            table = self._table()
            if table is not None and index < len(table) and self._seek_pts(table[index], index):
                return
            logger.debug(
                "%s: keyframe seek to %d failed, decoding from the start", self.name, index
            )
            self._seek_linear(index)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pending = None
            self._decoder = None
            if self._container is not None:
                try:
                    self._container.close()
                except Exception:  # pragma: no cover - closing must never raise
                    logger.debug("error closing %s", self.name, exc_info=True)
                self._container = None

    def __repr__(self) -> str:
        return f"VideoSource({str(self.path)!r})"

    # ------------------------------------------------------------------ decoding

    def _check_open(self) -> None:
        if self._closed or self._container is None:
            raise SourceError(f"{self.name} is closed")

    def _check_complete(self) -> None:
        """At the end of the stream: raise (once) if far fewer frames came than announced."""
        expected = self._header_frames
        if self._truncation_reported or expected <= 0 or self._index >= expected - _SLACK:
            return
        self._truncation_reported = True
        logger.info("%s ended at frame %d of %d", self.name, self._index, expected)  # the error says it
        raise SourceError(
            f"{self.name} ended at frame {self._index} of {expected}: "
            f"the file is truncated or damaged"
        )

    def _decode_next(self, index: int) -> Frame | None:
        av_frame = self._next_av_frame(index)
        return None if av_frame is None else self._to_frame(av_frame, index)

    def _next_av_frame(self, index: int) -> Any:
        if self._decoder is None:
            self._decoder = self._container.decode(self._stream)
        try:
            return next(self._decoder)
        except StopIteration:
            return None
        except (av.FFmpegError, OSError) as exc:
            self._decoder = None  # a fresh decode() resumes after the bad data
            logger.info("decoding %s failed at frame %d: %s", self.name, index, exc)  # the error says it
            structure = mp4_structure_problem(self.path)
            expected = self._header_frames
            if structure and structure.startswith("it is truncated") and 0 < index < expected - _SLACK:
                # where the data runs out, some FFmpeg builds (PyAV 17's) report invalid data
                # instead of the end of the stream: the same truncation the end check names
                self._truncation_reported = True
                raise SourceError(
                    f"{self.name} ended at frame {index} of {expected}: the file is truncated ({structure})"
                ) from exc
            why = f"({structure})" if structure else "(the file may be damaged or truncated)"
            raise SourceError(
                f"Decoding {self.name} failed at frame {index}: {_ffmpeg_reason(exc)} {why}"
            ) from exc
        except Exception as exc:
            self._decoder = None
            raise unexpected_error(exc, f"Decoding {self.name} failed at frame {index}") from exc

    def _to_frame(self, av_frame: Any, index: int) -> Frame:
        # PyAV 18.1.1 returns a view over the padded lines (to_ndarray no longer copies): one
        # contiguous copy, as every consumer (OpenCV, ONNX feeds, QImage) expects
        pixels = np.ascontiguousarray(av_frame.to_ndarray(format="rgb24"))
        rotation = int(getattr(av_frame, "rotation", 0) or 0)
        quarter_turns = round(rotation / 90) % 4
        if quarter_turns:
            pixels = np.ascontiguousarray(np.rot90(pixels, k=quarter_turns))
        pts = av_frame.pts
        if pts is not None and self._time_base is not None:
            if self._start_pts is None:
                self._start_pts = int(pts)
            timestamp = float((pts - self._start_pts) * self._time_base)
        else:
            timestamp = index / self._fps if self._fps else float(index)
        metadata = {
            "path": str(self.path),
            "codec": self._codec,
            "container": self._container_name,
            "pts": pts,
            "rotation": quarter_turns * 90,
        }
        return Frame(pixels=pixels, index=index, timestamp=timestamp, metadata=metadata)

    # ------------------------------------------------------------------ seeking

    def _table(self) -> list[int] | None:
        """Sorted presentation timestamps of all frames, from one demux pass (no decoding).

        None when the stream carries no usable timestamps (seek then decodes from the start).
        """
        if self._table_built:
            return self._pts_table
        self._table_built = True
        pts: list[int] = []
        missing = 0
        try:
            with av.open(str(self.path), mode="r", **_OPEN_OPTIONS) as container:
                stream = container.streams[self._stream.index]
                for packet in container.demux(stream):
                    if packet.size == 0 or packet.is_discard:
                        continue
                    if packet.pts is None:
                        missing += 1
                    else:
                        pts.append(int(packet.pts))
        except Exception as exc:  # FFmpeg's errors, or a library's unforeseen one: no seek index
            logger.debug("indexing %s stopped early: %s", self.name, exc, exc_info=not isinstance(exc, (av.FFmpegError, OSError)))
        if missing or not pts:
            logger.debug("%s: %d packets without timestamps, no seek index", self.name, missing)
            self._pts_table = None
        else:
            pts.sort()
            self._pts_table = pts
        return self._pts_table

    def _seek_start(self) -> bool:
        start = self._start_pts if self._start_pts is not None else 0
        try:
            self._container.seek(start, stream=self._stream, backward=True, any_frame=False)
        except (av.FFmpegError, OSError):
            return False
        self._decoder = None
        av_frame = self._next_av_frame(0)
        if av_frame is None or (av_frame.pts is not None and av_frame.pts > start):
            return False
        self._pending = self._to_frame(av_frame, 0)
        self._index = 0
        return True

    def _seek_pts(self, target: int, index: int) -> bool:
        try:
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        except (av.FFmpegError, OSError) as exc:
            logger.debug("%s: container seek failed: %s", self.name, exc)
            return False
        self._decoder = None
        first = True
        while True:
            av_frame = self._next_av_frame(index)
            if av_frame is None or av_frame.pts is None:
                return False
            if first and av_frame.pts > target:  # landed after the target: index unreliable
                return False
            first = False
            if av_frame.pts >= target:
                self._pending = self._to_frame(av_frame, index)
                self._index = index
                return True

    def _seek_linear(self, index: int) -> None:
        """Reopen the file and decode forward ``index`` frames (always exact, slower)."""
        if self._container is not None:
            self._container.close()
            self._container = None
        self._open()
        for skipped in range(index):
            if self._next_av_frame(skipped) is None:
                raise SourceError(f"Cannot seek {self.name} to frame {index}: it ends at {skipped}")
        frame = self._decode_next(index)
        if frame is None:
            self._decoder = iter(())
        self._pending = frame
        self._index = index
