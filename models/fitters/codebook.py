"""Fit a small vector-quantised autoencoder on a clip and export it as a Loupe codebook model.

CLI (also ``loupe fit codebook``)::

    python -m loupe_models.fit_codebook CLIP --out model.onnx [--minutes 2.5] [--codes 256]
        [--k 1] [--span START:END] [--stride 4] [--size WIDTHxHEIGHT]

``CLIP`` is a video file or the name of a shipped sample clip (``bikes.mp4``). The whole
call (decoding, training, evaluation, export) keeps to ``--minutes``: training stops by the
wall clock. Progress goes to stderr; at the end the held-out reconstruction PSNR, the codes
used and the perplexity are printed.

Procedure (:func:`fit_codebook_frames`):

1. Frames of the span are decoded at a working size (the longer side at most 320 pixels,
   sides multiples of 8, aspect kept as far as that allows; ``cv2.INTER_AREA``), at most
   ``max_frames`` (600) of them, and scaled as VQ-VAE-2 does: ``x/255``, mean/std 0.5 ->
   [-1, 1]. The last 15 % of the frames (at least one, when there are two or more) are
   held out for evaluation and never trained on.
2. :class:`VQAutoencoder`: strided 4x4 convolutions to stride 4 (or 8), a 3x3 conv and a
   residual block, a 1x1 projection to the code dimension (32); a codebook of
   ``codebook_size`` vectors; a mirrored decoder with transposed convolutions.
   With ``k = 1`` every position takes its nearest code (Euclidean) and the codebook is
   an exponential-moving-average (k-means style) codebook (decay 0.97, Laplace-smoothed
   counts); with ``k > 1`` (Codebook Features, Tamkin et al. 2023) every position takes the
   ``k`` codes most similar to it by cosine similarity, most similar first, and their *sum*
   is decoded; that codebook is learned by gradient (``||sg(z) - sum||^2``). Both pass the
   gradient to the encoder straight through and add the commitment loss
   ``0.25 ||z - sg(q)||^2`` to the mean squared reconstruction error.
3. **Dead-code restarts**: usage is counted over windows of ``restart_every`` (20) steps
   (the first window is 5 steps); a code used less than 1 % of the mean count in a window
   is dead and is replaced by an encoder output of the latest batch, drawn with probability
   proportional to its squared distance to its current code (so badly represented inputs
   get codes; divided by ``k`` for summed codes). Restarts stop after 85 % of the training
   time so the decoder settles on the final codebook. Without restarts most codes of a
   randomly initialised codebook are never chosen (see the tests).
4. Adam (lr 2e-3, cosine decay to 5 % over the time budget), batches of 8 random 64x64
   crops with random horizontal flips. Thread count: a GPU when torch sees one, otherwise
   1 or 2 torch threads, whichever runs a training step faster here and now.
5. Evaluation on whole frames in eval mode: reconstruction PSNR (RGB in [0, 1], mean of
   per-frame PSNR) of the held-out frames; distinct codes used and perplexity
   (``exp`` of the entropy of the code histogram) over all frames of the span.

Measured (``bikes.mp4`` 0-10 s at 320x136, default settings, shared 2-core CPU): see
``resources/demo_codebook.md``.

Exit codes: 0 ok, 1 the export check failed, 2 bad arguments or an unreadable clip.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from loupe.base.media import resolve_clip
from loupe.base.progress import CallbackProgress, Progress, as_progress
from loupe.base.quality import psnr
from loupe.base.text import parse_span
from loupe_models.exporters.codebook import (
    CodebookLevel,
    codebook_card,
    export_codebook,
    verify_codebook_onnx,
)
from loupe_models.exporters.onnx import ExportError, run_cli
from loupe_models.fitters.anomaly import (
    decode_span,
    fastest_threads,
    parse_size,
    resize_frames,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CodebookFitConfig",
    "CodebookFitResult",
    "FitOutcome",
    "VQAutoencoder",
    "auto_size",
    "codebook_stats",
    "fit_codebook_clip",
    "fit_codebook_frames",
    "main",
]

LEVEL_NAME = "codes"
INPUT_MEAN = (0.5, 0.5, 0.5)
INPUT_STD = (0.5, 0.5, 0.5)
#: seconds kept back from the budget for evaluation and export
EXPORT_RESERVE_S = 10.0


@dataclass(frozen=True)
class CodebookFitConfig:
    """Settings of :func:`fit_codebook_frames` (defaults: the recommended run)."""

    codebook_size: int = 256
    k: int = 1
    stride: int = 4  # 4 or 8
    dim: int = 32  # code dimension
    width: int = 64  # encoder/decoder channels at the code resolution
    time_budget_s: float = 120.0  # training time
    steps: int | None = None  # stop after this many steps (whichever comes first)
    batch: int = 8
    crop: int = 64
    lr: float = 2e-3
    beta: float = 0.25  # commitment weight
    decay: float = 0.97  # EMA decay of the k = 1 codebook
    restarts: bool = True
    restart_every: int = 20
    first_restart: int = 5
    dead_fraction: float = 0.01  # dead: used less than this share of the mean count
    restart_until: float = 0.85  # share of training after which codes are no longer restarted
    heldout: float = 0.15
    threads: int = 0  # 0: time 2 and 1 thread and keep the faster; n: use n
    seed: int = 0

    def __post_init__(self) -> None:
        if self.stride not in (4, 8):
            raise ValueError(f"stride must be 4 or 8, got {self.stride}")
        if not 2 <= self.codebook_size <= 65536:
            raise ValueError(f"codebook size must be 2..65536, got {self.codebook_size}")
        if not 1 <= self.k <= min(16, self.codebook_size - 1):
            raise ValueError(f"k must be 1..{min(16, self.codebook_size - 1)}, got {self.k}")


# --------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------
class _Res(nn.Module):
    def __init__(self, ch: int, hidden: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.ReLU(), nn.Conv2d(ch, hidden, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(hidden, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class VQAutoencoder(nn.Module):
    """Conv encoder (stride 4 or 8) -> codebook (k active codes) -> conv decoder.

    ``codes(x)``: int64 ``[N, h, w]`` (k = 1) or ``[N, h, w, k]`` (most similar first);
    ``decode_codes(codes)``: the image decoded from them; ``forward(x)`` (training):
    ``(recon, vq_loss, codes, z)`` with a straight-through gradient.
    """

    def __init__(self, codebook_size: int = 256, k: int = 1, stride: int = 4, dim: int = 32,
                 width: int = 64, decay: float = 0.97) -> None:
        super().__init__()
        self.codebook_size, self.k, self.stride, self.dim = int(codebook_size), int(k), int(stride), int(dim)
        self.decay = float(decay)
        half = width // 2
        enc: list[nn.Module] = [nn.Conv2d(3, half, 4, 2, 1), nn.ReLU(), nn.Conv2d(half, width, 4, 2, 1),
                                nn.ReLU()]
        if stride == 8:
            enc += [nn.Conv2d(width, width, 4, 2, 1), nn.ReLU()]
        enc += [nn.Conv2d(width, width, 3, padding=1), _Res(width, half), nn.ReLU(),
                nn.Conv2d(width, dim, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(dim, width, 3, padding=1), _Res(width, half), nn.ReLU()]
        if stride == 8:
            dec += [nn.ConvTranspose2d(width, width, 4, 2, 1), nn.ReLU()]
        dec += [nn.ConvTranspose2d(width, half, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(half, 3, 4, 2, 1)]
        self.decoder = nn.Sequential(*dec)
        g = torch.Generator().manual_seed(1234)
        init = torch.randn(self.codebook_size, dim, generator=g)
        if self.k == 1:  # EMA codebook: buffers
            self.register_buffer("embed", init)
            self.register_buffer("cluster_size", torch.zeros(self.codebook_size))
            self.register_buffer("embed_sum", init.clone())
        else:  # Codebook Features: learned by gradient
            self.embed = nn.Parameter(init / self.k)

    # --- selection -------------------------------------------------------------------
    def _select(self, flat: torch.Tensor) -> torch.Tensor:
        """``[M, dim]`` -> ``[M]`` nearest code (k = 1) or ``[M, k]`` most similar codes."""
        e = self.embed
        if self.k == 1:
            dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)[None, :]
            return (-dist).argmax(1)
        sim = F.normalize(flat, dim=1) @ F.normalize(e, dim=1).t()
        return sim.topk(self.k, dim=1, largest=True, sorted=True).indices

    def _lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Code ids ``[...]`` or ``[..., k]`` -> summed code vectors ``[..., dim]``."""
        q = F.embedding(ids, self.embed)
        return q if self.k == 1 else q.sum(-2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encode(x).permute(0, 2, 3, 1)
        n, h, w, d = z.shape
        ids = self._select(z.reshape(-1, d))
        return ids.reshape(n, h, w) if self.k == 1 else ids.reshape(n, h, w, self.k)

    def decode_codes(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder(self._lookup(ids).permute(0, 3, 1, 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.encode(x).permute(0, 2, 3, 1)  # [N, h, w, dim]
        flat = z.reshape(-1, self.dim)
        ids = self._select(flat.detach())
        q = self._lookup(ids)
        commit = F.mse_loss(flat, q.detach())
        if self.k == 1:
            if self.training:
                self._ema_update(flat.detach(), ids)
            loss = commit
        else:
            loss = F.mse_loss(q, flat.detach()) + commit
        q_st = flat + (q - flat).detach()
        recon = self.decoder(q_st.reshape(z.shape).permute(0, 3, 1, 2))
        return recon, loss, ids, flat.detach()

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, ids: torch.Tensor) -> None:
        count = torch.bincount(ids, minlength=self.codebook_size).to(flat.dtype)
        summed = torch.zeros_like(self.embed_sum).index_add_(0, ids, flat)
        self.cluster_size.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(summed, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        eps = 1e-5
        smoothed = (self.cluster_size + eps) / (n + self.codebook_size * eps) * n
        self.embed.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def restart(self, dead: torch.Tensor, flat: torch.Tensor, gen: torch.Generator) -> int:
        """Replace the ``dead`` codes (indices) by encoder outputs ``flat`` [M, dim], drawn
        with probability proportional to their squared distance to their current code."""
        n_dead = int(dead.numel())
        if n_dead == 0 or flat.shape[0] == 0:
            return 0
        err = (flat - self._lookup(self._select(flat))).pow(2).sum(1).float().cpu() + 1e-12
        pick = torch.multinomial(err, n_dead, replacement=n_dead > flat.shape[0], generator=gen)
        new = flat[pick.to(flat.device)] / self.k
        if self.k == 1:
            self.embed[dead] = new
            mean_size = float(self.cluster_size.mean())
            self.cluster_size[dead] = max(mean_size, 1.0) * 0.5
            self.embed_sum[dead] = new * self.cluster_size[dead][:, None]
        else:
            self.embed.data[dead] = new
        return n_dead


class _CodesAndRecon(nn.Module):
    """The exported graph: ``image -> (codes, reconstruction decoded from the codes)``."""

    def __init__(self, model: VQAutoencoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.model.codes(x)
        return ids, self.model.decode_codes(ids)


# --------------------------------------------------------------------------------------
# data and statistics
# --------------------------------------------------------------------------------------
def auto_size(h: int, w: int, longest: int = 320, multiple: int = 8) -> tuple[int, int]:
    """Working (height, width): the longer side at most ``longest``, aspect kept as far as
    multiples of ``multiple`` allow (never upscaled past the source, at least one multiple)."""
    s = min(1.0, longest / max(h, w))

    def snap(v: float) -> int:
        return max(multiple, round(v / multiple) * multiple)

    return snap(h * s), snap(w * s)


def _to_input(frames_u8: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, 3, h, w]`` -> float ``(x/255 - 0.5) / 0.5``."""
    return frames_u8.float() / 127.5 - 1.0


def codebook_stats(counts: np.ndarray) -> tuple[int, float]:
    """(distinct codes used, perplexity) of a code histogram."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    if total <= 0:
        return 0, 0.0
    p = counts[counts > 0] / total
    return int((counts > 0).sum()), float(np.exp(-(p * np.log(p)).sum()))


def _psnr01(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB) of [-1, 1] images mapped to [0, 1] (pred clipped, as the app shows
    the reconstruction); ``inf`` for an exact one."""
    p = np.clip((pred + 1) / 2, 0, 1).astype(np.float64)
    t = ((target + 1) / 2).astype(np.float64)
    return np.asarray(psnr(p, t, 1.0, batch=True))


# --------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------
@dataclass
class FitOutcome:
    """What :func:`fit_codebook_frames` returns (the model lives on the CPU)."""

    model: VQAutoencoder
    size: tuple[int, int]
    steps: int
    train_seconds: float
    threads: int
    restarted: int  # codes restarted in all
    final_loss: float
    codes_used: int  # over all frames (train and held-out), eval mode
    perplexity: float
    recon_psnr: float  # mean per-frame PSNR on held-out frames (train frames if none)
    recon_psnr_train: float
    train_frames: int
    heldout_frames: int
    history: list[dict[str, float]] = field(default_factory=list)  # per-window metrics
    config: CodebookFitConfig = field(default_factory=CodebookFitConfig)


def _pick_threads(model: VQAutoencoder, x: torch.Tensor) -> int:
    """1 or 2 torch threads, whichever runs a training step of a throwaway copy faster
    here and now (on a busy shared CPU two OpenMP threads can be much slower than one)."""
    probe = copy.deepcopy(model).train()

    def step() -> None:
        recon, vq, _, _ = probe(x)
        (F.mse_loss(recon, x) + vq).backward()
        probe.zero_grad(set_to_none=True)

    return fastest_threads(step)


def fit_codebook_frames(
    frames: np.ndarray,
    config: CodebookFitConfig | None = None,
    progress: Progress | None = None,
    status: str = "training",
) -> FitOutcome:
    """Train a :class:`VQAutoencoder` on ``frames`` ``(N, h, w, 3)`` uint8 RGB (already at
    the working size, multiples of the stride x 2). ``progress`` (``loupe.base.progress``) is
    updated after every step with ``status`` and ``loss``, ``codes_used``, ``perplexity``,
    ``dead_pct``, ``eta_s`` and ``step``, then checked: a cancel raises ``Cancelled`` there."""
    cfg = config or CodebookFitConfig()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (N, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    _, h, w, _ = frames.shape
    if h % 8 or w % 8:
        raise ValueError(f"frame size must be multiples of 8, got {w}x{h}")
    prev_threads = torch.get_num_threads()
    try:
        return _fit(frames, cfg, as_progress(progress), status)
    finally:
        torch.set_num_threads(prev_threads)


def _fit(frames: np.ndarray, cfg: CodebookFitConfig, progress: Progress, status: str) -> FitOutcome:
    n, h, w, _ = frames.shape
    n_held = 0 if n < 2 else max(1, round(cfg.heldout * n))
    n_train = n - n_held
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous().to(device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = VQAutoencoder(cfg.codebook_size, cfg.k, cfg.stride, cfg.dim, cfg.width, cfg.decay).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ch, cw = min(cfg.crop, h) // 8 * 8, min(cfg.crop, w) // 8 * 8

    def batch() -> torch.Tensor:
        idx = rng.integers(0, n_train, size=cfg.batch)
        ys = rng.integers(0, h - ch + 1, size=cfg.batch)
        xs = rng.integers(0, w - cw + 1, size=cfg.batch)
        crops = torch.stack([data[i, :, y:y + ch, x:x + cw] for i, y, x in zip(idx, ys, xs, strict=True)])
        flip = torch.from_numpy(rng.random(cfg.batch) < 0.5).to(device)[:, None, None, None]
        crops = torch.where(flip, crops.flip(-1), crops)
        return _to_input(crops)

    if device.type == "cpu":
        threads = cfg.threads if cfg.threads > 0 else _pick_threads(model, batch())
        torch.set_num_threads(threads)
    else:
        threads = 0
    logger.info("training on %s, %d thread(s), %d train / %d held-out frames at %dx%d",
                device, threads, n_train, n_held, w, h)

    budget = max(1e-3, float(cfg.time_budget_s))
    counts = torch.zeros(cfg.codebook_size, dtype=torch.float64, device=device)
    window_steps = 0
    next_check = cfg.first_restart if cfg.restarts else cfg.restart_every
    used, perp, dead_pct = 0, 0.0, 100.0
    restarted = 0
    history: list[dict[str, float]] = []
    loss_ema = float("nan")
    model.train()
    t0 = time.perf_counter()
    step = 0
    while True:
        elapsed = time.perf_counter() - t0
        frac = min(1.0, max(elapsed / budget, step / cfg.steps if cfg.steps else 0.0))
        if frac >= 1.0:
            break
        for group in opt.param_groups:
            group["lr"] = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        x = batch()
        recon, vq_loss, ids, flat = model(x)
        loss = F.mse_loss(recon, x) + cfg.beta * vq_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        window_steps += 1
        counts += torch.bincount(ids.reshape(-1), minlength=cfg.codebook_size).double()
        value = float(loss.detach())
        loss_ema = value if math.isnan(loss_ema) else 0.9 * loss_ema + 0.1 * value
        if window_steps >= next_check:
            c = counts.cpu().numpy()
            used, perp = codebook_stats(c)
            dead_pct = 100.0 * (cfg.codebook_size - used) / cfg.codebook_size
            n_restart = 0
            if cfg.restarts and frac < cfg.restart_until:
                dead = torch.nonzero(counts < cfg.dead_fraction * counts.mean()).reshape(-1)
                n_restart = model.restart(dead, flat, gen)
                restarted += n_restart
            history.append({"step": step, "loss": loss_ema, "codes_used": used,
                            "perplexity": perp, "restarted": n_restart})
            counts.zero_()
            window_steps = 0
            next_check = cfg.restart_every
        elapsed = time.perf_counter() - t0
        frac = min(1.0, max(elapsed / budget, step / cfg.steps if cfg.steps else 0.0))
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("inf")
        progress.update(frac, status, loss=loss_ema, codes_used=used, perplexity=perp, dead_pct=dead_pct,
                        eta_s=eta, step=step)
        progress.check()
    train_seconds = time.perf_counter() - t0

    # evaluation on whole frames
    model.eval()
    all_counts = np.zeros(cfg.codebook_size, np.int64)
    psnr_held: list[np.ndarray] = []
    psnr_train: list[np.ndarray] = []
    train_eval = set(np.linspace(0, n_train - 1, min(n_train, 32)).round().astype(int).tolist())
    with torch.no_grad():
        for i0 in range(0, n, 8):
            x = _to_input(data[i0:i0 + 8])
            ids = model.codes(x)
            all_counts += np.bincount(ids.reshape(-1).cpu().numpy(), minlength=cfg.codebook_size)
            sel = [j for j in range(i0, min(n, i0 + 8)) if j >= n_train or j in train_eval]
            if not sel:
                continue
            rec = model.decode_codes(ids).cpu().numpy()
            p = _psnr01(rec, x.cpu().numpy())
            for j in sel:
                (psnr_held if j >= n_train else psnr_train).append(p[j - i0: j - i0 + 1])
    used_all, perp_all = codebook_stats(all_counts)
    p_train = float(np.mean(np.concatenate(psnr_train))) if psnr_train else float("nan")
    p_held = float(np.mean(np.concatenate(psnr_held))) if psnr_held else p_train
    logger.info("fit: %d steps in %.0f s, %d codes restarted; held-out PSNR %.2f dB, %d codes "
                "used, perplexity %.1f", step, train_seconds, restarted, p_held, used_all, perp_all)
    return FitOutcome(
        model=model.cpu(), size=(h, w), steps=step, train_seconds=train_seconds, threads=threads,
        restarted=restarted, final_loss=loss_ema, codes_used=used_all, perplexity=perp_all,
        recon_psnr=p_held, recon_psnr_train=p_train, train_frames=n_train, heldout_frames=n_held,
        history=history, config=cfg,
    )


# --------------------------------------------------------------------------------------
# the API used by the window and the CLI
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CodebookFitResult:
    """What :func:`fit_codebook_clip` returns."""

    onnx_path: Path
    seconds: float  # the whole call: decode, train, evaluate, export
    frames: int
    codes_used: int
    perplexity: float
    recon_psnr: float  # held-out frames, dB
    steps: int = 0
    size: tuple[int, int] = (0, 0)  # working (height, width)
    heldout_frames: int = 0
    threads: int = 0
    restarted: int = 0
    card: dict[str, Any] = field(default_factory=dict)  # the loupe.* metadata written


def _span_text(start: float, end: float | None) -> str:
    return f"{start:g}:{'' if end is None else f'{end:g}'} s"


def export_fitted(outcome: FitOutcome, out: str | Path, name: str, source: dict[str, Any]) -> Path:
    """Export a fitted model as a one-level codebook ONNX (``codes`` + ``recon``) and check
    it with ONNX Runtime; raises ExportError when the check fails."""
    m = outcome.model.eval()
    cfg = outcome.config
    from loupe.inference.card import InputSpec

    card = codebook_card(
        name,
        [CodebookLevel(LEVEL_NAME, "codes", cfg.codebook_size, cfg.stride, cfg.k)],
        input_spec=InputSpec(color="RGB", scale=1.0 / 255.0, mean=INPUT_MEAN, std=INPUT_STD,
                             size_multiple=8, fixed_size=outcome.size),
        reconstruction={"output": "recon", "scale": 0.5, "offset": 0.5},
        source=source,
    )
    net = _CodesAndRecon(m).eval()
    path = export_codebook(net, out, card, sample_hw=outcome.size)
    check = verify_codebook_onnx(net, path, card, hw=outcome.size)
    if not check.ok:
        raise ExportError(f"{check.summary()}; {path} was written but should not be used")
    logger.info("%s", check.summary())
    return path


def fit_codebook_clip(
    clip: str,
    out: Path,
    *,
    start: float = 0.0,
    end: float | None = None,
    minutes: float = 2.5,
    codebook_size: int = 256,
    k: int = 1,
    progress: Progress | None = None,
    stride: int = 4,
    size: tuple[int, int] | None = None,
    max_frames: int = 600,
    seed: int = 0,
    threads: int = 0,
    steps: int | None = None,
    restarts: bool = True,
    name: str | None = None,
    demo: bool = False,
) -> CodebookFitResult:
    """Decode ``clip`` from ``start`` to ``end`` seconds, fit a VQ autoencoder within
    ``minutes`` (the whole call), export it to ``out`` and return the figures.

    ``progress`` (``loupe.base.progress``) gets a status line and, while training, ``loss``,
    ``codes_used``, ``perplexity``, ``dead_pct``, ``eta_s`` and ``step``; a cancel raises
    ``Cancelled`` and writes nothing. An unreadable clip or empty span raises ValueError with a one-line
    reason. ``size`` is the working (height, width) (default :func:`auto_size`).
    """
    t_start = time.perf_counter()
    progress = as_progress(progress)
    path = resolve_clip(clip)
    cfg = CodebookFitConfig(codebook_size=int(codebook_size), k=int(k), stride=int(stride),
                            seed=int(seed), threads=int(threads), steps=steps,
                            restarts=bool(restarts))
    if minutes <= 0:
        raise ValueError(f"the time budget must be positive, got {minutes} minutes")

    def tell(frac: float, text: str) -> None:
        progress.update(frac, text)
        progress.check()

    span = _span_text(start, end)
    tell(0.0, f"decoding {path.name} {span}…")
    try:
        if size is None:
            probe, _ = decode_span(path, start, end, max_frames=1)
            size = auto_size(*probe.shape[1:3])
        frames, fps = decode_span(path, start, end, size=size, max_frames=max_frames)
    except FileNotFoundError as e:
        raise ValueError(f"cannot read {clip}: {e}") from None
    except ValueError:
        raise
    except Exception as e:  # SourceError, decoder errors
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"cannot read {clip}: {first}") from None
    if size[0] % 8 or size[1] % 8:
        raise ValueError(f"working size must be multiples of 8, got {size[1]}x{size[0]}")
    frames = resize_frames(frames, size)
    decode_s = time.perf_counter() - t_start
    budget = max(1.0, 60.0 * minutes - decode_s - EXPORT_RESERVE_S)
    cfg = CodebookFitConfig(**{**cfg.__dict__, "time_budget_s": budget})
    status = f"fitting {cfg.codebook_size} codes on {len(frames)} frames at {size[1]}x{size[0]}"
    if len(frames) >= max_frames:
        status += f" (the first {max_frames} of the span)"

    outcome = fit_codebook_frames(frames, cfg, progress, status)
    tell(1.0, "evaluating and exporting…")
    clip_name = Path(path).name
    source = {
        "architecture": "VQ (Loupe fit)",
        "model": (f"conv VQ autoencoder, stride {cfg.stride}, {cfg.codebook_size} codes x "
                  f"{cfg.dim} dims, k {cfg.k} ("
                  + ("nearest code, EMA codebook" if cfg.k == 1 else
                     "Codebook Features: k most cosine-similar codes summed")
                  + "), dead-code restarts" + ("" if cfg.restarts else " off")),
        "training_data": f"{clip_name}, span {span}, {len(frames)} frames at {size[1]}x{size[0]}"
        + (f", {fps:.3g} fps" if fps else "")
        + (f" (the first {max_frames} frames of the span)" if len(frames) >= max_frames else ""),
        "clip": clip_name,
        "span": [float(start), None if end is None else float(end)],
        "training": "loupe_models.fitters.codebook (MSE + 0.25 commitment, straight-through)",
        "recon_psnr": round(outcome.recon_psnr, 2),
        "codes_used": outcome.codes_used,
        "perplexity": round(outcome.perplexity, 1),
        "evaluation": {
            "recon_psnr_heldout_db": round(outcome.recon_psnr, 2),
            "recon_psnr_train_db": round(outcome.recon_psnr_train, 2),
            "heldout_frames": outcome.heldout_frames,
            "train_frames": outcome.train_frames,
            "codes_used": outcome.codes_used,
            "perplexity": round(outcome.perplexity, 1),
            "steps": outcome.steps,
            "train_seconds": round(outcome.train_seconds, 1),
            "restarted_codes": outcome.restarted,
            "threads": outcome.threads,
        },
        "demo": bool(demo),
    }
    name = name or f"Codebook ({Path(path).stem}, {cfg.codebook_size} codes" + (
        f", k={cfg.k})" if cfg.k > 1 else ")")
    onnx_path = export_fitted(outcome, out, name, source)
    import onnx

    md = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props if p.key.startswith("loupe.")}
    result = CodebookFitResult(
        onnx_path=Path(onnx_path), seconds=time.perf_counter() - t_start, frames=len(frames),
        codes_used=outcome.codes_used, perplexity=outcome.perplexity, recon_psnr=outcome.recon_psnr,
        steps=outcome.steps, size=outcome.size, heldout_frames=outcome.heldout_frames,
        threads=outcome.threads, restarted=outcome.restarted, card=md,
    )
    tell(1.0, f"done: {result.codes_used} codes used, held-out PSNR {result.recon_psnr:.1f} dB")
    return result


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="loupe fit codebook",
        description="Fit a small VQ autoencoder on a clip and export a Loupe codebook model.",
    )
    p.add_argument("clip", help="video file, or the name of a shipped sample clip")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--span", default=":", metavar="START:END", help="seconds (default: whole clip)")
    p.add_argument("--minutes", type=float, default=2.5, help="time budget for everything (default 2.5)")
    p.add_argument("--codes", type=int, default=256, help="codebook size (default 256)")
    p.add_argument("--k", type=int, default=1, help="active codes per position (default 1)")
    p.add_argument("--stride", type=int, default=4, choices=[4, 8], help="pixels per code (default 4)")
    p.add_argument("--size", default=None, help="working size N or WIDTHxHEIGHT, multiples of 8 "
                   "(default: longer side 320)")
    p.add_argument("--steps", type=int, default=None, help="stop training after this many steps")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default 0: pick 1 or 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-restarts", action="store_true", help="do not restart dead codes")
    p.add_argument("--name", default=None, help="display name in the card")
    p.add_argument("--demo", action="store_true", help="mark the model as a demo in its card")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_parser(), argv, _run)


def _run(args: argparse.Namespace) -> int:
    last = [0.0]

    def report(frac: float, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if "loss" not in info:
            print(info.get("status", ""), file=sys.stderr)
        elif now - last[0] >= 5.0:
            last[0] = now
            print(f"  {100 * frac:5.1f}%  loss {info['loss']:.4f}  codes used {info['codes_used']}"
                  f"  perplexity {info['perplexity']:.1f}  eta {info['eta_s']:4.0f} s", file=sys.stderr)

    try:
        start, end = parse_span(args.span)
        size = parse_size(args.size) if args.size else None
        result = fit_codebook_clip(
            args.clip, Path(args.out), start=start, end=end, minutes=args.minutes,
            codebook_size=args.codes, k=args.k, progress=CallbackProgress(report), stride=args.stride, size=size,
            seed=args.seed, threads=args.threads, steps=args.steps,
            restarts=not args.no_restarts, name=args.name, demo=args.demo,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {result.onnx_path} ({result.onnx_path.stat().st_size / 1e6:.2f} MB) in "
          f"{result.seconds:.0f} s: {result.steps} steps on {result.frames} frames at "
          f"{result.size[1]}x{result.size[0]} ({result.threads or 'GPU'} thread(s)); "
          f"held-out PSNR {result.recon_psnr:.2f} dB over {result.heldout_frames} frames; "
          f"{result.codes_used} codes used, perplexity {result.perplexity:.1f}; "
          f"{result.restarted} dead codes restarted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
