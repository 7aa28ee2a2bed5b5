"""bench/instances_post.py: its synthetic YOLOv8-seg outputs decode to the objects it places,
and a tiny run of the whole benchmark prints every figure (no timing is asserted)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import bench_module


@pytest.fixture(scope="module")
def bench():
    with bench_module("instances_post") as mod:
        yield mod


def test_synthetic_outputs_have_the_yolov8_seg_layout(bench):
    from loupe.inference.card import InputSpec
    from loupe.inference.preprocess import prepare
    from loupe.sources.base import Frame

    frame = Frame(np.zeros((1080, 1920, 3), np.uint8), 0, 0.0, {})
    _, geo = prepare(frame, InputSpec(fixed_size=(640, 640), letterbox=True))
    pred, protos = bench.seg_outputs(geo, 2000, 6, 40, (160, 160))
    assert pred.shape == (1, 4 + 6 + 32, 2000) and protos.shape == (1, 32, 160, 160)
    assert pred.dtype == protos.dtype == np.float32
    assert 0.5 < protos.std() < 4  # blurred noise, rescaled: blobs, not salt and pepper


def test_benchmark_smoke(bench, capsys):
    assert bench.main(["--reps", "1", "--candidates", "600", "--kept", "40", "--classes", "6"]) == 0
    text = capsys.readouterr().out
    assert "cores" in text and "onnxruntime" in text
    assert "outputs (1, 42, 600) and (1, 32, 160, 160); 40 instances kept" in text
    for row in ("decode + NMS + to frame (detection's steps)", "40 masks at 1280x720 (inside each box)",
                "40 masks at 1920x1080 (inside each box)", "id map of 40 masks", "task.postprocess, window",
                "task.postprocess, analyze (full 1080p)", "id map -> RGBA with outlines",
                "panel update per frame (boxes + one mask image)", "render 1080p view, frame + ",
                "the panel adds 2 items to the frame view", "post-processing + drawing per frame (window):"):
        assert row in text, row
