"""Fitting a codebook on a clip: dead-code restarts, cancel, export, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loupe.base.media import clip_path
from loupe.base.progress import CallbackProgress, Cancelled
from loupe.inference.engine import Engine
from loupe_models.exporters.codebook import run_codebook_onnx, verify_codebook_onnx
from loupe_models.fitters.anomaly import decode_span
from loupe_models.fitters.codebook import (
    CodebookFitConfig,
    VQAutoencoder,
    _CodesAndRecon,
    auto_size,
    codebook_stats,
    fit_codebook_clip,
    fit_codebook_frames,
    main,
)

TINY = {"codebook_size": 64, "batch": 4, "crop": 32, "width": 32, "dim": 16, "threads": 1,
        "time_budget_s": 60.0}


# no TORCH_THREADS: the test sets its own; tests/models/conftest.py restores torch's threads


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    fr, _ = decode_span(clip_path("bikes.mp4"), 0.0, 0.4, size=(64, 96))
    return fr  # 10 frames, 96x64


def test_dead_code_restarts_use_the_codebook(frames):
    with_restarts = fit_codebook_frames(frames, CodebookFitConfig(steps=40, **TINY))
    without = fit_codebook_frames(frames, CodebookFitConfig(steps=40, restarts=False, **TINY))
    # a random codebook collapses onto a handful of codes; restarts put most of them to work
    assert without.codes_used <= 8
    assert with_restarts.codes_used >= 24 and with_restarts.codes_used >= 3 * without.codes_used
    assert with_restarts.perplexity > 2 * without.perplexity
    assert with_restarts.restarted > 0 and without.restarted == 0
    assert with_restarts.recon_psnr > without.recon_psnr  # more codes, better reconstruction
    assert with_restarts.heldout_frames == 2 and with_restarts.train_frames == 8


def test_k_active_codes_restarts(frames):
    cfg = CodebookFitConfig(steps=30, k=3, **TINY)
    out = fit_codebook_frames(frames, cfg)
    off = fit_codebook_frames(frames, CodebookFitConfig(steps=30, k=3, restarts=False, **TINY))
    assert out.codes_used > 2 * off.codes_used
    with torch.no_grad():
        x = torch.from_numpy(frames[:1]).permute(0, 3, 1, 2).float() / 127.5 - 1
        ids = out.model.codes(x)
        z = out.model.encode(x).permute(0, 2, 3, 1).reshape(-1, cfg.dim)
    assert tuple(ids.shape) == (1, 16, 24, 3)  # stride 4, k = 3
    # most similar first, and three different codes per position
    e = torch.nn.functional.normalize(out.model.embed.detach(), dim=1)
    sim = torch.nn.functional.normalize(z, dim=1) @ e.t()
    chosen = torch.gather(sim, 1, ids.reshape(-1, 3))
    assert torch.all(chosen[:, :-1] >= chosen[:, 1:])
    assert torch.all(chosen[:, 2] >= sim.topk(3, dim=1).values[:, 2] - 1e-6)
    assert all(len(set(r)) == 3 for r in ids.reshape(-1, 3).tolist())


def test_report_info_and_cancel(frames):
    seen: list[dict] = []

    def report(frac, info):
        seen.append(dict(info))
        return len(seen) < 7

    with pytest.raises(Cancelled):
        fit_codebook_frames(frames, CodebookFitConfig(steps=1000, **TINY), progress=CallbackProgress(report))
    assert len(seen) == 7  # stopped at once
    assert {"loss", "codes_used", "perplexity", "dead_pct", "eta_s", "status"} <= set(seen[-1])
    assert seen[-1]["codes_used"] > 0 and 0 <= seen[-1]["dead_pct"] < 100


def test_cancel_writes_nothing(tmp_path):
    out = tmp_path / "m.onnx"
    calls = []

    def report(frac, info):
        calls.append(info)
        return "loss" not in info  # cancel at the first training step

    with pytest.raises(Cancelled):
        fit_codebook_clip("bikes.mp4", out, end=0.3, size=(64, 96), progress=CallbackProgress(report), threads=1)
    assert not out.exists()
    assert calls[0]["status"].startswith("decoding bikes.mp4")


def test_exported_model_runs_in_engine(tmp_path):
    out = tmp_path / "cb.onnx"
    res = fit_codebook_clip("bikes.mp4", out, end=0.4, size=(64, 96), codebook_size=32,
                            steps=15, threads=1, minutes=1.0)
    assert res.onnx_path == out and out.is_file()
    assert res.frames == 10 and res.steps == 15 and res.size == (64, 96)
    assert np.isfinite(res.recon_psnr) and res.codes_used > 1
    eng = Engine(out, providers="cpu")
    card = eng.card
    assert card.task == "codebook"
    assert card.output["levels"] == [
        {"name": "codes", "output": "codes", "codebook_size": 32, "stride": 4, "k": 1}]
    assert card.output["reconstruction"] == {"output": "recon", "scale": 0.5, "offset": 0.5}
    assert card.input.fixed_size == (64, 96) and card.input.mean == (0.5, 0.5, 0.5)
    assert card.source["architecture"] == "VQ (Loupe fit)"
    assert card.source["codes_used"] == res.codes_used and "bikes.mp4" in card.source["training_data"]
    import onnx

    assert onnx.load(str(out)).ir_version <= 10
    frame, _ = decode_span(clip_path("bikes.mp4"), 0.0, 0.02, size=(64, 96))
    x = torch.from_numpy(frame).permute(0, 3, 1, 2).float() / 127.5 - 1
    got = eng.run({eng.inputs[0].name: x.numpy()})
    assert got[0].dtype == np.int64 and got[0].shape == (1, 16, 24)
    assert got[1].shape == (1, 3, 64, 96)
    assert len(np.unique(got[0])) > 1
    # the reconstruction is a picture of the frame, not noise
    rgb = np.clip(got[1][0].transpose(1, 2, 0) * 0.5 + 0.5, 0, 1)
    assert np.corrcoef(rgb.ravel(), frame[0].ravel() / 255.0)[0, 1] > 0.5


def test_k_export_matches_torch(tmp_path, frames):
    from loupe_models.fitters.codebook import FitOutcome, export_fitted

    cfg = CodebookFitConfig(steps=10, k=2, **TINY)
    outcome = fit_codebook_frames(frames, cfg)
    assert isinstance(outcome, FitOutcome)
    out = export_fitted(outcome, tmp_path / "k2.onnx", "k2", {"architecture": "VQ (Loupe fit)",
                                                             "demo": False})
    x = torch.from_numpy(frames[3:4]).permute(0, 3, 1, 2).float() / 127.5 - 1
    got = run_codebook_onnx(out, x.numpy())
    with torch.no_grad():
        ids = outcome.model.codes(x)
        rec = outcome.model.decode_codes(ids)
    assert got["codes"].shape == (1, 16, 24, 2) and got["codes"].dtype == np.int64
    assert ids.shape == got["codes"].shape and rec.shape == got["recon"].shape
    eng = Engine(out, providers="cpu")
    # ONNX Runtime against the float64 model (CPU-independent): codes equal except where the
    # model itself flips a near-tie under float32 rounding, the reconstruction within the
    # tolerance plus the decoder's own sensitivity (not an exact float32 match: which of two
    # nearly equidistant codes wins depends on the CPU's summation order)
    check = verify_codebook_onnx(_CodesAndRecon(outcome.model).eval(), out, eng.card, x=x)
    assert check.ok, check.summary()
    assert eng.card.output["levels"][0]["k"] == 2


def test_torch_codes_match_onnx_after_fit(tmp_path, frames):
    """The fitted torch model and its ONNX give the same code map on a training frame."""
    from loupe_models.fitters.codebook import export_fitted

    outcome = fit_codebook_frames(frames, CodebookFitConfig(steps=20, **TINY))
    out = export_fitted(outcome, tmp_path / "k1.onnx", "k1", {"architecture": "VQ (Loupe fit)"})
    x = torch.from_numpy(frames[:2]).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        ids = outcome.model.codes(x).numpy()
    eng = Engine(out, providers="cpu")
    got = eng.run({"image": x.numpy()})
    assert got[0].shape == ids.shape
    # equal to the float64 model's codes except at the model's own near-ties (see above)
    check = verify_codebook_onnx(_CodesAndRecon(outcome.model).eval(), out, eng.card, x=x)
    assert check.ok, check.summary()
    assert check.code_mismatches["codes"] <= check.allowed_flips("codes")


def test_helpers():
    assert auto_size(272, 640) == (136, 320)
    assert auto_size(720, 1280) == (176, 320)  # 180 -> a multiple of 8
    assert auto_size(144, 176) == (144, 176)
    assert codebook_stats(np.array([5, 5, 0, 0])) == (2, pytest.approx(2.0))
    assert codebook_stats(np.zeros(3)) == (0, 0.0)
    with pytest.raises(ValueError, match="stride"):
        CodebookFitConfig(stride=2)
    with pytest.raises(ValueError, match="k must be"):
        CodebookFitConfig(k=40)
    m = VQAutoencoder(codebook_size=16, stride=8, dim=8, width=16).eval()
    with torch.no_grad():
        assert tuple(m.codes(torch.zeros(2, 3, 32, 48)).shape) == (2, 4, 6)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    code = main(["bikes.mp4", "--out", str(out), "--span", "0:0.3", "--size", "96x64",
                 "--steps", "5", "--codes", "16", "--threads", "1"])
    assert code == 0 and out.is_file()
    text = capsys.readouterr().out
    assert "wrote" in text and "codes used" in text
    # an unreadable clip: exit 2, one line
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"no video here")
    assert main([str(bad), "--out", str(tmp_path / "x.onnx"), "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: cannot read") and not (tmp_path / "x.onnx").exists()
    assert sum(line.startswith("error") for line in err) == 1
    assert main(["no_such_clip.mp4", "--out", str(tmp_path / "y.onnx")]) == 2
    assert main(["bikes.mp4", "--out", str(tmp_path / "y.onnx"), "--k", "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: k must be")


def test_loupe_fit_codebook(tmp_path):
    from loupe.cli import main as loupe_main
    from loupe.commands.fit import FIT_KINDS

    assert FIT_KINDS["codebook"] == "loupe_models.fitters.codebook"
    out = tmp_path / "via_loupe.onnx"
    assert loupe_main(["fit", "codebook", "bikes.mp4", "--out", str(out), "--span", ":0.2",
                       "--steps", "3", "--codes", "8", "--threads", "1"]) == 0
    # default working size: bikes.mp4 is 640x272 -> 320x136, stride 4 -> 80x34 codes
    eng = Engine(out, providers="cpu")
    assert eng.card.input.fixed_size == (136, 320)
    assert "5 frames at 320x136" in eng.card.source["training_data"]
