"""The "Ground truth" dock's widgets and the items drawn over the frame when labels are open.

``GroundTruthWidget``: a per-frame score plot over frame indices (a click seeks the player there),
the worst frames scored so far (a click seeks), the pooled figures of what has been played
(``Scorer.summary``) and the scores of the frame on screen. ``error_rgba`` colours a segmentation's
wrong pixels; ``LabelBoxesItem`` draws detection boxes against their labels in one ``paint``:
matched predictions green, false positives red, missed labels dashed orange. ``outline_rgba`` is a
label mask's class boundaries in the class colours.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import (
    QComboBox,
)

from loupe.ui.panels.frame_scores import FrameScoresWidget
from loupe.ui.panels.screen_px import ScreenPx

FP_RGBA = (255, 40, 40, 170)  # predicted where the label says background
FN_RGBA = (40, 140, 255, 170)  # labelled, predicted background
SWAP_RGBA = (255, 0, 255, 170)  # labelled as one class, predicted as another


def error_rgba(pred: np.ndarray, truth: np.ndarray, background: int | None, focus: int | None = None) -> np.ndarray:
    """(H, W, 4) uint8, transparent where right or where ``truth`` is negative (ignored or a class
    the model lacks); both maps in model class ids. With ``focus`` (a class): its false positives
    red, its false negatives blue. Without: false positives red (``truth`` is background), false
    negatives blue (``pred`` is background), other wrong classes magenta."""
    lut = np.array([(0, 0, 0, 0), FP_RGBA, FN_RGBA, SWAP_RGBA], np.uint8)
    pred = pred.astype(np.int32)
    wrong = (pred != truth) & (truth >= 0)
    code = np.zeros(pred.shape, np.uint8)  # 0 right, 1 false positive, 2 false negative, 3 wrong class
    if focus is not None:
        code[wrong & (pred == focus)] = 1
        code[wrong & (truth == focus)] = 2
    elif background is None:
        code[wrong] = 3
    else:
        code[wrong] = 3
        code[wrong & (pred == background)] = 2
        code[wrong & (truth == background)] = 1
    return lut[code]


def outline_rgba(truth: np.ndarray, palette: np.ndarray, background: int | None) -> np.ndarray:
    """(H, W, 4) uint8: the boundary pixels of each labelled (non-background) region in its class
    colour, opaque; transparent elsewhere. ``truth`` in model class ids (negative: none)."""
    t = truth.astype(np.int32)
    edge = np.zeros(t.shape, bool)
    dx = t[:, 1:] != t[:, :-1]
    dy = t[1:, :] != t[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    edge &= t >= 0
    if background is not None:
        edge &= t != background
    n = max(len(palette), int(t.max(initial=0)) + 1)
    lut = np.zeros((n + 1, 4), np.uint8)  # row 0: no edge; row c + 1: class c
    lut[1:, 3] = 255
    lut[1 : len(palette) + 1, :3] = palette
    return lut[np.where(edge, t + 1, 0)]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of x1, y1, x2, y2 boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)
    a, b = a.astype(np.float64), b.astype(np.float64)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def match_boxes(boxes, scores, classes, gt_boxes, gt_classes, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Greedy by score, same class, IoU >= ``iou``: (matched per prediction, matched per label),
    boolean arrays. ``gt_classes`` negative (a class the model lacks) never match."""
    pm = np.zeros(len(boxes), bool)
    gm = np.zeros(len(gt_boxes), bool)
    ious = box_iou(np.asarray(boxes).reshape(-1, 4), np.asarray(gt_boxes).reshape(-1, 4))
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        cand = (~gm) & (np.asarray(gt_classes) == classes[i]) & (ious[i] >= iou)
        if cand.any():
            j = int(np.argmax(np.where(cand, ious[i], -1.0)))
            gm[j] = pm[i] = True
    return pm, gm


class LabelBoxesItem(ScreenPx, pg.GraphicsObject):
    """Predicted boxes against labelled ones: matched green, false positives red, missed labels
    dashed orange; cosmetic pens (screen pixels at any zoom). Frame pixel coordinates."""

    MATCHED, FALSE, MISSED = QColor(40, 200, 60), QColor(235, 40, 40), QColor(255, 150, 0)

    def __init__(self) -> None:
        super().__init__()
        self._rect = QRectF(0, 0, 1, 1)
        self.pred = np.zeros((0, 4), np.float32)
        self.pred_ok = np.zeros(0, bool)
        self.gt = np.zeros((0, 4), np.float32)
        self.gt_ok = np.zeros(0, bool)
        self.show_labels = True

    def set_boxes(self, frame_hw, pred, pred_ok, gt, gt_ok) -> None:
        self.prepareGeometryChange()
        self._rect = QRectF(0, 0, float(frame_hw[1]), float(frame_hw[0]))
        self.pred, self.pred_ok = np.asarray(pred, np.float32).reshape(-1, 4), np.asarray(pred_ok, bool)
        self.gt, self.gt_ok = np.asarray(gt, np.float32).reshape(-1, 4), np.asarray(gt_ok, bool)
        self.update()

    def clear(self) -> None:
        self.set_boxes((1, 1), np.zeros((0, 4)), np.zeros(0, bool), np.zeros((0, 4)), np.zeros(0, bool))

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, p, *args) -> None:
        p.setBrush(Qt.BrushStyle.NoBrush)
        if self.show_labels:  # labels first: the predictions are drawn over them
            self.draw_boxes(p, self.gt[self.gt_ok], self.pen(self.MATCHED, 2, Qt.PenStyle.DotLine))
            self.draw_boxes(p, self.gt[~self.gt_ok], self.pen(self.MISSED, 2, Qt.PenStyle.DashLine))
        for ok, colour in ((True, self.MATCHED), (False, self.FALSE)):
            self.draw_boxes(p, self.pred[self.pred_ok == ok], self.pen(colour, 2))

    @staticmethod
    def draw_boxes(p, boxes: np.ndarray, pen: QPen) -> None:
        """Each x1 y1 x2 y2 row of ``boxes`` as a rectangle, with ``pen``."""
        p.setPen(pen)
        for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4).tolist():
            p.drawRect(QRectF(x1, y1, x2 - x1, y2 - y1))


def dot(rgb, text: str) -> str:
    """Rich text: a square in colour ``rgb``, then ``text`` (a legend entry)."""
    return f"<span style='color: rgb({rgb[0]},{rgb[1]},{rgb[2]})'>■</span> {text}"


def figure_text(summary: dict[str, Any], limit: int = 14) -> str:
    """The pooled figures as lines ``name  value``: numbers only (a confusion matrix is left to
    ``loupe analyze --summary``), the headline figures first."""
    lines = []
    head = ("miou", "map50", "map50_95", "accuracy")
    keys = [k for k in head if k in summary] + [k for k in summary if k not in head]
    for k in keys:
        v = summary[k]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating))):
            continue
        if k == "frames":  # said in the heading
            continue
        if isinstance(v, (int, np.integer)):  # counts
            lines.append(f"{k}  {v}")
            continue
        lines.append(f"{k}  {'—' if v is None or v != v else f'{float(v):.3f}'}")  # None: none of it yet
        if len(lines) >= limit:
            break
    return "\n".join(lines)


class GroundTruthWidget(FrameScoresWidget):
    """Plot | worst frames | pooled figures, side by side (the dock sits under the view)."""

    _kind = ""
    focusChanged = Signal()

    def __init__(self) -> None:
        super().__init__("<b>Ground truth</b>: no labels open (File ▸ Open labels…, or drop them on the window)",
                         "score", "score of each labelled frame played (click: show that frame)",
                         "Worst frames", "lowest scores so far (click: show that frame)",
                         "Labels and errors over the frame")
        self.curve = self.plot.plot([], [], pen=pg.mkPen((60, 90, 200), width=1.5),
                                    symbol="o", symbolSize=4, symbolBrush=(60, 90, 200), symbolPen=None)
        self.show_box = self.overlay_box
        self.focus = QComboBox()
        self.focus.setToolTip("segmentation: the errors of every class, or of one (its false positives red, "
                              "its false negatives blue)")
        self.focus.addItem("errors of every class", None)
        self.focus.currentIndexChanged.connect(lambda _i: (self.set_legend(self._kind), self.focusChanged.emit()))
        self.right.addWidget(self.focus)
        self.add_figures()

    def show_scores(self, scores: dict[int, float | None]) -> None:
        """The plot and the worst list from ``{frame index: score}`` (None: not scorable)."""
        self.show_values(self.curve, scores)

    def set_classes(self, labels, kind: str) -> None:
        """The class choices of the errors (segmentation only)."""
        self.focus.blockSignals(True)
        self.focus.clear()
        self.focus.addItem("errors of every class", None)
        for i, name in enumerate(labels):
            self.focus.addItem(f"errors of {name}", i)
        self.focus.blockSignals(False)
        self.focus.setVisible(kind == "segmentation")
        self.set_legend(kind)

    def set_legend(self, kind: str) -> None:
        self._kind = kind
        focus = self.focus.currentIndex()
        if kind == "segmentation" and focus > 0:
            name = self.focus.currentText().removeprefix("errors of ")
            parts = [dot(FP_RGBA, f"{name} predicted, not labelled"), dot(FN_RGBA, f"{name} labelled, missed"),
                     "outline: the label"]
        elif kind == "segmentation":
            parts = [dot(FP_RGBA, "false positive"), dot(FN_RGBA, "false negative (missed)"),
                     dot(SWAP_RGBA, "wrong class"), "outline: the label"]
        elif kind == "detection":
            c = LabelBoxesItem
            parts = [dot(c.MATCHED.getRgb(), "matched"), dot(c.FALSE.getRgb(), "false positive"),
                     dot(c.MISSED.getRgb(), "missed (dashed)"), "dotted: matched label"]
        else:
            parts = []
        self.legend.setText(" &nbsp; ".join(parts))
