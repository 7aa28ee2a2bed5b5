"""Benchmark: instance segmentation post-processing and drawing, 300 instances with masks at 1080p.

A YOLOv8-seg output for a 1920x1080 frame letterboxed to 640x640: detection_post's synthetic
predictions (8,400 anchors, 80 classes; 300 objects on a grid, each seen by a few overlapping
candidates, the rest below the score threshold) with 32 mask coefficients per anchor (seeded
normal), and 32 x 160 x 160 prototypes (seeded normal noise blurred over a few cells, so that
masks are blobs). It goes through the instance task's steps: decode + NMS + the frame mapping
(detection's), then each kept box's mask (logits upsampled to the input's pixels inside the box,
cut to it, then resized to the display inside the box's reach), the id map, the result; at the
window's display cap (1280 x 720) and at the full frame (``analyze``: no cap). Then the panel:
its per-frame update (the id map to an RGBA image with outlines, one image item, plus the boxes)
and the rendering of the 1080p frame view with and without the boxes and masks. Medians of
``--reps`` runs; no goal is asserted.

    python bench/instances_post.py [--reps N] [--candidates 8400] [--kept 300] [--classes 80]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common
import cv2
import detection_post as dp
import numpy as np

from loupe.inference.card import InputSpec
from loupe.inference.engine import default_palette
from loupe.inference.preprocess import prepare
from loupe.sources.base import Frame
from loupe.tasks.instances import compose, instance_masks

INPUT = dp.INPUT
FRAME_HW = dp.FRAME_HW
M = 32
timed = dp.timed


def seg_outputs(geometry, n_anchors: int, n_classes: int, kept: int, proto_hw: tuple[int, int],
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(1, 4 + C + 32, A) predictions (detection_post's boxes and scores, then coefficients)
    and (1, 32, h, w) prototypes."""
    rng = np.random.default_rng(seed)
    det = dp.synthetic_yolov8(geometry, n_anchors, n_classes, kept, seed=seed)
    coeffs = rng.normal(0.0, 1.0, (1, M, n_anchors)).astype(np.float32)
    protos = rng.normal(0.0, 1.0, (M, *proto_hw)).astype(np.float32)
    protos = np.stack([cv2.GaussianBlur(p, (0, 0), 2.0) for p in protos]) * 4.0
    return np.concatenate([det, coeffs], axis=1), protos[None].astype(np.float32)


def seg_model(path: str, pred: np.ndarray, protos: np.ndarray, n_classes: int) -> str:
    """A model that outputs ``pred`` and ``protos`` whatever the image, with an instances card
    (letterbox into 640x640, Ultralytics' thresholds)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from loupe.inference.card import ModelCard, embed_card

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, INPUT, INPUT])
    outs = [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(pred.shape)),
            helper.make_tensor_value_info("output1", TensorProto.FLOAT, list(protos.shape))]
    nodes = [helper.make_node("ReduceMax", ["images"], ["peak"], keepdims=0),
             helper.make_node("Mul", ["peak", "zero"], ["nothing"]),
             helper.make_node("Add", ["pred", "nothing"], ["output0"]),
             helper.make_node("Add", ["protos", "nothing"], ["output1"])]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero"), numpy_helper.from_array(pred, "pred"),
             numpy_helper.from_array(protos, "protos")]
    model = helper.make_model(helper.make_graph(nodes, "bench_segmenter", [x], outs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    embed_card(model, ModelCard(
        task="instances", name="bench segmenter",
        input=InputSpec(color="RGB", scale=1 / 255, fixed_size=(INPUT, INPUT), letterbox=True),
        labels=tuple(f"class {k}" for k in range(n_classes)),
        output={"format": "yolov8-seg", "score_threshold": dp.SCORE, "iou_threshold": dp.IOU, "max_detections": 300},
        source={"architecture": "benchmark: constant outputs", "demo": False},
    ))
    model.ir_version = 10
    onnx.save(model, path)
    return path


def draw_figures(result, frame: Frame, n_classes: int, reps: int) -> dict[str, tuple[float, float]]:
    """ms: the panel's per-frame update, and rendering the 1080p view with and without it."""
    from loupe.ui.panels.instances import InstancesPanel, mask_rgba

    with dp.offscreen_view(frame) as (view, render):
        out = {"render_base": timed(render, reps)}
        palette = np.array(default_palette(n_classes), np.uint8)
        panel = InstancesPanel(result.labels, palette, "bench")
        panel.attach(view.vb)
        panel.update_from(result, frame, True)
        out["render_all"] = timed(render, reps)
        out["rgba"] = timed(lambda: mask_rgba(result.masks, result.classes, palette, panel.visible, 0.45), reps)
        out["update_fast"] = timed(lambda: panel.update_from(result, frame, False), reps)
        out["update_slow"] = timed(lambda: panel.update_from(result, frame, True), reps)
        out["view_items"] = (len(view.vb.addedItems), 0.0)
        panel.detach()
        panel.deleteLater()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--candidates", type=int, default=8400)
    ap.add_argument("--kept", type=int, default=300)
    ap.add_argument("--classes", type=int, default=80)
    args = ap.parse_args(argv)
    common.header("Instance segmentation post-processing at 1920x1080 (ms per frame; CPU)")
    from loupe.run.pipeline import load_model

    h, w = FRAME_HW
    rng = np.random.default_rng(1)
    frame = Frame(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), 0, 0.0, {})
    _, geometry = prepare(frame, InputSpec(fixed_size=(INPUT, INPUT), letterbox=True))
    pred, protos = seg_outputs(geometry, args.candidates, args.classes, args.kept, (INPUT // 4, INPUT // 4))
    with tempfile.TemporaryDirectory(prefix="loupe-segpost-") as tmp:
        path = seg_model(os.path.join(tmp, "bench_segmenter.onnx"), pred, protos, args.classes)
        window = load_model(path, providers="cpu").task  # display cap 1280
        full = load_model(path, providers="cpu", display_max_side=None).task  # analyze
    _, geo = window.prepare(frame)
    outputs = [pred, protos]
    result = window.postprocess(outputs, geo)
    settings = (window.score_threshold, window.iou_threshold, window.max_detections)
    cand = window.decode_outputs(outputs, geo, settings[0])
    idx, _boxes = window.select(cand, geo, settings)
    coeffs = pred[0, 4 + args.classes:, cand.index[idx]]
    in_boxes = cand.boxes[idx]
    p = protos[0]
    disp = window.display_hw(geo)
    masks, ranges, _ = instance_masks(p, coeffs, in_boxes, geo, disp)
    area = np.mean([mk.mean() for mk in masks if mk.size])
    print(f"input {INPUT}x{INPUT} letterbox of {w}x{h}; outputs {tuple(pred.shape)} and {tuple(protos.shape)}; "
          f"{len(idx)} instances kept, {result.count} with a mask; masks cover {100 * area:.0f} % of their "
          f"boxes on average; display {disp[1]}x{disp[0]} (window), {w}x{h} (analyze)")
    r = args.reps
    rows = [
        ("decode + NMS + to frame (detection's steps)",
         timed(lambda: window.select(window.decode_outputs(outputs, geo, settings[0]), geo, settings), r)),
        (f"{len(idx)} masks at {disp[1]}x{disp[0]} (inside each box)",
         timed(lambda: instance_masks(p, coeffs, in_boxes, geo, disp), r)),
        (f"{len(idx)} masks at {w}x{h} (inside each box)",
         timed(lambda: instance_masks(p, coeffs, in_boxes, geo, (h, w)), r)),
        (f"id map of {len(idx)} masks at {disp[1]}x{disp[0]}", timed(lambda: compose(masks, ranges, disp), r)),
        ("task.postprocess, window (display 1280)", timed(lambda: window.postprocess(outputs, geo), r)),
        ("task.postprocess, analyze (full 1080p)", timed(lambda: full.postprocess(outputs, geo), r)),
    ]
    d = draw_figures(result, frame, args.classes, r)
    base = d["render_base"]
    draw = common.minus(d["render_all"], base)
    rows += [
        (f"  id map -> RGBA with outlines ({disp[1]}x{disp[0]})", d["rgba"]),
        ("panel update per frame (boxes + one mask image)", d["update_fast"]),
        ("panel update with table and plot (a few times a second)", d["update_slow"]),
        ("render 1080p view, frame only", base),
        (f"render 1080p view, frame + {result.count} masks and boxes", d["render_all"]),
        (f"  drawing {result.count} masks and boxes with labels", draw),
    ]
    common.print_steps(rows, 60)
    print(f"the panel adds 2 items to the frame view for all {result.count} instances (boxes, masks; "
          f"view box: {d['view_items'][0]} items with the frame's own)")
    post, upd = rows[4][1], d["update_fast"]
    common.per_frame_total("post-processing + drawing per frame (window)", post, upd, draw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
