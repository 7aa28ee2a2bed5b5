"""The depth panel on a ramp model's results (tests/depth_models.py): the colour bar's range and
unit, the value under the cursor in the card's unit, the per-clip range growing and starting again
for a new source, a fixed range (the card's or typed), the median plot seeking, settings kept."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from loupe.inference.card import InputSpec
from loupe.inference.engine import Engine
from loupe.sources.base import Frame
from loupe.tasks.depth import DepthResult, DepthTask
from loupe.ui.panels.depth import (
    COLOUR_MAP_KEY,
    OPACITY_KEY,
    RANGE_MODE_KEY,
    REVERSE_KEY,
    DepthPanel,
    depth_lut,
    make_panel,
)
from tests.depth_models import make_ramp_depth_model
from tests.helpers import FakeHost

LETTERBOX = InputSpec(color="RGB", scale=1 / 255, fixed_size=(320, 320), letterbox=True)
PADDED = InputSpec(color="RGB", scale=1 / 255, size_multiple=32)


def model_of(task) -> SimpleNamespace:
    return SimpleNamespace(task=task, name="depth.onnx", engine=SimpleNamespace(card=task.card))


def feed(panel, task, hw, index=0):
    frame = Frame(np.full((*hw, 3), 90, np.uint8), index, 0.0)
    feeds, ctx = task.prepare(frame)
    res = task.postprocess(task.engine.run(feeds), ctx)
    panel.update_from(res, frame, True)
    return res


@pytest.fixture
def host(tmp_path):
    return FakeHost(tmp_path)


def metric_task(tmp_path, **output):
    path = make_ramp_depth_model(tmp_path / "m.onnx", spec=LETTERBOX, stride=2, base=0.5, a_row=0.01, a_col=0.0,
                                 output={"kind": "metric", "unit": "m", **output})
    return DepthTask(Engine(path))


def test_colour_bar_and_readout_in_metres(qtbot, host, tmp_path):
    task = metric_task(tmp_path)
    panel = make_panel(model_of(task), host)
    qtbot.addWidget(panel)
    res = feed(panel, task, (360, 640))
    assert panel.mode == "clip" and panel.colour_bar.unit == "m"
    # per clip: the frame's 1st-99th percentiles (rows 35-124 of 0.5 + 0.01 * (2 row + 0.5) m)
    assert (panel.colour_bar.lo, panel.colour_bar.hi) == pytest.approx((res.low, res.high))
    lo_text, hi_text = panel.colour_bar.labels()
    assert lo_text == f"{res.low:.3g}" and hi_text == f"{res.high:.3g} m"
    assert hi_text.endswith(" m") and 0.5 + 0.01 * 70.5 < res.low < res.high <= 0.5 + 0.01 * 248.5 + 1e-6
    assert (panel.lo_box.value(), panel.hi_box.value()) == pytest.approx((res.low, res.high), abs=1e-3)
    # frame pixel (100, 50): output row 47 -> 0.5 + 0.01 * 94.5 = 1.445 m
    assert panel.value_at(100, 50) == "1.45 m"
    assert panel.value_at(700, 50) is None
    assert panel.median_label.text() == f"median {res.depth_median:.3g} m"
    assert "metric depth; larger = farther" in panel.meaning_label.text()
    # the overlay covers the frame, in its colour map's 256 levels
    assert panel.overlay.image.shape == (360, 640) and panel.overlay.image.dtype == np.uint8
    assert panel.overlay.boundingRect().width() == 640


def test_per_clip_range_grows_then_starts_again_for_a_new_source(qtbot, host, tmp_path):
    task = DepthTask(Engine(make_ramp_depth_model(tmp_path / "d.onnx", spec=PADDED, stride=2)))
    panel = make_panel(model_of(task), host)
    qtbot.addWidget(panel)
    small = feed(panel, task, (41, 61), 0)
    assert (panel.colour_bar.lo, panel.colour_bar.hi) == pytest.approx((small.low, small.high))
    large = feed(panel, task, (61, 41), 1)  # taller: reaches further down the ramp
    assert panel.colour_bar.hi == pytest.approx(large.high) and large.high > small.high
    assert panel.colour_bar.lo == pytest.approx(min(small.low, large.low))
    feed(panel, task, (41, 61), 2)  # a smaller frame again: the range does not shrink
    assert panel.colour_bar.hi == pytest.approx(large.high)
    assert panel.colour_bar.unit == "(relative)" and panel.value_at(0, 0) == f"{small.values[0, 0]:.3g} (relative)"
    panel.reset_series()
    again = feed(panel, task, (41, 61), 0)
    assert (panel.colour_bar.lo, panel.colour_bar.hi) == pytest.approx((again.low, again.high))
    xs, ys = panel.curve.getData()
    assert list(xs) == [0] and ys[0] == pytest.approx(again.depth_median)


def test_fixed_range_from_the_card_and_typed_by_the_user(qtbot, host, tmp_path):
    task = metric_task(tmp_path, range=[0.0, 5.0])
    panel = make_panel(model_of(task), host)
    qtbot.addWidget(panel)
    feed(panel, task, (360, 640))
    assert panel.mode == "fixed" and (panel.colour_bar.lo, panel.colour_bar.hi) == (0.0, 5.0)
    assert panel.colour_bar.labels() == ("0", "5 m")
    # the map drawn over that range (levels 1-255): 1.445 m of 5 is level 74 at frame pixel (100, 50)
    assert abs(int(panel.overlay.image[50, 100]) - round(1 + 1.445 / 5 * 254)) <= 1
    panel.set_range_mode("clip")
    assert panel.colour_bar.hi < 5.0
    panel.hi_box.setValue(3.0)  # typing a bound fixes the range there
    assert panel.mode == "fixed" and panel.colour_bar.hi == 3.0
    assert str(host.settings.value(RANGE_MODE_KEY)) == "fixed"
    # the last mode chosen holds for a card without a range (a fixed one then has none: per clip)
    host.settings.setValue(RANGE_MODE_KEY, "clip")
    card_range = make_panel(model_of(task), host)
    qtbot.addWidget(card_range)
    assert card_range.mode == "fixed"  # the card's range comes with its mode
    plain = DepthTask(Engine(make_ramp_depth_model(tmp_path / "p.onnx", output={"kind": "metric"})))
    host.settings.setValue(RANGE_MODE_KEY, "fixed")
    no_range = make_panel(model_of(plain), host)
    qtbot.addWidget(no_range)
    assert no_range.mode == "clip"


def test_median_plot_seeks_and_settings_are_kept(qtbot, host, tmp_path):
    task = metric_task(tmp_path)
    panel = make_panel(model_of(task), host)
    qtbot.addWidget(panel)
    for i in range(3):
        feed(panel, task, (360, 640), i)
    xs, _ = panel.curve.getData()
    assert list(xs) == [0, 1, 2]
    panel.show()
    panel.resize(400, 600)
    qtbot.wait(30)
    vb = panel.plot.getPlotItem().vb
    vb.setXRange(0, 2, padding=0)
    qtbot.wait(10)
    y_mid = sum(vb.viewRange()[1]) / 2
    pt = panel.plot.mapFromScene(vb.mapViewToScene(QPointF(1.1, y_mid)))
    qtbot.mouseClick(panel.plot.viewport(), Qt.MouseButton.LeftButton, pos=pt)  # a click near frame 1
    assert host.seeks == [1]
    panel.opacity.setValue(35)
    panel.cmap_box.setCurrentText("viridis")
    panel.reverse_box.setChecked(True)
    assert float(host.settings.value(OPACITY_KEY)) == pytest.approx(0.35)
    assert host.settings.value(COLOUR_MAP_KEY) == "viridis"
    assert str(host.settings.value(REVERSE_KEY)).lower() == "true"
    again = make_panel(model_of(task), host)
    qtbot.addWidget(again)
    assert again.opacity.value() == 35 and again.overlay.opacity() == pytest.approx(0.35)
    assert again.cmap_box.currentText() == "viridis" and again.reverse_box.isChecked()
    # reversed: the colour bar's table runs the other way (row 0 of the overlay's table stays clear)
    np.testing.assert_array_equal(again.colour_bar.lut, depth_lut("viridis")[1:][::-1])
    assert again.overlay.lut[0, 3] == 0 and (again.overlay.lut[1:, 3] == 255).all()


def test_no_value_is_drawn_clear_and_read_as_nothing(qtbot):
    panel = DepthPanel("m", unit="m", kind="metric")
    qtbot.addWidget(panel)
    d = np.full((4, 6), 2.0, np.float32)
    d[1:, 3:] = np.nan
    d[0, 5] = np.inf
    panel.show_result(DepthResult(d, d, 2.0, 2.0, 2.0, 2.0, 2.0, "m", (4, 6)), (4, 6), 0)
    img = panel.overlay.image
    assert (img[1:, 3:] == 0).all() and img[0, 5] == 0 and (img[:, :3] > 0).all()
    assert panel.value_at(4.5, 2.5) is None and panel.value_at(0.5, 0.5) == "2 m"
    none = np.full((4, 6), np.nan, np.float32)
    panel.show_result(DepthResult(none, none, None, None, None, None, None, "m", (4, 6)), (4, 6), 1)
    assert panel.median_label.text() == "median — (no finite value)" and (panel.overlay.image == 0).all()


def test_a_depth_model_in_the_window_draws_and_reads_out_metres(qtbot, win, tmp_path):
    from loupe.base.media import clip_path
    from loupe.ui.panels.depth import DepthPanel

    model = make_ramp_depth_model(tmp_path / "depth.onnx", spec=PADDED, stride=4, base=40.0, a_row=-0.2, a_col=0.0,
                                  output={"kind": "metric", "unit": "m"})
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(model))
    panel = win.panels[0]
    assert isinstance(panel, DepthPanel) and panel.overlay in win.view.vb.addedItems
    win.open_source(str(clip_path("bikes.mp4")), playing=False)
    qtbot.waitUntil(lambda: panel.last is not None, timeout=30000)
    r = panel.last
    h, w = r.frame_hw
    assert r.values.shape == (-(-h // 4), w // 4) and panel.overlay.image.shape == (h, w)  # 272 rows: 68 cells
    # frame row 100: output row 25, centred on input row 101.5 -> 40 - 20.3 m
    win.readout.track(10.0, 100.0)
    assert win.readout.text().endswith("|   19.7 m")
    assert r.depth_max == pytest.approx(40.0 - 0.2 * 1.5, abs=1e-4)


def test_the_panel_says_what_the_values_mean(qtbot):
    cases = [(dict(unit="m", kind="metric"), "metric depth; larger = farther", "m"),
             (dict(unit="", kind="relative", inverse=True),
              "relative values (no unit); larger = nearer (inverse depth, disparity-like)", "(relative)"),
             (dict(unit="", kind="relative"), "relative values (no unit)", "(relative)")]
    for kw, meaning, bar in cases:
        panel = DepthPanel("m", **kw)
        qtbot.addWidget(panel)
        assert panel.meaning_label.text() == meaning and panel.colour_bar.unit == bar
