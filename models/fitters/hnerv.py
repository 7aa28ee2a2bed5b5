"""Fit HNeRV to one clip, quantise and entropy-code it, export a Loupe compression model.

CLI (also ``loupe fit hnerv``)::

    python -m loupe_models.fit_hnerv CLIP --params 0.3M --out model.onnx \\
        [--minutes M] [--epochs E] [--crop HxW | --crop TOP,LEFT,H,W] [--threads N]

``CLIP`` is a video file or the name of a shipped sample clip (``carphone_pristine.mp4``).
Writes ``model.onnx`` (frame index in, frame out, card ``task: compression``) and next to it
``model.hnerv``: the representation (8-bit decoder weights, 6-bit frame embeddings,
canonical-Huffman coded, :mod:`loupe_models.fitters.hnerv_codec`). The card's ``bits`` are that
file's size * 8 and ``bpp`` = bits / (frames * H * W): the decoder is counted, the float
ONNX never is. The ONNX holds the *dequantised* weights and embeddings read back from the
file, so it decodes exactly what the bits hold.

Procedure (:func:`fit_hnerv_clip`):

1. Every frame of the clip is decoded (RGB). The target is a centre crop whose sides the
   total stride ``P`` divides (:func:`plan`): among stride products from strides {5,4,3,2}
   (at most 5 stages), the crop keeping the most area (at least 80 % of the frame) whose
   frame embeddings (16 x H/P x W/P per frame, 6 bits each) take at most 15 % of the
   parameter budget; ties go to the larger ``P`` (smaller embedding). 720x1280 gives the
   official 640x1280 with strides 5,4,4,2,2; 144x176 (``carphone``) gives 144x144
   with strides 4,3,2,2 and 3x3 embeddings. ``--crop`` overrides the size.
2. :func:`loupe_models.nets.hnerv.config_for` sets widths from the budget as the official
   ``--modelsize`` does (decoder + all frame embeddings = ``params``).
3. The whole HNeRV (ConvNeXt encoder + decoder) is trained as the official
   ``train_nerv_all.py`` does: every frame once per epoch in random order, batch 2, Adam
   (betas 0.9/0.999), L2 loss on RGB in [0, 1], learning rate with linear warm-up over the
   first 10 % then cosine decay to 1 % over ``max(epoch / epochs, time / budget)``; the peak
   learning rate is 2e-3 (the official 1e-3 is tuned for 300 epochs; a short CPU budget
   converges faster with twice that, measured on ``carphone``).
4. The encoder computes the embeddings of all frames; decoder weights (8 bits) and
   embeddings (6 bits) are quantised and entropy-coded into the ``.hnerv`` file, read back,
   and the read-back decoder is evaluated: RGB PSNR (8-bit frames, mean over frames) and
   YUV 4:2:0 PSNR/SSIM as FFmpeg computes them (:mod:`loupe.base.quality`).
5. Export (:func:`loupe_models.exporters.hnerv.export_compression`), checked in ONNX Runtime.

Defaults: ``epochs=None, minutes=None`` trains :data:`DEFAULT_EPOCHS` epochs or
:data:`DEFAULT_MINUTES` minutes, whichever comes first; with only ``epochs`` there is no time
limit, with only ``minutes`` no epoch limit. Threads: like ``fit_anomaly``, a few steps are
timed at 2 and at 1 torch thread and the faster is kept (a shared CPU can make 2 threads far
slower than 1); on a CUDA device torch sees, training runs there.

Exit codes: 0 ok, 1 the export check failed, 2 bad arguments or an unreadable clip.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from loupe.base import quality as q
from loupe.base.errors import LoupeError
from loupe.base.progress import CallbackProgress, Progress, as_progress
from loupe.base.quality import psnr_from_mse
from loupe_models.exporters.hnerv import export_compression
from loupe_models.nets.hnerv import HNeRV, HNeRVConfig, HNeRVDecoder, config_for

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_MINUTES",
    "FitEstimate",
    "FitPlan",
    "HNeRVFitResult",
    "estimate",
    "fit_frames",
    "fit_hnerv_clip",
    "main",
    "parse_params",
    "plan",
]

DEFAULT_EPOCHS = 60
DEFAULT_MINUTES = 9.0
GPU_THRESHOLD_S = 30 * 60  # estimate above this on CPU -> needs_gpu
#: epochs the estimate is for: a useful fit (carphone at 0.3M passed 28 dB after 13-20)
ESTIMATE_EPOCHS = 25
MIN_AREA = 0.80
MAX_EMBED_SHARE = 0.15
EMBED_DIM = 16


class UsageError(LoupeError, ValueError):
    """Bad arguments or input; the message is the one line printed."""


@dataclass(frozen=True)
class FitEstimate:
    seconds: float  # predicted wall time of a default fit (training + quantise + export)
    frames: int
    size: tuple[int, int]  # (H, W) fitted (after the crop)
    needs_gpu: bool
    message: str
    seconds_per_epoch: float = 0.0
    device: str = "cpu"


@dataclass
class HNeRVFitResult:
    onnx_path: Path
    codec_path: Path
    psnr: float  # RGB PSNR (8-bit frames, mean over frames) of the decoded bits
    ssim: float  # YUV 4:2:0 SSIM "All" (FFmpeg), mean over frames
    bpp: float
    bits: int
    seconds: float  # wall time of the whole fit (decode, train, quantise, export)
    frames: int
    epochs: int
    psnr_float: float = math.nan  # RGB PSNR before quantisation
    psnr_yuv: float = math.nan  # YUV PSNR pooled (FFmpeg "average")
    psnr_yuv_mean: float = math.nan
    train_seconds: float = 0.0
    threads: int = 0
    device: str = "cpu"
    config: HNeRVConfig | None = None
    crop: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "onnx": str(self.onnx_path), "hnerv": str(self.codec_path),
            "psnr_rgb": round(self.psnr, 3), "psnr_rgb_float": round(self.psnr_float, 3),
            "psnr_yuv_pooled": round(self.psnr_yuv, 3), "psnr_yuv_mean": round(self.psnr_yuv_mean, 3),
            "ssim_yuv": round(self.ssim, 5), "bpp": round(self.bpp, 5), "bits": self.bits,
            "seconds": round(self.seconds, 1), "train_seconds": round(self.train_seconds, 1),
            "frames": self.frames, "epochs": self.epochs, "threads": self.threads,
            "device": self.device, "crop": self.crop,
        }


@dataclass(frozen=True)
class FitPlan:
    crop: tuple[int, int, int, int]  # top, left, h, w in source pixels
    config: HNeRVConfig
    source_size: tuple[int, int]
    frames: int


# --------------------------------------------------------------------------------------
# planning: crop, strides, widths
# --------------------------------------------------------------------------------------
def parse_params(text: str | float) -> float:
    """``"0.3M"``, ``"300k"``, ``"300000"`` or a number -> parameters as a float."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip().lower().replace("_", "")
        mult = 1.0
        if s.endswith("m"):
            mult, s = 1e6, s[:-1]
        elif s.endswith("k"):
            mult, s = 1e3, s[:-1]
        try:
            value = float(s) * mult
        except ValueError:
            raise UsageError(f"--params: expected a number like 0.3M or 300k, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"--params must be positive, got {text!r}")
    return value


def _stride_splits(p: int, max_len: int = 5, largest: int = 5) -> list[tuple[int, ...]]:
    if p == 1:
        return [()]
    if max_len == 0:
        return []
    out = []
    for f in (5, 4, 3, 2):
        if f <= largest and p % f == 0:
            out += [(f, *rest) for rest in _stride_splits(p // f, max_len - 1, f)]
    return out


def _strides_for(p: int) -> tuple[int, ...] | None:
    splits = _stride_splits(p)
    return max(splits, key=lambda t: (len(t), t)) if splits else None


def _centre(source_hw: tuple[int, int], hw: tuple[int, int]) -> tuple[int, int, int, int]:
    (sh, sw), (h, w) = source_hw, hw
    return (round((sh - h) / 2.0), round((sw - w) / 2.0), int(h), int(w))


def plan(source_hw: tuple[int, int], frames: int, params: float,
         crop: Sequence[int] | None = None) -> FitPlan:
    """Crop and configuration for frames of ``source_hw`` (see the module docstring).

    ``crop``: ``(h, w)`` (centred) or ``(top, left, h, w)``; strides then come from its size.
    Raises UsageError when nothing fits."""
    sh, sw = int(source_hw[0]), int(source_hw[1])
    if crop is not None:
        box = _centre((sh, sw), (crop[0], crop[1])) if len(crop) == 2 else tuple(int(c) for c in crop)
        t, left, h, w = box
        if h < 2 or w < 2 or t < 0 or left < 0 or t + h > sh or left + w > sw:
            raise UsageError(f"crop {list(box)} does not fit the {sh}x{sw} frames")
        best_p = None
        for p in range(math.gcd(h, w), 1, -1):
            if h % p == 0 and w % p == 0 and min(h, w) >= 2 * p and _strides_for(p):
                share = frames * EMBED_DIM * (h // p) * (w // p) / params
                if share <= MAX_EMBED_SHARE or best_p is None:
                    best_p = p
                if share <= MAX_EMBED_SHARE:
                    break
        if best_p is None:
            raise UsageError(f"crop {h}x{w}: no stride product divides both sides; use even sizes")
        candidates = [(box, best_p)]
    else:
        candidates = []
        for p in range(2, min(sh, sw) // 2 + 1):
            st = _strides_for(p)
            if st is None:
                continue
            h, w = sh // p * p, sw // p * p
            if h < 2 * p or w < 2 * p or h * w < MIN_AREA * sh * sw:
                continue
            share = frames * EMBED_DIM * (h // p) * (w // p) / params
            if share > MAX_EMBED_SHARE:
                continue
            candidates.append((_centre((sh, sw), (h, w)), p))
        if not candidates:
            raise UsageError(
                f"no HNeRV layout fits {sh}x{sw} frames with {params:,.0f} parameters for "
                f"{frames} frames; raise --params or give --crop")
        candidates.sort(key=lambda c: (c[0][2] * c[0][3], c[1]), reverse=True)
    box, p = candidates[0]
    strides = _strides_for(p)
    try:
        cfg = config_for((box[2], box[3]), params, frames=frames, embed_dim=EMBED_DIM,
                         strides=strides)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return FitPlan(crop=tuple(int(v) for v in box), config=cfg, source_size=(sh, sw),
                   frames=frames)


# --------------------------------------------------------------------------------------
# clip
# --------------------------------------------------------------------------------------
def _resolve_clip(spec: str | Path) -> Path:
    from loupe.base.media import resolve_clip

    try:
        return resolve_clip(spec)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None


def _read_clip(clip: Path, max_frames: int | None = None) -> tuple[np.ndarray, float | None]:
    from loupe_models.fitters.anomaly import decode_span

    try:
        return decode_span(clip, max_frames=max_frames)
    except Exception as e:  # unreadable file: one line for the user
        raise UsageError(f"cannot read clip {clip.name}: {e}") from None


def _probe_clip(clip: Path) -> tuple[tuple[int, int], int, float | None]:
    """(source H, W), frame count, fps -- without decoding every frame when the container
    says how many there are."""
    from loupe.sources.open import open_source

    try:
        src = open_source(clip)
        try:
            fps = src.fps
            count = getattr(src, "frame_count", None)
            first = next(iter(src))
        finally:
            src.close()
    except Exception as e:
        raise UsageError(f"cannot read clip {clip.name}: {e}") from None
    hw = (int(first.pixels.shape[0]), int(first.pixels.shape[1]))
    if not count:
        count = len(_read_clip(clip)[0])
    return hw, int(count), fps


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------
def _device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _to_tensor(frames_u8: np.ndarray, crop: Sequence[int], device: torch.device) -> torch.Tensor:
    t, left, h, w = crop
    x = torch.from_numpy(np.ascontiguousarray(frames_u8[:, t:t + h, left:left + w]))
    return x.permute(0, 3, 1, 2).to(device).float().div_(255.0)


def _step(model: HNeRV, opt: torch.optim.Optimizer, batch: torch.Tensor) -> float:
    recon, _ = model(batch)
    loss = F.mse_loss(recon, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def _time_steps(cfg: HNeRVConfig, x: torch.Tensor, batch: int, threads: int, n: int = 2) -> float:
    """Seconds per training step (the best of ``n`` after one warm-up) at ``threads``."""
    torch.manual_seed(0)
    model = HNeRV(cfg).to(x.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    if x.device.type == "cpu":
        torch.set_num_threads(threads)
    b = x[:batch]
    times = []
    for _ in range(n + 1):
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        _step(model, opt, b)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times[1:])


def _pick_threads(cfg: HNeRVConfig, x: torch.Tensor, batch: int) -> tuple[int, float]:
    """(threads, seconds per step): 2 or 1 torch threads, whichever steps faster now."""
    cores = min(2, os.cpu_count() or 1)
    best, best_t = cores, _time_steps(cfg, x, batch, cores)
    if cores > 1:
        t1 = _time_steps(cfg, x, batch, 1)
        logger.info("step time: %d threads %.3f s, 1 thread %.3f s", cores, best_t, t1)
        if t1 < best_t * 0.95:
            best, best_t = 1, t1
    torch.set_num_threads(best)
    return best, best_t


def _lr_at(frac: float, peak: float, warmup: float = 0.1, floor: float = 0.01) -> float:
    if frac < warmup:
        return peak * max(frac / warmup, 0.02)
    f = min(1.0, (frac - warmup) / (1.0 - warmup))
    return peak * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * f)))


@dataclass
class _TrainOutcome:
    model: HNeRV
    epochs: int
    seconds: float
    threads: int
    last_psnr: float


def fit_frames(
    x: torch.Tensor, cfg: HNeRVConfig, *, minutes: float | None, epochs: int | None,
    progress: Progress | None = None, batch: int = 2, lr: float = 2e-3,
    threads: int = 0, seed: int = 0,
) -> _TrainOutcome:
    """Train a fresh :class:`HNeRV` on frames ``x`` (N x 3 x H x W in [0, 1], on the device).

    Stops after ``epochs`` epochs or ``minutes`` of training, whichever first (at least one
    epoch); ``progress`` is updated about once a second (psnr, loss, epoch, eta_s and a status
    line) and checked after every step: a cancel raises ``loupe.base.progress.Cancelled``."""
    progress = as_progress(progress)
    if epochs is None and minutes is None:
        raise ValueError("give epochs, minutes or both")
    dev = x.device
    if dev.type == "cpu":
        if threads <= 0:
            threads, _ = _pick_threads(cfg, x, batch)
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = HNeRV(cfg).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
    n = int(x.shape[0])
    steps_per_epoch = -(-n // batch)
    budget = minutes * 60.0 if minutes is not None else math.inf
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    epoch, last_report = 0, 0.0
    psnr = math.nan

    def fraction(ep_float: float, elapsed: float) -> float:
        a = ep_float / epochs if epochs else 0.0
        b = elapsed / budget if math.isfinite(budget) else 0.0
        return min(1.0, max(a, b))

    while True:
        perm = torch.randperm(n, generator=gen).to(dev)
        sse, count = 0.0, 0
        for s in range(steps_per_epoch):
            elapsed = time.perf_counter() - t0
            frac = fraction(epoch + s / steps_per_epoch, elapsed)
            for g in opt.param_groups:
                g["lr"] = _lr_at(frac, lr)
            idx = perm[s * batch:(s + 1) * batch]
            loss = _step(model, opt, x[idx])
            sse += loss * len(idx)
            count += len(idx)
            now = time.perf_counter()
            if now - last_report >= 1.0:
                last_report = now
                done = fraction(epoch + (s + 1) / steps_per_epoch, now - t0)
                eta = (now - t0) * (1.0 - done) / max(done, 1e-6)
                progress.update(done, f"training, epoch {epoch + 1}", psnr=psnr_from_mse(sse / count, 1.0),
                                loss=loss, epoch=epoch + 1, eta_s=eta)
            progress.check()
        epoch += 1
        psnr = psnr_from_mse(sse / max(count, 1), 1.0)
        elapsed = time.perf_counter() - t0
        logger.info("epoch %d: train PSNR %.2f dB, %.0f s", epoch, psnr, elapsed)
        if (epochs is not None and epoch >= epochs) or elapsed >= budget:
            break
    return _TrainOutcome(model=model.eval(), epochs=epoch, seconds=time.perf_counter() - t0,
                         threads=threads if dev.type == "cpu" else 0, last_psnr=psnr)


# --------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------
@torch.no_grad()
def decode_all(decoder: HNeRVDecoder, emb: torch.Tensor, batch: int = 8) -> np.ndarray:
    """N x H x W x 3 uint8 frames the decoder makes from ``emb`` (rounded as a player would)."""
    decoder.eval()
    out = []
    for i in range(0, len(emb), batch):
        y = decoder(emb[i:i + batch]).clamp(0, 1).mul(255.0).round().to(torch.uint8)
        out.append(y.permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


def quality(ref_u8: np.ndarray, dist_u8: np.ndarray, *, yuv: bool = True) -> dict[str, float]:
    """RGB PSNR (mean over frames) and, with ``yuv``, FFmpeg-style YUV PSNR/SSIM pooled."""
    out = {"psnr_rgb": float(np.mean(q.psnr(ref_u8, dist_u8, 255.0, batch=True))),
           "psnr_yuv_pooled": math.nan, "psnr_yuv_mean": math.nan, "ssim_yuv": math.nan}
    if yuv:
        frames = [q.frame_metrics(q.rgb_to_yuv420(a), q.rgb_to_yuv420(b))
                  for a, b in zip(ref_u8, dist_u8)]
        pooled = q.pool(frames)
        out.update(psnr_yuv_pooled=pooled["psnr_pooled"], psnr_yuv_mean=pooled["psnr_mean"],
                   ssim_yuv=pooled["ssim_mean"])
    return out


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def estimate(clip: str, params: float, device: str | None = None, *,
             crop: Sequence[int] | None = None) -> FitEstimate:
    """Time a default fit of ``clip`` at ``params`` before starting it: a few training steps
    are timed (1 and 2 threads on CPU) and scaled to :data:`ESTIMATE_EPOCHS` epochs;
    ``needs_gpu`` when that exceeds 30 minutes on a CPU."""
    path = _resolve_clip(clip)
    params = parse_params(params)
    source_hw, count, _ = _probe_clip(path)
    pl = plan(source_hw, count, params, crop)
    dev = _device(device)
    frames, _ = _read_clip(path, max_frames=2)
    x = _to_tensor(frames, pl.crop, dev)
    batch = 2
    if dev.type == "cpu":
        keep = torch.get_num_threads()
        try:
            _, per_step = _pick_threads(pl.config, x, batch)
        finally:
            torch.set_num_threads(keep)
    else:
        per_step = _time_steps(pl.config, x, batch, 0)
    per_epoch = per_step * (-(-count // batch))
    seconds = per_epoch * ESTIMATE_EPOCHS + 0.5 * count * x[0].numel() / 3 / 2e5 + 10.0
    h, w = pl.crop[2], pl.crop[3]
    needs_gpu = dev.type == "cpu" and seconds > GPU_THRESHOLD_S
    where = "this GPU" if dev.type == "cuda" else "this CPU"
    msg = (f"{count} frames {h}x{w}, {params / 1e6:.2g}M parameters: about "
           f"{_fmt_s(seconds)} on {where} for a good fit ({ESTIMATE_EPOCHS} epochs, "
           f"{_fmt_s(per_epoch)} each)")
    if needs_gpu:
        msg += "; this clip needs a GPU (or a shorter span, a smaller crop or fewer parameters)"
    return FitEstimate(seconds=seconds, frames=count, size=(h, w), needs_gpu=needs_gpu,
                       message=msg, seconds_per_epoch=per_epoch, device=dev.type)


def _fmt_s(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def fit_hnerv_clip(
    clip: str, out: Path, *, params: float = 0.3e6, minutes: float | None = None,
    epochs: int | None = None, progress: Progress | None = None,
    crop: Sequence[int] | None = None, device: str | None = None, threads: int = 0,
    max_frames: int | None = None, batch: int = 2, lr: float = 2e-3, name: str | None = None,
    demo: bool = False,
) -> HNeRVFitResult:
    """Fit, quantise, entropy-code and export (see the module docstring).

    ``progress`` (``loupe.base.progress``) gets a status line and psnr, loss, epoch, eta_s while
    training and at each later stage; a cancel raises ``Cancelled`` and nothing is written.
    Bad input raises UsageError (one line)."""
    from loupe_models.fitters import hnerv_codec

    t_start = time.perf_counter()
    progress = as_progress(progress)
    params = parse_params(params)
    if epochs is None and minutes is None:
        epochs, minutes = DEFAULT_EPOCHS, DEFAULT_MINUTES
    if epochs is not None and epochs < 1:
        raise UsageError("epochs must be at least 1")
    if minutes is not None and not minutes > 0:
        raise UsageError("minutes must be positive")
    out = Path(out)
    path = _resolve_clip(clip)

    def say(frac: float, status: str, **extra: Any) -> None:
        progress.update(frac, status, **{"psnr": None, "loss": None, "epoch": None, "eta_s": None, **extra})
        progress.check()

    say(0.0, "reading the clip")
    frames, fps = _read_clip(path, max_frames=max_frames)
    n = len(frames)
    pl = plan(frames.shape[1:3], n, params, crop)
    cfg = pl.config
    dev = _device(device)
    x = _to_tensor(frames, pl.crop, dev)
    logger.info("fitting %d frames, crop %s, config %s on %s", n, pl.crop, cfg.to_dict(), dev)

    outcome = fit_frames(x, cfg, minutes=minutes, epochs=epochs, progress=progress.part(0.0, 0.95),
                         batch=batch, lr=lr, threads=threads)
    model = outcome.model
    say(0.95, "quantising and entropy-coding", epoch=outcome.epochs)
    with torch.no_grad():
        emb = torch.cat([model.encode(x[i:i + 8]) for i in range(0, n, 8)])
    target = (x.mul(255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    float_frames = decode_all(model.decoder_model(), emb)
    meta = {"clip": path.name, "crop": list(pl.crop), "source_size": list(pl.source_size),
            "fps": fps, "frames": n}
    dec_state = {k: v.detach().cpu() for k, v in model.decoder_model().state_dict().items()}
    data = hnerv_codec.encode_representation(dec_state, emb.cpu(), 8, 6,
                                             config=cfg.to_dict(), meta=meta)
    _, sd, emb_q = hnerv_codec.decode_representation(data)
    qdec = HNeRVDecoder(cfg)
    qdec.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()})
    qemb = torch.from_numpy(np.ascontiguousarray(emb_q, dtype=np.float32))
    say(0.97, "measuring the decoded bits", epoch=outcome.epochs)
    q_frames = decode_all(qdec, qemb)
    qual = quality(target, q_frames)
    psnr_float = quality(target, float_frames, yuv=False)["psnr_rgb"]
    bits = len(data) * 8
    h, w = cfg.out_size
    bpp = bits / (n * h * w)
    say(0.98, "exporting", epoch=outcome.epochs, psnr=qual["psnr_rgb"])
    codec_path = out.with_suffix(".hnerv")
    out.parent.mkdir(parents=True, exist_ok=True)
    codec_path.write_bytes(data)
    info: dict[str, Any] = {
        "name": name or f"HNeRV {params / 1e6:.2g}M ({path.name})",
        "crop": list(pl.crop), "source_size": list(pl.source_size),
        "fps": float(fps or 25.0), "bits": bits, "bpp": bpp,
        "representation": {"weights_bits": 8, "embedding_bits": 6,
                           "params": cfg.decoder_params(), "embedding_values": int(qemb.numel()),
                           "file": codec_path.name},
        "clip": path.name,
        "source": {"architecture": "HNeRV", "demo": bool(demo),
                   "training_data": f"{path.name} ({n} frames, crop {h}x{w}), fitted by Loupe",
                   "psnr_fit": round(qual["psnr_rgb"], 3),
                   "psnr_fit_float": round(psnr_float, 3),
                   "ssim_fit": None if math.isnan(qual["ssim_yuv"]) else round(qual["ssim_yuv"], 5),
                   "epochs": outcome.epochs, "params_budget": params},
    }
    try:
        export_compression(qdec, qemb, info, out)
    except Exception:
        codec_path.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - t_start
    say(1.0, "done", epoch=outcome.epochs, psnr=qual["psnr_rgb"], eta_s=0.0)
    return HNeRVFitResult(
        onnx_path=out, codec_path=codec_path, psnr=qual["psnr_rgb"], ssim=qual["ssim_yuv"],
        bpp=bpp, bits=bits, seconds=seconds, frames=n, epochs=outcome.epochs,
        psnr_float=psnr_float, psnr_yuv=qual["psnr_yuv_pooled"],
        psnr_yuv_mean=qual["psnr_yuv_mean"], train_seconds=outcome.seconds,
        threads=outcome.threads, device=dev.type, config=cfg, crop=list(pl.crop))


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------
def _parse_crop(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        vals = [int(v) for v in text.lower().replace("x", ",").split(",")]
    except ValueError:
        vals = []
    if len(vals) not in (2, 4) or any(v < 0 for v in vals):
        raise UsageError(f"--crop: expected HxW or TOP,LEFT,H,W, got {text!r}")
    return vals


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="loupe fit hnerv",
        description="Fit HNeRV (a neural video representation) to a clip; writes a compression "
        "ONNX and the entropy-coded .hnerv file next to it.")
    ap.add_argument("clip", help="video file or shipped sample clip name")
    ap.add_argument("--out", required=True, help="ONNX file to write (.hnerv goes next to it)")
    ap.add_argument("--params", default="0.3M", help="parameter budget, decoder + embeddings "
                    "(official --modelsize), e.g. 0.3M (default)")
    ap.add_argument("--minutes", type=float, help=f"training time limit (default {DEFAULT_MINUTES:g} "
                    f"with --epochs unset)")
    ap.add_argument("--epochs", type=int, help=f"epochs (default {DEFAULT_EPOCHS} with --minutes unset)")
    ap.add_argument("--crop", help="HxW centre crop or TOP,LEFT,H,W (default: chosen from the size)")
    ap.add_argument("--frames", type=int, help="fit only the first N frames")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: time 1 and 2, keep the faster)")
    ap.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    ap.add_argument("--estimate", action="store_true", help="only print the time estimate")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        crop = _parse_crop(args.crop)
        params = parse_params(args.params)
        if args.frames is not None and args.frames < 1:
            raise UsageError("--frames must be at least 1")
        if args.estimate:
            est = estimate(args.clip, params, args.device, crop=crop)
            print(est.message)
            return 0
        last = [0.0]

        def report(frac: float, info: dict[str, Any]) -> None:
            now = time.monotonic()
            if now - last[0] >= 5.0 or frac >= 1.0:
                last[0] = now
                psnr, eta = info.get("psnr"), info.get("eta_s")
                print(f"{100 * frac:5.1f}%  {info.get('status', '')}"
                      + (f"  PSNR {psnr:.2f} dB" if psnr is not None else "")
                      + (f"  ETA {_fmt_s(eta)}" if eta is not None else ""), file=sys.stderr)

        res = fit_hnerv_clip(args.clip, Path(args.out), params=params, minutes=args.minutes,
                             epochs=args.epochs, progress=CallbackProgress(report), crop=crop, device=args.device,
                             threads=args.threads, max_frames=args.frames)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # export check failed or similar
        from loupe_models.exporters.onnx import ExportError

        if isinstance(e, ExportError):
            print(f"error: {e}", file=sys.stderr)
            return 1
        raise
    s = res.summary()
    print(f"wrote {res.onnx_path} and {res.codec_path.name}: {res.frames} frames "
          f"{res.config.out_size[0]}x{res.config.out_size[1]}, {res.epochs} epochs in "
          f"{res.train_seconds:.0f} s ({res.threads or res.device} threads), {res.bits:,} bits = "
          f"{res.bpp:.4f} bpp; RGB PSNR {res.psnr:.2f} dB (before quantisation "
          f"{res.psnr_float:.2f}), YUV PSNR {s['psnr_yuv_pooled']} dB, SSIM {s['ssim_yuv']}; "
          f"total {res.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
