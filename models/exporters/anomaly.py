"""Scores, card and ONNX export of the future-frame anomaly predictors
(:mod:`loupe_models.nets.anomaly`).

The score (:func:`psnr`, :func:`regularity`, :func:`anomaly_score`, :func:`minmax_normalise`)
is the app's (``loupe.base.quality``, ``loupe.tasks.anomaly``), re-exported here; the section
"scores" adds the official per-frame PSNR and the card calibration, in numpy. The section
"export" writes a predictor as a card-carrying ONNX and checks it in ONNX Runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from loupe.base.errors import LoupeError
from loupe.base.quality import psnr
from loupe.inference.card import InputSpec, ModelCard
from loupe.tasks.anomaly import anomaly_score, calibrate, minmax_normalise, regularity
from loupe_models.exporters.onnx import (
    MAX_IR_VERSION,
    OnnxCheck,
    check_onnx,
    official_source,
    onnx_bytes_of,
    save_with_card,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_THRESHOLD",
    "INPUT_NAME",
    "MAX_IR_VERSION",
    "OUTPUT_NAME",
    "AnomalyExportError",
    "OnnxCheck",
    "anomaly_score",
    "anomaly_unet_card",
    "calibrate",
    "export_predictor",
    "minmax_normalise",
    "predictor_card",
    "psnr",
    "psnr_frames",
    "regularity",
    "verify_predictor_onnx",
]

#: Default anomaly threshold written to the card (``anomaly = 1 - regularity``).
DEFAULT_THRESHOLD = 0.5
INPUT_NAME = "frames"
OUTPUT_NAME = "pred_frame"
#: |onnxruntime - float64 torch| allowed by :func:`verify_predictor_onnx` beyond the model's own
#: float32 sensitivity (outputs lie in [-1, 1]; see ``loupe_models.exporters.onnx.compare_outputs``).
VERIFY_ATOL = 1e-4


# ==========================================================================================
# scores (pure numpy)
# ==========================================================================================
# psnr (loupe.base.quality) and the score (loupe.tasks.anomaly: minmax_normalise, regularity,
# anomaly_score) are the app's own, imported above, so a fitted model is calibrated and
# evaluated with exactly the maths the app scores it with.
def psnr_frames(pred: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Per-frame PSNR of ``N x 3 x H x W`` predictor outputs against real frames, both in
    [-1, 1] (the official ``psnr_error`` per frame: both mapped to [0, 1] by ``(x+1)/2``, which
    is data range 2 here; identical frames give ``inf`` there too)."""
    return np.asarray(psnr(pred, real, 2.0, batch=True))


# ==========================================================================================
# export
# ==========================================================================================
class AnomalyExportError(LoupeError, RuntimeError):
    """Export or post-export verification failed."""


def _past_frames(model: nn.Module) -> int:
    past = getattr(model, "past_frames", None)
    if past is None:
        raise AnomalyExportError(f"{type(model).__name__} has no past_frames attribute")
    return int(past)


def predictor_card(
    *,
    name: str,
    past_frames: int = 4,
    color: str = "RGB",
    fixed_size: tuple[int, int] | None = None,
    size_multiple: int = 8,
    calibration: Mapping[str, Any] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    source: Mapping[str, Any] | None = None,
    output_extra: Mapping[str, Any] | None = None,
) -> ModelCard:
    """The Loupe card (``loupe.inference.card.ModelCard``, task ``anomaly``) of a predictor.

    Input: ``color`` order, ``x/127.5 - 1`` (scale 1/127.5, mean 1, std 1), ``fixed_size``
    (h, w) or padding to ``size_multiple``. ``loupe.output``: ``past_frames``,
    ``output_range`` [-1, 1], ``color``, ``calibration`` (``psnr_min``/``psnr_max`` in dB of
    PSNR on [-1, 1] frames with data range 2), ``threshold`` on ``clip(1 - s, 0, 1)``.
    """
    output: dict[str, Any] = {
        "past_frames": int(past_frames),
        "output_range": [-1.0, 1.0],
        "color": color,
        "score": "psnr",
        "psnr_data_range": 2.0,
        "threshold": float(threshold),
    }
    if calibration is not None:
        cal = {k: v.item() if isinstance(v, np.generic) else v for k, v in calibration.items()}
        if "psnr_min" not in cal or "psnr_max" not in cal:
            raise AnomalyExportError("calibration needs psnr_min and psnr_max")
        output["calibration"] = cal
    if output_extra:
        output.update(output_extra)
    return ModelCard(
        task="anomaly",
        name=name,
        input=InputSpec(
            color=color,
            scale=1.0 / 127.5,
            mean=(1.0, 1.0, 1.0),
            std=(1.0, 1.0, 1.0),
            size_multiple=int(size_multiple),
            fixed_size=(int(fixed_size[0]), int(fixed_size[1])) if fixed_size else None,
        ),
        output=output,
        source=dict(source or {}),
    )


def anomaly_unet_card(
    checkpoint_name: str = "", calibration: Mapping[str, Any] | None = None
) -> ModelCard:
    """The card of an official future-frame U-Net: BGR, 256x256, ``x/127.5 - 1``, 4 past
    frames. Without ``calibration`` the app normalises PSNR per video (min-max), as the
    official evaluation does."""
    source = official_source(
        "future-frame prediction U-Net (Liu et al. 2018; "
        "feiyuhuahuo/Anomaly_Prediction models/unet.py, UNet(12, 3))",
        "official checkpoint (UCSD Ped2 or CUHK Avenue)",
        checkpoint_name,
    )
    return predictor_card(
        name="Future-frame prediction U-Net (Liu et al. 2018)",
        past_frames=4,
        color="BGR",
        fixed_size=(256, 256),
        size_multiple=8,
        calibration=calibration,
        source=source,
    )


def export_predictor(
    model: nn.Module,
    out_path: str | Path,
    card_info: Any,
    sample_hw: tuple[int, int] | None = None,
    opset: int = 17,
    verify: bool = True,
) -> tuple[Path, OnnxCheck | None]:
    """Export a predictor ``frames [N, 3T, H, W] -> pred_frame [N, 3, H, W]`` to ONNX.

    ``card_info`` is a ``ModelCard`` or a mapping of :func:`predictor_card` keyword
    arguments (``past_frames`` defaults to the model's). Batch, height and width are dynamic
    (both models run at any multiple of 8); ``sample_hw`` defaults to the card's fixed size
    or 64x64. The IR version is capped at :data:`MAX_IR_VERSION`. With ``verify`` ONNX
    Runtime is checked against the float64 PyTorch model at another size (and batch 2); a
    difference above ``VERIFY_ATOL`` plus the model's own float32 sensitivity
    (``loupe_models.exporters.onnx.compare_outputs``) raises :class:`AnomalyExportError` after the file
    is written.
    Returns the path and the check.
    """

    out_path = Path(out_path)
    past = _past_frames(model)
    if isinstance(card_info, ModelCard):
        card = card_info
    else:
        kwargs = dict(card_info)
        kwargs.setdefault("past_frames", past)
        card = predictor_card(**kwargs)
    if card.task != "anomaly":
        raise AnomalyExportError(f"card task must be 'anomaly', got {card.task!r}")
    card_past = int(card.output.get("past_frames", past))
    if card_past != past:
        raise AnomalyExportError(f"card says {card_past} past frames, the model takes {past}")
    if sample_hw is None:
        sample_hw = card.input.fixed_size or (64, 64)
    model.eval()
    sample = torch.zeros(1, 3 * past, int(sample_hw[0]), int(sample_hw[1]))
    data = onnx_bytes_of(model, sample, [INPUT_NAME], [OUTPUT_NAME], {
        INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
        OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"},
    }, opset=opset, quiet_tracer=True)
    save_with_card(data, card, out_path)
    check = None
    if verify:
        h, w = int(sample_hw[0]), int(sample_hw[1])
        check = verify_predictor_onnx(model, out_path, hw=(h + 16, w + 8), batch=2)
        if not check.ok:
            raise AnomalyExportError(
                f"onnxruntime and torch differ by {check.max_abs_diff:.3g} at "
                f"{check.input_shape} (limit {check.limit:.3g}); {out_path} should not be used"
            )
        logger.info("onnxruntime vs torch at %s: max abs diff %.2e", check.input_shape,
                    check.max_abs_diff)
    return out_path, check


def verify_predictor_onnx(
    model: nn.Module,
    onnx_path: str | Path,
    hw: tuple[int, int] = (72, 88),
    batch: int = 1,
    seed: int = 0,
) -> OnnxCheck:
    """ONNX Runtime (CPU) vs the float64 PyTorch model on smooth random frames in [-1, 1] of
    size ``hw`` (``loupe_models.exporters.onnx.check_onnx``, atol :data:`VERIFY_ATOL`)."""
    past = _past_frames(model)
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3 * past, max(1, hw[0] // 8), max(1, hw[1] // 8), generator=g)
    x = F.interpolate(low, size=hw, mode="bilinear", align_corners=False) * 2 - 1
    x = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    return check_onnx(model, onnx_path, x, atol=VERIFY_ATOL, rtol=0.0, seed=seed)
