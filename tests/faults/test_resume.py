"""``loupe analyze`` keeps the rows of an interrupted run (they are flushed as they come) and
``--resume`` continues it: the finished file equals an uninterrupted run's row for row (every
column but latency_ms), with no row twice, a partial last line dropped."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loupe.base.media import clip_path
from loupe.cli import main
from loupe.run.analyze import RowWriter
from tests.helpers import make_copy_last_model

CLIP = clip_path("carphone_pristine.mp4")  # 120 frames


def rows_of(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in path.read_text().splitlines()]


def same_rows(a: list[dict], b: list[dict]) -> None:
    strip = [{k: v for k, v in r.items() if k != "latency_ms"} for r in a]
    other = [{k: v for k, v in r.items() if k != "latency_ms"} for r in b]
    assert len(strip) == len(other)
    for i, (x, y) in enumerate(zip(strip, other)):
        assert x == y, f"row {i}: {x} != {y}"


def interrupt_after(monkeypatch, n_rows: int) -> None:
    """Ctrl+C after ``n_rows`` rows were written."""
    real = RowWriter.write
    count = [0]

    def write(self, row):
        if count[0] >= n_rows:
            raise KeyboardInterrupt
        count[0] += 1
        real(self, row)

    monkeypatch.setattr(RowWriter, "write", write)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_after_ctrl_c_and_a_partial_line(tmp_path, argmax_model, monkeypatch, capsys, suffix):
    folder = tmp_path / "stills"
    folder.mkdir()
    import cv2
    import numpy as np

    for k in range(3):
        cv2.imwrite(str(folder / f"s{k}.png"), np.full((16, 20, 3), (40 * k, 100, 200 - 40 * k), np.uint8))
    inputs = [str(folder), str(CLIP)]
    full = tmp_path / f"full{suffix}"
    assert main(["analyze", *inputs, "--model", str(argmax_model), "--out", str(full), "--quiet"]) == 0
    expected = rows_of(full)
    assert len(expected) == 3 + 120

    out = tmp_path / f"rows{suffix}"
    with monkeypatch.context() as m:
        interrupt_after(m, 50)
        assert main(["analyze", *inputs, "--model", str(argmax_model), "--out", str(out), "--quiet"]) == 130
    assert "interrupted; rows written so far" in capsys.readouterr().err
    assert len(rows_of(out)) == 50  # flushed as they came
    with open(out, "a") as f:  # the process died in the middle of a row
        f.write(f"{CLIP},50,2.0" if suffix == ".csv" else '{"input": "x", "fra')

    rc = main(["analyze", *inputs, "--model", str(argmax_model), "--out", str(out), "--quiet", "--resume"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "resuming" in err and "50 rows already there" in err and "partial last line was dropped" in err
    assert "loupe: 73 frames from" in err  # only the missing frames ran: the stills and 47 frames were done
    same_rows(rows_of(out), expected)


def test_resume_with_a_model_that_keeps_history(tmp_path, argmax_model, monkeypatch, capsys):
    """An anomaly model needs the T frames before (its declared ``history``): the input is re-run
    from T frames before the first missing row and only the missing rows are written, so its
    scores equal an uninterrupted run's."""
    anomaly = make_copy_last_model(tmp_path / "anomaly.onnx")
    argv = ["analyze", str(CLIP), "--model", str(argmax_model), "--model", str(anomaly), "--max-frames", "40", "--quiet"]
    full = tmp_path / "full.jsonl"
    assert main([*argv, "--out", str(full)]) == 0
    out = tmp_path / "rows.jsonl"
    with monkeypatch.context() as m:
        interrupt_after(m, 31)  # mid-frame: the segmenter's row of frame 15 is there, not the anomaly one
        assert main([*argv, "--out", str(out)]) == 130
    capsys.readouterr()
    rc = main([*argv, "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert rc == 0, err
    # frame 15 lacks its anomaly row; 4 frames of history before it: frames 11..39 ran
    assert "loupe: 29 frames from" in err, err
    rows = rows_of(out)
    same_rows(rows[:31], rows_of(full)[:31])
    assert sorted((r["frame"], r["model"]) for r in rows) == sorted((r["frame"], r["model"]) for r in rows_of(full))
    by_key = {(r["frame"], r["model"]): r for r in rows}
    for r in rows_of(full):
        got = {k: v for k, v in by_key[(r["frame"], r["model"])].items() if k != "latency_ms"}
        assert got == {k: v for k, v in r.items() if k != "latency_ms"}


def test_resume_with_a_compression_model_starts_at_the_first_missing_frame(tmp_path, argmax_model, monkeypatch,
                                                                          capsys):
    """A compression decoder is fed the frame's index, not earlier frames (``history`` 0): the
    resumed run seeks straight to the first missing frame, and the rows equal an uninterrupted run's
    (frames past the model's own 6 included)."""
    from tests.compression_model import make_compression_model

    codec, _ = make_compression_model(tmp_path / "codec.onnx", frames=6)
    argv = ["analyze", str(CLIP), "--model", str(argmax_model), "--model", str(codec), "--max-frames", "12",
            "--quiet"]
    full = tmp_path / "full.csv"
    assert main([*argv, "--out", str(full)]) == 0
    expected = rows_of(full)
    assert len(expected) == 24 and sum(1 for r in expected if r["task"] == "compression" and r["psnr"]) == 6
    out = tmp_path / "rows.csv"
    with monkeypatch.context() as m:
        interrupt_after(m, 9)  # frames 0..3 have both rows, frame 4 only the segmenter's
        assert main([*argv, "--out", str(out)]) == 130
    capsys.readouterr()
    rc = main([*argv, "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "loupe: 8 frames from" in err, err  # frames 4..11, not 0..11
    same_rows(rows_of(out), expected)


def test_resume_refuses_a_file_with_other_columns(tmp_path, argmax_model, capsys):
    out = tmp_path / "rows.csv"
    out.write_text("input,frame,something_else\nx,0,1\n")
    rc = main(["analyze", str(CLIP), "--model", str(argmax_model), "--out", str(out), "--quiet", "--resume"])
    assert rc == 2 and "other columns" in capsys.readouterr().err
    assert main(["analyze", str(CLIP), "--model", str(argmax_model), "--quiet", "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err


def test_rows_survive_a_killed_process_and_resume_completes(tmp_path, argmax_model):
    """A real kill (SIGKILL, nothing cleaned up): the rows flushed so far are on disk."""
    clip = clip_path("bigbuckbunny.mp4")  # 1280x720, slow enough to be killed half way
    out = tmp_path / "rows.csv"
    argv = [sys.executable, "-m", "loupe", "analyze", str(clip), "--model", str(argmax_model), "--out", str(out),
            "--quiet", "--threads", "1"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and proc.poll() is None:
            if out.exists() and out.read_text().count("\n") > 15:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    done = len(rows_of(out))
    assert 15 <= done < 132
    rc = main(["analyze", str(clip), "--model", str(argmax_model), "--out", str(out), "--quiet", "--resume",
               "--threads", "1"])
    assert rc == 0
    rows = rows_of(out)
    assert [int(r["frame"]) for r in rows] == list(range(132))
