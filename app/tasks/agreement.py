"""How far two models' results on the same frame agree (Qt-free, numpy only).

Each task that can be compared names a comparer in the registry (``TaskSpec.comparer``);
``comparer_for(task)`` finds it. A comparer takes two results of that task, A and B, and returns
an ``Agreement``: a value from 0 to 1 (1: they agree entirely), what it measures, one line for
people, and what the window's Compare view draws (the pixels or boxes where they differ).

- segmentation ("pixels"): the fraction of pixels whose class is the same. Classes are compared
  by label name (two models may order their labels differently); B's class map is resized
  nearest-neighbour to A's when the two differ in size.
- detection, keypoints, instances ("boxes"): class-aware one-to-one box matching at IoU >= 0.5
  (same label name), value = F1 = 2 x matched / (boxes of A + boxes of B); 1 when neither has a box.
  The matching is greedy and deterministic: candidate pairs by IoU, highest first (ties: A's box
  order, which is its score order, then B's), each pair taken when both boxes are still free.
- classification ("top1"): 1 when the top-1 label names are equal, else 0.

The value does not depend on which result is A: swapping the two swaps ``only_a`` and ``only_b``
(and the pairs' sides), never the value.

``Tally`` sums where two models disagree over many frames (``loupe analyze --compare``'s last
line): the pixels of each (A class, B class) pair, the boxes only one model found by class, or
the frames of each pair of top-1 labels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from loupe.tasks.scoring_coco import box_iou

__all__ = ["Agreement", "Tally", "class_name", "comparable_tasks", "compare_boxes", "compare_classification",
           "compare_segmentation", "comparer_for"]

IOU_THRESHOLD = 0.5


@dataclass(frozen=True, eq=False)  # eq=False: the arrays have no single truth value
class Agreement:
    """value: 0..1, 1 = the two results agree entirely; kind: "pixels", "boxes" or "top1";
    detail: one line for people ("93.1% of pixels agree").

    Segmentation: ``pair_map`` (HxW int32 at A's class-map resolution) is the index into
    ``pairs`` where the classes differ, -1 where they agree; ``pairs`` holds ``(class in A,
    class in B, pixels)``, most pixels first (class ids index each model's own labels).
    Boxes: ``only_a`` / ``only_b`` are int64 indices of the boxes of A (of B) that match no box
    of the other; ``matched`` counts the matched pairs."""

    value: float
    kind: str
    detail: str = ""
    pair_map: np.ndarray | None = None
    pairs: tuple[tuple[int, int, int], ...] = ()
    only_a: np.ndarray | None = None
    only_b: np.ndarray | None = None
    matched: int = 0


def _percent(value: float) -> str:
    """'93.1%', never '100.0%' unless all agree nor '0.0%' unless none do."""
    text = f"{100 * value:.1f}%"
    if text == "100.0%" and value < 1:
        return ">99.9%"
    if text == "0.0%" and value > 0:
        return "<0.1%"
    return text


def _resize_nearest(class_map: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``class_map`` resized to ``hw`` nearest-neighbour (each output pixel takes the input
    pixel its centre falls in)."""
    h, w = hw
    sh, sw = class_map.shape
    rows = np.minimum(((np.arange(h) + 0.5) * sh / h).astype(np.int64), sh - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * sw / w).astype(np.int64), sw - 1)
    return class_map[rows[:, None], cols[None, :]]


def _b_to_a(labels_a: tuple[str, ...], labels_b: tuple[str, ...]) -> np.ndarray:
    """(256,) int16: B's class id -> A's id of the same label name, -1 for a name A lacks (it
    agrees with nothing). Identity when both have the same labels."""
    if tuple(labels_a) == tuple(labels_b):
        return np.arange(256, dtype=np.int16)
    index_a: dict[str, int] = {}
    for i, name in enumerate(labels_a):
        index_a.setdefault(name, i)
    lut = np.full(256, -1, np.int16)
    for j, name in enumerate(labels_b[:256]):
        lut[j] = index_a.get(name, -1)
    return lut


_ALL_CODES = np.arange(256 * 256)


@lru_cache(maxsize=16)
def _differing_codes(labels_a: tuple[str, ...], labels_b: tuple[str, ...]) -> np.ndarray:
    """(65536,) bool: which (A class x 256 + B class) codes are a disagreement, for these label
    sets (the same every frame of a model pair: worked out once). Read-only."""
    differs = _b_to_a(labels_a, labels_b)[_ALL_CODES & 255] != (_ALL_CODES >> 8)
    differs.flags.writeable = False
    return differs


def compare_segmentation(a: Any, b: Any) -> Agreement:
    """Two ``SegmentationResult``s: the fraction of pixels (of A's class map) whose class is the
    same, the differing (A, B) class pairs and where they are."""
    map_a = np.asarray(a.class_map)
    map_b = np.asarray(b.class_map)
    if map_b.shape != map_a.shape:
        map_b = _resize_nearest(map_b, map_a.shape)
    n = map_a.size
    if n == 0:
        return Agreement(1.0, "pixels", "no pixels to compare", np.full(map_a.shape, -1, np.int32))
    # Each pixel's (A class, B class) pair as one code, A x 256 + B. Whether a pair agrees depends
    # on the code alone, so counting the codes (bincount: linear, no sort) gives every figure.
    codes = (map_a.astype(np.uint16) << 8) | map_b
    counts = np.bincount(codes.ravel(), minlength=256 * 256)
    differs = _differing_codes(tuple(a.labels), tuple(b.labels))
    present = np.flatnonzero(differs & (counts > 0))
    present = present[np.lexsort((present, -counts[present]))]  # most pixels first; ties by code
    rank = np.full(256 * 256, -1, np.int32)
    rank[present] = np.arange(len(present), dtype=np.int32)
    pair_map = rank[codes]
    pairs = tuple((int(c >> 8), int(c & 255), int(counts[c])) for c in present)
    n_differ = sum(p[2] for p in pairs)
    value = 1.0 - n_differ / n
    return Agreement(value, "pixels", f"{_percent(value)} of pixels agree", pair_map, pairs)


def _box_names(result: Any) -> np.ndarray:
    """The label name of each box (object array): boxes match across models by name."""
    return np.array([result.labels[int(c)] for c in result.classes], dtype=object)


def compare_boxes(a: Any, b: Any, iou: float = IOU_THRESHOLD) -> Agreement:
    """Two ``DetectionResult``s (or keypoints / instances results, compared by their boxes):
    F1 of a one-to-one matching of boxes of the same label name at IoU >= ``iou``."""
    na, nb = len(a.boxes), len(b.boxes)
    free_a, free_b = np.ones(na, bool), np.ones(nb, bool)
    matched = 0
    if na and nb:
        ious = box_iou(a.boxes, b.boxes)
        ok = (ious >= iou) & (_box_names(a)[:, None] == _box_names(b)[None, :])
        ia, ib = np.nonzero(ok)
        # highest IoU first; ties: A's order (its scores, best first), then B's
        for k in np.lexsort((ib, ia, -ious[ia, ib])):
            i, j = ia[k], ib[k]
            if free_a[i] and free_b[j]:
                free_a[i] = free_b[j] = False
                matched += 1
    only_a = np.flatnonzero(free_a).astype(np.int64)
    only_b = np.flatnonzero(free_b).astype(np.int64)
    if na + nb == 0:
        return Agreement(1.0, "boxes", "no boxes in either", only_a=only_a, only_b=only_b)
    value = 2.0 * matched / (na + nb)
    detail = f"F1 {value:.2f}: {matched} matched, {len(only_a)} only in A, {len(only_b)} only in B"
    return Agreement(value, "boxes", detail, only_a=only_a, only_b=only_b, matched=matched)


def compare_classification(a: Any, b: Any) -> Agreement:
    """Two ``ClassificationResult``s: 1 when their top-1 label names are equal, else 0."""
    la, lb = a.top1_label, b.top1_label
    if la == lb:
        return Agreement(1.0, "top1", f"same top-1: {la}")
    return Agreement(0.0, "top1", f"A: {la}, B: {lb}")


def class_name(labels: Any, c: int) -> str:
    """``labels[c]``, or "class c" past the labels."""
    return str(labels[c]) if 0 <= c < len(labels) else f"class {c}"


@dataclass
class Tally:
    """Where two models disagree, summed over frames: ``counts`` of "A road / B pavement"
    (pixels), "only A: car" / "only B: car" (boxes) or "A cat / B dog" (frames of top-1 labels),
    and ``total``, the pixels, boxes (of A and B) or frames compared, in ``unit``."""

    unit: str = ""
    total: int = 0
    counts: Counter = field(default_factory=Counter)

    def add(self, ag: Agreement, a: Any, b: Any) -> None:
        """One frame's ``Agreement`` of results ``a`` and ``b``."""
        if ag.kind == "pixels":
            self.unit = "pixels"
            self.total += int(ag.pair_map.size)
            for ca, cb, n in ag.pairs:
                self.counts[f"A {class_name(a.labels, ca)} / B {class_name(b.labels, cb)}"] += int(n)
        elif ag.kind == "boxes":
            self.unit = "boxes"
            self.total += len(a.boxes) + len(b.boxes)
            for side, result, idx in (("A", a, ag.only_a), ("B", b, ag.only_b)):
                for i in idx.tolist():  # the boxes only this side found, by their label name
                    self.counts[f"only {side}: {result.labels[int(result.classes[i])]}"] += 1
        elif ag.kind == "top1":
            self.unit = "frames"
            self.total += 1
            if ag.value < 1:
                self.counts[f"A {a.top1_label} / B {b.top1_label}"] += 1

    def merge(self, other: Tally) -> None:
        self.unit = self.unit or other.unit
        self.total += other.total
        self.counts.update(other.counts)

    def remove(self, other: Tally) -> None:
        """Take back a tally merged before (a frame compared again)."""
        self.total -= other.total
        self.counts.subtract(other.counts)
        self.counts = +self.counts  # drop what fell to zero

    def headline(self, top: int = 3) -> str:
        """'A moving / B other 2.1% of pixels, A bright / B other 0.4%' (the ``top`` largest);
        boxes: 'only A: car 8, only B: person 3 (of 240 boxes)'; "" when they never disagree."""
        items = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        if not items or not self.total:
            return ""
        if self.unit == "boxes":
            return ", ".join(f"{k} {n}" for k, n in items) + f" (of {self.total} boxes)"
        if self.unit == "frames":
            return ", ".join(f"{k} on {n} frame{'s' if n != 1 else ''}" for k, n in items) + \
                f" (of {self.total} frames)"
        parts = [f"{k} {_share(n, self.total)}" for k, n in items]
        parts[0] += f" of {self.unit}"
        return ", ".join(parts)


def _share(n: int, total: int) -> str:
    return _percent(n / total) if total else "0%"


def comparable_tasks() -> list[str]:
    """The registry's tasks that name a comparer."""
    from loupe.base import registry

    return [s.name for s in registry.all_specs() if s.comparer is not None]


def comparer_for(task_name: str) -> Callable[[Any, Any], Agreement] | None:
    """The comparer the registry names for ``task_name``; None for a task that has none (or
    that no installed plug-in provides)."""
    from loupe.base import registry

    spec = registry.find(task_name)
    return None if spec is None else spec.comparer_fn()
