"""The compression report: neural model vs H.264/H.265 at matched bits, aligned, per frame."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from loupe.base.progress import CallbackProgress, Cancelled
from loupe.base.quality import AlignmentError
from loupe.run.compression_report import build_report
from tests.compression_model import expected_quality, make_compression_model

N = 12
BITS = 60_000


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_compression_model(tmp_path_factory.mktemp("rep") / "table.onnx", frames=N, bits=BITS)


@pytest.fixture(scope="module")
def report(model):
    seen = []
    rep = build_report(model[0], "carphone_pristine.mp4", max_frames=N, providers="cpu",
                       progress=CallbackProgress(lambda f, info: seen.append(f)))
    return rep, seen


def test_neural_figures_and_matched_codecs(model, report):
    rep, seen = report
    _, table = model
    want = expected_quality(table, N)
    assert rep.keys == ["original", "neural", "h264", "h265"]
    neural = rep.methods["neural"]
    assert neural.bits == BITS and neural.bpp == pytest.approx(BITS / (N * 64 * 72))
    for f, w in zip(neural.frames, want):
        assert f["psnr_all"] == pytest.approx(w["psnr"], abs=1e-9)
        assert f["ssim_all"] == pytest.approx(w["ssim"], abs=1e-9)
        assert f["psnr_rgb"] == pytest.approx(w["psnr_rgb"], abs=1e-9)
    assert neural.pooled["psnr_rgb_pooled"] < neural.pooled["psnr_pooled"]  # labelled second figure, differs
    for key in ("h264", "h265"):
        m = rep.methods[key]
        assert m.matched and abs(m.bits - BITS) <= 0.05 * BITS
        assert len(m.frames) == N and 30 < m.pooled["psnr_pooled"] < 60
        worst = m.worst(5)
        assert len(worst) == 5
        assert [m.frames[i]["psnr_all"] for i in worst] == sorted(f["psnr_all"] for f in m.frames)[:5]
    assert seen[-1] == 1.0 and all(b >= a for a, b in zip(seen, seen[1:]))


def test_rd_points_three_sizes_and_quality_rises_with_bits(report):
    rep, _ = report
    for codec in ("h264", "h265"):
        pts = sorted((p for p in rep.rd if p.method == codec), key=lambda p: p.size_factor)
        assert [p.size_factor for p in pts] == [0.5, 1.0, 2.0]
        assert pts[0].bits < pts[1].bits < pts[2].bits
        assert pts[0].psnr_pooled < pts[1].psnr_pooled < pts[2].psnr_pooled
        assert all(abs(p.bits - BITS * p.size_factor) <= 0.05 * BITS * p.size_factor for p in pts)
    assert sum(p.method == "neural" for p in rep.rd) == 1


def test_frames_for_display_and_csv(report, tmp_path):
    rep, _ = report
    for key in rep.keys:
        rgb = rep.frame_rgb(key, 3)
        assert rgb.shape == (64, 72, 3) and rgb.dtype == np.uint8
    # the H.264 frame shown is the decoded one the numbers were computed on
    y = rep.frame_yuv("h264", 3)[0].astype(float)
    y0 = rep.frame_yuv("original", 3)[0].astype(float)
    mse_y = float(((y - y0) ** 2).mean())
    assert mse_y == pytest.approx(rep.methods["h264"].frames[3]["mse_y"])
    out = rep.to_csv(tmp_path / "r.csv")
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == N + 2 and rows[-2]["frame"] == "pooled"
    assert float(rows[0]["psnr_h265"]) == pytest.approx(rep.methods["h265"].frames[0]["psnr_all"], abs=1e-4)
    assert float(rows[-2]["psnr_neural"]) == pytest.approx(rep.methods["neural"].pooled["psnr_pooled"], abs=1e-4)
    rd = list(csv.DictReader(rep.rd_to_csv(tmp_path / "rd.csv").open()))
    assert len(rd) == 7


def test_per_method_accessors_for_the_panel(report):
    rep, _ = report
    assert list(rep.methods) == ["neural", "h264", "h265", "h264@0.5", "h264@2", "h265@0.5", "h265@2"]
    assert rep.matched_methods == ["neural", "h264", "h265"]
    assert rep.frame_count == N and rep.streams == rep.keys
    assert rep.per_frame("h264", "psnr") == [f["psnr_all"] for f in rep.methods["h264"].frames]
    assert rep.pooled("neural")["psnr_rgb"] == rep.methods["neural"].pooled["psnr_rgb_pooled"]
    assert rep.bpp("h265@2") == pytest.approx(2 * rep.bpp("neural"), rel=0.06)
    worst = rep.worst("neural", 5)
    assert [i for i, _ in worst] == rep.methods["neural"].worst(5)
    assert worst[0][1] == min(rep.per_frame("neural", "psnr"))
    with pytest.raises(KeyError):
        rep.frame("h264@2", 0)  # only the matched streams keep frames
    assert len(rep.methods["h264@2"].encoded.decoded) == N  # ...the others decode again on demand


def test_alignment_is_checked_before_any_number(model, tmp_path):
    with pytest.raises(AlignmentError, match="the model decodes 12 frames, carphone_pristine.mp4 has 120"):
        build_report(model[0], "carphone_pristine.mp4", providers="cpu")
    slow, _ = make_compression_model(tmp_path / "slow.onnx", frames=4, fps=15.0)
    with pytest.raises(AlignmentError, match="timestamps differ"):
        build_report(slow, "carphone_pristine.mp4", max_frames=4, providers="cpu")


def test_cancel(model):
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        build_report(model[0], "carphone_pristine.mp4", max_frames=N, providers="cpu",
                     progress=CallbackProgress(cancelled=cancelled))
