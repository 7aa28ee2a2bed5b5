"""The overlay as a video (``loupe render``, File ▸ Export video with overlays…), Qt-free.

Every frame of one input, in order, goes through the models (``loupe.run.pipeline.run_stream``,
as ``loupe analyze`` does), is drawn by a ``draw(frame_result) -> RGB uint8`` function the caller
gives (the window's own drawing, ``loupe.ui.render_view``; it may run on another thread) and is
encoded to H.264 by :class:`VideoWriter`.

The writer pads odd sizes to even (4:2:0 needs even sizes; the added row/column repeats the
edge), writes yuv420p at a near-lossless CRF (the default 18) and a constant frame rate, and is
finalised whatever happens (``close`` in a ``finally``): a cancelled or interrupted render
leaves a file that plays, with the frames written so far.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from loupe.base.errors import LoupeError
from loupe.base.progress import Cancelled, Progress, as_progress
from loupe.run.pipeline import FrameResult, Runner, run_stream
from loupe.sources.base import Frame

logger = logging.getLogger(__name__)

#: The containers ``loupe render`` writes (H.264 in each).
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")
#: Frames a second of a rendered image, folder or DICOM input (they have no rate of their own).
DEFAULT_STILL_FPS = 5.0
#: x264's constant rate factor: 18 is close to visually lossless for overlays and text.
DEFAULT_CRF = 18
MAX_SCALE = 8  # ``--scale``: at most this many image pixels per frame pixel, each way
#: libx264's speed presets, fastest first; the default trades a little speed for a smaller file
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
DEFAULT_PRESET = "fast"


class RenderError(LoupeError):
    """The video cannot be written (its message names the file and says why)."""


def even(n: int) -> int:
    """``n`` rounded up to an even number (4:2:0 chroma needs even sizes)."""
    return n + (n & 1)


def pad_even(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` (H x W x 3) with its last row and/or column repeated to even sizes."""
    h, w = rgb.shape[:2]
    eh, ew = even(h), even(w)
    if (eh, ew) == (h, w):
        return rgb
    return np.pad(rgb, ((0, eh - h), (0, ew - w), (0, 0)), mode="edge")


def select_frames(source: Any, start: int = 1, max_frames: int | None = None) -> tuple[Iterator[Frame], int | None]:
    """The frames of ``source`` to render, from frame ``start`` (numbered from 1, as the window's
    transport shows them) and at most ``max_frames`` of them, and how many that is (None:
    unknown). A ``start`` past the end raises ``RenderError``."""
    count = source.frame_count
    if start < 1:
        raise RenderError(f"the first frame is frame 1, got {start}")
    if count is not None and start > count:
        raise RenderError(f"cannot start at frame {start}: {getattr(source, 'name', 'the input')} has {count}")
    if start > 1:
        source.seek(start - 1)
    left = None if count is None else count - (start - 1)
    if max_frames is None:
        return iter(source), left
    return itertools.islice(source, max_frames), (max_frames if left is None else min(left, max_frames))


def output_fps(source: Any, fps: float | None) -> float:
    """The rendered video's frame rate: ``fps`` when given, else a video's own rate, else
    ``DEFAULT_STILL_FPS`` (images, folders and DICOM have none worth playing at)."""
    if fps is not None:
        return float(fps)
    from loupe.sources.video import VideoSource

    rate = source.fps if isinstance(source, VideoSource) else None
    return float(rate) if rate and rate > 0 else DEFAULT_STILL_FPS


class VideoWriter:
    """H.264 (libx264, yuv420p) at a constant frame rate, through PyAV. ``write(rgb)`` adds one
    frame (H x W x 3 uint8 of the size given, padded to even); ``close()`` flushes the encoder
    and finishes the file (idempotent; also on leaving a ``with`` block)."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float, crf: float = DEFAULT_CRF,
                 preset: str = DEFAULT_PRESET) -> None:
        import av

        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.fps = float(fps)
        self.frames = 0
        self._closed = False
        if not self.path.parent.is_dir():
            raise RenderError(f"cannot write {self.path}: there is no folder {self.path.parent}")
        try:
            self._container = av.open(str(self.path), "w")
        except Exception as e:  # a folder that does not exist, no permission, a full disk
            raise RenderError(f"cannot write {self.path}: {_reason(e)}") from None
        try:
            rate = Fraction(self.fps).limit_denominator(1001)
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width, self._stream.height = even(self.width), even(self.height)
            self._stream.pix_fmt = "yuv420p"
            self._stream.codec_context.time_base = 1 / rate
            self._stream.options = {"crf": f"{crf:g}", "preset": preset}
        except Exception as e:
            self._container.close()
            raise RenderError(f"{self.path.name}: this PyAV build cannot encode H.264 ({_reason(e)})") from None

    def write(self, rgb: np.ndarray) -> None:
        """Encode one RGB frame (H x W x 3 uint8, the writer's size)."""
        import av

        if rgb.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame is {rgb.shape[1]}x{rgb.shape[0]}, the video {self.width}x{self.height}")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(pad_even(rgb[:, :, :3])), format="rgb24")
        vf = vf.reformat(format="yuv420p")
        vf.pts = self.frames
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the container: the file plays from here on."""
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        except OSError as e:  # a full disk, a vanished folder
            raise RenderError(f"cannot write {self.path}: {_reason(e)}") from None
        finally:
            try:
                self._container.close()
            except OSError as e:
                raise RenderError(f"cannot write {self.path}: {_reason(e)}") from None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return str(text).splitlines()[0]


@dataclass
class RenderSummary:
    """What a render did: frames written, wall seconds, and where the time went (inference:
    the models' own latency; draw: the overlay drawing; encode: H.264), cancelled or not."""

    frames: int = 0
    seconds: float = 0.0
    infer_s: float = 0.0
    draw_s: float = 0.0
    encode_s: float = 0.0
    cancelled: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def fit_into(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """``rgb`` scaled to fit ``width`` x ``height`` (aspect kept, black bands): a folder whose
    images differ in size still makes one video, at its first image's size."""
    import cv2

    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return rgb
    s = min(width / w, height / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = np.zeros((height, width, 3), np.uint8)
    y0, x0 = (height - nh) // 2, (width - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = small[:, :, :3]
    return out


def render_frames(frames: Iterable[Frame], runner: Runner, draw: Callable[[FrameResult], np.ndarray],
                  open_writer: Callable[[int, int], VideoWriter], total: int | None = None,
                  progress: Progress | None = None, read_ahead: int = 2,
                  status: str = "rendering") -> tuple[RenderSummary, VideoWriter | None]:
    """Run, draw and encode every frame of ``frames`` in order; the summary and the writer
    (None when no frame came), closed. ``open_writer(width, height)`` makes the writer when the
    first frame is drawn (the video takes that frame's size). ``progress.check()`` is called
    before each frame: a cancel ends the render with the frames so far (``summary.cancelled``);
    ``KeyboardInterrupt`` and errors propagate, the file finalised first (``writer.frames`` says
    how many frames it holds). ``status`` is the progress's status line (the input's name)."""
    progress = as_progress(progress)
    progress.update(0.0, status)
    summary = RenderSummary()
    writer: VideoWriter | None = None
    t0 = time.perf_counter()
    stream = run_stream(frames, runner, read_ahead=read_ahead)
    try:
        for fr in stream:
            progress.check()
            summary.infer_s += sum(mr.latency_ms for mr in fr.results) / 1e3
            t = time.perf_counter()
            rgb = draw(fr)
            summary.draw_s += time.perf_counter() - t
            progress.check()  # a draw waits on another thread: a cancel there lands here
            t = time.perf_counter()
            if writer is None:
                writer = open_writer(rgb.shape[1], rgb.shape[0])
            writer.write(fit_into(rgb, writer.width, writer.height))
            summary.encode_s += time.perf_counter() - t
            summary.frames += 1
            progress.update(min(summary.frames / total, 1.0) if total else 0.0, frames=summary.frames)
    except Cancelled:
        summary.cancelled = True
    finally:
        stream.close()  # joins the read-ahead threads
        if writer is not None:
            t = time.perf_counter()
            writer.close()
            summary.encode_s += time.perf_counter() - t
        summary.seconds = time.perf_counter() - t0
    if not summary.cancelled:
        progress.update(1.0)
    return summary, writer


# --- the caption's figures (drawn by loupe.ui.render_view) -----------------------------------------
@dataclass(frozen=True)
class CompareDraw:
    """Two of the rendered models side by side, as Model ▸ Compare two models shows them: model
    ``a``'s overlay (an index into the models) left of a line at ``split`` of the frame's width,
    model ``b``'s right of it, where they disagree drawn over both when ``disagreement``, and
    their agreement (``comparer(result_a, result_b)``, ``loupe.tasks.agreement``) in the caption.
    ``side_by_side``: instead of the split, the whole frame twice, a's overlay on the left copy and
    b's on the right (a video twice as wide)."""

    a: int
    b: int
    comparer: Callable[[Any, Any], Any]
    split: float = 0.5
    disagreement: bool = True
    side_by_side: bool = False

    def __post_init__(self) -> None:
        if self.a == self.b or min(self.a, self.b) < 0:
            raise ValueError(f"compare two different models, got indices {self.a} and {self.b}")
        if not 0.0 <= self.split <= 1.0:
            raise ValueError(f"the split is a fraction of the frame's width, 0 to 1, got {self.split:g}")


def agreement_text(ag: Any) -> str:
    """The caption's words for an ``Agreement``: "agreement 0.959 · 95.9% of pixels agree"."""
    return f"agreement {float(ag.value):.3f}" + (f" · {ag.detail}" if getattr(ag, "detail", "") else "")


def key_figures(task: Any, result: Any, top: int = 3) -> str:
    """A frame's key figures for one model, from its task's ``row(result)`` (the columns of
    ``loupe analyze``): the largest class areas of a segmentation ("road 41% · sky 22%"), a
    detection's count and its classes, a classification's top-1, else the first few plain
    values. "" when the task has none."""
    try:
        row = task.row(result)
    except Exception:  # a plug-in's row: the video goes on without its figures
        logger.debug("row() of %s failed", getattr(task, "name", task), exc_info=True)
        return ""
    from loupe.tasks.base import column_safe

    names = {column_safe(str(lab)): str(lab) for lab in (getattr(result, "labels", None) or ())}
    areas = [(names.get(k[5:], k[5:]), float(v)) for k, v in row.items()
             if k.startswith("area_") and not k.startswith("area_mm2_") and isinstance(v, (int, float))]
    if areas:
        areas.sort(key=lambda kv: -kv[1])
        return " · ".join(f"{name} {100 * a:.0f}%" for name, a in areas[:top] if a >= 0.005) or "no class"
    if "top1" in row:
        score = row.get("top1_score")
        return f"{row['top1']} {score:.2f}" if isinstance(score, (int, float)) else str(row["top1"])
    parts = []
    if isinstance(row.get("count"), (int, float)):
        per = [(names.get(k[6:], k[6:]), v) for k, v in row.items() if k.startswith("count_") and isinstance(v, (int, float)) and v]
        count = row["count"]
        text = f"count {count:g}" if isinstance(count, float) else f"count {count}"
        if per:
            text += " (" + ", ".join(f"{name} {v:g}" for name, v in sorted(per, key=lambda kv: -kv[1])[:top]) + ")"
        parts.append(text)
    for k, v in row.items():
        if len(parts) >= 4:
            break
        if k == "count" or k.startswith("count_") or v is None or isinstance(v, (list, dict, tuple)):
            continue
        parts.append(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}")
    return " · ".join(parts)


def model_colour(task: Any) -> tuple[int, int, int] | None:
    """The one colour a model draws in, where it has one (a one-class or foreground/background
    model's class colour); None for a model of several colours (its name is drawn in white)."""
    palette = getattr(task, "palette", None)
    labels = getattr(task, "labels", None) or ()
    if palette is None or len(labels) == 0:
        return None
    pal = np.asarray(palette).reshape(-1, 3)
    if getattr(task, "binary", False) and len(pal) >= 2:
        return tuple(int(v) for v in pal[1])
    if len(labels) == 1 and len(pal) >= 1:
        return tuple(int(v) for v in pal[0])
    return None


def frame_label(frame: Frame, total: int | None) -> str:
    """"frame 12/250 · 0.44 s", or "slice 12/40" for DICOM (from 1, as the window's transport
    counts)."""
    n = f"{frame.index + 1}" + (f"/{total}" if total else "")
    if frame.metadata.get("modality"):  # a DICOM slice: its place in the series, no time
        return f"slice {n}"
    return f"frame {n} · {frame.timestamp:.2f} s"
