"""Benchmark: detection post-processing and drawing at 1080p, against a model's inference time.

A YOLOv8-format output for a 1920x1080 frame letterboxed to 640x640 (8,400 candidates, 80
classes; 300 objects, each found by a few overlapping candidates above the score threshold, the
rest below it) goes through the task's steps: decode (threshold, best class, cxcywh -> xyxy),
class-aware NMS (IoU 0.7, at most 300 kept), and the letterbox mapped back to frame pixels and
clipped. The 300 boxes kept are then drawn with their labels by the detection panel's one item
over the 1080p frame in the window's frame view, rendered offscreen into a 1920x1080 image
(with and without the boxes: the difference is the drawing cost), plus the panel's own per-frame
update. Each figure is the median over ``--reps`` runs. The inference it is compared with: the
demo segmentation model (``resources/demo_segmentation.onnx``, a small CNN) at 640x640 on
the CPU here, and Ultralytics' published CPU ONNX times for YOLOv8n / YOLO11n at 640 (their
hardware, quoted for scale). No goal is asserted: the figures are printed.

    python bench/detection_post.py [--reps N] [--candidates 8400] [--kept 300] [--classes 80]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from contextlib import contextmanager

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common
import numpy as np

from loupe.inference.card import InputSpec
from loupe.inference.engine import default_palette
from loupe.inference.preprocess import prepare
from loupe.sources.base import Frame
from loupe.tasks.detection_formats import decode, nms

INPUT = 640
FRAME_HW = (1080, 1920)
SCORE, IOU = 0.25, 0.7
#: Ultralytics' docs (Detection, COCO, "Speed CPU ONNX (ms)" at 640): quoted, not measured here
PUBLISHED_CPU_MS = {"YOLOv8n": 80.4, "YOLO11n": 56.1}


def timed(fn, reps: int) -> tuple[float, float]:
    """(median, best) ms of ``reps`` calls after one warm-up call."""
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e3, float(np.min(ts)) * 1e3


def constant_model(path: str, pred: np.ndarray, n_classes: int) -> str:
    """A model that outputs ``pred`` (plus 0 x the image's maximum, so it reads its input) with
    a YOLOv8 detection card: letterbox into 640x640, pad 114, Ultralytics' thresholds."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from loupe.inference.card import ModelCard, embed_card

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, INPUT, INPUT])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(pred.shape))
    nodes = [helper.make_node("ReduceMax", ["images"], ["peak"], keepdims=0),
             helper.make_node("Mul", ["peak", "zero"], ["nothing"]),
             helper.make_node("Add", ["pred", "nothing"], ["output0"])]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero"), numpy_helper.from_array(pred, "pred")]
    model = helper.make_model(helper.make_graph(nodes, "bench_detector", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    embed_card(model, ModelCard(
        task="detection", name="bench detector",
        input=InputSpec(color="RGB", scale=1 / 255, fixed_size=(INPUT, INPUT), letterbox=True),
        labels=tuple(f"class {k}" for k in range(n_classes)),
        output={"format": "yolov8", "score_threshold": SCORE, "iou_threshold": IOU, "max_detections": 300},
        source={"architecture": "benchmark: constant outputs", "demo": False},
    ))
    model.ir_version = 10
    onnx.save(model, path)
    return path


def synthetic_yolov8(geometry, n_anchors: int, n_classes: int, kept: int, per_object: int = 5,
                     seed: int = 0) -> np.ndarray:
    """(1, 4 + C, A) predictions: ``kept`` objects on a grid over the letterboxed frame's
    content (no two overlapping), each seen by ``per_object`` candidates jittered by a pixel
    (IoU with each other above 0.7, one class, scores above the threshold); every other anchor
    scores below the threshold in every class. NMS keeps exactly ``kept`` boxes."""
    rng = np.random.default_rng(seed)
    hits = kept * per_object
    if hits > n_anchors:
        raise ValueError(f"{kept} objects x {per_object} candidates need {hits} anchors, have {n_anchors}")
    ch, cw = geometry.content_hw
    top, left = geometry.offset
    cols = math.ceil(math.sqrt(kept * cw / ch))
    rows = math.ceil(kept / cols)
    cell_w, cell_h = cw / cols, ch / rows
    pred = np.zeros((4 + n_classes, n_anchors), np.float32)
    # background anchors: small boxes anywhere, every class score below the threshold
    pred[0] = rng.uniform(0, INPUT, n_anchors)
    pred[1] = rng.uniform(0, INPUT, n_anchors)
    pred[2:4] = rng.uniform(4, 60, (2, n_anchors))
    pred[4:] = rng.uniform(0, SCORE * 0.8, (n_classes, n_anchors))
    anchors = rng.permutation(n_anchors)[:hits].reshape(kept, per_object)
    for k in range(kept):
        r, c = divmod(k, cols)
        cx, cy = left + (c + 0.5) * cell_w, top + (r + 0.5) * cell_h
        w, h = 0.8 * cell_w, 0.8 * cell_h
        cls = int(rng.integers(n_classes))
        for j, a in enumerate(anchors[k]):
            pred[:4, a] = (cx + rng.uniform(-0.5, 0.5), cy + rng.uniform(-0.5, 0.5), w, h)
            pred[4 + cls, a] = 0.9 - 0.1 * j  # the first candidate is the best
    return pred[None]


@contextmanager
def offscreen_view(frame: Frame):
    """A 1080p ``FrameView`` showing ``frame`` (in a plain holder widget), and ``render()``, which
    paints the view into a QImage: what the drawing figures time. Deleted on leaving, with whatever
    was ``deleteLater``-ed inside (not left to whoever closes every top-level widget later)."""
    from PySide6.QtCore import QCoreApplication, QEvent, QRectF
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget

    from loupe.ui.viewer import FrameView

    app = QApplication.instance() or QApplication([])
    h, w = FRAME_HW
    holder = QWidget()
    lay = QVBoxLayout(holder)
    lay.setContentsMargins(0, 0, 0, 0)
    view = FrameView()
    lay.addWidget(view)
    holder.resize(w, h)
    holder.show()
    view.show_frame(frame)
    view.fit()
    app.processEvents()
    img = QImage(w, h, QImage.Format.Format_RGB32)

    def render() -> None:
        p = QPainter(img)
        view.render(p, QRectF(0, 0, w, h))
        p.end()

    try:
        yield view, render
    finally:
        holder.hide()
        holder.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def draw_figures(result, frame: Frame, n_classes: int, reps: int) -> dict[str, tuple[float, float]]:
    """ms: rendering the 1080p frame view with and without the boxes, and the panel's updates."""
    from loupe.ui.panels.detection import DetectionPanel

    with offscreen_view(frame) as (view, render):
        out = {"render_base": timed(render, reps)}
        panel = DetectionPanel(result.labels, np.array(default_palette(n_classes), np.uint8), "bench")
        panel.attach(view.vb)
        panel.update_from(result, frame, True)
        out["render_boxes"] = timed(render, reps)
        panel.set_show_labels(False)
        out["render_no_labels"] = timed(render, reps)
        panel.set_show_labels(True)
        out["update_fast"] = timed(lambda: panel.update_from(result, frame, False), reps)
        out["update_slow"] = timed(lambda: panel.update_from(result, frame, True), reps)
        out["view_items"] = (len(view.vb.addedItems), 0.0)
        panel.detach()
        panel.deleteLater()
    return out


def inference_ms(reps: int) -> tuple[str, tuple[float, float]] | None:
    """The demo segmentation model at 640x640 on the CPU (None when it is not there)."""
    from loupe.inference.engine import Engine
    from loupe.resources import resource_path

    path = resource_path("demo_segmentation.onnx")
    if not os.path.isfile(str(path)):
        return None
    eng = Engine(str(path), providers="cpu")
    x = np.random.default_rng(2).random((1, 3, INPUT, INPUT), dtype=np.float32)
    name = eng.inputs[0].name
    return f"demo segmentation ({eng.threads} threads)", timed(lambda: eng.run({name: x}), max(3, reps // 3))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--candidates", type=int, default=8400)
    ap.add_argument("--kept", type=int, default=300)
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--no-inference", action="store_true", help="skip timing the comparison model")
    args = ap.parse_args(argv)
    common.header("Detection post-processing at 1920x1080 (ms per frame; CPU)")
    from loupe.run.pipeline import load_model

    h, w = FRAME_HW
    rng = np.random.default_rng(1)
    frame = Frame(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), 0, 0.0, {})
    _, geometry = prepare(frame, InputSpec(fixed_size=(INPUT, INPUT), letterbox=True))
    pred = synthetic_yolov8(geometry, args.candidates, args.classes, args.kept)
    with tempfile.TemporaryDirectory(prefix="loupe-detpost-") as tmp:
        lm = load_model(constant_model(os.path.join(tmp, "bench_detector.onnx"), pred, args.classes), providers="cpu")
    task = lm.task
    _, geo = task.prepare(frame)
    outputs = [pred]
    result = task.postprocess(outputs, geo)
    cand = decode("yolov8", {"predictions": pred}, (INPUT, INPUT), SCORE, args.classes)
    print(f"input {INPUT}x{INPUT} letterbox of {w}x{h} (content {geo.content_hw[1]}x{geo.content_hw[0]}); "
          f"output {tuple(pred.shape)}: {args.candidates} candidates, {args.classes} classes; "
          f"{len(cand)} above score {SCORE}, {result.count} kept by NMS (IoU {IOU}, max {args.kept})")
    r = args.reps
    rows = [
        ("decode (threshold, best class, xyxy)",
         timed(lambda: decode("yolov8", {"predictions": pred}, (INPUT, INPUT), SCORE, args.classes), r)),
        (f"NMS ({len(cand)} candidates -> {result.count})",
         timed(lambda: nms(cand.boxes, cand.scores, cand.classes, IOU, args.kept), r)),
        ("task.postprocess: decode + NMS + to frame + result", timed(lambda: task.postprocess(outputs, geo), r)),
    ]
    d = draw_figures(result, frame, args.classes, r)
    base = d["render_base"]
    draw = common.minus(d["render_boxes"], base)
    draw_nl = common.minus(d["render_no_labels"], base)
    rows += [
        ("panel update per frame (boxes to the item)", d["update_fast"]),
        ("panel update with table and plot (a few times a second)", d["update_slow"]),
        ("render 1080p view, frame only", base),
        (f"render 1080p view, frame + {result.count} boxes with labels", d["render_boxes"]),
        (f"  drawing {result.count} boxes with labels", draw),
        (f"  drawing {result.count} boxes without labels", draw_nl),
        ("(for scale) task.prepare: letterbox 1080p -> 640, NCHW", timed(lambda: task.prepare(frame), r)),
    ]
    common.print_steps(rows, 56)
    print(f"the panel adds 1 item to the frame view for all {result.count} boxes "
          f"(view box: {d['view_items'][0]} items with the frame's own)")
    post, upd = rows[2][1], d["update_fast"]
    total = common.per_frame_total("post-processing + drawing per frame", post, upd, draw)
    inf = None if args.no_inference else inference_ms(r)
    if inf is not None:
        name, (med, best) = inf
        print(f"inference, {name} at {INPUT}x{INPUT}: {med:.1f} ms median ({best:.1f} best) -> "
              f"post + drawing = {100 * total[0] / med:.0f} % of it (median / median)")
    for name, ms in PUBLISHED_CPU_MS.items():
        print(f"inference, {name} at 640 (Ultralytics' published CPU ONNX time, their hardware): {ms:.1f} ms "
              f"-> {100 * total[0] / ms:.0f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
