import json

import onnx
import pytest

from loupe.inference.card import CardError, InputSpec, ModelCard, read_sidecar, write_sidecar


def test_card_round_trips_through_metadata():
    card = ModelCard(
        task="segmentation", name="x", input=InputSpec(size_multiple=8, mean=(0.1, 0.2, 0.3), std=(1, 2, 3)),
        labels=("a", "b"), palette=((1, 2, 3), (4, 5, 6)), output={"stride": 8}, source={"demo": True},
    )
    back = ModelCard.from_metadata(card.to_metadata())
    assert back == card
    assert back.is_demo


def test_bad_cards_name_the_key():
    with pytest.raises(CardError, match="loupe.task"):
        ModelCard.from_metadata({"loupe.task": "detection"})
    with pytest.raises(CardError, match="loupe.input"):
        ModelCard.from_metadata({"loupe.task": "segmentation", "loupe.input": "{not json"})
    with pytest.raises(CardError, match="palette"):
        ModelCard(task="segmentation", labels=("a", "b", "c"), palette=((0, 0, 0),))
    with pytest.raises(CardError, match="std"):
        InputSpec(std=(1.0, 0.0, 1.0))


def test_sidecar_is_written_next_to_model_and_model_untouched(tmp_path, argmax_model):
    before = argmax_model.read_bytes()
    card = ModelCard(task="density", name="n")
    side = write_sidecar(argmax_model, card)
    assert side.name == "argmax.onnx.loupe.json"
    assert json.loads(side.read_text())["loupe.task"] == "density"
    assert read_sidecar(argmax_model).task == "density"
    assert argmax_model.read_bytes() == before


def test_embedded_card_readable_with_onnx(argmax_model):
    m = onnx.load(str(argmax_model))
    md = {p.key: p.value for p in m.metadata_props}
    assert ModelCard.from_metadata(md).labels == ("red", "green", "blue")
