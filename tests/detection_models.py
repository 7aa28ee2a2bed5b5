"""Tiny detection ONNX models whose outputs are known exactly, in each format (onnx.helper only).

Every model takes a proper ``1 x 3 x H x W`` image and outputs fixed tensors (``value + 0 x
max(image)``, so the graph reads its input); the tests encode one list of detections, given in
model-input pixels, in each format and check where the task puts them on the frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from loupe.inference.card import InputSpec, ModelCard, embed_card

INPUT_HW = (320, 320)
LABELS = ("person", "traffic light", "dog")

#: (x1, y1, x2, y2) in model-input pixels, class, score: a 320 x 320 letterboxed input holds a
#: 640 x 360 frame in rows 70-250 and a 300 x 500 frame in columns 64-256
DETECTIONS = (
    ((140.0, 150.0, 180.0, 170.0), 1, 0.9),
    ((150.0, 160.0, 230.0, 200.0), 0, 0.8),
    ((100.0, 60.0, 140.0, 100.0), 2, 0.6),   # reaches into the landscape frame's top padding: clipped
    ((0.0, 0.0, 30.0, 30.0), 0, 0.7),        # in the padding of both frames: dropped
    ((200.0, 200.0, 240.0, 240.0), 2, 0.2),  # below the score threshold
    ((60.0, 200.0, 100.0, 240.0), 1, 0.25),  # at the threshold: dropped (strictly above keeps)
)


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_constant_model(path: Path, outputs: dict[str, np.ndarray], output: dict | None,
                        labels: tuple[str, ...] = LABELS, input_hw: tuple[int, int] = INPUT_HW,
                        letterbox: bool = True, card: bool = True, spec: InputSpec | None = None) -> Path:
    """A model whose outputs (float32 or int64 arrays, in order) are ``outputs`` whatever the
    image, with a detection card (``loupe.output`` = ``output``; letterbox into ``input_hw``, or
    ``spec``; a spec without a fixed size makes the input's height and width dynamic)."""
    spec = spec or InputSpec(color="RGB", scale=1 / 255, fixed_size=input_hw, letterbox=letterbox)
    h, w = spec.fixed_size or ("h", "w")
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])
    nodes = [
        helper.make_node("ReduceMax", ["images"], ["peak"], keepdims=0),
        helper.make_node("Mul", ["peak", "zero"], ["nothing"]),
        helper.make_node("Cast", ["nothing"], ["nothing_i"], to=TensorProto.INT64),
    ]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    outs = []
    for name, value in outputs.items():
        v = np.asarray(value)
        is_int = np.issubdtype(v.dtype, np.integer)
        v = v.astype(np.int64 if is_int else np.float32)
        inits.append(numpy_helper.from_array(v, name + "_value"))
        nodes.append(helper.make_node("Add", [name + "_value", "nothing_i" if is_int else "nothing"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.INT64 if is_int else TensorProto.FLOAT, list(v.shape)))
    graph = helper.make_graph(nodes, "constant_detector", [x], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if card:
        embed_card(model, ModelCard(
            task="detection", name="constant detector",
            input=spec,
            labels=labels, output=dict(output or {}),
            source={"architecture": "test model: constant outputs", "demo": False},
        ))
    return _save(model, path)


def xyxy_to_cxcywh(b) -> list[float]:
    x1, y1, x2, y2 = b
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]


def yolov8_output(dets=DETECTIONS, n_classes: int = 3, anchors: int = 16, low: float = 0.01) -> np.ndarray:
    """``1 x (4 + C) x A``: each detection an anchor (best class = its score, the others ``low``),
    the remaining anchors score ``low`` everywhere."""
    out = np.full((1, 4 + n_classes, anchors), low, np.float32)
    out[0, :4] = 10.0
    for a, (box, c, s) in enumerate(dets):
        out[0, :4, a] = xyxy_to_cxcywh(box)
        out[0, 4 + c, a] = s
    return out


def yolov5_output(dets=DETECTIONS, n_classes: int = 3, anchors: int = 16, obj: float = 0.8) -> np.ndarray:
    """``1 x A x (5 + C)``: objectness ``obj``, class score = score / obj (score = obj x cls)."""
    out = np.zeros((1, anchors, 5 + n_classes), np.float32)
    out[0, :, :4] = 10.0
    out[0, :, 4] = 0.1
    for a, (box, c, s) in enumerate(dets):
        out[0, a, :4] = xyxy_to_cxcywh(box)
        out[0, a, 4] = obj
        out[0, a, 5:] = 0.01
        out[0, a, 5 + c] = s / obj
    return out


def end2end_output(dets=DETECTIONS, k: int = 10) -> np.ndarray:
    """``1 x K x 6``: the detections in order, then zero rows."""
    out = np.zeros((1, k, 6), np.float32)
    for i, (box, c, s) in enumerate(dets):
        out[0, i] = [*box, s, c]
    return out


def normalised_boxes(dets=DETECTIONS, q: int = 8, input_hw=INPUT_HW) -> np.ndarray:
    h, w = input_hw
    out = np.full((1, q, 4), 0.05, np.float32)
    for i, (box, _c, _s) in enumerate(dets):
        cx, cy, bw, bh = xyxy_to_cxcywh(box)
        out[0, i] = [cx / w, cy / h, bw / w, bh / h]
    return out


def detr_logits(dets=DETECTIONS, n_classes: int = 3, q: int = 8) -> np.ndarray:
    """``1 x Q x (C + 1)`` log-probabilities: softmax gives the score on the detection's class,
    the rest split over the others (most on "no object", the last); empty queries: no object."""
    probs = np.zeros((q, n_classes + 1), np.float64)
    probs[:, :n_classes] = 0.001
    probs[:, n_classes] = 1 - 0.001 * n_classes
    for i, (_box, c, s) in enumerate(dets):
        probs[i, :n_classes] = 0.001
        probs[i, c] = s
        probs[i, n_classes] = 1 - s - 0.001 * (n_classes - 1)
    return np.log(probs)[None].astype(np.float32)


def rtdetr_logits(dets=DETECTIONS, n_classes: int = 3, q: int = 8) -> np.ndarray:
    """``1 x Q x C`` logits whose sigmoid is the score on the detection's class, 0.01 elsewhere."""
    p = np.full((q, n_classes), 0.01, np.float64)
    for i, (_box, c, s) in enumerate(dets):
        p[i, c] = s
    return np.log(p / (1 - p))[None].astype(np.float32)


def expected_on_frame(frame_hw: tuple[int, int], dets=DETECTIONS, score_threshold: float = 0.25,
                      input_hw=INPUT_HW) -> list[tuple[tuple[float, float, float, float], int, float]]:
    """Where letterboxing puts the detections on a frame, worked out by hand: gain = min(320 / H,
    320 / W), the frame resized to round(H x gain) x round(W x gain) and centred (offset = (320 -
    that) // 2 rows or columns), each box mapped back per axis ``(x - left) x W / round(W x gain)``
    (the exact inverse of the resize), the same for y, clipped to the frame, empty ones dropped; best
    score first."""
    h, w = frame_hw
    ih, iw = input_hw
    gain = min(ih / h, iw / w)
    ch, cw = round(h * gain), round(w * gain)  # the frame's size in the input
    top = (ih - ch) // 2
    left = (iw - cw) // 2
    out = []
    for (x1, y1, x2, y2), c, s in sorted(dets, key=lambda d: -d[2]):
        if s <= score_threshold:
            continue
        fx1, fx2 = (min(max((x - left) * w / cw, 0), w) for x in (x1, x2))
        fy1, fy2 = (min(max((y - top) * h / ch, 0), h) for y in (y1, y2))
        if fx2 > fx1 and fy2 > fy1:
            out.append(((fx1, fy1, fx2, fy2), c, s))
    return out


def bsl_outputs(with_count: bool):
    """torchvision-like: xyxy pixels, labels counted from 1 (0 = background), then padding rows;
    with a TensorRT-EfficientNMS-like count, padding rows that would pass the threshold."""
    n = 10
    boxes = np.zeros((1, n, 4), np.float32)
    scores = np.zeros((1, n), np.float32)
    labels = np.zeros((1, n), np.int64)
    for i, (box, c, s) in enumerate(DETECTIONS):
        boxes[0, i], scores[0, i], labels[0, i] = box, s, c + 1
    out = {"det_boxes": boxes, "det_scores": scores, "det_classes": labels}
    if with_count:
        scores[0, len(DETECTIONS):] = 0.99  # beyond the count: must be ignored
        boxes[0, len(DETECTIONS):] = (10, 100, 50, 140)
        out = {"num_dets": np.array([[len(DETECTIONS)]], np.int64), **out}
    return out


# softmax / sigmoid scores are not exact: the box AT the threshold sits just below it there
NEAR = tuple((b, c, 0.2499 if s == 0.25 else s) for b, c, s in DETECTIONS)

FORMATS = {
    "yolov8": ({"output0": yolov8_output()}, {"format": "yolov8"}),
    "yolov8_transposed": ({"output0": yolov8_output().transpose(0, 2, 1).copy()}, {"format": "yolov8"}),
    "yolov8_no_format": ({"output0": yolov8_output()}, {}),
    "yolov5": ({"output0": yolov5_output()}, {"format": "yolov5"}),
    "end2end": ({"output0": end2end_output()}, {"format": "end2end"}),
    "detr": ({"pred_logits": detr_logits(NEAR), "pred_boxes": normalised_boxes()}, {"format": "detr"}),
    "rtdetr": ({"boxes": normalised_boxes(), "logits": rtdetr_logits(NEAR)}, {"format": "rtdetr"}),
    "rtdetr_one_output": (
        {"output0": np.concatenate([normalised_boxes(), 1 / (1 + np.exp(-rtdetr_logits(NEAR)))], axis=2)},
        {"format": "rtdetr"},
    ),
    "boxes_scores_labels": (bsl_outputs(False), {"format": "boxes_scores_labels", "label_offset": 1}),
    "boxes_scores_labels_count": (
        bsl_outputs(True),
        {"format": "boxes_scores_labels", "label_offset": 1,
         "outputs": {"boxes": "det_boxes", "scores": "det_scores", "labels": "det_classes", "count": "num_dets"}},
    ),
}


# two boxes of class 0 with IoU 0.8, a third of class 1 on the first
BOX_A = (100.0, 100.0, 200.0, 200.0)
BOX_B = (100.0, 100.0, 200.0, 180.0)  # inside A: IoU = 80 / 100
OVERLAP = ((BOX_A, 0, 0.9), (BOX_B, 0, 0.8), (BOX_A, 1, 0.7))
