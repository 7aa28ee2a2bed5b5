"""Scorers against labels whose scores are known by construction."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from loupe.base import registry
from loupe.sources.labels import FrameLabels
from loupe.tasks.scoring import (
    ClassificationScorer,
    DetectionScorer,
    SegmentationScorer,
    scorer_for,
)
from loupe.tasks.scoring_coco import box_iou

SEG_LABELS = ("background", "road", "car")


def seg_task(labels=SEG_LABELS):
    return SimpleNamespace(name="segmentation", labels=labels)


def seg_result(class_map):
    return SimpleNamespace(class_map=np.asarray(class_map, np.uint8))


def random_map(seed, hw=(40, 60), n=3):
    return np.random.default_rng(seed).integers(0, n, hw).astype(np.uint8)


# ----------------------------------------------------------------------------- segmentation


def test_segmentation_prediction_against_itself_is_perfect():
    sc = SegmentationScorer(seg_task())
    cm = random_map(0)
    row = sc.score(seg_result(cm), FrameLabels(0, cm.shape, mask=cm), None)
    assert sc.columns() == ["iou_background", "dice_background", "iou_road", "dice_road", "iou_car", "dice_car"]
    assert all(row[c] == 1.0 for c in sc.columns())
    assert sc.frame_score(row) == 1.0
    s = sc.summary()
    assert s["miou"] == 1.0 and s["pixel_accuracy"] == 1.0 and s["frames"] == 1


def test_segmentation_against_all_background_iou_is_area_fraction():
    sc = SegmentationScorer(seg_task())
    cm = np.zeros((50, 80), np.uint8)
    cm[10:30, 20:60] = 1  # road: 800 of 4000 pixels
    row = sc.score(seg_result(cm), FrameLabels(0, cm.shape, mask=np.zeros_like(cm)), None)
    assert row["iou_background"] == pytest.approx(1 - 800 / 4000)
    assert row["iou_road"] == 0.0  # predicted, not labelled
    assert row["iou_car"] is None and row["dice_car"] is None  # in neither
    assert row["dice_background"] == pytest.approx(2 * 3200 / (4000 + 3200))
    assert sc.frame_score(row) == pytest.approx((0.8 + 0.0) / 2)


def test_segmentation_ignore_and_classes_the_model_lacks():
    sc = SegmentationScorer(seg_task())
    pred = np.ones((10, 10), np.uint8)  # all road
    mask = np.ones((10, 10), np.uint8)
    mask[:5] = 255  # ignored
    mask[5:, :5] = 3  # label class 3 ("tree") the model does not have
    class_map = np.array([0, 1, 2, -1])
    row = sc.score(seg_result(pred), FrameLabels(0, (10, 10), mask=mask), class_map)
    assert row["iou_road"] == 1.0  # only the 25 road label pixels count
    assert row["iou_background"] is None
    assert sc.confusion.sum() == 25


def test_segmentation_label_classes_mapped_by_name():
    sc = SegmentationScorer(seg_task())
    pred = np.array([[0, 1, 2, 2]], np.uint8)
    mask = np.array([[1, 2, 0, 0]], np.uint8)  # label order: car, background, road? -> map
    class_map = np.array([2, 0, 1])  # label 0 = car, 1 = background, 2 = road
    row = sc.score(seg_result(pred), FrameLabels(0, (1, 4), mask=mask), class_map)
    assert row["iou_background"] == 1.0 and row["iou_road"] == 1.0 and row["iou_car"] == 1.0


def test_segmentation_label_resized_nearest_to_the_class_map():
    sc = SegmentationScorer(seg_task())
    small = random_map(3, (20, 30))
    big = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)  # the label at twice the display size
    row = sc.score(seg_result(small), FrameLabels(0, big.shape, mask=big), None)
    assert all(row[c] == 1.0 for c in sc.columns() if row[c] is not None)


def test_segmentation_summary_pools_intersections_not_per_frame_means():
    sc = SegmentationScorer(SimpleNamespace(name="segmentation", labels=("bg", "fg")))
    # frame 1: fg 1 pixel predicted where the label has 1 -> IoU 1; frame 2: fg 99 predicted, 1 labelled
    p1 = np.zeros((10, 10), np.uint8)
    p1[0, 0] = 1
    sc.score(seg_result(p1), FrameLabels(0, (10, 10), mask=p1.copy()), None)
    p2 = np.ones((10, 10), np.uint8)
    p2[0, 0] = 0
    m2 = np.zeros((10, 10), np.uint8)
    m2[0, 1] = 1
    r2 = sc.score(seg_result(p2), FrameLabels(1, (10, 10), mask=m2), None)
    assert r2["iou_fg"] == pytest.approx(1 / 99, abs=1e-6)
    s = sc.summary()
    # pooled: intersection 1 + 1, union 1 + 99
    assert s["iou_fg"] == pytest.approx(2 / 100)
    assert s["iou_fg"] != pytest.approx((1 + 1 / 99) / 2)
    assert s["frames"] == 2
    assert s["miou"] == pytest.approx((s["iou_fg"] + s["iou_bg"]) / 2)


def test_unlabelled_frames_are_empty_and_not_pooled():
    for sc, res in ((SegmentationScorer(seg_task()), seg_result(random_map(1))),
                    (DetectionScorer(SimpleNamespace(name="detection", labels=("a",))), det_result([], [], [])),
                    (ClassificationScorer(SimpleNamespace(name="classification", labels=("a", "b"))), SimpleNamespace(top1=0))):
        row = sc.score(res, None, None)
        assert set(row) == set(sc.columns()) and all(v is None for v in row.values())
        assert sc.frame_score(row) is None
        assert sc.summary()["frames"] == 0


# ----------------------------------------------------------------------------- detection


def det_result(boxes, scores, classes):
    return SimpleNamespace(boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                           scores=np.asarray(scores, np.float32), classes=np.asarray(classes, np.int32))


def det_task(labels=("person", "car")):
    return SimpleNamespace(name="detection", labels=labels)


def test_box_shifted_by_a_known_amount_has_a_known_iou():
    a = np.array([[0, 0, 10, 10]])
    for dx, iou in ((0, 1.0), (2, 80 / 120), (5, 50 / 150), (10, 0.0)):
        assert box_iou(a, a + np.array([dx, 0, dx, 0]))[0, 0] == pytest.approx(iou)
    sc = DetectionScorer(det_task())
    gt = FrameLabels(0, (100, 100), boxes=np.array([[10, 10, 30, 30]], np.float32), classes=np.array([0], np.int32))
    # shifted by 5 px: IoU 300/500 = 0.6 -> matched at .50, .55, .60 only
    row = sc.score(det_result([[15, 10, 35, 30]], [0.9], [0]), gt, None)
    assert row == {"tp": 1, "fp": 0, "fn": 0}
    s = sc.summary()
    # COCO's precision is tp / (tp + fp + eps): 1 - 2e-16 for a perfect class, as pycocotools gives
    assert s["map50"] == pytest.approx(1.0) and s["ap50_person"] == pytest.approx(1.0) and s["ap50_car"] is None
    assert s["map50_95"] == pytest.approx(3 / 10)


def test_detection_prediction_equal_to_labels_is_perfect():
    rng = np.random.default_rng(4)
    sc = DetectionScorer(det_task())
    for i in range(5):
        xy = rng.uniform(0, 200, (6, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 50, (6, 2))], 1).astype(np.float32)
        classes = rng.integers(0, 2, 6).astype(np.int32)
        row = sc.score(det_result(boxes, rng.uniform(0.3, 1, 6), classes),
                       FrameLabels(i, (300, 300), boxes=boxes, classes=classes), None)
        assert row == {"tp": 6, "fp": 0, "fn": 0} and sc.frame_score(row) == 1.0
    s = sc.summary()
    assert s["map50"] == pytest.approx(1.0) and s["map50_95"] == pytest.approx(1.0) and s["tp"] == 30


def test_detection_misses_duplicates_wrong_class_and_unknown_label_classes():
    sc = DetectionScorer(det_task())
    gt = FrameLabels(0, (100, 100), boxes=np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], np.float32),
                     classes=np.array([0, 1, 2], np.int32))  # label class 2 ("dog") not in the model
    class_map = np.array([0, 1, -1])
    res = det_result([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8, 0.7], [0, 0, 0])
    row = sc.score(res, gt, class_map)
    # the duplicate is a false positive, the car box predicted as person is one too, the car is missed
    assert row == {"tp": 1, "fp": 2, "fn": 1}
    assert sc.frame_score(row) == pytest.approx(2 / (2 + 2 + 1))
    s = sc.summary()
    assert s["ap50_person"] == pytest.approx(1.0) and s["ap50_car"] == 0.0 and s["map50"] == pytest.approx(0.5)


def test_detection_frame_without_boxes_or_labels():
    sc = DetectionScorer(det_task())
    row = sc.score(det_result([], [], []), FrameLabels(0, (10, 10)), None)
    assert row == {"tp": 0, "fp": 0, "fn": 0} and sc.frame_score(row) == 1.0
    assert sc.summary()["map50"] is None  # no ground truth at all: no AP


# ----------------------------------------------------------------------------- classification


def test_classification_correct_accuracy_and_confusion():
    sc = ClassificationScorer(SimpleNamespace(name="classification", labels=("cat", "dog", "fox")))
    truth_pred = [(0, 0), (0, 1), (1, 1), (2, 2), (2, 0)]
    rows = [sc.score(SimpleNamespace(top1=p), FrameLabels(i, (8, 8), image_class=t), None)
            for i, (t, p) in enumerate(truth_pred)]
    assert [r["correct"] for r in rows] == [1, 0, 1, 1, 0]
    # a label class the model does not have: unscored
    assert sc.score(SimpleNamespace(top1=0), FrameLabels(5, (8, 8), image_class=3), np.array([0, 1, 2, -1])) == {"correct": None}
    s = sc.summary()
    assert s["accuracy"] == pytest.approx(3 / 5) and s["frames"] == 5
    assert s["confusion"] == {"labels": ["cat", "dog", "fox"], "matrix": [[1, 1, 0], [0, 1, 0], [1, 0, 1]]}


# ----------------------------------------------------------------------------- registry


def test_registry_names_the_scorers():
    want = {"segmentation": SegmentationScorer, "detection": DetectionScorer, "keypoints": DetectionScorer,
            "instances": DetectionScorer, "classification": ClassificationScorer}
    for name, cls in want.items():
        spec = registry.get(name)
        assert spec.scorer_class() is cls
        assert "loupe.tasks.scoring" in spec.modules()
        assert isinstance(scorer_for(SimpleNamespace(name=name, labels=("a",))), cls)
    assert registry.get("depth").scorer is None
    assert scorer_for(SimpleNamespace(name="depth", labels=())) is None


def test_summary_values_are_json_numbers():
    import json

    sc = SegmentationScorer(seg_task())
    cm = random_map(2)
    sc.score(seg_result(cm), FrameLabels(0, cm.shape, mask=cm), None)
    text = json.dumps(sc.summary(), allow_nan=False)
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in json.loads(text).values() if v is not None)
