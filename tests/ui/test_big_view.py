"""Panels' pictures in the main view ("Show in main view"), heatmaps a person can see with a
colour bar, and the panels' small defects of issue 15 (history across seeks, swatch borders,
plural, threshold label)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QRectF

from loupe.tasks.anomaly import AnomalyResult
from loupe.tasks.density import DensityResult


def blob(h: int, w: int, cy: float, cx: float, total: float, sigma: float = 4.0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)).astype(np.float32)
    return d * np.float32(total / d.sum())


def rendered_alpha(item: pg.ImageItem) -> np.ndarray:
    """The alpha channel the item draws (its lookup table applied by pyqtgraph's own renderer)."""
    item.render()
    q = item.qimage.convertToFormat(item.qimage.Format.Format_RGBA8888)
    a = np.frombuffer(q.constBits(), np.uint8).reshape(q.height(), q.bytesPerLine() // 4, 4)
    return a[:, : q.width(), 3].copy()


def test_a_small_count_density_map_is_visible_and_has_a_colour_bar(qtbot):
    from loupe.ui.panels.density import DensityPanel

    # a card whose top of range is far above this clip's densities (bikes.mp4: count 2.6)
    panel = DensityPanel("bikes", display_max=0.5)
    qtbot.addWidget(panel)
    d = blob(90, 160, 40, 60, total=1.6) + blob(90, 160, 60, 120, total=1.0)
    panel.show_result(DensityResult(d, float(d.sum()), None, 0.5), (360, 640), 0)
    assert panel.levels_max < 0.5 * d.max() * 2  # the range follows the clip, not the card's cap
    alpha = rendered_alpha(panel.overlay).astype(float) / 255 * panel.overlay.opacity()
    peaks = [(40, 60), (60, 120)]
    for y, x in peaks:
        assert alpha[y, x] > 0.6, f"people at ({x}, {y}) hardly show: alpha {alpha[y, x]:.2f}"
    assert alpha[5, 5] < 0.05  # empty ground stays clear
    # the bar names its unit and the range the map is drawn with
    lo, hi = panel.colour_bar.labels()
    assert lo == "0" and "count/px" in hi and float(hi.split()[0]) == pytest.approx(panel.levels_max, rel=1e-2)
    # a range the user sets wins over the clip's
    panel.range_box.setValue(1.0)
    panel.show_result(DensityResult(d, float(d.sum()), None, 0.5), (360, 640), 1)
    assert panel.levels_max == 1.0 and panel.colour_bar.hi == 1.0


def test_seeking_back_keeps_the_density_history_a_new_source_clears_it(qtbot):
    from loupe.ui.panels.density import DensityPanel

    panel = DensityPanel("d", display_max=1.0)
    qtbot.addWidget(panel)
    d = blob(30, 40, 10, 10, 2.0)
    for i in range(10):
        panel.show_result(DensityResult(d * (1 + i / 10), 2.0 * (1 + i / 10), None, 1.0), (30, 40), i)
    panel.show_result(DensityResult(d, 5.0, None, 1.0), (30, 40), 3)  # a seek back to frame 3
    x, y = panel.curve.getData()
    assert list(x) == list(range(10)) and y[3] == 5.0 and y[9] == pytest.approx(3.8)
    panel.reset_series()
    assert panel.curve.getData()[0] is None or len(panel.curve.getData()[0]) == 0


def _anomaly_result(pred: np.ndarray, score: float = 0.3) -> AnomalyResult:
    err = np.zeros(pred.shape[:2], np.float32)
    return AnomalyResult(30.0, score, False, err, pred, 0.5)


def test_anomaly_pair_shows_in_the_main_view_and_the_threshold_label_is_whole(qtbot):
    from loupe.ui.panels.anomaly import AnomalyPanel

    view = pg.GraphicsLayoutWidget()
    qtbot.addWidget(view)
    vb = view.addViewBox(lockAspect=True, invertY=True)
    panel = AnomalyPanel("a")
    qtbot.addWidget(panel)
    panel.attach(vb)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    pred = np.full_like(frame, 128)
    for i in range(3):
        panel.show_result(_anomaly_result(pred), frame, i)
    assert not panel.big.image.isVisible()
    panel.big.button.click()
    assert panel.big.image.isVisible() and panel.big.backdrop.isVisible()
    shown = panel.big.image.image
    assert shown.shape == (60, 160, 3)
    np.testing.assert_array_equal(shown[:, :80], frame)
    np.testing.assert_array_equal(shown[:, 80:], pred)
    r = panel.big.image.mapRectToParent(panel.big.image.boundingRect())
    assert QRectF(0, 0, 80, 60).contains(r) and r.width() == pytest.approx(80)  # the frame's rectangle
    panel.show_result(_anomaly_result(pred // 2), frame, 3)  # follows playback
    np.testing.assert_array_equal(panel.big.image.image[:, 80:], pred // 2)
    panel.big.button.click()
    assert not panel.big.image.isVisible()
    # the error heatmap has a colour bar with its unit
    assert "error" in panel.colour_bar.labels()[1]
    # the threshold's label lies wholly inside the plot
    panel.resize(360, 500)
    panel.show()
    qtbot.wait(50)
    label = panel.line.label
    plot_rect = panel.plot.getPlotItem().vb.sceneBoundingRect()
    assert plot_rect.contains(label.sceneBoundingRect()), (plot_rect, label.sceneBoundingRect())
    panel.detach()
    assert panel.big.image.scene() is None


def test_compression_streams_and_split_show_in_the_main_view(qtbot):
    from loupe.ui.panels.compression import CompressionPanel

    view = pg.GraphicsLayoutWidget()
    qtbot.addWidget(view)
    vb = view.addViewBox(lockAspect=True, invertY=True)
    panel = CompressionPanel("c")
    qtbot.addWidget(panel)
    panel.attach(vb)
    orig = np.full((40, 60, 3), 200, np.uint8)
    recon = np.full((40, 60, 3), 100, np.uint8)
    panel.original, panel.neural, panel._frame_hw = orig, recon, (40, 60)
    panel.big.button.click()
    panel.refresh_frames()
    img = panel.big.image.image
    assert img.shape == (80, 120, 3)  # 2 x 2: original, neural, and the codecs (grey until Compare)
    assert (img[:40, :60] == 200).all() and (img[:40, 60:] == 100).all() and (img[40:] == 60).all()
    assert len(panel.big.labels) == 4 and panel.big.labels[0].toPlainText().startswith("original")
    panel.set_split("original", "neural", x=30)
    img = panel.big.image.image
    assert img.shape == (40, 60, 3) and (img[:, :29] == 200).all() and (img[:, 31:] == 100).all()
    panel.shutdown()


def test_legend_swatches_have_a_border_and_one_slice_is_singular(qtbot):
    from loupe.tasks.segmentation import SegmentationResult
    from loupe.ui.panels.segmentation import SegmentationPanel

    palette = np.array([[0, 0, 0], [252, 252, 252]], np.uint8)
    panel = SegmentationPanel(("background", "fat"), palette, "s")
    qtbot.addWidget(panel)
    img = panel.table.item(1, 0).icon().pixmap(14, 14).toImage()
    edge, inside = img.pixelColor(0, 0), img.pixelColor(7, 7)
    assert inside.red() > 240 and edge.red() < 160  # a near-white class still shows on white
    panel.slice_spacing_mm = 2.0
    panel.slice_mm2 = {0: np.array([0.0, 10.0])}
    cm = np.zeros((4, 4), np.uint8)
    res = SegmentationResult(cm, cm, np.array([0.5, 0.5]), ("background", "fat"), np.array([0.0, 10.0]))
    panel.update_legend(res)
    assert "over the 1 slice shown" in panel.hint.text()
