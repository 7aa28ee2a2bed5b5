"""Loupe's own COCO mAP against pycocotools' COCOeval on generated detections (the optional
``loupe[eval]`` extra; skipped without it)."""

from __future__ import annotations

import contextlib
import io
from types import SimpleNamespace

import numpy as np
import pytest

from loupe.tasks.scoring import DetectionScorer
from loupe.tasks.scoring_coco import MAX_DETS, APAccumulator

COCO = pytest.importorskip("pycocotools.coco")
COCOeval = pytest.importorskip("pycocotools.cocoeval").COCOeval


def generate(seed: int, n_images: int = 12, n_classes: int = 4):
    """Images with label boxes, and detections: jittered hits, misses, duplicates, wrong classes,
    spurious boxes, tied scores and one image with more than 100 detections of a class."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n_images):
        n_gt = int(rng.integers(0, 8))
        xy = rng.uniform(0, 400, (n_gt, 2))
        gt = np.concatenate([xy, xy + rng.uniform(8, 120, (n_gt, 2))], 1)
        gt_cls = rng.integers(0, n_classes - 1, n_gt)  # the last class never labelled: no AP
        dets, scores, cls = [], [], []
        for b, c in zip(gt, gt_cls):
            if rng.random() < 0.2:
                continue  # missed
            for _ in range(1 + int(rng.random() < 0.3)):  # sometimes a duplicate
                dets.append(b + rng.normal(0, rng.choice([1.0, 6.0, 15.0]), 4))
                scores.append(round(float(rng.uniform(0.05, 1)), 2))  # rounded: ties happen
                cls.append(c if rng.random() > 0.1 else (c + 1) % n_classes)
        for _ in range(int(rng.integers(0, 4))):  # spurious
            x, y = rng.uniform(0, 400, 2)
            dets.append(np.array([x, y, x + rng.uniform(5, 60), y + rng.uniform(5, 60)]))
            scores.append(round(float(rng.uniform(0.05, 1)), 2))
            cls.append(int(rng.integers(0, n_classes)))
        if i == 3 and n_gt:  # more than maxDets detections of one class
            for _ in range(MAX_DETS + 20):
                dets.append(gt[0] + rng.normal(0, 20, 4))
                scores.append(float(rng.uniform(0, 1)))
                cls.append(gt_cls[0])
        d = np.array(dets, np.float64).reshape(-1, 4)
        d[:, 2:] = np.maximum(d[:, 2:], d[:, :2] + 1)
        images.append((gt, gt_cls, d, np.array(scores), np.array(cls, np.int64)))
    return images


def coco_eval(images, n_classes):
    def xywh(b):
        return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]

    gt = {"images": [{"id": i + 1, "width": 600, "height": 600} for i in range(len(images))],
          "categories": [{"id": 10 * (k + 1), "name": f"c{k}"} for k in range(n_classes)],  # ids with gaps
          "annotations": []}
    dt = []
    for i, (g, gc, d, s, dc) in enumerate(images):
        for b, c in zip(g, gc):
            w = xywh(b)
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i + 1, "category_id": 10 * (int(c) + 1),
                                      "bbox": w, "area": w[2] * w[3], "iscrowd": 0})
        for b, sc, c in zip(d, s, dc):
            dt.append({"image_id": i + 1, "category_id": 10 * (int(c) + 1), "bbox": xywh(b), "score": float(sc)})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO.COCO()
        coco.dataset = gt
        coco.createIndex()
        res = coco.loadRes(dt)
        ev = COCOeval(coco, res, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_map_agrees_with_pycocotools(seed):
    n_classes = 4
    images = generate(seed, n_classes=n_classes)
    ev = coco_eval(images, n_classes)
    acc = APAccumulator(n_classes)
    for g, gc, d, s, dc in images:
        acc.add_image(d, s, dc, g, gc)
    map50, map_ = acc.maps()
    assert map_ == pytest.approx(ev.stats[0], abs=1e-6)
    assert map50 == pytest.approx(ev.stats[1], abs=1e-6)
    # per class AP@.50 from COCOeval's precision array (T, R, K, A, M): area all, maxDets 100
    p = ev.eval["precision"][0, :, :, 0, -1]
    ap50, _ = acc.ap()
    for k in range(n_classes):
        col = p[:, k]
        if (col > -1).any():
            assert ap50[k] == pytest.approx(col.mean(), abs=1e-6)
        else:
            assert np.isnan(ap50[k])
    assert np.isnan(ap50[n_classes - 1])  # never labelled
    assert 0.05 < map_ < map50 < 1  # not a trivial case


def test_scorer_summary_agrees_with_pycocotools():
    images = generate(7, n_classes=3)
    ev = coco_eval(images, 3)
    sc = DetectionScorer(SimpleNamespace(name="detection", labels=("c0", "c1", "c2")))
    for i, (g, gc, d, s, dc) in enumerate(images):
        labels = SimpleNamespace(index=i, boxes=g.astype(np.float32), classes=gc.astype(np.int32), mask=None)
        sc.score(SimpleNamespace(boxes=d.astype(np.float32), scores=s.astype(np.float32), classes=dc), labels, None)
    s = sc.summary()
    # boxes and scores pass through float32 (as a DetectionResult holds them): agreement to 1e-4
    assert s["map50_95"] == pytest.approx(ev.stats[0], abs=1e-4)
    assert s["map50"] == pytest.approx(ev.stats[1], abs=1e-4)


def test_perfect_predictions_give_one_in_pycocotools_and_here():
    g = np.array([[10, 10, 50, 60], [100, 100, 180, 150]], np.float64)
    images = [(g, np.array([0, 1]), g.copy(), np.array([0.9, 0.8]), np.array([0, 1]))]
    ev = coco_eval(images, 2)
    acc = APAccumulator(2)
    acc.add_image(g, [0.9, 0.8], [0, 1], g, [0, 1])
    assert acc.maps() == pytest.approx((ev.stats[1], ev.stats[0]), abs=1e-12)
    assert acc.maps() == pytest.approx((1.0, 1.0))


def test_equal_ious_go_to_the_later_label_box_as_in_cocoeval():
    # the first detection overlaps both label boxes with IoU .75: COCO gives it the later one (B),
    # which leaves A to the second detection (IoU .93 with A, .45 with B): two hits, AP@.50 = 1
    g = np.array([[0, 0, 15, 10], [5, 0, 20, 10]], np.float64)
    d = np.array([[0, 0, 20, 10], [0, 0, 14, 10]], np.float64)
    images = [(g, np.array([0, 0]), d, np.array([0.9, 0.8]), np.array([0, 0]))]
    ev = coco_eval(images, 1)
    acc = APAccumulator(1)
    acc.add_image(d, [0.9, 0.8], [0, 0], g, [0, 0])
    map50, map_ = acc.maps()
    assert map50 == pytest.approx(ev.stats[1], abs=1e-12) and map50 == pytest.approx(1.0)
    assert map_ == pytest.approx(ev.stats[0], abs=1e-12)
    sc = DetectionScorer(SimpleNamespace(name="detection", labels=("a",)))
    row = sc.score(SimpleNamespace(boxes=d, scores=np.array([0.9, 0.8]), classes=np.array([0, 0])),
                   SimpleNamespace(boxes=g, classes=np.array([0, 0])), None)
    assert row == {"tp": 2, "fp": 0, "fn": 0}
