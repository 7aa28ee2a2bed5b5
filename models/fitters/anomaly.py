"""Fit a next-frame predictor to *normal* footage and export it as a Loupe anomaly model.

CLI::

    python -m loupe_models.fit_anomaly CLIP --normal START:END --out model.onnx \\
        [--size 128] [--minutes 4] [--quick]

``CLIP`` is a video file or the name of a shipped sample clip (``carphone_pristine.mp4``);
``--normal`` is the span in seconds that shows only normal activity; ``--size`` is the
working resolution, ``N`` (N x N) or ``WIDTHxHEIGHT``, multiples of 8. Progress goes to
stderr; at the end the held-out PSNR of the predictor and of the copy-the-last-frame baseline
are printed.

Procedure (:func:`fit_predictor`):

1. Every frame is resized (``cv2.INTER_AREA``, aspect not kept, as the official U-Net data
   code) to the working size and scaled to ``x/127.5 - 1``.
2. Windows are ``past`` consecutive frames plus the frame after them (the target). The
   last ``heldout`` share of the span (at least ``past + 1`` frames) is held out: a
   held-out window lies entirely inside it, a training window entirely before it, so no
   held-out target is ever trained on. Windows across a hard cut (mean absolute difference
   of two consecutive frames above ``cut_threshold`` grey levels) are skipped: a cut is
   an editing artefact, not normal motion.
3. :class:`~loupe_models.nets.anomaly.TemporalAttentionPredictor` (width 8, 2 heads, flow warp
   and motion skips, about 0.1 M parameters; it starts as the copy-the-last-frame
   predictor) is trained with Adam (lr 2e-3, 20 warm-up steps, then cosine decay to 5 %,
   both over ``max(step / steps, elapsed / time budget)``) on the intensity loss (mean
   squared error) plus the gradient loss of Liu et al. 2018 (L1 between the absolute
   horizontal/vertical image gradients of prediction and target); no adversarial or flow
   term. Batches of 4 random 96x96 crops of the working frames (the model is fully
   convolutional and is evaluated on whole frames), each window randomly played backwards
   and flipped horizontally, and per batch a random vertical flip and transpose: the
   predictor has to learn motion extrapolation, not the directions of the training shots
   (without this it generalised worse than the copy baseline on ``bikes.mp4``).
   ``torch.set_num_threads(threads)`` (default 2) for the run; ``threads=0`` times a few
   steps at 2 and at 1 thread first and keeps the faster (on a CPU shared with other
   work two OpenMP threads were up to 20x slower than one).
4. Evaluation (eval mode, whole frames): per-frame PSNR (dB, frames in [-1, 1] with data
   range 2, as the official ``psnr_error``) of the predictions on the held-out windows, and
   of the copy-the-last-frame baseline (frame ``t-1`` as the prediction of frame ``t``) on
   the same targets; the mean of the per-frame values is reported.
5. Calibration (:func:`loupe_models.exporters.anomaly.calibrate`): from the PSNRs of the predictions
   on the normal windows, ``calibration_windows`` (64) evenly spaced training windows plus
   all held-out windows (unseen normal data, which keeps the range from the optimism of the
   training frames): ``psnr_max`` = 99th percentile, ``psnr_min = p1 - (p99 - p1)``; a
   normal frame at the 1st percentile scores anomaly 0.5, the card's default threshold.

Measured on a shared 2-core CPU under load (``--threads 0`` picked one thread; 4-minute
budget; decode, fit, evaluation and export, mean held-out PSNR vs copy-last-frame):
``bikes.mp4`` 0-10 s at 256x256: 267 s, 34.6 vs 31.7 dB; at 128x128: 259 s, 36.8 vs
33.9 dB; ``carphone_pristine.mp4`` 0-4 s at 176x144: 255 s, 33.0 vs 32.5 dB.

Exit codes: 0 ok (the predictor beat the baseline or not; both numbers are printed), 1 the
export check failed, 2 bad arguments or an unreadable clip.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from loupe.base.media import resolve_clip
from loupe.base.progress import CallbackProgress, Progress, as_progress
from loupe.base.text import parse_span  # re-exported: the fitters' --normal/--span
from loupe_models.exporters.anomaly import (
    AnomalyExportError,
    calibrate,
    export_predictor,
    psnr_frames,
)
from loupe_models.exporters.onnx import run_cli
from loupe_models.nets.anomaly import TemporalAttentionPredictor

logger = logging.getLogger(__name__)

__all__ = [
    "FitConfig",
    "FitResult",
    "decode_span",
    "fastest_threads",
    "fit_predictor",
    "gradient_loss",
    "main",
    "parse_size",
    "parse_span",
    "split_windows",
]

@dataclass(frozen=True)
class FitConfig:
    """Training settings of :func:`fit_predictor` (defaults: the recommended run)."""

    time_budget_s: float = 240.0
    steps: int | None = None  # None: train until the time budget is spent
    batch: int = 4
    crop: int | None = 96  # square training crop (multiple of 8); None: whole frames
    lr: float = 2e-3
    warmup_steps: int = 20
    width: int = 8
    heads: int = 2
    depth: int = 1
    flow: bool = True
    motion_skips: bool = True
    grad_loss_weight: float = 1.0
    augment: bool = True  # time reversal, vertical flip, transpose (besides horizontal flip)
    static_prob: float = 0.1  # share of windows made of one repeated frame (no motion)
    heldout: float = 0.18
    cut_threshold: float = 40.0
    calibration_windows: int = 64  # training windows (evenly spaced) used for calibration
    threads: int = 2  # 0: time a few steps at 2 and at 1 thread and keep the faster
    seed: int = 0

    @classmethod
    def quick(cls) -> FitConfig:
        """A smoke run: a few steps of a narrow model on one thread."""
        return cls(time_budget_s=30.0, steps=3, batch=2, crop=None, width=4, heads=1,
                   threads=1)


@dataclass
class FitResult:
    """What :func:`fit_predictor` returns."""

    model: TemporalAttentionPredictor
    size: tuple[int, int]  # (height, width) the model was trained and calibrated at
    past: int
    calibration: dict[str, Any]
    heldout_psnr: float  # mean per-frame PSNR (dB) of the predictor on held-out windows
    baseline_psnr: float  # the same for copy-the-last-frame
    heldout_psnr_frames: np.ndarray
    baseline_psnr_frames: np.ndarray
    train_psnr: float  # mean per-frame PSNR on the calibration subset of training windows
    train_baseline_psnr: float
    train_windows: int
    heldout_windows: int
    skipped_windows: int  # windows across a hard cut
    steps: int
    seconds: float
    final_loss: float
    stopped_early: bool = False
    threads: int = 0  # torch threads used for training
    config: FitConfig = field(default_factory=FitConfig)

    @property
    def gain_db(self) -> float:
        """Held-out PSNR of the predictor minus that of the copy baseline."""
        return self.heldout_psnr - self.baseline_psnr

    @property
    def heldout_win_rate(self) -> float:
        """Share of held-out frames the predictor predicts better than the copy baseline."""
        if self.heldout_psnr_frames.size == 0:
            return float("nan")
        return float(np.mean(self.heldout_psnr_frames > self.baseline_psnr_frames))

    def summary(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "past_frames": self.past,
            "heldout_psnr": round(self.heldout_psnr, 3),
            "baseline_psnr": round(self.baseline_psnr, 3),
            "gain_db": round(self.gain_db, 3),
            "heldout_win_rate": round(self.heldout_win_rate, 3),
            "train_psnr": round(self.train_psnr, 3),
            "train_baseline_psnr": round(self.train_baseline_psnr, 3),
            "train_windows": self.train_windows,
            "heldout_windows": self.heldout_windows,
            "skipped_windows": self.skipped_windows,
            "steps": self.steps,
            "seconds": round(self.seconds, 1),
            "threads": self.threads,
        }


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------
def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 -> ``(N, h, w, 3)`` uint8 at ``size = (h, w)`` (INTER_AREA)."""
    h, w = int(size[0]), int(size[1])
    if frames.shape[1:3] == (h, w):
        return np.ascontiguousarray(frames)
    out = np.empty((len(frames), h, w, 3), np.uint8)
    for i, f in enumerate(frames):
        interp = cv2.INTER_AREA if f.shape[0] >= h and f.shape[1] >= w else cv2.INTER_LINEAR
        out[i] = cv2.resize(np.ascontiguousarray(f), (w, h), interpolation=interp)
    return out


def cut_after(frames: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean ``(N-1,)``: True where frame ``i+1`` starts a new shot (mean absolute
    difference to frame ``i`` above ``threshold`` grey levels)."""
    if len(frames) < 2:
        return np.zeros((0,), bool)
    d = np.abs(frames[1:].astype(np.int16) - frames[:-1].astype(np.int16))
    return d.reshape(len(frames) - 1, -1).mean(axis=1) > threshold


def split_windows(
    n_frames: int,
    past: int,
    heldout: float,
    cuts: np.ndarray | None = None,
) -> tuple[list[int], list[int], int]:
    """(training targets, held-out targets, windows skipped at cuts).

    A window is frames ``t-past .. t`` (target ``t``). The held-out part is the last
    ``max(past + 1, round(heldout * n))`` frames; training windows end before it, held-out
    windows lie inside it. ``cuts[i]`` True drops every window holding frames ``i, i+1``.
    """
    if n_frames < 2 * (past + 1):
        raise ValueError(
            f"need at least {2 * (past + 1)} frames for {past} past frames "
            f"(training and held-out windows), got {n_frames}"
        )
    n_held = max(past + 1, round(heldout * n_frames))
    n_held = min(n_held, n_frames - (past + 1))
    split = n_frames - n_held
    cut_idx = np.flatnonzero(cuts) if cuts is not None else np.zeros((0,), int)

    def clean(t: int) -> bool:  # no cut between frames t-past .. t
        return not np.any((cut_idx >= t - past) & (cut_idx < t))

    train_all = list(range(past, split))
    held_all = list(range(split + past, n_frames))
    train = [t for t in train_all if clean(t)]
    held = [t for t in held_all if clean(t)]
    skipped = len(train_all) - len(train) + len(held_all) - len(held)
    return train, held, skipped


def _to_unit(frames_u8: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., 3, h, w]`` -> float32 ``x/127.5 - 1``."""
    return frames_u8.float() / 127.5 - 1.0


def _windows(
    data: torch.Tensor, targets: Sequence[int], past: int, reverse: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[B, 3*past, h, w]`` (frames ``t-past .. t-1``) and targets ``[B, 3, h, w]``
    (frame ``t``) in [-1, 1]. ``reverse[b]`` True plays window ``b`` backwards: frames
    ``t .. t-past+1`` predict frame ``t-past``."""
    idx = torch.as_tensor(list(targets), dtype=torch.long)
    win = idx[:, None] + torch.arange(-past, 1, dtype=torch.long)[None, :]  # [B, past+1]
    if reverse is not None:
        rev = torch.from_numpy(np.asarray(reverse, bool))
        win = torch.where(rev[:, None], win.flip(1), win)
    frames = data[win]  # [B, past+1, 3, h, w] uint8
    b, _, c, h, w = frames.shape
    return _to_unit(frames[:, :past].reshape(b, past * c, h, w)), _to_unit(frames[:, past])


def _augment(
    x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, more: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flip per sample; with ``more`` also a vertical flip and (square
    crops) a transpose per batch. The same for every frame of a window."""
    flip = torch.from_numpy(rng.random(x.shape[0]) < 0.5)[:, None, None, None]
    x, y = torch.where(flip, x.flip(-1), x), torch.where(flip, y.flip(-1), y)
    if more:
        if rng.random() < 0.5:
            x, y = x.flip(-2), y.flip(-2)
        if x.shape[-1] == x.shape[-2] and rng.random() < 0.5:
            x, y = x.transpose(-1, -2), y.transpose(-1, -2)
    return x.contiguous(), y.contiguous()


def gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Liu et al.'s gradient constraint: mean of ``||dx(pred)| - |dx(target)||`` plus the
    same for ``dy`` (neighbour differences inside the frame)."""
    pdx = (pred[..., :, 1:] - pred[..., :, :-1]).abs()
    tdx = (target[..., :, 1:] - target[..., :, :-1]).abs()
    pdy = (pred[..., 1:, :] - pred[..., :-1, :]).abs()
    tdy = (target[..., 1:, :] - target[..., :-1, :]).abs()
    return (pdx - tdx).abs().mean() + (pdy - tdy).abs().mean()


@torch.no_grad()
def _predict_psnr(
    model: TemporalAttentionPredictor, data: torch.Tensor, targets: Sequence[int], past: int,
    chunk: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame PSNR of the model and of the copy-last-frame baseline on ``targets``."""
    model.eval()
    got: list[np.ndarray] = []
    base: list[np.ndarray] = []
    targets = list(targets)
    for i in range(0, len(targets), chunk):
        x, y = _windows(data, targets[i : i + chunk], past)
        pred = model(x).cpu().numpy()
        got.append(psnr_frames(pred, y.cpu().numpy()))
        base.append(psnr_frames(x[:, -3:].cpu().numpy(), y.cpu().numpy()))
    if not got:
        return np.zeros((0,)), np.zeros((0,))
    return np.concatenate(got), np.concatenate(base)


def _mean(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


# --------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------
def fit_predictor(
    frames: np.ndarray,
    size: tuple[int, int] = (128, 128),
    past: int = 4,
    *,
    steps: int | None = None,
    time_budget_s: float | None = None,
    progress: Progress | None = None,
    seed: int | None = None,
    config: FitConfig | None = None,
) -> FitResult:
    """Train a :class:`~loupe_models.nets.anomaly.TemporalAttentionPredictor` on normal footage.

    ``frames``: ``(N, H, W, 3)`` uint8 RGB, consecutive frames of normal activity (at least
    ``2*(past+1)``). ``size``: working ``(height, width)``, multiples of 8. ``steps`` and
    ``time_budget_s`` (seconds) override the config; training stops at whichever comes
    first. ``progress`` (``loupe.base.progress``) is updated after every step with ``loss``,
    ``eta_s`` and ``step``; once it is cancelled training stops there (the model trained so far
    is still evaluated and returned, with ``stopped_early``).
    See the module docstring for the split, the losses and the calibration.
    """
    cfg = config or FitConfig()
    overrides: dict[str, Any] = {}
    if steps is not None:
        overrides["steps"] = int(steps)
    if time_budget_s is not None:
        overrides["time_budget_s"] = float(time_budget_s)
    if seed is not None:
        overrides["seed"] = int(seed)
    if overrides:
        cfg = FitConfig(**{**cfg.__dict__, **overrides})
    h, w = int(size[0]), int(size[1])
    if h % 8 or w % 8 or h <= 0 or w <= 0:
        raise ValueError(f"size must be positive multiples of 8, got {(h, w)}")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (N, H, W, 3) uint8, got {frames.shape} {frames.dtype}")

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cfg.threads)) if cfg.threads > 0 else 2)
    try:
        return _fit(frames, (h, w), int(past), cfg, as_progress(progress))
    finally:
        torch.set_num_threads(prev_threads)


def fastest_threads(step: Callable[[], None]) -> int:
    """1 or 2 torch threads, whichever runs ``step`` (one training step of a throwaway copy)
    faster here and now: times two steps after one warm-up for each, and leaves the faster set."""
    best, best_t = 1, float("inf")
    for n in (min(2, os.cpu_count() or 1), 1):
        torch.set_num_threads(n)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        t = min(times[1:])
        logger.info("threads %d: %.3f s per step", n, t)
        if t < best_t * 0.95:
            best, best_t = n, t
        if n == 1:
            break
    return best


def _pick_threads(
    model: TemporalAttentionPredictor, data: torch.Tensor, train_t: Sequence[int], past: int,
    crop: int | None, cfg: FitConfig,
) -> int:
    """1 or 2 torch threads, whichever runs a training step faster here and now.

    On a busy CPU (other processes on the cores) two OpenMP threads can be many times
    slower than one (measured: 20x on a shared 2-core machine under load 4), on an idle
    2-core CPU they are faster. Times two steps (after one warm-up) of a throwaway copy.
    """
    probe = copy.deepcopy(model).train()
    rng = np.random.default_rng(cfg.seed + 1)
    x, y = _windows(data, rng.choice(train_t, size=cfg.batch).tolist(), past)
    if crop is not None:
        x, y = x[..., :crop, :crop], y[..., :crop, :crop]

    def step() -> None:
        loss = F.mse_loss(probe(x), y)
        probe.zero_grad(set_to_none=True)
        loss.backward()

    best = fastest_threads(step)
    logger.info("training with %d torch thread(s)", best)
    return best


def _fit(
    frames: np.ndarray, size: tuple[int, int], past: int, cfg: FitConfig,
    progress: Progress,
) -> FitResult:
    t_start = time.perf_counter()
    h, w = size
    small = resize_frames(frames, size)
    cuts = cut_after(small, cfg.cut_threshold) if cfg.cut_threshold > 0 else None
    train_t, held_t, skipped = split_windows(len(small), past, cfg.heldout, cuts)
    if not train_t:
        raise ValueError("no training windows left (too few frames, or cuts everywhere)")
    logger.info(
        "fit: %d frames at %dx%d, %d training / %d held-out windows, %d skipped at cuts",
        len(small), w, h, len(train_t), len(held_t), skipped,
    )
    # a GPU when torch sees one (the window's "Learn normal" and `loupe fit anomaly` alike)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = torch.from_numpy(small).permute(0, 3, 1, 2).contiguous().to(device)  # [N, 3, h, w] uint8

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = TemporalAttentionPredictor(
        past_frames=past, width=cfg.width, heads=cfg.heads, depth=cfg.depth, flow=cfg.flow,
        motion_skips=cfg.motion_skips,
    ).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    budget = max(1e-3, float(cfg.time_budget_s))
    crop = cfg.crop
    if crop is not None:
        crop = int(crop) // 8 * 8
        if crop <= 0 or (crop >= h and crop >= w):
            crop = None

    def fraction_done(step: int, elapsed: float) -> float:
        by_time = elapsed / budget
        by_steps = step / cfg.steps if cfg.steps else 0.0
        return min(1.0, max(by_time, by_steps))

    if cfg.threads <= 0 and device.type == "cpu":
        torch.set_num_threads(_pick_threads(model, data, train_t, past, crop, cfg))

    model.train()
    t_train = time.perf_counter()
    step = 0
    loss_ema = float("nan")
    stopped = False
    while True:
        frac = fraction_done(step, time.perf_counter() - t_train)
        if frac >= 1.0:
            break
        warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        lr = cfg.lr * warm * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        batch_t = rng.choice(train_t, size=cfg.batch, replace=len(train_t) < cfg.batch)
        reverse = rng.random(cfg.batch) < 0.5 if cfg.augment else None
        x, y = _windows(data, batch_t.tolist(), past, reverse)
        if cfg.static_prob > 0:
            still = torch.from_numpy(rng.random(cfg.batch) < cfg.static_prob).to(device)
            if bool(still.any()):
                x = torch.where(still[:, None, None, None], y.repeat(1, past, 1, 1), x)
        if crop is not None:
            ch, cw = min(crop, h), min(crop, w)
            y0 = int(rng.integers(0, h - ch + 1))
            x0 = int(rng.integers(0, w - cw + 1))
            x, y = x[..., y0 : y0 + ch, x0 : x0 + cw], y[..., y0 : y0 + ch, x0 : x0 + cw]
        x, y = _augment(x, y, rng, cfg.augment)
        pred = model(x)
        loss = F.mse_loss(pred, y) + cfg.grad_loss_weight * gradient_loss(pred, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        value = float(loss.detach())
        loss_ema = value if math.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * value
        elapsed = time.perf_counter() - t_train
        frac = fraction_done(step, elapsed)
        eta = elapsed * (1.0 - frac) / frac if frac > 0 else float("inf")
        if step % 50 == 0:
            logger.info("step %d loss %.5f lr %.2e (%.0f s, eta %.0f s)", step, loss_ema, lr,
                        elapsed, eta)
        progress.update(frac, loss=loss_ema, eta_s=eta, step=step)
        if progress.cancelled:
            stopped = frac < 1.0
            logger.info("fit stopped (cancelled) at step %d", step)
            break
    train_seconds = time.perf_counter() - t_train
    model.eval()

    held_psnr, held_base = _predict_psnr(model, data, held_t, past)
    n_cal = max(1, min(len(train_t), int(cfg.calibration_windows)))
    cal_t = [train_t[i] for i in np.linspace(0, len(train_t) - 1, n_cal).round().astype(int)]
    train_psnr, train_base = _predict_psnr(model, data, sorted(set(cal_t)), past)
    model = model.cpu()  # export and the result live on the CPU
    normal = np.concatenate([train_psnr, held_psnr])
    calibration: dict[str, Any] = dict(calibrate(normal))
    calibration["source"] = (
        f"{len(train_psnr)} training and {len(held_psnr)} held-out normal windows"
    )
    result = FitResult(
        model=model,
        size=(h, w),
        past=past,
        calibration=calibration,
        heldout_psnr=_mean(held_psnr),
        baseline_psnr=_mean(held_base),
        heldout_psnr_frames=held_psnr,
        baseline_psnr_frames=held_base,
        train_psnr=_mean(train_psnr),
        train_baseline_psnr=_mean(train_base),
        train_windows=len(train_t),
        heldout_windows=len(held_t),
        skipped_windows=skipped,
        steps=step,
        seconds=time.perf_counter() - t_start,
        final_loss=loss_ema,
        stopped_early=stopped,
        threads=torch.get_num_threads(),
        config=cfg,
    )
    logger.info(
        "fit done: %d steps in %.0f s (training %.0f s); held-out PSNR %.2f dB vs copy-last %.2f dB",
        step, result.seconds, train_seconds, result.heldout_psnr, result.baseline_psnr,
    )
    return result


def fit_card_info(result: FitResult, name: str, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`~loupe_models.exporters.anomaly.predictor_card` arguments for a fitted predictor
    (RGB, fixed to the working size, calibration and the held-out evaluation in the card)."""
    src = {
        "architecture": (
            "CT-D2GAN-style next-frame predictor (TemporalAttentionPredictor: shared conv "
            "encoder, temporal multi-head self-attention at 1/8, conv decoder with last-frame "
            "and motion skips, output tanh(atanh(flow-warped last frame) + residual)), "
            f"{result.model.config}"
        ),
        "training": "loupe_models.fitters.anomaly (intensity + gradient loss, no GAN)",
        "evaluation": result.summary(),
    }
    src.update(source or {})
    return {
        "name": name,
        "past_frames": result.past,
        "color": "RGB",
        "fixed_size": result.size,
        "size_multiple": 8,
        "calibration": result.calibration,
        "source": src,
    }


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------
def parse_size(text: str) -> tuple[int, int]:
    """``"128"`` -> (128, 128); ``"160x96"`` (WIDTHxHEIGHT) -> (96, 160) as (height, width)."""
    t = text.lower().strip()
    if "x" in t:
        a, b = t.split("x", 1)
        hw = (int(b), int(a))
    else:
        hw = (int(t), int(t))
    if hw[0] <= 0 or hw[1] <= 0 or hw[0] % 8 or hw[1] % 8:
        raise ValueError(f"size {text!r}: width and height must be positive multiples of 8")
    return hw


def decode_span(
    path: str | Path, start: float = 0.0, end: float | None = None,
    size: tuple[int, int] | None = None, max_frames: int | None = None,
) -> tuple[np.ndarray, float | None]:
    """RGB uint8 frames of ``path`` with ``start <= timestamp < end`` (resized to ``size``
    = (h, w) while decoding when given) and the source's fps."""
    from loupe.sources.open import open_source

    src = open_source(path)
    out: list[np.ndarray] = []
    try:
        fps = src.fps
        for frame in src:
            if frame.timestamp < start - 1e-6:
                continue
            if end is not None and frame.timestamp >= end - 1e-6:
                break
            px = frame.pixels
            if px.ndim == 2:
                px = np.repeat(px[:, :, None], 3, axis=2)
            px = np.ascontiguousarray(px[:, :, :3]).astype(np.uint8, copy=False)
            if size is not None:
                px = resize_frames(px[None], size)[0]
            out.append(px)
            if max_frames is not None and len(out) >= max_frames:
                break
    finally:
        src.close()
    if not out:
        raise ValueError(f"no frames in {start}:{end} s of {path}")
    return np.stack(out), fps


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loupe_models.fit_anomaly",
        description="Fit a next-frame predictor to normal footage and export a Loupe anomaly model.",
    )
    p.add_argument("clip", help="video file, or the name of a shipped sample clip")
    p.add_argument("--normal", default=":", metavar="START:END",
                   help="span in seconds showing only normal activity (default: whole clip)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--size", default="128", help="working size: N or WIDTHxHEIGHT, multiples "
                   "of 8 (default 128)")
    p.add_argument("--minutes", type=float, default=4.0, help="training time budget (default 4)")
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--width", type=int, default=None, help="base channel width (default 16)")
    p.add_argument("--crop", type=int, default=None,
                   help="training crop side (default 96; 0 = whole frames)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads for training (default 2; 0: time 2 and 1 thread "
                   "and keep the faster, for a busy CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None, help="display name in the card")
    p.add_argument("--demo", action="store_true", help="mark the model as a demo in its card")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: a few frames, 32x32, 3 steps of a narrow model")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_parser(), argv, _run)


def _run(args: argparse.Namespace) -> int:
    try:
        start, end = parse_span(args.normal)
        size = (32, 32) if args.quick else parse_size(args.size)
        clip = resolve_clip(args.clip)
        cfg = FitConfig.quick() if args.quick else FitConfig()
        over: dict[str, Any] = {"time_budget_s": 60.0 * args.minutes, "seed": args.seed}
        if args.quick:
            over["time_budget_s"] = min(over["time_budget_s"], FitConfig.quick().time_budget_s)
        if args.steps is not None:
            over["steps"] = args.steps
        if args.width is not None:
            over["width"] = args.width
        if args.crop is not None:
            over["crop"] = args.crop or None
        if args.threads is not None:
            over["threads"] = max(0, args.threads)
        cfg = FitConfig(**{**cfg.__dict__, **over})
        frames, fps = decode_span(clip, start, end, size=size,
                                  max_frames=16 if args.quick else None)
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # SourceError and decoder failures
        print(f"error: cannot read {args.clip}: {e}", file=sys.stderr)
        return 2
    span = f"{start:g}:{'' if end is None else f'{end:g}'} s"
    print(f"fitting on {len(frames)} frames of {clip.name} ({span}) at {size[1]}x{size[0]}, "
          f"budget {cfg.time_budget_s:.0f} s", file=sys.stderr)

    last_print = [0.0]

    def report(frac: float, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if now - last_print[0] >= 5.0 or frac >= 1.0:
            last_print[0] = now
            print(f"  {100 * frac:5.1f}%  loss {info['loss']:.5f}  eta {info['eta_s']:5.0f} s", file=sys.stderr)

    try:
        result = fit_predictor(frames, size, 4, progress=CallbackProgress(report), config=cfg)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    name = args.name or f"Next-frame predictor ({clip.stem}, {size[1]}x{size[0]})"
    info = fit_card_info(result, name, {
        "training_data": f"{clip.name}, normal span {span}, {len(frames)} frames"
        + (f" at {fps:.3g} fps" if fps else ""),
        "demo": bool(args.demo),
    })
    try:
        out, check = export_predictor(result.model, args.out, info)
    except AnomalyExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    cal = result.calibration
    print(
        f"trained {result.steps} steps ({result.threads} thread(s)), {result.seconds:.0f} s in "
        f"all; {result.train_windows} training, "
        f"{result.heldout_windows} held-out windows ({result.skipped_windows} skipped at cuts)",
        file=sys.stderr,
    )
    diff = f"{check.max_abs_diff:.1e}" if check is not None else "n/a"
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB); onnxruntime vs torch max abs diff {diff}")
    print(f"calibration: psnr_min {cal['psnr_min']:.2f} dB, psnr_max {cal['psnr_max']:.2f} dB")
    verdict = "beats" if result.gain_db > 0 else "does NOT beat"
    print(
        f"held-out PSNR: predictor {result.heldout_psnr:.2f} dB vs copy-last-frame "
        f"{result.baseline_psnr:.2f} dB ({result.gain_db:+.2f} dB, predictor better on "
        f"{100 * result.heldout_win_rate:.0f}% of {result.heldout_windows} frames): {verdict} "
        "the baseline"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
