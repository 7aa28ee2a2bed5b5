"""Keypoints (pose) panel: the detection panel (boxes, thresholds, classes, counts, plot, box
details) plus every person's keypoints and skeleton, drawn by one item, and a keypoint score
threshold that changes the drawing only (the results, and ``analyze`` rows, keep every keypoint).

``KeypointsItem`` draws all keypoints and skeleton lines of all boxes in one ``paint``: lines in
the box's class colour (one cosmetic-pen call per class), dots in each keypoint's colour (one
call per keypoint index), both a fixed size on screen at any zoom. A keypoint scoring below the
threshold is not drawn, nor any skeleton line that touches it; a hidden class hides its people's
keypoints too.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QCheckBox, QFormLayout

from loupe.inference.engine import default_palette
from loupe.ui.panels.detection import DetectionPanel, _threshold_slider, connect_panel
from loupe.ui.panels.screen_px import ScreenPx

if TYPE_CHECKING:
    from loupe.tasks.keypoints import KeypointsResult

KEYPOINT_THRESHOLD_KEY = "keypoints/threshold"  # 0..1 (the drawing threshold the user last set)


class KeypointsItem(ScreenPx, pg.GraphicsObject):
    """Every keypoint and skeleton line of one result; ``boundingRect`` is the frame."""

    LINE_PX = 2  # skeleton line width, screen pixels
    DOT_PX = 6  # keypoint dot diameter, screen pixels

    def __init__(self, palette: np.ndarray, n_keypoints: int = 17) -> None:
        super().__init__()
        self._rect = QRectF(0, 0, 1, 1)
        self.threshold = 0.5
        self.show_skeleton = True
        self.keypoints = np.zeros((0, n_keypoints, 3), np.float32)
        self.classes = np.zeros(0, np.int64)
        self.skeleton: tuple[tuple[int, int], ...] = ()
        self.visible = np.ones(len(palette), bool)
        self.set_palette(palette)
        self.set_keypoint_colours(n_keypoints)

    def set_palette(self, palette: np.ndarray) -> None:
        """The class colours (the skeleton lines' colours); every class shown again."""
        self.palette = np.asarray(palette, np.uint8).reshape(-1, 3)
        self._class_colours = [QColor(*[int(v) for v in c]) for c in self.palette]
        self.visible = np.ones(len(self.palette), bool)
        self.update()

    def set_keypoint_colours(self, k: int) -> None:
        """One colour per keypoint index (the dots)."""
        self._kp_colours = [QColor(*[int(v) for v in c]) for c in default_palette(max(k, 1))]

    # --- data ----------------------------------------------------------------------------------
    def set_keypoints(self, keypoints: np.ndarray, classes: np.ndarray, skeleton, frame_hw: tuple[int, int]) -> None:
        """Show (N, K, 3) keypoints ``x, y, score`` (frame pixels of the frame on screen) of N
        boxes of ``classes``, joined by ``skeleton`` pairs, over a frame of ``frame_hw``."""
        h, w = frame_hw
        rect = QRectF(0, 0, float(w), float(h))
        if rect != self._rect:
            self.prepareGeometryChange()
            self._rect = rect
        kp = np.asarray(keypoints, np.float32)
        if kp.ndim != 3 or kp.shape[-1] != 3:
            raise ValueError(f"keypoints must be N x K x 3, got {kp.shape}")
        if kp.shape[1] != self.keypoints.shape[1]:
            self.set_keypoint_colours(kp.shape[1])
        self.keypoints = kp
        self.classes = np.asarray(classes, np.int64).reshape(-1)
        self.skeleton = tuple((int(i), int(j)) for i, j in skeleton)
        self.update()

    def set_threshold(self, value: float) -> None:
        self.threshold = float(value)
        self.update()

    def set_show_skeleton(self, on: bool) -> None:
        self.show_skeleton = bool(on)
        self.update()

    def set_visible_classes(self, visible: np.ndarray) -> None:
        self.visible = np.asarray(visible, bool).copy()
        self.update()

    def people(self) -> np.ndarray:
        """Which boxes' keypoints are drawn: those of shown classes."""
        c = self.classes
        keep = np.ones(len(c), bool)
        ok = (c >= 0) & (c < len(self.visible))
        keep[ok] = self.visible[c[ok]]
        return keep

    def drawn_points(self) -> np.ndarray:
        """(N, K) bool: the keypoints drawn (shown class, score at or above the threshold)."""
        if not len(self.keypoints):
            return np.zeros(self.keypoints.shape[:2], bool)
        return self.people()[:, None] & (self.keypoints[..., 2] >= self.threshold)

    def drawn_lines(self) -> list[tuple[int, int, int]]:
        """(box, i, j) of each skeleton line drawn: both its keypoints drawn."""
        if not self.show_skeleton or not self.skeleton:
            return []
        pts = self.drawn_points()
        k = pts.shape[1]
        pairs = [(i, j) for i, j in self.skeleton if i < k and j < k]
        return [(n, i, j) for n in range(len(pts)) for i, j in pairs if pts[n, i] and pts[n, j]]

    # --- drawing -------------------------------------------------------------------------------
    def boundingRect(self) -> QRectF:
        return QRectF(self._rect)

    def _pen(self, colour: QColor, px: float, round_cap: bool = False) -> QPen:
        return self.pen(colour, px, cap=Qt.PenCapStyle.RoundCap if round_cap else Qt.PenCapStyle.FlatCap)

    def paint(self, p: QPainter, *args) -> None:
        drawn = self.drawn_points()
        if not drawn.any():
            return
        p.setClipRect(self._rect)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        kp = self.keypoints
        lines = self.drawn_lines()
        if lines:
            by_class: dict[int, list[QLineF]] = {}
            for n, i, j in lines:
                a, b = kp[n, i], kp[n, j]
                by_class.setdefault(int(self.classes[n]), []).append(
                    QLineF(float(a[0]), float(a[1]), float(b[0]), float(b[1])))
            for c, segs in by_class.items():  # one pen per class, its lines in one call
                colour = self._class_colours[c % len(self._class_colours)] if self._class_colours else QColor(255, 0, 0)
                p.setPen(self._pen(colour, self.LINE_PX))
                p.drawLines(segs)
        # dots: a dark ring under each keypoint's colour, so they read on any frame
        n_idx, k_idx = np.nonzero(drawn)
        ring = [QPointF(float(kp[n, k, 0]), float(kp[n, k, 1])) for n, k in zip(n_idx.tolist(), k_idx.tolist())]
        p.setPen(self._pen(QColor(0, 0, 0, 200), self.DOT_PX + 2, round_cap=True))
        p.drawPoints(ring)
        for k in np.unique(k_idx).tolist():  # one pen per keypoint index
            sel = k_idx == k
            p.setPen(self._pen(self._kp_colours[k % len(self._kp_colours)], self.DOT_PX, round_cap=True))
            p.drawPoints([pt for pt, s in zip(ring, sel.tolist()) if s])


class KeypointsPanel(DetectionPanel):
    """The detection panel with a keypoints item and its controls."""

    keypointThresholdChanged = Signal(float)

    def __init__(self, labels: tuple[str, ...], palette: np.ndarray, title: str = "", *,
                 keypoint_names: tuple[str, ...] = (), skeleton=(), keypoint_threshold: float = 0.5,
                 **kw) -> None:
        super().__init__(labels, palette, title or "Keypoints", **kw)
        self.keypoint_names = tuple(keypoint_names)
        self.skeleton = tuple(skeleton)
        self.kp_item = KeypointsItem(self.palette, len(self.keypoint_names) or 17)
        self.kp_item.set_threshold(keypoint_threshold)
        form = QFormLayout()
        self.kp_slider, self.kp_value = _threshold_slider(keypoint_threshold)
        self.kp_slider.setToolTip("Keypoints scoring below this are not drawn, nor the skeleton lines that touch "
                                  "them (analyze rows keep every keypoint)")
        self.kp_slider.valueChanged.connect(self._on_kp_threshold)
        form.addRow("Min keypoint score", self._with_value(self.kp_slider, self.kp_value))
        self.skeleton_box = QCheckBox("Skeleton lines")
        self.skeleton_box.setChecked(True)
        self.skeleton_box.toggled.connect(self.kp_item.set_show_skeleton)
        self.skeleton_box.setEnabled(bool(self.skeleton))
        form.addRow(self.skeleton_box)
        lay = self.layout()
        lay.insertLayout(lay.indexOf(self.table), form)

    # --- the frame view ------------------------------------------------------------------------
    def frame_items(self) -> tuple[tuple[pg.GraphicsObject, bool], ...]:
        return (*super().frame_items(), (self.kp_item, False))

    def set_labels(self, labels: tuple[str, ...], palette: np.ndarray | None = None) -> None:
        super().set_labels(labels, palette)
        if hasattr(self, "kp_item"):
            self.kp_item.set_palette(self.palette)

    # --- view of a result ----------------------------------------------------------------------
    def show_result(self, result: KeypointsResult, frame_hw: tuple[int, int], index: int,
                    update_slow: bool = True) -> None:
        super().show_result(result, frame_hw, index, update_slow)
        kp = np.array(result.keypoints, np.float32).reshape(len(result.scores), -1, 3)
        sx, sy = self._scale
        if (sx, sy) != (1.0, 1.0):
            kp[..., 0] *= sx
            kp[..., 1] *= sy
        if tuple(result.keypoint_names) != self.keypoint_names or tuple(result.skeleton) != self.skeleton:
            self.keypoint_names, self.skeleton = tuple(result.keypoint_names), tuple(result.skeleton)
            self.skeleton_box.setEnabled(bool(self.skeleton))
        self.kp_item.set_keypoints(kp, result.classes, self.skeleton, frame_hw)

    def pick(self, x: float, y: float) -> int | None:
        """The box details, plus its keypoints at or above the threshold."""
        i = super().pick(x, y)
        if i is None or self.last is None:
            return i
        kp = np.asarray(self.last.keypoints[i])
        t = self.kp_item.threshold
        shown = [(self.keypoint_names[k] if k < len(self.keypoint_names) else f"keypoint {k}", kp[k])
                 for k in range(len(kp)) if kp[k, 2] >= t]
        listed = ", ".join(f"{html.escape(n)} ({v[0]:.0f}, {v[1]:.0f}) {v[2]:.2f}" for n, v in shown[:6])
        more = f", … ({len(shown) - 6} more)" if len(shown) > 6 else ""
        self.details.setText(self.details.text() + f"<br>{len(shown)} of {len(kp)} keypoints scoring "
                             f"{t:.2f} or more" + (f": {listed}{more}" if shown else ""))
        return i

    # --- controls ------------------------------------------------------------------------------
    def set_keypoint_threshold(self, value: float) -> None:
        self.kp_slider.setValue(round(100 * value))

    def _on_kp_threshold(self, v: int) -> None:
        self.kp_value.setText(f"{v / 100:.2f}")
        self.kp_item.set_threshold(v / 100.0)
        if self._picked_point is not None and self.last is not None:
            self.pick(*self._picked_point)
        self.keypointThresholdChanged.emit(v / 100.0)

    def _on_item(self, item) -> None:
        super()._on_item(item)
        if item.column() == 0:
            self.kp_item.set_visible_classes(self.visible)


def make_panel(model, host) -> KeypointsPanel:
    """The registry's panel factory: detection's wiring (``connect_panel``: thresholds and
    tracking go to the task, re-running a paused frame; settings kept) plus the keypoint
    threshold (drawing only: the task keeps it for ``fresh`` copies; no re-run)."""
    task = model.task
    panel = KeypointsPanel(task.labels, task.palette, title=model.engine.card.name or model.name,
                           keypoint_names=task.keypoint_names, skeleton=task.skeleton,
                           keypoint_threshold=task.keypoint_threshold, score_threshold=task.score_threshold,
                           iou_threshold=task.iou_threshold, needs_nms=task.needs_nms)
    connect_panel(panel, task, host)
    if task.format == "heatmaps":  # one person per frame, always: no score to threshold
        panel.score_slider.setEnabled(False)
        panel.score_slider.setToolTip("A heatmap model gives one person per frame")
    panel.keypointThresholdChanged.connect(task.set_keypoint_threshold)
    return panel


if __name__ == "__main__":  # a preview fed synthetic results
    from loupe.tasks.keypoints import COCO_KEYPOINTS, COCO_SKELETON, KeypointsResult
    from loupe.ui.panels.base import preview_app, preview_view, run_preview

    app = preview_app()
    names = ("person",)
    panel = KeypointsPanel(names, np.array([[220, 60, 60]]), "preview", keypoint_names=COCO_KEYPOINTS,
                           skeleton=COCO_SKELETON)
    view = preview_view(panel)
    # a standing figure: COCO's 17 points, relative to the box's top-left
    figure = np.array([[20, 8], [22, 6], [18, 6], [25, 7], [15, 7], [30, 20], [10, 20], [33, 35], [7, 35],
                       [34, 48], [6, 48], [26, 50], [14, 50], [27, 70], [13, 70], [28, 90], [12, 90]], np.float32)
    for i in range(20):
        kp = np.concatenate([figure + np.float32([40 + 3 * i, 10]), np.full((17, 1), 0.9, np.float32)], 1)[None]
        kp[0, 3, 2] = 0.2  # an ear below the threshold: not drawn
        res = KeypointsResult(boxes=np.array([[40 + 3 * i, 10, 80 + 3 * i, 100]], np.float32),
                              scores=np.array([0.9], np.float32), classes=np.zeros(1, np.int32), labels=names,
                              frame_hw=(120, 200), counts=np.array([1], np.int64), keypoints=kp,
                              keypoint_names=COCO_KEYPOINTS, skeleton=COCO_SKELETON)
        panel.show_result(res, (120, 200), i)
    panel.pick(60.0, 50.0)
    run_preview(app, panel, view)
