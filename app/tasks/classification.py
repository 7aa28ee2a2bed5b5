"""Classification: one score per class for the whole frame -> probabilities and the top k (Qt-free).

The frame is fed as the card's ``loupe.input`` says (a classifier typically has ``fixed_size``
with ``center_crop: true``, the resize-then-centre-crop of classifier pipelines). The first output
is read as one score per class, shaped N x C, C, N x C x 1 x 1 or N x 1 x 1 x C (a pooled map,
channels first or last); anything else is refused when the model loads
(``loupe.inference.safety.check_classification``).

Card ``loupe.output`` keys:

- ``kind``: ``logits`` (default): raw class scores, turned into probabilities by a softmax here
  (computed as ``exp(x - max x) / sum``, so large scores do not overflow); ``probabilities``:
  scores already in [0, 1], used as given. They are not renormalised when they do not sum to 1:
  a multi-label model's independent sigmoid scores keep their own meaning, and the order, hence
  the top k, is the same either way. Values outside [0, 1] (beyond rounding) are refused with a
  message suggesting ``logits``.
- ``top_k``: how many of the best classes a result keeps, best first (default 5; fewer when the
  model has fewer classes).

``loupe.labels`` names the classes in output order (``class i`` when absent); ``loupe.palette``
colours them in the panel's strip (a default palette when absent). ``analyze`` writes ``top1``
(the label, not the index) and ``top1_score`` in CSV and JSONL, and in JSONL also ``topk``: a list
of ``{"label": ..., "class": index, "score": probability}``, best first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from loupe.inference.engine import Engine, ModelError
from loupe.inference.preprocess import Geometry, prepare
from loupe.inference.safety import CLASS_SHAPES, class_axis
from loupe.sources.base import Frame
from loupe.tasks.base import ClassesTask, output_choice

KINDS = ("logits", "probabilities")
DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class ClassificationResult:
    """probs: (C,) float32 class probabilities (the softmax of the logits, or as the model gave
    them); labels: the C class names; top: (k,) int32 class indices, best first."""

    probs: np.ndarray
    labels: tuple[str, ...]
    top: np.ndarray

    def __post_init__(self) -> None:
        if self.probs.dtype != np.float32 or self.probs.shape != (len(self.labels),):
            raise ValueError(f"probs must be float32 of shape ({len(self.labels)},), got "
                             f"{self.probs.dtype} {self.probs.shape}")
        if self.top.dtype != np.int32 or self.top.ndim != 1 or not 1 <= self.top.size <= len(self.labels):
            raise ValueError(f"top must be 1-d int32 with 1 to {len(self.labels)} indices, got "
                             f"{self.top.dtype} {self.top.shape}")

    @property
    def top1(self) -> int:
        return int(self.top[0])

    @property
    def top1_label(self) -> str:
        return self.labels[self.top1]

    @property
    def top1_score(self) -> float:
        return float(self.probs[self.top1])


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits, computed in float64 after subtracting the maximum (no overflow
    for large scores); ``-inf`` logits get probability 0, ``+inf`` ones share probability 1."""
    x = np.asarray(logits, np.float64)
    top = x.max()
    if np.isposinf(top):
        hit = np.isposinf(x)
        return (hit / hit.sum()).astype(np.float32)
    e = np.exp(x - top)
    return (e / e.sum()).astype(np.float32)


def class_vector(out: np.ndarray, model: str) -> np.ndarray:
    """One image's scores from an output shaped as ``CLASS_SHAPES`` says, as a (C,) array."""
    a = np.asarray(out)
    axis = class_axis(a.shape)
    if axis is None or a.size != a.shape[axis]:
        raise ModelError(f"{model}: expected one score per class ({CLASS_SHAPES}), got {out.shape}")
    return a.reshape(-1)


def top_indices(probs: np.ndarray, k: int) -> np.ndarray:
    """The k best class indices, best first; equal scores in class order."""
    order = np.argsort(-probs, kind="stable")
    return order[: max(1, min(k, probs.size))].astype(np.int32)


def to_probabilities(scores: np.ndarray, kind: str, model: str) -> np.ndarray:
    """(C,) probabilities from one image's scores as the card's ``kind`` says."""
    if np.isnan(scores).any():
        raise ModelError(f"{model}: the model output NaN scores")
    if kind == "logits":
        return softmax(scores)
    lo, hi = float(scores.min()), float(scores.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ModelError(f"{model}: the card says kind \"probabilities\" but the scores run from {lo:.3g} to "
                         f"{hi:.3g}, outside [0, 1] (logits? then say kind \"logits\")")
    return np.clip(scores, 0.0, 1.0).astype(np.float32)


class ClassificationTask(ClassesTask):
    name = "classification"
    history = 0  # each frame on its own

    def __init__(self, engine: Engine, display_max_side: int | None = 1280) -> None:
        super().__init__(engine, display_max_side)
        out = self.card.output
        self.kind = output_choice(str(out.get("kind") or "logits"), "kind", KINDS, self.model_name)
        self.top_k = int(out.get("top_k") or DEFAULT_TOP_K)
        shape = tuple(engine.outputs[0].shape) if engine.outputs else ()
        axis = class_axis(shape)
        n = shape[axis] if axis is not None and isinstance(shape[axis], int) else None
        labels = self.card.labels
        if n is not None and labels and len(labels) != n:
            raise ModelError(f"{engine.path.name}: the card names {len(labels)} classes but the model outputs "
                             f"{n} scores")
        self.labels: tuple[str, ...] = labels or tuple(f"class {i}" for i in range(n or 0))
        self.palette = self.card_palette(len(self.labels))

    def _ensure_labels(self, c: int) -> None:
        if not self.labels:  # dynamic output size: learn the class count from the first frame
            self.labels = tuple(f"class {i}" for i in range(c))
            self.palette = self.card_palette(c)
        elif len(self.labels) != c:
            raise ModelError(f"{self.model_name}: the model output {c} scores but the card names "
                             f"{len(self.labels)} classes")

    def prepare(self, frame: Frame) -> tuple[dict[str, np.ndarray], Geometry]:
        x, geo = prepare(frame, self.card.input)
        return {self.input_name: x}, geo

    def postprocess(self, outputs: list[np.ndarray], ctx: Any = None) -> ClassificationResult:
        scores = class_vector(outputs[0], self.model_name)
        self._ensure_labels(scores.size)
        probs = to_probabilities(scores, self.kind, self.model_name)
        return ClassificationResult(probs, self.labels, top_indices(probs, self.top_k))

    def columns(self) -> list[str]:
        return ["top1", "top1_score"]

    def row(self, result: ClassificationResult) -> dict[str, Any]:
        """``top1`` (label), ``top1_score``; ``topk`` (JSONL only: not a CSV column)."""
        return {
            "top1": result.top1_label,
            "top1_score": round(result.top1_score, 6),
            "topk": [{"label": result.labels[int(k)], "class": int(k), "score": round(float(result.probs[k]), 6)}
                     for k in result.top],
        }
