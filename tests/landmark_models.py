"""Tiny landmark ONNX models whose outputs are known exactly (onnx.helper only).

Each model takes a proper ``1 x C x 200 x 200`` image (letterboxed) and outputs a fixed tensor
(``value + 0 x max(image)``, so the graph reads its input). The points, in model-input pixels:
a square (0-3, closed), a triangle (4-6, closed) and a line (7-8, open).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from loupe.inference.card import InputSpec, ModelCard, embed_card

INPUT_HW = (200, 200)

#: x, y in model-input pixels
POINTS = np.array([
    [60, 60], [140, 60], [140, 140], [60, 140],   # square
    [100, 80], [160, 80], [100, 120],             # triangle
    [20, 100], [180, 100],                        # line (open)
], np.float64)

CONTOURS = [
    {"name": "Square", "points": [0, 1, 2, 3]},
    {"name": "right triangle", "points": [4, 5, 6], "closed": True},
    {"name": "mid line", "points": [7, 8], "closed": False},
]
POINT_NAMES = ["sq tl", "sq tr", "sq br", "sq bl", "tri a", "tri b", "tri c", "line l", "line r"]
PALETTE = [[255, 0, 0], [0, 255, 0], [0, 128, 255]]


def gaussian_maps(points_in: np.ndarray, hw: tuple[int, int] = (50, 50), sigma: float = 1.5) -> np.ndarray:
    """``1 x P x h x w`` Gaussians whose centres decode (``align="msra"``: input continuous x =
    cell x * stride + 0.5) to ``points_in``."""
    h, w = hw
    sy, sx = INPUT_HW[0] / h, INPUT_HW[1] / w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    maps = []
    for x, y in points_in:
        cx, cy = (x - 0.5) / sx, (y - 0.5) / sy
        maps.append(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)))
    return np.stack(maps)[None].astype(np.float32)


def make_landmark_model(path: Path, value: np.ndarray, output: dict, *, gray: bool = False,
                        palette: list | None = PALETTE, input_hw: tuple[int, int] = INPUT_HW,
                        window: tuple[float, float] | None = None) -> Path:
    """A model whose one output is ``value`` whatever the image, with a ``landmarks`` card
    (``loupe.output`` = ``output``; the frame letterboxed into ``input_hw``; ``window``: a CT
    window (centre, width) for scan values)."""
    c = 1 if gray else 3
    spec = InputSpec(color="GRAY" if gray else "RGB", scale=1 / 255, mean=(0.0,) * c, std=(1.0,) * c,
                     fixed_size=input_hw, letterbox=True, pad_value=0, window=window)
    h, w = input_hw
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, c, h, w])
    v = np.asarray(value, np.float32)
    nodes = [
        helper.make_node("ReduceMax", ["image"], ["peak"], keepdims=0),
        helper.make_node("Mul", ["peak", "zero"], ["nothing"]),
        helper.make_node("Add", ["points_value", "nothing"], ["points"]),
    ]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero"),
             numpy_helper.from_array(v, "points_value")]
    out = helper.make_tensor_value_info("points", TensorProto.FLOAT, list(v.shape))
    graph = helper.make_graph(nodes, "constant_landmarks", [x], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    embed_card(model, ModelCard(
        task="landmarks", name="constant landmarks", input=spec,
        palette=tuple(tuple(p) for p in palette) if palette else (), output=dict(output),
        source={"architecture": "test model: constant points", "demo": False},
    ))
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
