"""Detection: each output format, decoded from a model whose outputs are known exactly, lands on
the frame where letterboxing puts it (worked out by hand), for a landscape and a portrait frame,
through the registry and the runner the window uses."""

from __future__ import annotations

import numpy as np
import pytest

from loupe.inference.card import InputSpec
from loupe.inference.engine import ModelError
from loupe.run.pipeline import Runner, load_model
from loupe.sources.base import Frame
from loupe.tasks.detection import DetectionResult, DetectionTask, count_column, count_columns
from tests.detection_models import (
    BOX_A,
    BOX_B,
    FORMATS,
    LABELS,
    OVERLAP,
    end2end_output,
    expected_on_frame,
    make_constant_model,
    xyxy_to_cxcywh,
    yolov5_output,
    yolov8_output,
)

LANDSCAPE = (360, 640)  # frame (H, W)
PORTRAIT = (500, 300)


def run(model, frame_hw):
    h, w = frame_hw
    frame = Frame(np.full((h, w, 3), 90, np.uint8), 0, 0.0)
    (mr,) = Runner([model]).process(frame).results
    assert mr.task == "detection"
    return mr.result


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("detectors")
    return {name: load_model(str(make_constant_model(d / f"{name}.onnx", outs, out)))
            for name, (outs, out) in FORMATS.items()}


@pytest.mark.parametrize("frame_hw", [LANDSCAPE, PORTRAIT], ids=["landscape", "portrait"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_puts_the_boxes_where_letterboxing_put_the_frame(models, fmt, frame_hw):
    task = models[fmt].task
    r = run(models[fmt], frame_hw)
    want = expected_on_frame(frame_hw)
    assert isinstance(r, DetectionResult) and r.frame_hw == frame_hw and r.labels == LABELS
    assert r.count == len(want) == 3
    assert r.classes.tolist() == [c for _b, c, _s in want]
    # normalised formats (detr, rtdetr) carry boxes as fractions of 320: float32 rounding only
    np.testing.assert_allclose(r.boxes, [b for b, _c, _s in want], atol=2e-3)
    np.testing.assert_allclose(r.scores, [s for _b, _c, s in want], atol=1e-5)
    assert r.counts.tolist() == [sum(c == k for _b, c, _s in want) for k in range(3)]
    assert task.needs_nms == (fmt.startswith(("yolov8", "yolov5")))


def test_the_hand_worked_mapping(models):
    """The expected boxes themselves, written out: 640 x 360 -> gain 0.5, 70 rows of padding on
    top; 300 x 500 -> gain 0.64, 64 columns on the left."""
    r = run(models["yolov8"], LANDSCAPE)
    np.testing.assert_array_equal(r.boxes, np.array(
        [[280, 160, 360, 200], [300, 180, 460, 260], [200, 0, 280, 60]], np.float32))
    r = run(models["yolov8"], PORTRAIT)
    np.testing.assert_allclose(r.boxes, [[118.75, 234.375, 181.25, 265.625],
                                         [134.375, 250, 259.375, 312.5],
                                         [56.25, 93.75, 118.75, 156.25]], rtol=1e-6)


def nms_model(tmp_path, dets, name="nms.onnx", fmt="yolov8", **output):
    outs = {"output0": yolov8_output(dets) if fmt == "yolov8" else yolov5_output(dets)}
    return load_model(str(make_constant_model(tmp_path / name, outs, {"format": fmt, **output})))


@pytest.mark.parametrize("fmt", ["yolov8", "yolov5"])
def test_nms_suppresses_same_class_overlaps_only_and_follows_the_iou_threshold(tmp_path, fmt):
    m = nms_model(tmp_path, OVERLAP, fmt=fmt)
    square = (320, 320)  # no padding: input pixels are frame pixels
    r = run(m, square)
    assert r.classes.tolist() == [0, 1]  # B suppressed by A (same class, IoU 0.8 > 0.7); class 1 kept
    np.testing.assert_allclose(r.scores, [0.9, 0.7], atol=1e-6)
    np.testing.assert_array_equal(r.boxes, [BOX_A, BOX_A])
    m.task.set_iou_threshold(0.85)  # the IoU slider: 0.8 no longer suppresses
    r = run(m, square)
    assert r.classes.tolist() == [0, 0, 1] and r.boxes[1].tolist() == list(BOX_B)
    m.task.set_iou_threshold(0.8)  # IoU must be ABOVE the threshold to suppress
    assert run(m, square).count == 3
    m.task.set_iou_threshold(0.79)
    assert run(m, square).count == 2


def test_score_threshold_and_max_detections(tmp_path, models):
    m = models["yolov8"]
    task = m.task
    try:
        task.set_score_threshold(0.7)
        r = run(m, LANDSCAPE)
        assert r.scores.tolist() == pytest.approx([0.9, 0.8])  # 0.7 (in the padding) and 0.6 below
        task.set_score_threshold(0.1)
        r = run(m, LANDSCAPE)
        assert r.count == 5  # 0.25 and 0.2 now in; the box in the padding still dropped
        task.set_score_threshold(0.25)
        task.set_max_detections(2)
        r = run(m, LANDSCAPE)
        assert r.scores.tolist() == pytest.approx([0.9, 0.8])
        # the cap counts before dropping boxes outside the frame: 0.9, 0.8, 0.7 kept, 0.7 dropped
        task.set_max_detections(3)
        assert run(m, LANDSCAPE).count == 2
    finally:
        task.set_score_threshold(0.25)
        task.set_max_detections(300)


def test_card_thresholds_are_read_and_copied_by_fresh(tmp_path):
    m = nms_model(tmp_path, OVERLAP, score_threshold=0.75, iou_threshold=0.85, max_detections=5)
    task = m.task
    assert (task.score_threshold, task.iou_threshold, task.max_detections) == (0.75, 0.85, 5)
    r = run(m, (320, 320))
    assert r.scores.tolist() == pytest.approx([0.9, 0.8])
    task.set_score_threshold(0.5)
    task.set_iou_threshold(0.3)
    copy = task.fresh()
    assert isinstance(copy, DetectionTask) and copy is not task
    assert (copy.score_threshold, copy.iou_threshold, copy.max_detections) == (0.5, 0.3, 5)
    task.set_score_threshold(0.95)  # a later change does not reach the copy
    assert copy.score_threshold == 0.5


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "high"])
def test_threshold_setters_refuse_values_outside_0_1(models, bad):
    task = models["yolov8"].task
    with pytest.raises(ValueError, match="score threshold must be"):
        task.set_score_threshold(bad)
    with pytest.raises(ValueError, match="IoU threshold must be"):
        task.set_iou_threshold(bad)
    assert (task.score_threshold, task.iou_threshold) == (0.25, 0.7)


def test_clipping_at_the_frame_edge_and_stretch_geometry(tmp_path):
    """Without letterbox (a plain fixed size: stretched), x scales by W / 320 and y by H / 320;
    a box past the input's edge is clipped to the frame's."""
    dets = (((300.0, 10.0, 340.0, 50.0), 0, 0.9), ((-20.0, 160.0, 40.0, 320.0), 2, 0.8))
    m = load_model(str(make_constant_model(tmp_path / "s.onnx", {"output0": yolov8_output(dets)},
                                           {"format": "yolov8"}, letterbox=False)))
    r = run(m, LANDSCAPE)  # 640 x 360: x * 2, y * 1.125
    np.testing.assert_allclose(r.boxes, [[600, 11.25, 640, 56.25], [0, 180, 80, 360]], rtol=1e-6)
    assert r.boxes.dtype == np.float32 and r.classes.tolist() == [0, 2]


def test_row_and_columns(models):
    task = models["yolov8"].task
    assert task.columns() == ["count", "count_person", "count_traffic_light", "count_dog"]
    assert count_column("Traffic  light!") == "count_traffic_light"
    assert count_columns(("人", "car", "Car", "车")) == ("count_class_0", "count_car", "count_car_2", "count_class_3")
    r = run(models["yolov8"], LANDSCAPE)
    row = task.row(r)
    assert row["count"] == 3 and row["count_person"] == 1 and row["count_traffic_light"] == 1
    assert row["count_dog"] == 1
    assert row["detections"][0] == {"box": [280.0, 160.0, 360.0, 200.0], "score": 0.9, "class": 1,
                                    "label": "traffic light"}
    assert [d["label"] for d in row["detections"]] == ["traffic light", "person", "dog"]
    assert all(isinstance(v, float) for d in row["detections"] for v in d["box"])


def test_labels_default_to_class_numbers_and_the_palette_follows(tmp_path):
    m = load_model(str(make_constant_model(tmp_path / "n.onnx", {"output0": yolov8_output()},
                                           {"format": "yolov8"}, labels=())))
    assert m.task.labels == ("class 0", "class 1", "class 2")
    assert m.task.palette.shape == (3, 3) and m.task.palette.dtype == np.uint8
    assert m.task.columns() == ["count", "count_class_0", "count_class_1", "count_class_2"]
    assert run(m, LANDSCAPE).counts.tolist() == [1, 1, 1]


def test_a_class_beyond_the_labels_is_a_clear_error(tmp_path):
    dets = (((10.0, 10.0, 50.0, 50.0), 5, 0.9),)
    m = load_model(str(make_constant_model(tmp_path / "e.onnx", {"output0": end2end_output(dets)},
                                           {"format": "end2end"})))
    with pytest.raises(ModelError, match=r"^e\.onnx: the model gave class 5, but the card names 3 classes"):
        run(m, LANDSCAPE)


def test_end2end_without_labels_is_refused_when_loaded(tmp_path):
    p = make_constant_model(tmp_path / "nolabels.onnx", {"output0": end2end_output()}, {"format": "end2end"},
                            labels=())
    with pytest.raises(ModelError, match=r"^nolabels\.onnx: end2end outputs do not say how many classes"):
        load_model(str(p))


def test_label_count_disagreeing_with_the_outputs_is_refused(tmp_path):
    p = make_constant_model(tmp_path / "four.onnx", {"output0": yolov8_output()}, {"format": "yolov8"},
                            labels=("a", "b", "c", "d"))
    with pytest.raises(ModelError, match=r"^four\.onnx: .*yolov8"):
        load_model(str(p))


def test_wrong_output_shape_for_the_format_is_refused(tmp_path):
    p = make_constant_model(tmp_path / "flat.onnx", {"output0": np.zeros((1, 8400), np.float32)},
                            {"format": "yolov8"})
    with pytest.raises(ModelError, match=r"^flat\.onnx: its output 'output0' is \[1, 8400\]; a yolov8 model outputs"):
        load_model(str(p))


def test_result_validates():
    ok = dict(boxes=np.zeros((1, 4), np.float32), scores=np.ones(1, np.float32),
              classes=np.zeros(1, np.int32), labels=("a",), frame_hw=(10, 10), counts=np.ones(1, np.int64))
    assert DetectionResult(**ok).count == 1
    for bad, match in (
        (dict(boxes=np.zeros((1, 4), np.float64)), "boxes must be"),
        (dict(classes=np.ones(1, np.int32)), "class ids must index"),
        (dict(counts=np.ones(2, np.int64)), "counts must be"),
        (dict(boxes=np.array([[0, 0, 11, 5]], np.float32)), "inside the 10 x 10 frame"),
        (dict(scores=np.array([0.1, 0.9], np.float32), boxes=np.zeros((2, 4), np.float32),
              classes=np.zeros(2, np.int32)), "sorted best first"),
    ):
        with pytest.raises(ValueError, match=match):
            DetectionResult(**{**ok, **bad})


def test_cxcywh_round_trip_helper():
    assert xyxy_to_cxcywh((140, 150, 180, 170)) == [160, 160, 40, 20]


def test_pad_geometry_keeps_pixels_and_clips_to_the_frame(tmp_path):
    """No fixed size: the frame is padded bottom/right to a multiple of 32 and input pixels are
    frame pixels; a box reaching into the padding is clipped at the frame's edge."""
    dets = (((10.0, 20.0, 60.0, 50.0), 0, 0.9), ((50.0, 40.0, 120.0, 90.0), 1, 0.8), ((105.0, 75.0, 120.0, 90.0), 2, 0.7))
    spec = InputSpec(color="RGB", scale=1 / 255, size_multiple=32)
    m = load_model(str(make_constant_model(tmp_path / "pad.onnx", {"output0": end2end_output(dets)},
                                           {"format": "end2end"}, spec=spec)))
    r = run(m, (70, 100))  # fed as 96 x 128
    np.testing.assert_array_equal(r.boxes, [[10, 20, 60, 50], [50, 40, 100, 70]])  # the third is all padding
    assert r.classes.tolist() == [0, 1]


def test_center_crop_geometry(tmp_path):
    """center_crop 320 x 320 of a 640 x 360 frame: gain 320 / 360, the frame scaled to 569 x 320
    and its centre cut out from column (569 - 320) // 2 = 124: x_frame = (x + 124) * 640 / 569
    (per axis, the exact inverse of the resize to 569 columns)."""
    dets = (((0.0, 0.0, 160.0, 320.0), 0, 0.9),)
    spec = InputSpec(color="RGB", scale=1 / 255, fixed_size=(320, 320), center_crop=True)
    m = load_model(str(make_constant_model(tmp_path / "crop.onnx", {"output0": end2end_output(dets)},
                                           {"format": "end2end"}, spec=spec)))
    r = run(m, LANDSCAPE)
    sx = 640 / 569
    np.testing.assert_allclose(r.boxes, [[124 * sx, 0, 284 * sx, 360]], rtol=1e-5)
