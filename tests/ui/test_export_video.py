"""File ▸ Export video with overlays…: a background job writes the open file's frames with the
overlays to H.264; cancel keeps a video that plays; closing the window during an export ends it."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QKeySequence

from loupe.base.media import clip_path
from loupe.resources import resource_path
from loupe.ui import export_video
from tests.ui.test_render_view import decode


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
    job = export_video.export_to(ready, str(out), max_frames=12)
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
    job = export_video.export_to(ready, str(tmp_path / "as_shown.mp4"), max_frames=2)
    mine = job.drawer.renderer.panels[0]
    assert not mine.visible[0] and mine.visible[1:].all() and mine.mode == "contour"
    assert mine.overlay.opacity() == pytest.approx(0.8)
    with qtbot.waitSignal(job.done, timeout=60000):
        pass
    assert len(decode(tmp_path / "as_shown.mp4")[0]) == 2
