"""Model ▸ Compare two models: two loaded models of the same task over the frame (model A left
of a draggable line, model B right of it; or side by side, the frame twice: Model ▸ Compare side
by side), where they disagree drawn over the frame, and a "Compare" dock: their agreement on each frame played (``loupe.tasks.agreement``),
the frames where they disagree most, and, with labels open (File ▸ Open labels…), each model's
score per frame, which one wins where and both models' pooled figures.

It compares the first two loaded models of one task that has a comparer
(``TaskSpec.comparer``), in the order they were loaded, unless the user picks the pair (or swaps
A and B) in the dock; that choice holds while both models stay loaded. Each shown result (the window's
``frameShown``) is compared here, on the UI thread, at the class map's resolution (display
resolution): comparing and drawing took 5.8 ms median, 12.5 ms p95 a frame (``cost_ms``) for
two demo segmenters on bikes.mp4 (640x272) on a busy 2-core machine. The plot, the list and the
figures are redrawn at most five times a second while playing, at once when stepping. A frame shown twice counts once (values are kept per frame
index; with labels, a frame scored before is scored again by a fresh scorer, so the pooled
figures count it once). The widgets and items are in ``loupe.ui.panels.compare``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from loupe.tasks.agreement import Tally, comparable_tasks
from loupe.tasks.scoring import FrameScores, model_labels, scorer_for
from loupe.ui.panels.compare import CompareWidget, Disagreement, Split
from loupe.ui.panels.frame_scores import bottom_dock
from loupe.ui.panels.ground_truth import figure_text

logger = logging.getLogger(__name__)

SPLIT_KEY = "compare/split"  # QSettings: the split line's place, a fraction of the frame's width
SIDE_KEY = "compare/side_by_side"  # QSettings: "true" for side by side, else the split


def needed() -> str:
    """What comparing needs, naming the tasks that can be compared (those with a comparer)."""
    return f"two loaded models of the same task, one that can be compared ({', '.join(comparable_tasks())})"


def find_pair(models, prefer: tuple[Any, Any] | None = None) -> tuple[Any, Any, Any, str] | None:
    """(model A, model B, comparer, task name): ``prefer`` (A, B) where both
    are still loaded and of one task with a comparer, else the first two loaded models of the first
    task, in load order, with two loaded models and a comparer; None when there is no such pair."""
    from loupe.tasks.agreement import comparer_for

    by_task: dict[str, list] = {}
    for lm in models:
        spec = lm.spec
        if spec is not None:
            by_task.setdefault(spec.name, []).append(lm)
    found = []
    for name, lms in by_task.items():
        if len(lms) < 2:
            continue
        try:
            comparer = comparer_for(name)
        except Exception as e:  # a plug-in's comparer that cannot be imported
            logger.warning("comparer of %s: %s", name, e)
            comparer = None
        if comparer is None:
            continue
        if prefer is not None and all(any(p is lm for lm in lms) for p in prefer) and prefer[0] is not prefer[1]:
            return prefer[0], prefer[1], comparer, name
        found.append((lms[0], lms[1], comparer, name))
    return found[0] if found else None


def same_task(models, task: str) -> list:
    """The loaded models of ``task``, in load order."""
    return [lm for lm in models if lm.spec is not None and lm.spec.name == task]


def panel_items(panel) -> list:
    """What a panel draws over the frame (``frame_items()`` where it has them, else its
    ``overlay``), those that are in the view now."""
    if panel is None:
        return []
    items_fn = getattr(panel, "frame_items", None)
    items = [it for it, _ in items_fn()] if callable(items_fn) else [getattr(panel, "overlay", None)]
    return [it for it in items if it is not None and it.parentItem() is not None]


class Compare:
    """The window's compare state: the pair, the split, the disagreement items, the values so far."""

    def __init__(self, win, action) -> None:
        self.win = win
        self.action = action
        self.on = False
        self.a = self.b = None  # the LoadedModels compared
        self.comparer = None
        self.task = ""
        self.values: dict[int, float] = {}
        self.tallies: dict[int, Tally] = {}  # each frame's disagreement (a frame shown twice counts once)
        self.tally = Tally()  # their sum
        self.pools: list[FrameScores | None] = [None, None]  # A's and B's scores, each frame pooled once
        self._class_maps: list[Any] = [None, None]
        self._labels = None  # the LabelSet the scores belong to
        self.last = None  # the last Agreement
        self.cost_ms = 0.0  # the last frame's comparison and drawing (scoring included)
        self._told = False  # a frame that could not be compared or scored: said once per pair
        self._note = ""  # "3 segmentation models loaded: comparing the first two"
        self.choice: tuple[Any, Any] | None = None  # the pair the user picked in the dock (A, B)
        self.widget = CompareWidget()
        self.widget.seekRequested.connect(win.seek_to)
        self.widget.pairChosen.connect(self.choose)
        self.widget.overlayToggled.connect(self._on_map_toggled)
        self.dock, self._refresh = bottom_dock(win, "Compare", "compare", self.widget, self.refresh)  # hidden until on
        vb = win.view.vb
        self.split = Split(vb, on_finished=self._save_split)
        self.disagreement = Disagreement(vb)
        self.twin_disagreement = Disagreement(vb)  # side by side: the same over the second copy
        self.map_item, self.boxes_item = self.disagreement.map_item, self.disagreement.boxes_item
        side = self.widget.side_box
        side.setChecked(str(win.settings.value(SIDE_KEY, "false")).lower() == "true")
        side.toggled.connect(self._on_side_toggled)
        win.frameShown.connect(self.on_frame)
        win.sourceOpened.connect(lambda _name: self._new_source())
        win.modelLoaded.connect(lambda _name: self._models_changed())
        win.modelRemoved.connect(lambda _name: self._models_changed())
        self._models_changed()

    # --- on and off ------------------------------------------------------------------------------
    def set_on(self, on: bool) -> bool:
        """Compare (the first comparable pair) or stop; False, with an info banner, when there is
        no pair to compare."""
        if not on:
            self.stop()
            return True
        found = find_pair(self.win.models, self.choice)
        if found is None:
            self._check(False)
            loaded = ", ".join(f"{lm.name} ({lm.spec.name if lm.spec else '?'})" for lm in self.win.models)
            self.win.show_error(f"Compare needs {needed()}; loaded: {loaded or 'none'}.", "info")
            return False
        self.start(found)
        return True

    def start(self, found: tuple[Any, Any, Any, str]) -> None:
        self.stop(keep_view=True)
        self.a, self.b, self.comparer, self.task = found
        self.on = True
        self._check(True)
        self._told = False
        models = same_task(self.win.models, self.task)
        first_two = len(models) >= 2 and models[0] is self.a and models[1] is self.b
        note = (f"{len(models)} {self.task} models loaded: comparing the first two (pick others above the "
                "figures)" if len(models) > 2 and first_two else "")
        self.widget.set_names(self.a.name, self.b.name, scored=False, note=note)
        self.widget.set_choices([lm.name for lm in models], index_of(models, self.a), index_of(models, self.b))
        self._note = note
        gt_dock = getattr(getattr(self.win, "ground_truth", None), "dock", None)
        if gt_dock is not None and gt_dock.isVisible() and self.dock not in self.win.tabifiedDockWidgets(gt_dock):
            self.win.tabifyDockWidget(gt_dock, self.dock)  # one row of docks under the view, not two
        self.dock.show()
        self.dock.raise_()
        if (self.win.view.twin is not None) != self.side_by_side:
            self.win.view.show_twin(self.side_by_side)
        fr = self.win.last_result
        if fr is not None:
            self.on_frame(fr)

    def stop(self, reason: str = "", keep_view: bool = False) -> None:
        """Leave compare: the models' items back where they were, the dock hidden, the view's second
        copy of the frame gone (``keep_view``: kept, for another pair at once)."""
        self._new_source()
        if self.win.view.twin is not None and not keep_view:
            self.win.view.show_twin(False)
        was = self.on
        self.on = False
        self.a = self.b = self.comparer = None
        self._check(False)
        if was:
            self.dock.hide()
        if was and reason:
            self.win.statusBar().showMessage(reason, 8000)

    def _check(self, on: bool) -> None:
        self.action.blockSignals(True)
        self.action.setChecked(on)
        self.action.blockSignals(False)

    def _models_changed(self) -> None:
        """A model was loaded or removed: the menu item, and the pair compared."""
        self.action.setEnabled(len(self.win.models) >= 2)
        if not self.on:
            return
        found = find_pair(self.win.models, self.choice)
        if found is None:
            self.stop(f"Compare off: it needs {needed()}.")
        elif (found[0] is not self.a or found[1] is not self.b
              or len(same_task(self.win.models, found[3])) != self.widget.combo_a.count()):
            self.start(found)  # another pair, or another model of the task to choose from

    def choose(self, a: int, b: int) -> None:
        """Compare the ``a``-th and ``b``-th loaded models of the task compared (the dock's
        choice; A and B swapped when they are the pair compared now the other way round)."""
        if not self.on:
            return
        models = same_task(self.win.models, self.task)
        if not (0 <= a < len(models) and 0 <= b < len(models)):
            return
        if a == b:  # one model against itself: keep the pair, say why
            self.widget.set_choices([lm.name for lm in models], index_of(models, self.a), index_of(models, self.b))
            self.win.statusBar().showMessage("Compare: choose two different models for A and B", 6000)
            return
        self.choice = (models[a], models[b])
        self.start((models[a], models[b], self.comparer, self.task))

    def _new_source(self) -> None:
        """A new source: the items back (the next frame clips them again), the values forgotten."""
        self._refresh.stop()
        self.split.release()
        self._hide_items()
        self._reset()

    def _reset(self) -> None:
        self.values.clear()
        self.tallies.clear()
        self.tally = Tally()
        self.widget.differ.setText("")
        self.pools = [None, None]
        self._class_maps = [None, None]
        self._labels = None
        self.last = None
        self.widget.show_series({})
        self.widget.legend.setText("")
        self.widget.pooled.setText("")
        self.widget.frame_text.setText("")

    def _hide_items(self) -> None:
        self.disagreement.hide()
        self.twin_disagreement.hide()

    @property
    def side_by_side(self) -> bool:
        return self.widget.side_box.isChecked()

    def _on_side_toggled(self, on: bool) -> None:
        """Side by side on or off: kept in the settings; while comparing, the view shows one or two
        copies of the frame and the items move."""
        self.win.settings.setValue(SIDE_KEY, "true" if on else "false")
        if not self.on:
            return
        self.split.release()
        self._hide_items()
        self.win.view.show_twin(on)
        if self.win.last_result is not None:
            self.on_frame(self.win.last_result)

    def _fraction(self) -> float:
        try:
            return min(max(float(self.win.settings.value(SPLIT_KEY, 0.5)), 0.0), 1.0)
        except (TypeError, ValueError):
            return 0.5

    def _save_split(self) -> None:
        self.win.settings.setValue(SPLIT_KEY, round(self.split.fraction(), 4))

    def _on_map_toggled(self, on: bool) -> None:
        if not on:
            self._hide_items()
            self.widget.legend.setText("")
        elif self.win.last_result is not None:
            self.on_frame(self.win.last_result)

    # --- each shown result ------------------------------------------------------------------------
    @property
    def pair(self) -> tuple[Any, Any, Any] | None:
        """(model A, model B, comparer) while comparing, else None."""
        return (self.a, self.b, self.comparer) if self.on and self.a is not None else None

    def indices(self) -> tuple[int, int] | None:
        """Where A and B are in the window's model list (None: one of them is gone)."""
        ia, ib = index_of(self.win.models, self.a), index_of(self.win.models, self.b)
        return None if -1 in (ia, ib) else (ia, ib)

    def on_frame(self, fr) -> None:
        if not self.on:
            return
        idx = self.indices()
        if idx is None:
            self._models_changed()
            return
        ia, ib = idx
        if len(fr.results) != len(self.win.models):  # a result of another model list
            return
        t0 = time.perf_counter()
        frame = fr.frame
        hw = (int(frame.pixels.shape[0]), int(frame.pixels.shape[1]))
        twin_x = self.win.view.twin_x() if self.side_by_side else 0.0
        if not self.split.engaged:
            panels = self.win.panels
            self.split.engage(panel_items(panels[ia]), panel_items(panels[ib]), (self.a.name, self.b.name),
                              hw, self._fraction(), twin_x)
        elif self.split.size != hw or self.split.twin_x != twin_x:
            self.split.fit(hw, self.split.fraction(), twin_x)
        ra, rb = fr.results[ia].result, fr.results[ib].result
        try:
            ag = self.comparer(ra, rb)
        except Exception as e:  # results the comparer cannot read: say so once, keep playing
            logger.warning("comparing frame %d: %s", frame.index, e)
            self._tell(f"Cannot compare {self.a.name} and {self.b.name} on frame {frame.index + 1}: {e}")
            return
        self.last = ag
        self.values[frame.index] = float(ag.value)
        old = self.tallies.get(frame.index)
        if old is not None:
            self.tally.remove(old)
        tally = self.tallies[frame.index] = Tally()
        tally.add(ag, ra, rb)
        self.tally.merge(tally)
        if self.widget.map_box.isChecked():
            self._draw(ag, ra, rb, hw)
        scored = self._score(fr, ia, ib)
        text = f"frame {frame.index + 1}: agreement {ag.value:.3f}" + (f" · {ag.detail}" if ag.detail else "")
        for k, name in enumerate("AB"):
            s = self.scores[k].get(frame.index) if scored else None
            if s is not None:
                text += f" · {name} score {s:.3f}"
        self.widget.frame_text.setText(text)
        self.widget.cursor.setValue(frame.index)
        playing = self.win.player is not None and self.win.player.playing
        if not playing:
            self.refresh()
        elif not self._refresh.isActive():
            self._refresh.start()
        self.cost_ms = (time.perf_counter() - t0) * 1e3

    def _tell(self, text: str) -> None:
        if not self._told:
            self._told = True
            self.win.show_error(text, "info")

    def _draw(self, ag, ra, rb, hw: tuple[int, int]) -> None:
        names = (self.a.name, self.b.name)
        self.widget.legend.setText(self.disagreement.show(ag, ra, rb, hw, names))
        if self.side_by_side:
            self.twin_disagreement.move_to(self.win.view.twin_x())
            self.twin_disagreement.mirror(self.disagreement, hw)
        else:
            self.twin_disagreement.hide()

    # --- scoring against labels -------------------------------------------------------------------
    @property
    def scores(self) -> tuple[dict[int, float | None], dict[int, float | None]]:
        """A's and B's frame scores so far (frame index -> score)."""
        return tuple({} if p is None else p.scores for p in self.pools)

    @property
    def scorers(self) -> list[Any]:
        return [None if p is None else p.scorer for p in self.pools]

    def _score(self, fr, ia: int, ib: int) -> bool:
        """With labels open: score both models on this frame; False when nothing was scored."""
        gt = getattr(self.win, "ground_truth", None)
        labels = None if gt is None else gt.labels
        if labels is not self._labels:  # other labels (or none): the scores start again
            self._labels = labels
            self.pools, self._class_maps = [None, None], [None, None]
            self.widget.set_names(self.a.name, self.b.name, scored=labels is not None, note=self._note)
        if labels is None:
            return False
        frame = fr.frame
        try:
            truth = gt.frame_labels(frame)  # read once per frame, shared with the Ground truth dock
            if truth is None:
                return False
            for k, (lm, i) in enumerate(((self.a, ia), (self.b, ib))):
                result = fr.results[i].result
                if self.pools[k] is None:
                    scorer = scorer_for(lm.task)
                    if scorer is None:
                        continue
                    self.pools[k] = FrameScores(scorer)
                if self._class_maps[k] is None:
                    self._class_maps[k] = labels.class_map(model_labels(result, lm.task))
                self.pools[k].score(frame.index, result, truth, self._class_maps[k])
        except Exception as e:  # a label that does not fit its frame or model: say so (once), keep playing
            logger.warning("scoring frame %d for compare: %s", frame.index, e)
            self._tell(f"Cannot score frame {frame.index + 1} for the comparison: {e}")
            return False
        return True

    def refresh(self) -> None:
        """The plot, the list and the figures, up to date."""
        self._refresh.stop()
        scored = self._labels is not None
        self.widget.show_series(self.values, self.scores[0] if scored else None, self.scores[1] if scored else None)
        where = self.tally.headline()
        self.widget.differ.setText(f"differ most: {where}" if where else "")
        parts = []
        for name, lm, scorer, scores in zip("AB", (self.a, self.b), self.scorers, self.scores):
            if scorer is not None and lm is not None:
                n = len(scores)
                parts.append(f"{name} {lm.name}, {n} frame{'s' if n != 1 else ''}\n" + figure_text(scorer.summary(), 4))
        self.widget.pooled.setText("\n".join(parts))


def index_of(models: list, lm: Any) -> int:
    return next((i for i, m in enumerate(models) if m is lm), -1)


def install(win, menu, act) -> Compare:
    """Model ▸ Compare two models (``act(menu, text, slot, shortcut)`` makes an action) and the
    Compare dock; ``win.compare``."""
    a = act(menu, "&Compare two models", lambda checked=False: win.compare.set_on(bool(checked)), "Ctrl+Shift+C")
    a.setCheckable(True)
    a.setToolTip("Two loaded models of the same task side by side (drag the line), where they disagree, "
                 "and their agreement over time")
    win.compare = Compare(win, a)
    box = win.compare.widget.side_box
    side = act(menu, "Compare &side by side", lambda checked=False: box.setChecked(bool(checked)), "S")
    side.setCheckable(True)
    side.setChecked(box.isChecked())
    side.setToolTip("The frame twice, A's result on the left copy and B's on the right (off: the split)")
    box.toggled.connect(side.setChecked)
    win.compare.side_action = side
    return win.compare


__all__ = ["Compare", "find_pair", "install", "panel_items"]
