"""File ▸ Export video with overlays…: a background job writes the open file's frames with the
overlays to H.264; cancel keeps a video that plays; closing the window during an export ends it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PySide6.QtGui import QKeySequence

from loupe.base.media import clip_path
from loupe.resources import resource_path
from loupe.ui import export_video
from loupe.ui.export_dialog import ExportOptions
from tests.helpers import decode


@pytest.fixture
def ready(qtbot, win):
    """The window with the demo segmentation model and bikes.mp4 open (paused on frame 1)."""
    with qtbot.waitSignal(win.modelLoaded, timeout=30000):
        win.add_model(str(resource_path("demo_segmentation.onnx")))
    shown = []
    win.frameShown.connect(shown.append)
    win.open_source(str(clip_path("bikes.mp4")), playing=False)
    qtbot.waitUntil(lambda: win.player is not None and len(shown) >= 1, timeout=30000)
    return win


def export_under_way(qtbot, win, out, frames: int):
    """An export of the window's file to ``out`` that has written at least ``frames`` frames."""
    job = export_video.export_to(win, str(out))
    seen = []
    job.progressed.connect(lambda f, info: seen.append(info.get("frames", 0)))
    qtbot.waitUntil(lambda: bool(seen) and seen[-1] >= frames, timeout=60000)
    return job


def test_menu_item_and_refusal_without_a_file(win):
    act = win.export_video_action
    assert act.text().startswith("Export &video") and act.shortcut() == QKeySequence("Ctrl+Shift+E")
    export_video.export_dialog(win)  # no model, no file: says so, no dialog
    assert "Open a file and load a model first" in win.banner.label.text()


def test_export_writes_every_frame_with_the_overlay(qtbot, ready, tmp_path):
    out = tmp_path / "export.mp4"
    job = export_video.export_to(ready, str(out), ExportOptions(max_frames=12))
    assert not ready.export_video_action.isEnabled()  # one export at a time
    with qtbot.waitSignal(job.done, timeout=60000):
        pass
    frames, rate, size = decode(out)
    assert len(frames) == 12 and size == (640, 272) and rate == pytest.approx(25.0)
    assert "12 frames written to" in ready.banner.label.text()
    from loupe.sources.open import open_source

    with open_source(str(clip_path("bikes.mp4"))) as src:
        raw = next(iter(src)).pixels
    assert abs(frames[0][:240].astype(float) - raw[:240]).mean() > 5  # the overlay is drawn on it
    assert ready.export_job is None and ready.export_video_action.isEnabled()
    # the live view's tasks were not used: the window still runs its own
    assert ready.models[0].task is not job.result and job.result.summary.frames == 12


def test_cancel_keeps_a_video_that_plays(qtbot, ready, tmp_path):
    out = tmp_path / "cancelled.mp4"
    job = export_under_way(qtbot, ready, out, 5)
    with qtbot.waitSignal(job.done, timeout=60000):
        job.cancel()
    frames, _, size = decode(out)
    assert 5 <= len(frames) < 250 and size == (640, 272)
    assert job.result.summary.cancelled and job.result.summary.frames == len(frames)
    assert "cancelled" in ready.banner.label.text()


def test_closing_the_window_during_an_export_ends_it(qtbot, ready, tmp_path):
    out = tmp_path / "closing.mp4"
    job = export_under_way(qtbot, ready, out, 3)
    ready.close()  # cancels the export and waits for it: returns, the file finalised
    assert not job.isRunning()
    frames, _, _ = decode(out)
    assert 3 <= len(frames) < 250


def test_export_draws_as_the_view_shows_now(qtbot, ready, tmp_path):
    """Classes hidden, opacity and contour mode set in the window's panel (not in the settings)
    are what the export draws."""
    panel = ready.panels[0]
    panel.set_class_visible(0, False)
    panel.set_mode("contour")
    panel.overlay.setOpacity(0.8)
    job = export_video.export_to(ready, str(tmp_path / "as_shown.mp4"), ExportOptions(max_frames=2))
    mine = job.drawer.renderer.panels[0]
    assert not mine.visible[0] and mine.visible[1:].all() and mine.mode == "contour"
    assert mine.overlay.opacity() == pytest.approx(0.8)
    with qtbot.waitSignal(job.done, timeout=60000):
        pass
    assert len(decode(tmp_path / "as_shown.mp4")[0]) == 2


# --- the dialog: where and how ------------------------------------------------------------------
def test_the_dialog_says_what_the_video_will_be_and_why_it_cannot_export(qtbot, tmp_path):
    from loupe.ui.export_dialog import ExportDialog

    dlg = ExportDialog("", ExportOptions(), (640, 272), 25.0, 250, shown=20)
    qtbot.addWidget(dlg)
    assert dlg.summary.text() == "640x272, 25 fps, 250 frames"
    dlg.scale.setValue(2)
    dlg.frames.setValue(12)
    assert dlg.summary.text() == "1280x544 (2 × 640x272), 25 fps, frames 1 to 12 of 250 (12 frames)"
    assert dlg.frames.maximum() == 250 and dlg.frames.text() == "12"
    dlg.from_shown.click()  # from the frame on screen
    assert dlg.start.value() == 20 and dlg.options().start == 20
    assert dlg.summary.text().endswith("frames 20 to 31 of 250 (12 frames)")
    dlg.frames.setValue(0)
    assert dlg.frames.text() == "all" and dlg.options().max_frames is None
    assert dlg.summary.text().endswith("frames 20 to 250 of 250 (231 frames)")
    dlg.start.setValue(1)
    for text, says in (("", "Choose a file"), (str(tmp_path / "a.avi"), "must end in .mp4, .mkv, .mov"),
                       (str(tmp_path / "nowhere" / "a.mp4"), "There is no folder"),
                       (str(tmp_path), "must end in")):
        dlg.path.setText(text)
        dlg.export_button.click()
        assert says in dlg.error.text() and dlg.result() != dlg.DialogCode.Accepted and dlg.isVisible() is False
    dlg.path.setText(str(tmp_path / "ok.mkv"))
    assert dlg.error.text() == ""  # typing clears the message
    dlg.export_button.click()
    assert dlg.result() == dlg.DialogCode.Accepted and dlg.out() == str(tmp_path / "ok.mkv")


def test_saved_options_fall_back_to_the_defaults_on_bad_values():
    from PySide6.QtCore import QSettings

    from loupe.ui.export_dialog import saved_options
    from loupe.ui.settings import EXPORT_CRF, EXPORT_PRESET, EXPORT_SCALE

    store = QSettings()
    store.setValue(EXPORT_CRF, "loud")
    store.setValue(EXPORT_SCALE, 40)
    store.setValue(EXPORT_PRESET, "warp")
    assert saved_options(store) == ExportOptions()


def answer_the_dialog(monkeypatch, fill) -> None:
    """The export dialog, when it opens, is filled in by ``fill(dialog)`` and its Export clicked."""
    from loupe.ui.export_dialog import ExportDialog

    def run(dlg):
        fill(dlg)
        dlg.export_button.click()
        return dlg.result()

    monkeypatch.setattr(ExportDialog, "exec", run)


def export_through_the_dialog(qtbot, win, monkeypatch, fill) -> object:
    """File ▸ Export video… with the dialog filled in by ``fill(dialog)`` and accepted; the job."""
    answer_the_dialog(monkeypatch, fill)
    win.export_video_action.trigger()
    job = win.export_job
    assert job is not None, win.banner.label.text()
    with qtbot.waitSignal(job.done, timeout=60000):
        pass
    return job


def test_the_options_reach_the_video_and_are_kept(qtbot, ready, tmp_path, monkeypatch):
    from tests.test_render import x264_options

    def plain(dlg):  # the defaults: caption, CRF 18, preset fast
        assert dlg.summary.text() == "640x272, 25 fps, 250 frames"
        dlg.path.setText(str(tmp_path / "plain.mp4"))
        dlg.frames.setValue(2)

    def chosen(dlg):
        dlg.path.setText(str(tmp_path / "chosen.mp4"))
        dlg.frames.setValue(2)
        dlg.caption.setChecked(False)
        dlg.scale.setValue(2)
        dlg.crf.setValue(30)
        dlg.preset.setCurrentText("ultrafast")

    export_through_the_dialog(qtbot, ready, monkeypatch, plain)
    export_through_the_dialog(qtbot, ready, monkeypatch, chosen)
    plain_frames, _, plain_size = decode(tmp_path / "plain.mp4")
    frames, rate, size = decode(tmp_path / "chosen.mp4")
    assert len(frames) == len(plain_frames) == 2 and plain_size == (640, 272) and size == (1280, 544)
    assert rate == pytest.approx(25.0)
    settings = x264_options(tmp_path / "chosen.mp4")
    assert float(settings["crf"]) == 30 and settings["subme"] == "0"  # ultrafast
    assert float(x264_options(tmp_path / "plain.mp4")["crf"]) == 18
    # no caption: the bottom rows are the picture (the plain export darkens them under its caption)
    from loupe.ui.render_view import caption_height

    strip = caption_height(272, 1)
    half = frames[0][::2, ::2].astype(float)  # back to the frame's size
    above = abs(half[:272 - strip] - plain_frames[0][:272 - strip]).mean()
    bottom = abs(half[272 - strip:] - plain_frames[0][272 - strip:]).mean()
    assert above < 4 and bottom > 5 * above + 10, (above, bottom)
    assert half[272 - strip:].mean() > plain_frames[0][272 - strip:].mean() + 20
    # kept for the next export (not the file or the frame count)
    seen = {}

    def look(dlg):
        seen.update(caption=dlg.caption.isChecked(), scale=dlg.scale.value(), crf=dlg.crf.value(),
                    preset=dlg.preset.currentText(), frames=dlg.frames.text())
        dlg.path.setText("")  # refused: the dialog stays, nothing is exported

    answer_the_dialog(monkeypatch, look)
    ready.export_video_action.trigger()
    assert seen == {"caption": False, "scale": 2, "crf": 30, "preset": "ultrafast", "frames": "all"}
    assert ready.export_job is None


def test_the_dialog_knows_a_dicom_series_plays_at_the_still_rate(qtbot, win):
    from loupe.base.media import dicom_test_file
    from loupe.run.render import DEFAULT_STILL_FPS

    shown = []
    win.frameShown.connect(shown.append)
    win.open_source(str(dicom_test_file("rtdose.dcm")), playing=False)
    qtbot.waitUntil(lambda: win.player is not None and len(shown) >= 1, timeout=30000)
    win.seek_to(3)
    qtbot.waitUntil(lambda: shown[-1].frame.index == 3, timeout=30000)
    size, fps, count, on_screen = export_video.open_file_facts(win)
    frame = win.last_result.frame
    assert fps == DEFAULT_STILL_FPS and count == 15 and size == (frame.width, frame.height) and on_screen == 4


def test_an_export_can_start_at_a_later_frame(qtbot, ready, tmp_path):
    from loupe.sources.open import open_source

    out = tmp_path / "later.mp4"
    job = export_video.export_to(ready, str(out), ExportOptions(start=101, max_frames=3))
    with qtbot.waitSignal(job.done, timeout=60000):
        pass
    frames, _, _ = decode(out)
    assert len(frames) == 3 and job.result.summary.frames == 3
    with open_source(str(clip_path("bikes.mp4"))) as src:
        raw = {f.index: f.pixels for f in itertools.islice(src, 103) if f.index in (0, 100, 101, 102)}
    top = np.s_[:200]  # above the caption strip
    for k in range(3):
        d = {i: float(np.abs(frames[k][top].astype(float) - p[top]).mean()) for i, p in raw.items()}
        assert min(d, key=d.get) == 100 + k, (k, d)
