"""Long and faulty sessions: a camera unplugged mid-stream and plugged back, switching cameras
while one runs, models swapped while a clip plays, and closing the window while an analysis or
a fit runs (no hang, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from loupe.base.media import clip_path
from loupe.run.pipeline import LatestSlot
from loupe.run.player import Player
from loupe.sources.camera import CameraSource
from tests.helpers import make_copy_last_model, make_density_model

HERE = Path(__file__).parent


class Device:
    """A camera that can be unplugged and plugged back. A handle opened before an unplug stays
    dead (as a real one does); opening fails while unplugged."""

    def __init__(self, bgr: tuple[int, int, int]) -> None:
        self.bgr = bgr
        self.plugged = True
        self.generation = 0
        self.opens = 0
        self.lock = threading.Lock()

    def unplug(self) -> None:
        with self.lock:
            self.plugged = False
            self.generation += 1

    def plug(self) -> None:
        with self.lock:
            self.plugged = True


class FakeCapture:
    def __init__(self, devices: dict[int, Device], index: int) -> None:
        self.device = devices.get(index)
        self.released = False
        self.opened = self.device is not None and self.device.plugged
        if self.device is not None:
            self.device.opens += 1
            self.generation = self.device.generation

    def isOpened(self) -> bool:
        return self.opened and not self.released

    def read(self):
        time.sleep(0.004)  # a frame period, shortened
        dev = self.device
        if self.released or dev is None or not dev.plugged or dev.generation != self.generation:
            return False, None
        return True, np.full((24, 32, 3), dev.bgr, np.uint8)

    def set(self, prop, value) -> bool:
        return True

    def get(self, prop) -> float:
        return {cv2.CAP_PROP_FRAME_WIDTH: 32.0, cv2.CAP_PROP_FRAME_HEIGHT: 24.0, cv2.CAP_PROP_FPS: 30.0}.get(prop, 0.0)

    def release(self) -> None:
        self.released = True


@pytest.fixture
def devices(monkeypatch):
    devs = {0: Device((0, 0, 200)), 1: Device((200, 0, 0))}  # BGR: camera 0 red, camera 1 blue
    monkeypatch.setattr(cv2, "VideoCapture", lambda index, *a: FakeCapture(devs, index))
    return devs


def _wait(cond, timeout: float = 60.0) -> None:  # generous: a condition, not a speed
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_player_reconnects_an_unplugged_camera_with_backoff(devices):
    source = CameraSource(0, max_failures=3, retry_delay=0.001)
    slot = LatestSlot()
    errors, status, back = [], [], []
    player = Player(source, slot, on_error=errors.append, on_status=status.append, on_recovered=back.append,
                    reconnect_delays=(0.02, 0.05, 0.1))
    player.start()
    try:
        before = [slot.get(60.0) for _ in range(5)]
        assert all(f is not None and f.pixels[0, 0].tolist() == [200, 0, 0] for f in before)
        opens = devices[0].opens
        devices[0].unplug()
        _wait(lambda: bool(errors))
        assert "Camera 0 stopped delivering frames" in errors[0]
        _wait(lambda: len(status) >= 5)  # several tries while it is gone, each waiting longer
        assert [s.split("in ")[-1] for s in status[:4]] == ["0.02 s)…", "0.05 s)…", "0.1 s)…", "0.1 s)…"]
        assert devices[0].opens > opens + 2 and not back
        devices[0].plug()
        _wait(lambda: bool(back))
        assert back[0].startswith("Camera 0 is back")
        slot.clear()
        after = slot.get(60.0)
        assert after is not None and after.index > before[-1].index  # indices go on
        assert source.reconnects == 1 and len(errors) == 1
    finally:
        player.stop()


def _collect(win) -> list:
    shown: list = []
    win.frameShown.connect(shown.append)
    return shown


def test_window_reports_an_unplugged_camera_and_recovers(qtbot, win, devices):
    shown = _collect(win)
    errors: list[str] = []
    win.errorShown.connect(errors.append)
    win.open_camera(0, "640x480")
    qtbot.waitUntil(lambda: len(shown) >= 3, timeout=10000)
    devices[0].unplug()
    qtbot.waitUntil(lambda: bool(errors), timeout=10000)
    assert "Camera 0 stopped delivering frames" in errors[0] and win.banner.isVisible()
    qtbot.waitUntil(lambda: "reconnecting" in win.statusBar().currentMessage(), timeout=10000)
    n = len(shown)
    devices[0].plug()
    qtbot.waitUntil(lambda: "is back" in win.banner.label.text(), timeout=15000)
    assert win.banner.level == "info"
    qtbot.waitUntil(lambda: len(shown) >= n + 3, timeout=10000)  # frames flow again
    assert shown[-1].frame.metadata["device"] == 0


def test_switching_camera_while_one_runs(qtbot, win, devices):
    shown = _collect(win)
    errors: list[str] = []
    win.errorShown.connect(errors.append)
    win.open_camera(0)
    qtbot.waitUntil(lambda: len(shown) >= 3, timeout=10000)
    first = win.player.source
    win.open_camera(1)
    qtbot.waitUntil(lambda: bool(shown) and shown[-1].frame.metadata["device"] == 1, timeout=10000)
    n = len(shown)
    qtbot.waitUntil(lambda: len(shown) >= n + 3, timeout=10000)
    assert all(fr.frame.metadata["device"] == 1 for fr in shown[n:])
    assert shown[-1].frame.pixels[0, 0].tolist() == [0, 0, 200]  # camera 1 is blue (RGB)
    assert first._capture is None and not errors  # camera 0 was released, quietly
    assert win.source_name == "Camera 1" and win.cam_btn.isChecked()


def test_models_swapped_added_and_removed_while_a_clip_plays(qtbot, win, argmax_model, tmp_path):
    density = make_density_model(tmp_path / "density.onnx")
    anomaly = make_copy_last_model(tmp_path / "anomaly.onnx")
    mismatched: list[str] = []
    shown: list = []

    def check(fr) -> None:  # what reaches the panels always matches the models loaded now
        tasks = [mr.task for mr in fr.results]
        if tasks != [m.task.name for m in win.models]:
            mismatched.append(f"{tasks} vs {[m.task.name for m in win.models]}")
        shown.append(fr)

    win.frameShown.connect(check)
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(argmax_model))
    win.open_source(str(clip_path("bigbuckbunny.mp4")))
    qtbot.waitUntil(lambda: len(shown) >= 3, timeout=20000)
    win.player.loop = True  # a long session: the clip starts over at its end

    def frames_with(tasks: list[str], n: int = 3) -> None:
        start = len(shown)
        qtbot.waitUntil(lambda: sum(1 for fr in shown[start:] if [r.task for r in fr.results] == tasks) >= n,
                        timeout=20000)

    with qtbot.waitSignal(win.modelLoaded, timeout=10000):  # add while playing
        win.add_model(str(density))
    frames_with(["segmentation", "density"])
    win.remove_model(0)  # remove one while playing
    assert win.panel_tabs.count() == 1
    frames_with(["density"])
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(anomaly))
    frames_with(["density", "anomaly"])
    win.remove_models()  # swap everything for the segmenter
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(argmax_model))
    frames_with(["segmentation"])
    assert win.player.playing and not mismatched, mismatched
    assert [m.task.name for m in win.models] == ["segmentation"] and win.panel_tabs.count() == 1


def _run_close_script(kind: str, model: Path, clip: Path, out: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(HERE.parent.parent)}
    return subprocess.run([sys.executable, str(HERE / "close_during_jobs.py"), kind, str(model), str(clip), str(out)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _assert_clean(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "QThread: Destroyed" not in proc.stderr, proc.stderr
    assert "job running after close: False" in proc.stdout and "clean exit" in proc.stdout, proc.stdout


def test_closing_the_window_during_an_analysis_ends_cleanly(tmp_path, argmax_model):
    out = tmp_path / "rows.csv"
    proc = _run_close_script("analysis", argmax_model, clip_path("bikes.mp4"), out, timeout=120)
    _assert_clean(proc)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("input,frame") and len(lines) > 5  # the rows done so far are kept
    assert all(line.count(",") == lines[0].count(",") for line in lines)  # no partial row


@pytest.mark.slow
def test_closing_the_window_during_a_fit_ends_cleanly(tmp_path, argmax_model):
    pytest.importorskip("torch")
    proc = _run_close_script("fit", argmax_model, clip_path("carphone_pristine.mp4"), tmp_path / "learned.onnx",
                             timeout=300)
    # the fit was cancelled, not run to its 5-minute budget: "job running after close: False"
    # (_assert_clean) means it stopped inside the window's close; no assertion on how fast
    _assert_clean(proc)
