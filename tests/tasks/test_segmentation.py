import numpy as np
import pytest

from loupe.inference.engine import Engine
from loupe.sources.base import Frame
from loupe.tasks.segmentation import (
    NO_CLASS,
    SegmentationResult,
    SegmentationTask,
    boundary_map,
    column_name,
    logits_to_class_map,
)
from tests.helpers import expected_argmax_map, make_argmax_model


def test_class_map_is_the_brightest_channel_where_it_is(argmax_model):
    task = SegmentationTask(Engine(argmax_model))
    rgb = np.zeros((3, 3, 3), np.uint8)
    rgb[0, :, 0] = 200  # top row red
    rgb[1, :, 1] = 200  # middle row green
    rgb[2, :, 2] = 200  # bottom row blue
    feeds, ctx = task.prepare(Frame(rgb, 0, 0.0))
    res = task.postprocess(task.engine.run(feeds), ctx)
    assert res.class_map.tolist() == [[0, 0, 0], [1, 1, 1], [2, 2, 2]]
    np.testing.assert_allclose(res.class_area, [1 / 3, 1 / 3, 1 / 3])
    assert task.columns() == ["area_red", "area_green", "area_blue"]
    assert task.row(res) == {"area_red": pytest.approx(1 / 3, abs=1e-6), "area_green": pytest.approx(1 / 3, abs=1e-6), "area_blue": pytest.approx(1 / 3, abs=1e-6)}


def test_stride_and_padding_map_back_to_the_frame(tmp_path):
    task = SegmentationTask(Engine(make_argmax_model(tmp_path / "s4.onnx", stride=4)))
    rng = np.random.default_rng(1)
    rgb = np.zeros((18, 22, 3), np.uint8)  # not a multiple of 4: padded, then cropped back
    rgb[:, :11, 0] = 255
    rgb[:, 11:, 2] = 255
    rgb[:2, :2] = rng.integers(0, 255, (2, 2, 3))
    feeds, ctx = task.prepare(Frame(rgb, 0, 0.0))
    assert feeds["image"].shape == (1, 3, 20, 24)
    res = task.postprocess(task.engine.run(feeds), ctx)
    assert res.class_map.shape == (18, 22)
    assert (res.class_map[:, :8] == 0).all() and (res.class_map[:, 14:] == 2).all()
    assert res.class_area[1] == 0


def test_display_cap_keeps_aspect(argmax_model):
    task = SegmentationTask(Engine(argmax_model), display_max_side=100)
    rgb = np.random.default_rng(0).integers(0, 255, (150, 300, 3), dtype=np.uint8)
    feeds, ctx = task.prepare(Frame(rgb, 0, 0.0))
    res = task.postprocess(task.engine.run(feeds), ctx)
    assert res.class_map.shape == (50, 100)


def test_upsampling_is_bilinear_then_argmax():
    logits = np.zeros((2, 2, 2), np.float32)
    logits[0, :, 0] = 1.0  # class 0 on the left column
    logits[1, :, 1] = 1.0  # class 1 on the right column
    cm = logits_to_class_map(logits, (4, 8))
    # align_corners=False: output column x samples input (x + 0.5) / 4 - 0.5; the tie is at x = 3.5
    assert (cm[:, :4] == 0).all() and (cm[:, 4:] == 1).all()
    full = np.random.default_rng(0).random((4, 5, 6), dtype=np.float32)
    assert (logits_to_class_map(full, (5, 6)) == full.argmax(0)).all()


def test_boundary_map_marks_only_edges():
    cm = np.zeros((4, 4), np.uint8)
    cm[:, 2:] = 1
    b = boundary_map(cm)
    assert (b[:, 0] == NO_CLASS).all() and (b[:, 3] == NO_CLASS).all()
    assert (b[:, 1] == 0).all() and (b[:, 2] == 1).all()
    assert set(np.unique(b[:, 1:3])) <= {0, 1}


def test_result_validates_shapes():
    with pytest.raises(ValueError, match="class_area"):
        SegmentationResult(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), np.zeros(3), ("a", "b"))
    with pytest.raises(ValueError, match="uint8"):
        SegmentationResult(np.zeros((2, 2), np.int32), np.zeros((2, 2), np.uint8), np.zeros(2), ("a", "b"))


def test_column_names_are_safe():
    assert column_name("traffic light") == "area_traffic_light"
    assert column_name("Sky / bright") == "area_sky_bright"


def test_expected_helper_matches_task_on_random_frame(argmax_model):
    task = SegmentationTask(Engine(argmax_model))
    rgb = np.random.default_rng(5).integers(0, 255, (40, 64, 3), dtype=np.uint8)
    feeds, ctx = task.prepare(Frame(rgb, 0, 0.0))
    res = task.postprocess(task.engine.run(feeds), ctx)
    np.testing.assert_array_equal(res.class_map, expected_argmax_map(rgb))


@pytest.mark.parametrize("c,h,w,out", [(5, 34, 80, (272, 640)), (19, 9, 16, (72, 128)), (3, 7, 5, (50, 37)), (4, 16, 16, (16, 16))])
def test_running_max_equals_full_bilinear_argmax(c, h, w, out):
    """The plane-by-plane running max gives exactly what upsampling every map and argmaxing gives."""
    import cv2

    rng = np.random.default_rng(c * 100 + h)
    # smooth-ish logits so there are regions and boundaries, plus noise
    base = rng.normal(size=(c, max(2, h // 3), max(2, w // 3))).astype(np.float32)
    logits = np.stack([cv2.resize(b, (w, h), interpolation=cv2.INTER_CUBIC) for b in base])
    logits += 0.05 * rng.normal(size=logits.shape).astype(np.float32)
    full = np.stack([cv2.resize(p, (out[1], out[0]), interpolation=cv2.INTER_LINEAR) for p in logits]).argmax(0)
    got = logits_to_class_map(logits, out)
    mismatch = (got != full).mean()
    assert mismatch <= 1e-4, f"{mismatch:.2%} of pixels differ"


@pytest.mark.parametrize("cap", [None, 50])
def test_areas_in_mm2_at_the_frame_resolution(argmax_model, cap):
    """mm² = pixels of the ORIGINAL frame x row spacing x col spacing, even when the class map
    is at a capped display resolution (cap 50: a 20 x 50 map for a 40 x 100 frame)."""
    rgb = np.zeros((40, 100, 3), np.uint8)
    rgb[:, :30] = (250, 0, 0)  # 40 x 30 red
    rgb[:, 30:] = (0, 0, 250)  # 40 x 70 blue
    task = SegmentationTask(Engine(argmax_model), display_max_side=cap)
    feeds, ctx = task.prepare(Frame(rgb, 0, 0.0, {"pixel_spacing": [0.5, 0.25]}))
    res = task.postprocess(task.engine.run(feeds), ctx)
    assert res.class_map.shape == ((40, 100) if cap is None else (20, 50))
    assert res.class_area_mm2 is not None
    assert res.class_area_mm2.tolist() == [40 * 30 * 0.125, 0.0, 40 * 70 * 0.125]
    row = task.row(res)
    assert row["area_mm2_red"] == 150.0 and row["area_mm2_blue"] == 350.0
    assert row["area_mm2_green"] == 0.0 and row["area_red"] == pytest.approx(0.3)
    assert task.physical_columns() == [
        "area_mm2_red", "area_mm2_green", "area_mm2_blue",
        "volume_ml_red", "volume_ml_green", "volume_ml_blue",
    ]  # fmt: skip


@pytest.mark.parametrize("spacing", [None, [0.0, 1.0], ["a", 1], [1.0], [float("nan"), 1.0]])
def test_no_mm2_without_a_usable_spacing(argmax_model, spacing):
    task = SegmentationTask(Engine(argmax_model))
    rgb = np.zeros((4, 4, 3), np.uint8)
    md = {} if spacing is None else {"pixel_spacing": spacing}
    feeds, ctx = task.prepare(Frame(rgb, 0, 0.0, md))
    res = task.postprocess(task.engine.run(feeds), ctx)
    assert res.class_area_mm2 is None
    assert not any(k.startswith("area_mm2") for k in task.row(res))


def test_postprocess_takes_a_bare_geometry(argmax_model):
    task = SegmentationTask(Engine(argmax_model))
    feeds, ctx = task.prepare(Frame(np.zeros((4, 4, 3), np.uint8), 0, 0.0, {"pixel_spacing": [1, 1]}))
    res = task.postprocess(task.engine.run(feeds), ctx.geometry)
    assert res.class_area_mm2 is None and res.class_area.tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="class_area_mm2"):
        SegmentationResult(
            np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), np.zeros(2), ("a", "b"), np.zeros(3)
        )


@pytest.mark.parametrize("shape", [(1, 1), (37, 53), (720, 1280)])
def test_class_counts_equal_bincount(shape):
    from loupe.tasks.segmentation import class_counts

    cm = np.random.default_rng(shape[0]).integers(0, 7, shape, dtype=np.uint8)
    cm.flat[0] = 255  # NO_CLASS / out-of-range ids are not counted
    want = np.bincount(cm.ravel(), minlength=256)[:5].astype(np.float64)
    got = class_counts(cm, 5)
    assert got.dtype == np.float64 and got.tolist() == want.tolist()


def test_iou_from_confusion_counts_pixels_and_leaves_absent_classes_out():
    """The one IoU of the demo recipes and the held-out mIoU test: TP / (TP + FP + FN) per
    class from pooled pixel counts; a class in neither map is NaN, not 0."""
    from loupe.tasks.segmentation import confusion_matrix, iou_from_confusion

    target = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1]])
    conf = confusion_matrix(pred, target, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    iou = iou_from_confusion(conf + confusion_matrix(target, target, 3))  # pooled over 2 frames
    assert iou[0] == 3 / 4 and iou[1] == 4 / 5 and np.isnan(iou[2])
    with pytest.raises(ValueError, match="differ in size"):
        confusion_matrix(pred, target[:, :3], 3)
