"""The layout both per-frame docks under the view share (Ground truth, Compare): a plot of one
value per frame played (a click seeks), the frames where it is lowest (a click seeks), and a
column of figures: a check box for what is drawn over the frame, a legend, the pooled figures and
the shown frame's detail. ``bottom_dock`` puts such a widget in a dock under the view, hidden
until it has something to show, with a timer that redraws it at most five times a second.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from loupe.ui.panels.base import frame_axis, text_label

WORST = 12  # frames listed
REDRAW_MS = 200  # the plots, the lists and the figures at most this often while playing


class FrameScoresWidget(QWidget):
    """Plot | lowest frames | figures, side by side. Subclasses add their own curves to
    ``plot``, widgets to ``left``/``right`` (after ``super().__init__``) and fill them."""

    seekRequested = Signal(int)
    overlayToggled = Signal(bool)

    def __init__(self, title: str, value_name: str, plot_tip: str, worst_title: str, worst_tip: str,
                 overlay_text: str, overlay_tip: str = "", y_min: float = 0.0) -> None:
        super().__init__()
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        self.left = QVBoxLayout()
        self.title = QLabel(title)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        self.left.addWidget(self.title)
        self.plot = pg.PlotWidget(axisItems={"bottom": frame_axis()})
        self.plot.setBackground("w")
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.setYRange(y_min, 1.02, padding=0)
        self.plot.showGrid(x=False, y=True, alpha=0.3)
        self.plot.setLabel("left", value_name)
        self.plot.setToolTip(plot_tip)
        self.cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen((200, 60, 60), width=1))
        self.plot.addItem(self.cursor)
        self.plot.scene().sigMouseClicked.connect(self._on_plot_click)
        self.left.addWidget(self.plot, 1)
        lay.addLayout(self.left, 3)

        mid = QVBoxLayout()
        mid.addWidget(QLabel(worst_title))
        self.worst = QListWidget()
        self.worst.setToolTip(worst_tip)
        self.worst.itemClicked.connect(lambda item: self.seekRequested.emit(int(item.data(Qt.ItemDataRole.UserRole))))
        mid.addWidget(self.worst, 1)
        lay.addLayout(mid, 1)

        self.right = QVBoxLayout()
        self.overlay_box = QCheckBox(overlay_text)
        if overlay_tip:
            self.overlay_box.setToolTip(overlay_tip)
        self.overlay_box.setChecked(True)
        self.overlay_box.toggled.connect(self.overlayToggled.emit)
        self.right.addWidget(self.overlay_box)
        lay.addLayout(self.right, 2)

    def add_figures(self) -> None:
        """The right column's legend, pooled figures and frame detail (call once the subclass
        added what goes above them)."""
        self.legend = text_label(self.right)
        self.pooled = QLabel("")
        self.pooled.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.pooled.setStyleSheet("font-family: monospace")
        self.right.addWidget(self.pooled)
        self.frame_text = QLabel("")
        self.frame_text.setWordWrap(True)
        self.right.addWidget(self.frame_text)
        self.right.addStretch(1)

    def _on_plot_click(self, ev: Any) -> None:
        """A click on the plot shows the frame under it (played or not)."""
        vb = self.plot.getPlotItem().vb
        if vb.sceneBoundingRect().contains(ev.scenePos()):
            self.seekRequested.emit(max(0, round(vb.mapSceneToView(ev.scenePos()).x())))

    @staticmethod
    def set_curve(curve: Any, values: dict[int, float | None]) -> list[tuple[int, float]]:
        """``curve`` from ``{frame index: value}`` (None or NaN: no value); the (frame, value)
        points drawn, in frame order."""
        pts = sorted((i, float(v)) for i, v in values.items() if v is not None and v == v)
        if pts:
            xs, ys = zip(*pts)
            curve.setData(np.asarray(xs, float), np.asarray(ys, float))
        else:
            curve.setData([], [])
        return pts

    def show_values(self, curve: Any, values: dict[int, float | None]) -> list[tuple[int, float]]:
        """``curve`` and the lowest-frames list from ``{frame index: value}`` (None or NaN: no
        value); the (frame, value) points drawn, in frame order."""
        pts = self.set_curve(curve, values)
        self.worst.clear()
        for i, v in sorted(pts, key=lambda t: (t[1], t[0]))[:WORST]:
            item = QListWidgetItem(f"frame {i + 1}   {v:.3f}")  # frame numbers from 1, as the player shows
            item.setData(Qt.ItemDataRole.UserRole, i)
            self.worst.addItem(item)
        return pts


def bottom_dock(win: Any, title: str, name: str, widget: QWidget, redraw: Any) -> tuple[QDockWidget, QTimer]:
    """``widget`` in a dock under the window's view (hidden until shown), and a single-shot timer
    that calls ``redraw`` ``REDRAW_MS`` after it is started (start it on each frame: plots are
    redrawn a few times a second while playing)."""
    dock = QDockWidget(title, win)
    dock.setObjectName(name)
    dock.setWidget(widget)
    win.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    dock.hide()
    timer = QTimer(win)
    timer.setSingleShot(True)
    timer.setInterval(REDRAW_MS)
    timer.timeout.connect(redraw)
    return dock, timer
