"""loupe.base.quality without FFmpeg: the definitions on small planes, checked against direct loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loupe.base import quality as q


def _ffmpeg_ssim_plane_loops(a: np.ndarray, b: np.ndarray) -> float:
    """FFmpeg's ssim_plane written as its loops: 4x4 block sums, 2x2 blocks per window, step 4."""
    bh, bw = a.shape[0] // 4, a.shape[1] // 4
    sums = np.zeros((bh, bw, 4), np.int64)
    for by in range(bh):
        for bx in range(bw):
            pa = a[4 * by: 4 * by + 4, 4 * bx: 4 * bx + 4].astype(np.int64)
            pb = b[4 * by: 4 * by + 4, 4 * bx: 4 * bx + 4].astype(np.int64)
            sums[by, bx] = (pa.sum(), pb.sum(), (pa * pa).sum() + (pb * pb).sum(), (pa * pb).sum())
    c1, c2 = 416, 235963
    total = 0.0
    for y in range(bh - 1):
        for x in range(bw - 1):
            s1, s2, ss, s12 = (int(v) for v in sums[y: y + 2, x: x + 2].sum(axis=(0, 1)))
            var = ss * 64 - s1 * s1 - s2 * s2
            cov = s12 * 64 - s1 * s2
            total += ((2 * s1 * s2 + c1) * (2 * cov + c2)) / ((s1 * s1 + s2 * s2 + c1) * (var + c2))
    return total / ((bh - 1) * (bw - 1))


def _planes(rng, h, w):
    y = rng.integers(0, 256, (h, w), dtype=np.uint8)
    u = rng.integers(0, 256, ((h + 1) // 2, (w + 1) // 2), dtype=np.uint8)
    v = rng.integers(0, 256, ((h + 1) // 2, (w + 1) // 2), dtype=np.uint8)
    return y, u, v


def test_psnr_weights_planes_by_size():
    ref = (np.full((8, 8), 100, np.uint8), np.full((4, 4), 100, np.uint8), np.full((4, 4), 100, np.uint8))
    dist = (np.full((8, 8), 102, np.uint8), ref[1].copy(), np.full((4, 4), 110, np.uint8))
    p = q.psnr_planes(ref, dist)
    assert p["mse_y"] == 4.0 and p["mse_u"] == 0.0 and p["mse_v"] == 100.0
    assert math.isinf(p["u"])
    assert p["mse_all"] == pytest.approx((4.0 * 64 + 100.0 * 16) / 96)  # weights 64:16:16 of 96 samples
    assert p["all"] == pytest.approx(10 * math.log10(255**2 / p["mse_all"]))
    assert p["y"] == pytest.approx(10 * math.log10(255**2 / 4.0))


def test_ssim_matches_the_c_loops_on_odd_sized_planes():
    rng = np.random.default_rng(1)
    ref = _planes(rng, 37, 45)  # sizes that are not multiples of 4: the remainder is not used
    noise = [rng.integers(-30, 31, p.shape) for p in ref]
    dist = tuple(np.clip(p.astype(int) + n, 0, 255).astype(np.uint8) for p, n in zip(ref, noise))
    s = q.ssim_planes(ref, dist)
    for name, a, b in zip("yuv", ref, dist):
        assert s[name] == pytest.approx(_ffmpeg_ssim_plane_loops(a, b), abs=1e-6)
    w = [a.size for a in ref]
    assert s["all"] == pytest.approx(sum(s[n] * k for n, k in zip("yuv", w)) / sum(w))
    assert q.ssim_planes(ref, ref)["all"] == pytest.approx(1.0)
    assert math.isnan(q.ssim_plane(np.zeros((6, 40), np.uint8), np.zeros((6, 40), np.uint8)))  # < 2 blocks high


def test_pool_is_psnr_of_mean_mse_not_mean_psnr():
    frames = [{"mse_all": 1.0, "psnr_all": q.psnr_from_mse(1.0), "ssim_all": 0.9},
              {"mse_all": 100.0, "psnr_all": q.psnr_from_mse(100.0), "ssim_all": 0.7}]
    p = q.pool(frames)
    assert p["psnr_pooled"] == pytest.approx(q.psnr_from_mse(50.5))
    assert p["psnr_mean"] == pytest.approx((q.psnr_from_mse(1.0) + q.psnr_from_mse(100.0)) / 2)
    assert p["ssim_mean"] == pytest.approx(0.8)
    assert p["psnr_mean"] - p["psnr_pooled"] > 5  # the two figures answer different questions


def test_rgb_psnr_and_yuv_round_trip():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    assert math.isinf(q.psnr_rgb(rgb, rgb))
    other = rgb.copy()
    other[0, 0, 0] ^= 0x10
    assert q.psnr_rgb(rgb, other) == pytest.approx(10 * math.log10(255**2 / (16**2 / rgb.size)))
    y, u, v = q.rgb_to_yuv420(rgb)
    assert y.shape == (16, 24) and u.shape == v.shape == (8, 12)
    flat = np.full((16, 24, 3), 128, np.uint8)
    back = q.yuv420_to_rgb(q.rgb_to_yuv420(flat))
    assert np.abs(back.astype(int) - 128).max() <= 1
    with pytest.raises(q.AlignmentError):
        q.psnr_planes((y, u, v), (y[:8], u, v))


def test_json_safe_turns_inf_into_null():
    assert q.json_safe({"a": [math.inf, 1.23456789], "b": math.nan}, 3) == {"a": [None, 1.235], "b": None}


def test_unreadable_inputs_raise_video_read_error(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(q.VideoReadError, match="x.mp4"):
        q.compare_videos(bad, bad)
    with pytest.raises(q.VideoReadError, match="no such file"):
        q.probe(tmp_path / "missing.mp4")


# --- the one PSNR (app, analyze, fitters, the anomaly score) -------------------------------
def test_psnr_of_identical_frames_is_infinite_for_every_dtype():
    a = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    assert q.psnr(a, a) == math.inf
    assert q.psnr(a / 255.0, a / 255.0, 1.0) == math.inf
    np.testing.assert_array_equal(q.psnr(a, a, batch=True), [math.inf] * 6)
    assert q.psnr_from_mse(0.0) == math.inf
    np.testing.assert_array_equal(q.psnr_from_mse(np.array([0.0, 65025.0])), [math.inf, 0.0])


def test_psnr_is_the_same_number_at_any_scale_and_dtype():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (4, 9, 7, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (4, 9, 7, 3), dtype=np.uint8)
    p8 = q.psnr(a, b)
    assert p8 == pytest.approx(q.psnr(a / 255.0, b / 255.0, 1.0), abs=1e-9)
    assert p8 == pytest.approx(q.psnr(a / 127.5 - 1, b / 127.5 - 1, 2.0), abs=1e-9)
    assert p8 == pytest.approx(q.psnr_rgb(a, b), abs=1e-12)
    mse = ((a.astype(float) - b.astype(float)) ** 2).reshape(4, -1).mean(1)
    np.testing.assert_allclose(q.psnr(a, b, batch=True), 10 * np.log10(255.0**2 / mse), rtol=1e-12)


def test_psnr_of_a_nan_is_nan_not_a_number_of_decibels():
    a = np.zeros((2, 4, 4))
    b = a.copy()
    b[1, 0, 0] = np.nan
    assert math.isnan(q.psnr(a, b, 1.0))
    r = q.psnr(a, b, 1.0, batch=True)
    assert r[0] == math.inf and math.isnan(r[1])


def test_psnr_refuses_mismatched_shapes_and_a_bad_range():
    with pytest.raises(ValueError, match="shapes differ"):
        q.psnr(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="data_range must be > 0"):
        q.psnr(np.zeros(3), np.zeros(3), 0.0)
