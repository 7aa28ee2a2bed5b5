"""Heatmap decoding: synthetic Gaussians with known sub-pixel centres."""

from __future__ import annotations

import numpy as np
import pytest

from loupe.tasks.heatmaps import decode_heatmaps, heatmap_to_input


def gaussian(h: int, w: int, cx: float, cy: float, sigma: float = 2.0, peak: float = 1.0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return peak * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))


def test_taylor_recovers_subpixel_centres_of_gaussians():
    rng = np.random.default_rng(0)
    centres = rng.uniform([3, 3], [44, 60], size=(20, 2))  # x in [3, 44), y in [3, 60)
    maps = np.stack([gaussian(64, 48, cx, cy, sigma=1.5 + 0.1 * i) for i, (cx, cy) in enumerate(centres)])
    out = decode_heatmaps(maps.astype(np.float32))
    assert out.shape == (20, 3) and out.dtype == np.float32
    # exact for a Gaussian up to float32 rounding of the map: within 1e-4 cell (measured 1.7e-6)
    np.testing.assert_allclose(out[:, :2], centres, atol=1e-4)
    # score: the peak cell's value
    np.testing.assert_allclose(out[:, 2], maps.reshape(20, -1).max(axis=1), rtol=1e-6)


def test_taylor_handles_an_anisotropic_tilted_gaussian():
    yy, xx = np.mgrid[0:40, 0:40].astype(np.float64)
    dx, dy = xx - 17.3, yy - 22.8
    m = np.exp(-(dx * dx / 8 + dy * dy / 3 + 0.3 * dx * dy))
    out = decode_heatmaps(m[None])
    np.testing.assert_allclose(out[0, :2], [17.3, 22.8], atol=1e-4)


def test_quarter_offset_and_none():
    m = gaussian(32, 32, 10.3, 20.8)[None]
    np.testing.assert_allclose(decode_heatmaps(m, refine="none")[0, :2], [10, 21])
    # towards the larger neighbour: x 10 -> 10.25 (10.3 is right of 10), y 21 -> 20.75
    np.testing.assert_allclose(decode_heatmaps(m, refine="quarter")[0, :2], [10.25, 20.75])
    with pytest.raises(ValueError, match="refine"):
        decode_heatmaps(m, refine="dark")


def test_border_peaks_and_non_positive_maps_fall_back():
    m = np.zeros((3, 8, 8), np.float32)
    m[0] = gaussian(8, 8, 0.0, 4.2)  # peak on the left edge: x has no left neighbour
    m[1, 3, 5] = 1.0  # one hot: zero neighbours, the log is undefined -> quarter offset
    m[1, 3, 6] = 0.5
    m[2] = -1.0  # flat negative map: argmax at (0, 0), score -1
    out = decode_heatmaps(m)
    # on an edge the Taylor step is skipped: x stays on the edge, y moves a quarter towards 4.2
    assert out[0, 0] == 0.0 and out[0, 1] == pytest.approx(4.25)
    assert out[1, 0] == pytest.approx(5.25) and out[1, 1] == pytest.approx(3.0)
    assert out[2].tolist() == [0.0, 0.0, -1.0]


def test_non_finite_values_never_win():
    m = gaussian(16, 16, 7.4, 8.6)[None].copy()
    m[0, 0, 0] = np.nan
    m[0, 1, 1] = np.inf
    np.testing.assert_allclose(decode_heatmaps(m)[0, :2], [7.4, 8.6], atol=0.01)
    assert np.isnan(decode_heatmaps(np.full((1, 4, 4), np.nan))).all()


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="K x h x w"):
        decode_heatmaps(np.zeros((4, 4)))


def test_heatmap_to_input_alignments():
    xy = np.array([[0.0, 0.0], [47.0, 63.0], [10.0, 5.0]])
    # 64 x 48 heatmap of a 256 x 192 input (stride 4)
    msra = heatmap_to_input(xy, (64, 48), (256, 192))
    np.testing.assert_allclose(msra, [[0.5, 0.5], [188.5, 252.5], [40.5, 20.5]])
    udp = heatmap_to_input(xy, (64, 48), (256, 192), align="udp")
    np.testing.assert_allclose(udp, [[0.5, 0.5], [191.5, 255.5], [10 * 191 / 47 + 0.5, 5 * 255 / 63 + 0.5]], rtol=1e-6)
    cells = heatmap_to_input(xy, (64, 48), (256, 192), align="cells")
    np.testing.assert_allclose(cells, [[2.0, 2.0], [190.0, 254.0], [42.0, 22.0]])
    with pytest.raises(ValueError, match="align"):
        heatmap_to_input(xy, (64, 48), (256, 192), align="corners")
