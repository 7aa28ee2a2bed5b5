"""Instance segmentation (``yolov8-seg``): models whose prototypes are rectangles (known exactly,
``tests/instances_models.py``) put each mask on the source pixels letterboxing maps them to,
cut to the box, on a landscape and a portrait frame; the display cap; ``analyze`` rows."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from loupe.cli import main
from loupe.inference.engine import ModelError
from loupe.inference.preprocess import Geometry
from loupe.run.pipeline import Runner, load_model
from loupe.sources.base import Frame
from loupe.tasks.instances import (
    InstancesResult,
    InstancesTask,
    box_ranges,
    compose,
    instance_masks,
)
from tests.detection_models import LABELS
from tests.instances_models import (
    expected_boxes,
    expected_id_map,
    expected_masks,
    make_instances_model,
)

LANDSCAPE = (360, 640)
PORTRAIT = (500, 300)


def run(model, frame_hw) -> InstancesResult:
    frame = Frame(np.full((*frame_hw, 3), 90, np.uint8), 0, 0.0)
    (mr,) = Runner([model]).process(frame).results
    assert mr.task == "instances"
    return mr.result


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("segmenters")
    return {
        "card": load_model(str(make_instances_model(d / "card.onnx"))),
        "transposed": load_model(str(make_instances_model(d / "t.onnx", transposed=True))),
        "protos_first": load_model(str(make_instances_model(d / "p.onnx", {}, protos_first=True))),
        "named": load_model(str(make_instances_model(
            d / "n.onnx", {"format": "yolov8-seg", "outputs": {"predictions": "output0", "protos": "output1"}}))),
    }


@pytest.mark.parametrize("frame_hw", [LANDSCAPE, PORTRAIT], ids=["landscape", "portrait"])
@pytest.mark.parametrize("which", ["card", "transposed", "protos_first", "named"])
def test_masks_land_on_the_source_pixels_cut_to_their_boxes(models, which, frame_hw):
    r = run(models[which], frame_hw)
    want = expected_boxes(frame_hw)
    assert isinstance(r, InstancesResult) and r.frame_hw == frame_hw and r.labels == LABELS
    # the box in the padding and the one at the threshold go as in detection; the 0.5 box's mask
    # is empty: dropped, as Ultralytics drops it
    assert r.count == len(want) == 3
    assert r.classes.tolist() == [c for _b, c, _s, _r in want]
    np.testing.assert_allclose(r.boxes, [b for b, _c, _s, _r in want], atol=1e-3)
    np.testing.assert_allclose(r.scores, [s for _b, _c, s, _r in want], atol=1e-6)
    assert r.masks.shape == frame_hw and r.mask_hw == frame_hw
    # every pixel: the rectangles cut to the boxes, the better instance on top where they overlap
    np.testing.assert_array_equal(r.masks, expected_id_map(frame_hw))
    assert r.mask_areas.tolist() == [int(m.sum()) for m in expected_masks(frame_hw)]


def test_masks_are_cut_to_the_box_not_the_prototype(models):
    r = run(models["card"], LANDSCAPE)
    ids = r.masks
    for i, (x1, y1, x2, y2) in enumerate(r.boxes.tolist()):
        ys, xs = np.nonzero(ids == i + 1)
        assert xs.min() >= x1 and xs.max() < x2 and ys.min() >= y1 and ys.max() < y2
    # the first instance's prototype reaches from x 120 to 172 (input): only 140-172 is in its box,
    # frame columns 280-343; the second instance lies under it where they overlap
    cols = np.flatnonzero((ids == 1).any(axis=0))
    assert (cols.min(), cols.max()) == (280, 343)
    assert r.mask_areas[1] > np.count_nonzero(ids == 2)  # its whole mask, overlap included


def test_a_capped_display_computes_masks_at_its_size_and_areas_in_source_pixels(tmp_path):
    m = load_model(str(make_instances_model(tmp_path / "m.onnx")), display_max_side=320)
    r = run(m, LANDSCAPE)
    assert r.masks.shape == (180, 320)
    full = [int(mk.sum()) for mk in expected_masks(LANDSCAPE)]
    # counted at half the size each way, x 4: edges fall on whole display pixels here
    assert r.mask_areas.tolist() == full
    np.testing.assert_array_equal(r.masks, expected_id_map(LANDSCAPE)[::2, ::2])


def test_row_gives_each_detection_its_mask_area(models):
    task = models["card"].task
    r = run(models["card"], LANDSCAPE)
    row = task.row(r)
    assert row["count"] == 3 and row["count_person"] == 1
    assert [d["mask_area"] for d in row["detections"]] == [2560, 8320, 4800]
    assert row["detections"][0]["box"] == [280.0, 160.0, 360.0, 200.0]
    assert task.columns() == ["count", "count_person", "count_traffic_light", "count_dog"]


def test_analyze_jsonl_has_mask_areas_on_both_frames(tmp_path):
    model = make_instances_model(tmp_path / "seg.onnx")
    d = tmp_path / "frames"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), np.full((*LANDSCAPE, 3), 80, np.uint8))
    cv2.imwrite(str(d / "b.png"), np.full((*PORTRAIT, 3), 160, np.uint8))
    out = tmp_path / "rows.jsonl"
    assert main(["analyze", str(d), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for row, hw in zip(rows, [LANDSCAPE, PORTRAIT]):
        assert row["task"] == "instances"
        assert [det["mask_area"] for det in row["detections"]] == [int(m.sum()) for m in expected_masks(hw)]


def test_thresholds_and_fresh(models):
    task: InstancesTask = models["card"].task
    fresh = task.fresh()
    fresh.set_score_threshold(0.65)
    assert fresh.fresh().score_threshold == 0.65
    frame = Frame(np.full((*LANDSCAPE, 3), 90, np.uint8), 0, 0.0)
    feeds, geo = fresh.prepare(frame)
    r = fresh.postprocess(fresh.engine.run(feeds), geo)
    assert r.count == 2 and int(r.masks.max()) == 2


@pytest.mark.parametrize("output, message", [
    ({"format": "yolov8"}, "must be one of yolov8-seg"),
    ({"mask_threshold": 2}, "mask threshold must be between 0 and 1"),
    ({"outputs": {"protos": "nope"}}, "must map predictions and protos"),
])
def test_card_errors_are_one_line(tmp_path, output, message):
    with pytest.raises(ModelError, match=message):
        load_model(str(make_instances_model(tmp_path / "bad.onnx", output)))


def test_instance_masks_only_touch_each_box():
    """300 boxes over a stretched 1080p frame: each mask covers its box's display pixels (and
    the pixel beyond each side that bilinear resizing reaches), no more."""
    rng = np.random.default_rng(0)
    geo = Geometry(frame_hw=(1080, 1920), input_hw=(360, 640), mode="resize")
    protos = rng.normal(size=(32, 90, 160)).astype(np.float32)
    xy = rng.uniform(0, [600, 320], size=(300, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, 60, size=(300, 2))], 1).astype(np.float32)
    masks, ranges, present = instance_masks(protos, rng.normal(size=(300, 32)), boxes, geo, (720, 1280))
    assert present.mean() > 0.8  # random logits: nearly every box has some positive pixel
    inb = box_ranges(boxes, (360, 640))
    # 2 display pixels per input pixel; bilinear taps reach one pixel beyond (two at the clamped edges)
    assert (ranges[:, [0, 2]] >= 2 * inb[:, [0, 2]] - 2).all() and (ranges[:, [1, 3]] <= 2 * inb[:, [1, 3]] + 2).all()
    assert all(m.shape == (r1 - r0, c1 - c0) for m, (r0, r1, c0, c1) in zip(masks, ranges.tolist()))
    ids = compose(masks, ranges, (720, 1280))
    assert ids.dtype == np.uint16 and int(ids.max()) <= 300
    # the first (best) instance is all there: nothing is painted over it
    r0, r1, c0, c1 = ranges[0]
    assert np.array_equal(ids[r0:r1, c0:c1] == 1, masks[0])


def test_tracking_gives_instances_their_ids(tmp_path):
    m = load_model(str(make_instances_model(tmp_path / "t.onnx")))
    task: InstancesTask = m.task
    task.set_tracking(True)
    task.set_max_detections(100_000)
    assert task.max_detections == 65535  # ids of a uint16 map
    runner = Runner([m])
    ids = []
    for i in range(3):
        (mr,) = runner.process(Frame(np.full((*LANDSCAPE, 3), 90, np.uint8), i, i / 25)).results
        r = mr.result
        assert isinstance(r, InstancesResult) and r.track_ids is not None and r.masks.max() == r.count
        ids.append(r.track_ids.tolist())
    assert ids[0] == ids[1] == ids[2] and len(set(ids[0])) == 3  # still objects keep their IDs
    row = task.row(r)
    assert [d["track_id"] for d in row["detections"]] == ids[2] and "mask_area" in row["detections"][0]
