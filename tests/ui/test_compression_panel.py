"""The compression panel: live original vs reconstruction, the comparison report's plots, table,
rate-distortion, worst frames, split view and CSV export; "Fit HNeRV on this clip"."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

import numpy as np
import pytest

from loupe.sources.base import Frame
from loupe.ui.panels.compression import CompressionPanel, compose_split
from tests.ui.compression_fixtures import clip_frames


def _psnr(a, b):
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


@dataclass
class FakeReport:
    """Stands in for loupe.compression_report.CompressionReport until that lands."""

    streams_rgb: dict
    bpps: dict
    methods: list = field(default_factory=list)

    def __post_init__(self):
        ref = self.streams_rgb["original"]
        self._psnr = {m: np.array([_psnr(r, d) for r, d in zip(ref, self.streams_rgb[m.split("@")[0]])])
                      - (0 if "@" not in m else 3 * (1 - float(m.split("@")[1]))) for m in self.methods}

    def per_frame(self, method, metric):
        p = self._psnr[method]
        return p if metric == "psnr" else 1 - 1 / p

    def pooled(self, method):
        p = self._psnr[method]
        return {"psnr_pooled": float(p.mean() - 0.1), "psnr_mean": float(p.mean()), "ssim_mean": float((1 - 1 / p).mean()),
                "psnr_rgb": float(p.mean() + 1)}

    def bpp(self, method):
        return self.bpps[method]

    def worst(self, method, n=5):
        p = self._psnr[method]
        order = np.argsort(p)[:n]
        return [(int(i), float(p[i])) for i in order]

    def frame(self, stream, index):
        return self.streams_rgb[stream.split("@")[0]][index]

    def to_csv(self, path):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["frame", "method", "psnr", "ssim"])
            for m in self.methods:
                for i, (p, s) in enumerate(zip(self.per_frame(m, "psnr"), self.per_frame(m, "ssim"))):
                    w.writerow([i, m, p, s])


@dataclass(frozen=True)
class FakeResult:
    reconstruction: np.ndarray
    psnr: float
    ssim: float
    bpp: float


N = 8


@pytest.fixture(scope="module")
def streams():
    rng = np.random.default_rng(1)
    orig = clip_frames(N)
    def noised(s):
        return np.clip(orig.astype(np.float32) + rng.normal(0, s, orig.shape), 0, 255).astype(np.uint8)
    out = {"original": orig, "neural": noised(4), "h264": noised(8), "h265": noised(6)}
    out["h264"][5] = 0  # one awful frame
    return out


def fake_report(streams):
    methods = ["neural"] + [f"{c}@{s}" for c in ("h264", "h265") for s in ("0.5", "1.0", "2.0")]
    bpps = {"neural": 0.3, **{m: 0.3 * float(m.split("@")[1]) for m in methods[1:]}}
    return FakeReport(streams, bpps, methods)


@pytest.fixture
def panel(qtbot):
    p = CompressionPanel("test", output={"size": [144, 176], "bpp": 0.3}, clip=lambda: "carphone_pristine.mp4")
    qtbot.addWidget(p)
    p.resize(560, 900)
    p.show()
    return p


def show(panel, streams, i):
    rec = streams["neural"][i]
    panel.update_from(FakeResult(rec, _psnr(streams["original"][i], rec), 0.9, 0.3),
                      Frame(streams["original"][i], i, i / 30), True)


def test_live_view_shows_original_and_reconstruction(panel, streams):
    show(panel, streams, 2)
    np.testing.assert_array_equal(panel.images["original"].image, streams["original"][2])
    np.testing.assert_array_equal(panel.images["neural"].image, streams["neural"][2])
    assert panel.images["h264"].image is None  # nothing before a comparison
    assert f"PSNR {_psnr(streams['original'][2], streams['neural'][2]):.2f} dB" in panel.live_label.text()
    assert panel.overlay.image.shape == (144, 176)


def test_report_fills_plots_table_rd_and_worst_frames(qtbot, panel, streams):
    show(panel, streams, 0)
    rep = fake_report(streams)
    panel.set_report(rep)
    assert set(panel.psnr_curves) == {"neural", "h264@1.0", "h265@1.0"}
    for m, c in panel.psnr_curves.items():
        x, y = c.getData()
        assert len(x) == N and np.allclose(y, rep.per_frame(m, "psnr"))
    assert all(len(c.getData()[0]) == N for c in panel.ssim_curves.values())
    assert panel.table.rowCount() == 7 and panel.table.item(0, 0).text() == "neural"
    assert panel.table.item(0, 4).text() != "" and panel.table.item(1, 4).text() == ""
    rd = panel.rd_plot.listDataItems()
    assert [len(d.getData()[0]) for d in rd] == [3, 3, 1]
    # the codec frames at matched bits appear in the grid
    np.testing.assert_array_equal(panel.images["h264"].image, streams["h264"][0])
    # moving the player moves the plot line
    show(panel, streams, 6)
    assert [ln.value() for ln in panel.lines] == [6, 6]
    # clicking a worst frame seeks there: frame 5 of H.264 is the worst
    items = [panel.worst_list.item(i) for i in range(panel.worst_list.count())]
    h264 = next(it for it in items if it.data(256) == 5 and "dB" in it.text())
    with qtbot.waitSignal(panel.seekRequested) as sig:
        panel.worst_list.itemClicked.emit(h264)
    assert sig.args == [5]
    with qtbot.waitSignal(panel.seekRequested) as sig:
        panel.seek_plot(3.4)
    assert sig.args == [3]


def test_split_view_left_and_right_from_different_streams(panel, streams):
    show(panel, streams, 1)
    panel.set_report(fake_report(streams))
    panel.set_split("original", "h264", x=60)
    comp = panel.split_composed
    np.testing.assert_array_equal(comp[:, :60], streams["original"][1][:, :60])
    np.testing.assert_array_equal(comp[:, 60:], streams["h264"][1][:, 60:])
    panel.divider.setValue(120)  # dragging the divider recomposes
    np.testing.assert_array_equal(panel.split_composed[:, :120], streams["original"][1][:, :120])
    assert not np.array_equal(panel.split_composed[:, 100:120], streams["h264"][1][:, 100:120])
    with pytest.raises(ValueError):
        compose_split(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 3, 3), np.uint8), 1)


def test_csv_export(panel, streams, tmp_path):
    with pytest.raises(ValueError):
        panel.export_csv(str(tmp_path / "none.csv"))
    panel.set_report(fake_report(streams))
    assert panel.csv_btn.isEnabled()
    out = tmp_path / "r.csv"
    panel.export_csv(str(out))
    rows = list(csv.reader(out.open()))
    assert len(rows) == 1 + 7 * N


def test_compare_runs_off_the_ui_thread_and_reports_errors(qtbot, panel, streams):
    import threading
    import time

    seen = {}

    def build(model, clip, codecs, sizes, progress, cancelled):
        seen["thread"] = threading.current_thread()
        progress(0.5, "half")
        return fake_report(streams)

    panel._build_report = build
    with qtbot.waitSignal(panel.reportReady, timeout=10000):
        panel.compare()
    assert seen["thread"] is not threading.main_thread()
    assert panel.report is not None and panel.compare_btn.isEnabled()

    class AlignmentError(ValueError):
        pass

    def misaligned(*a, **k):
        raise AlignmentError("frame counts differ: 120 vs 119")

    panel._build_report = misaligned
    with qtbot.waitSignal(panel.reportFailed, timeout=10000):
        panel.compare()
    assert "frame counts differ" in panel.status.text() and panel.status.isVisible()
    assert panel.report is None and not panel.psnr_curves  # no number shown from a misaligned pair

    def slow(model, clip, codecs, sizes, progress, cancelled):
        while not cancelled():
            time.sleep(0.01)
        return None

    panel._build_report = slow
    panel.compare()
    panel.cancel()
    qtbot.waitUntil(lambda: panel.job is None, timeout=10000)
    assert "cancelled" in panel.status.text()


# --- Fit HNeRV on this clip ----------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    seconds: float
    frames: int
    size: tuple
    needs_gpu: bool
    message: str


def test_fit_dialog_shows_the_estimate_and_says_when_a_gpu_is_needed(qtbot):
    from loupe.media import clip_path
    from loupe.ui.fit_hnerv import FitHNeRVDialog

    asked = []

    def estimate(clip, params):
        asked.append(params)
        if params > 0.5e6:
            return Estimate(3 * 3600.0, 132, (720, 1280), True, "about 8 min on a GPU.")
        return Estimate(420.0, 120, (144, 176), False, "")

    dlg = FitHNeRVDialog(str(clip_path("carphone_pristine.mp4")), estimate=estimate)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: "about 7 min" in dlg.estimate_label.text(), timeout=5000)
    assert "120 frames at 176x144" in dlg.estimate_label.text() and "GPU" not in dlg.estimate_label.text()
    dlg.budget.setCurrentIndex(2)  # 1M
    qtbot.waitUntil(lambda: "needs a GPU" in dlg.estimate_label.text(), timeout=5000)
    assert dlg.params == 1e6 and asked[-1] == 1e6 and "3.0 h" in dlg.estimate_label.text()

    def broken(clip, params):
        raise ValueError("cannot read the clip")

    dlg2 = FitHNeRVDialog("missing.mp4", estimate=broken)
    qtbot.addWidget(dlg2)
    qtbot.waitUntil(lambda: "could not estimate: cannot read the clip" in dlg2.estimate_label.text(), timeout=5000)


def test_fit_without_torch_says_how_to_get_it(qtbot, monkeypatch):
    import loupe.ui.learn_normal as ln
    from loupe.ui.main_window import MainWindow

    win = MainWindow(ask_task=False)
    qtbot.addWidget(win)
    monkeypatch.setattr(ln, "torch_available", lambda: False)
    with qtbot.waitSignal(win.errorShown, timeout=2000) as sig:
        win.hnerv_action.trigger()
    assert "pip install 'loupe[fit]'" in sig.args[0]
    monkeypatch.setattr(ln, "torch_available", lambda: True)
    win.hnerv_action.trigger()  # no clip open: a notice, no dialog
    assert not win.banner.isHidden() and "Open a video file first" in win.banner.label.text()
    win.close()
