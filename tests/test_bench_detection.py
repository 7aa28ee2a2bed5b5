"""bench/detection_post.py: its synthetic YOLOv8 output keeps exactly the objects it places, and
a tiny run of the whole benchmark prints every figure (no timing is asserted)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import bench_module


@pytest.fixture(scope="module")
def bench():
    with bench_module("detection_post") as mod:
        yield mod


def test_synthetic_output_keeps_one_box_per_object_inside_the_letterboxed_frame(bench):
    from loupe.inference.card import InputSpec
    from loupe.inference.preprocess import prepare
    from loupe.sources.base import Frame
    from loupe.tasks.detection_formats import decode, nms

    frame = Frame(np.zeros((1080, 1920, 3), np.uint8), 0, 0.0, {})
    _, geo = prepare(frame, InputSpec(fixed_size=(640, 640), letterbox=True))
    pred = bench.synthetic_yolov8(geo, 2000, 12, 60, per_object=4)
    assert pred.shape == (1, 16, 2000) and pred.dtype == np.float32
    cand = decode("yolov8", {"predictions": pred}, (640, 640), bench.SCORE, 12)
    assert len(cand) == 60 * 4  # the background stays below the threshold
    keep = nms(cand.boxes, cand.scores, cand.classes, bench.IOU, 1000)
    assert len(keep) == 60  # one per object
    kept = cand.boxes[keep]
    top, _left = geo.offset
    assert kept[:, 1].min() >= top and kept[:, 3].max() <= top + geo.content_hw[0]  # not in the padding
    assert np.allclose(cand.scores[keep], 0.9)  # the best candidate of each object survives
    with pytest.raises(ValueError, match="anchors"):
        bench.synthetic_yolov8(geo, 100, 12, 60, per_object=4)


def test_benchmark_smoke(bench, capsys):
    assert bench.main(["--reps", "1", "--candidates", "600", "--kept", "40", "--classes", "6", "--no-inference"]) == 0
    text = capsys.readouterr().out
    assert "cores" in text and "onnxruntime" in text
    assert "output (1, 10, 600): 600 candidates, 6 classes; 200 above score 0.25, 40 kept by NMS" in text
    for row in ("decode (threshold, best class, xyxy)", "NMS (200 candidates -> 40)",
                "task.postprocess: decode + NMS + to frame + result", "drawing 40 boxes with labels",
                "panel update per frame", "the panel adds 1 item to the frame view for all 40 boxes",
                "post-processing + drawing per frame:", "YOLOv8n at 640"):
        assert row in text, row
