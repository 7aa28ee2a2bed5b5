"""The shipped demo codebook model (resources/demo_codebook.onnx)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from loupe.base.media import clip_path
from loupe.inference.engine import Engine
from loupe.inference.preprocess import prepare
from loupe.resources import demo_models, resource_path
from loupe.sources.open import open_source

DEMO = "demo_codebook.onnx"


@pytest.fixture(scope="module")
def engine() -> Engine:
    path = resource_path(DEMO)
    assert path.is_file(), "rebuild with python -m loupe_models.demo_codebook --out resources/demo_codebook.onnx"
    assert path.stat().st_size < 3e6
    return Engine(path, providers="cpu")


def _frame(index: int):
    src = open_source(clip_path("bikes.mp4"))
    try:
        for i, frame in enumerate(src):
            if i == index:
                return frame
    finally:
        src.close()
    raise AssertionError(f"bikes.mp4 has no frame {index}")


def test_demo_card(engine):
    card = engine.card
    assert card.task == "codebook" and card.is_demo
    assert resource_path(DEMO) in demo_models()
    assert card.output["levels"] == [
        {"name": "codes", "output": "codes", "codebook_size": 256, "stride": 4, "k": 1}]
    assert card.output["reconstruction"] == {"output": "recon", "scale": 0.5, "offset": 0.5}
    assert card.source["architecture"] == "VQ (Loupe fit)"
    assert "bikes.mp4" in card.source["training_data"]
    assert card.input.fixed_size == (136, 320) and card.input.color == "RGB"
    assert [o.name for o in engine.outputs] == ["codes", "recon"]


@pytest.mark.parametrize("index", [60, 240])  # a training frame and a held-out one
def test_demo_codes_and_reconstruction_on_a_bikes_frame(engine, index):
    frame = _frame(index)
    x, geom = prepare(frame, engine.card.input)
    assert geom.mode == "resize" and x.shape == (1, 3, 136, 320)
    codes, recon = engine.run({engine.inputs[0].name: x})
    assert codes.dtype == np.int64 and codes.shape == (1, 34, 80)
    assert codes.min() >= 0 and codes.max() < 256
    # the codebook is used: far more than a few codes on one frame
    assert len(np.unique(codes)) > 64
    # and the reconstruction from the codes is the frame (at the model's size)
    rgb = np.clip(recon[0].transpose(1, 2, 0) * 0.5 + 0.5, 0.0, 1.0)
    ref = cv2.resize(frame.pixels[:, :, :3], (320, 136), interpolation=cv2.INTER_AREA) / 255.0
    psnr = 10 * np.log10(1.0 / np.mean((rgb - ref) ** 2))
    assert psnr > 24.0
