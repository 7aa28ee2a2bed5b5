"""Demo density model: the synthetic scene generator and the quick training recipe."""

from __future__ import annotations

import math

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from loupe.inference.card import ModelCard
from loupe.inference.engine import Engine
from loupe.resources import resource_path
from loupe.sources.base import Frame
from loupe.tasks.density import DensityTask
from loupe_models.demos import density as dd
from loupe_models.exporters.density import export_density

TORCH_THREADS = 2  # at most (tests/models/conftest.py sets and restores torch's threads)


def background(hw: tuple[int, int] = (96, 128), seed: int = 5) -> np.ndarray:
    """A cluttered stand-in for a video frame (no decoding needed)."""
    noise = np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


# --- fast checks -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_scene_generator_is_deterministic_and_sums_to_the_count(seed):
    bg = background()
    a = dd.render_scene(bg, np.random.default_rng(seed))
    b = dd.render_scene(bg.copy(), np.random.default_rng(seed))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.density, b.density)
    assert a.image.shape == bg.shape and a.image.dtype == np.uint8
    assert a.density.shape == (48, 64) and a.density.dtype == np.float32
    assert 0 <= a.count <= dd.MAX_OBJECTS
    assert a.density.sum(dtype=np.float64) == pytest.approx(a.count, abs=1e-4)
    assert (a.density >= 0).all()
    h, w = bg.shape[:2]
    assert ((a.points >= 0) & (a.points < [w, h])).all()  # every counted head is in the image
    assert ((a.heights >= dd.HEIGHT_RANGE[0]) & (a.heights <= dd.HEIGHT_RANGE[1])).all()


def test_scene_with_a_given_count_draws_figures():
    bg = background((128, 160))
    s = dd.render_scene(bg, np.random.default_rng(7), count=25)
    assert s.count == 25
    assert s.density.sum(dtype=np.float64) == pytest.approx(25.0, abs=1e-4)
    assert np.abs(s.image.astype(int) - bg).mean() > 5  # something was drawn
    empty = dd.render_scene(bg, np.random.default_rng(7), count=0)
    assert empty.count == 0 and not empty.density.any()
    other = dd.render_scene(bg, np.random.default_rng(8), count=25)
    assert not np.array_equal(other.points, s.points)


def test_density_map_normalises_every_object_inside_the_map():
    pts = np.array([[0.2, 0.3], [127.9, 95.9], [65.0, 49.0], [10.0, 90.0]])
    sig = np.array([3.0, 3.0, 1.0, 0.8])
    m = dd.density_map(pts, sig, (96, 128))
    assert m.shape == (48, 64)
    assert m.sum(dtype=np.float64) == pytest.approx(4.0, abs=1e-5)  # corners lose nothing
    one = dd.density_map(pts[2:3], sig[2:3], (96, 128))
    assert np.unravel_index(one.argmax(), one.shape) == (24, 32)  # (65, 49) / stride 2 - 0.5
    assert one.sum(dtype=np.float64) == pytest.approx(1.0, abs=1e-6)
    assert not dd.density_map(np.zeros((0, 2)), np.zeros(0), (32, 32)).any()


def test_sigma_grows_with_size_and_display_max_is_fixed():
    assert dd.sigma_for(5) == dd.MIN_SIGMA
    assert dd.sigma_for(40) == pytest.approx(40 * dd.SIGMA_RATIO)
    assert dd.display_max() == dd.display_max() > 0


def test_split_holds_out_the_start_of_each_clip_with_a_gap():
    train, held = dd.split_frames(250)
    assert held == list(range(50))
    assert min(train) - max(held) > dd.HELDOUT_GAP
    assert max(train) == 249 and not set(train) & set(held)
    train, held = dd.split_frames(3)
    assert held == [0] and train == []  # too short to train on


def test_slim_msegnet_is_a_narrow_msegnet():
    model = dd.build_model().eval()
    params = sum(p.numel() for p in model.parameters())
    assert params < 1_000_000
    assert model.outputs == ("density", "attention")
    assert model.vgg.conv4_3.conv.out_channels == 512 // dd.WIDTH_DIV
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        density, attention = model(x)
    assert density.shape == attention.shape == (2, 1, 32, 48)
    assert (density >= 0).all() and ((attention >= 0) & (attention <= 1)).all()


# --- the quick recipe ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_onnx(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_density") / "demo_density.onnx"
    assert dd.main(["--quick", "--out", str(out)]) == 0
    return out


def _card(path) -> ModelCard:
    proto = onnx.load(str(path))
    assert proto.ir_version <= 10
    return ModelCard.from_metadata({p.key: p.value for p in proto.metadata_props})


@pytest.mark.slow
def test_quick_recipe_exports_a_carded_onnx(quick_onnx):
    card = _card(quick_onnx)
    assert card.task == "density"
    assert card.is_demo and card.source["demo"] is True
    assert card.output["kind"] == "density" and card.output["stride"] == 2
    assert card.output["count_scale"] == pytest.approx(1.0 / dd.DENSITY_SCALE)
    assert card.output["outputs"] == ["density", "attention"]
    assert card.output["display_max"] == dd.display_max()
    assert card.input.size_multiple == 16 and card.input.fixed_size is None
    assert card.input.color == "RGB"
    assert card.source["counts"] == "synthetic blob-people on real video backgrounds"
    for key in ("heldout_mae", "heldout_rmse", "heldout_mean_count", "architecture",
                "training_data"):
        assert key in card.source, key
    assert card.source["heldout_mae"] >= 0 and card.source["heldout_rmse"] >= 0
    assert card.source["recipe"] == "python -m loupe_models.demo_density"
    assert quick_onnx.stat().st_size <= 8 * 1024 * 1024


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(1, 3, 96, 128), (2, 3, 272, 640)])
def test_quick_onnx_runs_at_any_multiple_of_16(quick_onnx, shape):
    sess = ort.InferenceSession(str(quick_onnx), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]
    assert [o.name for o in sess.get_outputs()] == ["density", "attention"]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    density, attention = sess.run(None, {"image": x})
    n, _, h, w = shape
    assert density.shape == attention.shape == (n, 1, h // 2, w // 2)
    assert np.isfinite(density).all() and (density >= 0).all()


def app_count(path, image: np.ndarray) -> tuple[float, float]:
    """(the app's DensityTask count, the sum of the ONNX density map over the frame x
    count_scale, computed here from the zero-padded input)."""
    engine = Engine(path, providers="cpu")
    task = DensityTask(engine)
    feeds, geo = task.prepare(Frame(image, 0, 0.0))
    result = task.postprocess(engine.run(feeds), geo)
    assert task.count_scale == pytest.approx(1.0 / dd.DENSITY_SCALE)
    assert result.display_max == dd.display_max()
    assert result.density.shape == image.shape[:2]

    h, w = image.shape[:2]
    x = dd.normalise(dd.pad_to_multiple(image)[None]).numpy()
    assert x.shape == (1, 3, -(-h // 16) * 16, -(-w // 16) * 16)
    np.testing.assert_allclose(feeds["image"], x, atol=1e-5)  # the app zero-pads the same way
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dmap = sess.run(["density"], {"image": x})[0][0, 0, : math.ceil(h / 2), : math.ceil(w / 2)]
    return result.count, float(dmap.sum(dtype=np.float64)) * task.count_scale


@pytest.mark.slow
def test_app_count_is_the_map_sum_times_count_scale(quick_onnx):
    bg = background((150, 200), seed=9)  # not multiples of 16: the app zero-pads
    scene = dd.render_scene(bg, np.random.default_rng(11), count=20)
    count, expected = app_count(quick_onnx, scene.image)
    assert count == pytest.approx(expected, rel=1e-4, abs=1e-6)


def live_model(out):
    """An untrained slim M-SegNet whose positive output bias makes a non-zero map, exported
    with the recipe's card (the quick model may still predict an all-zero map)."""
    torch.manual_seed(0)
    model = dd.build_model().eval()
    with torch.no_grad():
        model.conv_out.conv.bias.fill_(0.05)
    stats = {"scenes": 1, "mae": 0.0, "rmse": 0.0, "mean_count": 0.0, "relative_error": 0.0,
             "empty_mean_count": float("nan")}
    return model, export_density(model, out, dd.make_card(stats, {0: 0.0}, 0, 0), sample_hw=(64, 96))


@pytest.mark.slow
def test_app_count_of_a_live_map(tmp_path):
    """The quick model may still predict an all-zero map; this one (untrained, positive output
    bias) does not, with the recipe's card."""
    _, path = live_model(tmp_path / "live.onnx")
    image = dd.render_scene(background((100, 140), seed=3), np.random.default_rng(4)).image
    count, expected = app_count(path, image)
    assert count > 1.0
    assert count == pytest.approx(expected, rel=1e-4)


SHIPPED = resource_path("demo_density.onnx")


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED.is_file(), reason="resources/demo_density.onnx not built")
def test_shipped_model_counts_synthetic_figures():
    card = _card(SHIPPED)
    assert card.task == "density" and card.is_demo
    assert card.source["recipe"] == "python -m loupe_models.demo_density"
    assert SHIPPED.stat().st_size <= 8 * 1024 * 1024
    # a held-out background: bikes.mp4 frame 0 (blurred random noise is far from any video
    # frame, and its colour speckles pass for heads)
    bg = dd._read_clip("bikes.mp4", 1)[0][48:224, 192:448]
    errors = []
    for seed, n in ((0, 0), (1, 12), (2, 35), (3, 55)):
        scene = dd.render_scene(bg, np.random.default_rng(100 + seed), count=n)
        count, expected = app_count(SHIPPED, scene.image)
        assert count == pytest.approx(expected, rel=1e-4, abs=1e-6)
        errors.append(abs(count - n))
    assert np.mean(errors) < max(6.0, 3 * card.source["heldout_mae"]), errors


def _unpool_flip(m: np.ndarray, cells: list[tuple[int, int]]) -> np.ndarray:
    """``m`` with the value at each cell swapped with its right-hand neighbour (the cell of the
    same 2x2 pooling window that wins when float32 rounding flips a near-tie): a few pixels
    move by a share of the peak, the map's sum does not."""
    out = m.copy()
    for y, x in cells:
        out[..., y, x], out[..., y, x + 1] = m[..., y, x + 1], m[..., y, x]
    return out


def test_onnx_check_tolerates_a_few_unpool_flips_but_not_a_count_change():
    """The demo's check is the exporters' float64 rule: ONNX Runtime landing on the other side
    of a max-unpool near-tie (as on an AVX2 CPU) passes when the model itself flips such ties
    under float32 rounding; a map off almost everywhere (a broken export) or a count moved
    beyond 0.01 objects does not."""
    yy, xx = np.mgrid[:48, :64]
    density = np.zeros((1, 1, 48, 64))
    for cy, cx in ((10, 12), (30, 40), (20, 55)):  # three blobs, peak ~ DENSITY_SCALE / (2 pi)
        density[0, 0] += dd.DENSITY_SCALE * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2) / (2 * np.pi)
    attention = 1 / (1 + np.exp(-(density - 1)))
    ref = [density, attention]
    own = [(10, 10), (10, 13), (30, 38), (31, 41)]  # ties the model itself flips
    alternatives = [[_unpool_flip(r, own), r + 1e-7] for r in ref]

    def check(got: list[np.ndarray]) -> dd.OnnxCheck:
        return dd.onnx_agreement("x", (1, 3, 96, 128), [g.astype(np.float32) for g in got], ref,
                                 alternatives)

    same = check(ref)
    assert same.ok and same.count_torch == pytest.approx(ref[0].sum() / dd.DENSITY_SCALE)
    other = check([_unpool_flip(r, [(9, 12), (29, 40), (21, 54)]) for r in ref])  # other ties
    assert other.density.max_abs_diff > 100 * other.density.smooth_limit  # far beyond rounding
    assert other.ok, other.summary()
    assert other.count_onnx == pytest.approx(other.count_torch, abs=1e-4)

    broken = check([ref[0] * 1.01, ref[1]])  # a weight 1 % off: off almost everywhere
    assert not broken.ok and broken.count_onnx - broken.count_torch > 0.01
    assert not check([ref[0], ref[1] + 0.02]).ok  # attention off everywhere
    assert not check([np.roll(ref[0], 1, axis=-1), ref[1]]).ok  # a shifted map: same count

    # pixels within the model's own spread, but raised instead of swapped: the count moves
    raised = ref[0].copy()
    for y, x in own:
        raised[..., y, x] += 1.0
    moved = check([raised, ref[1]])
    assert moved.agreement.ok, moved.summary()  # each pixel alone is within the spread ...
    assert not moved.ok  # ... but 4 / DENSITY_SCALE = 0.04 objects more is refused
    assert "count torch (float64)" in moved.summary()


@pytest.mark.slow
def test_onnx_check_of_the_recipe_refuses_a_changed_weight(tmp_path):
    """End to end on an exported slim M-SegNet: the exported model passes its own check, a
    model with one bias changed by 1 % of the map's level does not (ONNX Runtime files are
    checked against the model that was meant to be exported)."""
    model, path = live_model(tmp_path / "m.onnx")
    x = dd.normalise(dd.render_scene(background((96, 160), seed=3), np.random.default_rng(4)).image[None])
    good = dd.check_onnx(model, path, [("scene", x)])
    assert len(good) == 1 and good[0].ok, good[0].summary()
    assert good[0].shape == (1, 3, 96, 160)
    other = dd.build_model().eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.conv_out.conv.bias.add_(0.01 * 0.05)
    bad = dd.check_onnx(other, path, [("scene", x)])[0]
    assert not bad.ok, bad.summary()
