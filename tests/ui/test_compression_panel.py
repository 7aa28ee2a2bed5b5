"""The compression panel: live original vs reconstruction, the comparison report's plots, table,
rate-distortion, worst frames, split view and CSV export; "Fit HNeRV on this clip".

The model is a real compression ONNX built here (a Gather over a table of noised, downscaled
carphone frames), the report the real ``loupe.run.compression_report`` on its first 12 frames."""

from __future__ import annotations

import csv
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from loupe.base.errors import LoupeError
from loupe.base.media import clip_path
from loupe.base.quality import psnr_planes, rgb_to_yuv420
from loupe.sources.base import Frame
from loupe.ui.panels.compression import CompressionPanel, compose_split
from tests.ui.compression_fixtures import CLIP, clip_frames, make_table_model

N = 12
SIZE = (72, 88)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_table_model(tmp_path_factory.mktemp("cmp") / "table.onnx", n=N, size=SIZE)


@pytest.fixture(scope="module")
def report(model):
    from loupe.run.compression_report import build_report

    return build_report(str(model[0]), CLIP, max_frames=N)


@pytest.fixture(scope="module")
def targets():
    return np.stack([cv2.resize(f, SIZE[::-1], interpolation=cv2.INTER_AREA) for f in clip_frames(N)])


def yuv_psnr(a, b) -> float:
    return psnr_planes(rgb_to_yuv420(a), rgb_to_yuv420(b))["all"]


@pytest.fixture
def panel(qtbot, model):
    from loupe.inference.engine import Engine

    eng = Engine(str(model[0]), providers="cpu")
    p = CompressionPanel("test", output=eng.card.output, model_path=str(model[0]), clip=lambda: str(clip_path(CLIP)))
    qtbot.addWidget(p)
    p.resize(560, 900)
    p.show()
    p.engine = eng
    yield p
    p.shutdown()


def show(panel, i: int) -> None:
    """Frame i through the real task, as the window does."""
    from loupe.tasks.compression import CompressionTask

    task = CompressionTask(panel.engine)
    frame = Frame(clip_frames(i + 1)[i], i, i / 29.97)
    feeds, ctx = task.prepare(frame)
    panel.update_from(task.postprocess(panel.engine.run(feeds), ctx), frame, True)


def test_live_view_shows_original_and_reconstruction(panel, model, targets):
    show(panel, 2)
    np.testing.assert_array_equal(panel.images["original"].image, targets[2])
    np.testing.assert_array_equal(panel.images["neural"].image, model[1][2])
    assert panel.images["h264"].image is None  # nothing before a comparison
    assert f"PSNR {yuv_psnr(targets[2], model[1][2]):.2f} dB" in panel.live_label.text()
    assert panel.overlay.image is None  # the error map is computed only when asked for
    panel.error_box.setChecked(True)
    err = np.abs(targets[2].astype(int) - model[1][2].astype(int)).mean(axis=2)
    np.testing.assert_allclose(panel.overlay.image, err, atol=1e-4)
    assert panel.overlay.opacity() > 0.5
    show(panel, 3)
    np.testing.assert_allclose(panel.overlay.image, np.abs(targets[3].astype(int) - model[1][3].astype(int)).mean(axis=2),
                               atol=1e-4)


def test_report_fills_plots_table_rd_and_worst_frames(qtbot, panel, report):
    show(panel, 0)
    panel.set_report(report)
    assert list(panel.psnr_curves) == ["neural", "h264", "h265"]
    for m, c in panel.psnr_curves.items():
        x, y = c.getData()
        assert list(x) == list(range(1, N + 1)) and np.allclose(y, report.per_frame(m, "psnr"))  # frames from 1
        assert np.all((y > 20) & (y < 80))
    assert all(len(c.getData()[0]) == N for c in panel.ssim_curves.values())
    assert panel.table.rowCount() == len(report.methods) == 7
    assert panel.table.item(0, 1).text() == f"{report.pooled('neural')['psnr_pooled']:.2f}"
    assert panel.table.item(0, 4).text() != "" and panel.table.item(1, 4).text() == ""
    rd = {d.name(): d.getData() for d in panel.rd_plot.listDataItems()}
    assert sorted(len(x) for x, _ in rd.values()) == [1, 3, 3]
    # the codec frames at matched bits appear in the grid (converted from YUV on the panel's frame thread)
    qtbot.waitUntil(lambda: panel.images["h264"].image is not None, timeout=10000)
    np.testing.assert_array_equal(panel.images["h264"].image, report.frame_rgb("h264", 0))
    # moving the player moves the plot line
    show(panel, 6)
    assert [ln.value() for ln in panel.lines] == [7, 7]  # the plots count frames from 1, as the player
    # clicking a worst frame seeks there
    worst = report.worst("h265", 5)[0][0]
    items = [panel.worst_list.item(i) for i in range(panel.worst_list.count())]
    start = next(k for k, it in enumerate(items) if it.text().startswith(report.methods["h265"].label))
    with qtbot.waitSignal(panel.seekRequested) as sig:
        panel.worst_list.itemClicked.emit(items[start + 1])
    assert sig.args == [worst]
    with qtbot.waitSignal(panel.seekRequested) as sig:
        panel.seek_plot(4.4)  # frame number 4 (from 1) is index 3
    assert sig.args == [3]


def test_split_view_left_and_right_from_different_streams(qtbot, panel, report, targets):
    show(panel, 1)
    panel.set_report(report)
    panel.set_split("original", "h264", x=30)
    qtbot.waitUntil(lambda: panel.split_composed is not None, timeout=10000)
    comp = panel.split_composed
    h264 = report.frame_rgb("h264", 1)
    assert not np.array_equal(targets[1], h264)
    np.testing.assert_array_equal(comp[:, :30], targets[1][:, :30])
    np.testing.assert_array_equal(comp[:, 30:], h264[:, 30:])
    panel.divider.setValue(60)  # dragging the divider recomposes
    np.testing.assert_array_equal(panel.split_composed[:, :60], targets[1][:, :60])
    np.testing.assert_array_equal(panel.split_composed[:, 60:], h264[:, 60:])
    with pytest.raises(ValueError):
        compose_split(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 3, 3), np.uint8), 1)


def test_csv_export(panel, report, tmp_path):
    with pytest.raises(ValueError):
        panel.export_csv(str(tmp_path / "none.csv"))
    panel.set_report(report)
    assert panel.csv_btn.isEnabled()
    out = tmp_path / "r.csv"
    panel.export_csv(str(out))
    rows = list(csv.DictReader(out.open()))
    assert [r["frame"] for r in rows] == [str(i) for i in range(N)] + ["pooled", "mean"]
    assert float(rows[4]["psnr_neural"]) == pytest.approx(report.per_frame("neural", "psnr")[4], abs=1e-3)


def test_compare_runs_off_the_ui_thread_reports_errors_and_cancels(qtbot, panel, report):
    from loupe.base.quality import AlignmentError

    seen = {}

    def build(model, clip, codecs, sizes, progress):
        seen["thread"] = threading.current_thread()
        progress.update(0.5, "half")
        return report

    panel._build_report = build
    with qtbot.waitSignal(panel.reportReady, timeout=10000):
        panel.compare()
    assert seen["thread"] is not threading.main_thread()
    assert panel.report is report and panel.compare_btn.isEnabled()

    def misaligned(*a, **k):
        raise AlignmentError("the model decodes 12 frames, carphone_pristine.mp4 has 120")

    panel._build_report = misaligned
    with qtbot.waitSignal(panel.reportFailed, timeout=10000):
        panel.compare()
    assert "has 120" in panel.status.text() and panel.status.isVisible()
    assert panel.report is None and not panel.psnr_curves  # no number shown from a misaligned pair

    def slow(model, clip, codecs, sizes, progress):
        while not progress.cancelled:
            time.sleep(0.01)
        return None

    panel._build_report = slow
    panel.compare()
    panel.cancel()
    qtbot.waitUntil(lambda: panel.job is None, timeout=10000)
    assert "cancelled" in panel.status.text()


def test_whole_clip_against_a_12_frame_model_is_refused_with_the_reason(qtbot, panel):
    panel._build_report = None  # the real build_report: 12 model frames vs 120 in the clip
    with qtbot.waitSignal(panel.reportFailed, timeout=30000) as sig:
        panel.compare()
    assert "12 frames" in sig.args[0] and "120" in sig.args[0]
    assert "12 frames" in panel.status.text() and panel.report is None


# --- in the window ------------------------------------------------------------------------
def test_window_live_view_report_seek_and_split(qtbot, model, targets):
    from loupe.ui.main_window import MainWindow

    win = MainWindow(ask_task=False, providers="cpu")
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(model[0]))
    panel = win.panels[0]
    assert isinstance(panel, CompressionPanel) and win.panel_tabs.currentWidget() is panel
    shown: list = []
    win.frameShown.connect(shown.append)
    win.open_source(str(clip_path(CLIP)), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=10000)
    win.seek_to(4)
    qtbot.waitUntil(lambda: shown[-1].frame.index == 4, timeout=10000)
    qtbot.waitUntil(lambda: panel.index == 4 and "frame 5:" in panel.live_label.text(), timeout=30000)  # from 1
    np.testing.assert_array_equal(panel.images["original"].image, targets[4])
    np.testing.assert_array_equal(panel.images["neural"].image, model[1][4])
    expected = yuv_psnr(targets[4], model[1][4])
    assert 25 < expected < 45 and f"PSNR {expected:.2f} dB" in panel.live_label.text()

    # the comparison, on its worker thread (12 frames: the model has no more)
    with qtbot.waitSignal(panel.reportReady, timeout=120000):
        job = panel.compare(max_frames=N)
        assert job is not None and job.isRunning() and not panel.compare_btn.isEnabled()
    for c in panel.psnr_curves.values():
        assert len(c.getData()[0]) == N
    # the player moves the plot line
    win.seek_to(9)
    qtbot.waitUntil(lambda: [ln.value() for ln in panel.lines] == [10, 10], timeout=10000)  # x from 1
    # a worst frame seeks the player there
    items = [panel.worst_list.item(i) for i in range(panel.worst_list.count())]
    target = next(it for it in items if it.data(256) is not None and it.data(256) != 9)
    panel.worst_list.itemClicked.emit(target)
    qtbot.waitUntil(lambda: shown[-1].frame.index == target.data(256), timeout=10000)
    qtbot.waitUntil(lambda: panel.lines[0].value() == target.data(256) + 1, timeout=10000)
    # ... and lands on the frame it names: "frame 7" in the list is "frame 7 / N" in the player
    named = target.text().split()[1]
    assert win.pos_label.text().startswith(f"frame {named} / ")
    # split: left the original, right H.265, in the grabbed panel too
    i = target.data(256)
    panel.set_split("original", "h265", x=44)
    qtbot.waitUntil(lambda: panel.split_composed is not None, timeout=10000)
    h265 = panel.report.frame_rgb("h265", i)
    np.testing.assert_array_equal(panel.split_composed[:, :44], targets[i][:, :44])
    np.testing.assert_array_equal(panel.split_composed[:, 44:], h265[:, 44:])
    img = panel.split.grab().toImage()
    assert img.width() > 100
    # a frame past the model's 12 says so instead of a number
    win.seek_to(50)
    qtbot.waitUntil(lambda: "past the 12 frames" in panel.live_label.text(), timeout=10000)
    win.close()


# --- Fit HNeRV on this clip ----------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    seconds: float
    frames: int
    size: tuple
    needs_gpu: bool
    message: str


def test_fit_dialog_shows_the_estimate_and_says_when_a_gpu_is_needed(qtbot):
    from loupe.ui.fit_hnerv import FitHNeRVDialog

    asked = []

    def estimate(clip, params):
        asked.append(params)
        if params > 0.5e6:
            return Estimate(3 * 3600.0, 132, (720, 1280), True, "132 frames 720x1280: about 180 min on this CPU")
        return Estimate(420.0, 120, (144, 176), False, "")  # no message: the dialog words it

    dlg = FitHNeRVDialog(str(clip_path(CLIP)), estimate=estimate)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: "about 7 min" in dlg.estimate_label.text(), timeout=30000)
    assert "120 frames at 176x144" in dlg.estimate_label.text() and "GPU" not in dlg.estimate_label.text()
    dlg.budget.setCurrentIndex(2)  # 1M
    qtbot.waitUntil(lambda: "needs a GPU" in dlg.estimate_label.text(), timeout=30000)
    assert dlg.params == 1e6 and asked[-1] == 1e6 and "about 180 min on this CPU" in dlg.estimate_label.text()

    def broken(clip, params):
        raise LoupeError("cannot read the clip")

    dlg2 = FitHNeRVDialog("missing.mp4", estimate=broken)
    qtbot.addWidget(dlg2)
    qtbot.waitUntil(lambda: "could not estimate: cannot read the clip" in dlg2.estimate_label.text(), timeout=30000)


def test_fit_without_torch_says_how_to_get_it(qtbot, monkeypatch):
    import loupe.ui.learn_normal as ln
    from loupe.ui.main_window import MainWindow

    win = MainWindow(ask_task=False)
    qtbot.addWidget(win)
    monkeypatch.setattr(ln, "torch_available", lambda: False)
    with qtbot.waitSignal(win.errorShown, timeout=30000) as sig:
        win.hnerv_action.trigger()
    assert "pip install 'loupe[fit]'" in sig.args[0]
    monkeypatch.setattr(ln, "torch_available", lambda: True)
    win.hnerv_action.trigger()  # no clip open: a notice, no dialog
    assert not win.banner.isHidden() and "Open a video file first" in win.banner.label.text()
    win.close()


def test_fit_job_reports_psnr_so_far_and_loads_the_model(qtbot, model, tmp_path):
    """The fitting Job plumbing with a stand-in fitting function (the real fit is tested in models/)."""
    from loupe.ui.fit_hnerv import start_fit
    from loupe.ui.main_window import MainWindow

    @dataclass
    class Result:
        onnx_path: Path
        codec_path: Path
        psnr: float
        ssim: float
        bpp: float
        bits: int
        seconds: float
        frames: int
        epochs: int

    def fit(clip, out, *, params, minutes, progress):
        for e in range(3):
            progress.update((e + 1) / 3, epoch=e + 1, psnr=20.0 + e, loss=0.1 / (e + 1), eta_s=3 - e)
            progress.check()
        return Result(model[0], model[0], 31.5, 0.93, 0.5, 1000, 1.0, N, 3)

    win = MainWindow(ask_task=False, providers="cpu")
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.modelLoaded, timeout=20000):
        start_fit(win, str(clip_path(CLIP)), 0.1e6, 1.0, tmp_path / "m.onnx", fit_fn=fit)
        assert not win.hnerv_action.isEnabled()
    assert "epoch 3 · PSNR so far 22.00 dB" in win.hnerv_dialog.status.text()
    assert "RGB PSNR 31.50 dB" in win.banner.label.text() and win.hnerv_action.isEnabled()
    assert isinstance(win.panels[0], CompressionPanel)
    win.close()



def test_demo_model_live_figures_equal_loupe_quality(qtbot):
    """The shipped demo on its clip: the panel's frames are the card's crop and the decoder's
    output, and the PSNR/SSIM it shows are loupe.base.quality's figures for that pair."""
    from loupe.base.quality import ssim_planes
    from loupe.inference.engine import Engine
    from loupe.resources import resource_path
    from loupe.ui.main_window import MainWindow

    demo = resource_path("demo_hnerv.onnx")
    if not Path(demo).is_file():
        pytest.skip("no demo_hnerv.onnx in resources/")
    crop = Engine(str(demo), providers="cpu").card.output.get("crop") or [0, 0, 144, 176]
    win = MainWindow(ask_task=False, providers="cpu")
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.modelLoaded, timeout=20000):
        win.add_model(str(demo))
    panel = win.panels[0]
    shown: list = []
    win.frameShown.connect(shown.append)
    win.open_source(str(clip_path(CLIP)), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=10000)
    win.seek_to(30)
    qtbot.waitUntil(lambda: shown[-1].frame.index == 30 and panel.index == 30, timeout=10000)
    panel.refresh()  # images are redrawn at display rate; the status timer would catch up a moment later
    t, left, h, w = crop
    target = clip_frames(31)[30][t:t + h, left:left + w]
    np.testing.assert_array_equal(panel.images["original"].image, target)
    recon = panel.images["neural"].image
    psnr = yuv_psnr(target, recon)
    ssim = ssim_planes(rgb_to_yuv420(target), rgb_to_yuv420(recon))["all"]
    assert 28 < psnr < 50
    qtbot.waitUntil(lambda: f"PSNR {psnr:.2f} dB" in panel.live_label.text(), timeout=30000)
    assert f"SSIM {ssim:.4f}" in panel.live_label.text()
    win.close()
