"""Tiny depth ONNX models whose outputs are known exactly (onnx.helper only).

The model ignores the pixels and outputs a ramp over the model input's own grid:
``value(row, col) = base + a_row * row + a_col * col`` at input resolution, average-pooled by
``stride`` (so output cell (i, j) holds ``base + a_row * (s*i + (s-1)/2) + a_col * (s*j + (s-1)/2)``),
in the layout asked for (N x 1 x h x w, N x h x w x 1 or N x h x w). Its shape follows the
input's, so the same graph serves a fixed (letterboxed) input and a dynamic (padded) one; the
padding gets values of its own, so statistics that include it are caught.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from loupe.inference.card import InputSpec, ModelCard, embed_card

LAYOUT_SHAPES = {"NCHW": [1, 1, "h2", "w2"], "NHWC": [1, "h2", "w2", 1], "NHW": [1, "h2", "w2"]}


def make_ramp_depth_model(path: Path, *, spec: InputSpec | None = None, stride: int = 1, layout: str = "NCHW",
                          base: float = 1.0, a_row: float = 0.1, a_col: float = 0.01,
                          output: dict | None = None, card: bool = True, name: str = "ramp depth") -> Path:
    spec = spec or InputSpec(color="RGB", scale=1 / 255, size_multiple=32)
    h, w = spec.fixed_size or ("h", "w")
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, h, w])
    y = helper.make_tensor_value_info("depth", TensorProto.FLOAT, LAYOUT_SHAPES[layout])
    c = {  # constants
        "zero_i": np.array(0, np.int64), "one_i": np.array(1, np.int64),
        "a_row": np.array(a_row, np.float32), "a_col": np.array(a_col, np.float32),
        "base": np.array(base, np.float32), "col_shape": np.array([-1, 1], np.int64),
        "row_shape": np.array([1, -1], np.int64), "nc_axes": np.array([0, 1], np.int64),
    }
    inits = [numpy_helper.from_array(v, k) for k, v in c.items()]
    nodes = [
        helper.make_node("Shape", ["image"], ["shp"]),
        helper.make_node("Gather", ["shp", "two"], ["h"], axis=0),
        helper.make_node("Gather", ["shp", "three"], ["w"], axis=0),
        helper.make_node("Range", ["zero_i", "h", "one_i"], ["r_i"]),
        helper.make_node("Range", ["zero_i", "w", "one_i"], ["c_i"]),
        helper.make_node("Cast", ["r_i"], ["r_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["c_i"], ["c_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["r_f", "a_row"], ["r_s"]),
        helper.make_node("Mul", ["c_f", "a_col"], ["c_s"]),
        helper.make_node("Reshape", ["r_s", "col_shape"], ["r_col"]),
        helper.make_node("Reshape", ["c_s", "row_shape"], ["c_row"]),
        helper.make_node("Add", ["r_col", "c_row"], ["grid0"]),
        helper.make_node("Add", ["grid0", "base"], ["grid"]),
        helper.make_node("Unsqueeze", ["grid", "nc_axes"], ["full"]),
    ]
    inits += [numpy_helper.from_array(np.array(2, np.int64), "two"), numpy_helper.from_array(np.array(3, np.int64), "three")]
    last = "full"
    if stride > 1:
        nodes.append(helper.make_node("AveragePool", ["full"], ["pooled"], kernel_shape=[stride, stride], strides=[stride, stride]))
        last = "pooled"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [last], ["depth"], perm=[0, 2, 3, 1]))
    elif layout == "NHW":
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "c_axis"))
        nodes.append(helper.make_node("Squeeze", [last, "c_axis"], ["depth"]))
    else:
        nodes.append(helper.make_node("Identity", [last], ["depth"]))
    graph = helper.make_graph(nodes, "ramp_depth", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if card:
        embed_card(model, ModelCard(task="depth", name=name, input=spec, output=dict(output or {}),
                                    source={"architecture": "test model: coordinate ramp", "demo": False}))
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def ramp(rows: range, cols: range, stride: int = 1, base: float = 1.0, a_row: float = 0.1,
         a_col: float = 0.01) -> np.ndarray:
    """The model's output cells ``rows`` x ``cols`` (output indices), worked out from the formula
    above (float64)."""
    half = (stride - 1) / 2
    r = np.array([stride * i + half for i in rows], np.float64)
    c = np.array([stride * j + half for j in cols], np.float64)
    return base + a_row * r[:, None] + a_col * c[None, :]
