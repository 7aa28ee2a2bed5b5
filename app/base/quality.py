"""Video quality metrics as video coding defines them and FFmpeg computes them (Qt-free).

Definitions (checked against Debian's ``ffmpeg`` by ``tests/test_quality_ffmpeg.py``):

- Frames are compared as YUV 4:2:0 (``yuv420p``) planes, 8 bits. RGB frames (a neural decoder's
  output, a cropped target) are converted by ``rgb_to_yuv420``: libswscale through PyAV with
  FFmpeg's command-line default scaler (bicubic), BT.601 limited range, as ``ffmpeg -pix_fmt
  yuv420p`` does.
- PSNR (FFmpeg's ``psnr`` filter): per plane ``MSE_c = SSE_c / (w_c h_c)``,
  ``PSNR_c = 10 log10(255^2 / MSE_c)``; "all" weights the plane MSEs by their pixel counts
  (4:1:1 for 4:2:0), i.e. the MSE over all samples. Identical planes give ``inf`` as FFmpeg
  prints it; ``json_number`` turns it into JSON ``null`` (the JSON stays valid).
- SSIM (FFmpeg's ``ssim`` filter): sums over 4x4 blocks, combined 2x2 into 8x8 windows at a step
  of 4 (windows that do not fit are not used), integer constants ``C1 = round(0.01^2 255^2 64)``,
  ``C2 = round(0.03^2 255^2 64 63)``, the per-window value in single precision, the plane value
  the mean over its windows; "All" weights the planes by their pixel counts.
- Pooling over frames: ``psnr_pooled`` = PSNR of the mean "all" MSE (FFmpeg's ``average``),
  ``psnr_mean`` = mean of the per-frame PSNRs (``inf`` if any frame is identical),
  ``ssim_mean`` = mean of the per-frame SSIM "All" (FFmpeg's summary ``All``).
- ``psnr_rgb``: the plain 8-bit RGB PSNR (MSE over all three channels), a second, labelled figure.

No FFmpeg binary is used here: the numbers are computed with numpy, planes from PyAV. Where
FFmpeg's x86 SIMD SSIM differs from its own C code (planes with 4k+1 windows per row, e.g. the
88-sample chroma of a 176-wide clip: up to ~0.007), this module follows the C code; see
``tests/test_quality_ffmpeg.py``. ``rgb_to_yuv420`` equals ``ffmpeg -pix_fmt yuv420p`` sample for
sample on even frame sizes; on odd sizes the last chroma column/row may differ by a few levels
between libswscale versions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loupe.base.errors import LoupeError
from loupe.base.progress import Progress, as_progress

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]
PLANES = ("y", "u", "v")
MAX_VALUE = 255
# FFmpeg's integer SSIM constants for 8-bit samples (sums over 64 samples)
SSIM_C1 = int(0.01 * 0.01 * 255 * 255 * 64 + 0.5)  # 416
SSIM_C2 = int(0.03 * 0.03 * 255 * 255 * 64 * 63 + 0.5)  # 235963


class AlignmentError(LoupeError, ValueError):
    """Two videos cannot be compared frame by frame; the message is one line for the user."""


class VideoReadError(LoupeError, ValueError):
    """A video cannot be opened or decoded; the message is one line for the user."""


# --- conversions -----------------------------------------------------------------------
def _frame_planes(frame: Any) -> Planes:
    """The three planes of a PyAV yuv420p/yuvj420p frame, without the line padding."""
    out = []
    for p in frame.planes[:3]:
        a = np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[: p.height, : p.width]
        out.append(np.ascontiguousarray(a))
    return out[0], out[1], out[2]


def rgb_to_yuv420(rgb_u8: np.ndarray) -> Planes:
    """H x W x 3 uint8 RGB -> (Y, U, V) uint8 planes as FFmpeg's ``-pix_fmt yuv420p`` makes them
    (libswscale, bicubic, BT.601 limited range). Chroma planes are ceil(H/2) x ceil(W/2)."""
    import av

    rgb = np.asarray(rgb_u8)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb_to_yuv420 needs H x W x 3 uint8, got {rgb.dtype} {rgb.shape}")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return _frame_planes(frame.reformat(format="yuv420p", interpolation="BICUBIC"))


def yuv420_to_rgb(planes: Planes) -> np.ndarray:
    """(Y, U, V) uint8 planes -> H x W x 3 uint8 RGB for display (libswscale, BT.601 limited
    range, as a player shows the frame)."""
    import av

    y, u, v = (np.asarray(p, np.uint8) for p in planes)
    h, w = y.shape
    frame = av.VideoFrame(w, h, "yuv420p")
    for dst, src in zip(frame.planes[:3], (y, u, v)):
        buf = np.frombuffer(dst, np.uint8).reshape(-1, dst.line_size)
        buf[: dst.height, : dst.width] = src
    return np.ascontiguousarray(frame.to_ndarray(format="rgb24", interpolation="BICUBIC"))  # PyAV >= 18.1.1: a view


def _check_planes(ref: Sequence[np.ndarray], dist: Sequence[np.ndarray]) -> None:
    if len(ref) != 3 or len(dist) != 3:
        raise ValueError("expected (Y, U, V) planes")
    for name, a, b in zip(PLANES, ref, dist):
        if a.shape != b.shape:
            raise AlignmentError(f"plane {name.upper()} sizes differ: {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]}")


def plane_weights(ref: Sequence[np.ndarray]) -> tuple[float, float, float]:
    """FFmpeg's plane weights: pixel count of the plane / pixel count of all planes."""
    n = [a.shape[0] * a.shape[1] for a in ref]
    total = float(sum(n))
    return n[0] / total, n[1] / total, n[2] / total


# --- PSNR ------------------------------------------------------------------------------
def psnr_from_mse(mse: float | np.ndarray, max_value: float = MAX_VALUE) -> float | np.ndarray:
    """10 log10(max^2 / mse), the one PSNR of Loupe and loupe_models: ``inf`` for mse == 0
    (identical frames, as FFmpeg prints it and the official anomaly code computes it), ``nan``
    for a NaN mse (the caller decides what a NaN means). An array of MSEs gives an array."""
    if np.ndim(mse) == 0:
        m = float(mse)
        if m <= 0.0:
            return math.inf
        return 10.0 * math.log10(max_value * max_value / m)  # nan stays nan
    m = np.asarray(mse, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(m <= 0.0, np.inf, 10.0 * np.log10(max_value * max_value / np.where(m <= 0.0, 1.0, m)))


def mse(a: np.ndarray, b: np.ndarray, *, batch: bool = False) -> float | np.ndarray:
    """Mean squared difference in float64; ``batch=True``: one value per entry of the first axis
    (per frame of a stack). Raises ValueError when the shapes differ."""
    x = np.asarray(a)
    y = np.asarray(b)
    if x.shape != y.shape:
        raise AlignmentError(f"shapes differ: {x.shape} vs {y.shape}")
    if not batch:
        return _sse(x, y) / x.size if x.size else math.nan
    if x.ndim < 1:
        raise ValueError("mse(batch=True) needs at least one axis")
    d = x.astype(np.float64).reshape(len(x), -1) - y.astype(np.float64).reshape(len(y), -1)
    return np.einsum("ij,ij->i", d, d) / max(d.shape[1], 1) if d.shape[1] else np.full(len(x), math.nan)


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = MAX_VALUE, *,
         batch: bool = False) -> float | np.ndarray:
    """PSNR in dB of two arrays of the same shape whose values span ``data_range`` (255 for
    8-bit frames, 1.0 for [0, 1], 2.0 for [-1, 1]): ``psnr_from_mse(mse(a, b), data_range)``, so
    identical arrays give ``inf`` and a NaN anywhere gives ``nan``. ``batch=True``: one value
    per entry of the first axis."""
    if not data_range > 0:
        raise ValueError(f"psnr: data_range must be > 0, got {data_range}")
    return psnr_from_mse(mse(a, b, batch=batch), data_range)


def _sse(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of squared differences in float64: through OpenCV for 8/16-bit data (exact: integer
    differences, summed in double), else with numpy on float64 differences."""
    import cv2

    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    if a.dtype == b.dtype and a.dtype in (np.uint8, np.uint16) and a.ndim >= 1 and a.size:
        return float(cv2.norm(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1), cv2.NORM_L2SQR))
    d = a.astype(np.float64).ravel() - b.astype(np.float64).ravel()
    return float(np.dot(d, d))


def psnr_planes(ref: Sequence[np.ndarray], dist: Sequence[np.ndarray]) -> dict[str, float]:
    """FFmpeg ``psnr`` of two (Y, U, V) uint8 frames: keys y, u, v, all (dB), mse_y, mse_u,
    mse_v, mse_all."""
    _check_planes(ref, dist)
    w = plane_weights(ref)
    out: dict[str, float] = {}
    mse_all = 0.0
    for name, a, b, wc in zip(PLANES, ref, dist, w):
        mse = _sse(a, b) / (a.shape[0] * a.shape[1])
        out["mse_" + name] = mse
        out[name] = psnr_from_mse(mse)
        mse_all += mse * wc
    out["mse_all"] = mse_all
    out["all"] = psnr_from_mse(mse_all)
    return out


def psnr_rgb(ref_rgb: np.ndarray, dist_rgb: np.ndarray) -> float:
    """8-bit RGB PSNR: MSE over all samples of the three channels ("RGB PSNR")."""
    return psnr_from_mse(mse_rgb(ref_rgb, dist_rgb))


def mse_rgb(ref_rgb: np.ndarray, dist_rgb: np.ndarray) -> float:
    a, b = np.asarray(ref_rgb), np.asarray(dist_rgb)
    if a.shape != b.shape:
        raise AlignmentError(f"frame sizes differ: {a.shape} vs {b.shape}")
    return _sse(a, b) / a.size


# --- SSIM ------------------------------------------------------------------------------
def _block_sums(a: np.ndarray, bh: int, bw: int) -> np.ndarray:
    return a[: 4 * bh, : 4 * bw].reshape(bh, 4, bw, 4).sum(axis=(1, 3))


def ssim_plane(ref: np.ndarray, dist: np.ndarray) -> float:
    """FFmpeg's SSIM of one 8-bit plane (``nan`` when the plane is under 8 x 8 samples)."""
    bh, bw = ref.shape[0] >> 2, ref.shape[1] >> 2
    if bh < 2 or bw < 2:
        return math.nan
    # int32 as FFmpeg's C code: for 8-bit samples no sum or product below overflows
    a = ref.astype(np.int32)
    b = dist.astype(np.int32)
    s1 = _block_sums(a, bh, bw)
    s2 = _block_sums(b, bh, bw)
    ss = _block_sums(a * a + b * b, bh, bw)
    s12 = _block_sums(a * b, bh, bw)

    def win(s: np.ndarray) -> np.ndarray:  # 2 x 2 blocks = one 8 x 8 window, step 4
        return s[:-1, :-1] + s[:-1, 1:] + s[1:, :-1] + s[1:, 1:]

    s1, s2, ss, s12 = win(s1), win(s2), win(ss), win(s12)
    var = ss * 64 - s1 * s1 - s2 * s2
    cov = s12 * 64 - s1 * s2
    f32 = np.float32
    num = (2 * s1 * s2 + SSIM_C1).astype(f32) * (2 * cov + SSIM_C2).astype(f32)
    den = (s1 * s1 + s2 * s2 + SSIM_C1).astype(f32) * (var + SSIM_C2).astype(f32)
    per_window = num / den  # float32, as the C code
    return float(per_window.astype(np.float64).sum(axis=1).sum() / ((bh - 1) * (bw - 1)))


def ssim_planes(ref: Sequence[np.ndarray], dist: Sequence[np.ndarray]) -> dict[str, float]:
    """FFmpeg ``ssim`` of two (Y, U, V) uint8 frames: keys y, u, v, all."""
    _check_planes(ref, dist)
    out = {name: ssim_plane(a, b) for name, a, b in zip(PLANES, ref, dist)}
    out["all"] = float(sum(out[n] * wc for n, wc in zip(PLANES, plane_weights(ref))))
    return out


# --- per frame and pooled --------------------------------------------------------------
def frame_metrics(ref: Sequence[np.ndarray], dist: Sequence[np.ndarray]) -> dict[str, float]:
    """Every YUV figure of one frame pair: psnr_y/u/v/all, mse_y/u/v/all, ssim_y/u/v/all."""
    p = psnr_planes(ref, dist)
    s = ssim_planes(ref, dist)
    out: dict[str, float] = {}
    for k in (*PLANES, "all"):
        out["psnr_" + k] = p[k]
        out["mse_" + k] = p["mse_" + k]
    for k in (*PLANES, "all"):
        out["ssim_" + k] = s[k]
    return out


def rgb_frame_metrics(ref_rgb: np.ndarray, dist_rgb: np.ndarray, ref_yuv: Sequence[np.ndarray],
                      dist_yuv: Sequence[np.ndarray]) -> dict[str, float]:
    """``frame_metrics`` of the YUV planes plus ``mse_rgb`` and ``psnr_rgb`` of the RGB pair
    (a neural output is RGB: its RGB PSNR is the second, labelled figure)."""
    out = frame_metrics(ref_yuv, dist_yuv)
    out["mse_rgb"] = mse_rgb(ref_rgb, dist_rgb)
    out["psnr_rgb"] = psnr_from_mse(out["mse_rgb"])
    return out


def pool(frames: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Pooled figures over per-frame dicts (``frame_metrics`` keys).

    psnr_pooled: PSNR of the mean ``mse_all`` (FFmpeg's "average"); psnr_mean: mean of
    ``psnr_all``; ssim_mean: mean of ``ssim_all`` (FFmpeg's "All"); also psnr_y/u/v_pooled and
    ssim_y/u/v_mean where the frames have them, and psnr_rgb_pooled/psnr_rgb_mean for frames
    with ``mse_rgb``/``psnr_rgb``. Empty input -> NaNs."""
    if not frames:
        return {"psnr_pooled": math.nan, "psnr_mean": math.nan, "ssim_mean": math.nan}
    n = len(frames)
    out: dict[str, float] = {}
    out["psnr_pooled"] = psnr_from_mse(sum(f["mse_all"] for f in frames) / n)
    out["psnr_mean"] = float(sum(f["psnr_all"] for f in frames) / n)
    out["ssim_mean"] = float(sum(f["ssim_all"] for f in frames) / n) if "ssim_all" in frames[0] else math.nan
    for c in PLANES:
        if "mse_" + c in frames[0]:
            out[f"psnr_{c}_pooled"] = psnr_from_mse(sum(f["mse_" + c] for f in frames) / n)
        if "ssim_" + c in frames[0]:
            out[f"ssim_{c}_mean"] = float(sum(f["ssim_" + c] for f in frames) / n)
    if "mse_rgb" in frames[0]:
        out["psnr_rgb_pooled"] = psnr_from_mse(sum(f["mse_rgb"] for f in frames) / n)
    if "psnr_rgb" in frames[0]:
        out["psnr_rgb_mean"] = float(sum(f["psnr_rgb"] for f in frames) / n)
    return out


def json_number(x: Any, digits: int | None = None) -> Any:
    """A float for JSON: ``inf``/``nan`` -> ``None`` (JSON ``null``; identical frames have
    infinite PSNR), optionally rounded."""
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if not math.isfinite(x):
            return None
        return round(x, digits) if digits is not None else x
    return x


def json_safe(obj: Any, digits: int | None = None) -> Any:
    """``json_number`` applied through dicts and lists."""
    if isinstance(obj, dict):
        return {k: json_safe(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, digits) for v in obj]
    return json_number(obj, digits)


# --- reading and alignment -------------------------------------------------------------
@dataclass(frozen=True)
class StreamInfo:
    path: str
    width: int
    height: int
    fps: float
    pts: tuple[float, ...]  # presentation times in seconds, sorted

    @property
    def frames(self) -> int:
        return len(self.pts)


@contextmanager
def _read_errors(message: Callable[[str], str]) -> Iterator[None]:
    """Turn any error PyAV raises (it raises many types) into one VideoReadError line:
    ``message(reason)``, the reason being the error's first line."""
    try:
        yield
    except VideoReadError:
        raise
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise VideoReadError(message(reason)) from None


def _open(path: str | Path):
    import av

    p = Path(path)
    if not p.is_file():
        raise VideoReadError(f"{p}: no such file")
    with _read_errors(lambda why: f"{p.name}: not a video PyAV can open ({why})"):
        container = av.open(str(p))
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{p.name}: has no video stream")
    return container


def probe(path: str | Path) -> StreamInfo:
    """Frame timestamps of the first video stream, from its packets (no decoding)."""
    with closing(_open(path)) as container, _read_errors(lambda why: f"{Path(path).name}: cannot be read ({why})"):
        st = container.streams.video[0]
        tb = float(st.time_base) if st.time_base else 0.0
        rate = st.average_rate or st.guessed_rate or st.base_rate
        fps = float(rate) if rate else 0.0
        pts: list[float] = []
        n_nopts = 0
        for pkt in container.demux(st):
            if pkt.size == 0:
                continue
            if pkt.pts is None:
                n_nopts += 1
            else:
                pts.append(pkt.pts * tb)
        pts.sort()
        if n_nopts and fps > 0:  # raw streams: timestamps from the frame rate
            pts = [i / fps for i in range(len(pts) + n_nopts)]
        w, h = st.codec_context.width, st.codec_context.height
    return StreamInfo(str(path), int(w), int(h), fps, tuple(pts))


def check_aligned(a: StreamInfo | Sequence[float], b: StreamInfo | Sequence[float], fps: float | None = None,
                  names: tuple[str, str] = ("reference", "distorted")) -> None:
    """Raise AlignmentError (one line) unless ``a`` and ``b`` have the same frame count, the same
    frame size (for StreamInfo) and the same timestamps within half a frame. Timestamps count from
    each stream's first frame (a container's start offset is not a misalignment)."""
    if isinstance(a, StreamInfo) and isinstance(b, StreamInfo):
        if (a.width, a.height) != (b.width, b.height):
            raise AlignmentError(f"frame sizes differ: {names[0]} {a.width}x{a.height}, {names[1]} {b.width}x{b.height}")
        fps = fps or a.fps or b.fps
    pa = np.asarray(a.pts if isinstance(a, StreamInfo) else a, np.float64)
    pb = np.asarray(b.pts if isinstance(b, StreamInfo) else b, np.float64)
    if len(pa) != len(pb):
        raise AlignmentError(f"frame counts differ: {names[0]} has {len(pa)}, {names[1]} has {len(pb)}")
    if len(pa) == 0:
        raise AlignmentError(f"{names[0]} and {names[1]} have no frames")
    if not fps:
        d = np.diff(pa)
        fps = 1.0 / float(np.median(d)) if len(d) and np.median(d) > 0 else 0.0
    if fps:
        ra, rb = pa - pa[0], pb - pb[0]
        off = np.abs(ra - rb)
        k = int(np.argmax(off))
        if off[k] > 0.5 / fps + 1e-9:
            raise AlignmentError(
                f"timestamps differ by more than half a frame: frame {k} is at {ra[k]:.3f} s in {names[0]}, "
                f"{rb[k]:.3f} s in {names[1]}"
            )


def read_yuv420(path: str | Path) -> Iterator[tuple[float, Planes]]:
    """(pts_seconds, (Y, U, V)) for every frame of the first video stream, decoded by PyAV.
    yuv420p/yuvj420p frames are taken as they are (like FFmpeg's filters); other pixel formats
    are converted to yuv420p by libswscale."""
    with closing(_open(path)) as container:
        st = container.streams.video[0]
        st.thread_type = "AUTO"
        rate = st.average_rate or st.guessed_rate
        fps = float(rate) if rate else 25.0
        i = 0
        with _read_errors(lambda why: f"{Path(path).name}: decoding failed at frame {i} ({why})"):
            for frame in container.decode(st):
                if frame.format.name not in ("yuv420p", "yuvj420p"):
                    frame = frame.reformat(format="yuv420p", interpolation="BICUBIC")
                t = frame.time if frame.time is not None else i / fps
                yield float(t), _frame_planes(frame)
                i += 1


@dataclass
class CompareResult:
    reference: str
    distorted: str
    width: int
    height: int
    fps: float
    frames: list[dict[str, Any]] = field(default_factory=list)  # index, pts, psnr_*, mse_*, ssim_*
    pooled: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self, digits: int = 6) -> dict[str, Any]:
        """JSON-ready dict: pooled figures at the top level, ``frames`` per frame; infinite PSNR
        (identical frames) is ``null``."""
        d: dict[str, Any] = {
            "reference": self.reference,
            "distorted": self.distorted,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "frame_count": len(self.frames),
            "metric_definitions": "FFmpeg psnr/ssim filters on YUV 4:2:0 planes; psnr_pooled = PSNR of the mean "
                                  "MSE (FFmpeg average), psnr_mean = mean of per-frame PSNR, ssim_mean = FFmpeg SSIM All; "
                                  "null = infinite PSNR (identical frames)",
        }
        d.update(json_safe(self.pooled, digits))
        d["frames"] = [json_safe(f, digits) for f in self.frames]
        return d


def compare_videos(ref_path: str | Path, dist_path: str | Path,
                   progress: Progress | None = None) -> CompareResult:
    """Per-frame and pooled PSNR/SSIM of ``dist_path`` against ``ref_path`` (FFmpeg's
    definitions). Alignment (count, size, timestamps) is checked before any frame is compared.
    ``progress`` is updated as frames are done and checked between them (``Cancelled``).
    Raises AlignmentError or VideoReadError."""
    progress = as_progress(progress)
    t0 = time.perf_counter()
    ia = probe(ref_path)
    ib = probe(dist_path)
    check_aligned(ia, ib)
    n = ia.frames
    res = CompareResult(str(ref_path), str(dist_path), ia.width, ia.height, ia.fps)
    it_b = read_yuv420(dist_path)
    try:
        for i, (ta, pa) in enumerate(read_yuv420(ref_path)):
            try:
                _tb, pb = next(it_b)
            except StopIteration:
                raise AlignmentError(f"frame counts differ: {Path(dist_path).name} decodes to {i} frames, "
                                     f"{Path(ref_path).name} to more") from None
            m = frame_metrics(pa, pb)
            res.frames.append({"index": i, "pts": round(ta, 6), **m})
            if n:
                progress.update(min(1.0, (i + 1) / n))
            progress.check()
        extra = sum(1 for _ in it_b)
        if extra:
            raise AlignmentError(f"frame counts differ: {Path(dist_path).name} decodes to {len(res.frames) + extra} "
                                 f"frames, {Path(ref_path).name} to {len(res.frames)}")
    finally:
        it_b.close()
    if not res.frames:
        raise AlignmentError(f"{Path(ref_path).name} has no frames to compare")
    res.pooled = pool(res.frames)
    res.seconds = time.perf_counter() - t0
    return res
