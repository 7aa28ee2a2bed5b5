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
        ModelCard.from_metadata({"loupe.task": "no-such-task"})
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


# --- hand-written sidecars (plain JSON values) -----------------------------------------------

HAND_WRITTEN = {
    "loupe.task": "segmentation",
    "loupe.name": "my segmenter",
    "loupe.input": {"color": "RGB", "scale": 0.00392156862745098, "mean": [0.485, 0.456, 0.406],
                    "std": [0.229, 0.224, 0.225], "size_multiple": 8},
    "loupe.labels": ["red", "green", "blue"],
    "loupe.palette": [[255, 0, 0], [0, 255, 0], [0, 0, 255]],
    "loupe.output": {"stride": 1, "kind": "logits"},
}


def _cardless(path):
    """The argmax model with its embedded card removed (the sidecar is then what counts)."""
    from tests.helpers import make_argmax_model

    return make_argmax_model(path, card=False)


def test_hand_written_sidecar_with_plain_values_reads_like_the_apps_own(tmp_path):
    model = _cardless(tmp_path / "m.onnx")
    side = tmp_path / "m.onnx.loupe.json"
    side.write_text(json.dumps(HAND_WRITTEN, indent=2))
    card = read_sidecar(model)
    assert card.origin == "sidecar" and card.name == "my segmenter"
    assert card.labels == ("red", "green", "blue")
    assert card.palette == ((255, 0, 0), (0, 255, 0), (0, 0, 255))
    assert card.input.size_multiple == 8 and card.input.mean == (0.485, 0.456, 0.406)
    assert card.output == {"stride": 1, "kind": "logits"}
    # the same card in the app's own form (JSON strings) reads the same
    write_sidecar(model, card)
    assert isinstance(json.loads(side.read_text())["loupe.input"], str)
    assert read_sidecar(model) == card
    # and a file mixing both forms too
    mixed = dict(HAND_WRITTEN, **{"loupe.labels": json.dumps(["red", "green", "blue"])})
    side.write_text(json.dumps(mixed))
    assert read_sidecar(model) == card


def test_hand_written_sidecar_runs_in_the_cli(tmp_path, capsys):
    import cv2
    import numpy as np

    from loupe.cli import main

    model = _cardless(tmp_path / "m.onnx")
    (tmp_path / "m.onnx.loupe.json").write_text(json.dumps(HAND_WRITTEN))
    img = np.zeros((16, 16, 3), np.uint8)
    img[..., 1] = 200  # green everywhere: class 1
    cv2.imwrite(str(tmp_path / "g.png"), img)
    out = tmp_path / "rows.jsonl"
    rc = main(["analyze", str(tmp_path / "g.png"), "--model", str(model), "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    row = json.loads(out.read_text().splitlines()[0])
    assert row["task"] == "segmentation" and row["model"]
    assert "has no model card" not in capsys.readouterr().err  # the sidecar was used, not a guess


MALFORMED = [  # (what, sidecar text, words the one line must hold besides the file name)
    ("not JSON", "{oops", ["not valid JSON"]),
    ("not an object", "[1, 2]", ["one JSON object", "a list"]),
    ("labels as a plain string", {"loupe.task": "segmentation", "loupe.labels": "road, car"},
     ["loupe.labels", "list of names"]),
    ("labels as an object", {"loupe.task": "segmentation", "loupe.labels": {"0": "road"}}, ["loupe.labels", "an object"]),
    ("input as a list", {"loupe.task": "segmentation", "loupe.input": [1, 2]}, ["loupe.input", "a list"]),
    ("unknown colour", {"loupe.task": "segmentation", "loupe.input": {"color": "RBG"}}, ["loupe.input", "color", "RBG"]),
    ("mean as a number", {"loupe.task": "segmentation", "loupe.input": {"mean": 0.5}}, ["loupe.input mean", "list of numbers"]),
    ("mean of strings", {"loupe.task": "segmentation", "loupe.input": {"mean": ["0", "0", "0"]}}, ["loupe.input mean", "number"]),
    ("misspelt input key", {"loupe.task": "segmentation", "loupe.input": {"colour": "RGB"}}, ["loupe.input", "colour"]),
    ("raw_values as a string", {"loupe.task": "segmentation", "loupe.input": {"raw_values": "no"}}, ["raw_values", "true or false"]),
    ("no task", {"loupe.labels": ["a"]}, ["loupe.task"]),
    ("task as a number", {"loupe.task": 3}, ["loupe.task", "string"]),
    ("unknown task", {"loupe.task": "no-such-task"}, ["loupe.task", "no-such-task"]),
    ("key without the prefix", {"task": "segmentation"}, ["'task'", "loupe.task"]),
    ("misspelt key", {"loupe.task": "segmentation", "loupe.lables": ["a"]}, ["loupe.lables", "unknown key"]),
    ("palette value out of range", {"loupe.task": "segmentation", "loupe.palette": [[0, 0, 256]]}, ["loupe.palette[0]", "0-255"]),
    ("palette of names", {"loupe.task": "segmentation", "loupe.palette": ["red"]}, ["loupe.palette[0]", "a string"]),
    ("output as a string", {"loupe.task": "segmentation", "loupe.output": "stride 8"}, ["loupe.output", "a string"]),
    ("anomaly threshold as a word", {"loupe.task": "anomaly", "loupe.output": {"threshold": "high"}},
     ["loupe.output threshold", "number"]),
    ("density count_scale as a list", {"loupe.task": "density", "loupe.output": {"count_scale": [1]}},
     ["loupe.output count_scale", "number"]),
]


@pytest.mark.parametrize(("what", "text", "words"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_sidecar_is_one_line_naming_file_and_key_and_exit_2(tmp_path, capsys, what, text, words):
    import cv2
    import numpy as np

    from loupe.cli import main

    model = _cardless(tmp_path / "m.onnx")
    (tmp_path / "m.onnx.loupe.json").write_text(text if isinstance(text, str) else json.dumps(text))
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(CardError) as info:
        read_sidecar(model)
    assert "m.onnx.loupe.json" in str(info.value)
    rc = main(["analyze", str(tmp_path / "x.png"), "--model", str(model), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("loupe: ") and "m.onnx.loupe.json" in lines[0]
    after = lines[0].split("m.onnx.loupe.json", 1)[1]  # the reason follows the file's name
    missing = [w for w in words if w.lower() not in after.lower()]
    assert not missing, (missing, lines[0])


def test_malformed_sidecar_in_the_window_shows_the_reason(qtbot, tmp_path):
    from loupe.ui.main_window import MainWindow

    model = _cardless(tmp_path / "m.onnx")
    (tmp_path / "m.onnx.loupe.json").write_text(json.dumps({"loupe.task": "segmentation", "loupe.labels": "a, b"}))
    win = MainWindow(ask_task=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.errorShown, timeout=20000) as sig:
        win.add_model(str(model))
    assert "m.onnx.loupe.json" in sig.args[0] and "loupe.labels" in sig.args[0]
    assert "TypeError" not in sig.args[0]
    assert not win.models
    win.close()


def test_readme_sidecar_example_is_a_card_loupe_reads(tmp_path):
    """The hand-written sidecar shown in README.md reads as documented."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```json\n(.*?)```", readme, re.S) if '"loupe.task"' in b]
    assert blocks, "README.md shows no hand-written sidecar"
    model = _cardless(tmp_path / "unet.onnx")
    (tmp_path / "unet.onnx.loupe.json").write_text(blocks[0])
    card = read_sidecar(model)
    assert card.task == "segmentation" and card.labels == ("background", "road", "car")
    assert card.input.size_multiple == 32 and len(card.palette) == 3
