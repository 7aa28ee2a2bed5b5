"""Anomaly predictors: official U-Net layout and golden output, the CT-D2GAN-style predictor,
PSNR/score helpers, ONNX export with the card, and the fitting CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from loupe.base.progress import CallbackProgress
from loupe.inference.card import ModelCard
from loupe.inference.preprocess import prepare
from loupe.sources.base import Frame
from loupe_models import golden
from loupe_models.checkpoint import CheckpointError
from loupe_models.exporters.anomaly import (
    AnomalyExportError,
    anomaly_score,
    anomaly_unet_card,
    calibrate,
    export_predictor,
    minmax_normalise,
    predictor_card,
    psnr,
    psnr_frames,
    regularity,
)
from loupe_models.fitters.anomaly import (
    FitConfig,
    fit_predictor,
    gradient_loss,
    main,
    parse_size,
    parse_span,
    split_windows,
)
from loupe_models.nets.anomaly import (
    PredictionUNet,
    TemporalAttentionPredictor,
    anomaly_unet,
    load_anomaly_unet_checkpoint,
)

NAME = "anomaly_prediction_unet"


TORCH_THREADS = 2  # at most (tests/models/conftest.py sets and restores torch's threads)


def _card_of(path) -> ModelCard:
    md = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return ModelCard.from_metadata(md)


def _moving_frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """``n`` RGB uint8 frames of a smooth random texture drifting right 1 px per frame."""
    rng = np.random.default_rng(seed)
    base = rng.random((h // 4 + 2, (w + n) // 4 + 2, 3)).astype(np.float32)
    big = torch.nn.functional.interpolate(
        torch.from_numpy(base).permute(2, 0, 1)[None], scale_factor=4, mode="bilinear",
        align_corners=False,
    )[0].permute(1, 2, 0).numpy()
    return np.stack([(big[:h, i : i + w] * 255).astype(np.uint8) for i in range(n)])


# --------------------------------------------------------------------------------------
# official U-Net: layout, golden, checkpoint
# --------------------------------------------------------------------------------------
def test_unet_state_dict_layout_matches_official():
    ref = golden.load_reference(NAME)
    model = anomaly_unet()
    sd = model.state_dict()
    assert list(sd) == list(ref["state_dict"])  # names and order
    assert {k: list(v.shape) for k, v in sd.items()} == ref["state_dict"]
    assert golden.check_layout(sd, ref) == []
    assert sum(p.numel() for p in model.parameters()) == ref["total_params"] == 7_707_011
    summary = ref["state_dict_summary"]
    assert len(sd) == summary["entries"]
    assert len(list(model.parameters())) == summary["parameter_entries"]
    assert len(list(model.buffers())) == summary["buffer_entries"]
    assert model.past_frames == 4


def test_unet_golden_output():
    gold = golden.load_golden(NAME)
    model = anomaly_unet()
    sd = golden.fill_state_dict(model)
    assert golden.check_fill(sd, gold["fill_check"]) == []
    model.load_state_dict(sd, strict=True)
    model.eval()
    x = golden.golden_input_for(gold)
    assert golden.check_input(x, gold["input"]) == []
    with torch.no_grad():
        out = model(x)
    entry = gold["outputs"]["pred_frame"]
    failures = golden.compare_output(out, entry, "pred_frame")
    assert failures == [], "\n".join(failures)
    # the tolerance is tight enough to catch a 0.1 % gain error or a missing tanh
    assert golden.compare_output(out * 1.001, entry)
    assert golden.compare_output(torch.atanh(out.clamp(-0.999, 0.999)), entry)


@pytest.mark.parametrize(("h", "w"), [(40, 56), (50, 66)])
def test_unet_runs_at_odd_sizes(h, w):
    model = PredictionUNet(12, 3).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 12, h, w))
    assert tuple(out.shape) == (1, 3, h, w)


def test_unet_checkpoint_net_g(tmp_path):
    model = anomaly_unet()
    sd = golden.fill_state_dict(model)
    path = tmp_path / "ped2_26000.pth"
    torch.save({"net_g": sd, "net_d": {"x.weight": torch.ones(2)}, "optimizer_g": {}}, path)
    loaded = load_anomaly_unet_checkpoint(path)
    assert list(loaded) == list(sd)
    model.load_state_dict(loaded, strict=True)
    assert torch.equal(model.outc.bias, sd["outc.bias"])
    torch.save({"net_g": {k: v for k, v in sd.items() if not k.startswith("outc.")}}, path)
    with pytest.raises(CheckpointError, match=r"missing 2 keys \(outc.weight"):
        load_anomaly_unet_checkpoint(path)


def test_unet_card_feeds_bgr_scaled_frames():
    card = anomaly_unet_card("ped2_26000.pth")
    assert card.task == "anomaly" and card.input.color == "BGR"
    assert card.input.fixed_size == (256, 256)
    assert card.output["past_frames"] == 4 and card.output["color"] == "BGR"
    assert "calibration" not in card.output  # per-video min-max, as the official evaluation
    rgb = np.zeros((256, 256, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 0, 51, 255
    x, _ = prepare(Frame(rgb, 0, 0.0), card.input)
    np.testing.assert_allclose(x[0, :, 0, 0], [1.0, 51 / 127.5 - 1, -1.0], atol=1e-6)  # B, G, R


@pytest.mark.slow
def test_unet_export_matches_torch(tmp_path):
    model = anomaly_unet()
    model.load_state_dict(golden.fill_state_dict(model))
    path, check = export_predictor(model, tmp_path / "unet.onnx", anomaly_unet_card(),
                                   sample_hw=(64, 64))
    assert check is not None and check.ok, check
    assert check.input_shape == (2, 12, 80, 72)
    assert _card_of(path).input.color == "BGR"


# --------------------------------------------------------------------------------------
# CT-D2GAN-style predictor
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("h", "w"), [(64, 64), (48, 80)])
def test_predictor_shapes_and_copy_init(h, w):
    model = TemporalAttentionPredictor(past_frames=4, width=8).eval()
    x = torch.rand(2, 12, h, w) * 2 - 1
    with torch.no_grad():
        out = model(x)
    assert tuple(out.shape) == (2, 3, h, w)
    assert float(out.abs().max()) <= 1.0
    # the head starts at zero: the untrained model is the copy-the-last-frame baseline
    # (bilinear sampling at zero flow rounds the grid: a few 1e-6)
    torch.testing.assert_close(out, x[:, 9:].clamp(-0.999, 0.999), atol=3e-5, rtol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"past_frames": 3, "width": 4, "heads": 1},
        {"past_frames": 4, "width": 4, "heads": 2, "flow": False, "motion_skips": False},
        {"past_frames": 2, "width": 4, "heads": 4, "depth": 2, "residual": False},
    ],
)
def test_predictor_variants_run_and_learn(kwargs):
    model = TemporalAttentionPredictor(**kwargs)
    t = model.past_frames
    x = torch.rand(2, 3 * t, 32, 40) * 2 - 1
    y = torch.rand(2, 3, 32, 40) * 2 - 1
    out = model(x)
    assert tuple(out.shape) == (2, 3, 32, 40)
    torch.nn.functional.mse_loss(out, y).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert model.time_embed.grad is not None and float(model.head.weight.grad.abs().sum()) > 0


def test_predictor_rejects_wrong_channels():
    with pytest.raises(ValueError, match="expected 12 input channels"):
        TemporalAttentionPredictor(past_frames=4, width=4)(torch.zeros(1, 9, 32, 32))


def test_predictor_export_matches_torch(tmp_path):
    torch.manual_seed(0)
    model = TemporalAttentionPredictor(past_frames=4, width=8)
    with torch.no_grad():  # a non-trivial head (flow and residual) for the comparison
        torch.nn.init.normal_(model.head.weight, std=0.05)
        torch.nn.init.normal_(model.head.bias, std=0.5)
    cal = {"psnr_min": 12.5, "psnr_max": 38.0}
    info = {"name": "test predictor", "fixed_size": (64, 64), "calibration": cal}
    path, check = export_predictor(model, tmp_path / "p.onnx", info)
    assert check is not None and check.ok and check.max_abs_diff < 1e-4
    card = _card_of(path)
    assert card.task == "anomaly" and card.name == "test predictor"
    assert card.input.color == "RGB" and card.input.fixed_size == (64, 64)
    assert card.input.size_multiple == 8
    assert math.isclose(card.input.scale, 1 / 127.5) and card.input.mean == (1.0, 1.0, 1.0)
    out = card.output
    assert out["past_frames"] == 4 and out["output_range"] == [-1.0, 1.0]
    assert out["color"] == "RGB" and out["threshold"] == 0.5
    assert out["calibration"]["psnr_min"] == 12.5 and out["calibration"]["psnr_max"] == 38.0
    proto = onnx.load(str(path))
    assert proto.ir_version <= 10
    assert proto.opset_import[0].version == 17
    # dynamic batch / H / W in onnxruntime, at a third size
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = (torch.rand(3, 12, 40, 56) * 2 - 1).numpy()
    got = sess.run(None, {"frames": x})[0]
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x)).numpy()
    assert got.shape == (3, 3, 40, 56)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_export_checks_the_card(tmp_path):
    model = TemporalAttentionPredictor(past_frames=3, width=4, heads=1)
    with pytest.raises(AnomalyExportError, match="card says 4 past frames, the model takes 3"):
        export_predictor(model, tmp_path / "x.onnx", predictor_card(name="x", past_frames=4))
    with pytest.raises(AnomalyExportError, match="psnr_min and psnr_max"):
        predictor_card(name="x", calibration={"psnr_min": 1.0})


# --------------------------------------------------------------------------------------
# scores (numpy)
# --------------------------------------------------------------------------------------
def test_psnr_known_values():
    real = np.full((4, 4), 0.1)
    assert psnr(np.zeros((4, 4)), real, data_range=1.0) == pytest.approx(20.0)  # mse 0.01
    assert psnr(np.zeros((2, 2)), np.full((2, 2), 25.5), data_range=255) == pytest.approx(20.0)
    assert psnr(real, real, data_range=1.0) == math.inf
    frames = np.stack([np.zeros((3, 2, 2)), np.full((3, 2, 2), 0.01)])
    np.testing.assert_allclose(psnr(np.zeros_like(frames), frames, data_range=1.0, batch=True), [np.inf, 40.0])
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros(3), np.zeros(4))


def test_psnr_frames_equals_official_psnr_error():
    """psnr_error maps [-1, 1] frames to [0, 1] by (x+1)/2, then 10*log10(1/mse)."""
    rng = np.random.default_rng(1)
    pred = rng.uniform(-1, 1, (3, 3, 8, 8))
    real = np.clip(pred + rng.normal(0, 0.1, pred.shape), -1, 1)
    mse01 = (((pred + 1) / 2 - (real + 1) / 2) ** 2).reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(psnr_frames(pred, real), 10 * np.log10(1 / mse01), rtol=1e-12)


def test_regularity_and_anomaly_score():
    p = np.array([20.0, 25.0, 30.0, 35.0])
    np.testing.assert_allclose(regularity(p), [0, 1 / 3, 2 / 3, 1])  # per-video min-max
    np.testing.assert_allclose(regularity(p, 20.0, 30.0), [0, 0.5, 1.0, 1.5])  # unclipped
    np.testing.assert_allclose(anomaly_score(p, 20.0, 30.0), [1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(anomaly_score(p), [1.0, 2 / 3, 1 / 3, 0.0])
    assert anomaly_score(10.0, 20.0, 30.0) == 1.0 and isinstance(anomaly_score(25.0, 20, 30), float)
    assert anomaly_score(math.inf, 20.0, 30.0) == 0.0
    np.testing.assert_allclose(minmax_normalise([3.0, 3.0]), [1.0, 1.0])
    np.testing.assert_allclose(minmax_normalise([1.0, np.inf, 3.0, np.nan]), [0, 1, 1, 0])
    with pytest.raises(ValueError):
        regularity(p, 30.0, 20.0)
    with pytest.raises(ValueError):
        regularity(p, 20.0, None)


def test_calibrate_puts_the_low_normal_frame_at_the_threshold():
    normal = np.linspace(30.0, 40.0, 101)  # percentiles are exact on this grid
    cal = calibrate(normal)
    assert cal["psnr_low"] == pytest.approx(30.1)
    assert cal["psnr_max"] == pytest.approx(39.9)
    assert cal["psnr_min"] == pytest.approx(30.1 - 9.8)
    assert cal["frames"] == 101
    a = anomaly_score(normal, cal["psnr_min"], cal["psnr_max"])
    assert float(a[1:].max()) <= 0.5 + 1e-9  # normal frames from p1 up: at most the threshold
    assert float(a[0]) == pytest.approx(0.5 + 0.1 / 19.6)  # the one frame below p1: just above
    assert anomaly_score(cal["psnr_low"], cal["psnr_min"], cal["psnr_max"]) == pytest.approx(0.5)
    # ...and a frame as far below the normal range as its width scores 1
    assert anomaly_score(cal["psnr_min"], cal["psnr_min"], cal["psnr_max"]) == 1.0
    assert calibrate([33.0, 33.0])["psnr_max"] - calibrate([33.0, 33.0])["psnr_min"] == 1.0


# --------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------
def test_split_windows_keeps_heldout_targets_unseen():
    train, held, skipped = split_windows(50, 4, 0.2, None)
    assert train == list(range(4, 40)) and held == list(range(44, 50)) and skipped == 0
    assert max(train) < min(held) - 4  # no held-out frame in any training window
    cuts = np.zeros(49, bool)
    cuts[20] = True  # frame 21 starts a new shot
    train2, _, skipped2 = split_windows(50, 4, 0.2, cuts)
    assert [t for t in train if t not in train2] == [21, 22, 23, 24] and skipped2 == 4
    with pytest.raises(ValueError, match="at least 10 frames"):
        split_windows(9, 4, 0.2)


def test_gradient_loss_zero_for_equal_and_shifted_constant():
    a = torch.rand(1, 3, 8, 8)
    assert float(gradient_loss(a, a)) == 0.0
    assert float(gradient_loss(a, a + 0.3)) == pytest.approx(0.0, abs=1e-6)  # only gradients
    assert float(gradient_loss(a, torch.zeros_like(a))) > 0


def test_fit_predictor_smoke_and_early_stop():
    frames = _moving_frames(14, 32, 40)
    calls = []

    def progress(frac, info):
        calls.append((frac, info["loss"], info["eta_s"]))
        return len(calls) < 2  # stop after the second step

    cfg = FitConfig(time_budget_s=60.0, steps=50, batch=2, crop=None, width=4, heads=1,
                    threads=1, heldout=0.3)
    r = fit_predictor(frames, (32, 40), 4, progress=CallbackProgress(progress), config=cfg)
    assert r.steps == 2 and r.stopped_early and len(calls) == 2
    assert 0 < calls[0][0] <= calls[1][0] < 1 and math.isfinite(calls[1][1])
    assert r.size == (32, 40) and r.past == 4
    assert r.heldout_windows == 1 and r.train_windows == 5  # 14 frames: 9 + 5 held out
    assert math.isfinite(r.heldout_psnr) and math.isfinite(r.baseline_psnr)
    assert r.calibration["psnr_min"] < r.calibration["psnr_max"]
    assert tuple(r.model(torch.zeros(1, 12, 32, 40)).shape) == (1, 3, 32, 40)
    with pytest.raises(ValueError, match="multiples of 8"):
        fit_predictor(frames, (30, 40), 4, config=cfg)


def test_cli_quick_writes_model_with_calibrated_card(tmp_path, capsys):
    out = tmp_path / "anomaly.onnx"
    rc = main(["carphone_pristine.mp4", "--normal", "0:1", "--out", str(out), "--quick"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "held-out PSNR: predictor" in captured.out and "copy-last-frame" in captured.out
    card = _card_of(out)
    assert card.task == "anomaly" and card.input.fixed_size == (32, 32)
    cal = card.output["calibration"]
    assert cal["psnr_min"] < cal["psnr_max"] and cal["frames"] >= 2
    assert card.output["past_frames"] == 4 and card.output["threshold"] == 0.5
    evaluation = card.source["evaluation"]
    assert set(evaluation) >= {"heldout_psnr", "baseline_psnr", "gain_db", "steps"}
    assert "carphone_pristine.mp4" in card.source["training_data"]
    json.dumps(card.output)  # plain JSON values only
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"frames": np.zeros((1, 12, 32, 32), np.float32)})[0].shape == (
        1, 3, 32, 32,
    )


def test_cli_arguments():
    assert parse_span("2:4.5") == (2.0, 4.5) and parse_span(":3") == (0.0, 3.0)
    assert parse_span("1:") == (1.0, None)
    assert parse_size("128") == (128, 128) and parse_size("160x96") == (96, 160)
    with pytest.raises(ValueError):
        parse_size("100")
    with pytest.raises(ValueError):
        parse_span("4:2")
    assert main(["no_such_clip.mp4", "--out", "x.onnx", "--quick"]) == 2
    assert main(["carphone_pristine.mp4", "--out", "x.onnx", "--size", "30"]) == 2
