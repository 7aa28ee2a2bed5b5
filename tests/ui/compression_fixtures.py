"""A small compression model built here: ONNX Gather over a constant table of the first frames of
carphone_pristine.mp4, downscaled and noised (frame index in, frame out, as the card says)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper

from loupe.base.media import clip_path
from loupe.inference.card import InputSpec, ModelCard, embed_card

CLIP = "carphone_pristine.mp4"


def clip_frames(n: int, clip: str = CLIP) -> np.ndarray:
    """The first n frames of a clip, RGB uint8, N x H x W x 3."""
    import av

    out = []
    with av.open(str(clip_path(clip))) as c:
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="rgb24"))
            if len(out) == n:
                break
    return np.stack(out)


def make_table_model(path: Path, n: int = 12, size=(72, 88), noise: float = 6.0, seed: int = 0, bpp: float = 0.5,
                     clip: str = CLIP) -> tuple[Path, np.ndarray]:
    """The model and its table (N x H x W x 3 uint8, the exact frames it outputs)."""
    src = clip_frames(n, clip)
    h, w = size
    rng = np.random.default_rng(seed)
    small = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in src]).astype(np.float32)
    table = np.clip(np.round(small + rng.normal(0, noise, small.shape)), 0, 255).astype(np.uint8)
    tab = (table.astype(np.float32) / 255.0).transpose(0, 3, 1, 2)  # N x 3 x H x W in [0, 1]
    x = helper.make_tensor_value_info("frame_index", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("frame", TensorProto.FLOAT, [1, 3, h, w])
    const = helper.make_tensor("table", TensorProto.FLOAT, list(tab.shape), tab.tobytes(), raw=True)
    graph = helper.make_graph([helper.make_node("Gather", ["table", "frame_index"], ["frame"], axis=0)],
                              "table", [x], [y], [const])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    bits = int(bpp * n * h * w)  # a plausible size for the card (the codecs are matched to it)
    embed_card(model, ModelCard(
        task="compression", name="noised table",
        input=InputSpec(color="RGB", scale=1 / 255),
        output={"frames": n, "size": [h, w], "source_size": list(src.shape[1:3]), "fps": 29.97,
                "bits": bits, "bpp": bits / (n * h * w),
                "representation": {"weights_bits": 8, "embedding_bits": 6, "params": 0, "embedding_values": 0,
                                   "file": "none"}, "clip": clip},
        source={"architecture": "test table (Gather)", "demo": False},
    ))
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path, table
