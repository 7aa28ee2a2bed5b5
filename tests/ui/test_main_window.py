"""The window, offscreen: drop a video, play it, check the overlay pixel for pixel."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from loupe.base.media import clip_path, dicom_test_file
from loupe.ui.main_window import MainWindow
from tests.helpers import expected_argmax_map, make_fixed_size_model, run_panel_preview


def drop(win: MainWindow, paths) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    with warnings.catch_warnings():  # PySide6 marks the QPoint constructor deprecated; it is the one Qt has
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(win, enter)
    assert enter.isAccepted(), "the window refuses the drag"
    ev = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    win.dropEvent(ev)  # Qt only routes a Drop through a live drag session; deliver it as Qt would
    assert ev.isAccepted()


def collect(win: MainWindow) -> list:
    shown: list = []
    win.frameShown.connect(shown.append)
    return shown


def test_dropped_video_plays_with_the_right_overlay(qtbot, win, argmax_model):
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        drop(win, [argmax_model])
    assert len(win.models) == 1 and win.panel_tabs.count() == 1
    shown = collect(win)
    drop(win, [clip_path("carphone_pristine.mp4")])
    qtbot.waitUntil(lambda: len(shown) >= 12, timeout=30000)
    indices = [fr.frame.index for fr in shown]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    for fr in shown:
        cm = fr.results[0].result.class_map
        assert cm.shape == (144, 176)
        np.testing.assert_array_equal(cm, expected_argmax_map(fr.frame.pixels))
    # the overlay item holds the newest map, coloured by the model's palette
    panel = win.panels[0]
    qtbot.waitUntil(lambda: panel.last is shown[-1].results[0].result or len(shown) > 12, timeout=30000)
    assert panel.overlay.image.dtype == np.uint8
    assert panel.lut[0].tolist() == [255, 0, 0, 255] and panel.lut[2].tolist() == [0, 0, 255, 255]
    # hiding a class edits one LUT row, not pixels
    panel.set_class_visible(1, False)
    assert panel.lut[1, 3] == 0 and panel.lut[0, 3] == 255
    # opacity is the overlay item's opacity
    panel.set_opacity(0.8)
    assert panel.overlay.opacity() == pytest.approx(0.8)
    # legend areas are the shown map's fractions
    qtbot.waitUntil(lambda: panel.table.item(0, 1).text() != "", timeout=30000)
    # status bar reports provider, fps, latency and drops
    win._update_status()
    assert win.st_provider.text().startswith("on ")
    assert "latency p50" in win.st_latency.text() and win.st_dropped.text().startswith("dropped")


def load(qtbot, win, model) -> None:
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(model))


def test_pause_step_and_seek(qtbot, win, argmax_model):
    load(qtbot, win, argmax_model)
    shown = collect(win)
    win.open_source(str(clip_path("carphone_pristine.mp4")), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=10000)
    assert shown[0].frame.index == 0
    win.step()
    qtbot.waitUntil(lambda: len(shown) >= 2, timeout=10000)
    assert shown[1].frame.index == 1
    win.seek_to(100)
    qtbot.waitUntil(lambda: shown[-1].frame.index == 100, timeout=10000)
    assert win.seek.value() == 100
    assert not win.player.playing


def test_corrupt_file_shows_a_message_and_the_app_lives(qtbot, win, tmp_path, argmax_model):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"garbage" * 100)
    with qtbot.waitSignal(win.errorShown, timeout=10000):
        drop(win, [bad])
    assert win.banner.isVisible() and "broken.mp4" in win.banner.label.text()
    # still usable afterwards
    shown = collect(win)
    load(qtbot, win, argmax_model)
    drop(win, [clip_path("carphone_pristine.mp4")])
    qtbot.waitUntil(lambda: len(shown) >= 2, timeout=20000)


def test_bad_model_shows_a_message(qtbot, win, tmp_path):
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"not a model")
    with qtbot.waitSignal(win.errorShown, timeout=10000):
        drop(win, [bad])
    assert win.banner.isVisible() and "junk.onnx" in win.banner.label.text()
    assert win.models == []


def test_model_whose_shape_does_not_fit_reports_in_window(qtbot, win, tmp_path):
    # fixed 32x48 input, card-less: inferred, resized to fit; a wrong card would be a clear message
    path = make_fixed_size_model(tmp_path / "fixed.onnx")
    load(qtbot, win, path)
    assert win.banner.isVisible() and "no model card" in win.banner.label.text()
    shown = collect(win)
    win.open_source(str(clip_path("carphone_pristine.mp4")))
    qtbot.waitUntil(lambda: len(shown) >= 2, timeout=20000)
    assert shown[-1].results[0].result.class_map.shape == (144, 176)


def test_dicom_ct_shows_with_its_window(qtbot, win):
    shown = collect(win)
    win.open_source(str(dicom_test_file("CT_small.dcm")))
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=10000)
    fr = shown[0]
    assert fr.frame.metadata["modality"] == "CT"
    c, w = float(fr.frame.metadata["window_center"]), float(fr.frame.metadata["window_width"])
    lo, hi = win.view.image.levels
    assert (lo, hi) == pytest.approx((c - w / 2, c + w / 2))
    assert win.view.image.image.dtype == np.float32
    assert "CT" in win.view.text.toPlainText()


def test_vanishing_camera_is_reported(qtbot, win, monkeypatch):
    import cv2

    class FakeCam:
        def __init__(self, index, *a):
            self.n = 0

        def isOpened(self):
            return True

        def set(self, *a):
            return True

        def get(self, prop):
            return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

        def read(self):
            self.n += 1
            if self.n > 5:
                return False, None
            return True, np.full((48, 64, 3), 60 * (self.n % 4), np.uint8)

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoCapture", FakeCam)
    errors: list = []
    win.errorShown.connect(errors.append)
    win.open_camera(0, "640x480")
    qtbot.waitUntil(lambda: bool(errors), timeout=10000)
    assert "Camera 0" in errors[0]
    assert win.banner.isVisible()


def test_recent_files_persist(qtbot, win, argmax_model):
    with qtbot.waitSignal(win.sourceOpened, timeout=10000):
        win.open_source(str(clip_path("carphone_pristine.mp4")))
    other = MainWindow(ask_task=False)
    qtbot.addWidget(other)
    assert str(clip_path("carphone_pristine.mp4").resolve()) in other._recent()
    other.close()


def test_screenshot_cli_saves_whole_window(tmp_path, argmax_model):
    """The saved picture holds the video with the overlay on it: the region where one channel
    outweighs the others by 100+ (the argmax model's pure red/green/blue blended at the default
    opacity 0.5 always does; a natural frame and the UI do not) is one block with the clip's
    aspect ratio; sampled at the clip's pixel grid its colours are the argmax classes of a frame
    just played, pixel for pixel, and un-blending the frame gives back the palette."""
    import av
    import cv2

    from tests.helpers import RGB_PALETTE

    out = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    clip = clip_path("carphone_pristine.mp4")
    r = subprocess.run(
        [sys.executable, "-m", "loupe", str(clip), "--model", str(argmax_model),
         "--screenshot", str(out), "--frames", "5"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert r.returncode == 0, r.stderr
    assert out.is_file()
    img = cv2.imread(str(out), cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.int16)  # RGB
    assert img.shape[1] >= 800 and img.shape[0] >= 500

    ranked = np.sort(img, axis=2)
    tinted = (ranked[:, :, 2] - ranked[:, :, 1] >= 100).astype(np.uint8)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(tinted, connectivity=4)
    assert n > 1, "no overlay colour in the picture"
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = (int(v) for v in stats[k])
    assert w >= 400 and abs(w / h - 176 / 144) < 0.01, (x, y, w, h)  # the clip's shape, large
    assert area >= 0.99 * w * h  # the overlay covers the whole picture of the clip
    rows = (y + (np.arange(144) + 0.5) * h / 144).astype(int)
    cols = (x + (np.arange(176) + 0.5) * w / 176).astype(int)
    seen = img[rows][:, cols]

    with av.open(str(clip)) as c:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(40), c.decode(video=0))]
    agree = [float((seen.argmax(axis=2) == expected_argmax_map(f)).mean()) for f in frames]
    best = int(np.argmax(agree))
    assert best >= 4 and agree[best] >= 0.995, agree  # a frame the screenshot waited for, in place
    frame, classes = frames[best].astype(np.float64), expected_argmax_map(frames[best])
    palette = np.array(RGB_PALETTE, np.float64)
    for cls in np.unique(classes):  # shown = 0.5 frame + 0.5 colour: take the frame away again
        colour = (seen[classes == cls] - 0.5 * frame[classes == cls]) / 0.5
        np.testing.assert_allclose(np.median(colour, axis=0), palette[cls], atol=3)
    # and the legend's swatches, outside the video, are the palette's exact colours
    for colour in RGB_PALETTE:
        assert (np.all(img == colour, axis=2) & (comp != k)).sum() >= 50, colour


def _panels_with_a_preview() -> list[str]:
    """The built-in tasks (from the registry) whose panel module ends with a ``__main__`` preview."""
    import importlib.util

    from loupe.base import registry

    names = []
    for spec in registry.all_specs():
        if spec.builtin and spec.has_panel and spec.panel.partition(":")[0] == f"loupe.ui.panels.{spec.name}":
            source = Path(importlib.util.find_spec(f"loupe.ui.panels.{spec.name}").origin).read_text(encoding="utf-8")
            if 'if __name__ == "__main__"' in source:
                names.append(spec.name)
    assert {"segmentation", "density", "anomaly"} <= set(names), names
    return names


@pytest.mark.parametrize("panel", _panels_with_a_preview())
def test_panel_previews_run(panel):
    run_panel_preview(panel)


def test_cardless_model_asks_for_the_task_and_saves_a_sidecar(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    path = make_fixed_size_model(tmp_path / "mine.onnx")
    before = path.read_bytes()
    asked: list = []

    def fake_get_item(parent, title, label, items, current, editable):
        asked.append((title, items[current]))
        return "segmentation", True

    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(fake_get_item))
    w = MainWindow(ask_task=True)
    qtbot.addWidget(w)
    load(qtbot, w, path)
    assert asked == [("Model without a card", "segmentation")]
    side = tmp_path / "mine.onnx.loupe.json"
    assert side.is_file() and path.read_bytes() == before
    assert w.models[0].engine.card.origin == "sidecar"
    w.close()
    # the next time, the sidecar answers and nothing is asked
    w2 = MainWindow(ask_task=True)
    qtbot.addWidget(w2)
    load(qtbot, w2, path)
    assert len(asked) == 1
    w2.close()


def test_window_presets_persist_while_scrolling(qtbot, win):
    shown = collect(win)
    win.open_source(str(dicom_test_file("rtdose.dcm")), playing=False)  # 15 frames
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=10000)
    assert win.window_box.isVisible()
    win.window_box.textActivated.emit("CT lung 1400/-500")
    assert win.view.image.levels == pytest.approx((-1200.0, 200.0))
    win.step()
    qtbot.waitUntil(lambda: len(shown) >= 2, timeout=10000)
    assert shown[-1].frame.index == 1
    assert win.view.image.levels == pytest.approx((-1200.0, 200.0))  # kept while scrolling
    assert "W 1400 / L -500" in win.view.text.toPlainText()
    # a right-drag sets a custom window
    win.view.set_window(100.0, 50.0, source="drag")
    assert win.window_box.currentText() == "Custom"
    assert win.view.image.levels == pytest.approx((75.0, 125.0))
    # back to the file's own window
    win.window_box.textActivated.emit("From file")
    md = shown[-1].frame.metadata
    c, w = float(md["window_center"]), float(md["window_width"])
    assert win.view.image.levels == pytest.approx((c - w / 2, c + w / 2))


def test_analyse_open_file_from_the_window(qtbot, win, argmax_model, tmp_path):
    import csv

    load(qtbot, win, argmax_model)
    with qtbot.waitSignal(win.sourceOpened, timeout=10000):
        win.open_source(str(clip_path("carphone_pristine.mp4")), playing=False)
    out = tmp_path / "rows.csv"
    job = win.analyze_to(str(out))
    with qtbot.waitSignal(job.finishedWith, timeout=60000) as sig:
        pass
    summary = sig.args[0]
    assert summary.frames == 120 and not summary.failed
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["frame"]) for r in rows] == list(range(120))  # every frame, in order
    assert "120 frames" in win.banner.label.text()


def test_screenshot_of_a_bad_file_shows_the_message_and_exits_1(tmp_path):
    bad = tmp_path / "broken.mkv"
    bad.write_bytes(b"\x1a\x45\xdf\xa3" + b"junk" * 50)
    out = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run([sys.executable, "-m", "loupe", str(bad), "--no-demo", "--screenshot", str(out)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 1
    assert out.is_file() and "Traceback" not in r.stderr
    assert "broken.mkv" in r.stderr


def test_dicom_folder_series_picker_and_physical_legend(qtbot, win, tmp_path, argmax_model):
    from tests.test_analyze import write_rgb_slices
    from tests.test_dicom_series import two_series

    folder = tmp_path / "study"
    two_series(folder)
    write_rgb_slices(folder, [25, 50, 75], uid="1.2.3.999")  # a third series, with spacing
    load(qtbot, win, argmax_model)
    with qtbot.waitSignal(win.sourceOpened, timeout=20000):
        win.open_source(str(folder))
    assert win.series_box.isVisible() and win.series_box.count() == 3
    rgb = win.series_box.findData(f"{folder}#1.2.3.999")
    assert rgb >= 0
    everything = collect(win)  # connected before the open: the first frame may land at once

    def shown():  # frames of the re-opened series (the folder's first series may be this one too)
        return [fr for fr in everything
                if fr.frame.metadata.get("series_uid") == "1.2.3.999" and fr.received_at >= win._accept_after]

    with qtbot.waitSignal(win.sourceOpened, timeout=20000):
        win.series_box.activated.emit(rgb)
    assert win.source_spec == f"{folder}#1.2.3.999"
    qtbot.waitUntil(lambda: len(shown()) >= 1, timeout=20000)
    for n in (2, 3):  # one slice at a time (a quick double step may drop the middle frame: newest wins)
        win.step()
        qtbot.waitUntil(lambda n=n: len(shown()) >= n, timeout=20000)
    shown = shown()
    assert [fr.frame.index for fr in shown] == [0, 1, 2]
    panel = win.panels[0]
    res = shown[-1].results[0].result
    # slice 3: 75 red columns of 100 rows at 0.5 x 0.25 mm
    assert res.class_area_mm2[0] == pytest.approx(75 * 100 * 0.125)
    panel.update_legend(res)
    assert not panel.table.isColumnHidden(2) and not panel.table.isColumnHidden(3)
    assert float(panel.table.item(0, 2).text()) == pytest.approx(937.5)
    # volume over the three slices, 2 mm apart: (25 + 50 + 75) * 100 * 0.125 mm² * 2 mm = 3.75 mL
    assert float(panel.table.item(0, 3).text()) == pytest.approx(3.75)


def test_density_and_anomaly_panels_beside_segmentation(qtbot, win, tmp_path, argmax_model):
    from tests.helpers import make_copy_last_model, make_density_model

    dens = make_density_model(tmp_path / "dens.onnx")
    anom = make_copy_last_model(tmp_path / "anom.onnx", past=2, calibration=(20.0, 40.0))
    for m in (argmax_model, dens, anom):
        load(qtbot, win, m)
    assert win.panel_tabs.count() == 3
    shown = collect(win)
    win.open_source(str(clip_path("carphone_pristine.mp4")))
    qtbot.waitUntil(lambda: len(shown) >= 8, timeout=30000)
    win.player.pause()
    fr = shown[-1]
    seg, den, ano = (mr.result for mr in fr.results)
    np.testing.assert_array_equal(seg.class_map, expected_argmax_map(fr.frame.pixels))
    assert den.count == pytest.approx(fr.frame.pixels[:, :, 0].sum() / 255.0, rel=1e-4)
    assert ano.psnr is not None and 0.0 <= ano.score <= 1.0
    dpanel, apanel = win.panels[1], win.panels[2]
    qtbot.waitUntil(lambda: dpanel.last is not None and apanel.last is not None, timeout=30000)
    # density: fixed colour range from the card, count on the frame and plotted
    # (the range is applied when the map becomes uint8, so the item colours it through its table)
    assert dpanel.levels_max == pytest.approx(0.5)
    img = dpanel.overlay.image
    assert img.dtype == np.uint8 and img.shape == dpanel.last.density.shape
    want = np.clip(dpanel.last.density / 0.5 * 255.0, 0, 255)
    assert np.abs(img.astype(float) - want).max() <= 1.0
    assert dpanel.count_text.toPlainText().startswith("count ")
    dpanel.refresh_plot()
    assert len(dpanel.curve.getData()[0]) >= 1
    # a region of interest reaches the task and gets its own count
    dpanel.set_roi_points(np.array([[0, 0], [88, 0], [88, 144], [0, 144]], float))
    assert win.models[1].task.roi is not None
    # anomaly: threshold line drives flagged spans; clicking a span seeks there
    apanel.set_threshold(0.0)
    assert apanel.spans.count() >= 1 and win.models[2].task.threshold == 0.0
    first = apanel.spans.item(0)
    with qtbot.waitSignal(apanel.seekRequested, timeout=30000) as sig:
        apanel.spans.itemClicked.emit(first)
    assert sig.args[0] == first.data(Qt.ItemDataRole.UserRole)
    # recalibration on a span re-scores the history and the task
    cal = apanel.calibration_from_span(min(apanel.frames), max(apanel.frames))
    assert cal is not None and cal[0] <= cal[1]
    apanel.calibrationRequested.emit(*cal)
    assert (win.models[2].task.psnr_min, win.models[2].task.psnr_max) == cal


@pytest.mark.slow
def test_learn_normal_fits_saves_and_loads_a_predictor(qtbot, win, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import loupe_models.fitters.anomaly as fa

    quick = fa.FitConfig.quick()
    monkeypatch.setattr(fa, "FitConfig", lambda **kw: quick)  # a smoke-sized fit
    with qtbot.waitSignal(win.sourceOpened, timeout=10000):
        win.open_source(str(clip_path("carphone_pristine.mp4")), playing=False)
    out = tmp_path / "learned.onnx"
    job = win.learn(str(clip_path("carphone_pristine.mp4")), 0.0, 1.0, 0.1, out)
    with qtbot.waitSignal(win.modelLoaded, timeout=180000):
        pass
    assert out.is_file() and job.cancelled is False
    assert win.models[-1].task.name == "anomaly"
    assert "held-out prediction PSNR" in win.banner.label.text()


def test_learn_normal_waits_for_a_running_fit(qtbot, win, monkeypatch):
    import loupe.ui.learn_normal as ln

    monkeypatch.setattr(ln, "torch_available", lambda: True)
    with qtbot.waitSignal(win.sourceOpened, timeout=10000):
        win.open_source(str(clip_path("carphone_pristine.mp4")), playing=False)
    running = object()
    win.fit_job = running  # a codebook or HNeRV fit in progress
    win.learn_action.trigger()
    assert "already running" in win.banner.label.text()
    assert win.fit_job is running  # not replaced: closing the window still waits for it
    win.fit_job = None


def test_status_bar_names_the_provider_as_soon_as_a_model_loads(qtbot, win, argmax_model):
    """The status bar said "no model (drop an .onnx)" until its next tick while a model was
    already drawing (seen in --screenshot pictures); it follows loading and removing at once."""
    win._status_timer.stop()  # only the model events may update it here
    assert win.st_provider.text().startswith("no model")
    load(qtbot, win, argmax_model)
    assert win.st_provider.text() == "on CPU"
    win.remove_model(0)
    assert win.st_provider.text().startswith("no model")


def test_a_models_tab_closes_and_model_remove_unloads_the_current_one(qtbot, win, tmp_path, argmax_model):
    """Each model's tab has a close button that unloads that model (its overlay goes, the others
    keep running); Model ▸ Remove unloads the model whose tab is shown."""
    from tests.helpers import make_density_model

    assert not win.remove_model_action.isEnabled()  # nothing to remove yet
    load(qtbot, win, argmax_model)
    load(qtbot, win, make_density_model(tmp_path / "d.onnx"))
    assert win.panel_tabs.tabsClosable() and win.remove_model_action.isEnabled()
    seg, dens = win.panels
    assert seg.overlay.scene() is not None and dens.overlay.scene() is not None
    shown = collect(win)
    win.open_source(str(clip_path("carphone_pristine.mp4")), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=30000)
    assert [mr.task for mr in shown[-1].results] == ["segmentation", "density"]

    close = win.panel_tabs.tabBar().tabButton(0, win.panel_tabs.tabBar().ButtonPosition.RightSide)
    assert close is not None and close.isVisible()
    qtbot.mouseClick(close, Qt.MouseButton.LeftButton)  # the segmentation tab's close button
    assert [m.task.name for m in win.models] == ["density"] and win.panels == [dens]
    assert win.panel_tabs.count() == 1 and win.panel_tabs.widget(0) is dens
    assert seg.overlay.scene() is None  # its overlay left the frame view
    n = len(shown)
    win.step()
    qtbot.waitUntil(lambda: len(shown) > n, timeout=30000)
    assert [mr.task for mr in shown[-1].results] == ["density"]  # the other model runs on

    win.panel_tabs.setCurrentWidget(dens)
    win.remove_model_action.trigger()  # Model ▸ Remove
    assert win.models == [] and win.panels == [] and win.panel_tabs.count() == 0
    assert dens.overlay.scene() is None and not win.remove_model_action.isEnabled()
    assert win.st_provider.text().startswith("no model")


def test_a_task_without_a_panel_shows_its_values_and_closes(qtbot, win, tmp_path, monkeypatch):
    """A registered task with no panel (a plug-in may have none) gets a tab with this frame's
    analyze values, which closes like any other."""
    import dataclasses

    from loupe.base import registry
    from loupe.ui.panels.table import TablePanel
    from tests.helpers import make_density_model

    spec = registry.get("density")
    monkeypatch.setitem(registry._registry.specs, "density", dataclasses.replace(spec, panel=None))
    load(qtbot, win, make_density_model(tmp_path / "d.onnx"))
    panel = win.panels[0]
    assert isinstance(panel, TablePanel)
    assert [panel.table.item(i, 0).text() for i in range(panel.table.rowCount())] == ["count", "roi_count"]
    shown = collect(win)
    win.open_source(str(clip_path("carphone_pristine.mp4")), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=30000)
    panel.refresh_slow(shown[-1].results[0].result, shown[-1].frame)
    assert float(panel.table.item(0, 1).text()) == pytest.approx(shown[-1].results[0].result.count, rel=1e-4, abs=1e-4)
    win.panel_tabs.tabCloseRequested.emit(0)
    assert win.models == [] and win.panel_tabs.count() == 0


def test_a_plugin_that_failed_to_load_is_named_and_the_window_runs_on(qtbot, monkeypatch, argmax_model):
    from loupe.base import registry

    registry.load_plugins()  # the installed ones, before the stand-in failure below
    broken = registry.PluginFailure("sharpness", "loupe-sharpness 1.0", "ModuleNotFoundError: No module named 'cv3'")
    monkeypatch.setattr(registry._registry, "failed", [broken])
    w = MainWindow(ask_task=False)
    qtbot.addWidget(w)
    w.show()
    assert w.banner.isVisible() and w.banner.level == "info"
    assert "sharpness (loupe-sharpness 1.0): ModuleNotFoundError: No module named 'cv3'" in w.banner.label.text()
    load(qtbot, w, argmax_model)  # the built-in tasks load as ever
    assert [m.task.name for m in w.models] == ["segmentation"]
    w.close()
