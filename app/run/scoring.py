"""``loupe analyze --labels``: each model's results scored against ground truth, frame by frame (Qt-free).

``LabelScoring`` opens the labels for each input as it starts (``loupe.sources.labels``; a COCO
file or a folder with one sub-folder or file per input stem covers several inputs), reads one
frame's labels when that frame is scored (a long video's labels are never all in memory), and
keeps one scorer per model (``loupe.tasks.scoring``). Image inputs (a folder of images expands to
one input per file) share the labels opened for their folder, matched by the image's stem.

A frame without labels is unlabelled: its score cells are empty and it adds nothing to the pooled
figures. Label class names the model lacks are reported once per labels and model (``warn``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from loupe.sources.labels import LabelSet, open_labels
from loupe.sources.open import classify_path
from loupe.tasks.scoring import Scorer, scorer_for

__all__ = ["LabelScoring"]


class LabelScoring:
    """Scores the rows of ``loupe analyze`` against the labels at ``path``.

    ``models``: the loaded models (``LoadedModel``); a model whose task has no scorer gets no
    score columns. ``warn(line)`` reports unknown class names and label notes (once each).
    """

    def __init__(self, path: str | Path, models: list[Any], warn: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.warn = warn or (lambda line: None)
        self.scorers: dict[str, Scorer] = {}
        self.unscored: list[str] = []
        for m in models:
            sc = scorer_for(m.task)
            if sc is None:
                self.unscored.append(f"{m.name} ({m.task.name})")
            else:
                self.scorers[m.name] = sc
        self._sets: dict[str, LabelSet] = {}
        self._maps: dict[tuple[int, str], np.ndarray] = {}
        self._said: set[str] = set()

    def columns(self) -> list[str]:
        """The score columns of every scored model, in model order (a union)."""
        cols: list[str] = []
        for sc in self.scorers.values():
            cols += [c for c in sc.columns() if c not in cols]
        return cols

    @staticmethod
    def _key(spec: str) -> tuple[str, bool]:
        """(the input the labels are opened for, whether frames are matched by an image stem)."""
        if classify_path(spec) == "image":
            return str(Path(spec).parent), True
        return spec, False

    def labels_for(self, spec: str) -> LabelSet:
        """The labels of input ``spec`` (opened once per input, or per image folder)."""
        key, _ = self._key(spec)
        ls = self._sets.get(key)
        if ls is None:
            ls = self._sets[key] = open_labels(self.path, key)
        return ls

    def class_map(self, ls: LabelSet, model: str) -> np.ndarray:
        """Label class id -> the model's class id; unknown names reported once."""
        k = (id(ls), model)
        cm = self._maps.get(k)
        if cm is None:
            labels = self.scorers[model].labels
            cm = self._maps[k] = ls.class_map(labels)
            unknown = ls.unknown_names(labels)
            if unknown:
                self._once(f"{self.path.name}: {model} has no class named {', '.join(map(repr, unknown))}; "
                           "those labels are not scored")
        return cm

    def _once(self, line: str) -> None:
        if line not in self._said:
            self._said.add(line)
            self.warn(line)

    def row(self, spec: str, model: Any, frame: Any, result: Any) -> dict[str, Any]:
        """The score cells of ``model``'s result on ``frame`` of input ``spec`` (empty cells for an
        unlabelled frame; nothing for a model that cannot be scored)."""
        sc = self.scorers.get(model.name)
        if sc is None:
            return {}
        ls = self.labels_for(spec)
        _, by_stem = self._key(spec)
        stem = Path(str(frame.metadata.get("path") or spec)).stem if by_stem else None
        labels = ls.get(frame.index, stem, (frame.height, int(frame.pixels.shape[1])))
        if labels is None:
            return sc.empty_row()
        if labels.note:
            self._once(f"{self.path.name}: {labels.note}")
        return sc.score(result, labels, self.class_map(ls, model.name))

    def frame_score(self, model: str, row: dict[str, Any]) -> float | None:
        sc = self.scorers.get(model)
        return None if sc is None else sc.frame_score(row)

    def headlines(self) -> list[str]:
        """One line per scored model: frames scored and its main pooled figures."""
        lines = []
        for name, sc in self.scorers.items():
            s = sc.summary()
            figs = ", ".join(f"{k} {s[k]:.4f}" for k in ("miou", "map50", "map50_95", "accuracy")
                             if isinstance(s.get(k), float))
            lines.append(f"{name}: {s['frames']} labelled frames scored" + (f": {figs}" if figs else ""))
        return lines

    def summary(self) -> dict[str, Any]:
        """The pooled figures: one model's at the top level; several models' under ``"models"``."""
        per = {name: sc.summary() for name, sc in self.scorers.items()}
        if len(per) == 1:
            return next(iter(per.values()))
        return {"models": per}
