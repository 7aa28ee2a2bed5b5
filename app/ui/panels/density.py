"""Density panel: heatmap over the frame (colour bar beside; its range from the clip's robust
maximum, capped by the card's, unless the user sets one), the count on the frame and over time
(kept across seeks, cleared for a new source), and a region of interest with its own count. A thin
view over ``DensityResult``."""

from __future__ import annotations

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QPushButton,
    QWidget,
)

from loupe.tasks.density import DensityResult, robust_max
from loupe.ui.panels.base import big_label, frame_axis, opacity_slider, titled_layout, value_under
from loupe.ui.panels.colourbar import ColourBar


def heat_lut(name: str = "inferno") -> np.ndarray:
    """256 x 4 RGBA: the colour map without its darkest quarter (black vanishes on a dark frame),
    alpha rising from 0 with the square root of the value, so empty areas stay clear and a low
    value already shows."""
    cmap = pg.colormap.get(name)
    lut = cmap.getLookupTable(0.25, 1.0, 256, alpha=True).astype(np.uint8)
    lut[:, 3] = np.clip(np.sqrt(np.linspace(0.0, 1.0, 256)) * 255 * 1.15, 0, 255).astype(np.uint8)
    return lut


class DensityPanel(QWidget):
    """Controls, count and plot for one density model; owns its heatmap and ROI items."""

    roiChanged = Signal(object)  # polygon (N x 2 frame pixels) or None
    settingsChanged = Signal()

    def __init__(self, title: str = "", display_max: float | None = None, parent=None,
                 count_scale: float = 1.0, stride: int = 1) -> None:
        super().__init__(parent)
        # The map holds the model's raw values; what the panel shows (colour bar, range box,
        # readout) is in counts per model output cell: raw x count_scale (0.01 for M-SegNet-style
        # maps, whose bar would otherwise read 100x the people there).
        self._scale = float(count_scale) if count_scale > 0 else 1.0
        self.unit = "count/px" if stride <= 1 else f"count per {stride}×{stride} px"
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setLookupTable(heat_lut())
        self.overlay.setOpacity(0.75)
        self.count_text = pg.TextItem("", color="#ffffff", anchor=(1, 0), fill=pg.mkBrush(0, 0, 0, 160))
        self.count_text.setZValue(101)
        self.roi: pg.PolyLineROI | None = None
        self.levels_max: float | None = None
        self._card_max = display_max  # the card's top of range: a cap, never a floor
        self._user_max: float | None = None  # set in the range box: wins
        self._clip_max = 0.0  # robust maximum over this clip's maps so far
        self._series: dict[int, tuple[float, float]] = {}  # frame -> (count, region count or nan)
        self._frame_hw: tuple[int, int] | None = None
        self.last: DensityResult | None = None
        self._view_box: pg.ViewBox | None = None

        lay = titled_layout(self, title or "Density")
        self.count_label = big_label(lay, "count —", 20)
        form = QFormLayout()
        self.opacity = opacity_slider(self.overlay, 75, self.settingsChanged.emit)
        form.addRow("Opacity", self.opacity)
        self.range_box = QDoubleSpinBox()
        self.range_box.setDecimals(5)
        self.range_box.setRange(1e-6, 1e6)
        self.range_box.setToolTip("Density drawn at the top of the colour range: the clip's robust maximum "
                                  "so far (capped by the card's), or what you set here")
        self.range_box.valueChanged.connect(self._on_range)
        form.addRow("Colour range max", self.range_box)
        lay.addLayout(form)
        self.colour_bar = ColourBar(heat_lut(), self.unit, 0.0, 1.0)
        lay.addWidget(self.colour_bar)
        row = QHBoxLayout()
        self.roi_btn = QPushButton("Region of interest")
        self.roi_btn.setCheckable(True)
        self.roi_btn.setToolTip("Add an editable polygon over the frame; drag its corners, click an edge to add one")
        self.roi_btn.toggled.connect(self._toggle_roi)
        row.addWidget(self.roi_btn)
        lay.addLayout(row)
        self.plot = pg.PlotWidget(background="w", axisItems={"bottom": frame_axis()})  # frames from 1
        self.plot.setLabel("bottom", "frame")
        self.plot.setLabel("left", "count")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        # long sessions: draw only what is in view, peak-downsampled to the plot's width
        self.plot.setDownsampling(auto=True, mode="peak")
        self.plot.setClipToView(True)
        self.curve = self.plot.plot(pen=pg.mkPen("#c2185b", width=2), name="count")
        self.roi_curve = self.plot.plot(pen=pg.mkPen("#1565c0", width=2, style=Qt.PenStyle.DashLine), name="region")
        self.plot.setMinimumHeight(150)
        lay.addWidget(self.plot, 1)
        if display_max:
            self._set_levels(display_max)

    @property
    def _frames(self) -> list[int]:
        return sorted(self._series)

    def attach(self, view_box: pg.ViewBox) -> None:
        """Add the heatmap and count label to the frame view."""
        self._view_box = view_box
        view_box.addItem(self.overlay)
        view_box.addItem(self.count_text, ignoreBounds=True)

    def detach(self) -> None:
        if self._view_box is not None:
            for item in (self.overlay, self.count_text, self.roi):
                if item is not None:
                    self._view_box.removeItem(item)

    def shutdown(self) -> None:
        """Nothing runs in the background here (see ``Panel.shutdown``)."""

    # --- view of a result ------------------------------------------------------------------
    def refresh_slow(self, result: DensityResult, frame) -> None:
        self.refresh_plot()

    def update_from(self, result: DensityResult, frame, slow: bool) -> None:
        self.show_result(result, (frame.height, frame.width), frame.index, slow)

    def value_at(self, x: float, y: float) -> str | None:
        """The density under frame pixel (x, y) in the last result (the status bar's readout)."""
        v = value_under(self.overlay, None if self.last is None else self.last.density, x, y)
        return None if v is None else f"density {float(v) * self._scale:.3g} {self.unit}"

    def reset_series(self) -> None:
        self.clear_history()

    def show_result(self, result: DensityResult, frame_hw: tuple[int, int], index: int, update_plot: bool = True) -> None:
        self.last = result
        peak = result.peak if result.peak is not None else robust_max(result.density)
        self._clip_max = max(self._clip_max, peak)
        self._auto_levels(result.display_max)
        self._show_map(result.density)
        h, w = frame_hw
        self._frame_hw = frame_hw
        self.overlay.setRect(QRectF(0, 0, w, h))
        txt = f"count {result.count:.1f}"
        if result.roi_count is not None:
            txt += f"   region {result.roi_count:.1f}"
        self.count_text.setText(txt)
        self.count_text.setPos(w, 0)
        self.count_label.setText(txt)
        # a seek back keeps the trace: the frame's value is replaced, the plot stays in frame order
        self._series[index] = (result.count, np.nan if result.roi_count is None else result.roi_count)
        if update_plot:
            self.refresh_plot()

    def refresh_plot(self) -> None:
        frames = self._frames
        values = np.array([self._series[f] for f in frames], np.float64).reshape(-1, 2)
        self.curve.setData(frames, values[:, 0])
        if np.isfinite(values[:, 1]).any():
            self.roi_curve.setData(frames, values[:, 1], connect="finite")

    def clear_history(self) -> None:
        """A new source: the trace and the clip's colour range start again."""
        self._series.clear()
        self._clip_max = 0.0
        self.curve.setData([], [])
        self.roi_curve.setData([], [])

    # --- controls --------------------------------------------------------------------------
    def _auto_levels(self, task_max: float | None) -> None:
        """Unless the user set a range: the clip's robust maximum, capped by the card's."""
        if self._user_max is not None:
            return
        cands = [v for v in (self._card_max or task_max, self._clip_max) if v]
        if cands and min(cands) != self.levels_max:
            self._set_levels(min(cands))

    def _set_levels(self, vmax: float) -> None:
        self.levels_max = float(vmax)
        self.range_box.blockSignals(True)
        self.range_box.setValue(self.levels_max * self._scale)
        self.range_box.blockSignals(False)
        self.colour_bar.set_range(0.0, self.levels_max * self._scale)

    def _show_map(self, density: np.ndarray) -> None:
        """The map as uint8 (0..range -> 0..255, two SIMD passes), so the item colours it
        through its 256-row table instead of rescaling floats per pixel on the UI thread."""
        vmax = max(float(self.levels_max or 0.0), 1e-12)
        d = np.ascontiguousarray(density, np.float32)
        u8 = cv2.convertScaleAbs(cv2.max(d, 0.0), alpha=255.0 / vmax)
        self.overlay.setImage(u8, autoLevels=False, levels=(0, 255))

    def _on_range(self, v: float) -> None:  # v in counts per output cell, as shown
        self.levels_max = self._user_max = float(v) / self._scale
        self.colour_bar.set_range(0.0, float(v))
        if self.last is not None:
            self._show_map(self.last.density)
        self.settingsChanged.emit()

    def _toggle_roi(self, on: bool) -> None:
        if self._view_box is None:
            return
        if on:
            h, w = self._frame_hw or (100, 100)
            pts = [(w * 0.25, h * 0.25), (w * 0.75, h * 0.25), (w * 0.75, h * 0.75), (w * 0.25, h * 0.75)]
            self.set_roi_points(np.array(pts))
        else:
            self.set_roi_points(None)

    def set_roi_points(self, points: np.ndarray | None) -> None:
        """Show (or remove) the region polygon and announce it."""
        if self.roi is not None and self._view_box is not None:
            self._view_box.removeItem(self.roi)
            self.roi = None
        if points is not None and self._view_box is not None:
            self.roi = pg.PolyLineROI([tuple(p) for p in points], closed=True, pen=pg.mkPen("#00e5ff", width=2))
            self.roi.setZValue(50)
            self._view_box.addItem(self.roi)
            self.roi.sigRegionChangeFinished.connect(lambda *_: self.roiChanged.emit(self.roi_points()))
        self.roi_btn.blockSignals(True)
        self.roi_btn.setChecked(points is not None)
        self.roi_btn.blockSignals(False)
        self.roiChanged.emit(self.roi_points())

    def roi_points(self) -> np.ndarray | None:
        """The polygon in frame pixels (x, y), or None."""
        if self.roi is None:
            return None
        pts = [self.roi.mapToParent(h["item"].pos()) for h in self.roi.handles]
        return np.array([[p.x(), p.y()] for p in pts], float)



def make_panel(model, host) -> DensityPanel:
    """The registry's panel factory: the region of interest drawn here is the task's."""
    task = model.task
    stride = int(model.engine.card.output.get("stride", 1) or 1)
    panel = DensityPanel(model.engine.card.name or model.name, display_max=task.display_max,
                         count_scale=task.count_scale, stride=stride)
    panel.roiChanged.connect(task.set_roi)
    return panel


if __name__ == "__main__":  # a preview fed synthetic results
    from loupe.ui.panels.base import preview_app, preview_view, run_preview

    app = preview_app()
    panel = DensityPanel("preview", display_max=1.0)
    view = preview_view(panel)
    yy, xx = np.mgrid[0:120, 0:200]
    for i in range(20):
        d = np.exp(-((xx - 60 - 3 * i) ** 2 + (yy - 60) ** 2) / 200.0).astype(np.float32)
        panel.show_result(DensityResult(d, float(d.sum()), None, 1.0), d.shape, i)
    run_preview(app, panel, view)
