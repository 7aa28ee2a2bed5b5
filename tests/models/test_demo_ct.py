"""Demo CT model: the HU label function, the input transform against the app's preprocessing,
and the quick training recipe (carded ONNX that the app can run on a real CT slice)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from loupe.inference.card import ModelCard
from loupe.inference.preprocess import prepare
from loupe.sources.base import Frame
from loupe.sources.dicom import DicomSource
from loupe_models.demos import ct as demo_ct
from loupe_models.demos.ct import HU_CUTS, LABELS, PALETTE

AIR, FAT, SOFT, BONE = range(4)


def _have(name: str) -> bool:
    from pydicom.data import get_testdata_file

    return get_testdata_file(name, download=False) is not None


needs_data = pytest.mark.skipif(
    not all(_have(n) for n in (*demo_ct.TRAIN_FILES, demo_ct.HELDOUT_FILE)),
    reason="needs the pydicom-data test files installed locally (never downloaded)",
)


TORCH_THREADS = 2  # at most (tests/models/conftest.py sets and restores torch's threads)


@pytest.fixture(scope="module")
def ct_small() -> Frame:
    with DicomSource(demo_ct.testdata_path("CT_small.dcm")) as src:
        return src.frame_at(0)


@pytest.fixture(scope="module")
def quick_onnx(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_ct") / "demo_ct.onnx"
    assert demo_ct.main(["--quick", "--out", str(out)]) == 0
    return out


def _card(path) -> ModelCard:
    proto = onnx.load(str(path))
    return ModelCard.from_metadata({p.key: p.value for p in proto.metadata_props})


# --- labels ------------------------------------------------------------------------------------
def test_label_function_at_the_cut_offs():
    hu = np.array([-3024, -1000, -191, -190, -100, -31, -30, 0, 40, 199.9, 200, 1500],
                  np.float32)
    assert demo_ct.label_hu(hu).tolist() == [AIR, AIR, AIR, FAT, FAT, FAT, SOFT, SOFT, SOFT,
                                             SOFT, BONE, BONE]
    assert HU_CUTS == (-190.0, -30.0, 200.0)
    assert demo_ct.label_hu(hu).dtype == np.uint8


@pytest.mark.slow
def test_label_function_on_ct_small(ct_small):
    hu = ct_small.pixels
    assert hu.dtype == np.float32 and hu.shape == (128, 128)
    # (row, col): HU read from the file (rescale intercept -1024 applied) and its class
    known = {
        (0, 0): (-849, AIR),  # lung
        (120, 0): (-152, FAT),  # posterior subcutaneous fat
        (80, 0): (89, SOFT),  # back muscle
        (8, 88): (184, SOFT),  # contrast-enhanced aorta, below the bone cut-off
        (64, 56): (1077, BONE),  # vertebra (cortex)
    }
    labels = demo_ct.label_hu(hu)
    for (r, c), (value, cls) in known.items():
        assert hu[r, c] == pytest.approx(value, abs=0.5), (r, c)
        assert labels[r, c] == cls, (r, c, hu[r, c])
    area = np.bincount(labels.ravel(), minlength=4) / labels.size
    assert (area > 0.05).all(), area  # every class is present on this slice


# --- input transform = the app's preprocessing -------------------------------------------------
@pytest.mark.slow
def test_training_input_matches_app_preprocessing(ct_small):
    x_app, geo = prepare(ct_small, demo_ct.INPUT)
    assert geo.mode == "pad" and geo.input_hw == (128, 128)
    x_train = demo_ct.to_input(ct_small.pixels[None])
    assert x_train.dtype == np.float32 and x_train.shape == (1, 3, 128, 128)
    np.testing.assert_array_equal(x_train, x_app)  # bit for bit
    np.testing.assert_allclose(x_app[0, 1], ct_small.pixels / 1000.0, rtol=1e-6)


@pytest.mark.slow
def test_padding_matches_app_preprocessing(ct_small):
    crop = np.ascontiguousarray(ct_small.pixels[5:102, 9:120])  # 97 x 111: not multiples of 8
    frame = Frame(crop, 0, 0.0, dict(ct_small.metadata))
    x_app, geo = prepare(frame, demo_ct.INPUT)
    assert geo.input_hw == (104, 112)
    x_train = demo_ct.to_input(demo_ct.pad_to_multiple(crop)[None])
    np.testing.assert_array_equal(x_train, x_app)


@pytest.mark.slow
@needs_data
def test_the_card_input_is_the_one_the_recipe_uses(quick_onnx):
    card = _card(quick_onnx)
    assert card.input == demo_ct.INPUT
    assert card.input.raw_values is True
    assert card.input.color == "RGB" and card.input.size_multiple == 8
    assert card.input.scale == pytest.approx(1e-3)
    assert card.input.mean == (0.0, 0.0, 0.0) and card.input.std == (1.0, 1.0, 1.0)


# --- the quick recipe --------------------------------------------------------------------------
@pytest.mark.slow
@needs_data
def test_quick_recipe_exports_a_carded_onnx(quick_onnx):
    proto = onnx.load(str(quick_onnx))
    assert proto.ir_version <= 10
    card = _card(quick_onnx)
    assert card.task == "segmentation"
    assert card.name == "Loupe demo CT tissue classes (HU ranges)"
    assert card.labels == LABELS == ("air / lung", "fat", "soft tissue / fluid",
                                     "bone / calcification")
    assert card.palette == PALETTE and len(set(PALETTE)) == len(PALETTE)
    assert card.output == {"stride": 8, "kind": "logits"}
    src = card.source
    assert card.is_demo and src["demo"] is True
    assert src["recipe"] == "python -m loupe_models.demo_ct"
    assert "not anatomy" in src["note"]
    assert "-190" in src["labels_procedure"] and "200" in src["labels_procedure"]
    for name in demo_ct.TRAIN_FILES:
        assert name in src["training_data"]
    assert demo_ct.HELDOUT_FILE not in src["training_data"]
    assert demo_ct.HELDOUT_FILE in src["heldout"]
    for key in ("heldout_iou", "heldout_region_iou"):
        assert set(src[key]) <= set(LABELS) and src[key]
        assert all(0.0 <= v <= 1.0 for v in src[key].values())
    assert 0.0 <= src["heldout_miou"] <= 1.0 and 0.0 <= src["heldout_region_miou"] <= 1.0
    assert "DualResNet" in src["architecture"]
    assert quick_onnx.stat().st_size <= 2 * 1024 * 1024


@pytest.mark.slow
@needs_data
def test_quick_onnx_runs_in_the_app_on_a_real_ct_slice(quick_onnx, ct_small):
    from loupe.run.pipeline import Runner, load_model

    model = load_model(str(quick_onnx), providers="cpu", threads=1)
    assert model.task.name == "segmentation"
    res = Runner([model]).process(ct_small).results[0].result
    assert res.class_map.shape == (128, 128) and res.class_map.dtype == np.uint8
    assert res.class_map.max() < len(LABELS)
    assert res.labels == LABELS
    assert res.class_area.sum() == pytest.approx(1.0)
    # any multiple of 8, padded or not: stride-8 logits for 4 classes
    (logits,) = model.engine.run({"image": demo_ct.to_input(np.zeros((1, 96, 136), np.float32))})
    assert logits.shape == (1, len(LABELS), 12, 17)


@pytest.mark.slow
def test_shipped_model_follows_the_hu_labels_on_ct_small(ct_small):
    from loupe.run.pipeline import Runner, load_model

    shipped = Path(demo_ct.__file__).resolve().parents[2] / "resources" / "demo_ct.onnx"
    if not shipped.is_file():
        pytest.skip("resources/demo_ct.onnx not built (python -m loupe_models.demo_ct)")
    card = _card(shipped)
    assert card.input == demo_ct.INPUT and card.labels == LABELS
    assert card.source["heldout_miou"] > 0.6
    model = load_model(str(shipped), providers="cpu", threads=1)
    res = Runner([model]).process(ct_small).results[0].result
    labels = demo_ct.label_hu(ct_small.pixels)
    assert (res.class_map == labels).mean() > 0.75
    truth = np.bincount(labels.ravel(), minlength=4) / labels.size
    np.testing.assert_allclose(res.class_area, truth, atol=0.08)
