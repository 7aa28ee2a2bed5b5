"""prepare() gives (pixel x scale - mean) / std per channel, in the card's colour order, padded by
edge replication, for every pixel of a real-looking frame (not just flat colours)."""

import numpy as np
import pytest

from loupe.inference.card import InputSpec
from loupe.inference.preprocess import prepare
from loupe.sources.base import Frame

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_every_pixel_follows_the_formula(color):
    rgb = np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    spec = InputSpec(color=color, scale=1 / 255, mean=MEAN, std=STD, size_multiple=8)
    x, geo = prepare(Frame(rgb, 0, 0.0), spec)
    assert x.shape == (1, 3, 40, 56) and x.dtype == np.float32 and geo.frame_hw == (37, 53)
    img = rgb[:, :, ::-1] if color == "BGR" else rgb
    padded = np.pad(img, ((0, 3), (0, 3), (0, 0)), mode="edge").astype(np.float64)
    want = (padded / 255.0 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(x[0].transpose(1, 2, 0), want, atol=2e-6)


def test_one_channel_model_and_raw_values():
    grey = np.random.default_rng(4).integers(0, 256, (9, 11), dtype=np.uint8)
    spec = InputSpec(color="GRAY", scale=1 / 255, mean=(0.5,), std=(0.25,))
    x, _ = prepare(Frame(grey, 0, 0.0), spec)
    np.testing.assert_allclose(x[0, 0], (grey / 255.0 - 0.5) / 0.25, atol=2e-6)
    hu = np.random.default_rng(5).normal(0, 400, (6, 7)).astype(np.float32)
    raw = InputSpec(color="GRAY", scale=1.0, mean=(0.0,), std=(1.0,), raw_values=True)
    xr, _ = prepare(Frame(hu, 0, 0.0), raw)
    np.testing.assert_array_equal(xr[0, 0], hu)
