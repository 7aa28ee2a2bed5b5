"""``loupe analyze``: one row per input x frame x model, exit codes, CSV/JSONL, no torch needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from loupe.base.media import clip_path, dicom_test_file
from loupe.cli import main
from tests.helpers import expected_argmax_map, read_csv

BASE = ["input", "frame", "timestamp_s", "model", "task", "latency_ms"]


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


# ---------------------------------------------------------------------------- DICOM series


def write_rgb_slices(folder: Path, red_columns: list[int], *, uid: str, step: float | None = 2.0,
                     thickness: float | None = None) -> None:
    """100 x 100 RGB DICOM slices with PixelSpacing [0.5, 0.25]: the first ``n`` columns red,
    the rest blue (the argmax model gives class red / blue), ``step`` mm apart."""
    import pydicom
    from pydicom.data import get_testdata_file

    folder.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(get_testdata_file("SC_rgb.dcm", download=False))
    for k, n in enumerate(red_columns):
        img = np.zeros((100, 100, 3), np.uint8)
        img[:, :n] = (250, 0, 0)
        img[:, n:] = (0, 0, 250)
        ds.PixelData = img.tobytes()
        ds.PlanarConfiguration = 0
        ds.PixelSpacing = [0.5, 0.25]
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = len(red_columns) - k  # against position order
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        if step is not None:
            ds.ImagePositionPatient = [0.0, 0.0, k * step]
        if thickness is not None:
            ds.SliceThickness = thickness
        ds.save_as(folder / f"rgb{len(red_columns) - k}.dcm")


def test_dicom_folder_analyses_every_series_in_playing_order(tmp_path, argmax_model):
    from tests.test_dicom_series import UID_A, UID_B, two_series

    folder = tmp_path / "study"
    two_series(folder)  # B: 3 slices 10 mm apart, then A: 4 slices 2.5 mm apart (+ junk)
    out = tmp_path / "rows.csv"
    rc = main(["analyze", str(folder), "--model", str(argmax_model), "--out", str(out), "--quiet"])
    assert rc == 0  # the README and the RT plan are not images of a series: ignored
    rows = read_csv(out)
    header = list(rows[0].keys())
    assert header[len(BASE):len(BASE) + 5] == [
        "series_uid", "series_description", "instance", "slice_position_mm", "slice_spacing_mm",
    ]  # fmt: skip
    assert header[-6:] == [
        "area_mm2_red", "area_mm2_green", "area_mm2_blue",
        "volume_ml_red", "volume_ml_green", "volume_ml_blue",
    ]  # fmt: skip
    assert [r["input"] for r in rows] == [f"{folder}#{UID_B}"] * 3 + [f"{folder}#{UID_A}"] * 4
    assert [r["series_uid"] for r in rows] == [UID_B] * 3 + [UID_A] * 4
    assert [r["series_description"] for r in rows] == ["Axial B"] * 3 + ["Axial A"] * 4
    assert [int(r["frame"]) for r in rows] == [0, 1, 2, 0, 1, 2, 3]
    assert [int(r["instance"]) for r in rows] == [3, 2, 1, 4, 3, 1, 2]
    for uid, step in ((UID_B, 10.0), (UID_A, 2.5)):
        mine = [r for r in rows if r["series_uid"] == uid]
        z = [float(r["slice_position_mm"]) for r in mine]
        assert all(b - a == pytest.approx(step) for a, b in zip(z, z[1:]))
        assert {float(r["slice_spacing_mm"]) for r in mine} == {step}
        # greyscale CT feeds the RGB model as three equal channels: class 0 (red) everywhere
        area = 128 * 128 * 0.661468**2
        assert [float(r["area_mm2_red"]) for r in mine] == pytest.approx([area] * len(mine), rel=1e-5)
        volumes = [float(r["volume_ml_red"]) for r in mine]  # running total within the series
        expected = [area * step * (k + 1) / 1000 for k in range(len(mine))]
        assert volumes == pytest.approx(expected, rel=1e-5)


def test_area_mm2_and_volume_are_exact(tmp_path, argmax_model, capsys):
    folder = tmp_path / "rgb"
    write_rgb_slices(folder, [20, 40, 60], uid="1.2.3.4")
    out = tmp_path / "rows.jsonl"
    assert main(["analyze", str(folder), "--model", str(argmax_model), "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["input"] for r in rows] == [f"{folder}#1.2.3.4"] * 3
    assert [r["slice_position_mm"] for r in rows] == [0.0, 2.0, 4.0]
    assert [r["area_mm2_red"] for r in rows] == [100 * 20 * 0.125, 100 * 40 * 0.125, 100 * 60 * 0.125]
    assert [r["area_mm2_blue"] for r in rows] == [100 * 80 * 0.125, 100 * 60 * 0.125, 100 * 40 * 0.125]
    assert [r["slice_spacing_mm"] for r in rows] == [2.0] * 3
    assert [r["volume_ml_red"] for r in rows] == pytest.approx([0.5, 1.5, 3.0])
    assert [r["volume_ml_blue"] for r in rows] == pytest.approx([2.0, 3.5, 4.5])
    assert rows[-1]["volume_ml_green"] == 0

    assert main(["analyze", str(folder), "--model", str(argmax_model), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "volume blue 4.50 mL, red 3.00 mL" in table and "rgb [" in table


def test_mm2_columns_are_empty_for_inputs_without_spacing(tmp_path, argmax_model):
    write_rgb_slices(tmp_path / "one", [25], uid="1.2.3.5", step=None, thickness=3.0)
    png = tmp_path / "plain.png"
    cv2.imwrite(str(png), np.zeros((8, 8, 3), np.uint8))
    out = tmp_path / "rows.csv"
    rc = main(["analyze", str(png), str(tmp_path / "one" / "rgb1.dcm"), "--model", str(argmax_model),
               "--out", str(out), "--quiet"])
    assert rc == 0
    image_row, dicom_row = read_csv(out)
    assert image_row["area_mm2_red"] == "" and image_row["volume_ml_red"] == ""
    assert image_row["series_uid"] == ""
    assert float(dicom_row["area_mm2_red"]) == 100 * 25 * 0.125
    # one slice: its Slice Thickness is the spacing, its slab the volume
    assert float(dicom_row["slice_spacing_mm"]) == 3.0
    assert float(dicom_row["volume_ml_red"]) == pytest.approx(100 * 25 * 0.125 * 3.0 / 1000)


def test_expand_inputs_and_analyze_split_dicom_folders_into_series(tmp_path, argmax_model):
    from loupe.run.analyze import analyze, expand_inputs
    from loupe.run.pipeline import load_model
    from tests.test_dicom_series import UID_A, UID_B, two_series

    two_series(tmp_path / "ct")
    images = tmp_path / "images"
    images.mkdir()
    for name in ("b10.png", "b2.png"):
        cv2.imwrite(str(images / name), np.zeros((4, 4, 3), np.uint8))
    assert expand_inputs([str(tmp_path / "ct"), str(images)]) == [
        f"{tmp_path / 'ct'}#{UID_B}", f"{tmp_path / 'ct'}#{UID_A}",
        str(images / "b2.png"), str(images / "b10.png"),
    ]  # fmt: skip
    # analyze() itself splits a DICOM folder (callers that skip expand_inputs, e.g. the window)
    model = load_model(str(argmax_model), display_max_side=None)
    summary = analyze([str(tmp_path / "ct")], [model])
    assert [s.path for s in summary.inputs] == [f"{tmp_path / 'ct'}#{UID_B}", f"{tmp_path / 'ct'}#{UID_A}"]
    assert [s.frames for s in summary.inputs] == [3, 4] and summary.exit_code == 0
    assert summary.inputs[0].series_description == "Axial B"
    assert summary.inputs[1].volume_ml["argmax"]["red"] == pytest.approx(4 * 128 * 128 * 0.661468**2 * 2.5 / 1000, rel=1e-5)


def test_density_and_anomaly_columns_with_segmentation(tmp_path, argmax_model):
    from loupe.base.quality import psnr
    from loupe.sources.open import open_source
    from tests.helpers import make_copy_last_model, make_density_model

    dens = make_density_model(tmp_path / "dens.onnx")
    anom = make_copy_last_model(tmp_path / "anom.onnx", past=4)
    out = tmp_path / "rows.csv"
    clip = str(clip_path("carphone_pristine.mp4"))
    rc = main(["analyze", clip, "--model", str(argmax_model), "--model", str(dens), "--model", str(anom),
               "--max-frames", "8", "--out", str(out), "--quiet"])
    assert rc == 0
    rows = read_csv(out)
    assert len(rows) == 24
    cols = list(rows[0].keys())
    assert cols[:6] == BASE and {"area_red", "count", "roi_count", "psnr", "score", "flagged"} <= set(cols)
    by_model = {m: [r for r in rows if r["model"] == m] for m in ("argmax", "dens", "anom")}
    # union columns: empty where they do not apply
    assert by_model["argmax"][0]["count"] == "" and by_model["dens"][0]["area_red"] == ""
    src = open_source(clip)
    frames = [f.pixels for _, f in zip(range(8), src)]
    src.close()
    for r, f in zip(by_model["dens"], frames):
        assert float(r["count"]) == pytest.approx(f[:, :, 0].sum() / 255.0, rel=1e-4)
    anom_rows = by_model["anom"]
    assert all(r["psnr"] == "" for r in anom_rows[:4])  # 4 past frames needed
    for t in range(4, 8):
        expect = psnr(frames[t - 1], frames[t])  # 8-bit frames: data range 255
        assert float(anom_rows[t]["psnr"]) == pytest.approx(expect, abs=0.02)
        assert anom_rows[t]["flagged"] in ("0", "1")


def test_calibrate_per_video_uses_the_inputs_own_psnr_range(tmp_path):
    from tests.helpers import make_copy_last_model

    anom = make_copy_last_model(tmp_path / "anom.onnx", past=2, calibration=(0.0, 1.0))
    out = tmp_path / "rows.jsonl"
    clip = str(clip_path("carphone_pristine.mp4"))
    assert main(["analyze", clip, "--model", str(anom), "--max-frames", "12", "--calibrate-per-video",
                 "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12
    scored = [r for r in rows if r["psnr"] is not None]
    p = np.array([r["psnr"] for r in scored])
    s = np.array([r["score"] for r in scored])
    np.testing.assert_allclose(s, 1 - (p - p.min()) / (p.max() - p.min()), atol=1e-5)
    assert s.min() == pytest.approx(0.0) and s.max() == pytest.approx(1.0)
    assert all(r["flagged"] == int(r["score"] >= 0.5) for r in scored)


def test_row_writer_writes_non_finite_numbers_as_null_and_empty_cells():
    """Identical frames have an infinite PSNR: whichever task returns it, JSONL gets null (not
    the non-standard ``Infinity``) and CSV an empty cell; finite values pass unchanged."""
    import io

    from loupe.run.analyze import RowWriter

    rows = [{"frame": 0, "psnr": float("inf"), "score": np.float32(0.25)},
            {"frame": 1, "psnr": float("nan"), "score": 0.5}]
    js = io.StringIO()
    w = RowWriter(js, "jsonl", ["frame", "psnr", "score"])
    for r in rows:
        w.write(r)
    got = [json.loads(line) for line in js.getvalue().splitlines()]
    assert got == [{"frame": 0, "psnr": None, "score": 0.25}, {"frame": 1, "psnr": None, "score": 0.5}]
    cs = io.StringIO()
    w = RowWriter(cs, "csv", ["frame", "psnr", "score"])
    for r in rows:
        w.write(r)
    assert cs.getvalue().splitlines() == ["frame,psnr,score", "0,,0.25", "1,,0.5"]
