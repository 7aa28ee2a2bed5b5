"""Landmarks panel: the points joined into the card's contours over the frame, a legend with each
contour's colour and area, point-size and line toggles, the point under the cursor.

Every contour of a frame is drawn by one graphics item (``ContoursItem``) in one ``paint``: the
lines with a cosmetic pen (their width is in screen pixels at any zoom), the points as round dots
of a chosen screen size. Colours are the card's palette (one per contour; the task falls back to
``default_palette``), which shows on greyscale DICOM frames as on colour images; points no contour
lists are drawn light grey.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from loupe.tasks.landmarks import Contour, LandmarksResult
from loupe.ui.panels.base import OverlayOnly, swatch, titled_layout
from loupe.ui.panels.screen_px import ScreenPx

LOOSE = QColor(220, 220, 220)  # points no contour lists
POINT_PX = 5  # default dot diameter, screen pixels
LINE_PX = 2  # contour line width, screen pixels
PICK_FRACTION = 0.03  # value_at names the nearest point within this share of the frame's longer side


class ContoursItem(ScreenPx, pg.GraphicsObject):
    """All contours and points of one result, in frame pixels."""

    def __init__(self, contours: tuple[Contour, ...], palette: np.ndarray) -> None:
        super().__init__()
        self.contours = tuple(contours)
        self._colours = [QColor(*[int(v) for v in c[:3]]) for c in np.asarray(palette).reshape(-1, 3)]
        self.visible = np.ones(len(self.contours), bool)
        self.point_px = POINT_PX
        self.show_lines = True
        self.points = np.zeros((0, 2), np.float32)
        self._polys: list[QPolygonF] = []
        self._dots: list[QPolygonF] = []
        self._loose = QPolygonF()
        self._rect = QRectF(0, 0, 1, 1)

    def colour(self, k: int) -> QColor:
        return self._colours[k] if 0 <= k < len(self._colours) else LOOSE

    def set_points(self, points: np.ndarray, frame_hw: tuple[int, int]) -> None:
        """A new result's points (P x 2, frame pixels) on a frame of ``frame_hw``."""
        self.prepareGeometryChange()
        self.points = np.asarray(points, np.float32)
        p = self.points
        finite = np.isfinite(p).all(axis=1)
        self._polys, self._dots = [], []
        listed = np.zeros(len(p), bool)
        for c in self.contours:
            idx = [i for i in c.points if i < len(p) and finite[i]]
            listed[idx] = True
            ring = idx + idx[:1] if c.closed and len(idx) > 2 else idx
            self._polys.append(QPolygonF([QPointF(float(p[i, 0]), float(p[i, 1])) for i in ring]))
            self._dots.append(QPolygonF([QPointF(float(p[i, 0]), float(p[i, 1])) for i in idx]))
        self._loose = QPolygonF([QPointF(float(x), float(y)) for x, y in p[~listed & finite]])
        h, w = frame_hw
        rect = QRectF(0, 0, w, h)
        if finite.any():  # points may lie outside the frame (unclipped): keep them inside the bounds
            lo, hi = p[finite].min(axis=0), p[finite].max(axis=0)
            rect = rect.united(QRectF(float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])))
        self._rect = rect.adjusted(-2, -2, 2, 2)
        self.update()

    def set_visible_contours(self, visible: np.ndarray) -> None:
        self.visible = np.asarray(visible, bool)
        self.update()

    def set_point_px(self, px: int) -> None:
        self.point_px = int(px)
        self.update()

    def set_show_lines(self, on: bool) -> None:
        self.show_lines = bool(on)
        self.update()

    def boundingRect(self) -> QRectF:
        return QRectF(self._rect)

    def _pen(self, colour: QColor, px: float, round_cap: bool = False) -> QPen:
        # a point drawn with a round cap is a round dot
        return self.pen(colour, px, join=Qt.PenJoinStyle.RoundJoin, cap=Qt.PenCapStyle.RoundCap if round_cap else None)

    def paint(self, p: QPainter, *args) -> None:
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setBrush(Qt.BrushStyle.NoBrush)
        # before the first result there are no polygons yet
        shown = [k for k in range(len(self._polys)) if k < len(self.visible) and self.visible[k]]
        if self.show_lines:
            for k in shown:
                # a dark edge under the colour: the outline shows on bright and dark pixels alike
                p.setPen(self._pen(QColor(0, 0, 0, 140), LINE_PX + 2))
                p.drawPolyline(self._polys[k])
                p.setPen(self._pen(self.colour(k), LINE_PX))
                p.drawPolyline(self._polys[k])
        if self.point_px <= 0:
            return
        for k in shown:
            p.setPen(self._pen(QColor(0, 0, 0, 160), self.point_px + 2, round_cap=True))
            p.drawPoints(self._dots[k])
            p.setPen(self._pen(self.colour(k), self.point_px, round_cap=True))
            p.drawPoints(self._dots[k])
        if len(self._loose):
            p.setPen(self._pen(LOOSE, self.point_px, round_cap=True))
            p.drawPoints(self._loose)


class LandmarksPanel(OverlayOnly, QWidget):
    """Controls and legend for one landmark model; owns its ``ContoursItem`` overlay."""

    settingsChanged = Signal()

    def __init__(self, contours: tuple[Contour, ...], palette: np.ndarray, title: str = "",
                 point_names: tuple[str, ...] = (), parent=None) -> None:
        QWidget.__init__(self, parent)
        self.contours = tuple(contours)
        self.palette = np.asarray(palette, np.uint8).reshape(-1, 3)
        self.point_names = tuple(point_names)
        self.last: LandmarksResult | None = None
        self.overlay = ContoursItem(self.contours, self.palette)
        #: contour index of each point (the first contour that lists it), -1 for none
        self._owner: np.ndarray = np.zeros(0, np.int64)

        lay = titled_layout(self, title or "Landmarks")
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        form = QFormLayout()
        self.point_size = QSpinBox()
        self.point_size.setRange(0, 20)
        self.point_size.setSuffix(" px")
        self.point_size.setValue(POINT_PX)
        self.point_size.setToolTip("Diameter of the point dots on screen (0 hides them)")
        self.point_size.valueChanged.connect(self._on_point_size)
        form.addRow("Points", self.point_size)
        self.lines = QCheckBox("Join the points into contours")
        self.lines.setChecked(True)
        self.lines.toggled.connect(self._on_lines)
        form.addRow("Lines", self.lines)
        lay.addLayout(form)

        self.table = QTableWidget(len(self.contours), 3)
        self.table.setHorizontalHeaderLabels(["contour", "area px²", "mm²"])
        self.table.setColumnHidden(2, True)
        self.table.verticalHeader().setVisible(False)
        head = self.table.horizontalHeader()
        head.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2):
            head.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        for k, c in enumerate(self.contours):
            it = QTableWidgetItem(swatch(self.palette[k]), c.name)
            it.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            it.setCheckState(Qt.CheckState.Checked)
            it.setToolTip(f"{'closed' if c.closed else 'open'} contour of {len(c.points)} points")
            self.table.setItem(k, 0, it)
            for col, text in ((1, "" if c.closed else "open"), (2, "")):
                a = QTableWidgetItem(text)
                a.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(k, col, a)
        self.table.itemChanged.connect(self._on_item)
        lay.addWidget(self.table, 1)
        hint = "Tick a contour to show or hide it; the status bar names the point under the cursor."
        if any(not c.closed for c in self.contours):
            hint += " Open contours (curves) have no area."
        self.hint = QLabel(hint)
        self.hint.setStyleSheet("color: gray")
        self.hint.setWordWrap(True)
        lay.addWidget(self.hint)

    # --- view of a result ------------------------------------------------------------------
    def update_from(self, result: LandmarksResult, frame, slow: bool) -> None:
        self.show_result(result, (frame.height, frame.width), slow)

    def refresh_slow(self, result: LandmarksResult, frame) -> None:
        self.update_legend(result)

    def reset_series(self) -> None:
        """Nothing is kept across frames."""

    def show_result(self, result: LandmarksResult, frame_hw: tuple[int, int], update_legend: bool = True) -> None:
        self.last = result
        if len(self._owner) != result.count:
            owner = np.full(result.count, -1, np.int64)
            for k in range(len(self.contours) - 1, -1, -1):  # the first contour listing a point owns it
                idx = [i for i in self.contours[k].points if i < result.count]
                owner[idx] = k
            self._owner = owner
        self.overlay.set_points(result.points, frame_hw)
        if update_legend:
            self.update_legend(result)

    def update_legend(self, result: LandmarksResult) -> None:
        self.table.blockSignals(True)
        has_mm2 = result.area_mm2 is not None
        self.table.setColumnHidden(2, not has_mm2)
        for k, c in enumerate(self.contours[: self.table.rowCount()]):
            if not c.closed:
                continue
            a = float(result.area_px[k])
            self.table.item(k, 1).setText(f"{a:,.0f}" if math.isfinite(a) else "–")
            if has_mm2:
                m = float(result.area_mm2[k])
                self.table.item(k, 2).setText(f"{m:,.1f}" if math.isfinite(m) else "–")
        self.table.blockSignals(False)
        n, c = result.count, len(self.contours)
        what = f"{n} points, {c} contour{'s' if c != 1 else ''}" if c else f"{n} points (the card lists no contours)"
        if result.scores is not None and n:
            what += f"; point scores {float(np.nanmin(result.scores)):.2f} to {float(np.nanmax(result.scores)):.2f}"
        self.summary.setText(what)

    def value_at(self, x: float, y: float) -> str | None:
        """The point nearest frame pixel (x, y), when one is within ``PICK_FRACTION`` of the
        frame's longer side: its name (or index), its contour and its position."""
        r = self.last
        if r is None or r.count == 0:
            return None
        d = np.hypot(r.points[:, 0] - x, r.points[:, 1] - y)
        d = np.where(np.isfinite(d), d, np.inf)
        owner = self._owner if len(self._owner) == r.count else np.full(r.count, -1)
        shown = np.array([k < 0 or (k < len(self.overlay.visible) and self.overlay.visible[k]) for k in owner])
        d = np.where(shown, d, np.inf)
        i = int(np.argmin(d))
        if not d[i] <= PICK_FRACTION * max(r.frame_hw):
            return None
        name = r.point_label(i)
        label = f"{name} (point {i})" if i < len(r.point_names) else name
        k = int(owner[i])
        if k >= 0 and self.contours[k].name.lower() not in name.lower():  # "right lung 12" says it already
            label += f", {self.contours[k].name}"
        px, py = r.points[i]
        text = f"{label} at ({px:.1f}, {py:.1f})"
        if r.scores is not None:
            text += f", score {float(r.scores[i]):.2f}"
        return text

    # --- controls --------------------------------------------------------------------------
    def set_point_px(self, px: int) -> None:
        self.point_size.setValue(int(px))

    def set_show_lines(self, on: bool) -> None:
        self.lines.setChecked(bool(on))

    def set_contour_visible(self, k: int, visible: bool) -> None:
        self.table.item(k, 0).setCheckState(Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked)

    def _on_point_size(self, v: int) -> None:
        self.overlay.set_point_px(v)
        self.settingsChanged.emit()

    def _on_lines(self, on: bool) -> None:
        self.overlay.set_show_lines(on)
        self.settingsChanged.emit()

    def _on_item(self, item: QTableWidgetItem) -> None:
        if item.column() != 0:
            return
        vis = self.overlay.visible.copy()
        vis[item.row()] = item.checkState() == Qt.CheckState.Checked
        self.overlay.set_visible_contours(vis)


POINT_KEY, LINES_KEY = "landmarks/point_px", "landmarks/lines"


def make_panel(model, host) -> LandmarksPanel:
    """The registry's panel factory (``loupe.ui.panels.base``): point size and lines as the user
    last left them, saved again when changed."""
    task = model.task
    panel = LandmarksPanel(task.contours, task.palette, title=model.engine.card.name or model.name,
                           point_names=task.point_names)
    with contextlib.suppress(TypeError, ValueError):  # a hand-edited setting that is no number: the default
        panel.set_point_px(int(host.settings.value(POINT_KEY, POINT_PX)))
    panel.set_show_lines(str(host.settings.value(LINES_KEY, "true")).lower() not in ("false", "0"))

    def save(p: LandmarksPanel = panel) -> None:
        host.settings.setValue(POINT_KEY, p.point_size.value())
        host.settings.setValue(LINES_KEY, p.lines.isChecked())

    panel.settingsChanged.connect(save)
    return panel
