"""Export vector-quantised models as Loupe codebook models (task ``codebook``).

CLI::

    python -m loupe_models.export_codebook vqvae2 --checkpoint vqvae_560.pt --out vqvae2.onnx

The ONNX takes one NCHW float32 ``image`` and returns, per level, the int64 code indices
(``1 x h x w``, or ``1 x h x w x k`` for a model with ``k`` active codes per position, most
active first) and, when the card names one, the reconstruction decoded *from those codes*
(``1 x 3 x H x W``). The card (``loupe.output``) lists each level's name, output, codebook
size, stride (input pixels per code position) and ``k``, and how the reconstruction maps to
RGB in [0, 1] (``rgb = out * scale + offset``). Batch and spatial axes are dynamic.

After writing, ONNX Runtime (CPU) is run against the float64 PyTorch model on a random image at
a second size (the exporters' one rule, :func:`loupe_models.exporters.onnx.compare_outputs`): the code
maps must agree except at near-tied codes (at most 0.1 % of positions, or twice as many as
flip in the model itself between float32 and float64 or under a tiny input perturbation:
which code is nearest is decided by float32 rounding there, and that differs between CPUs),
and when the codes agree the reconstruction must agree within
``VERIFY_ATOL + VERIFY_RTOL * peak`` plus the decoder's own float32 sensitivity.

Exit codes: 0 ok, 1 the ONNX Runtime check failed, 2 bad checkpoint or arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from loupe.inference.card import InputSpec, ModelCard
from loupe_models.exporters.onnx import (
    SENSITIVITY_FACTOR,
    VERIFY_ATOL,
    ExportError,
    OutputAgreement,
    card_sample,
    checkpoint_tool,
    cpu_session,
    load_strict,
    onnx_bytes_of,
    output_agreement,
    reference_runs,
    report_export,
    run_tool,
    save_with_card,
)
from loupe_models.nets.vqvae2 import VQVAE, load_vqvae2_checkpoint, vqvae2_ffhq

logger = logging.getLogger(__name__)

__all__ = [
    "CODE_FLIP_FRACTION",
    "INPUT_NAME",
    "CodebookCheck",
    "CodebookLevel",
    "VQVAE2Codes",
    "codebook_card",
    "export_codebook",
    "main",
    "run_codebook_onnx",
    "verify_codebook_onnx",
    "vqvae2_card",
]

INPUT_NAME = "image"
#: Share of code positions that may differ between ONNX Runtime and PyTorch (float32
#: rounding can flip a position whose two nearest codes are almost equidistant).
CODE_FLIP_FRACTION = 1e-3
#: VQ-VAE-2 input: RGB, x/255, then mean/std 0.5 -> [-1, 1]; H, W multiples of 8.
VQVAE2_INPUT = InputSpec(color="RGB", scale=1.0 / 255.0, mean=(0.5, 0.5, 0.5),
                         std=(0.5, 0.5, 0.5), size_multiple=8)


@dataclass(frozen=True)
class CodebookLevel:
    """One quantised level as the card describes it."""

    name: str  # short ASCII id (analyze columns codes_used_<name>, perplexity_<name>)
    output: str  # ONNX output name
    codebook_size: int
    stride: int  # input pixels per code position
    k: int = 1  # active codes per position

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "output": self.output, "codebook_size": int(self.codebook_size),
                "stride": int(self.stride), "k": int(self.k)}


def codebook_card(
    name: str,
    levels: Sequence[CodebookLevel],
    *,
    input_spec: InputSpec,
    reconstruction: dict[str, Any] | None,
    source: dict[str, Any],
) -> ModelCard:
    """A ``codebook`` card: ``loupe.output = {"levels": [...], "reconstruction": ...}``.

    ``reconstruction`` is ``{"output": name, "scale": s, "offset": o}`` (``rgb01 = out*s+o``)
    or None when the model has no reconstruction output.
    """
    if not levels:
        raise ValueError("a codebook card needs at least one level")
    names = [lv.name for lv in levels]
    if len(set(names)) != len(names):
        raise ValueError(f"level names must be distinct, got {names}")
    for lv in levels:
        if not lv.name.isascii() or not lv.name.replace("_", "").isalnum():
            raise ValueError(f"level name {lv.name!r} must be a short ASCII id")
        if lv.codebook_size < 1 or lv.stride < 1 or lv.k < 1:
            raise ValueError(f"level {lv.name!r}: codebook_size, stride and k must be >= 1")
    output: dict[str, Any] = {"levels": [lv.to_dict() for lv in levels],
                              "reconstruction": dict(reconstruction) if reconstruction else None}
    return ModelCard(task="codebook", name=name, input=input_spec, output=output,
                     source=dict(source))


def _levels(card: ModelCard) -> list[dict[str, Any]]:
    return list(card.output.get("levels", []))


def _output_names(card: ModelCard) -> list[str]:
    names = [lv["output"] for lv in _levels(card)]
    rec = card.output.get("reconstruction")
    if rec:
        names.append(rec["output"])
    return names


def export_codebook(
    net: nn.Module,
    out_path: str | Path,
    card: ModelCard,
    sample_hw: tuple[int, int] = (64, 64),
    opset: int = 17,
) -> Path:
    """Export ``net`` (``image -> (codes of each level..., [reconstruction])``, in the card's
    level order) to ``out_path`` with ``card``; dynamic batch and spatial axes."""
    if card.task != "codebook":
        raise ExportError(f"card task must be 'codebook', got {card.task!r}")
    out_path = Path(out_path)
    names = _output_names(card)
    net.eval()
    sample = torch.zeros(1, card.input.channels, int(sample_hw[0]), int(sample_hw[1]))
    with torch.no_grad():
        probe = net(sample)
    probe = probe if isinstance(probe, (tuple, list)) else (probe,)
    if len(probe) != len(names):
        raise ExportError(f"the model returns {len(probe)} outputs, the card names {len(names)}")
    dyn: dict[str, dict[int, str]] = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    for lv, t in zip(_levels(card), probe, strict=False):
        if t.dtype != torch.int64:
            raise ExportError(f"level {lv['name']!r} output is {t.dtype}, expected int64 codes")
        want_dims = 3 if int(lv.get("k", 1)) == 1 else 4
        if t.dim() != want_dims:
            raise ExportError(f"level {lv['name']!r} output has {t.dim()} dims, expected {want_dims}")
        dyn[lv["output"]] = {0: "batch", 1: f"h_{lv['name']}", 2: f"w_{lv['name']}"}
    if card.output.get("reconstruction"):
        dyn[names[-1]] = {0: "batch", 2: "out_height", 3: "out_width"}
    data = onnx_bytes_of(net, sample, [INPUT_NAME], names, dyn, opset=opset, quiet_tracer=True)
    return save_with_card(data, card, out_path)


def run_codebook_onnx(onnx_path: str | Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run the ONNX on ``x`` (NCHW float32) with ONNX Runtime on the CPU; name -> array."""
    sess = cpu_session(onnx_path)
    outs = sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})
    return {o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)}


@dataclass(frozen=True)
class CodebookCheck:
    """Result of :func:`verify_codebook_onnx` (ONNX Runtime vs the float64 model)."""

    input_shape: tuple[int, ...]
    code_mismatches: dict[str, int]  # level -> positions whose code(s) differ from float64's
    code_positions: dict[str, int]  # level -> positions compared
    code_sensitivity: dict[str, int]  # level -> most positions flipped by the model itself
    recon: OutputAgreement | None  # None: no reconstruction output, or codes differ

    @property
    def recon_max_abs_diff(self) -> float | None:
        return None if self.recon is None else self.recon.max_abs_diff

    @property
    def recon_limit(self) -> float:
        return VERIFY_ATOL if self.recon is None else self.recon.limit

    @property
    def codes_equal(self) -> bool:
        return not any(self.code_mismatches.values())

    def allowed_flips(self, level: str) -> float:
        return max(CODE_FLIP_FRACTION * self.code_positions[level],
                   SENSITIVITY_FACTOR * self.code_sensitivity.get(level, 0))

    @property
    def ok(self) -> bool:
        for name, bad in self.code_mismatches.items():
            if bad > self.allowed_flips(name):
                return False
        if self.recon is None:
            return True  # a flipped code moves the decoded image locally; codes decide then
        return self.recon.ok

    def summary(self) -> str:
        shape = "x".join(str(d) for d in self.input_shape)
        codes = ", ".join(f"{n}: {self.code_mismatches[n]}/{self.code_positions[n]} differ "
                          f"(model's own {self.code_sensitivity.get(n, 0)})"
                          for n in self.code_mismatches)
        rec = "" if self.recon is None else f"; reconstruction {self.recon.summary()}"
        return f"onnxruntime vs torch at {shape}: codes {codes}{rec}"


def _flipped_positions(a: np.ndarray, b: np.ndarray) -> int:
    return int((a != b).reshape(*a.shape[:3], -1).any(axis=-1).sum())


def verify_codebook_onnx(
    net: nn.Module, onnx_path: str | Path, card: ModelCard, hw: tuple[int, int] = (72, 104),
    seed: int = 0, x: torch.Tensor | None = None,
) -> CodebookCheck:
    """Compare the ONNX with the float64 ``net`` (the exported module) on a random normalised
    image of size ``hw`` (or on ``x``)."""
    if x is None:
        x = card_sample(hw, card, seed)
    net.eval()
    ref, alts = reference_runs(net, x, seed=seed)
    got = run_codebook_onnx(onnx_path, x.numpy())
    levels = _levels(card)
    mismatches: dict[str, int] = {}
    positions: dict[str, int] = {}
    sensitivity: dict[str, int] = {}
    same_codes = [True] * len(alts[0]) if alts else []
    for k, (lv, r) in enumerate(zip(levels, ref, strict=False)):
        g_codes = got[lv["output"]]
        r_codes = r
        if g_codes.shape != r_codes.shape:
            raise ExportError(f"{lv['output']}: onnxruntime shape {g_codes.shape} != torch {r_codes.shape}")
        if g_codes.dtype != np.int64:
            raise ExportError(f"{lv['output']}: onnxruntime dtype {g_codes.dtype}, expected int64")
        mismatches[lv["name"]] = _flipped_positions(g_codes, r_codes)
        positions[lv["name"]] = int(np.prod(r_codes.shape[:3]))
        flips = [_flipped_positions(a.astype(np.int64), r_codes) for a in alts[k]]
        sensitivity[lv["name"]] = max(flips, default=0)
        same_codes = [s and f == 0 for s, f in zip(same_codes, flips)]
    recon = None
    rec = card.output.get("reconstruction")
    if rec and not any(mismatches.values()):
        # the decoder's own spread, from the runs whose codes equal the float64 model's
        same = [a for a, s in zip(alts[-1], same_codes) if s]
        recon = output_agreement(rec["output"], got[rec["output"]], ref[-1], same)
    return CodebookCheck(tuple(x.shape), mismatches, positions, sensitivity, recon)


# --------------------------------------------------------------------------------------
# VQ-VAE-2
# --------------------------------------------------------------------------------------
class VQVAE2Codes(nn.Module):
    """``image -> (codes_top, codes_bottom, recon)``: the official ``encode()`` code maps and
    ``decode_code()`` of those maps."""

    def __init__(self, model: VQVAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, _, _, id_t, id_b = self.model.encode(x)
        return id_t, id_b, self.model.decode_code(id_t, id_b)


def vqvae2_card(checkpoint_name: str = "", n_embed: int = 512, demo: bool = False) -> ModelCard:
    """The card of a VQ-VAE-2 (``VQVAE()`` layout): levels top (stride 8) and bottom (4)."""
    source: dict[str, Any] = {
        "architecture": "VQ-VAE-2",
        "implementation": "rosinality/vq-vae-2-pytorch VQVAE() (channel 128, 2 res blocks, "
        f"embed_dim 64, n_embed {n_embed}), re-implemented in loupe_models.nets.vqvae2",
        "training_data": "FFHQ 256x256 (official checkpoint vqvae_560.pt)" if checkpoint_name
        else "unknown",
        "demo": bool(demo),
    }
    if checkpoint_name:
        source["checkpoint"] = checkpoint_name
    return codebook_card(
        "VQ-VAE-2" + (" (FFHQ)" if checkpoint_name else ""),
        [CodebookLevel("top", "codes_top", n_embed, VQVAE.STRIDES["top"]),
         CodebookLevel("bottom", "codes_bottom", n_embed, VQVAE.STRIDES["bottom"])],
        input_spec=VQVAE2_INPUT,
        reconstruction={"output": "recon", "scale": 0.5, "offset": 0.5},
        source=source,
    )


def export_vqvae2(model: VQVAE, out_path: str | Path, card: ModelCard | None = None) -> Path:
    """Export a VQ-VAE-2 (codes of both levels + reconstruction from the codes)."""
    card = card or vqvae2_card(n_embed=model.n_embed)
    return export_codebook(VQVAE2Codes(model).eval(), out_path, card, sample_hw=(64, 64))


def _export_vqvae2_cli(args: argparse.Namespace) -> int:
    ckpt = Path(args.checkpoint)
    model = load_strict(vqvae2_ffhq(), load_vqvae2_checkpoint(ckpt))
    card = vqvae2_card(ckpt.name)
    out = export_vqvae2(model, args.out, card)
    check = verify_codebook_onnx(VQVAE2Codes(model), out, card, hw=(136, 200))
    return report_export(card, out, [check], differ="", agree="")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loupe_models.export_codebook",
        description="Export a vector-quantised model as a Loupe codebook model (ONNX + card).",
    )
    sub = p.add_subparsers(dest="model", required=True, metavar="MODEL")
    v = sub.add_parser("vqvae2", help="VQ-VAE-2 (rosinality VQVAE(), e.g. FFHQ vqvae_560.pt)",
                       description="Export a VQ-VAE-2 checkpoint (a plain state dict): code maps "
                       "of the top and bottom levels and the reconstruction from them.")
    checkpoint_tool(v, "state-dict .pt file (e.g. vqvae_560.pt)", _export_vqvae2_cli)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
