"""Export ``loupe_models`` networks to ONNX with an embedded Loupe model card.

CLI::

    python -m loupe_models.export ddrnet23-slim --checkpoint best_val_smaller.pth --out ddrnet.onnx

The export uses the TorchScript-based exporter (``dynamo=False``, opset 17) with dynamic
batch/height/width, writes the card into ``metadata_props`` and then checks the file with
ONNX Runtime (CPU) against the float64 PyTorch model at a size different from the export
sample size, within a tolerance that includes the model's own float32 sensitivity at that
input (:func:`compare_outputs`, the one such check every exporter and demo recipe uses).

Exit codes: 0 ok, 1 the ONNX Runtime check failed, 2 bad checkpoint or arguments.
"""

from __future__ import annotations

import argparse
import copy
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

from loupe.base.errors import LoupeError
from loupe.inference.card import (
    CITYSCAPES_LABELS,
    CITYSCAPES_PALETTE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    InputSpec,
    ModelCard,
    embed_card,
)
from loupe_models.checkpoint import CheckpointError, load_ddrnet_checkpoint
from loupe_models.nets.ddrnet import ddrnet23_slim

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_IR_VERSION",
    "SENSITIVITY_FACTOR",
    "SENSITIVITY_STEP",
    "VERIFY_ATOL",
    "VERIFY_RTOL",
    "ExportError",
    "OnnxCheck",
    "OutputAgreement",
    "card_sample",
    "check_onnx",
    "checkpoint_tool",
    "compare_outputs",
    "cpu_session",
    "ddrnet23_slim_card",
    "export_segmentation",
    "float64_copy",
    "load_strict",
    "main",
    "official_source",
    "output_agreement",
    "reference_runs",
    "report_export",
    "run_tool",
    "verify_onnx",
]

#: Highest ONNX IR version written (onnxruntime 1.31 reads <= 13; onnx 1.23 may write 14).
MAX_IR_VERSION = 10
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


class ExportError(LoupeError, RuntimeError):
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


#: Largest accepted ``|onnxruntime - float64 torch|`` after export is
#: ``VERIFY_ATOL + VERIFY_RTOL * peak + SENSITIVITY_FACTOR * sensitivity`` (see
#: :func:`compare_outputs`). The atol/rtol part covers float32 rounding of smooth networks:
#: ONNX Runtime and PyTorch sum convolutions in orders that depend on the CPU's vector width
#: (AVX2 or AVX-512), FMA and the thread count, which moves outputs by about 1e-6 of their peak
#: (DDRNet logits of +-60..90 with the reference fill differ by 7e-5 between float32 and
#: float64), so a bare 1e-4 would sit at the noise floor for large logits; export bugs (resize
#: mode, align_corners, concat order, weights) move outputs by a sizeable share of the peak.
VERIFY_ATOL = 1e-4
VERIFY_RTOL = 1e-5
#: Relative size (of the input's RMS) of the input perturbations that estimate a model's own
#: sensitivity. Networks whose output depends on *which* input of a max wins (max-unpooling,
#: argmin codes) jump when float32 rounding flips a near-tie: M-SegNet UCF-QNRF with the fill
#: weights at 96x160 moves by 3.2e-2 (peak 2.0) between float32 and float64 torch with 4
#: threads and mkldnn off, and ONNX Runtime on an AVX2 CPU lands on that other side of the tie
#: while on an AVX-512 CPU it does not. float32 accumulation error is about 1e-6 of the
#: activations; a perturbation ten times that, in both directions along two random
#: directions, flips every tie that rounding can flip (measured on that input: 1e-6 finds a
#: 6.5e-3 tie, 1e-5 the 3.2e-2 one), while the smooth part of the output moves by only about
#: 3e-5 of its peak.
SENSITIVITY_STEP = 1e-5
#: Random directions of the sensitivity perturbation (each used with + and -).
SENSITIVITY_DIRECTIONS = 2
#: The measured sensitivity is multiplied by this: ONNX Runtime may flip another near-tie of
#: similar effect than the ones the perturbations flipped.
SENSITIVITY_FACTOR = 2.0


def float64_copy(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` on the CPU in eval mode (the reference of every check:
    float64 rounding is 2^29 times finer than float32, so it stands for the exact model)."""
    return copy.deepcopy(model).to(device="cpu", dtype=torch.float64).eval()


def _outputs(out: Any) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


@dataclass(frozen=True)
class OutputAgreement:
    """ONNX Runtime vs the float64 PyTorch model for one output (see :func:`compare_outputs`).

    ``sensitivity`` is the model's own spread at this input: the largest ``|y - y64|`` over the
    float32 torch run and float64 runs on slightly perturbed inputs; ``off_share`` the share
    of elements beyond the smooth bound ``atol + rtol * peak`` and ``sensitivity_share`` the
    largest such share among those runs."""

    name: str
    shape: tuple[int, ...]
    max_abs_diff: float  # max |onnx - float64 torch|
    max_abs_ref: float  # peak |float64 torch|
    sensitivity: float
    sum_torch: float  # float64 torch
    sum_onnx: float
    atol: float = VERIFY_ATOL
    rtol: float = VERIFY_RTOL
    off_share: float = 0.0
    sensitivity_share: float = 0.0
    sum_sensitivity: float = 0.0  # the model's own spread of the sum

    @property
    def sum_diff(self) -> float:
        return abs(self.sum_onnx - self.sum_torch)

    @property
    def smooth_limit(self) -> float:
        return self.atol + self.rtol * self.max_abs_ref

    @property
    def limit(self) -> float:
        return self.smooth_limit + SENSITIVITY_FACTOR * self.sensitivity

    @property
    def ok(self) -> bool:
        # Both: no element further off than the model's own spread allows, and no larger share
        # of elements off than its own near-ties explain (a broken graph is off almost
        # everywhere; a flipped near-tie moves one region).
        return (self.max_abs_diff <= self.limit
                and self.off_share <= SENSITIVITY_FACTOR * self.sensitivity_share)

    def summary(self) -> str:
        off = (f", {self.off_share:.2%} of values beyond {self.smooth_limit:.2e} (model's own "
               f"{self.sensitivity_share:.2%})" if self.off_share or self.sensitivity_share else "")
        return (f"{self.name} max abs diff {self.max_abs_diff:.2e} (limit {self.limit:.2e}, "
                f"model's own float32/perturbed spread {self.sensitivity:.2e}, peak "
                f"{self.max_abs_ref:.3g}{off}, sum torch {self.sum_torch:.6g} onnx "
                f"{self.sum_onnx:.6g})")


def output_agreement(name: str, got: np.ndarray, ref: np.ndarray,
                     alternatives: Sequence[np.ndarray] = (), atol: float = VERIFY_ATOL,
                     rtol: float = VERIFY_RTOL) -> OutputAgreement:
    """Compare ``got`` (ONNX Runtime) with ``ref`` (float64 torch) given the model's own
    ``alternatives`` at the same input (float32 torch, perturbed float64 runs). Pure numpy."""
    r = np.asarray(ref, np.float64)
    g = np.asarray(got, np.float64)
    if g.shape != r.shape:
        raise ExportError(f"onnxruntime output {name} has shape {g.shape}, torch {r.shape}")
    peak = float(np.max(np.abs(r), initial=0.0))
    smooth = atol + rtol * peak
    sens, sens_share, sens_sum = 0.0, 0.0, 0.0
    for a in alternatives:
        a = np.asarray(a, np.float64)
        d = np.abs(a - r)
        sens = max(sens, float(np.max(d, initial=0.0)))
        sens_sum = max(sens_sum, abs(float(a.sum()) - float(r.sum())))
        sens_share = max(sens_share, float(np.mean(d > smooth)) if d.size else 0.0)
    d = np.abs(g - r)
    return OutputAgreement(name, tuple(r.shape), float(np.max(d, initial=0.0)), peak, sens,
                           float(r.sum()), float(g.sum()), float(atol), float(rtol),
                           float(np.mean(d > smooth)) if d.size else 0.0, sens_share, sens_sum)


def reference_runs(model: nn.Module, x: torch.Tensor, *, perturb: bool = True, seed: int = 0,
                   ) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """``(float64 outputs, alternatives)`` of ``model`` at ``x``: the float64 model at ``x``,
    and per output the float32 model at ``x`` and (``perturb``, floating ``x``) the float64
    model at ``x +- SENSITIVITY_STEP * rms(x) * n`` for :data:`SENSITIVITY_DIRECTIONS` seeded
    Gaussian directions ``n``."""
    model.eval()
    m64 = float64_copy(model)
    floating = x.is_floating_point()
    x64 = x.detach().cpu().to(torch.float64) if floating else x.detach().cpu()
    with torch.no_grad():
        ref = [t.numpy() for t in _outputs(m64(x64))]
        runs = [_outputs(model(x))]
        if perturb and floating:
            rms = float(x64.pow(2).mean().sqrt()) or 1.0
            g = torch.Generator().manual_seed(seed + 7919)
            for _ in range(SENSITIVITY_DIRECTIONS):
                n = torch.randn(x64.shape, generator=g, dtype=torch.float64) * (SENSITIVITY_STEP * rms)
                runs += [_outputs(m64(x64 + n)), _outputs(m64(x64 - n))]
    alts = [[r[i].detach().cpu().to(torch.float64).numpy() for r in runs] for i in range(len(ref))]
    return ref, alts


@dataclass(frozen=True)
class OnnxCheck:
    """ONNX Runtime vs the float64 PyTorch model on one input, every output."""

    input_shape: tuple[int, ...]
    outputs: tuple[OutputAgreement, ...]

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.outputs[0].shape

    @property
    def max_abs_diff(self) -> float:
        return max(o.max_abs_diff for o in self.outputs)

    @property
    def max_abs_ref(self) -> float:
        return self.outputs[0].max_abs_ref

    @property
    def limit(self) -> float:
        """The first output's limit (of the failing one when one fails)."""
        return next((o for o in self.outputs if not o.ok), self.outputs[0]).limit

    def summary(self) -> str:
        shape = "x".join(str(d) for d in self.input_shape)
        return f"at {shape}: " + "; ".join(o.summary() for o in self.outputs)


def compare_outputs(model: nn.Module, x: torch.Tensor, got: Sequence[np.ndarray],
                    names: Sequence[str] | None = None, *, atol: float = VERIFY_ATOL,
                    rtol: float = VERIFY_RTOL, perturb: bool = True, seed: int = 0) -> OnnxCheck:
    """The one ONNX Runtime vs PyTorch rule of every exporter: ``got`` (ONNX Runtime's outputs
    for ``x``) against the float64 model at ``x``, each within
    ``atol + rtol * peak + SENSITIVITY_FACTOR * sensitivity``.

    Why float64 and a sensitivity: an export can break what the graph computes (a resize mode,
    a concat order, a weight), not float32 rounding. Rounding differs between ONNX Runtime and
    PyTorch by CPU (AVX2 / AVX-512, FMA, thread count), and where the model itself is
    discontinuous (max-unpooling, argmin) it can flip a near-tie by a sizeable amount; the
    exact (float64) model is the one reference both sides approximate, and the model's own
    spread at the same input (float32, perturbed float64) says how far rounding alone can
    move it there. A smooth model has a sensitivity of about 1e-6 of its peak, so the bound
    stays tight."""
    ref, alts = reference_runs(model, x, perturb=perturb, seed=seed)
    if len(got) != len(ref):
        raise ExportError(f"onnxruntime gives {len(got)} outputs, torch {len(ref)}")
    names = list(names) if names is not None else [f"output {i}" for i in range(len(ref))]
    return OnnxCheck(tuple(x.shape), tuple(
        output_agreement(n, g, r, a, atol, rtol) for n, g, r, a in zip(names, got, ref, alts)))


def check_onnx(model: nn.Module, onnx_path: str | Path | Any, x: torch.Tensor, *,
               atol: float = VERIFY_ATOL, rtol: float = VERIFY_RTOL, perturb: bool = True,
               seed: int = 0) -> OnnxCheck:
    """Run ``onnx_path`` (or an ONNX Runtime session) on ``x`` on the CPU and compare every
    output with ``model`` by :func:`compare_outputs`."""
    sess = onnx_path if hasattr(onnx_path, "run") else cpu_session(onnx_path)
    got = sess.run(None, {sess.get_inputs()[0].name: x.detach().cpu().numpy()})
    return compare_outputs(model, x, got, [o.name for o in sess.get_outputs()], atol=atol,
                           rtol=rtol, perturb=perturb, seed=seed)


def verify_onnx(
    model: nn.Module,
    onnx_path: str | Path,
    hw: tuple[int, int] = (264, 520),
    seed: int = 0,
    card: ModelCard | None = None,
) -> OnnxCheck:
    """Run ``onnx_path`` in ONNX Runtime (CPU) on a random image of size ``hw``, normalised
    with the card's mean/std, and compare its first output with ``model`` (first output) by
    :func:`compare_outputs`."""
    x = card_sample(hw, card, seed)
    net = _single_output(model, x)
    sess = cpu_session(onnx_path)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[:1]
    return compare_outputs(net, x, got, [sess.get_outputs()[0].name], seed=seed)


def official_source(architecture: str, training_data: str, checkpoint_name: str = "",
                    **extra: Any) -> dict[str, Any]:
    """The card ``source`` of a model exported from an official checkpoint: ``architecture``,
    ``training_data``, ``demo: False``, the ``extra`` keys, then ``checkpoint`` (the file's
    name) when one is given."""
    source: dict[str, Any] = {"architecture": architecture, "training_data": training_data,
                              "demo": False, **extra}
    if checkpoint_name:
        source["checkpoint"] = checkpoint_name
    return source


def load_strict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """``model`` with ``state_dict`` loaded strictly, in eval mode (an official checkpoint's
    weights, already checked against the layout by its loader)."""
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def report_export(card: ModelCard, out: Path, checks: Sequence[Any], *, geometry: str = "",
                  differ: str = "onnxruntime and torch differ ",
                  agree: str = "onnxruntime vs torch ") -> int:
    """The export tools' last word: when a post-export check failed, ``error: <differ><the
    checks>; OUT was written but should not be used`` on stderr and 1; else ``exported NAME ->
    OUT (N MB, opset 17[, geometry]); <agree><the checks>`` and 0."""
    text = "; ".join(c.summary() for c in checks)
    if not all(c.ok for c in checks):
        print(f"error: {differ}{text}; {out} was written but should not be used", file=sys.stderr)
        return 1
    extra = f", {geometry}" if geometry else ""
    print(f"exported {card.name} -> {out} ({out.stat().st_size / 1e6:.1f} MB, opset 17{extra}); "
          f"{agree}{text}")
    return 0


def ddrnet23_slim_card(checkpoint_name: str = "") -> ModelCard:
    """The card of the official DDRNet-23-slim Cityscapes model."""
    source = official_source(
        "DDRNet-23-slim (DualResNet, BasicBlock [2, 2, 2, 2], planes 32, "
        "spp_planes 128, head_planes 64; ydhongHIT/DDRNet)",
        "Cityscapes (official checkpoint)",
        checkpoint_name,
    )
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
    model = load_strict(ddrnet23_slim(augment=args.augment_checkpoint),
                        load_ddrnet_checkpoint(ckpt, augment=args.augment_checkpoint))
    card = ddrnet23_slim_card(ckpt.name)
    out = export_segmentation(model, args.out, card, sample_hw=(256, 512), opset=17)
    return report_export(card, out, [verify_onnx(model, out, hw=(264, 520), card=card)])


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
    checkpoint_tool(d, "official .pth file (HRNet FullModel format)", _export_ddrnet23_slim)
    d.add_argument(
        "--augment-checkpoint",
        action="store_true",
        help="require the training-time aux head (seghead_extra.*) in the checkpoint and load it "
        "strictly into the augment=True model; the aux head is still not exported",
    )
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


def checkpoint_tool(parser: argparse.ArgumentParser, checkpoint_help: str,
                    run: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """Give an export tool's (sub)parser its required ``--checkpoint`` and ``--out`` and the
    function that runs it (see :func:`run_tool`)."""
    parser.add_argument("--checkpoint", required=True, help=checkpoint_help)
    parser.add_argument("--out", required=True, help="ONNX file to write")
    parser.set_defaults(run=run)
    return parser


def run_tool(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """:func:`run_cli` with the function the parsed (sub)command names (:func:`checkpoint_tool`)."""
    return run_cli(parser, argv, lambda args: args.run(args))


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
