"""A small compression-contract ONNX model with known output, built with onnx.helper.

The "decoder" is a Gather over a constant table: frame t of the table is the clip's frame t
(cropped per the card) plus a fixed noise, so the reconstruction's error is known in advance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from loupe.base import quality as q
from loupe.base.media import clip_path
from loupe.inference.card import InputSpec, ModelCard, embed_card

CLIP = "carphone_pristine.mp4"


def clip_rgb(n: int, name: str = CLIP) -> list[np.ndarray]:
    """The first ``n`` frames of a shipped clip as RGB uint8 (as loupe's VideoSource decodes them)."""
    from loupe.sources.video import VideoSource

    out = []
    with VideoSource(str(clip_path(name))) as src:
        for f in src:
            out.append(f.pixels)
            if len(out) == n:
                break
    return out


def make_compression_model(path: Path, frames: int = 6, crop=(8, 16, 128, 144), size=(64, 72),
                           noise: float = 4.0, bits: int = 40_000, seed: int = 0,
                           output_size: tuple[int, int] | None = None, fps: float = 29.97) -> tuple[Path, np.ndarray]:
    """Write the model; return (path, table) with table the N x H x W x 3 float32 RGB [0, 1] frames it
    decodes to. ``output_size`` != size builds a model whose output disagrees with its card."""
    import cv2

    src = clip_rgb(frames)
    t, left, h, w = crop
    rng = np.random.default_rng(seed)
    table = []
    for f in src:
        tgt = f[t: t + h, left: left + w]
        if (h, w) != tuple(size):
            tgt = cv2.resize(tgt, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        noisy = np.clip(tgt.astype(np.float32) + rng.normal(0.0, noise, tgt.shape), 0, 255) / 255.0
        if output_size is not None:
            noisy = cv2.resize(noisy, (output_size[1], output_size[0]))
        table.append(noisy.astype(np.float32))
    arr = np.stack(table)  # N x H x W x 3
    const = numpy_helper.from_array(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)), name="table")
    oh, ow = output_size or size
    x = helper.make_tensor_value_info("frame_index", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("frame", TensorProto.FLOAT, [1, 3, oh, ow])
    graph = helper.make_graph([helper.make_node("Gather", ["table", "frame_index"], ["frame"], axis=0)],
                              "gather_frames", [x], [y], initializer=[const])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    embed_card(model, ModelCard(
        task="compression",
        name="noisy frame table",
        input=InputSpec(color="RGB", scale=1 / 255, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        output={"frames": frames, "size": list(size), "crop": list(crop), "source_size": [144, 176], "fps": fps,
                "bits": bits, "bpp": bits / (frames * size[0] * size[1]),
                "representation": {"file": "none (test table)"}, "clip": CLIP},
        source={"architecture": "table (test)", "training_data": CLIP, "demo": False},
    ))
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path, arr


def expected_quality(table: np.ndarray, frames: int, crop=(8, 16, 128, 144), size=(64, 72)) -> list[dict]:
    """psnr/ssim each frame should have, computed from the clip and the table directly."""
    import cv2

    t, left, h, w = crop
    out = []
    for f, rec in zip(clip_rgb(frames), table):
        tgt = f[t: t + h, left: left + w]
        if (h, w) != tuple(size):
            tgt = cv2.resize(tgt, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        r8 = np.clip(np.rint(rec * 255.0), 0, 255).astype(np.uint8)
        ty, ry = q.rgb_to_yuv420(tgt), q.rgb_to_yuv420(r8)
        out.append({"psnr": q.psnr_planes(ty, ry)["all"], "ssim": q.ssim_planes(ty, ry)["all"],
                    "psnr_rgb": q.psnr_rgb(tgt, r8)})
    return out
