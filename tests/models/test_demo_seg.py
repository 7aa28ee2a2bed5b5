"""Demo segmentation model: the bikes.mp4 labelling procedure and the quick training recipe."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from loupe.inference.card import ModelCard
from loupe_models.demos import labels_bikes
from loupe_models.demos import seg as demo_seg
from loupe_models.demos.labels_bikes import LABELS, MOVING, PALETTE

TORCH_THREADS = 2  # at most (tests/models/conftest.py sets and restores torch's threads)


@pytest.fixture(scope="module")
def clip() -> labels_bikes.ClipLabels:
    return labels_bikes.make_labels()


@pytest.fixture(scope="module")
def quick_onnx(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_seg") / "demo.onnx"
    assert demo_seg.main(["--quick", "--out", str(out)]) == 0
    return out


# --- fast checks -----------------------------------------------------------------------------
def test_split_is_disjoint_with_gaps_and_covers_every_shot():
    shots = [(0, 30), (30, 76), (76, 137), (137, 187), (187, 242), (242, 250)]
    train, held = demo_seg.split_frames(shots)
    assert not set(train) & set(held)
    assert min(abs(t - h) for t in train for h in held) > demo_seg.HELDOUT_GAP
    for a, b in shots:
        assert any(a <= i < b for i in held) and any(a <= i < b for i in train)
    assert 0.15 < len(held) / 250 < 0.25


def test_iou_per_class():
    target = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1]])
    iou = demo_seg.iou_per_class(pred, target, 3)
    assert iou[0] == pytest.approx(0.5)
    assert iou[1] == pytest.approx(2 / 3)
    assert np.isnan(iou[2])


def test_mode_filter_removes_speckle():
    labels = np.zeros((20, 20), np.uint8)
    labels[5, 5] = 2
    labels[10:, :] = 1
    out = labels_bikes.mode_filter(labels, 3, size=5)
    assert out[5, 5] == 0
    assert (out[12:, :] == 1).all() and (out[:8, :] == 0).all()


def test_centre_naming_rule():
    assert labels_bikes.name_centre(np.array([90.0, 0.0, 1.0])) == labels_bikes.BRIGHT
    assert labels_bikes.name_centre(np.array([10.0, 0.0, 0.0])) == labels_bikes.DARK
    assert labels_bikes.name_centre(np.array([50.0, 35.0, 30.0])) == labels_bikes.WARM
    assert labels_bikes.name_centre(np.array([50.0, 0.0, 3.0])) == labels_bikes.OTHER
    assert labels_bikes.name_centre(np.array([50.0, -30.0, 30.0])) == labels_bikes.OTHER  # green


# --- the labelling procedure on the real clip ------------------------------------------------
@pytest.mark.slow
def test_labels_follow_the_clip(clip):
    assert clip.frames.shape == (250, 272, 640, 3)
    assert clip.labels.shape == (250, 272, 640) and clip.labels.dtype == np.uint8
    assert clip.shots == [(0, 30), (30, 76), (76, 137), (137, 187), (187, 242), (242, 250)]
    counts = np.bincount(clip.labels.ravel(), minlength=len(LABELS))
    assert len(counts) == len(LABELS)
    assert (counts > 0.01 * clip.labels.size).all(), counts  # every class covers >1% of the clip
    for i in range(0, 250, 25):
        assert len(np.unique(clip.labels[i])) >= 3, i  # no (near-)constant label map
    # the walker in the bike shot moves (frames 190-210), the parked bike afterwards does not
    walker = (clip.labels[190:211] == MOVING).mean()
    after = (clip.labels[220:238] == MOVING).mean()
    assert walker > 0.05 and after < 0.01, (walker, after)
    # the panning traffic shot cannot be explained by a translating camera: no motion labels
    assert clip.motion_shots[1] is False
    assert not (clip.labels[30:76] == MOVING).any()


@pytest.mark.slow
def test_labels_are_deterministic(clip):
    again = labels_bikes.make_labels(clip.frames.copy())
    np.testing.assert_array_equal(again.labels, clip.labels)
    np.testing.assert_array_equal(again.colour_model.centres, clip.colour_model.centres)


# --- the quick recipe ------------------------------------------------------------------------
@pytest.mark.slow
def test_quick_recipe_exports_a_carded_onnx(quick_onnx):
    proto = onnx.load(str(quick_onnx))
    assert proto.ir_version <= 10
    card = ModelCard.from_metadata({p.key: p.value for p in proto.metadata_props})
    assert card.task == "segmentation"
    assert card.labels == LABELS
    assert card.palette == PALETTE
    assert card.is_demo and card.source["demo"] is True
    assert card.output == {"stride": 8, "kind": "logits"}
    assert card.input.size_multiple == 8 and card.input.color == "RGB"
    assert set(card.source["heldout_iou"]) <= set(LABELS)
    assert 0.0 <= card.source["heldout_miou"] <= 1.0
    assert card.source["recipe"] == "python -m loupe_models.demo_seg"
    assert quick_onnx.stat().st_size <= 8 * 1024 * 1024


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(1, 3, 272, 640), (2, 3, 136, 320)])
def test_quick_onnx_runs_at_any_multiple_of_8(quick_onnx, shape):
    sess = ort.InferenceSession(str(quick_onnx), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    (logits,) = sess.run(["logits"], {"image": x})
    n, _, h, w = shape
    assert logits.shape == (n, len(LABELS), h // 8, w // 8)
    assert np.isfinite(logits).all()
