"""Compression task: frame index in, decoded frame out, scored against the cropped source frame."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from loupe.base import quality as q
from loupe.base.media import clip_path
from loupe.cli import main
from loupe.inference.engine import Engine, ModelError
from loupe.run.pipeline import Runner, load_model
from loupe.sources.base import Frame
from loupe.tasks import make_task
from loupe.tasks.compression import CompressionResult, CompressionTask
from tests.compression_model import CLIP, clip_rgb, expected_quality, make_compression_model

FRAMES = 6


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path, table = make_compression_model(tmp_path_factory.mktemp("comp") / "table.onnx", frames=FRAMES)
    return path, table


def test_task_scores_each_frame_as_ffmpeg_would(model):
    path, table = model
    lm = load_model(str(path), providers="cpu")
    assert isinstance(lm.task, CompressionTask)
    want = expected_quality(table, FRAMES)
    runner = Runner([lm])
    for i, rgb in enumerate(clip_rgb(FRAMES)):
        res = runner.process(Frame(rgb, i, i / 29.97)).results[0].result
        assert isinstance(res, CompressionResult)
        assert res.recon.shape == res.target.shape == (64, 72, 3) and res.recon.dtype == np.uint8
        assert res.psnr == pytest.approx(want[i]["psnr"], abs=1e-9)
        assert res.ssim == pytest.approx(want[i]["ssim"], abs=1e-9)
        assert res.psnr_rgb == pytest.approx(want[i]["psnr_rgb"], abs=1e-9)
        # Gaussian noise of sigma 4 (8-bit): RGB MSE ~ 16 -> ~36 dB; YUV PSNR a little higher
        assert 33.0 < res.psnr_rgb < 38.0 and res.psnr > res.psnr_rgb
        assert 0.8 < res.ssim < 1.0
        assert res.bpp == pytest.approx(40_000 / (FRAMES * 64 * 72))
        assert res.bits == 40_000
        row = lm.task.row(res)
        assert set(row) == {"psnr", "ssim", "psnr_rgb", "bpp"}


def test_target_is_crop_then_inter_area(model):
    import cv2

    path, _ = model
    task = make_task(Engine(path, providers="cpu"))
    rgb = clip_rgb(1)[0]
    feeds, ctx = task.prepare(Frame(rgb, 0, 0.0))
    assert feeds["frame_index"].dtype == np.int64 and feeds["frame_index"].tolist() == [0]
    want = cv2.resize(rgb[8:136, 16:160], (72, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(ctx.target, want)


def test_frames_past_the_model_get_a_message_not_a_crash(model):
    path, _ = model
    runner = Runner([load_model(str(path), providers="cpu")])
    rgb = clip_rgb(1)[0]
    res = runner.process(Frame(rgb, FRAMES, 1.0)).results[0].result
    assert res.recon is None and res.psnr is None
    assert f"past the {FRAMES} frames" in res.message and CLIP in res.message
    # a frame too small for the crop
    res = runner.process(Frame(rgb[:100, :100], 0, 0.0)).results[0].result
    assert res.psnr is None and "crop" in res.message


def test_output_shape_disagreeing_with_card_is_a_model_error(tmp_path):
    path, _ = make_compression_model(tmp_path / "bad.onnx", frames=2, output_size=(32, 36))
    runner = Runner([load_model(str(path), providers="cpu")])
    with pytest.raises(ModelError, match="the card says 1 x 3 x 64 x 72"):
        runner.process(Frame(clip_rgb(1)[0], 0, 0.0))


def test_identical_reconstruction_has_infinite_psnr_and_empty_cells(tmp_path):
    path, _ = make_compression_model(tmp_path / "exact.onnx", frames=2, noise=0.0)
    lm = load_model(str(path), providers="cpu")
    res = Runner([lm]).process(Frame(clip_rgb(1)[0], 0, 0.0)).results[0].result
    assert math.isinf(res.psnr) and res.ssim == pytest.approx(1.0)
    assert lm.task.row(res)["psnr"] is None  # JSON null / empty CSV cell, not "inf"


def test_analyze_writes_psnr_ssim_bpp_rows(model, tmp_path, capsys):
    path, table = model
    want = expected_quality(table, FRAMES)
    out = tmp_path / "rows.csv"
    rc = main(["analyze", str(clip_path(CLIP)), "--model", str(path), "--out", str(out), "--max-frames", "8",
               "--quiet", "--providers", "cpu"])
    assert rc == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 8
    assert {"psnr", "ssim", "psnr_rgb", "bpp"} <= set(rows[0])
    for i, r in enumerate(rows[:FRAMES]):
        assert float(r["psnr"]) == pytest.approx(want[i]["psnr"], abs=1e-4)
        assert float(r["ssim"]) == pytest.approx(want[i]["ssim"], abs=1e-6)
        assert float(r["bpp"]) == pytest.approx(40_000 / (FRAMES * 64 * 72), abs=1e-6)
    assert rows[FRAMES]["psnr"] == "" and rows[FRAMES + 1]["ssim"] == ""  # past the model's frames
    # JSONL stays valid JSON
    out2 = tmp_path / "rows.jsonl"
    assert main(["analyze", str(clip_path(CLIP)), "--model", str(path), "--out", str(out2), "--max-frames", "2",
                 "--quiet", "--providers", "cpu"]) == 0
    recs = [json.loads(line) for line in out2.read_text().splitlines()]
    assert recs[0]["psnr"] == pytest.approx(want[0]["psnr"], abs=1e-4)
    assert q.json_number(float("inf")) is None
