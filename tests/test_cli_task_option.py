"""`loupe analyze` with models that carry no card: the one-line note, the ambiguous exit 2,
``--task``, ``--score-threshold`` / ``--iou-threshold``, refusals; and the window's question."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from onnx import TensorProto, helper

from loupe.cli import main
from tests.inference.test_guess import _save, classifier_model, sigmoid_map_model, ultralytics_md

HW = 64  # the detector's fixed input; anchors at strides 8/16/32: 64 + 16 + 4 = 84


def ultralytics_detector(path: Path) -> Path:
    """A YOLO11-shaped export (1 x (4 + 2) x 84) with Ultralytics' metadata whose output is known
    exactly: one box centred at (32, 32), 20 x 10 input pixels, class 1 ('bicycle') at 0.9 and
    class 0 at 0.1; every other anchor scores 0. (The output is that constant + 0 x the input's mean.)"""
    pred = np.zeros((1, 6, 84), np.float32)
    pred[0, :, 0] = [32, 32, 20, 10, 0.1, 0.9]
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, HW, HW])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 84])
    inits = [helper.make_tensor("pred", TensorProto.FLOAT, pred.shape, pred.ravel().tolist()),
             helper.make_tensor("shape", TensorProto.INT64, [3], [1, 1, 1]),
             helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], keepdims=1),
             helper.make_node("Reshape", ["m", "shape"], ["m3"]),
             helper.make_node("Mul", ["m3", "zero"], ["z"]),
             helper.make_node("Add", ["pred", "z"], ["output0"])]
    md = ultralytics_md(names="{0: 'person', 1: 'bicycle'}", imgsz=f"[{HW}, {HW}]")
    return _save(helper.make_graph(nodes, "yolo", [x], [y], inits), path, md)


def raw_head_model(path: Path) -> Path:
    """Eight per-level outputs (1x1 convolutions), as a detector exported without its decoding."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    outs, nodes, inits = [], [], []
    for i in range(8):
        inits.append(helper.make_tensor(f"w{i}", TensorProto.FLOAT, [2, 3, 1, 1], [0.1 * i] * 6))
        nodes.append(helper.make_node("Conv", ["images", f"w{i}"], [f"level{i}"]))
        outs.append(helper.make_tensor_value_info(f"level{i}", TensorProto.FLOAT, [1, 2, 32, 32]))
    return _save(helper.make_graph(nodes, "head", [x], outs, inits), path)


@pytest.fixture
def image(tmp_path) -> Path:
    p = tmp_path / "frame.png"
    img = np.full((HW, HW, 3), 40, np.uint8)
    img[:, :, 2] = 200  # red (OpenCV writes BGR): the sigmoid map model sees foreground there
    cv2.imwrite(str(p), img)
    return p


def analyze(capsys, *args) -> tuple[int, list[str]]:
    rc = main(["analyze", *map(str, args), "--quiet"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err.strip().splitlines()


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ultralytics_detector_runs_with_no_card_and_one_note(tmp_path, image, capsys):
    model, out = ultralytics_detector(tmp_path / "yolo.onnx"), tmp_path / "rows.jsonl"
    rc, err = analyze(capsys, image, "--model", model, "--out", out)
    assert rc == 0, err
    notes = [line for line in err if "no model card" in line]
    assert len(notes) == 1 and "Ultralytics metadata" in notes[0] and "yolov8" in notes[0]
    (row,) = rows(out)
    assert row["task"] == "detection" and row["count"] == 1 and row["count_bicycle"] == 1 and row["count_person"] == 0
    (det,) = row["detections"]
    assert det["label"] == "bicycle" and det["score"] == pytest.approx(0.9, abs=1e-4)
    assert det["box"] == pytest.approx([22, 27, 42, 37], abs=0.01)  # 64 x 64 frame: letterbox is the identity


def test_score_threshold_overrides_the_card(tmp_path, image, capsys):
    model, out = ultralytics_detector(tmp_path / "yolo.onnx"), tmp_path / "rows.jsonl"
    rc, err = analyze(capsys, image, "--model", model, "--out", out, "--score-threshold", "0.95", "--iou-threshold", "0.5")
    assert rc == 0, err
    assert rows(out)[0]["count"] == 0  # the 0.9 box is under 0.95
    rc, err = analyze(capsys, image, "--model", model, "--out", out, "--score-threshold", "0.05")
    assert rc == 0 and rows(out)[0]["count"] == 1  # the same box once: class-aware, best class only


@pytest.mark.parametrize("opt", ["--score-threshold", "--iou-threshold"])
def test_threshold_options_need_a_model_that_takes_them(tmp_path, image, argmax_model, capsys, opt):
    rc, err = analyze(capsys, image, "--model", argmax_model, opt, "0.5")
    assert rc == 2 and len(err) == 1
    assert opt in err[0] and "detection" in err[0] and "argmax.onnx: segmentation" in err[0]
    rc, err = analyze(capsys, image, "--model", argmax_model, opt, "1.5")
    assert rc == 2 and len(err) == 1 and "between 0 and 1" in err[0]


def test_ambiguous_model_exits_2_naming_the_candidates_and_writes_nothing(tmp_path, image, capsys):
    model, out = sigmoid_map_model(tmp_path / "textdet.onnx"), tmp_path / "rows.csv"
    rc, err = analyze(capsys, image, "--model", model, "--out", out)
    assert rc == 2 and len(err) == 1, err
    line = err[0]
    assert "textdet.onnx" in line and "segmentation" in line and "density" in line and "--task NAME" in line
    assert line.index("segmentation") < line.index("density")  # a sigmoid map: segmentation first
    assert not out.exists()


def test_task_picks_for_a_cardless_model(tmp_path, image, capsys):
    model, out = sigmoid_map_model(tmp_path / "textdet.onnx"), tmp_path / "rows.jsonl"
    rc, err = analyze(capsys, image, "--model", model, "--out", out, "--task", "segmentation")
    assert rc == 0, err
    assert any("treated as segmentation as asked" in line for line in err)
    (row,) = rows(out)
    # the map is sigmoid(4 x red - 2) = sigmoid(4 * 200/255 - 2) > 0.5 everywhere: all foreground
    assert row["area_foreground"] == pytest.approx(1.0) and row["area_background"] == pytest.approx(0.0)
    rc, err = analyze(capsys, image, "--model", model, "--out", out, "--task", "density")
    assert rc == 0, err
    assert rows(out)[0]["task"] == "density" and "count" in rows(out)[0]
    rc, err = analyze(capsys, image, "--model", model, "--task", "classification")
    assert rc == 2 and len(err) == 1 and "--task classification does not fit" in err[0]


def test_task_needs_a_cardless_model(tmp_path, image, argmax_model, capsys):
    rc, err = analyze(capsys, image, "--model", argmax_model, "--task", "segmentation")
    assert rc == 2 and len(err) == 1 and "--task applies to models without a card" in err[0]


def test_task_and_thresholds_are_refused_with_ray(tmp_path, image, argmax_model, capsys):
    rc, err = analyze(capsys, image, "--model", argmax_model, "--task", "segmentation", "--ray")
    assert rc == 2 and len(err) == 1 and "--task" in err[0] and "sidecar" in err[0]


def test_unambiguous_guess_runs_with_one_note(tmp_path, image, capsys):
    model, out = classifier_model(tmp_path / "cls.onnx", n=3, hw=(16, 16)), tmp_path / "rows.jsonl"
    rc, err = analyze(capsys, image, "--model", model, "--out", out)
    assert rc == 0, err
    notes = [line for line in err if "no model card" in line]
    assert len(notes) == 1 and "guessed from its outputs: classification" in notes[0]
    assert rows(out)[0]["top1"] == "class 0"  # red is the brightest channel


def test_outputs_that_fit_nothing_are_refused_in_one_line_and_no_rows(tmp_path, image, capsys):
    model, out = raw_head_model(tmp_path / "head.onnx"), tmp_path / "rows.csv"
    rc, err = analyze(capsys, image, "--model", model, "--out", out)
    assert rc == 2 and len(err) == 1, err
    assert "head.onnx" in err[0] and "8 outputs: 1x2x32x32" in err[0] and "head.onnx.loupe.json" in err[0]
    assert not out.exists()


def test_window_offers_the_guessed_candidates_first_and_saves_the_choice(qtbot, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from PySide6.QtWidgets import QInputDialog

    from loupe.inference.card import read_sidecar
    from loupe.inference.engine import Engine
    from loupe.ui import dialogs

    path = sigmoid_map_model(tmp_path / "textdet.onnx")
    engine = Engine(path, providers="cpu")
    asked = []

    def fake_get_item(parent, title, label, items, current, editable):
        asked.append((label, list(items), current))
        return "segmentation", True

    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(fake_get_item))
    win = SimpleNamespace(ask_task=True, show_error=lambda *a, **k: None)
    assert dialogs.confirm_task(win, engine)
    label, items, current = asked[0]
    assert items[:2] == ["segmentation", "density"] and current == 0
    assert "anomaly" not in items and "compression" not in items  # tasks that need their own card
    assert "several tasks" in label and "foreground probability" in label
    card = read_sidecar(path)
    assert card.task == "segmentation" and card.output == {"kind": "probability", "threshold": 0.5}
    assert card.labels == ("background", "foreground") and engine.card == card
    # screenshot mode: nothing asked, the assumption said in the banner
    said = []
    (tmp_path / "textdet.onnx.loupe.json").unlink()
    quiet = SimpleNamespace(ask_task=False, show_error=lambda text, level="error": said.append(text))
    assert dialogs.confirm_task(quiet, Engine(path, providers="cpu"))
    assert "no model card" in said[0] and "could also be density" in said[0]


def test_window_opens_an_ultralytics_export_with_no_question(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    from loupe.ui.main_window import MainWindow

    asked = []
    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(lambda *a: asked.append(a) or ("density", True)))
    path = ultralytics_detector(tmp_path / "yolo.onnx")
    w = MainWindow(ask_task=True)
    qtbot.addWidget(w)
    with qtbot.waitSignal(w.modelLoaded, timeout=10000):
        w.add_model(str(path))
    assert asked == [] and not (tmp_path / "yolo.onnx.loupe.json").exists()
    (m,) = w.models
    assert m.task.name == "detection" and m.engine.card.origin == "ultralytics"
    assert m.task.labels == ("person", "bicycle")
    w.close()


def test_channels_last_segmenter_runs_with_no_card(tmp_path, image, capsys):
    """N x h x w x C scores (a graph ending in a Transpose): read as layout NHWC, argmax per pixel."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, "h", "w", 3])
    node = helper.make_node("Transpose", ["x"], ["scores"], perm=[0, 2, 3, 1])
    model = _save(helper.make_graph([node], "nhwc", [x], [y]), tmp_path / "nhwc.onnx")
    out = tmp_path / "rows.jsonl"
    rc, err = analyze(capsys, image, "--model", model, "--out", out)
    assert rc == 0, err
    assert any("3 class logits per pixel (channels last)" in line for line in err)
    (row,) = rows(out)
    assert row["area_class_0"] == pytest.approx(1.0)  # red is the brightest channel everywhere


def test_load_model_refuses_an_ambiguous_cardless_model_unless_told(tmp_path):
    from loupe.inference.engine import ModelError
    from loupe.run.pipeline import load_model

    path = sigmoid_map_model(tmp_path / "textdet.onnx")
    with pytest.raises(ModelError, match=r"fit several tasks: segmentation .* or density"):
        load_model(str(path), providers="cpu")
    m = load_model(str(path), providers="cpu", task="segmentation")
    assert m.task.name == "segmentation" and m.engine.card.output["kind"] == "probability"


def test_end2end_reads_normalised_centre_boxes_when_the_card_says_so():
    """Ultralytics 8.4's RT-DETR export: K x (cx, cy, w, h in 0..1, score, class)."""
    from loupe.tasks.detection_formats import decode

    pred = np.array([[[0.5, 0.25, 0.2, 0.1, 0.9, 3], [0.1, 0.1, 0.1, 0.1, 0.1, 0]]], np.float32)
    c = decode("end2end", {"predictions": pred}, (320, 640), 0.25,
               options={"box_format": "cxcywh", "normalized": True})
    np.testing.assert_allclose(c.boxes, [[256, 64, 384, 96]], atol=1e-4)  # x by the width, y by the height
    assert c.classes.tolist() == [3] and c.scores.tolist() == pytest.approx([0.9])
    plain = decode("end2end", {"predictions": pred}, (320, 640), 0.25)  # the default: corner pixels as given
    np.testing.assert_allclose(plain.boxes, [[0.5, 0.25, 0.2, 0.1]], atol=1e-6)
