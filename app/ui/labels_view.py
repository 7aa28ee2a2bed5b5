"""Ground truth in the window: File ▸ Open labels… (or a label file or folder dropped on the window
while a source is open), the labels drawn over the frame with the model's errors coloured, a
per-frame score plot, the worst frames and the pooled figures of what has been played so far.

It follows the first loaded model whose task has a scorer (``TaskSpec.scorer``). Each shown result
(the window's ``frameShown``) is scored here, on the UI thread: a label lookup, one
``Scorer.score`` and the error image: at 640x272 (bikes.mp4, the demo segmentation model) about
7 ms to score and 15-20 ms with the drawing, median, on a busy 2-core machine; ``cost_ms`` and
``score_ms`` hold the last frame's. The plot, the worst list and the pooled figures are redrawn
at most five times a second while playing, at once when stepping. A frame scored before (played again, or stepped back to) is scored by a fresh
scorer, so the pooled figures count each frame once. The widgets and overlay items are in
``loupe.ui.panels.ground_truth``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog

from loupe.base import registry
from loupe.tasks.scoring import FrameScores, model_labels
from loupe.ui.panels.frame_scores import bottom_dock
from loupe.ui.panels.ground_truth import (
    GroundTruthWidget,
    LabelBoxesItem,
    error_rgba,
    match_boxes,
    outline_rgba,
)
from loupe.ui.settings import last_dir

logger = logging.getLogger(__name__)

MASK_COLOUR_TYPES = (0, 3)  # PNG colour types read as class indices: greyscale, palette


def looks_like_labels(path: str | Path) -> bool:
    """A COCO JSON (``images``/``annotations``/``categories`` near its start), or a folder of YOLO
    ``.txt`` files or of single-channel PNGs (mask PNGs; colour PNGs are an image folder), or a
    folder whose sub-folders are (one per input)."""
    p = Path(path)
    if p.is_file():
        if p.suffix.lower() != ".json":
            return False
        try:
            with open(p, encoding="utf-8", errors="replace") as f:
                head = f.read(1 << 20)
        except OSError:
            return False
        return '"annotations"' in head or ('"images"' in head and '"categories"' in head)
    if not p.is_dir():
        return False
    if _label_folder(p):
        return True
    subs = [d for d in sorted(p.iterdir())[:50] if d.is_dir()]
    return bool(subs) and any(_label_folder(d) for d in subs)


def _label_folder(p: Path) -> bool:
    files = [f for f in sorted(p.iterdir())[:200] if f.is_file()]
    if any(f.suffix.lower() == ".txt" and f.name != "classes.txt" for f in files):
        return True
    pngs = [f for f in files if f.suffix.lower() == ".png"]
    if not pngs:
        return False
    return all(png_is_single_channel(f) for f in pngs[:50])  # one colour image: a folder of images


def png_is_single_channel(path: Path) -> bool:
    """True for a greyscale or palette PNG (class indices, not colours), from its IHDR header
    alone: no decoder, so a hostile file (a 60000 x 60000 "bomb", a truncated one) is only 26
    bytes read, and nothing outside Loupe's dependencies is needed."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return False
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return False
    return head[25] in MASK_COLOUR_TYPES


class GroundTruth:
    """The window's ground-truth state: the open labels, the scorer, the scores so far."""

    def __init__(self, win, file_menu) -> None:
        self.win = win
        self.labels = None  # loupe.sources.labels.LabelSet
        self.path = ""
        self.model = None  # the LoadedModel followed
        self.pool: FrameScores | None = None  # its scores, each frame counted once
        self.class_map: np.ndarray | None = None
        self._truth: tuple[tuple, Any] | None = None  # the last frame's labels, read once per frame
        self.cost_ms = 0.0  # the last frame's label lookup, scoring and drawing
        self.score_ms = 0.0  # ... its label lookup and scoring alone
        self._unknown_told = False  # class names the model lacks: said once per labels
        self._error_told = False  # a frame that could not be scored: said once per labels
        self.widget = GroundTruthWidget()
        self.widget.seekRequested.connect(win.seek_to)
        self.widget.overlayToggled.connect(self._set_overlay_visible)
        self.widget.focusChanged.connect(lambda: self._set_overlay_visible(self.widget.show_box.isChecked()))
        self.dock, self._refresh = bottom_dock(win, "Ground truth", "ground-truth", self.widget,
                                               self.refresh)  # hidden until labels are opened
        self.errors = pg.ImageItem(axisOrder="row-major")
        self.outline = pg.ImageItem(axisOrder="row-major")
        self.boxes = LabelBoxesItem()
        for z, item in ((40, self.errors), (41, self.outline), (42, self.boxes)):
            item.setZValue(z)
            item.hide()
            win.view.vb.addItem(item)
        self.action = QAction("Open &labels…", win)
        self.action.setToolTip("Ground truth for the open source: a COCO JSON, a folder of YOLO .txt or of mask PNGs")
        self.action.triggered.connect(self.open_dialog)
        file_menu.addAction(self.action)
        win.frameShown.connect(self.on_frame)
        win.sourceOpened.connect(lambda _name: self.reset())

    @property
    def scorer(self):
        return None if self.pool is None else self.pool.scorer

    @property
    def scores(self) -> dict[int, float | None]:
        return {} if self.pool is None else self.pool.scores

    @property
    def rows(self) -> dict[int, dict[str, Any]]:
        return {} if self.pool is None else self.pool.rows

    def frame_labels(self, frame):
        """The open labels of ``frame`` (None: unlabelled, or no labels open), read from their
        file once per frame shown however many views score it (this dock, the Compare view)."""
        if self.labels is None:
            return None
        h, w = frame.pixels.shape[:2]
        path = frame.metadata.get("path")
        key = (id(self.labels), frame.index, Path(path).stem if path else None, (h, w))
        if self._truth is None or self._truth[0] != key:
            self._truth = (key, self.labels.get(frame.index, key[2], (h, w)))
        return self._truth[1]

    # --- opening ---------------------------------------------------------------------------
    def take_dropped(self, paths: list[str]) -> list[str]:
        """Open the label files and folders among dropped ``paths`` as labels (only while a source
        is open: before, a folder of PNGs is a source); the rest, for the window to open."""
        if not self.win.source_spec:
            return paths
        labels = [p for p in paths if looks_like_labels(p)]
        if labels:
            self.open(labels[-1])
        return [p for p in paths if p not in labels]

    def open_dialog(self) -> None:
        start = str(Path(self.path).parent) if self.path else last_dir(self.win.settings)
        path, _ = QFileDialog.getOpenFileName(self.win, "Open labels (a COCO JSON; Cancel for a folder)", start,
                                              "COCO JSON (*.json);;All files (*)")
        if not path:
            path = QFileDialog.getExistingDirectory(self.win, "Open a labels folder (YOLO .txt or mask PNGs)", start)
        if path:
            self.open(path)

    def open(self, path: str) -> bool:
        """Open the labels at ``path`` for the open source; a failure goes to the banner."""
        try:
            from loupe.sources.labels import open_labels

            labels = open_labels(path, self.win.source_spec or None)
        except Exception as e:  # a LabelError says what is wrong; anything else is still not a crash
            self.win.show_error(f"Cannot open the labels {Path(path).name}: {e}")
            return False
        self.labels, self.path = labels, str(path)
        self._unknown_told = self._error_told = False
        self.reset()
        self.dock.show()
        self.widget.title.setText(f"<b>Ground truth</b>: {Path(path).name}")
        self.widget.title.setToolTip(str(path))
        self.win.rerun_frame()  # paused: score the frame on screen now
        return True

    def reset(self) -> None:
        """Forget the scores (a new source, new labels or another model)."""
        self._refresh.stop()
        self.pool = None
        self.model = None
        self.class_map = None
        self._truth = None
        self.widget.show_scores({})
        self.widget.pooled.setText("")
        self.widget.frame_text.setText("")
        self._clear_items()

    def refresh(self) -> None:
        """The plot, the worst frames and the pooled figures, up to date."""
        self._refresh.stop()
        self.widget.show_scores(self.scores)
        if self.scorer is not None:
            self.widget.pooled.setText(_pooled_text(self.scorer.summary(), len(self.scores)))

    def _clear_items(self) -> None:
        for item in (self.errors, self.outline, self.boxes):
            item.hide()

    def _set_overlay_visible(self, on: bool) -> None:
        if not on:
            self._clear_items()
        elif self.win.last_result is not None:
            self.on_frame(self.win.last_result)

    # --- scoring each shown result ------------------------------------------------------------
    def _followed(self) -> tuple[int, Any, type] | None:
        """(index, LoadedModel, Scorer class) of the first model whose task has a scorer."""
        for i, lm in enumerate(self.win.models):
            spec = lm.spec
            ref = getattr(spec, "scorer", None) if spec is not None else None
            if ref is not None:
                try:
                    return i, lm, registry.resolve(ref)
                except Exception as e:  # a plug-in's scorer that cannot be imported
                    if not self._error_told:
                        self._error_told = True
                        self.win.show_error(f"Cannot load the scorer of {lm.name} ({ref}): {e}")
        return None

    def on_frame(self, fr) -> None:
        if self.labels is None:
            return
        found = self._followed()
        if found is None:
            self.widget.frame_text.setText("No loaded model's task can be scored "
                                           "(segmentation, detection, classification do).")
            self._clear_items()
            return
        i, lm, scorer_cls = found
        if lm is not self.model:
            self.reset()
            self.model, self.pool = lm, FrameScores(scorer_cls(lm.task))
            res = fr.results[i].result
            self.widget.set_classes(tuple(getattr(res, "labels", ()) or ()), _kind(res))
            self.widget.title.setText(f"<b>Ground truth</b>: {Path(self.path).name} — scoring {lm.name}")
        result, frame = fr.results[i].result, fr.frame
        t0 = time.perf_counter()
        try:
            self._score(lm, result, frame)
        except Exception as e:  # a label that does not fit its frame or model: say so (once), keep playing
            logger.warning("scoring frame %d: %s", frame.index, e)
            if not self._error_told:
                self._error_told = True
                self.win.show_error(f"Cannot score frame {frame.index + 1} against {Path(self.path).name}: {e}")
            self.widget.frame_text.setText(f"frame {frame.index + 1}: not scored ({e})")
            self._clear_items()
        self.cost_ms = (time.perf_counter() - t0) * 1e3
        self.widget.cursor.setValue(frame.index)

    def _score(self, lm, result, frame) -> None:
        t0 = time.perf_counter()
        h, w = frame.pixels.shape[:2]
        truth = self.frame_labels(frame)
        if truth is None:
            self._clear_items()
            self.widget.frame_text.setText(f"frame {frame.index + 1}: no label (unlabelled, not scored)")
            return
        names = model_labels(result, lm.task)
        if self.class_map is None:
            self.class_map = self.labels.class_map(names)
            unknown = self.labels.unknown_names(names)
            if unknown and not self._unknown_told:
                self._unknown_told = True
                self.win.show_error(f"The labels name classes {lm.name} does not have (not scored): "
                                    + ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else ""), "info")
        cmap = self.class_map
        self.pool.score(frame.index, result, truth, cmap)  # a frame seen before is pooled once
        s = self.pool.scores[frame.index]
        self.score_ms = (time.perf_counter() - t0) * 1e3
        if self.widget.show_box.isChecked():
            self._draw(result, truth, cmap, (h, w))
        playing = self.win.player is not None and self.win.player.playing
        if not playing:  # stepping, seeking: now
            self.refresh()
        elif not self._refresh.isActive():  # playing: the plot, list and figures a few times a second
            self._refresh.start()
        score = "—" if s is None else f"{s:.3f}"
        extra = f" · {truth.note}" if truth.note else ""
        self.widget.frame_text.setText(f"frame {frame.index + 1}: score {score}{extra}")

    def _draw(self, result, truth, cmap: np.ndarray, hw: tuple[int, int]) -> None:
        kind = _kind(result)
        self._clear_items()
        if kind == "segmentation" and truth.mask is not None:
            pred = result.class_map
            gt = _mapped_mask(truth.mask, cmap)
            if gt.shape != pred.shape:  # results at display resolution: compare there
                import cv2

                gt = cv2.resize(gt, (pred.shape[1], pred.shape[0]), interpolation=cv2.INTER_NEAREST)
            bg = _background(result.labels)
            palette = getattr(self.model.task, "palette", None)
            palette = np.asarray(palette if palette is not None else np.full((len(result.labels), 3), 255), np.uint8)
            rect = pg.QtCore.QRectF(0, 0, hw[1], hw[0])
            self.errors.setImage(error_rgba(pred, gt, bg, self.widget.focus.currentData()), autoLevels=False, levels=(0, 255))
            self.errors.setRect(rect)
            self.outline.setImage(outline_rgba(gt, palette, bg), autoLevels=False, levels=(0, 255))
            self.outline.setRect(rect)
            self.errors.show()
            self.outline.show()
        elif kind == "detection":
            gt_cls = _mapped_classes(truth.classes, cmap)
            pm, gm = match_boxes(result.boxes, result.scores, result.classes, truth.boxes, gt_cls)
            self.boxes.set_boxes(hw, result.boxes, pm, truth.boxes, gm)
            self.boxes.show()


def _kind(result) -> str:
    if hasattr(result, "class_map"):
        return "segmentation"
    if hasattr(result, "boxes") and hasattr(result, "scores"):
        return "detection"
    return "classification"


def _background(labels) -> int | None:
    names = [str(n).lower() for n in labels]
    return names.index("background") if "background" in names else None


def _mapped_mask(mask: np.ndarray, cmap: np.ndarray) -> np.ndarray:
    """A label mask in label class ids -> model class ids as int32 (-1: ignored or not in the model)."""
    lut = np.full(256, -1, np.int32)
    n = min(len(cmap), 255)
    lut[:n] = np.asarray(cmap[:n], np.int32)
    return lut[mask.astype(np.uint8)]


def _mapped_classes(classes: np.ndarray, cmap: np.ndarray) -> np.ndarray:
    c = np.asarray(classes, np.int64)
    ok = (c >= 0) & (c < len(cmap))
    out = np.full(len(c), -1, np.int64)
    out[ok] = np.asarray(cmap, np.int64)[c[ok]]
    return out


def _pooled_text(summary: dict[str, Any], frames: int) -> str:
    from loupe.ui.panels.ground_truth import figure_text

    return f"pooled over {frames} frame{'s' if frames != 1 else ''}\n" + figure_text(summary)


def install(win, file_menu) -> GroundTruth:
    """File ▸ Open labels…, the dropped-labels hook and the Ground truth dock; ``win.ground_truth``."""
    gt = GroundTruth(win, file_menu)
    win.ground_truth = gt
    return gt


__all__ = ["GroundTruth", "install", "looks_like_labels"]
