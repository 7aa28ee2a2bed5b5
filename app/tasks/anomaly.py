"""Video anomaly by future-frame prediction (Liu et al. 2018; CT-D2GAN) (Qt-free).

One definition of the score everywhere (window, live, ``analyze``):

- ``P_t`` = PSNR of the predicted frame against the real frame t, both in [0, 1];
- regularity ``s_t = (P_t - P_min) / (P_max - P_min)``, ``P_min``/``P_max`` from a calibration span
  of normal footage (stored in the card at fitting; the user can recalibrate on a marked span);
- ``anomaly_t = clip(1 - s_t, 0, 1)``; ``flagged = anomaly_t >= threshold``.

Only past frames are used, so the score of frame t is the same live and offline. The papers'
per-video min-max normalisation needs the whole video; ``analyze --calibrate-per-video`` applies
it afterwards (see ``per_video_scores``).

Card ``loupe.output``: ``past_frames`` (T), ``output_range`` ([-1, 1] or [0, 1]), ``color`` (of the
prediction, RGB or BGR), ``calibration`` {``psnr_min``, ``psnr_max``}, ``threshold``.
The model input is the T past frames, oldest first, each prepared by the card's ``loupe.input``
and stacked along channels (N x 3T x H x W).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from loupe.inference.card import ModelCard
from loupe.inference.engine import Engine, ModelError
from loupe.inference.preprocess import Geometry, display_size, prepare
from loupe.sources.base import Frame


# --- the score ---------------------------------------------------------------------------
def psnr(pred: np.ndarray, real: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR in dB of two arrays in [0, data_range] (capped at 100 dB for identical frames)."""
    mse = float(np.mean((np.asarray(pred, np.float64) - np.asarray(real, np.float64)) ** 2))
    if mse <= 1e-10 * data_range**2:
        return 100.0
    return float(10.0 * np.log10(data_range**2 / mse))


def anomaly_score(p: float, p_min: float, p_max: float) -> float:
    """1 - regularity, clipped to [0, 1]."""
    span = p_max - p_min
    if span <= 0:
        return 0.0 if p >= p_max else 1.0
    return float(np.clip(1.0 - (p - p_min) / span, 0.0, 1.0))


def per_video_scores(psnrs: np.ndarray) -> np.ndarray:
    """The papers' per-video min-max normalisation (needs the whole video): 1 - regularity."""
    p = np.asarray(psnrs, np.float64)
    lo, hi = float(np.min(p)), float(np.max(p))
    if hi <= lo:
        return np.zeros_like(p)
    return 1.0 - (p - lo) / (hi - lo)


# --- the task ----------------------------------------------------------------------------
@dataclass(frozen=True)
class AnomalyResult:
    """psnr/score/flagged are None while the first T frames fill the history. error: float32
    per-pixel squared error at display resolution; predicted: uint8 RGB at display resolution."""

    psnr: float | None
    score: float | None
    flagged: bool | None
    error: np.ndarray | None
    predicted: np.ndarray | None
    threshold: float

    def __post_init__(self) -> None:
        if self.error is not None and (self.error.dtype != np.float32 or self.error.ndim != 2):
            raise ValueError(f"error must be 2-d float32, got {self.error.dtype} {self.error.shape}")
        if self.predicted is not None and (self.predicted.dtype != np.uint8 or self.predicted.ndim != 3):
            raise ValueError(f"predicted must be H x W x 3 uint8, got {self.predicted.dtype} {self.predicted.shape}")


@dataclass(frozen=True)
class AnomalyContext:
    geometry: Geometry
    target: np.ndarray  # the real frame, C x h x w in the model's value range
    ready: bool


class AnomalyTask:
    name = "anomaly"
    overlap_safe = True  # postprocess reads only its outputs and context (see Runner.overlap_safe)

    def __init__(self, engine: Engine, display_max_side: int | None = 1280) -> None:
        self.engine = engine
        self.card: ModelCard = engine.card
        self.input_name = engine.inputs[0].name
        self.display_max_side = display_max_side
        out = self.card.output
        self.past = int(out.get("past_frames", 4))
        if self.past < 1:
            raise ModelError(f"{engine.path.name}: loupe.output past_frames must be >= 1")
        self.history: int = self.past  # frame t is predicted from frames t-T..t-1
        lo, hi = out.get("output_range", [-1.0, 1.0])
        self.out_lo, self.out_hi = float(lo), float(hi)
        self.pred_bgr = str(out.get("color", self.card.input.color)).upper() == "BGR"
        cal = out.get("calibration") or {}
        self.psnr_min = float(cal.get("psnr_min", 20.0))
        self.psnr_max = float(cal.get("psnr_max", 40.0))
        self.threshold = float(out.get("threshold", 0.5))
        self._history: deque[np.ndarray] = deque(maxlen=self.past)
        self._last_index: int | None = None
        # the prepared input's value range, to bring the real frame to [0, 1] like the prediction
        spec = self.card.input
        self._in_lo = (0.0 - np.asarray(spec.mean)) / np.asarray(spec.std)
        self._in_hi = (255.0 * spec.scale - np.asarray(spec.mean)) / np.asarray(spec.std)

    def set_calibration(self, psnr_min: float, psnr_max: float) -> None:
        self.psnr_min, self.psnr_max = float(psnr_min), float(psnr_max)

    def reset(self) -> None:
        self._history.clear()
        self._last_index = None

    def fresh(self, display_max_side: int | None = None) -> AnomalyTask:
        """Threshold and calibration as they are now (the user may have moved them)."""
        task = AnomalyTask(self.engine, display_max_side=display_max_side)
        task.threshold = self.threshold
        task.set_calibration(self.psnr_min, self.psnr_max)
        return task

    def prepare(self, frame: Frame) -> tuple[dict[str, np.ndarray] | None, AnomalyContext]:
        # a jump backwards or a seek breaks the history: start filling it again
        if self._last_index is not None and not (0 < frame.index - self._last_index <= self.past):
            self._history.clear()
        self._last_index = frame.index
        x, geo = prepare(frame, self.card.input)
        ready = len(self._history) == self.past
        feeds = None
        if ready:
            feeds = {self.input_name: np.concatenate(list(self._history), axis=1)}
        self._history.append(x)
        return feeds, AnomalyContext(geo, x[0], ready)

    def _to_unit(self, a: np.ndarray, lo, hi) -> np.ndarray:
        lo = np.asarray(lo, np.float32).reshape(-1, 1, 1)
        hi = np.asarray(hi, np.float32).reshape(-1, 1, 1)
        return np.clip((a - lo) / (hi - lo), 0.0, 1.0)

    def postprocess(self, outputs: list[np.ndarray] | None, ctx: AnomalyContext) -> AnomalyResult:
        if outputs is None or not ctx.ready:
            return AnomalyResult(None, None, None, None, None, self.threshold)
        pred = np.asarray(outputs[0])
        if pred.ndim == 4:
            pred = pred[0]
        if pred.shape != ctx.target.shape:
            raise ModelError(
                f"{self.engine.path.name}: predicted frame {pred.shape} does not match the input frame {ctx.target.shape}"
            )
        pred01 = self._to_unit(pred.astype(np.float32), self.out_lo, self.out_hi)
        real01 = self._to_unit(ctx.target, self._in_lo, self._in_hi)
        p = psnr(pred01, real01)
        score = anomaly_score(p, self.psnr_min, self.psnr_max)
        geo = ctx.geometry
        oh, ow = display_size(geo.frame_hw, self.display_max_side)
        err = ((pred01 - real01) ** 2).mean(axis=0).astype(np.float32)
        if geo.mode == "pad":
            rh, rw = geo.crop_output(err.shape)
            err, pred01 = err[:rh, :rw], pred01[:, :rh, :rw]
        err = cv2.resize(err, (ow, oh), interpolation=cv2.INTER_LINEAR)
        rgb = np.ascontiguousarray((pred01.transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8))
        if self.pred_bgr:
            rgb = np.ascontiguousarray(rgb[:, :, ::-1])
        rgb = cv2.resize(rgb, (ow, oh), interpolation=cv2.INTER_LINEAR)
        return AnomalyResult(p, score, score >= self.threshold, err, rgb, self.threshold)

    def columns(self) -> list[str]:
        return ["psnr", "score", "flagged"]

    def row(self, result: AnomalyResult) -> dict[str, Any]:
        if result.psnr is None:
            return {"psnr": None, "score": None, "flagged": None}
        return {"psnr": round(result.psnr, 4), "score": round(result.score, 6), "flagged": int(bool(result.flagged))}
