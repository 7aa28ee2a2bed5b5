"""loupe.tasks.agreement: how far two models' results agree, on results whose agreement is known
by construction (segmentation pixels, boxes, top-1), and the registry's comparers."""

from __future__ import annotations

import numpy as np
import pytest

from loupe.base import registry
from loupe.tasks.agreement import (
    Tally,
    compare_boxes,
    compare_classification,
    compare_segmentation,
    comparer_for,
)
from loupe.tasks.classification import ClassificationResult
from loupe.tasks.detection import DetectionResult
from loupe.tasks.segmentation import SegmentationResult

LABELS = ("road", "car", "sky")


def seg(class_map: np.ndarray, labels: tuple[str, ...] = LABELS) -> SegmentationResult:
    class_map = class_map.astype(np.uint8)
    area = np.bincount(class_map.ravel(), minlength=len(labels))[: len(labels)] / class_map.size
    return SegmentationResult(class_map, class_map.copy(), area.astype(np.float64), labels)


def det(boxes, classes, labels=("person", "car", "dog"), hw=(100, 200)) -> DetectionResult:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    classes = np.asarray(classes, np.int32).reshape(n)
    scores = np.linspace(0.9, 0.5, n, dtype=np.float32) if n else np.zeros(0, np.float32)
    counts = np.bincount(classes, minlength=len(labels)).astype(np.int64)
    return DetectionResult(boxes, scores, classes, tuple(labels), hw, counts)


def cls(probs, labels=("cat", "dog", "fox")) -> ClassificationResult:
    probs = np.asarray(probs, np.float32)
    return ClassificationResult(probs, tuple(labels), np.argsort(-probs, kind="stable").astype(np.int32))


# ----------------------------------------------------------------------------- segmentation

def test_a_class_map_agrees_with_itself_entirely():
    rng = np.random.default_rng(1)
    r = seg(rng.integers(0, 3, (30, 40)))
    ag = compare_segmentation(r, r)
    assert ag.value == 1.0 and ag.kind == "pixels" and ag.pairs == ()
    assert ag.pair_map.shape == (30, 40) and ag.pair_map.dtype == np.int32 and (ag.pair_map == -1).all()
    assert ag.detail == "100.0% of pixels agree"


def test_maps_differing_in_k_pixels_agree_on_the_rest_and_name_the_pairs():
    a = np.zeros((10, 20), np.uint8)  # N = 200 pixels of road
    b = a.copy()
    b[0, :6] = 1   # 6 pixels: road in A, car in B
    b[5, 10:12] = 2  # 2 pixels: road in A, sky in B
    a[9, 19] = 2   # 1 pixel: sky in A, road in B
    ag = compare_segmentation(seg(a), seg(b))
    assert ag.value == pytest.approx(1 - 9 / 200)
    assert ag.pairs == ((0, 1, 6), (0, 2, 2), (2, 0, 1))
    expected = np.full((10, 20), -1, np.int32)
    expected[0, :6], expected[5, 10:12], expected[9, 19] = 0, 1, 2
    np.testing.assert_array_equal(ag.pair_map, expected)
    assert ag.detail == "95.5% of pixels agree"
    # the other way round: the same value, the pairs' sides swapped
    back = compare_segmentation(seg(b), seg(a))
    assert back.value == ag.value and back.pairs == ((1, 0, 6), (2, 0, 2), (0, 2, 1))


def test_a_map_of_another_size_is_resized_nearest_neighbour_to_as():
    a = np.zeros((8, 8), np.uint8)
    a[:, 4:] = 1  # right half car
    b = np.zeros((4, 4), np.uint8)
    b[:, 2:] = 1
    b[0, 0] = 2  # one B pixel = a 2x2 block of A's resolution
    ag = compare_segmentation(seg(a), seg(b))
    assert ag.pair_map.shape == (8, 8)
    assert ag.value == pytest.approx(1 - 4 / 64) and ag.pairs == ((0, 2, 4),)
    assert (ag.pair_map[:2, :2] == 0).all() and (ag.pair_map[2:, :] == -1).all()


def test_classes_are_compared_by_label_name_not_by_index():
    a = np.array([[0, 1, 2, 2]], np.uint8)  # road car sky sky
    b = np.array([[2, 0, 1, 0]], np.uint8)  # with B's labels: road car sky car
    ag = compare_segmentation(seg(a), seg(b, ("car", "sky", "road")))
    assert ag.value == pytest.approx(3 / 4)
    assert ag.pairs == ((2, 0, 1),)  # sky in A (A's id 2), car in B (B's id 0)
    # a class only one model has agrees with nothing
    only = compare_segmentation(seg(a), seg(np.array([[0, 1, 2, 3]]), ("road", "car", "sky", "tree")))
    assert only.value == pytest.approx(3 / 4)


# ----------------------------------------------------------------------------- boxes

BOX1, BOX2 = [10, 10, 50, 50], [100, 20, 160, 80]


def test_the_same_boxes_agree_entirely():
    r = det([BOX1, BOX2], [0, 1])
    ag = compare_boxes(r, r)
    assert ag.value == 1.0 and ag.kind == "boxes" and ag.matched == 2
    assert ag.only_a.tolist() == [] and ag.only_b.tolist() == [] and ag.only_a.dtype == np.int64
    assert ag.detail == "F1 1.00: 2 matched, 0 only in A, 0 only in B"


def test_a_box_missing_in_b_gives_f1_two_thirds():
    a, b = det([BOX1, BOX2], [0, 1]), det([BOX2], [1])
    ag = compare_boxes(a, b)
    assert ag.value == pytest.approx(2 * 1 / 3) and ag.matched == 1
    assert ag.only_a.tolist() == [0] and ag.only_b.tolist() == []
    back = compare_boxes(b, a)
    assert back.value == ag.value and back.only_a.tolist() == [] and back.only_b.tolist() == [0]


def test_a_box_shifted_below_iou_half_matches_nothing():
    shifted = [30, 10, 70, 50]  # IoU with BOX1: 20x40 / (2 x 1600 - 800) = 1/3
    ag = compare_boxes(det([BOX1], [0]), det([shifted], [0]))
    assert ag.value == 0.0 and ag.matched == 0
    assert ag.only_a.tolist() == [0] and ag.only_b.tolist() == [0]
    near = [14, 10, 54, 50]  # IoU 36/44 = 0.82: matched
    assert compare_boxes(det([BOX1], [0]), det([near], [0])).value == 1.0


def test_boxes_of_another_class_do_not_match():
    ag = compare_boxes(det([BOX1], [0]), det([BOX1], [1]))
    assert ag.value == 0.0 and ag.only_a.tolist() == [0] and ag.only_b.tolist() == [0]


def test_permuted_label_orders_still_match_by_name():
    a = det([BOX1, BOX2], [0, 1], labels=("person", "car", "dog"))
    b = det([BOX1, BOX2], [2, 0], labels=("car", "bird", "person"))
    assert compare_boxes(a, b).value == 1.0
    # a label only one model has never matches, even with the same index
    c = det([BOX1], [0], labels=("cat", "car"))
    assert compare_boxes(det([BOX1], [0]), c).value == 0.0


def test_empty_against_empty_agrees_and_empty_against_one_does_not():
    empty = det(np.zeros((0, 4)), [])
    both = compare_boxes(empty, empty)
    assert both.value == 1.0 and both.matched == 0 and both.detail == "no boxes in either"
    one = compare_boxes(empty, det([BOX1], [0]))
    assert one.value == 0.0 and one.only_a.tolist() == [] and one.only_b.tolist() == [0]


def test_matching_is_one_to_one_highest_iou_first():
    # two A boxes over one B box: the closer one matches, the other is left only in A
    a = det([[10, 10, 50, 50], [12, 10, 52, 50]], [0, 0])
    b = det([[12, 10, 52, 50]], [0])
    ag = compare_boxes(a, b)
    assert ag.matched == 1 and ag.only_a.tolist() == [0] and ag.value == pytest.approx(2 / 3)


def test_box_agreement_is_symmetric_on_random_scenes():
    rng = np.random.default_rng(7)
    for _ in range(50):
        def scene(n):
            xy = rng.integers(0, 12, (n, 2)) * 10  # coarse grid: many equal IoUs (ties)
            wh = rng.integers(2, 5, (n, 2)) * 10
            return det(np.concatenate([xy, xy + wh], 1), rng.integers(0, 2, n), hw=(200, 200))
        a, b = scene(int(rng.integers(0, 7))), scene(int(rng.integers(0, 7)))
        ab, ba = compare_boxes(a, b), compare_boxes(b, a)
        assert ab.value == ba.value and ab.matched == ba.matched
        assert len(ab.only_a) == len(ba.only_b) and len(ab.only_b) == len(ba.only_a)
        assert len(ab.only_a) + ab.matched == len(a.boxes) and len(ab.only_b) + ab.matched == len(b.boxes)


# ----------------------------------------------------------------------------- classification

def test_same_top1_agrees_and_different_top1_does_not():
    same = compare_classification(cls([0.7, 0.2, 0.1]), cls([0.1, 0.8, 0.1], labels=("dog", "cat", "fox")))
    assert same.value == 1.0 and same.kind == "top1" and same.detail == "same top-1: cat"
    diff = compare_classification(cls([0.7, 0.2, 0.1]), cls([0.2, 0.7, 0.1]))
    assert diff.value == 0.0 and diff.detail == "A: cat, B: dog"


# ----------------------------------------------------------------------------- the tally over frames

def test_the_tally_sums_pairs_boxes_and_top1_over_frames():
    a = np.zeros((10, 10), np.uint8)
    b = a.copy()
    b[:2] = 1  # 20 pixels: A road / B car
    b[9, :5] = 2  # 5 pixels: A road / B sky
    t = Tally()
    for _ in range(2):  # two frames alike
        t.add(compare_segmentation(seg(a), seg(b)), seg(a), seg(b))
    assert t.unit == "pixels" and t.total == 200 and t.counts == {"A road / B car": 40, "A road / B sky": 10}
    assert t.headline() == "A road / B car 20.0% of pixels, A road / B sky 5.0%"
    boxes = Tally()
    ra, rb = det([[0, 0, 10, 10], [50, 50, 60, 60], [80, 0, 90, 10]], [0, 1, 1]), det([[0, 0, 10, 10]], [0])
    boxes.add(compare_boxes(ra, rb), ra, rb)
    boxes.add(compare_boxes(rb, ra), rb, ra)  # the other way round: the same boxes only B found
    assert boxes.counts == {"only A: car": 2, "only B: car": 2} and boxes.total == 8
    assert boxes.headline() == "only A: car 2, only B: car 2 (of 8 boxes)"
    top = Tally()
    for pa, pb in (([0.7, 0.2, 0.1], [0.2, 0.7, 0.1]), ([0.7, 0.2, 0.1], [0.7, 0.2, 0.1])):
        top.add(compare_classification(cls(pa), cls(pb)), cls(pa), cls(pb))
    assert top.headline() == "A cat / B dog on 1 frame (of 2 frames)"
    both = Tally()  # two inputs' tallies: summed
    both.merge(t)
    both.merge(t)
    assert both.unit == "pixels" and both.total == 400 and both.counts["A road / B car"] == 80
    both.remove(t)  # a frame compared again is taken back first
    assert both.total == 200 and both.counts == t.counts
    both.remove(t)
    assert both.total == 0 and not both.counts and both.headline() == ""
    assert Tally().headline() == "" and t.headline(top=1) == "A road / B car 20.0% of pixels"


# ----------------------------------------------------------------------------- registry

def test_the_registry_names_a_comparer_for_the_tasks_that_have_one():
    assert comparer_for("segmentation") is compare_segmentation
    assert comparer_for("classification") is compare_classification
    for name in ("detection", "keypoints", "instances"):
        assert comparer_for(name) is compare_boxes
    for name in ("anomaly", "density", "codebook", "compression", "depth", "landmarks", "no-such-task"):
        assert comparer_for(name) is None
    spec = registry.get("segmentation")
    assert spec.comparer_fn() is compare_segmentation and "loupe.tasks.agreement" in spec.modules()
