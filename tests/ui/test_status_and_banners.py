"""Stale state in the window (issue 15, item 6): the status bar after a failed load, error banners
after a later success, the two rates the status bar shows, File ▸ Demo models with their clips,
and ``loupe --screenshot --size``."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import pytest

from loupe.base.media import clip_path, dicom_test_file
from loupe.ui.status import DEMO_CLIPS, rate_text


def fail_a_model(qtbot, win, tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with qtbot.waitSignal(win.errorShown, timeout=10000):
        win.add_model(str(bad))


def test_failed_model_load_leaves_no_loading_message(qtbot, win, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with qtbot.waitSignal(win.errorShown, timeout=10000):
        win.add_model(str(bad))
        assert win.statusBar().currentMessage() == "loading bad.onnx…"  # while it loads
    assert win.statusBar().currentMessage() == ""
    assert win.banner.isVisible() and "bad.onnx" in win.banner.label.text()


def test_error_banner_goes_when_a_model_then_loads(qtbot, win, tmp_path, argmax_model):
    fail_a_model(qtbot, win, tmp_path)
    assert win.banner.isVisible()
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(argmax_model))
    assert not win.banner.isVisible()


def test_error_banner_goes_when_a_source_then_opens(qtbot, win, tmp_path):
    shown: list = []
    win.frameShown.connect(shown.append)
    with qtbot.waitSignal(win.sourceOpened, timeout=10000):
        win.open_source(str(clip_path("carphone_pristine.mp4")))
    fail_a_model(qtbot, win, tmp_path)  # fails while the clip plays
    assert win.banner.isVisible()
    with qtbot.waitSignal(win.sourceOpened, timeout=10000):
        win.open_source(str(clip_path("bikes.mp4")))
    assert not win.banner.isVisible()


def test_info_banner_stays_through_a_success(qtbot, win, argmax_model):
    win.show_error("a notice the user should read", level="info")
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(argmax_model))
    assert win.banner.isVisible() and "notice" in win.banner.label.text()


def test_rate_text_says_which_rate_is_which():
    assert rate_text(25.0, 1.0, True, 4.5, True) == "play 25.0 fps · model 4.5 fps"
    assert rate_text(25.0, 2.0, True, 30.0, False) == "play 50.0 fps · shown 30.0 fps"
    assert rate_text(None, 1.0, True, 12.0, True) == "play live · model 12.0 fps"
    assert rate_text(25.0, 1.0, False, 9.5, True) == "paused · model 9.5 fps"
    assert rate_text(25.0, 1.0, False, 0.0, True) == "paused"


def test_status_bar_shows_both_rates_and_pause(qtbot, win, argmax_model):
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(argmax_model))
    shown: list = []
    win.frameShown.connect(shown.append)
    win.open_source(str(clip_path("carphone_pristine.mp4")))
    qtbot.waitUntil(lambda: len(shown) >= 5, timeout=30000)
    win._update_status()
    clip_fps = win.player.source.fps
    text = win.st_fps.text()
    assert text.startswith(f"play {clip_fps:.1f} fps · model ") and text.endswith(" fps"), text
    win.player.pause()
    win._update_status()
    assert win.st_fps.text().startswith("paused")


def test_demo_menu_names_each_models_clip_and_opens_it(qtbot, win):
    from loupe.resources import demo_models

    subs = {a.menu().title(): a.menu() for a in win.demo_menu.actions() if a.menu() is not None}
    assert len(subs) == len(demo_models())
    assert "segmentation — bikes.mp4" in subs and "hnerv — carphone_pristine.mp4" in subs
    assert "ct — CT_small.dcm" in subs
    for stem in DEMO_CLIPS:  # every bundled model has its clip (all installed here)
        assert any(title.startswith(stem.replace("_", " ") + " — ") for title in subs)
    actions = subs["ct — CT_small.dcm"].actions()
    assert [a.text() for a in actions] == ["Load the model", "Load the model and open CT_small.dcm"]
    with qtbot.waitSignal(win.sourceOpened, timeout=15000), qtbot.waitSignal(win.modelLoaded, timeout=15000):
        actions[1].trigger()
    assert win.source_spec == str(dicom_test_file("CT_small.dcm"))
    assert [m.engine.path.name for m in win.models] == ["demo_ct.onnx"]


@pytest.mark.parametrize("size", [(900, 600), (1600, 1000)])
def test_screenshot_size_sets_the_picture_size(tmp_path, size):
    out = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run([sys.executable, "-m", "loupe", str(clip_path("carphone_pristine.mp4")), "--no-demo",
                        "--screenshot", str(out), "--frames", "2", "--size", f"{size[0]}x{size[1]}"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    h, w = cv2.imread(str(out)).shape[:2]
    assert (w, h) == size


def test_bad_size_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "loupe", "--size", "big", "--screenshot", str(tmp_path / "x.png")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--size must look like 1400x820" in r.stderr
