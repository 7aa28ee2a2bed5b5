"""The heatmap panel (Qt, UI thread only): the map over the frame with a fixed colour range, the
peak marked, this frame's figures, a threshold the task uses from the next frame on, and the mean
over time (click the plot to go to that frame). It follows ``loupe.ui.panels.base.Panel``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Signal
from PySide6.QtWidgets import QDoubleSpinBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from loupe_heatmap.task import HeatmapResult


class HeatmapPanel(QWidget):
    seekRequested = Signal(int)  # a frame index (a click on the plot)
    thresholdChanged = Signal(float)

    def __init__(self, title: str = "", threshold: float = 0.5, display_max: float = 1.0, parent=None) -> None:
        super().__init__(parent)
        self.overlay = pg.ImageItem(axisOrder="row-major")
        lut = pg.colormap.get("magma").getLookupTable(0.0, 1.0, 256, alpha=True).astype(np.uint8)
        lut[:, 3] = np.clip(np.linspace(0, 255 * 3, 256), 0, 255).astype(np.uint8)  # low values clear
        self.overlay.setLookupTable(lut)
        self.overlay.setOpacity(0.7)
        self.display_max = float(display_max)
        self.peak_item = pg.ScatterPlotItem(size=14, symbol="+", pen=pg.mkPen("#00e5ff", width=2), brush=None)
        self._view_box = None
        self.last: HeatmapResult | None = None
        self.frames: list[int] = []
        self.means: list[float] = []

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(QLabel(f"<b>{title or 'Heatmap'}</b>"))
        self.figures = QLabel("mean —   max —   peak —")
        lay.addWidget(self.figures)
        form = QFormLayout()
        self.threshold = QDoubleSpinBox()
        self.threshold.setDecimals(3)
        self.threshold.setRange(-1e6, 1e6)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(threshold)
        self.threshold.setToolTip("heat_above: the fraction of the frame above this value")
        self.threshold.valueChanged.connect(self.thresholdChanged.emit)
        form.addRow("Threshold", self.threshold)
        lay.addLayout(form)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("bottom", "frame")
        self.plot.setLabel("left", "mean")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.plot.setDownsampling(auto=True, mode="peak")
        self.plot.setClipToView(True)
        self.curve = self.plot.plot(pen=pg.mkPen("#6a1b9a", width=2))
        self.plot.scene().sigMouseClicked.connect(self._on_plot_click)
        lay.addWidget(self.plot, 1)

    # --- Panel protocol -------------------------------------------------------------------
    def attach(self, view_box: Any) -> None:
        self._view_box = view_box
        view_box.addItem(self.overlay)
        view_box.addItem(self.peak_item)

    def detach(self) -> None:
        if self._view_box is not None:
            self._view_box.removeItem(self.overlay)
            self._view_box.removeItem(self.peak_item)
            self._view_box = None

    def shutdown(self) -> None:
        pass  # nothing runs in the background

    def update_from(self, result: HeatmapResult, frame: Any, slow: bool) -> None:
        self.last = result
        self.overlay.setImage(result.heat, autoLevels=False, levels=(0.0, self.display_max))
        self.overlay.setRect(QRectF(0, 0, frame.width, frame.height))
        self.peak_item.setData([result.peak[0]], [result.peak[1]])
        self.frames.append(int(frame.index))
        self.means.append(result.mean)
        if slow:
            self.refresh_slow(result, frame)

    def refresh_slow(self, result: HeatmapResult, frame: Any) -> None:
        x, y = result.peak
        self.figures.setText(f"mean {result.mean:.4g}   max {result.max:.4g}   peak ({x:.0f}, {y:.0f})   "
                             f"above {result.threshold:g}: {100 * result.above:.1f}%")
        self.curve.setData(self.frames, self.means)

    def reset_series(self) -> None:
        self.frames.clear()
        self.means.clear()
        self.curve.setData([], [])

    # --- interaction --------------------------------------------------------------------
    def _on_plot_click(self, ev: Any) -> None:
        if not self.frames:
            return
        x = self.plot.getPlotItem().vb.mapSceneToView(ev.scenePos()).x()
        self.seekRequested.emit(round(min(max(x, 0), max(self.frames))))


def make_panel(model: Any, host: Any) -> HeatmapPanel:
    """The factory the registry names (``TaskSpec.panel``): ``model`` is the loaded model (its
    ``task``, its ``engine`` and card), ``host`` the window (``loupe.ui.panels.base.PanelHost``)."""
    task = model.task
    panel = HeatmapPanel(model.engine.card.name or model.name, threshold=task.threshold,
                         display_max=task.display_max)
    panel.thresholdChanged.connect(lambda v, t=task: setattr(t, "threshold", float(v)))
    panel.seekRequested.connect(host.seek_to)
    return panel
