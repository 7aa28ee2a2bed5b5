"""``loupe analyze --ray``: on a local Ray with 2 workers the rows equal the local run's in every
column but latency_ms, in the same order, and parts of one video ran in different processes."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from loupe.base.media import clip_path
from loupe.cli import main
from loupe.run.analyze import RowWriter, columns_for
from loupe.run.pipeline import load_model
from tests.helpers import make_copy_last_model

ray = pytest.importorskip("ray")

CLIP = clip_path("carphone_pristine.mp4")  # 120 frames


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray (2 CPUs) for the whole module: starting Ray takes seconds."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield
    ray.shutdown()


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def without_latency(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "latency_ms"} for r in rows]


@pytest.fixture
def stills(tmp_path) -> Path:
    folder = tmp_path / "stills"
    folder.mkdir()
    for k in range(3):
        cv2.imwrite(str(folder / f"s{k}.png"), np.full((16, 20, 3), (50 * k, 90, 200 - 50 * k), np.uint8))
    return folder


def test_ray_rows_equal_the_local_run_and_parts_of_a_video_ran_in_two_processes(
        ray_session, tmp_path, argmax_model, stills):
    from loupe.run.cluster import analyze_on_ray

    anomaly = make_copy_last_model(tmp_path / "anomaly.onnx")  # keeps 4 past frames: parts start 4 frames early
    models = [str(argmax_model), str(anomaly)]
    inputs = [str(stills), str(CLIP)]
    local = tmp_path / "local.csv"
    argv = ["analyze", *inputs, "--model", models[0], "--model", models[1], "--quiet"]
    assert main([*argv, "--out", str(local)]) == 0

    loaded = [load_model(m, display_max_side=None) for m in models]
    out = tmp_path / "ray.csv"
    with open(out, "w", newline="") as f:
        summary, parts = analyze_on_ray(inputs, models, RowWriter(f, "csv", columns_for(loaded, False)),
                                        workers=2, part_frames=30)
    assert summary.exit_code == 0 and summary.frames == 3 + 120
    rows, expected = read(out), read(local)
    assert len(rows) == len(expected) == 2 * (3 + 120)
    assert without_latency(rows) == without_latency(expected)
    scored = [r for r in rows if r["model"] == "anomaly" and r["psnr"]]
    assert len(scored) == 120 - 4  # stills: each a new input (no history); the clip from frame 4 on
    video_parts = [p for p in parts if p.part.spec == str(CLIP)]
    assert [(p.part.start, p.part.stop, p.part.warmup) for p in video_parts] == [
        (0, 30, 0), (30, 60, 4), (60, 90, 4), (90, None, 4)]
    assert len({p.pid for p in video_parts}) >= 2, [p.pid for p in video_parts]
    assert all(p.pid != 0 for p in parts)


def test_cli_ray_gives_the_local_rows_errors_and_exit_code(ray_session, tmp_path, argmax_model, stills, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"")
    inputs = [str(CLIP), str(bad), str(stills)]
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    argv = ["analyze", *inputs, "--model", str(argmax_model), "--quiet"]
    assert main([*argv, "--out", str(local)]) == 3
    local_err = [line for line in capsys.readouterr().err.splitlines() if "broken.mp4" in line]
    assert main([*argv, "--out", str(remote), "--ray", "--ray-workers", "2"]) == 3
    ray_err = [line for line in capsys.readouterr().err.splitlines() if "broken.mp4" in line]
    assert ray_err == local_err == [f"loupe: {bad}: broken.mp4 is empty (0 bytes)"]
    import json

    a = [json.loads(x) for x in remote.read_text().splitlines()]
    b = [json.loads(x) for x in local.read_text().splitlines()]
    assert len(a) == len(b) == 120 + 3
    assert [{k: v for k, v in r.items() if k != "latency_ms"} for r in a] == \
        [{k: v for k, v in r.items() if k != "latency_ms"} for r in b]


def test_parts_stop_at_max_frames_and_a_resume_starts_at_the_first_missing_frame():
    from loupe.run.cluster import Probe, plan_parts

    probes = [Probe("a.png", "other", 1), Probe("v.mp4", "video", 120)]
    parts = plan_parts(probes, 2, 4, False, part_frames=20, max_frames=50)
    assert [(p.spec, p.start, p.stop, p.warmup, p.max_frames) for p in parts] == [
        ("a.png", 0, None, 4, 50), ("v.mp4", 0, 20, 0, 50), ("v.mp4", 20, 40, 4, 50), ("v.mp4", 40, None, 4, 50)]
    # --resume: frames 0..29 written for both models, frame 30 for one only
    done = {("v.mp4", i, m) for i in range(30) for m in ("seg", "codec")} | {("v.mp4", 30, "seg"), ("a.png", 0, "seg")}
    parts = plan_parts(probes, 2, 4, False, part_frames=20, done=done, model_names=["seg", "codec"])
    assert [(p.spec, p.start, p.stop, p.warmup) for p in parts] == [
        ("a.png", 0, None, 4), ("v.mp4", 30, 50, 4), ("v.mp4", 50, 70, 4), ("v.mp4", 70, 90, 4), ("v.mp4", 90, 110, 4),
        ("v.mp4", 110, None, 4)]
    # a task whose history is unbounded: never split, never resumed mid-input
    assert [(p.start, p.stop) for p in plan_parts(probes, 2, None, False, part_frames=20, done=done,
                                                  model_names=["seg", "codec"])] == [(0, None), (0, None)]


def test_compression_models_are_split_and_max_frames_works_on_ray(ray_session, tmp_path, argmax_model):
    """A compression decoder is fed the frame's index (history 0): its video is split like any
    other, and --max-frames caps every input, with the local run's rows."""
    from loupe.run.cluster import analyze_on_ray
    from tests.compression_model import make_compression_model

    codec, _ = make_compression_model(tmp_path / "codec.onnx", frames=30)
    models = [str(argmax_model), str(codec)]
    local = tmp_path / "local.csv"
    assert main(["analyze", str(CLIP), "--model", models[0], "--model", models[1], "--max-frames", "50", "--quiet",
                 "--out", str(local)]) == 0
    loaded = [load_model(m, display_max_side=None) for m in models]
    out = tmp_path / "ray.csv"
    with open(out, "w", newline="") as f:
        summary, parts = analyze_on_ray([str(CLIP)], models, RowWriter(f, "csv", columns_for(loaded, False)),
                                        workers=2, part_frames=20, max_frames=50)
    assert summary.exit_code == 0 and summary.frames == 50
    assert [(p.part.start, p.part.stop, p.part.warmup) for p in parts] == [(0, 20, 0), (20, 40, 0), (40, None, 0)]
    rows, expected = read(out), read(local)
    assert len(rows) == 2 * 50 and without_latency(rows) == without_latency(expected)
    assert sum(1 for r in rows if r["task"] == "compression" and r["psnr"]) == 30  # the frames it encodes


def test_cli_ray_takes_every_analyze_option(ray_session, tmp_path, argmax_model, stills, monkeypatch, capsys):
    """--max-frames and --resume with --ray: an interrupted local run resumed on Ray ends with the
    uninterrupted run's rows (a history-keeping anomaly model included)."""
    from tests.faults.test_resume import interrupt_after

    anomaly = make_copy_last_model(tmp_path / "anomaly.onnx")
    argv = ["analyze", str(stills), str(CLIP), "--model", str(argmax_model), "--model", str(anomaly),
            "--max-frames", "60", "--quiet"]
    full = tmp_path / "full.csv"
    assert main([*argv, "--out", str(full)]) == 0
    out = tmp_path / "rows.csv"
    with monkeypatch.context() as m:
        interrupt_after(m, 2 * 3 + 41)  # the stills, then clip frames 0..19 and frame 20's first row
        assert main([*argv, "--out", str(out)]) == 130
    capsys.readouterr()
    rc = main([*argv, "--out", str(out), "--resume", "--ray", "--ray-workers", "2", "--ray-part-frames", "16"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "47 rows already there" in err
    rows, expected = read(out), read(full)
    assert len(rows) == len(expected) == 2 * (3 + 60)
    assert without_latency(rows) == without_latency(expected)


def test_ray_help_says_every_option_works(capsys):
    assert main(["analyze", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "the other options work with it (except --task, the thresholds and --track, which are refused)" in text
