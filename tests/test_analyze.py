"""``loupe analyze``: one row per input x frame x model, exit codes, CSV/JSONL, no torch needed."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from loupe.cli import main
from loupe.media import clip_path, dicom_test_file

from tests.helpers import expected_argmax_map

BASE = ["input", "frame", "timestamp_s", "model", "task", "latency_ms"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_real_clip_gives_one_row_per_frame(tmp_path, argmax_model):
    out = tmp_path / "rows.csv"
    rc = main(["analyze", str(clip_path("carphone_pristine.mp4")), "--model", str(argmax_model), "--out", str(out), "--quiet"])
    assert rc == 0
    rows = read_csv(out)
    assert len(rows) == 120
    assert list(rows[0].keys()) == [*BASE, "area_red", "area_green", "area_blue"]
    assert [int(r["frame"]) for r in rows] == list(range(120))
    ts = [float(r["timestamp_s"]) for r in rows]
    assert ts[0] == pytest.approx(0.0, abs=1e-6) and all(b > a for a, b in zip(ts, ts[1:]))
    assert {r["task"] for r in rows} == {"segmentation"} and {r["model"] for r in rows} == {"argmax"}
    for r in rows:
        total = sum(float(r[c]) for c in ("area_red", "area_green", "area_blue"))
        assert total == pytest.approx(1.0, abs=1e-4)


def test_areas_are_the_fractions_of_the_frame(tmp_path, argmax_model):
    img = np.zeros((40, 100, 3), np.uint8)
    img[:, :25] = (250, 0, 0)  # red quarter (RGB)
    img[:, 25:] = (0, 0, 250)  # blue rest
    p = tmp_path / "quarter.png"
    cv2.imwrite(str(p), img[:, :, ::-1])
    out = tmp_path / "rows.jsonl"
    assert main(["analyze", str(p), "--model", str(argmax_model), "--out", str(out), "--quiet"]) == 0
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["area_red"] == pytest.approx(0.25) and row["area_blue"] == pytest.approx(0.75)
    assert row["area_green"] == 0 and row["frame"] == 0
    assert (expected_argmax_map(img) == 2).mean() == pytest.approx(0.75)


def test_corrupt_file_exits_2_with_one_clear_line(tmp_path, argmax_model, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    rc = main(["analyze", str(bad), "--model", str(argmax_model), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [line for line in err.splitlines() if "broken.mp4" in line]
    assert len(lines) == 1 and lines[0].startswith("loupe: ")
    assert "Traceback" not in err


def test_folder_with_good_and_bad_files_exits_3_and_keeps_good_rows(tmp_path, argmax_model, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"good{i}.png"), np.full((16, 16, 3), 200, np.uint8))
    (folder / "bad.png").write_bytes(b"not a png at all")
    (folder / "notes.xyz").write_text("hello")
    out = tmp_path / "rows.csv"
    rc = main(["analyze", str(folder), "--model", str(argmax_model), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 3
    rows = read_csv(out)
    assert sorted(Path(r["input"]).name for r in rows) == ["good0.png", "good1.png"]
    assert "bad.png" in err and "notes.xyz" in err and "Traceback" not in err


def test_two_models_give_union_columns(tmp_path, argmax_model):
    from tests.helpers import make_argmax_model

    other = make_argmax_model(tmp_path / "other.onnx", stride=2)
    out = tmp_path / "rows.csv"
    rc = main(["analyze", str(clip_path("carphone_pristine.mp4")), "--model", str(argmax_model),
               "--model", str(other), "--max-frames", "3", "--out", str(out), "--quiet"])
    assert rc == 0
    rows = read_csv(out)
    assert len(rows) == 6 and [r["model"] for r in rows[:2]] == ["argmax", "other"]


def test_dicom_rows_carry_series_and_slice(tmp_path, argmax_model):
    out = tmp_path / "ct.jsonl"
    rc = main(["analyze", str(dicom_test_file("CT_small.dcm")), "--model", str(argmax_model), "--out", str(out), "--quiet"])
    assert rc == 0
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["series_uid"] and row["instance"] is not None and row["slice_position_mm"] is not None


def test_usage_errors_exit_2(tmp_path, argmax_model, capsys):
    assert main(["analyze", str(tmp_path / "missing.mp4"), "--model", str(argmax_model), "--quiet"]) == 2
    assert "missing.mp4" in capsys.readouterr().err
    assert main(["analyze", "x.mp4", "--model", str(argmax_model), "--out", str(tmp_path / "a.txt")]) == 2
    bad_model = tmp_path / "bad.onnx"
    bad_model.write_bytes(b"nope")
    assert main(["analyze", "x.mp4", "--model", str(bad_model)]) == 2
    assert "bad.onnx" in capsys.readouterr().err


def test_summary_table_without_out(argmax_model, capsys):
    rc = main(["analyze", str(clip_path("carphone_pristine.mp4")), "--model", str(argmax_model), "--max-frames", "5", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "carphone_pristine.mp4" in out and "5 frames" in out


def test_analyze_runs_without_torch(tmp_path, argmax_model):
    out = tmp_path / "rows.csv"
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from loupe.cli import main\n"
        f"rc = main(['analyze', {str(clip_path('carphone_pristine.mp4'))!r}, '--model', {str(argmax_model)!r},"
        f" '--max-frames', '4', '--out', {str(out)!r}, '--quiet'])\n"
        "assert 'torch' not in sys.modules\n"
        "sys.exit(rc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(read_csv(out)) == 4


def test_info_prints_card_and_providers(argmax_model, capsys):
    assert main(["info", str(argmax_model)]) == 0
    out = capsys.readouterr().out
    assert "task: segmentation" in out and "labels (3): red, green, blue" in out
    assert "providers: " in out and "CPUExecutionProvider" in out
