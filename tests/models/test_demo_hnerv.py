"""The shipped demo HNeRV: loads as a compression model, decodes the clip, bits are the file's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loupe.inference.engine import Engine
from loupe.resources import resource_path
from loupe.tasks import make_task
from loupe_models.demos.hnerv import CLIP
from loupe_models.fitters import hnerv_codec as hc
from loupe_models.nets.hnerv import HNeRVConfig, HNeRVDecoder

DEMO = resource_path("demo_hnerv.onnx")
#: frame 0 of the shipped file measured 30.86 dB YUV PSNR (SSIM 0.914); the floor is just under
FRAME0_PSNR_FLOOR = 30.0


@pytest.fixture(scope="module")
def engine():
    if not DEMO.is_file():
        pytest.fail("resources/demo_hnerv.onnx is missing: python -m loupe_models.demo_hnerv "
                    "--out resources/demo_hnerv.onnx")
    return Engine(DEMO, providers="cpu")


def _first_frame():
    from loupe.base.media import clip_path
    from loupe.sources.open import open_source

    try:
        src = open_source(clip_path(CLIP))
    except FileNotFoundError as e:
        pytest.skip(str(e))
    try:
        return next(iter(src))
    finally:
        src.close()


def test_demo_is_a_small_compression_model_with_its_bits_file(engine):
    card = engine.card
    assert card.task == "compression" and card.source.get("demo") is True
    out = card.output
    coded = DEMO.with_suffix(".hnerv")
    assert out["representation"]["file"] == coded.name and coded.is_file()
    assert out["bits"] == 8 * coded.stat().st_size  # bits are the coded file, decoder included
    h, w = out["size"]
    assert out["bpp"] == pytest.approx(out["bits"] / (out["frames"] * h * w))
    assert out["frames"] == 120 and out["source_size"] == [144, 176]
    assert DEMO.stat().st_size + coded.stat().st_size <= 8 * 1024 * 1024


def test_frame0_reconstructs_the_clip(engine):
    task = make_task(engine)
    frame = _first_frame()
    feeds, ctx = task.prepare(frame)
    res = task.postprocess(engine.run(feeds), ctx)
    assert res.recon.shape == res.target.shape == (*engine.card.output["size"], 3)
    assert res.psnr > FRAME0_PSNR_FLOOR
    assert res.ssim > 0.85
    # a wrong frame is far worse: the model encodes this clip, frame by frame
    t, left, h, w = engine.card.output["crop"]
    other = np.ascontiguousarray(np.flipud(frame.pixels[t:t + h, left:left + w]))
    from loupe.tasks.compression import frame_quality

    assert frame_quality(other, res.recon)["psnr"] < res.psnr - 5


def test_onnx_holds_exactly_the_coded_representation(engine):
    config, sd, emb = hc.decode_representation(DEMO.with_suffix(".hnerv").read_bytes())
    dec = HNeRVDecoder(HNeRVConfig.from_dict(config))
    dec.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    assert emb.shape[0] == 120
    for i in (0, 119):
        got = engine.run({"frame_index": np.array([i], np.int64)})[0]
        with torch.no_grad():
            want = dec(torch.from_numpy(emb[i:i + 1])).numpy()
        assert np.abs(got - want).max() < 1e-4
