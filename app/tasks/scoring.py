"""Scoring a task's results against ground-truth labels (Qt-free, pure numpy).

Each task's registration names its scorer (``TaskSpec.scorer``); ``scorer_for(task)`` makes one
per model. A scorer gives per-frame values (``score``, the columns of ``columns()``), one number
per frame for plots and worst-frame lists (``frame_score``), and the figures pooled over the
frames it scored (``summary``). Unlabelled frames are not scored: their cells are empty
(``empty_row``) and they add nothing to the pooled figures.

Labels (``loupe.sources.labels.FrameLabels``) count classes in the label file's order;
``class_map`` (``LabelSet.class_map(model labels)``) maps a label class id to the model's class
id, -1 where the model has no class of that name.

- Segmentation: the label mask's classes are mapped to the model's (255, and classes the model
  does not have, are ignored: left out of every count), then resized nearest-neighbour to the
  result's class map (display size; ``loupe analyze`` runs at the frame's size) and compared
  there. Per frame ``iou_<label>`` and ``dice_<label>`` (empty when the class is in neither the
  prediction nor the label); pooled ``miou`` and ``iou_<label>`` from the confusion matrix summed
  over frames (not the mean of per-frame IoUs), and ``pixel_accuracy``. ``frame_score``: the mean
  IoU over the classes present in the frame.
- Detection (also keypoints' and instances' boxes): per frame ``tp``, ``fp``, ``fn`` at IoU 0.5
  (detections in descending score order each take the best unmatched label box of the same class,
  COCO's rule; every detection counts). Label boxes of classes the model lacks are dropped.
  Pooled ``map50``, ``map50_95`` and ``ap50_<label>`` with COCO's definitions
  (``loupe.tasks.scoring_coco``). ``frame_score``: F1 at IoU 0.5 (1.0 for a frame with neither
  boxes nor labels).
- Classification: per frame ``correct`` (1 when the top label is the labelled class, else 0);
  pooled ``accuracy`` and ``confusion`` (rows the labelled class, columns the predicted, in
  ``labels`` order). A frame whose labelled class the model lacks is left unscored.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from loupe.tasks.base import column_safe
from loupe.tasks.scoring_coco import APAccumulator, box_iou, match
from loupe.tasks.segmentation import confusion_matrix, iou_from_confusion

IGNORE = 255

__all__ = ["ClassificationScorer", "DetectionScorer", "FrameScores", "Scorer", "SegmentationScorer", "scorer_for"]


def _num(v: float | None, digits: int | None = 6) -> float | None:
    """A JSON-safe number: None for a missing or non-finite value; row cells rounded to 6 digits,
    pooled figures (``digits=None``) not."""
    if v is None or not math.isfinite(v):
        return None
    return float(v) if digits is None else round(float(v), digits)


def _fig(v: float | None) -> float | None:
    return _num(v, None)


class Scorer:
    """Base of the scorers: made per model (``Scorer(task)``), it reads the task's labels."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.frames = 0  # frames scored (labelled ones)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.task.labels)

    def columns(self) -> list[str]:
        raise NotImplementedError

    def empty_row(self) -> dict[str, Any]:
        """The cells of an unlabelled frame: every score column empty."""
        return {c: None for c in self.columns()}

    def score(self, result: Any, labels: Any, class_map: np.ndarray) -> dict[str, Any]:
        raise NotImplementedError

    def frame_score(self, row: dict[str, Any]) -> float | None:
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        raise NotImplementedError

    def _class_map(self, class_map: np.ndarray | None, n_label: int) -> np.ndarray:
        """Label class id -> model class id (int64, -1 = not in the model); identity without one."""
        n = len(self.labels)
        if class_map is None:
            ids = np.arange(max(n_label, 0), dtype=np.int64)
            return np.where(ids < n, ids, -1)
        cm = np.asarray(class_map, np.int64).reshape(-1)
        return np.where((cm >= 0) & (cm < n), cm, -1)


class SegmentationScorer(Scorer):
    def __init__(self, task: Any) -> None:
        super().__init__(task)
        self.confusion: np.ndarray | None = None

    def columns(self) -> list[str]:
        return [f"{kind}_{column_safe(lab)}" for lab in self.labels for kind in ("iou", "dice")]

    def target(self, mask: np.ndarray, class_map: np.ndarray | None, out_hw: tuple[int, int]) -> np.ndarray:
        """The label mask in model class ids (``IGNORE`` where not scored), at ``out_hw``."""
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"a label mask is H x W, got {mask.shape}")
        cm = self._class_map(class_map, int(mask.max(initial=0)) + 1)
        lut = np.full(256, IGNORE, np.uint8)
        k = min(len(cm), IGNORE)
        lut[:k] = np.where(cm[:k] >= 0, cm[:k], IGNORE).astype(np.uint8)
        target = lut[mask.astype(np.uint8)]
        if target.shape != tuple(out_hw):
            target = cv2.resize(target, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_NEAREST)
        return target

    def frame_confusion(self, result: Any, labels: Any, class_map: np.ndarray | None) -> np.ndarray:
        n = len(self.labels)
        pred = np.asarray(result.class_map)
        target = self.target(labels.mask, class_map, pred.shape[:2])
        keep = (target != IGNORE) & (pred < n)
        return confusion_matrix(pred[keep], target[keep], n)

    def score(self, result: Any, labels: Any, class_map: np.ndarray | None) -> dict[str, Any]:
        if labels is None or getattr(labels, "mask", None) is None:
            return self.empty_row()
        conf = self.frame_confusion(result, labels, class_map)
        self.confusion = conf if self.confusion is None or self.confusion.shape != conf.shape else self.confusion + conf
        self.frames += 1
        iou = iou_from_confusion(conf)
        row: dict[str, Any] = {}
        for lab, v in zip(self.labels, iou):
            name = column_safe(lab)
            row[f"iou_{name}"] = _num(v)
            row[f"dice_{name}"] = _num(2 * v / (1 + v)) if math.isfinite(v) else None
        return row

    def frame_score(self, row: dict[str, Any]) -> float | None:
        vals = [row.get(f"iou_{column_safe(lab)}") for lab in self.labels]
        vals = [float(v) for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
        return sum(vals) / len(vals) if vals else None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"frames": self.frames, "miou": None, "pixel_accuracy": None}
        if self.confusion is None:
            out.update({f"iou_{column_safe(lab)}": None for lab in self.labels})
            return out
        iou = iou_from_confusion(self.confusion)
        out["miou"] = _fig(float(np.nanmean(iou))) if np.isfinite(iou).any() else None
        total = self.confusion.sum()
        out["pixel_accuracy"] = _fig(np.trace(self.confusion) / total) if total else None
        out.update({f"iou_{column_safe(lab)}": _fig(v) for lab, v in zip(self.labels, iou)})
        return out


class DetectionScorer(Scorer):
    IOU = 0.5

    def __init__(self, task: Any) -> None:
        super().__init__(task)
        self.ap = APAccumulator(len(self.labels))
        self.totals = np.zeros(3, np.int64)  # tp, fp, fn

    def columns(self) -> list[str]:
        return ["tp", "fp", "fn"]

    def gt_of(self, labels: Any, class_map: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The label boxes (float64) and their model class ids, boxes of classes the model lacks dropped."""
        boxes = np.asarray(labels.boxes, np.float64).reshape(-1, 4)
        classes = np.asarray(labels.classes, np.int64).reshape(-1)
        cm = self._class_map(class_map, int(classes.max(initial=-1)) + 1)
        ok = (classes >= 0) & (classes < len(cm))
        mapped = np.full(len(classes), -1, np.int64)
        mapped[ok] = cm[classes[ok]]
        keep = mapped >= 0
        return boxes[keep], mapped[keep]

    def count(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
              gt_boxes: np.ndarray, gt_classes: np.ndarray) -> tuple[int, int, int]:
        """tp, fp, fn at IoU 0.5, per class (all detections, in descending score order)."""
        tp = 0
        for c in np.unique(classes):
            d = np.flatnonzero(classes == c)
            d = d[np.argsort(-scores[d], kind="mergesort")]
            g = gt_boxes[gt_classes == c]
            if len(g):
                tp += int(match(box_iou(boxes[d], g), np.array([self.IOU]))[0].sum())
        return tp, len(boxes) - tp, len(gt_boxes) - tp

    def score(self, result: Any, labels: Any, class_map: np.ndarray | None) -> dict[str, Any]:
        if labels is None:
            return self.empty_row()
        if len(self.labels) != self.ap.n_classes:  # labels learned after the scorer was made
            self.ap = APAccumulator(len(self.labels))
        gt_boxes, gt_classes = self.gt_of(labels, class_map)
        boxes = np.asarray(result.boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(result.scores, np.float64).reshape(-1)
        classes = np.asarray(result.classes, np.int64).reshape(-1)
        self.ap.add_image(boxes, scores, classes, gt_boxes, gt_classes)
        tp, fp, fn = self.count(boxes, scores, classes, gt_boxes, gt_classes)
        self.totals += (tp, fp, fn)
        self.frames += 1
        return {"tp": tp, "fp": fp, "fn": fn}

    def frame_score(self, row: dict[str, Any]) -> float | None:
        vals = [row.get(c) for c in ("tp", "fp", "fn")]
        if any(not isinstance(v, (int, float)) for v in vals):
            return None
        tp, fp, fn = vals
        return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)

    def summary(self) -> dict[str, Any]:
        map50, map_ = self.ap.maps()
        ap50, _ = self.ap.ap()
        tp, fp, fn = (int(v) for v in self.totals)
        out: dict[str, Any] = {"frames": self.frames, "map50": _fig(map50) if map50 is not None else None,
                               "map50_95": _fig(map_) if map_ is not None else None,
                               "tp": tp, "fp": fp, "fn": fn}
        out.update({f"ap50_{column_safe(lab)}": _fig(v) for lab, v in zip(self.labels, ap50)})
        return out


class ClassificationScorer(Scorer):
    def __init__(self, task: Any) -> None:
        super().__init__(task)
        self.confusion: np.ndarray | None = None

    def columns(self) -> list[str]:
        return ["correct"]

    def score(self, result: Any, labels: Any, class_map: np.ndarray | None) -> dict[str, Any]:
        truth = None if labels is None else getattr(labels, "image_class", None)
        if truth is None:
            return self.empty_row()
        cm = self._class_map(class_map, int(truth) + 1)
        want = int(cm[truth]) if 0 <= truth < len(cm) else -1
        if want < 0:  # the model has no such class: nothing to score
            return self.empty_row()
        n = len(self.labels)
        if self.confusion is None or self.confusion.shape != (n, n):
            self.confusion = np.zeros((n, n), np.int64)
        got = int(result.top1)
        self.confusion[want, got] += 1
        self.frames += 1
        return {"correct": int(got == want)}

    def frame_score(self, row: dict[str, Any]) -> float | None:
        v = row.get("correct")
        return float(v) if isinstance(v, (int, float)) else None

    def summary(self) -> dict[str, Any]:
        labels = list(self.labels)
        if self.confusion is None:
            n = len(labels)
            return {"frames": 0, "accuracy": None, "confusion": {"labels": labels, "matrix": [[0] * n for _ in range(n)]}}
        total = int(self.confusion.sum())
        return {"frames": self.frames, "accuracy": _fig(np.trace(self.confusion) / total) if total else None,
                "confusion": {"labels": labels, "matrix": self.confusion.tolist()}}


class FrameScores:
    """One model's scores over frames that may be shown more than once (the window: a frame played
    again or stepped back to): the last row and frame score per frame index, and each frame
    counted once in the pooled figures (``scorer.summary()``): a frame scored before is scored
    again by a fresh scorer of the same kind, which pools nothing."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.rows: dict[int, dict[str, Any]] = {}
        self.scores: dict[int, float | None] = {}

    def score(self, index: int, result: Any, labels: Any, class_map: np.ndarray | None) -> dict[str, Any]:
        """Score frame ``index``'s result against its labels; the row (also kept in ``rows``,
        its frame score in ``scores``)."""
        sc = self.scorer if index not in self.scores else type(self.scorer)(self.scorer.task)
        row = sc.score(result, labels, class_map)
        self.rows[index], self.scores[index] = row, self.scorer.frame_score(row)
        return row


def model_labels(result: Any, task: Any) -> tuple[str, ...]:
    """The class names a model's result is in: the result's own, else its task's (what labels
    are matched against by name)."""
    return tuple(getattr(result, "labels", None) or getattr(task, "labels", ()) or ())


def scorer_for(task: Any) -> Scorer | None:
    """The scorer of ``task``'s registered task (``TaskSpec.scorer``); None when it has none."""
    from loupe.base import registry

    spec = registry.find(task.name)
    if spec is None or spec.scorer is None:
        return None
    return spec.scorer_class()(task)
