"""Export M-SFANet / M-SegNet crowd-density checkpoints to ONNX with an embedded Loupe card.

CLI::

    python -m loupe_models.export_density m-sfanet --variant shanghaitech \\
        --checkpoint checkpoint_best_MSFANet_A.pth --out msfanet_a.onnx [--size 384x576]
    python -m loupe_models.export_density m-segnet --variant ucf-qnrf \\
        --checkpoint best_M-SegNet_UCF_QNRF.pth --out msegnet_qnrf.onnx [--size 384x576]

- **M-SFANet** exports at one fixed input size only: its context module uses adaptive average
  pools to 1/2/3/6 cells on the 1/8 feature, which the TorchScript exporter supports only when
  the (static) feature size is divisible by the pool size, i.e. H and W multiples of 48.
  ``--size`` is that fixed size (default 384x576); the card says ``fixed_size`` and the app
  resizes every frame to it. Batch stays dynamic.
- **M-SegNet** exports with dynamic batch/height/width (its max-unpooling is a scatter, see
  :func:`loupe_models.nets.density.max_unpool2d_scatter`); the card says ``size_multiple`` 16 (the
  official pre-processing rounds H, W to multiples of 16, and the UCF-QNRF model needs it; the
  ShanghaiTech model would run at any size) and the app pads. ``--size`` is the trace size and
  the first verification size; a second, larger size is verified too.

Card: task ``density``; input RGB, ``/255``, ImageNet mean/std; ``loupe.output`` is
``{"stride": 2, "count_scale": 1.0, "kind": "density", "outputs": [...]}`` with outputs
``["density", "attention"]`` (ShanghaiTech) or ``["density"]`` (UCF-QNRF, already ``abs``).
The count is the sum of the density map **at model resolution** times ``count_scale``; when the
app resizes a frame to ``fixed_size`` (M-SFANet) the number of people does not change, so the
sum is taken as is (the app handles the display mapping; no area factor belongs in the card).

After writing, the file is run in ONNX Runtime (CPU) and compared with the float64 PyTorch
model on a random normalised image (:func:`loupe_models.exporters.onnx.compare_outputs`); every output
must satisfy ``max|onnx - torch64| <= VERIFY_ATOL + VERIFY_RTOL * peak + 2 * sensitivity``,
where the sensitivity is the model's own float32 / perturbed-input spread at that image.
M-SegNet needs it: its max-unpooling moves a decoder value to whichever cell of a pooling
window won, so where two cells nearly tie, float32 rounding alone (which differs between CPUs:
AVX2 or AVX-512, FMA, threads) moves a region of the map by percents of its peak; the fill
weights at 96x160 move by 3.2e-2 (peak 2.0) that way, and ONNX Runtime on an AVX2 CPU took
the other side of that tie. The count, the map's sum, hardly moves (1623.81 vs 1623.80 there).

Exit codes: 0 ok, 1 the ONNX Runtime check failed, 2 bad checkpoint or arguments.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from loupe.inference.card import IMAGENET_MEAN, IMAGENET_STD, InputSpec, ModelCard
from loupe_models.exporters.onnx import (
    ExportError,
    OnnxCheck,
    OutputAgreement,
    card_sample,
    check_onnx,
    checkpoint_tool,
    load_strict,
    official_source,
    onnx_bytes_of,
    report_export,
    run_tool,
    save_with_card,
)
from loupe_models.nets.density import (
    ARCHITECTURES,
    VARIANTS,
    build_density_model,
    display_name,
    load_density_checkpoint,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SIZE",
    "SEGNET_SIZE_MULTIPLE",
    "SFANET_SIZE_MULTIPLE",
    "VERIFY_ATOL",
    "VERIFY_RTOL",
    "DensityCheck",
    "OutputCheck",
    "density_card",
    "export_density",
    "main",
    "verify_density_onnx",
]

#: Default ``--size``: M-SFANet's fixed export size, M-SegNet's trace / first check size.
DEFAULT_SIZE = (384, 576)
#: M-SFANet ONNX sizes: adaptive pools 1/2/3/6 on the 1/8 feature -> multiples of 8 * 6.
SFANET_SIZE_MULTIPLE = 48
#: M-SegNet: official pre-processing (and the UCF-QNRF model) need multiples of 16.
SEGNET_SIZE_MULTIPLE = 16
#: ``VERIFY_ATOL + VERIFY_RTOL * peak`` per output, plus the model's own sensitivity (see the
#: module docstring). Density maps of real checkpoints hold values of 1e-3..1e-1 per pixel, so
#: the floor is small and the bound scales with the output; float32 op-order noise on a smooth
#: map is ~1e-6 of the peak (the reference run saw 6e-8 absolute at peaks of ~0.2), wrong
#: resize modes or concat orders move outputs by O(peak).
VERIFY_ATOL = 1e-6
VERIFY_RTOL = 1e-4
INPUT_NAME = "image"

_TRAINING_DATA = {
    "shanghaitech": "ShanghaiTech (official checkpoint, part A or B)",
    "ucf-qnrf": "UCF-QNRF (official checkpoint)",
}
_ARCHITECTURE = {
    ("m-sfanet", "shanghaitech"): "M-SFANet: VGG16-bn front end, ASPP (dilations 1/6/12/18) + "
    "context-aware module, dual-path decoder (attention + density), output stride 2",
    ("m-sfanet", "ucf-qnrf"): "M-SFANet*: VGG19 front end (no BN), ASPP (dilations 1/12/24/36) "
    "+ context-aware module + reg_layer, density decoder, abs output, output stride 2",
    ("m-segnet", "shanghaitech"): "M-SegNet: first 10 convs of VGG16-bn, max-unpooling decoder, "
    "dual path (attention + density), output stride 2",
    ("m-segnet", "ucf-qnrf"): "M-SegNet*: VGG19 front end (no BN), max-unpooling decoder + "
    "reg_layer, density only, abs output, output stride 2",
}
_CODE = "Pongpisit-Thanasutives/Variations-of-SFANet-for-Crowd-Counting"


def _norm(arch: str, variant: str) -> tuple[str, str]:
    a = arch.lower().replace("_", "-")
    v = variant.lower().replace("_", "-")
    if a not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; use one of {', '.join(ARCHITECTURES)}")
    if v not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    return a, v


def _output_names(variant: str) -> list[str]:
    return ["density", "attention"] if variant == "shanghaitech" else ["density"]


def check_size(arch: str, hw: Sequence[int]) -> tuple[int, int]:
    """``(h, w)`` if valid for ``arch`` (multiples of 48 for M-SFANet, 16 for M-SegNet)."""
    a, _ = _norm(arch, "shanghaitech")
    m = SFANET_SIZE_MULTIPLE if a == "m-sfanet" else SEGNET_SIZE_MULTIPLE
    h, w = int(hw[0]), int(hw[1])
    if h <= 0 or w <= 0 or h % m or w % m:
        label = "M-SFANet (ONNX export of its adaptive pools)" if a == "m-sfanet" else "M-SegNet"
        raise ValueError(f"{label} needs H and W multiples of {m}, got {h}x{w}")
    return h, w


def density_card(
    arch: str,
    variant: str,
    *,
    fixed_size: tuple[int, int] | None = None,
    checkpoint_name: str = "",
) -> ModelCard:
    """The card of an official M-SFANet / M-SegNet checkpoint.

    M-SFANet: ``fixed_size`` (default :data:`DEFAULT_SIZE`, multiples of 48) is written to the
    card; the app resizes frames to it and takes the density sum at that resolution as the
    count. M-SegNet: dynamic size, ``size_multiple`` 16, ``fixed_size`` must be None.
    """
    a, v = _norm(arch, variant)
    if a == "m-sfanet":
        fixed = check_size(a, fixed_size if fixed_size is not None else DEFAULT_SIZE)
        multiple = SFANET_SIZE_MULTIPLE
    else:
        if fixed_size is not None:
            raise ValueError("M-SegNet exports with dynamic H/W; fixed_size must be None")
        fixed, multiple = None, SEGNET_SIZE_MULTIPLE
    spec = InputSpec(color="RGB", scale=1.0 / 255.0, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                     size_multiple=multiple, fixed_size=fixed)
    source = official_source(_ARCHITECTURE[(a, v)], _TRAINING_DATA[v], checkpoint_name,
                             code=_CODE)
    return ModelCard(
        task="density",
        name=display_name(a, v),
        input=spec,
        output={
            "stride": 2,
            "count_scale": 1.0,
            "kind": "density",
            "outputs": _output_names(v),
        },
        source=source,
    )


class _AsTuple(nn.Module):
    """Always returns a tuple (one entry per ONNX output)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def export_density(
    model: nn.Module,
    out_path: str | Path,
    card: ModelCard,
    sample_hw: tuple[int, int] | None = None,
    opset: int = 17,
) -> Path:
    """Export a density network ``NCHW image -> density[, attention]`` with ``card``.

    With ``card.input.fixed_size`` the graph has that fixed H x W (dynamic batch) and
    ``sample_hw`` must be None or equal to it; otherwise batch, height and width are dynamic
    and ``sample_hw`` (default :data:`DEFAULT_SIZE`) is the trace size. Output names come from
    ``card.output['outputs']``. The IR version is capped at ``MAX_IR_VERSION``.
    """

    out_path = Path(out_path)
    fixed = card.input.fixed_size
    if fixed is not None:
        if sample_hw is not None and tuple(sample_hw) != tuple(fixed):
            raise ExportError(f"sample size {sample_hw} differs from the card's fixed size {fixed}")
        hw = tuple(fixed)
    else:
        hw = tuple(sample_hw) if sample_hw is not None else DEFAULT_SIZE
    names = list(card.output.get("outputs", ["density"]))
    model.eval()
    net = _AsTuple(model).eval()
    sample = torch.zeros(1, card.input.channels, int(hw[0]), int(hw[1]))
    with torch.no_grad():
        probe = net(sample)
    if len(probe) != len(names):
        raise ExportError(f"model returns {len(probe)} outputs, card names {names}")
    if fixed is not None:
        dyn = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}}
    else:
        dyn = {
            INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            **{n: {0: "batch", 2: "out_height", 3: "out_width"} for n in names},
        }
    try:
        data = onnx_bytes_of(net, sample, [INPUT_NAME], names, dyn, opset=opset)
    except Exception as e:  # exporter errors come in many types
        raise ExportError(f"torch.onnx.export failed: {type(e).__name__}: {e}") from e
    save_with_card(data, card, out_path)
    return out_path


#: ONNX Runtime vs float64 torch for one output (``loupe_models.exporters.onnx.OutputAgreement``).
OutputCheck = OutputAgreement
#: Result of :func:`verify_density_onnx` (``loupe_models.exporters.onnx.OnnxCheck``).
DensityCheck = OnnxCheck


def verify_density_onnx(
    model: nn.Module,
    onnx_path: str | Path,
    hw: tuple[int, int],
    card: ModelCard | None = None,
    seed: int = 0,
    batch: int = 1,
) -> DensityCheck:
    """Run ``onnx_path`` in ONNX Runtime (CPU) on a random image of size ``hw``, normalised
    with the card's mean/std, and compare every output with the float64 ``model``
    (:func:`loupe_models.exporters.onnx.check_onnx`, atol :data:`VERIFY_ATOL`, rtol
    :data:`VERIFY_RTOL`)."""
    x = card_sample(hw, card, seed, batch)
    return check_onnx(_AsTuple(model).eval(), onnx_path, x, atol=VERIFY_ATOL, rtol=VERIFY_RTOL,
                      seed=seed)


def _parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 384x576), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _second_size(hw: tuple[int, int]) -> tuple[int, int]:
    """Another valid M-SegNet size, to show that H and W are dynamic."""
    return hw[0] + 2 * SEGNET_SIZE_MULTIPLE, hw[1] + 4 * SEGNET_SIZE_MULTIPLE


def _run(args: argparse.Namespace) -> int:
    arch, variant = _norm(args.model, args.variant)
    size = args.size if args.size is not None else DEFAULT_SIZE
    try:
        size = check_size(arch, size)
    except ValueError as e:
        print(f"error: --size: {e}", file=sys.stderr)
        return 2
    ckpt = Path(args.checkpoint)
    model = load_strict(build_density_model(arch, variant),
                        load_density_checkpoint(ckpt, arch, variant))
    if arch == "m-sfanet":
        card = density_card(arch, variant, fixed_size=size, checkpoint_name=ckpt.name)
        out = export_density(model, args.out, card)
        check_sizes = [size]
    else:
        card = density_card(arch, variant, checkpoint_name=ckpt.name)
        out = export_density(model, args.out, card, sample_hw=size)
        check_sizes = [size, _second_size(size)]
    checks = [verify_density_onnx(model, out, hw, card=card) for hw in check_sizes]
    geometry = (
        f"fixed {size[0]}x{size[1]}"
        if card.input.fixed_size
        else f"dynamic H/W, multiples of {card.input.size_multiple}"
    )
    return report_export(card, out, checks, geometry=geometry)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loupe_models.export_density",
        description="Export an official M-SFANet / M-SegNet checkpoint to ONNX with an "
        "embedded Loupe model card (task 'density').",
    )
    p.add_argument("model", choices=ARCHITECTURES, help="architecture")
    p.add_argument(
        "--variant",
        required=True,
        choices=VARIANTS,
        help="shanghaitech (VGG16-bn, density + attention; file holds ['model']) or ucf-qnrf "
        "(VGG19, abs(density); file is the state dict)",
    )
    checkpoint_tool(p, "official .pth file", _run)
    p.add_argument(
        "--size",
        type=_parse_size,
        default=None,
        help="HxW. m-sfanet: the fixed export size, multiples of 48 (default 384x576); "
        "m-segnet: trace and first check size, multiples of 16 (default 384x576)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
