"""Anomaly panel: score over time with a draggable threshold, flagged spans (shaded and listed;
click to seek), the per-pixel prediction error over the frame, and the prediction beside the real
frame. Recalibrate on a marked span of normal footage. A thin view over ``AnomalyResult``."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QWidget,
)

from loupe.tasks.anomaly import AnomalyResult
from loupe.ui.panels.base import (
    OverlayOnly,
    big_label,
    frame_axis,
    opacity_slider,
    titled_layout,
    value_under,
)
from loupe.ui.panels.big_view import BigView
from loupe.ui.panels.colourbar import ColourBar
from loupe.ui.panels.density import heat_lut


def flagged_spans(frames: np.ndarray, scores: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(first, last) frame of each run of consecutive frames scoring at or above the threshold."""
    spans: list[tuple[int, int]] = []
    start = prev = None
    for f, s in zip(frames, scores):
        hit = np.isfinite(s) and s >= threshold
        if hit and start is None:
            start = f
        elif not hit and start is not None:
            spans.append((int(start), int(prev)))
            start = None
        prev = f
    if start is not None:
        spans.append((int(start), int(prev)))
    return spans


class AnomalyPanel(OverlayOnly, QWidget):
    seekRequested = Signal(int)  # frame index
    thresholdChanged = Signal(float)
    calibrationRequested = Signal(float, float)  # psnr_min, psnr_max from the marked span

    def __init__(self, title: str = "", threshold: float = 0.5, error_max: float = 0.05, parent=None) -> None:
        super().__init__(parent)
        self.threshold = float(threshold)
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setLookupTable(heat_lut("viridis"))
        self.overlay.setOpacity(0.6)
        self.error_max = error_max
        self.frames: list[int] = []
        self.scores: list[float] = []
        self.psnrs: list[float] = []
        self.last: AnomalyResult | None = None
        self._regions: list[pg.LinearRegionItem] = []
        self._view_box: pg.ViewBox | None = None

        lay = titled_layout(self, title or "Anomaly")
        self.score_label = big_label(lay, "score —", 18)
        form = QFormLayout()
        self.opacity = opacity_slider(self.overlay, 60)
        form.addRow("Error opacity", self.opacity)
        lay.addLayout(form)
        self.colour_bar = ColourBar(heat_lut("viridis"), "squared error (RGB 0–1)", 0.0, error_max)
        lay.addWidget(self.colour_bar)

        self.plot = pg.PlotWidget(background="w", axisItems={"bottom": frame_axis()})  # frames from 1
        self.plot.setLabel("bottom", "frame")
        self.plot.setLabel("left", "anomaly")
        self.plot.setYRange(0, 1.05)
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        # long sessions: draw only what is in view, peak-downsampled to the plot's width
        self.plot.setDownsampling(auto=True, mode="peak")
        self.plot.setClipToView(True)
        self.curve = self.plot.plot(pen=pg.mkPen("#d84315", width=2))
        self.line = pg.InfiniteLine(self.threshold, angle=0, movable=True, pen=pg.mkPen("#6a1b9a", width=2),
                                    label="threshold {value:.2f}", labelOpts={"position": 0.8, "color": "#6a1b9a",
                                                                               "fill": pg.mkBrush(255, 255, 255, 200)})
        self.line.setBounds((0.0, 1.0))
        self.line.sigPositionChangeFinished.connect(self._on_threshold)
        self.plot.addItem(self.line)
        self.calib = pg.LinearRegionItem(brush=pg.mkBrush(0, 150, 136, 40))
        self.calib.setZValue(-10)
        self.calib.hide()
        self.plot.addItem(self.calib)
        self.plot.scene().sigMouseClicked.connect(self._on_plot_click)
        self.plot.setMinimumHeight(160)
        lay.addWidget(self.plot, 1)

        row = QHBoxLayout()
        self.mark_btn = QPushButton("Mark normal span")
        self.mark_btn.setCheckable(True)
        self.mark_btn.setToolTip("Show a span on the plot; drag it over normal footage, then Recalibrate")
        self.mark_btn.toggled.connect(self._toggle_mark)
        self.recal_btn = QPushButton("Recalibrate")
        self.recal_btn.setEnabled(False)
        self.recal_btn.clicked.connect(self._recalibrate)
        row.addWidget(self.mark_btn)
        row.addWidget(self.recal_btn)
        lay.addLayout(row)
        lay.addWidget(QLabel("Flagged spans (click to go there):"))
        self.spans = QListWidget()
        self.spans.setMaximumHeight(90)
        self.spans.setMinimumHeight(60)  # a short window scrolls the panel rather than squash the list
        self.spans.itemClicked.connect(lambda it: self.seekRequested.emit(int(it.data(Qt.ItemDataRole.UserRole))))
        lay.addWidget(self.spans)
        pv = pg.GraphicsLayoutWidget()
        pv.setMinimumHeight(110)
        self.real_vb = pv.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.pred_vb = pv.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.real_img = pg.ImageItem(axisOrder="row-major")
        self.pred_img = pg.ImageItem(axisOrder="row-major")
        self.real_vb.addItem(self.real_img)
        self.pred_vb.addItem(self.pred_img)
        self.real_vb.addItem(pg.TextItem("real", color="w", fill=pg.mkBrush(0, 0, 0, 150)))
        self.pred_vb.addItem(pg.TextItem("predicted", color="w", fill=pg.mkBrush(0, 0, 0, 150)))
        lay.addWidget(pv)
        self.big = BigView("Show the real frame and the prediction side by side in the main view")
        self.big.set_captions([("real", 0.0, 0.0), ("predicted", 0.5, 0.0)])
        self.big.button.toggled.connect(lambda _on: self._show_big())
        lay.addWidget(self.big.button)
        self._pair: tuple[np.ndarray, np.ndarray | None] | None = None

    def attach(self, view_box) -> None:
        super().attach(view_box)
        self.big.attach(view_box)

    def detach(self) -> None:
        super().detach()
        self.big.detach()

    def _show_pair(self, frame_rgb: np.ndarray, predicted: np.ndarray | None) -> None:
        self.real_img.setImage(frame_rgb, autoLevels=False, levels=(0, 255))
        if predicted is not None:
            self.pred_img.setImage(predicted, autoLevels=False, levels=(0, 255))
        self._pair = (frame_rgb, predicted)
        self._show_big()

    def _show_big(self) -> None:
        """The real/predicted pair over the main view while "Show in main view" is down."""
        if self._pair is None:
            return
        real, pred = self._pair
        real = real[..., :3]
        if pred is None:
            pred = np.zeros_like(real)
        elif pred.shape[:2] != real.shape[:2]:
            import cv2

            pred = cv2.resize(pred, (real.shape[1], real.shape[0]), interpolation=cv2.INTER_AREA)
        self.big.show(np.concatenate([real, pred[..., :3]], axis=1), real.shape[:2])

    # --- view of a result ------------------------------------------------------------------
    def refresh_slow(self, result: AnomalyResult, frame) -> None:
        from loupe.inference.preprocess import display_rgb

        self.refresh()
        if result.predicted is not None:
            self._show_pair(display_rgb(frame), result.predicted)

    def update_from(self, result: AnomalyResult, frame, slow: bool) -> None:
        from loupe.inference.preprocess import display_rgb

        self.show_result(result, display_rgb(frame), frame.index, slow)

    def value_at(self, x: float, y: float) -> str | None:
        """The prediction error under frame pixel (x, y) in the last result (the status bar's readout)."""
        v = value_under(self.overlay, None if self.last is None else self.last.error, x, y)
        return None if v is None else f"error {float(v):.4g}"

    def reset_series(self) -> None:
        self.clear_history()
        self.refresh()

    def apply_calibration(self, psnr_min: float, psnr_max: float) -> None:
        """Re-score the recorded history with a new calibration (the task scores new frames)."""
        from loupe.tasks.anomaly import anomaly_score

        # nan: no result yet for that frame; inf (a perfect prediction) scores 0
        self.scores = [np.nan if np.isnan(p) else anomaly_score(p, psnr_min, psnr_max) for p in self.psnrs]
        self.refresh()

    def show_result(self, result: AnomalyResult, frame_rgb: np.ndarray, index: int, update_plot: bool = True) -> None:
        self.last = result
        if self.frames and index <= self.frames[-1]:
            self.clear_history()
        self.frames.append(index)
        self.scores.append(np.nan if result.score is None else result.score)
        self.psnrs.append(np.nan if result.psnr is None else result.psnr)
        if result.score is None:
            self.score_label.setText(f"filling history (frame {index + 1})")
            self.overlay.clear()
            return
        flag = "  FLAGGED" if result.flagged else ""
        self.score_label.setText(f"anomaly {result.score:.2f}   PSNR {result.psnr:.1f} dB{flag}")
        h, w = frame_rgb.shape[:2]
        self.overlay.setImage(result.error, autoLevels=False, levels=(0.0, self.error_max))
        self.overlay.setRect(QRectF(0, 0, w, h))
        if update_plot:
            self.refresh()
            self._show_pair(frame_rgb, result.predicted)

    def refresh(self) -> None:
        f = np.asarray(self.frames)
        s = np.asarray(self.scores, float)
        self.curve.setData(f, s, connect="finite")
        spans = flagged_spans(f, s, self.threshold)
        for r in self._regions:
            self.plot.removeItem(r)
        self._regions = []
        self.spans.clear()
        for a, b in spans:
            reg = pg.LinearRegionItem((a - 0.5, b + 0.5), movable=False, brush=pg.mkBrush(229, 57, 53, 50))
            reg.setZValue(-20)
            self.plot.addItem(reg)
            self._regions.append(reg)
            it = QListWidgetItem(f"frames {a + 1}–{b + 1}")  # from 1, as the player shows
            it.setData(Qt.ItemDataRole.UserRole, a)
            self.spans.addItem(it)

    def clear_history(self) -> None:
        self.frames.clear()
        self.scores.clear()
        self.psnrs.clear()

    # --- controls --------------------------------------------------------------------------
    def set_threshold(self, value: float) -> None:
        self.line.setValue(value)
        self._on_threshold()

    def _on_threshold(self, *_) -> None:
        self.threshold = float(self.line.value())
        self.thresholdChanged.emit(self.threshold)
        self.refresh()

    def _on_plot_click(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton or not self.frames:
            return
        pos = self.plot.getPlotItem().vb.mapSceneToView(ev.scenePos())
        self.seekRequested.emit(round(min(max(pos.x(), 0.0), float(max(self.frames)))))

    def _toggle_mark(self, on: bool) -> None:
        if on and self.frames:
            a, b = min(self.frames), max(self.frames)
            self.calib.setRegion((a, a + max(1, (b - a) // 2)))
        self.calib.setVisible(on)
        self.recal_btn.setEnabled(on)

    def calibration_from_span(self, first: float, last: float) -> tuple[float, float] | None:
        """(P_min, P_max) over the recorded PSNRs of frames in [first, last]; None when the span
        has no two different finite PSNRs (a calibration needs P_max > P_min)."""
        f = np.asarray(self.frames)
        p = np.asarray(self.psnrs, float)
        sel = (f >= first) & (f <= last) & np.isfinite(p)
        if sel.sum() < 2 or p[sel].max() <= p[sel].min():
            return None
        return float(p[sel].min()), float(p[sel].max())

    def _recalibrate(self) -> None:
        lo, hi = self.calib.getRegion()
        cal = self.calibration_from_span(lo, hi)
        if cal is not None:
            self.calibrationRequested.emit(*cal)



def make_panel(model, host) -> AnomalyPanel:
    """The registry's panel factory: threshold and recalibration go to the task, clicks on the
    plot or a flagged span seek the window."""
    task = model.task
    panel = AnomalyPanel(model.engine.card.name or model.name, threshold=task.threshold)
    panel.seekRequested.connect(host.seek_to)
    panel.thresholdChanged.connect(lambda v, t=task: setattr(t, "threshold", v))

    def recalibrate(lo: float, hi: float, t=task, p=panel) -> None:
        t.set_calibration(lo, hi)
        p.apply_calibration(lo, hi)
        host.show_error(f"{model.name}: recalibrated on the marked span: PSNR {lo:.1f}–{hi:.1f} dB", "info")

    panel.calibrationRequested.connect(recalibrate)
    return panel


if __name__ == "__main__":  # a preview fed synthetic results
    from loupe.ui.panels.base import preview_app, run_preview

    app = preview_app()
    panel = AnomalyPanel("preview")
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    for i in range(60):
        s = 0.8 if 30 <= i < 38 else 0.2
        err = rng.random((60, 80)).astype(np.float32) * 0.05 * s
        panel.show_result(AnomalyResult(30.0 - 10 * s, s, s >= 0.5, err, frame, 0.5), frame, i)
    run_preview(app, panel)
