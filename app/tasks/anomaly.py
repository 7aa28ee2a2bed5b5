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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from loupe.base.quality import json_number, psnr
from loupe.inference.card import ModelCard
from loupe.inference.engine import Engine, ModelError
from loupe.inference.preprocess import Geometry, prepare
from loupe.sources.base import Frame
from loupe.tasks.base import ModelTask


# --- the score ---------------------------------------------------------------------------
# The one implementation, also used by loupe_models (fitting, calibration, the official model's
# evaluation). Edge cases, decided once (tests/test_anomaly_score.py):
# - identical frames: PSNR = inf (as the official ``psnr_error``), regularity inf, anomaly 0;
#   ``analyze`` writes the PSNR as an empty CSV cell / JSON null, as ``loupe compare`` does;
# - a NaN PSNR (a prediction with NaNs) scores 1, the most anomalous: a broken prediction is
#   flagged, never silently passed as normal;
# - a calibration needs psnr_max > psnr_min: anything else is an error (a card saying otherwise
#   is refused when the model loads), not a silent step function.
def check_calibration(p_min: float, p_max: float) -> tuple[float, float]:
    """(p_min, p_max) as floats; ValueError unless both are finite and p_max > p_min."""
    lo, hi = float(p_min), float(p_max)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"calibration psnr_max ({p_max}) must exceed psnr_min ({p_min}), both finite dB")
    return lo, hi


def minmax_normalise(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """``(v - min) / (max - min)`` over the finite values (per video, as the official
    evaluation); a constant sequence maps to 1, ``+inf`` to 1, ``-inf``/NaN to 0."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        return np.where(v == np.inf, 1.0, 0.0)
    lo, hi = float(v[finite].min()), float(v[finite].max())
    if hi <= lo:
        out = np.ones_like(v)
    else:
        with np.errstate(invalid="ignore"):
            out = (v - lo) / (hi - lo)
    out = np.where(v == np.inf, 1.0, out)
    return np.where(np.isnan(v) | (v == -np.inf), 0.0, out)


def regularity(
    psnr_db: float | Sequence[float] | np.ndarray,
    p_min: float | None = None,
    p_max: float | None = None,
) -> float | np.ndarray:
    """Regularity ``s = (P - P_min) / (P_max - P_min)`` of PSNR values ``P`` (dB).

    With ``p_min``/``p_max`` given (the card's calibration) ``s`` is not clipped (values
    outside the calibrated range give ``s < 0`` or ``s > 1``). With both None the range is
    the per-video minimum and maximum of ``psnr_db`` (:func:`minmax_normalise`, the official
    evaluation). A scalar in gives a float out.
    """
    scalar = np.ndim(psnr_db) == 0
    v = np.asarray(psnr_db, dtype=np.float64)
    if p_min is None and p_max is None:
        out = minmax_normalise(np.atleast_1d(v))
        return float(out[0]) if scalar else out
    if p_min is None or p_max is None:
        raise ValueError("regularity: give both p_min and p_max, or neither (per-video min-max)")
    lo, hi = check_calibration(p_min, p_max)
    with np.errstate(invalid="ignore"):
        out = (v - lo) / (hi - lo)
    return float(out) if scalar else out


def anomaly_score(
    psnr_db: float | Sequence[float] | np.ndarray,
    p_min: float | None = None,
    p_max: float | None = None,
) -> float | np.ndarray:
    """``clip(1 - regularity, 0, 1)``: 0 = well predicted (normal), 1 = anomalous.

    ``p_min``/``p_max`` from the card's ``calibration`` (``psnr_min``/``psnr_max``), or both
    None for the per-video min-max normalisation. Infinite PSNR scores 0, NaN PSNR scores 1.
    """
    s = regularity(psnr_db, p_min, p_max)
    a = np.clip(1.0 - np.asarray(s, dtype=np.float64), 0.0, 1.0)
    a = np.where(np.isnan(a), 1.0, a)
    return float(a) if np.ndim(psnr_db) == 0 else a


def per_video_scores(psnrs: Sequence[float] | np.ndarray) -> np.ndarray:
    """The papers' per-video min-max normalisation (needs the whole video): ``anomaly_score``
    without a calibration."""
    return np.asarray(anomaly_score(np.atleast_1d(np.asarray(psnrs, np.float64))))


def calibrate(
    normal_psnr: Sequence[float] | np.ndarray,
    low_percentile: float = 1.0,
    high_percentile: float = 99.0,
) -> dict[str, float]:
    """Card calibration (``loupe_models.fitters.anomaly`` and ``bench/anomaly_auc.py``) from PSNR values (dB) of predictions on normal frames.

    ``psnr_max`` is the ``high_percentile`` of the normal PSNRs and ``psnr_min`` lies as far
    below their ``low_percentile`` as ``psnr_max`` lies above it:
    ``psnr_min = p_low - (p_high - p_low)``. So every normal frame in the central range
    scores an anomaly in [0, 0.5] (the frame at ``p_low`` scores exactly 0.5, the default
    threshold), and a frame predicted as much worse than the worst normal frame as the
    normal spread scores 1. Percentiles (not min/max) keep one odd frame from setting the
    range. The spread is at least 0.5 dB (then ``psnr_max = p_low + 0.5``). Returned keys:
    ``psnr_min``, ``psnr_max``, ``psnr_low`` (= ``p_low``), ``psnr_median``, ``frames``.
    """
    v = np.asarray(normal_psnr, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("calibrate: no finite PSNR values")
    p_lo, p_med, p_hi = (float(x) for x in np.percentile(v, [low_percentile, 50.0, high_percentile]))
    spread = max(p_hi - p_lo, 0.5)  # at least 0.5 dB, so the range never collapses
    return {
        "psnr_min": p_lo - spread,
        "psnr_max": p_lo + spread,
        "psnr_low": p_lo,
        "psnr_median": p_med,
        "frames": int(v.size),
    }


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


def past_frames(card: ModelCard) -> int:
    """T, the past frames the model predicts from (``loupe.output.past_frames``, default 4): the
    task's ``history`` (the registry's ``history`` for anomaly models)."""
    return int(card.output.get("past_frames", 4))


class AnomalyTask(ModelTask):
    name = "anomaly"

    def __init__(self, engine: Engine, display_max_side: int | None = 1280) -> None:
        super().__init__(engine, display_max_side)
        out = self.card.output
        self.past = past_frames(self.card)
        if self.past < 1:
            raise ModelError(f"{engine.path.name}: loupe.output past_frames must be >= 1")
        self.history: int = self.past  # frame t is predicted from frames t-T..t-1
        lo, hi = out.get("output_range", [-1.0, 1.0])
        self.out_lo, self.out_hi = float(lo), float(hi)
        self.pred_bgr = str(out.get("color", self.card.input.color)).upper() == "BGR"
        cal = out.get("calibration") or {}
        try:
            self.psnr_min, self.psnr_max = check_calibration(cal.get("psnr_min", 20.0), cal.get("psnr_max", 40.0))
        except (TypeError, ValueError) as e:
            raise ModelError(f"{engine.path.name}: loupe.output {e}") from None
        self.threshold = float(out.get("threshold", 0.5))
        self._history: deque[np.ndarray] = deque(maxlen=self.past)
        self._last_index: int | None = None
        # the prepared input's value range, to bring the real frame to [0, 1] like the prediction
        spec = self.card.input
        self._in_lo = (0.0 - np.asarray(spec.mean)) / np.asarray(spec.std)
        self._in_hi = (255.0 * spec.scale - np.asarray(spec.mean)) / np.asarray(spec.std)

    def set_calibration(self, psnr_min: float, psnr_max: float) -> None:
        """ValueError (and no change) unless psnr_max > psnr_min, both finite."""
        self.psnr_min, self.psnr_max = check_calibration(psnr_min, psnr_max)

    def reset(self) -> None:
        self._history.clear()
        self._last_index = None

    def fresh(self, display_max_side: int | None = None) -> AnomalyTask:
        """Threshold and calibration as they are now (the user may have moved them)."""
        task = super().fresh(display_max_side)
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
                f"{self.model_name}: predicted frame {pred.shape} does not match the input frame {ctx.target.shape}"
            )
        pred01 = self._to_unit(pred.astype(np.float32), self.out_lo, self.out_hi)
        real01 = self._to_unit(ctx.target, self._in_lo, self._in_hi)
        p = psnr(pred01, real01, 1.0)  # inf for a perfect prediction, nan for a NaN one
        score = anomaly_score(p, self.psnr_min, self.psnr_max)
        geo = ctx.geometry
        oh, ow = self.display_hw(geo)
        err = ((pred01 - real01) ** 2).mean(axis=0).astype(np.float32)
        if np.isnan(p):  # NaNs in the prediction: shown as the largest error, on black
            err = np.nan_to_num(err, nan=1.0)
            pred01 = np.nan_to_num(pred01, nan=0.0)
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
        # infinite PSNR (a perfect prediction) is an empty CSV cell / JSON null, as in loupe compare
        return {"psnr": json_number(result.psnr, 4), "score": round(result.score, 6), "flagged": int(bool(result.flagged))}
