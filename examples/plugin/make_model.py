"""Write a tiny heatmap model: the absolute Laplacian of the grey frame (an edge map), with a
Loupe card naming the plug-in's task. Usage: python make_model.py OUT.onnx"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from loupe.inference.card import InputSpec, ModelCard, embed_card

out = sys.argv[1] if len(sys.argv) > 1 else "edges.onnx"
kernel = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32).reshape(1, 1, 3, 3)
graph = helper.make_graph(
    [
        helper.make_node("Conv", ["image", "laplacian"], ["response"], pads=[1, 1, 1, 1]),
        helper.make_node("Abs", ["response"], ["heat"]),
    ],
    "edges",
    [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, "h", "w"])],
    [helper.make_tensor_value_info("heat", TensorProto.FLOAT, [1, 1, "h", "w"])],
    initializer=[numpy_helper.from_array(kernel, "laplacian")],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
onnx.checker.check_model(model)
card = ModelCard(
    task="heatmap",  # the plug-in's task: Loupe finds it through the loupe.tasks entry point
    name="Edges (|Laplacian|)",
    input=InputSpec(color="GRAY", scale=1 / 255, mean=(0.0,), std=(1.0,)),
    output={"threshold": 0.25, "display_max": 1.0},
    source={"architecture": "3x3 Laplacian, absolute value", "demo": True},
)
embed_card(model, card)
onnx.save(model, out)
print(f"wrote {out}")
