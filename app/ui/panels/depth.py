"""Depth panel: the map in a perceptual colour map over the frame, a colour bar with its unit, the
colour range per clip (growing with the robust low and high seen so far in the source, started
again for a new source) or fixed (the card's, or what the user types), the value under the cursor,
and the median over time (click to seek). A thin view over ``DepthResult``."""

from __future__ import annotations

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSize, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QWidget,
)

from loupe.tasks.depth import ClipRange, DepthResult, format_value
from loupe.ui.panels.base import (
    OverlayOnly,
    big_label,
    frame_axis,
    opacity_slider,
    plot_frame,
    titled_layout,
)
from loupe.ui.panels.colourbar import ColourBar

COLOUR_MAPS = ("turbo", "viridis", "inferno", "magma", "cividis")
MODES = ("clip", "fixed")
MODE_TEXT = {"clip": "Per clip", "fixed": "Fixed"}
OPACITY_KEY = "depth/opacity"  # 0..1
COLOUR_MAP_KEY = "depth/colour_map"
REVERSE_KEY = "depth/reverse"  # bool
RANGE_MODE_KEY = "depth/range_mode"  # clip | fixed


def depth_lut(name: str = "turbo", reverse: bool = False) -> np.ndarray:
    """256 x 4 RGBA uint8: row 0 clear (no value: NaN, inf), rows 1-255 the colour map, opaque (a
    depth map covers every pixel; the opacity slider blends it)."""
    lut = np.zeros((256, 4), np.uint8)
    colours = pg.colormap.get(name).getLookupTable(0.0, 1.0, 255, alpha=True).astype(np.uint8)
    lut[1:] = colours[::-1] if reverse else colours
    lut[1:, 3] = 255
    return lut


class _MedianPlot(pg.PlotWidget):
    """The median plot, asking for a modest height (a plot's default hint, 480 px, would make the
    panel scroll in the dock where the plot could simply be shorter)."""

    def sizeHint(self) -> QSize:
        return QSize(240, 180)


class DepthPanel(OverlayOnly, QWidget):
    """Controls, figures and the median plot for one depth model; owns its colour-mapped overlay."""

    seekRequested = Signal(int)
    settingsChanged = Signal()

    def __init__(self, title: str = "", unit: str = "", kind: str = "relative", inverse: bool = False,
                 card_range: tuple[float, float] | None = None, range_mode: str = "clip", parent=None) -> None:
        super().__init__(parent)
        self.unit, self.kind, self.inverse = unit, kind, inverse
        self.card_range = card_range
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setOpacity(0.6)
        self.clip = ClipRange()
        self.levels: tuple[float, float] | None = card_range if range_mode == "fixed" else None
        self._fixed: tuple[float, float] | None = card_range  # the fixed range (card's, then the user's)
        self._series: dict[int, float] = {}  # frame -> median
        self.last: DepthResult | None = None

        lay = titled_layout(self, title or "Depth")
        self.median_label = big_label(lay, "median —", 20)
        self.stats_label = QLabel("min —   max —")
        lay.addWidget(self.stats_label)
        form = QFormLayout()
        self.opacity = opacity_slider(self.overlay, 60, self.settingsChanged.emit)
        form.addRow("Opacity", self.opacity)
        cmap_row = QHBoxLayout()
        self.cmap_box = QComboBox()
        self.cmap_box.addItems(COLOUR_MAPS)
        self.cmap_box.setToolTip("Perceptual colour map of the overlay (low values at its left end)")
        self.reverse_box = QCheckBox("Reversed")
        self.reverse_box.setToolTip("High values at the colour map's left end")
        cmap_row.addWidget(self.cmap_box, 1)
        cmap_row.addWidget(self.reverse_box)
        form.addRow("Colour map", cmap_row)
        self.mode_box = QComboBox()
        for m in MODES:
            self.mode_box.addItem(MODE_TEXT[m], m)
        self.mode_box.setToolTip("Per clip: the range grows with the 1st-99th percentiles seen so far in this "
                                 "source. Fixed: the card's range, or the one typed here")
        form.addRow("Colour range", self.mode_box)
        self.lo_box, self.hi_box = self._range_box("low"), self._range_box("high")
        form.addRow("Low end", self.lo_box)
        form.addRow("High end", self.hi_box)
        lay.addLayout(form)
        self.colour_bar = ColourBar(depth_lut()[1:], self.bar_unit(), 0.0, 1.0)
        lay.addWidget(self.colour_bar)
        self.meaning_label = QLabel(self.meaning())
        self.meaning_label.setWordWrap(True)
        lay.addWidget(self.meaning_label)
        self.plot = _MedianPlot(background="w", axisItems={"bottom": frame_axis()})
        self.plot.setLabel("bottom", "frame")
        self.plot.setLabel("left", f"median ({unit})" if unit else "median")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.plot.setDownsampling(auto=True, mode="peak")
        self.plot.setClipToView(True)
        self.curve = self.plot.plot(pen=pg.mkPen("#00838f", width=2), name="median")
        self.plot.scene().sigMouseClicked.connect(self._on_plot_click)
        self.plot.setMinimumHeight(140)
        lay.addWidget(self.plot, 1)

        self.set_colour_map("turbo", False)
        self.set_range_mode(range_mode)
        self.cmap_box.currentTextChanged.connect(lambda _t: self._on_cmap())
        self.reverse_box.toggled.connect(lambda _v: self._on_cmap())
        self.mode_box.currentIndexChanged.connect(lambda _i: self._on_mode())
        self.lo_box.valueChanged.connect(lambda _v: self._on_user_range())
        self.hi_box.valueChanged.connect(lambda _v: self._on_user_range())

    def _range_box(self, end: str) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setDecimals(3)
        box.setRange(-1e6, 1e6)
        box.setKeyboardTracking(False)  # one change per typed value, not per key
        box.setToolTip(f"The value drawn at the colour map's {end} end ({self.unit or 'the map’s own values'}); "
                       "typing one fixes the range")
        return box

    def bar_unit(self) -> str:
        return self.unit or "(relative)"

    def meaning(self) -> str:
        what = "metric depth" if self.kind == "metric" else "relative values (no unit)"
        near = "larger = nearer (inverse depth, disparity-like)" if self.inverse else "larger = farther"
        return f"{what}; {near}" if self.kind == "metric" or self.inverse else what

    # --- Panel protocol -------------------------------------------------------------------
    def update_from(self, result: DepthResult, frame, slow: bool) -> None:
        self.show_result(result, (frame.height, frame.width), frame.index, slow)

    def refresh_slow(self, result: DepthResult, frame) -> None:
        self.refresh_plot()

    def reset_series(self) -> None:
        """A new source: the median trace and the per-clip range start again."""
        self._series.clear()
        self.clip.reset()
        self.curve.setData([], [])
        if self.mode == "clip":
            self.levels = None

    def value_at(self, x: float, y: float) -> str | None:
        """The model's value under frame pixel (x, y) in the last result: "2.35 m"."""
        if self.last is None:
            return None
        v = self.last.value_at(x, y)
        if v is None or not np.isfinite(v):
            return None
        return format_value(v, self.unit) if self.unit else f"{format_value(v, '')} (relative)"

    # --- view of a result --------------------------------------------------------------------
    def show_result(self, result: DepthResult, frame_hw: tuple[int, int], index: int, update_plot: bool = True) -> None:
        self.last = result
        grew = self.clip.add(result.low, result.high)
        if self.mode == "clip" and (grew or self.levels is None) and self.clip.range is not None:
            self._set_levels(self.clip.range)
        self._show_map(result.depth)
        h, w = frame_hw
        self.overlay.setRect(QRectF(0, 0, w, h))
        if result.depth_median is None:
            self.median_label.setText("median — (no finite value)")
            self.stats_label.setText("min —   max —")
        else:
            self.median_label.setText(f"median {format_value(result.depth_median, self.unit)}")
            self.stats_label.setText(f"min {format_value(result.depth_min, self.unit)}   "
                                     f"max {format_value(result.depth_max, self.unit)}")
            self._series[index] = result.depth_median
        if update_plot:
            self.refresh_plot()

    def refresh_plot(self) -> None:
        frames = sorted(self._series)
        self.curve.setData(frames, [self._series[f] for f in frames])

    def _show_map(self, depth: np.ndarray) -> None:
        """The map as uint8 levels 1-255 over the colour range (clamped both ends; 0, clear, where
        there is no finite value), so the item colours it through its 256-row table instead of
        rescaling floats per pixel on the UI thread."""
        lo, hi = self.levels or (0.0, 1.0)
        alpha = 254.0 / max(hi - lo, 1e-12)
        d = np.ascontiguousarray(depth, np.float32)
        u8 = cv2.convertScaleAbs(cv2.max(d, float(lo)), alpha=alpha, beta=1.0 - lo * alpha)
        finite = np.isfinite(d)
        if not finite.all():
            u8[~finite] = 0
        self.overlay.setImage(u8, autoLevels=False, levels=(0, 255))

    # --- controls -------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.mode_box.currentData()

    def set_range_mode(self, mode: str) -> None:
        self.mode_box.setCurrentIndex(MODES.index(mode if mode in MODES else "clip"))
        self._on_mode(emit=False)

    def set_colour_map(self, name: str, reverse: bool) -> None:
        self.cmap_box.blockSignals(True)
        self.reverse_box.blockSignals(True)
        self.cmap_box.setCurrentText(name if name in COLOUR_MAPS else "turbo")
        self.reverse_box.setChecked(bool(reverse))
        self.cmap_box.blockSignals(False)
        self.reverse_box.blockSignals(False)
        self._on_cmap(emit=False)

    def _on_cmap(self, emit: bool = True) -> None:
        lut = depth_lut(self.cmap_box.currentText(), self.reverse_box.isChecked())
        self.overlay.setLookupTable(lut)
        self.colour_bar.lut = np.ascontiguousarray(lut[1:])
        self.colour_bar.update()
        if emit:
            self.settingsChanged.emit()

    def _on_mode(self, emit: bool = True) -> None:
        if self.mode == "clip":
            rng = self.clip.range
        else:  # the card's (or the user's) range; without either, the range shown now stays
            rng = self._fixed or self.levels or self.clip.range
            self._fixed = rng
        if rng is not None:
            self._set_levels(rng)
        if emit:
            self.settingsChanged.emit()

    def _set_levels(self, rng: tuple[float, float]) -> None:
        self.levels = (float(rng[0]), float(rng[1]))
        for box, v in ((self.lo_box, self.levels[0]), (self.hi_box, self.levels[1])):
            box.blockSignals(True)
            box.setValue(v)
            box.blockSignals(False)
        self.colour_bar.set_range(*self.levels)
        if self.last is not None:
            self._show_map(self.last.depth)

    def _on_user_range(self) -> None:
        lo, hi = self.lo_box.value(), self.hi_box.value()
        if not hi > lo:
            return  # half-typed: wait for a range that has a width
        self._fixed = (lo, hi)
        if self.mode != "fixed":
            self.mode_box.blockSignals(True)
            self.mode_box.setCurrentIndex(MODES.index("fixed"))
            self.mode_box.blockSignals(False)
        self._set_levels(self._fixed)
        self.settingsChanged.emit()

    def _on_plot_click(self, ev) -> None:
        index = plot_frame(self.plot, ev, self._series)
        if index is not None:
            self.seekRequested.emit(index)


def make_panel(model, host) -> DepthPanel:
    """The registry's panel factory: unit, meaning and range from the card; opacity, colour map
    and range mode as the user last left them (``depth/...`` settings), except that a card with a
    range has its own range mode."""
    task = model.task
    s = host.settings
    mode = task.range_mode if task.range is not None else str(s.value(RANGE_MODE_KEY, "clip"))
    if mode == "fixed" and task.range is None:
        mode = "clip"  # a fixed range needs one: the card's, or one typed in again
    panel = DepthPanel(model.engine.card.name or model.name, unit=task.unit, kind=task.kind,
                       inverse=task.inverse, card_range=task.range, range_mode=mode)
    panel.opacity.setValue(round(float(s.value(OPACITY_KEY, 0.6)) * 100))
    panel.set_colour_map(str(s.value(COLOUR_MAP_KEY, "turbo")),
                         str(s.value(REVERSE_KEY, "false")).lower() in ("true", "1"))

    def save(p: DepthPanel = panel) -> None:
        s.setValue(OPACITY_KEY, p.opacity.value() / 100.0)
        s.setValue(COLOUR_MAP_KEY, p.cmap_box.currentText())
        s.setValue(REVERSE_KEY, p.reverse_box.isChecked())
        s.setValue(RANGE_MODE_KEY, p.mode)

    panel.seekRequested.connect(host.seek_to)
    panel.settingsChanged.connect(save)
    return panel
