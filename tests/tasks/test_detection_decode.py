"""The detection decoders and NMS as pure functions (no model), and the card's detection keys."""

from __future__ import annotations

import numpy as np
import pytest

from loupe.inference.card import CardError, ModelCard
from loupe.tasks.detection_formats import (
    FormatError,
    decode,
    decode_boxes_scores_labels,
    decode_detr,
    decode_yolov5,
    decode_yolov8,
    nms,
    top_k,
)


def reference_nms(boxes, scores, classes, thr, max_det):
    """Greedy NMS written the plain way: one pair at a time, float64."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable
    suppressed = set()
    keep = []
    for a, i in enumerate(order):
        if i in suppressed:
            continue
        keep.append(i)
        if len(keep) == max_det:
            break
        for j in order[a + 1:]:
            if j in suppressed or classes[j] != classes[i]:
                continue
            bi, bj = boxes[i].astype(np.float64), boxes[j].astype(np.float64)
            iw = max(0.0, min(bi[2], bj[2]) - max(bi[0], bj[0]))
            ih = max(0.0, min(bi[3], bj[3]) - max(bi[1], bj[1]))
            inter = iw * ih
            union = (bi[2] - bi[0]) * (bi[3] - bi[1]) + (bj[2] - bj[0]) * (bj[3] - bj[1]) - inter
            if union > 0 and inter / union > thr:
                suppressed.add(j)
    return keep


@pytest.mark.parametrize("seed", range(8))
def test_nms_matches_the_plain_greedy_algorithm(seed):
    """Random boxes (some clustered so that chains of suppression cross the chunks NMS works in),
    few classes, scores with ties, random IoU threshold and cap."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 700))
    centres = rng.uniform(0, 300, (8, 2))
    xy = centres[rng.integers(0, 8, n)] + rng.normal(0, 8, (n, 2))
    wh = rng.uniform(10, 50, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    boxes = np.round(boxes * 4) / 4  # coordinates exact in float32 and float64 alike
    scores = (rng.integers(1, 60, n) / 64).astype(np.float32)  # ties
    classes = rng.integers(0, 3, n).astype(np.int32)
    thr = float(rng.choice([0.3, 0.45, 0.7]))
    max_det = int(rng.choice([5, 50, 300]))
    got = nms(boxes, scores, classes, thr, max_det)
    assert got.tolist() == reference_nms(boxes, scores, classes, thr, max_det)


def test_nms_is_class_aware_and_caps():
    box = np.array([[0, 0, 10, 10]] * 4, np.float32)
    scores = np.array([0.5, 0.9, 0.8, 0.7], np.float32)
    classes = np.array([0, 0, 1, 1], np.int32)
    assert nms(box, scores, classes, 0.5, 10).tolist() == [1, 2]  # one per class
    assert nms(box, scores, classes, 0.5, 1).tolist() == [1]
    assert nms(box, scores, np.arange(4, dtype=np.int32), 0.5, 10).tolist() == [1, 2, 3, 0]
    assert nms(box[:0], scores[:0], classes[:0], 0.5, 10).tolist() == []
    assert top_k(scores, 2).tolist() == [1, 2]


def test_nms_of_many_identical_boxes_keeps_one_per_class():
    n = 5000  # many chunks, each wiped out by the box kept from the first
    boxes = np.tile(np.array([[5, 5, 25, 25]], np.float32), (n, 1))
    scores = np.linspace(0.9, 0.3, n, dtype=np.float32)
    classes = (np.arange(n) % 2).astype(np.int32)
    assert nms(boxes, scores, classes, 0.7, 300).tolist() == [0, 1]


def test_yolov5_score_is_objectness_times_class():
    pred = np.zeros((1, 3, 7), np.float32)  # 3 anchors, 2 classes
    pred[0, :, :4] = [50, 50, 20, 10]
    pred[0, 0, 4:] = [0.5, 0.6, 0.2]  # 0.3 > 0.25: kept, class 0
    pred[0, 1, 4:] = [0.4, 0.5, 0.6]  # 0.24: dropped
    pred[0, 2, 4:] = [0.2, 0.0, 1.0]  # objectness below the threshold: dropped
    c = decode_yolov5(pred, 0.25)
    assert c.classes.tolist() == [0] and c.scores.tolist() == pytest.approx([0.3])
    np.testing.assert_array_equal(c.boxes, [[40, 45, 60, 55]])


def test_yolov8_layouts_and_logits():
    pred = np.zeros((1, 6, 10), np.float32)  # 2 classes, 10 anchors
    pred[0, :4, 3] = [100, 60, 40, 20]
    pred[0, 5, 3] = 0.8
    c = decode_yolov8(pred, 0.25)
    assert c.classes.tolist() == [1] and c.scores.tolist() == pytest.approx([0.8])
    np.testing.assert_array_equal(c.boxes, [[80, 50, 120, 70]])
    t = decode_yolov8(pred.transpose(0, 2, 1), 0.25, n_classes=2)  # 10 x 6: told apart by C
    np.testing.assert_array_equal(t.boxes, c.boxes)
    logits = pred.copy()
    logits[0, 4:] = -9.0
    logits[0, 5, 3] = np.log(0.8 / 0.2)
    s = decode("yolov8", {"predictions": logits}, (320, 320), 0.25, 2, {"activation": "sigmoid"})
    assert s.scores.tolist() == pytest.approx([0.8], abs=1e-6) and s.classes.tolist() == [1]
    with pytest.raises(FormatError, match="4 \\+ 3 classes = 7 values per anchor"):
        decode_yolov8(pred, 0.25, n_classes=3)


def test_detr_keeps_a_query_whose_best_real_class_beats_the_threshold():
    """Softmax over the classes and "no object"; a query is kept by its best real class, even when
    "no object" is more likely."""
    boxes = np.array([[[0.5, 0.5, 0.25, 0.5], [0.1, 0.1, 0.1, 0.1]]], np.float32)
    probs = np.array([[[0.3, 0.1, 0.6], [0.1, 0.1, 0.8]]])
    c = decode_detr(boxes, np.log(probs).astype(np.float32), (200, 400), 0.25)
    assert c.classes.tolist() == [0] and c.scores.tolist() == pytest.approx([0.3], abs=1e-6)
    np.testing.assert_allclose(c.boxes, [[150, 50, 250, 150]], rtol=1e-6)  # w 400, h 200


def test_boxes_scores_labels_box_formats_offset_and_count():
    boxes = np.array([[10, 20, 30, 40], [0.5, 0.5, 0.5, 0.25]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    labels = np.array([3, 1])
    c = decode_boxes_scores_labels(boxes[:1], scores[:1], labels[:1], (100, 200), 0.25, box_format="xywh",
                                   label_offset=1)
    np.testing.assert_array_equal(c.boxes, [[10, 20, 40, 60]])
    assert c.classes.tolist() == [2]
    c = decode_boxes_scores_labels(boxes[1:], scores[1:], labels[1:], (100, 200), 0.25, box_format="cxcywh",
                                   normalized=True)
    np.testing.assert_allclose(c.boxes, [[50, 37.5, 150, 62.5]])
    c = decode_boxes_scores_labels(boxes, scores, labels, (100, 200), 0.25, count=np.array([[1]]))
    assert len(c) == 1 and c.scores.tolist() == pytest.approx([0.9])
    with pytest.raises(FormatError, match="box_format must be one of"):
        decode_boxes_scores_labels(boxes, scores, labels, (100, 200), 0.25, box_format="yxyx")
    with pytest.raises(FormatError, match="expected boxes N x 4, scores N and labels N"):
        decode_boxes_scores_labels(boxes, scores[:1], labels, (100, 200), 0.25)


def test_decode_names_the_problem():
    with pytest.raises(FormatError, match="format must be one of"):
        decode("ssd", {}, (320, 320), 0.25)
    with pytest.raises(FormatError, match="6 values per detection"):
        decode("end2end", {"predictions": np.zeros((1, 10, 7), np.float32)}, (320, 320), 0.25)
    with pytest.raises(FormatError, match="got an output of shape 8400"):
        decode("yolov8", {"predictions": np.zeros(8400, np.float32)}, (320, 320), 0.25)


@pytest.mark.parametrize("output, words", [
    ({"format": "yolo"}, ["loupe.output format", "yolov8"]),
    ({"score_threshold": 1.5}, ["score_threshold", "between 0 and 1"]),
    ({"iou_threshold": "high"}, ["iou_threshold", "number"]),
    ({"max_detections": 0}, ["max_detections", ">= 1"]),
    ({"outputs": {"logits": "x"}}, ["outputs", "unknown role 'logits'"]),
    ({"outputs": ["a"]}, ["outputs", "object"]),
    ({"normalized": "yes"}, ["normalized", "true or false"]),
    ({"box_format": "yxyx"}, ["box_format", "cxcywh"]),
])
def test_card_detection_keys_are_checked(output, words):
    with pytest.raises(CardError) as e:
        ModelCard.from_metadata({"loupe.task": "detection", "loupe.output": output})
    for w in words:
        assert w in str(e.value)


def test_nms_resolves_a_long_suppression_chain():
    """Each box overlaps the next (IoU 8 / 12) but not the one after (6 / 14): greedy keeps every
    other box, an outcome each box only learns from the whole chain above it (300 boxes: chains
    across three chunks)."""
    n = 300
    x = np.arange(n, dtype=np.float32) * 2
    boxes = np.stack([x, np.zeros(n, np.float32), x + 10, np.full(n, 10, np.float32)], axis=1)
    scores = np.linspace(0.9, 0.3, n, dtype=np.float32)
    classes = np.zeros(n, np.int32)
    got = nms(boxes, scores, classes, 0.5, 1000)
    assert got.tolist() == list(range(0, n, 2)) == reference_nms(boxes, scores, classes, 0.5, 1000)


@pytest.mark.parametrize("fmt, arrays", [
    ("yolov8", {"predictions": np.full((1, 7, 40), 0.1, np.float32)}),
    ("yolov5", {"predictions": np.full((1, 40, 8), 0.1, np.float32)}),
    ("end2end", {"predictions": np.zeros((1, 300, 6), np.float32)}),
    ("detr", {"boxes": np.full((1, 5, 4), 0.5, np.float32), "scores": np.zeros((1, 5, 4), np.float32)}),
    ("rtdetr", {"boxes": np.full((1, 5, 4), 0.5, np.float32), "scores": np.full((1, 5, 3), -5, np.float32)}),
    ("boxes_scores_labels", {"boxes": np.zeros((1, 0, 4), np.float32), "scores": np.zeros((1, 0), np.float32),
                             "labels": np.zeros((1, 0), np.int64)}),
])
def test_nothing_above_the_threshold_is_an_empty_set(fmt, arrays):
    c = decode(fmt, arrays, (320, 320), 0.25, None)
    assert len(c) == 0 and c.boxes.shape == (0, 4) and c.classes.dtype == np.int32
    assert nms(c.boxes, c.scores, c.classes, 0.7, 300).tolist() == []
