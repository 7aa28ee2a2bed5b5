"""Reference codecs at matched sizes (loupe.run.codecs): the size lands within 5 % of the target and the
decoded frames line up with the input."""

from __future__ import annotations

import numpy as np
import pytest

from loupe.base import quality as q
from loupe.base.media import clip_path
from loupe.base.progress import CallbackProgress
from loupe.run import codecs as c


@pytest.fixture(scope="module")
def carphone_yuv():
    frames = []
    for _, planes in q.read_yuv420(clip_path("carphone_pristine.mp4")):
        frames.append(planes)
        if len(frames) == 24:
            break
    return frames


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_size_within_5_percent_and_frames_line_up(carphone_yuv, codec):
    seen = []
    target = 6000
    enc = c.encode_matched_yuv(carphone_yuv, 29.97, codec, target, progress=CallbackProgress(lambda f, info: seen.append(f)))
    assert enc.matched and abs(enc.bytes - target) <= 0.05 * target
    assert enc.bytes == len(enc.data) == sum(enc.packet_sizes)
    assert enc.bpp == pytest.approx(enc.bytes * 8 / (24 * 176 * 144))
    assert seen and seen[-1] == 1.0
    dec = enc.decoded
    assert len(dec) == 24
    for a, b in zip(dec, carphone_yuv):
        assert [p.shape for p in a] == [p.shape for p in b]
    psnr = q.pool([q.frame_metrics(a, b) for a, b in zip(carphone_yuv, dec)])["psnr_pooled"]
    assert 25.0 < psnr < 60.0
    # twice the bytes buys quality
    enc2 = c.encode_matched_yuv(carphone_yuv, 29.97, codec, 2 * target)
    psnr2 = q.pool([q.frame_metrics(a, b) for a, b in zip(carphone_yuv, enc2.decoded)])["psnr_pooled"]
    assert abs(enc2.bytes - 2 * target) <= 0.05 * 2 * target
    assert psnr2 > psnr + 1.0


def test_rgb_input_odd_size_round_trip(carphone_yuv):
    rgb = np.stack([q.yuv420_to_rgb(p)[:99, :121] for p in carphone_yuv[:8]])
    enc = c.encode_matched(rgb, 25.0, "h264", 2500)
    assert abs(enc.bytes - 2500) <= 125
    out = enc.decoded_rgb
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert q.psnr_rgb(rgb, out) > 25.0
    np.testing.assert_array_equal(enc.frame_rgb(3), out[3])
    enc.release()
    assert len(enc.decoded) == 8  # decoded again on demand


def test_encoder_info_sei_is_not_counted(carphone_yuv):
    enc = c.encode_at(carphone_yuv[:4], 25.0, "h264", crf=30)
    assert b"x264 - core" not in enc.data  # the settings string x264 writes in an SEI
    assert len(enc.decoded) == 4


def test_unreachable_target_is_reported_not_faked(carphone_yuv):
    enc = c.encode_matched_yuv(carphone_yuv[:8], 25.0, "h264", 60, max_encodes=4)
    assert not enc.matched
    assert enc.bytes > 60 * 1.05
    assert len(enc.decoded) == 8


def test_bad_arguments():
    with pytest.raises(ValueError, match="codec must be one of"):
        c.encode_matched_yuv([(np.zeros((8, 8), np.uint8),) * 3], 25.0, "vp9", 100)
    with pytest.raises(ValueError, match="no frames"):
        c.encode_matched([], 25.0, "h264", 100)
