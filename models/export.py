"""Export ``loupe_models`` networks to ONNX with an embedded Loupe model card.

CLI::

    python -m loupe_models.export ddrnet23-slim --checkpoint best_val_smaller.pth --out ddrnet.onnx

The export uses the TorchScript-based exporter (``dynamo=False``, opset 17) with dynamic
batch/height/width, writes the card into ``metadata_props`` and then checks the file with
ONNX Runtime (CPU) against PyTorch at a size different from the export sample size.

Exit codes: 0 ok, 1 the ONNX Runtime check failed, 2 bad checkpoint or arguments.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from loupe.inference.card import (
    CITYSCAPES_LABELS,
    CITYSCAPES_PALETTE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    InputSpec,
    ModelCard,
    embed_card,
)

from .checkpoint import CheckpointError, load_ddrnet_checkpoint
from .ddrnet import ddrnet23_slim

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_IR_VERSION",
    "VERIFY_ATOL",
    "VERIFY_RTOL",
    "ExportError",
    "OnnxCheck",
    "ddrnet23_slim_card",
    "export_segmentation",
    "main",
    "verify_onnx",
]

#: Highest ONNX IR version written (onnxruntime 1.31 reads <= 13; onnx 1.23 may write 14).
MAX_IR_VERSION = 10
#: Largest accepted |onnxruntime - torch| after export is
#: ``VERIFY_ATOL + VERIFY_RTOL * max|torch output|``. float32 rounding alone moves outputs by
#: about 1.5e-6 of their peak (torch float32 vs float64 differ by 7e-5 on DDRNet logits that
#: reach +-60..90 with the reference fill), so a bare 1e-4 sits at the noise floor for large
#: logits; export bugs (resize mode, align_corners, op order) move them by O(1).
VERIFY_ATOL = 1e-4
VERIFY_RTOL = 1e-5
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


class ExportError(RuntimeError):
    """Export or post-export verification failed."""


class _FirstOutput(nn.Module):
    """Exports only the main output of a model that returns ``(main, aux, ...)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out


def _single_output(model: nn.Module, sample: torch.Tensor) -> nn.Module:
    """``model`` in eval mode, wrapped to return only its first output if it returns several."""
    model.eval()
    with torch.no_grad():
        probe = model(sample)
    return _FirstOutput(model).eval() if isinstance(probe, (tuple, list)) else model


def save_with_card(onnx_bytes: bytes, card: ModelCard, out_path: Path) -> Path:
    """Finish an export: cap the IR version for ONNX Runtime, embed the card, check, save."""
    import onnx

    proto = onnx.load_from_string(onnx_bytes)
    if proto.ir_version > MAX_IR_VERSION:
        logger.info("lowering ONNX IR version %d -> %d", proto.ir_version, MAX_IR_VERSION)
        proto.ir_version = MAX_IR_VERSION
    if card.name:
        proto.doc_string = card.name
    embed_card(proto, card)
    onnx.checker.check_model(proto)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(out_path))
    logger.info("wrote %s (%.2f MB)", out_path, out_path.stat().st_size / 1e6)
    return out_path


def onnx_bytes_of(net: nn.Module, sample: torch.Tensor, input_names: list[str], output_names: list[str],
                  dynamic_axes: dict | None = None, opset: int = 17, quiet_tracer: bool = False) -> bytes:
    """``torch.onnx.export`` of ``net`` on ``sample`` with the TorchScript exporter, asked for on
    purpose (dynamic H/W, plain ops), its deprecation notices quieted (and the tracer's warnings
    with ``quiet_tracer``); returns the ONNX bytes for :func:`save_with_card`."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=r"The feature will be removed.*")
        if quiet_tracer:
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        with torch.no_grad():
            torch.onnx.export(
                net,
                (sample,),
                buf,
                dynamo=False,
                opset_version=opset,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
    return buf.getvalue()


def export_segmentation(
    model: nn.Module,
    out_path: str | Path,
    card: ModelCard,
    sample_hw: tuple[int, int] = (256, 512),
    opset: int = 17,
) -> Path:
    """Export a segmentation network ``NCHW image -> logits`` to ``out_path`` with ``card``.

    Input ``image`` [batch, C, height, width] and output ``logits`` have dynamic batch and
    spatial axes. A model returning ``(main, aux)`` is exported with the main output only.
    The IR version is capped at :data:`MAX_IR_VERSION`. Returns the written path.
    """

    out_path = Path(out_path)
    channels = card.input.channels
    sample = torch.zeros(1, channels, int(sample_hw[0]), int(sample_hw[1]))
    net = _single_output(model, sample)
    data = onnx_bytes_of(net, sample, [INPUT_NAME], [OUTPUT_NAME], {
        INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
        OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"},
    }, opset=opset)
    save_with_card(data, card, out_path)
    return out_path


@dataclass(frozen=True)
class OnnxCheck:
    """Result of :func:`verify_onnx`."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    max_abs_diff: float
    max_abs_ref: float

    @property
    def limit(self) -> float:
        return VERIFY_ATOL + VERIFY_RTOL * self.max_abs_ref

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.limit


def cpu_session(onnx_path: str | Path) -> Any:
    """An ONNX Runtime session on the CPU with its own log quietened (checks after export)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


def card_sample(hw: tuple[int, int], card: ModelCard | None, seed: int = 0, batch: int = 1) -> torch.Tensor:
    """A seeded random image in [0, 1), normalised with the card's mean/std (NCHW float32)."""
    channels = card.input.channels if card is not None else 3
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, channels, int(hw[0]), int(hw[1]), generator=g)
    if card is not None:
        mean = torch.tensor(card.input.mean).view(1, -1, 1, 1)
        std = torch.tensor(card.input.std).view(1, -1, 1, 1)
        x = (x - mean) / std
    return x


def verify_onnx(
    model: nn.Module,
    onnx_path: str | Path,
    hw: tuple[int, int] = (264, 520),
    seed: int = 0,
    card: ModelCard | None = None,
) -> OnnxCheck:
    """Run ``onnx_path`` in ONNX Runtime (CPU) and ``model`` in PyTorch on the same random,
    normalised image of size ``hw`` and return the largest absolute output difference."""
    x = card_sample(hw, card, seed)
    net = _single_output(model, x)
    with torch.no_grad():
        ref = net(x).numpy()
    sess = cpu_session(onnx_path)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    if got.shape != ref.shape:
        raise ExportError(f"onnxruntime output shape {got.shape} != torch {ref.shape}")
    diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
    return OnnxCheck(tuple(x.shape), tuple(ref.shape), diff, float(np.max(np.abs(ref))))


def ddrnet23_slim_card(checkpoint_name: str = "") -> ModelCard:
    """The card of the official DDRNet-23-slim Cityscapes model."""
    source = {
        "architecture": "DDRNet-23-slim (DualResNet, BasicBlock [2, 2, 2, 2], planes 32, "
        "spp_planes 128, head_planes 64; ydhongHIT/DDRNet)",
        "training_data": "Cityscapes (official checkpoint)",
        "demo": False,
    }
    if checkpoint_name:
        source["checkpoint"] = checkpoint_name
    return ModelCard(
        task="segmentation",
        name="DDRNet-23-slim (Cityscapes)",
        input=InputSpec(
            color="RGB",
            scale=1.0 / 255.0,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            size_multiple=8,
        ),
        labels=CITYSCAPES_LABELS,
        palette=CITYSCAPES_PALETTE,
        output={"stride": 8, "kind": "logits"},
        source=source,
    )


def _export_ddrnet23_slim(args: argparse.Namespace) -> int:
    ckpt = Path(args.checkpoint)
    sd = load_ddrnet_checkpoint(ckpt, augment=args.augment_checkpoint)
    model = ddrnet23_slim(augment=args.augment_checkpoint)
    model.load_state_dict(sd, strict=True)
    model.eval()
    card = ddrnet23_slim_card(ckpt.name)
    out = export_segmentation(model, args.out, card, sample_hw=(256, 512), opset=17)
    check = verify_onnx(model, out, hw=(264, 520), card=card)
    size_mb = out.stat().st_size / 1e6
    shape = "x".join(str(d) for d in check.input_shape)
    if not check.ok:
        print(
            f"error: onnxruntime and torch differ by {check.max_abs_diff:.3g} at {shape} "
            f"(limit {check.limit:.3g}); {out} was written but should not be used",
            file=sys.stderr,
        )
        return 1
    print(
        f"exported {card.name} -> {out} ({size_mb:.1f} MB, opset 17); onnxruntime vs torch "
        f"at {shape}: max abs diff {check.max_abs_diff:.2e} (limit {check.limit:.2e}, "
        f"peak |logit| {check.max_abs_ref:.3g})"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loupe_models.export",
        description="Export a model to ONNX with an embedded Loupe model card.",
    )
    sub = p.add_subparsers(dest="model", required=True, metavar="MODEL")
    d = sub.add_parser(
        "ddrnet23-slim",
        help="DDRNet-23-slim, Cityscapes (official checkpoint)",
        description="Export the official DDRNet-23-slim Cityscapes checkpoint (main head only).",
    )
    d.add_argument(
        "--checkpoint", required=True, help="official .pth file (HRNet FullModel format)"
    )
    d.add_argument("--out", required=True, help="ONNX file to write")
    d.add_argument(
        "--augment-checkpoint",
        action="store_true",
        help="require the training-time aux head (seghead_extra.*) in the checkpoint and load it "
        "strictly into the augment=True model; the aux head is still not exported",
    )
    d.set_defaults(run=_export_ddrnet23_slim)
    return p


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
            run: Callable[[argparse.Namespace], int]) -> int:
    """The start and end the export and fit tools share: parse ``argv`` (a usage error returns 2,
    --help 0; argparse has printed why), log warnings one line each, then ``run(args)``. A
    CheckpointError from it (the file cannot be read or does not fit) is one line ``error: ...``
    and exit status 2, an ExportError one line and 1."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # usage error (2) or --help (0); argparse already printed
        return int(e.code) if isinstance(e.code, int) else 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(run(args))
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_parser(), argv, lambda args: args.run(args))


if __name__ == "__main__":
    sys.exit(main())
