"""input_mismatch: the card's expected input against the frame, in words a user reads."""

from __future__ import annotations

import numpy as np
import pytest

from loupe.inference.card import InputSpec, ModelCard
from loupe.inference.input_fit import input_mismatch
from loupe.sources.base import Frame

VIDEO_MODEL = ModelCard(task="segmentation", name="bikes seg", labels=("a", "b"))
CT_MODEL = ModelCard(task="segmentation", name="ct seg", labels=("a", "b"),
                     input=InputSpec(scale=0.001, raw_values=True))
CT_ONLY = ModelCard(task="segmentation", name="ct only", labels=("a", "b"),
                    input=InputSpec(scale=0.001, raw_values=True), source={"modality": "CT"})
GRAY_MODEL = ModelCard(task="segmentation", name="grey", labels=("a", "b"),
                       input=InputSpec(color="GRAY", mean=(0.0,), std=(1.0,)))


def video_frame() -> Frame:
    return Frame(np.zeros((16, 16, 3), np.uint8), 0, 0.0)


def ct_slice(modality: str = "CT") -> Frame:
    return Frame(np.full((16, 16), -1000.0, np.float32), 0, 0.0,
                 {"modality": modality, "rescale_slope": 1.0, "rescale_intercept": -1024.0})


def test_video_model_on_a_ct_slice_is_named():
    msg = input_mismatch(VIDEO_MODEL, ct_slice())
    assert msg is not None
    assert "bikes seg expects 8-bit colour images (RGB)" in msg and "a CT slice (HU values)" in msg


def test_ct_model_on_video_is_named():
    msg = input_mismatch(CT_MODEL, video_frame())
    assert msg is not None and "raw values" in msg and "8-bit colour pixels" in msg


def test_ct_only_model_on_mr_is_named():
    msg = input_mismatch(CT_ONLY, ct_slice("MR"))
    assert msg is not None and "CT slices" in msg and "MR slice" in msg


def test_grey_model_on_colour_video_is_named():
    assert "8-bit greyscale images" in (input_mismatch(GRAY_MODEL, video_frame()) or "")


@pytest.mark.parametrize("card, frame", [
    (VIDEO_MODEL, video_frame()),
    (VIDEO_MODEL, Frame(np.zeros((16, 16), np.uint8), 0, 0.0)),  # a grey PNG: fine for an RGB model
    (CT_MODEL, ct_slice()),
    (CT_MODEL, ct_slice("MR")),  # raw values without a named modality: any scan
    (CT_ONLY, ct_slice()),
    (GRAY_MODEL, Frame(np.zeros((16, 16), np.uint8), 0, 0.0)),
])
def test_matching_inputs_give_none(card, frame):
    assert input_mismatch(card, frame) is None


def test_demo_ct_model_fits_the_demo_ct_file_and_not_video():
    from loupe.base.media import dicom_test_file
    from loupe.inference.engine import Engine
    from loupe.resources import demo_models
    from loupe.sources.open import open_source

    path = next((p for p in demo_models() if p.stem == "demo_ct"), None)
    if path is None:
        pytest.skip("demo_ct.onnx is not built")
    card = Engine(str(path), providers="cpu").card
    src = open_source(str(dicom_test_file("CT_small.dcm")))
    try:
        frame = src.read()
    finally:
        src.close()
    assert input_mismatch(card, frame) is None
    assert input_mismatch(card, video_frame()) is not None
