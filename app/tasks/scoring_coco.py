"""COCO-style box matching and average precision, pure numpy (Qt-free; no pycocotools).

Definitions follow COCO's ``cocoeval`` (bounding boxes, area range "all", no crowd regions):

- IoU of two boxes: intersection area / union area, boxes as ``x1, y1, x2, y2`` in pixels
  (no "+1");
- matching, per image and class, at each IoU threshold t of ``.50:.05:.95``: detections in
  descending score order (ties: their order), each takes the not yet matched ground-truth box
  with the highest IoU >= t (equal IoUs: the later box), or none (a false positive);
- at most ``MAX_DETS`` (100) detections per image and class, the best scored;
- per class, detections of every image pooled and sorted by score (stable, so ties keep image
  order), precision made monotone from the right and read at the 101 recall points
  ``0:.01:1`` (the first detection whose recall reaches the point; 0 past the last recall);
  AP = the mean over those points;
- a class without any ground-truth box has no AP and is left out of the means; a class with
  boxes but no detection has AP 0. mAP@.50 = the mean over classes at IoU .50; mAP@.50:.95 the
  mean over classes and the ten thresholds.

``tests/tasks/test_scoring_coco.py`` checks these figures against pycocotools' COCOeval.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETS = 100


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of boxes ``a`` (N, 4) and ``b`` (M, 4), ``x1, y1, x2, y2``; 0 where the union is empty."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match(ious: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """(T, D) bool: detection d (rows of ``ious``, already in descending score order) matched a
    ground-truth box (columns) at threshold t, COCO's rule (see the module docstring)."""
    n_det, n_gt = ious.shape
    out = np.zeros((len(thresholds), n_det), bool)
    if n_gt == 0:
        return out
    for ti, t in enumerate(thresholds):
        # cocoeval walks the boxes keeping the last one whose IoU is >= the best so far (starting
        # at min(t, 1 - 1e-10)): the last box of the highest IoU, if that reaches the threshold
        floor = min(float(t), 1 - 1e-10)
        free = np.ones(n_gt, bool)
        for d in np.flatnonzero(ious.max(axis=1) >= floor):  # the others match nothing at t
            row = np.where(free, ious[d], -np.inf)
            m = n_gt - 1 - int(np.argmax(row[::-1]))
            if row[m] >= floor:
                free[m] = False
                out[ti, d] = True
    return out


@dataclass
class _ClassPool:
    scores: list[np.ndarray] = field(default_factory=list)
    matched: list[np.ndarray] = field(default_factory=list)  # (T, D) each
    n_gt: int = 0


class APAccumulator:
    """Pools per-image matches per class (scores and matched flags only, so a long video does not
    keep its boxes) and gives COCO's AP."""

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes
        self._pools = [_ClassPool() for _ in range(n_classes)]

    def add_image(self, det_boxes: np.ndarray, det_scores: np.ndarray, det_classes: np.ndarray,
                  gt_boxes: np.ndarray, gt_classes: np.ndarray) -> None:
        det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
        det_scores = np.asarray(det_scores, np.float64).reshape(-1)
        det_classes = np.asarray(det_classes).reshape(-1)
        gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
        gt_classes = np.asarray(gt_classes).reshape(-1)
        for c in np.union1d(det_classes, gt_classes).astype(np.int64):
            if not 0 <= c < self.n_classes:
                continue
            d = np.flatnonzero(det_classes == c)
            d = d[np.argsort(-det_scores[d], kind="mergesort")][:MAX_DETS]
            g = gt_boxes[gt_classes == c]
            pool = self._pools[c]
            pool.n_gt += len(g)
            if len(d):
                pool.scores.append(det_scores[d])
                pool.matched.append(match(box_iou(det_boxes[d], g)))

    def precision(self) -> np.ndarray:
        """(T, R, K) interpolated precision; -1 for a class without ground truth."""
        out = -np.ones((len(IOU_THRESHOLDS), len(RECALL_POINTS), self.n_classes))
        for k, pool in enumerate(self._pools):
            if pool.n_gt == 0:
                continue
            if not pool.scores:
                out[:, :, k] = 0.0
                continue
            scores = np.concatenate(pool.scores)
            order = np.argsort(-scores, kind="mergesort")
            tps = np.concatenate(pool.matched, axis=1)[:, order]
            tp_sum = np.cumsum(tps, axis=1, dtype=np.float64)
            fp_sum = np.cumsum(~tps, axis=1, dtype=np.float64)
            for t in range(len(IOU_THRESHOLDS)):
                tp, fp = tp_sum[t], fp_sum[t]
                rc = tp / pool.n_gt
                pr = tp / (fp + tp + np.spacing(1))
                pr = np.maximum.accumulate(pr[::-1])[::-1]  # monotone from the right
                idx = np.searchsorted(rc, RECALL_POINTS, side="left")
                q = np.zeros(len(RECALL_POINTS))
                ok = idx < len(pr)
                q[ok] = pr[idx[ok]]
                out[t, :, k] = q
        return out

    def ap(self) -> tuple[np.ndarray, np.ndarray]:
        """(AP at IoU .50 per class, AP over .50:.95 per class); NaN for a class without ground truth."""
        p = self.precision()
        has = p[0, 0, :] > -1
        ap50 = np.where(has, p[0].mean(axis=0), np.nan)
        ap = np.where(has, p.mean(axis=(0, 1)), np.nan)
        return ap50, ap

    def maps(self) -> tuple[float | None, float | None]:
        """(mAP@.50, mAP@.50:.95) over the classes with ground truth; None when there is none."""
        ap50, ap = self.ap()
        if not np.isfinite(ap50).any():
            return None, None
        return float(np.nanmean(ap50)), float(np.nanmean(ap))
