"""File ▸ Analyse to file writes what ``loupe analyze`` writes: the job has tasks of its own (full
resolution, not the window's 1280-px display cap; the live view's history and the user's later
threshold moves do not reach it), so on a clip wider than 1280 px the window's file equals the
CLI's, row for row, in every column but latency_ms."""

from __future__ import annotations

import csv
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from loupe.base.media import demo_clip
from loupe.cli import main
from loupe.resources import demo_model, resource_path

W, H, N = 1600, 400, 20


@pytest.fixture(scope="module")
def wide_clip(tmp_path_factory) -> Path:
    """20 frames of the demo clip stretched to 1600x400 (no shipped clip is wider than 1280)."""
    path = tmp_path_factory.mktemp("wide") / "wide.mp4"
    with av.open(str(demo_clip())) as src:
        frames = []
        for f in src.decode(video=0):
            frames.append(cv2.resize(f.to_ndarray(format="rgb24"), (W, H), interpolation=cv2.INTER_AREA))
            if len(frames) == N:
                break
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"qscale": "3"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "latency_ms"} for r in csv.DictReader(f)]


def test_the_windows_file_equals_loupe_analyze_on_a_clip_wider_than_1280(qtbot, win, wide_clip, tmp_path):
    seg, anomaly = str(demo_model()), str(resource_path("demo_anomaly.onnx"))
    cli = tmp_path / "cli.csv"
    assert main(["analyze", str(wide_clip), "--model", seg, "--model", anomaly, "--out", str(cli), "--quiet",
                 "--threads", "1"]) == 0

    for m in (seg, anomaly):
        with qtbot.waitSignal(win.modelLoaded, timeout=30000):
            win.add_model(m)
    shown: list = []
    win.frameShown.connect(shown.append)
    with qtbot.waitSignal(win.sourceOpened, timeout=30000):
        win.open_source(str(wide_clip), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=60000)  # the live tasks ran frame 0
    live_seg = win.models[0].task
    assert live_seg.display_max_side == 1280
    assert shown[-1].results[0].result.class_map.shape == (320, 1280)  # the view works at the cap

    out = tmp_path / "window.csv"
    job = win.analyze_to(str(out))
    # while it runs the user moves the live anomaly threshold and steps the live view (its tasks
    # run on the worker thread meanwhile): neither may reach the rows being written
    panel = win.panels[1]
    panel.thresholdChanged.emit(0.0)
    assert win.models[1].task.threshold == 0.0
    win.step()
    with qtbot.waitSignal(job.finishedWith, timeout=300000) as sig:
        pass
    summary = sig.args[0]
    assert not isinstance(summary, str), summary
    assert summary.frames == N and not summary.failed

    got, expected = rows(out), rows(cli)
    assert len(got) == len(expected) == 2 * N
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a == b, f"row {i}: window {a} != cli {b}"
    scored = [r for r in got if r["task"] == "anomaly" and r["score"]]
    assert len(scored) == N - 4  # the job's own history: frames 4.. scored, from its first frame
    assert any(r["flagged"] == "0" for r in scored)  # the card's threshold, not the 0.0 set mid-run
