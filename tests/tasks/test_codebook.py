"""Codebook task: code maps where the codes are, usage statistics, validation, analyze columns."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from loupe.inference.engine import Engine, ModelError
from loupe.sources.base import Frame
from loupe.tasks import make_task
from loupe.tasks.codebook import CodebookTask, CodebookUsage, code_palette, perplexity
from tests.helpers import make_codebook_model


def run(task, rgb, index=0):
    feeds, ctx = task.prepare(Frame(rgb, index, 0.0))
    return task.postprocess(task.engine.run(feeds), ctx)


def block_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Red constant over 8x8 blocks, green constant over 4x4 blocks, random values."""
    rng = np.random.default_rng(seed)
    red = rng.integers(0, 256, (-(-h // 8), -(-w // 8)))
    green = rng.integers(0, 256, (-(-h // 4), -(-w // 4)))
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, :, 0] = np.repeat(np.repeat(red, 8, 0), 8, 1)[:h, :w]
    rgb[:, :, 1] = np.repeat(np.repeat(green, 4, 0), 4, 1)[:h, :w]
    rgb[:, :, 2] = 77
    return rgb


@pytest.fixture
def task(tmp_path):
    t = make_task(Engine(make_codebook_model(tmp_path / "cb.onnx")))
    assert isinstance(t, CodebookTask)
    return t


def test_codes_are_where_the_colours_are(task):
    rgb = block_frame(40, 64)
    res = run(task, rgb)
    top, bottom = res.levels
    assert (top.name, top.codebook_size, top.k, bottom.name) == ("top", 256, 1, "bottom")
    np.testing.assert_array_equal(top.codes, rgb[::8, ::8, 0])
    np.testing.assert_array_equal(bottom.codes, rgb[::4, ::4, 1])
    assert top.codes.dtype == np.int32 and top.codes.shape == (5, 8)
    # display: nearest neighbour at frame resolution, uint16, the code of each pixel's cell
    assert top.display.dtype == np.uint16 and top.display.shape == (40, 64)
    np.testing.assert_array_equal(top.display, rgb[:, :, 0])
    np.testing.assert_array_equal(bottom.display, rgb[:, :, 1])
    # histogram over the codebook, codes used, perplexity of the frame's distribution
    np.testing.assert_array_equal(top.histogram, np.bincount(rgb[::8, ::8, 0].ravel(), minlength=256))
    assert top.histogram.sum() == 40 and top.codes_used == len(np.unique(rgb[::8, ::8, 0]))
    assert top.perplexity == pytest.approx(perplexity(top.histogram))
    assert top.cell == (8.0, 8.0) and bottom.cell == (4.0, 4.0)
    assert top.codes_at(17, 9) == (1, 2, (int(rgb[9, 17, 0]),))
    assert top.codes_at(64, 0) is None and top.codes_at(-1, 3) is None


def test_padded_frame_keeps_the_cells_that_cover_it(task):
    rgb = block_frame(41, 61, seed=1)  # padded to 48 x 64 by edge replication
    top, bottom = run(task, rgb).levels
    assert top.codes.shape == (6, 8) and bottom.codes.shape == (11, 16)
    assert top.histogram.sum() == 48  # the cells over the frame, not the padding's extra rows
    yy, xx = np.mgrid[0:41, 0:61]
    np.testing.assert_array_equal(top.display, top.codes[yy // 8, xx // 8])
    np.testing.assert_array_equal(top.display, rgb[:, :, 0])
    np.testing.assert_array_equal(bottom.display, rgb[:, :, 1])


def test_display_is_capped_and_sampled_at_pixel_centres(tmp_path):
    t = make_task(Engine(make_codebook_model(tmp_path / "cb.onnx")), display_max_side=32)
    rgb = block_frame(40, 64, seed=2)
    top = run(t, rgb).levels[0]
    assert top.display.shape == (20, 32)
    # display pixel (i, j) has its centre at frame pixel (2i + 1, 2j + 1)
    np.testing.assert_array_equal(top.display, rgb[1::2, 1::2, 0])
    assert top.codes.shape == (5, 8)  # statistics stay at the model's resolution


def test_k_codes_per_position(tmp_path):
    t = make_task(Engine(make_codebook_model(tmp_path / "k2.onnx", k=2, recon=False)))
    rgb = block_frame(32, 48, seed=3)
    (pair,) = run(t, rgb).levels
    assert pair.k == 2 and pair.codes.shape == (8, 12, 2)
    np.testing.assert_array_equal(pair.codes[:, :, 0], rgb[::4, ::4, 0])
    np.testing.assert_array_equal(pair.codes[:, :, 1], rgb[::4, ::4, 1])
    np.testing.assert_array_equal(pair.display, rgb[:, :, 0])  # the most active code, per pixel
    assert pair.histogram.sum() == 2 * 8 * 12  # every active code counts
    r, c, codes = pair.codes_at(21, 13)
    assert (r, c) == (3, 5) and codes == (int(rgb[13, 21, 0]), int(rgb[13, 21, 1]))
    assert t.columns() == ["codes_used_pair", "perplexity_pair"]


def test_reconstruction_is_cropped_rgb_and_scored(task):
    rgb = block_frame(41, 61, seed=4)
    res = run(task, rgb)
    assert res.reconstruction.dtype == np.uint8 and res.reconstruction.shape == (41, 61, 3)
    np.testing.assert_array_equal(res.reconstruction, rgb)
    assert res.recon_psnr == np.inf  # exact: infinite PSNR, as loupe.base.quality defines it


def test_statistics():
    assert perplexity(np.array([5, 5, 5, 5, 0])) == pytest.approx(4.0)
    assert perplexity(np.array([0, 9, 0])) == pytest.approx(1.0)
    assert perplexity(np.zeros(3)) == 0.0
    p = np.array([0.5, 0.25, 0.25])
    assert perplexity(np.array([2, 1, 1])) == pytest.approx(np.exp(-(p * np.log(p)).sum()))


def test_session_usage_counts_each_frame_once_and_finds_dead_codes(task):
    usage = CodebookUsage({"top": 256, "bottom": 256})
    a = run(task, np.full((16, 16, 3), 10, np.uint8))
    b = run(task, np.full((16, 16, 3), 200, np.uint8))
    assert usage.add(a, 0) and usage.add(b, 1)
    assert not usage.add(a, 0)  # a replayed frame does not count twice
    assert usage.frames == 2 and usage.used("top") == 2
    assert usage.dead_pct("top") == pytest.approx(100.0 * 254 / 256)
    assert usage.perplexity("top") == pytest.approx(2.0)
    assert list(usage.order("top")[:2]) == [10, 200]
    usage.reset()
    assert usage.frames == 0 and usage.used("top") == 0


def test_palette_is_stable_and_distinct():
    p = code_palette(512)
    assert p.dtype == np.uint8 and p.shape == (512, 3)
    np.testing.assert_array_equal(code_palette(256), p[:256])  # code 17 is code 17 whatever the book
    np.testing.assert_array_equal(code_palette(512), p)
    assert len({tuple(c) for c in p}) == 512
    # neighbouring codes look different
    d = np.abs(p[1:].astype(int) - p[:-1].astype(int)).sum(axis=1)
    assert d.min() > 60


@pytest.mark.parametrize("kwargs, message", [
    ({"float_codes": True}, "codes_top.*integers"),
    ({"output": {"levels": [{"name": "top", "output": "codes_missing", "codebook_size": 8}]}},
     "codes_missing.*does not have"),
    ({"output": {"levels": [{"name": "top", "output": "codes_top", "codebook_size": 256, "k": 2}]}},
     "codes_top.*rank 3.*1 x h x w x 2"),
    ({"output": {"levels": []}}, "no loupe.output 'levels'"),
    ({"output": {"levels": [{"name": "top level", "output": "codes_top", "codebook_size": 256}]}}, "ASCII id"),
    ({"output": {"levels": [{"name": "top", "output": "codes_top", "codebook_size": 0}]}}, "codebook_size must be >= 1"),
    ({"output": {"levels": [{"name": "top", "output": "codes_top", "codebook_size": 256}],
                 "reconstruction": {"output": "nope"}}}, "reconstruction output 'nope'"),
])
def test_card_that_does_not_fit_the_model_is_refused_with_its_reason(tmp_path, kwargs, message):
    eng = Engine(make_codebook_model(tmp_path / "bad.onnx", **kwargs))
    with pytest.raises(ModelError, match=message):
        make_task(eng)


def test_codes_outside_the_codebook_are_reported(tmp_path):
    t = make_task(Engine(make_codebook_model(tmp_path / "small.onnx", codebook_size=100)))
    run(t, np.full((16, 16, 3), 99, np.uint8))  # fits
    rgb = np.full((16, 16, 3), 20, np.uint8)
    rgb[:8, :8, 0] = 180
    with pytest.raises(ModelError, match=r"output 'codes_top' holds code 180, outside \[0, 100\)"):
        run(t, rgb)


def test_analyze_writes_codes_used_and_perplexity_per_level(tmp_path):
    from loupe.cli import main

    model = make_codebook_model(tmp_path / "cb.onnx")
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, :16, 0] = 100  # top: two codes over 8 + 8 positions
    rgb[:, 16:, 0] = 50
    rgb[:, :, 1] = 30  # bottom: one code
    img = tmp_path / "halves.png"
    cv2.imwrite(str(img), rgb[:, :, ::-1])
    out = tmp_path / "rows.csv"
    assert main(["analyze", str(img), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    with open(out, newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["task"] == "codebook"
    assert int(row["codes_used_top"]) == 2 and float(row["perplexity_top"]) == pytest.approx(2.0)
    assert int(row["codes_used_bottom"]) == 1 and float(row["perplexity_bottom"]) == pytest.approx(1.0)
    assert row["recon_psnr"] == ""  # exact reconstruction: infinite PSNR is an empty cell (JSON null)
    out2 = tmp_path / "rows.jsonl"
    assert main(["analyze", str(img), "--model", str(model), "--out", str(out2), "--quiet"]) == 0
    rec = json.loads(out2.read_text().splitlines()[0])
    assert rec["recon_psnr"] is None
    assert rec["codes_used_top"] == 2 and list(rec).index("codes_used_top") < list(rec).index("perplexity_bottom")
