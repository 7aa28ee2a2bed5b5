"""The codebook panel in the window, offscreen: code map overlay, histogram, highlight, probe,
reconstruction, and fitting a codebook from the window (with a stand-in fit function)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
from pyqtgraph import functions as fn
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QImage

from loupe.base.media import clip_path
from loupe.tasks.codebook import code_palette
from loupe.ui.main_window import MainWindow
from loupe.ui.panels.codebook import DIM_ALPHA, CodebookPanel
from tests.helpers import make_codebook_model, run_panel_preview

CLIP = "carphone_pristine.mp4"  # 176 x 144: 22 x 18 positions at stride 8


@pytest.fixture
def win(qtbot):
    w = MainWindow(ask_task=False)
    qtbot.addWidget(w)
    w.resize(1400, 820)
    w.show()
    w.resizeDocks([w.panel_dock], [600], Qt.Orientation.Horizontal)  # bars wide enough to click
    yield w
    w.close()


def collect(win: MainWindow) -> list:
    shown: list = []
    win.frameShown.connect(shown.append)
    return shown


def load(qtbot, win, model) -> None:
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(model))


def block_means(channel: np.ndarray, s: int) -> np.ndarray:
    h, w = channel.shape
    return np.floor(channel.astype(np.float64).reshape(h // s, s, w // s, s).mean(axis=(1, 3))).astype(np.int32)


def panel_td() -> str:
    return "<td style='padding: 0 10px 0 0' align='right'>"


def rendered_rgba(item) -> np.ndarray:
    item.render()
    img = item.qimage.convertToFormat(QImage.Format.Format_RGBA8888)  # keep it alive: the array views its memory
    return fn.ndarray_from_qimage(img).copy()


def click_view(qtbot, widget, vb, x: float, y: float) -> None:
    """A left click at view coordinates (x, y) of a pyqtgraph view box inside ``widget``."""
    scene_pt = vb.mapViewToScene(QPointF(x, y))
    pt = widget.mapFromScene(scene_pt)
    qtbot.mouseClick(widget.viewport(), Qt.MouseButton.LeftButton, pos=pt)


def test_codes_overlay_histogram_highlight_and_probe(qtbot, win, tmp_path):
    load(qtbot, win, make_codebook_model(tmp_path / "cb.onnx"))
    panel = win.panels[0]
    assert isinstance(panel, CodebookPanel) and win.panel_tabs.count() == 1
    shown = collect(win)
    # paused, then stepped frame by frame: once the sixth frame is shown nothing else is coming
    # (no fixed wait for a playing clip to settle after a pause)
    win.open_source(str(clip_path(CLIP)), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=30000)
    for n in range(2, 7):
        win.step()
        qtbot.waitUntil(lambda n=n: len(shown) >= n, timeout=30000)
    assert [f.frame.index for f in shown] == [0, 1, 2, 3, 4, 5]
    fr = shown[-1]
    res = fr.results[0].result
    top = res.level("top")
    np.testing.assert_array_equal(top.codes, block_means(fr.frame.pixels[:, :, 0], 8))
    np.testing.assert_array_equal(res.level("bottom").codes, block_means(fr.frame.pixels[:, :, 1], 4))
    qtbot.waitUntil(lambda: panel.last is shown[-1].results[0].result, timeout=30000)
    res, frame = panel.last, shown[-1].frame
    top = res.level("top")
    # the overlay: the code map through a lookup table with one stable colour per code
    assert panel.overlay.image.dtype == np.uint16
    np.testing.assert_array_equal(panel.overlay.image, top.display)
    np.testing.assert_array_equal(panel.lut[:, :3], code_palette(256))
    rgba = rendered_rgba(panel.overlay)
    for y, x in ((5, 5), (70, 100), (140, 170)):
        np.testing.assert_array_equal(rgba[y, x, :3], code_palette(256)[top.display[y, x]])
    # statistics and histogram at display rate
    panel.refresh()
    distinct = len({f.frame.index for f in shown})
    assert panel.usage.frames == distinct
    stats = panel.stats.text()
    assert f"this frame</b></td>{panel_td()}{top.codes_used} of 256</td>" in stats
    assert f"session</b> ({distinct} frames)</td>{panel_td()}{panel.usage.used('top')} of 256</td>" in stats
    assert f"<b>{panel.usage.dead_pct('top'):.1f} %</b>" in stats and "dead" in stats
    xs, heights = panel.frame_bars.opts["x"], panel.frame_bars.opts["height"]
    session = panel.usage.counts["top"]
    assert len(xs) == panel.usage.used("top") == np.count_nonzero(session)  # a bar per code used so far
    assert sum(heights) == pytest.approx(100.0)
    assert list(session[panel._bar_order]) == sorted(session[session > 0], reverse=True)
    # click the first bar: the most used code in the session is highlighted, the rest dimmed
    plot_vb = panel.plot.getPlotItem().vb

    def bar_in_view() -> bool:  # the plot has ranged itself on the new bars
        (x0, x1), (y0, y1) = plot_vb.viewRange()
        return x0 < 0.0 < x1 and y0 < float(heights[0]) / 2 < y1

    qtbot.waitUntil(bar_in_view, timeout=30000)
    with qtbot.waitSignal(panel.codeHighlighted, timeout=30000) as sig:
        click_view(qtbot, panel.plot, plot_vb, 0.0, float(heights[0]) / 2)
    code = int(panel._bar_order[0])
    assert sig.args[0] == code and panel.highlight == code
    assert panel.lut[code, 3] == 255 and (np.delete(panel.lut[:, 3], code) == DIM_ALPHA).all()
    np.testing.assert_array_equal(panel.highlight_mask(), top.codes == code)
    assert f"code {code}: fires at {(top.codes == code).sum()} of" in panel.highlight_label.text()
    rgba = rendered_rgba(panel.overlay)
    shown_map = np.asarray(panel.overlay.image)  # the map the item holds now (a late frame may have replaced top's)
    assert rgba.shape[:2] == shown_map.shape
    np.testing.assert_array_equal(rgba[..., 3], np.where(shown_map == code, 255, DIM_ALPHA))
    panel.set_highlight(None)
    assert (panel.lut[:, 3] == 255).all()
    # click a position on the frame: the label says the code(s) there, for every level
    with qtbot.waitSignal(panel.probed, timeout=30000) as sig:
        click_view(qtbot, win.view, win.view.vb, 50.5, 30.5)
    want_top = int(top.codes[30 // 8, 50 // 8])
    want_bottom = int(res.level("bottom").codes[30 // 4, 50 // 4])
    assert "<b>top [3, 6]: code" in sig.args[0] and f"</span> {want_top}</b>;" in sig.args[0]  # current level bold
    assert "bottom [7, 12]: code" in sig.args[0] and sig.args[0].endswith(f"</span> {want_bottom}")
    assert panel.probe_item.isVisible()
    # the reconstruction beside the frame
    assert panel.recon_widget.isVisible()
    np.testing.assert_array_equal(panel.recon_img.image, res.reconstruction)
    assert res.reconstruction.shape == (144, 176, 3) and res.recon_psnr == np.inf
    # level picker
    panel.set_level("bottom")
    np.testing.assert_array_equal(panel.overlay.image, res.level("bottom").display)
    assert panel.highlight is None
    # a new source starts a new session
    win.open_source(str(clip_path(CLIP)), playing=False)
    qtbot.waitUntil(lambda: panel.usage.frames == 1, timeout=10000)
    assert frame.index >= 5


def test_k_codes_probe_and_highlight_mask(qtbot, win, tmp_path):
    load(qtbot, win, make_codebook_model(tmp_path / "k2.onnx", k=2, recon=False))
    panel = win.panels[0]
    assert not panel.recon_widget.isVisible()
    shown = collect(win)
    win.open_source(str(clip_path(CLIP)), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1 and panel.last is not None, timeout=10000)
    pair = panel.last.level("pair")
    px = shown[-1].frame.pixels
    red, green = block_means(px[:, :, 0], 4), block_means(px[:, :, 1], 4)
    text = panel.probe(21.0, 13.0)
    assert "pair [3, 5]: 2 codes (most active first)" in text
    assert text.index(f"</span> {red[3, 5]}") < text.rindex(f"</span> {green[3, 5]}")
    code = int(green[3, 5])  # a code that fires second somewhere
    panel.set_highlight(code)
    np.testing.assert_array_equal(panel.highlight_mask(), (red == code) | (green == code))
    assert panel.mask_item.isVisible()
    assert panel.mask_item.image.shape == pair.codes.shape[:2]


def test_codes_outside_the_codebook_show_a_message(qtbot, win, tmp_path):
    load(qtbot, win, make_codebook_model(tmp_path / "small.onnx", codebook_size=10))
    with qtbot.waitSignal(win.errorShown, timeout=20000) as sig:
        win.open_source(str(clip_path(CLIP)))
    assert "codes_top" in sig.args[0] and "outside [0, 10)" in sig.args[0]


def test_a_card_that_does_not_fit_is_refused_in_the_window(qtbot, win, tmp_path):
    bad = make_codebook_model(tmp_path / "bad.onnx", output={"levels": [{"name": "top", "output": "nope",
                                                                       "codebook_size": 8}]})
    with qtbot.waitSignal(win.errorShown, timeout=10000) as sig:
        win.add_model(str(bad))
    assert "'nope'" in sig.args[0] and not win.models


def fake_fit(cancel_after: int | None = None):
    """A stand-in for fit_codebook_clip: reports like it, writes a codebook model, returns figures."""
    calls = []

    def fit(clip, out, *, start, end, minutes, codebook_size, k, progress):
        calls.append(dict(clip=clip, start=start, end=end, minutes=minutes, codebook_size=codebook_size, k=k))
        step = 0
        while True:
            step += 1
            info = {"loss": 1.0 / step, "codes_used": 200, "perplexity": 150.0, "dead_pct": 21.875,
                    "eta_s": 3.0, "step": step, "status": "fitting 256 codes on 25 frames at 176x144"}
            progress.update(min(step / 5, 0.99), **info)
            progress.check()
            if cancel_after is None and step >= 5:
                break
            time.sleep(0.25 if cancel_after is None else 0.05)
        progress.update(1.0, "evaluating and exporting…")
        make_codebook_model(out)
        return SimpleNamespace(onnx_path=out, seconds=2.0, frames=25, codes_used=201, perplexity=151.5,
                               recon_psnr=24.5)

    fit.calls = calls
    return fit


def test_fit_a_codebook_from_the_window_loads_it(qtbot, win, tmp_path):
    from loupe.ui.fit_codebook import start_fit

    with qtbot.waitSignal(win.sourceOpened, timeout=10000):
        win.open_source(str(clip_path(CLIP)), playing=False)
    fit = fake_fit()
    out = tmp_path / "fitted.onnx"
    job = start_fit(win, str(clip_path(CLIP)), out, 0.0, 1.0, 0.5, 256, 1, fit_fn=fit)
    infos: list = []
    job.progressed.connect(lambda f, info: infos.append(info))
    assert not win.codebook_action.isEnabled()
    with qtbot.waitSignal(win.modelLoaded, timeout=30000):
        pass
    assert fit.calls[0]["end"] == 1.0 and fit.calls[0]["minutes"] == 0.5
    assert any("codes used 200 · dead 21.9 % · perplexity 150.0" in i["status"] for i in infos)
    dlg = win.codebook_dialog
    assert len(dlg.losses) >= 2 and dlg.bar.value() == 1000
    assert isinstance(win.panels[-1], CodebookPanel) and win.models[-1].engine.path == out
    assert "201 of 256 codes used" in win.banner.label.text() and "Saved" in win.banner.label.text()
    assert win.codebook_action.isEnabled() and win.fit_job is None


def test_cancel_a_codebook_fit(qtbot, win, tmp_path):
    from loupe.ui.fit_codebook import start_fit

    with qtbot.waitSignal(win.sourceOpened, timeout=10000):
        win.open_source(str(clip_path(CLIP)), playing=False)
    out = tmp_path / "never.onnx"
    job = start_fit(win, str(clip_path(CLIP)), out, 0.0, None, 0.5, 64, 2, fit_fn=fake_fit(cancel_after=1))
    with qtbot.waitSignal(job.progressed, timeout=10000):
        pass
    win.codebook_dialog.cancel_btn.click()
    qtbot.waitUntil(lambda: win.fit_job is None, timeout=10000)
    assert "cancelled; nothing was saved" in win.banner.label.text()
    assert not out.exists() and not win.models and win.codebook_action.isEnabled()


def test_fit_action_explains_what_it_needs(qtbot, win, monkeypatch):
    import loupe.ui.learn_normal as ln
    from loupe.ui.fit_job import NO_TORCH

    win.codebook_action.trigger()  # no video open
    assert "Open a video file first" in win.banner.label.text()
    monkeypatch.setattr(ln, "torch_available", lambda: False)
    with qtbot.waitSignal(win.errorShown, timeout=30000) as sig:
        win.codebook_action.trigger()
    assert sig.args[0] == NO_TORCH and "loupe[fit]" in NO_TORCH
    assert win.codebook_action.shortcut().toString() == "Ctrl+Shift+L"


def test_fit_dialog_checks_the_span(qtbot):
    from loupe.ui.fit_codebook import FitCodebookDialog

    dlg = FitCodebookDialog("clip.mp4", duration=4.0)
    qtbot.addWidget(dlg)
    assert dlg.values() == (0.0, 4.0, 2.5, 256, 1)
    dlg.span.setText("3:1")
    dlg._accept()
    assert "START < END" in dlg.error.text() and dlg.result() == 0


def test_panel_preview_runs():
    r = run_panel_preview("codebook")
    assert "top [3, 6]: code" in r.stdout and "bottom [7, 12]: 2 codes" in r.stdout


@pytest.mark.slow
def test_fit_a_codebook_for_real_with_a_tiny_budget(qtbot, win, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("loupe_models.fitters.codebook")
    from loupe.ui.fit_codebook import start_fit

    clip = str(clip_path(CLIP))
    with qtbot.waitSignal(win.sourceOpened, timeout=10000):
        win.open_source(clip, playing=False)
    out = tmp_path / "fitted.onnx"
    job = start_fit(win, clip, out, 0.0, 1.0, 0.1, 64, 1)  # 1 s of frames, 6 s budget
    infos: list = []
    job.progressed.connect(lambda f, info: infos.append(info))
    with qtbot.waitSignal(win.modelLoaded, timeout=120000):
        pass
    assert out.is_file() and isinstance(win.panels[-1], CodebookPanel)
    assert any("codes used" in i.get("status", "") for i in infos)
    assert "of 64 codes used" in win.banner.label.text()
    shown = collect(win)
    win.step()
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=10000)
    (level,) = shown[-1].results[-1].result.levels
    assert level.codebook_size == 64 and level.display.shape == (144, 176)


def test_demo_codebook_from_the_demo_menu(qtbot, win):
    from loupe.resources import resource_path

    if not resource_path("demo_codebook.onnx").is_file():
        pytest.skip("the demo codebook model is not built")
    demos = next(a.menu() for a in win.menuBar().actions()[0].menu().actions() if a.text() == "&Demo models")
    entry = next(a.menu() for a in demos.actions() if a.text().split(" — ")[0] == "codebook")
    action = next(a for a in entry.actions() if a.text() == "Load the model")
    shown = collect(win)
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        action.trigger()
    panel = win.panels[-1]
    assert isinstance(panel, CodebookPanel) and panel.recon_widget.isVisible()
    win.open_source(str(clip_path("bikes.mp4")), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1 and panel.last is not None, timeout=20000)
    (level,) = panel.last.levels
    assert level.display.shape == (272, 640) and level.codes_used > 20
    assert panel.last.reconstruction.shape == (136, 320, 3) and panel.last.recon_psnr > 20
