"""The classification task on tiny ONNX classifiers whose outputs are known exactly: logits vs
probabilities, top-k order, labels, output shapes, refusals, and ``loupe analyze`` rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from loupe.cli import main
from loupe.inference.card import (
    CardError,
    InputSpec,
    ModelCard,
    check_classification_output,
    embed_card,
)
from loupe.inference.engine import Engine, ModelError
from loupe.inference.safety import check_classification
from loupe.sources.base import Frame
from loupe.tasks import make_task
from loupe.tasks.classification import ClassificationResult, softmax, top_indices

RGB = ("red", "green", "blue")


def _save(model: onnx.ModelProto, path: Path, output: dict | None, labels=(), spec: InputSpec | None = None) -> Path:
    if output is not None:
        embed_card(model, ModelCard(task="classification", name=path.stem, input=spec or InputSpec(fixed_size=(8, 8)),
                                    labels=tuple(labels), output=output))
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def constant_classifier(path: Path, scores, output: dict | None = None, shape=None, labels=()) -> Path:
    """Outputs ``scores`` (reshaped to ``shape``, default 1 x C) whatever the image."""
    v = np.asarray(scores, np.float32)
    shape = list(shape or (1, v.size))
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, shape)
    nodes = [
        helper.make_node("ReduceSum", ["image"], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "zero"], ["z"]),
        helper.make_node("Add", ["value", "z"], ["scores"]),
    ]
    inits = [numpy_helper.from_array(v.reshape(shape), "value"), numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    graph = helper.make_graph(nodes, "constant", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return _save(model, path, {"kind": "logits"} if output is None else output, labels=labels)


def mean_colour_classifier(path: Path, output: dict, spec: InputSpec | None = None) -> Path:
    """logits = 10 x the mean of each channel in [0, 1]: the class is the dominant colour."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("Mul", ["m", "ten"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "mean_colour", [x], [y], [numpy_helper.from_array(np.array(10.0, np.float32), "ten")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return _save(model, path, output, labels=RGB, spec=spec or InputSpec(fixed_size=(8, 8)))


def classify(task, rgb: np.ndarray | None = None) -> ClassificationResult:
    rgb = np.zeros((8, 8, 3), np.uint8) if rgb is None else rgb
    feeds, ctx = task.prepare(Frame(rgb, 0, 0.0))
    return task.postprocess(task.engine.run(feeds), ctx)


def test_logits_get_a_stable_softmax(tmp_path):
    logits = [1000.0, 999.0, 0.0, 998.0]  # exp(1000) overflows without the max subtracted
    task = make_task(Engine(constant_classifier(tmp_path / "c.onnx", logits, labels=("a", "b", "c", "d"))))
    res = classify(task)
    x = np.array(logits, np.float64) - 1000.0
    want = np.exp(x) / np.exp(x).sum()
    np.testing.assert_allclose(res.probs, want, rtol=1e-6)
    assert res.probs.dtype == np.float32 and np.isfinite(res.probs).all()
    assert res.top.tolist() == [0, 1, 3, 2]
    assert (res.top1, res.top1_label) == (0, "a") and res.top1_score == pytest.approx(want[0], rel=1e-6)


def test_probabilities_are_used_as_given_not_renormalised(tmp_path):
    scores = [0.2, 0.9, 0.6]  # independent sigmoid scores: they do not sum to 1
    task = make_task(Engine(constant_classifier(tmp_path / "p.onnx", scores, {"kind": "probabilities"}, labels=RGB)))
    res = classify(task)
    np.testing.assert_allclose(res.probs, scores, rtol=1e-7)
    assert [res.labels[k] for k in res.top] == ["green", "blue", "red"]
    # the same scores said to be logits are softmaxed: same order, other values
    as_logits = classify(make_task(Engine(constant_classifier(tmp_path / "l.onnx", scores, {"kind": "logits"}))))
    assert as_logits.top.tolist() == res.top.tolist()
    assert as_logits.probs.sum() == pytest.approx(1.0, abs=1e-6)
    assert not np.allclose(as_logits.probs, scores)


def test_probabilities_outside_0_1_are_refused(tmp_path):
    task = make_task(Engine(constant_classifier(tmp_path / "p.onnx", [2.5, -1.0], {"kind": "probabilities"})))
    with pytest.raises(ModelError, match=r'outside \[0, 1\].*kind "logits"'):
        classify(task)


@pytest.mark.parametrize("shape", [(1, 4), (4,), (1, 4, 1, 1), (1, 1, 1, 4)])
def test_accepted_output_shapes_give_the_same_result(tmp_path, shape):
    logits = [0.5, 2.0, -1.0, 1.0]
    res = classify(make_task(Engine(constant_classifier(tmp_path / "c.onnx", logits, shape=shape))))
    assert res.labels == ("class 0", "class 1", "class 2", "class 3")
    assert res.top.tolist() == [1, 3, 0, 2]
    np.testing.assert_allclose(res.probs, softmax(np.array(logits)), rtol=1e-6)


def test_top_k_from_the_card_and_capped_by_the_class_count(tmp_path):
    logits = np.arange(10, dtype=np.float32)
    three = make_task(Engine(constant_classifier(tmp_path / "a.onnx", logits, {"kind": "logits", "top_k": 3})))
    assert classify(three).top.tolist() == [9, 8, 7]
    default = make_task(Engine(constant_classifier(tmp_path / "b.onnx", logits)))
    assert classify(default).top.tolist() == [9, 8, 7, 6, 5]
    few = make_task(Engine(constant_classifier(tmp_path / "c.onnx", [0.0, 1.0], {"kind": "logits", "top_k": 5})))
    assert classify(few).top.tolist() == [1, 0]


def test_ties_keep_class_order():
    assert top_indices(np.array([0.25, 0.5, 0.25, 0.0], np.float32), 4).tolist() == [1, 0, 2, 3]


def test_labels_must_match_the_class_count(tmp_path):
    with pytest.raises(ModelError, match="names 2 classes but the model outputs 3 scores"):
        make_task(Engine(constant_classifier(tmp_path / "c.onnx", [1, 2, 3], labels=("a", "b"))))


@pytest.mark.parametrize(("shape", "match"), [
    ((1, 5, 7, 7), "7 x 7 map.*segmentation"),
    ((1, 1), "1 score.*at least 2 classes"),
    ((1, 5, 3), "one score per class"),
    ((1, 3, 1, 5), r"shape \[1, 3, 1, 5\].*one score per class"),
    ((4, 5), "batch of 4"),
])
def test_outputs_that_cannot_be_a_class_vector_are_refused(tmp_path, shape, match):
    path = constant_classifier(tmp_path / "bad.onnx", np.zeros(int(np.prod(shape))), shape=shape)
    with pytest.raises(ModelError, match=match) as err:
        check_classification(Engine(path))
    assert "\n" not in str(err.value) and str(err.value).startswith("bad.onnx")
    with pytest.raises(ModelError):
        make_task(Engine(path))  # the registry runs the same check first


def test_center_crop_input_sees_the_centre(tmp_path):
    # a blue frame with a red centre: a classifier fed the centre crop says red, one fed the
    # whole frame stretched says blue
    rgb = np.zeros((40, 80, 3), np.uint8)
    rgb[..., 2] = 255
    rgb[5:35, 25:55] = (255, 0, 0)
    crop = make_task(Engine(mean_colour_classifier(tmp_path / "crop.onnx", {"kind": "logits"},
                                                   InputSpec(fixed_size=(8, 8), center_crop=True))))
    stretch = make_task(Engine(mean_colour_classifier(tmp_path / "stretch.onnx", {"kind": "logits"})))
    assert classify(crop, rgb).top1_label == "red"
    assert classify(stretch, rgb).top1_label == "blue"


def test_row_and_columns(tmp_path):
    task = make_task(Engine(mean_colour_classifier(tmp_path / "m.onnx", {"kind": "logits", "top_k": 2})))
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 1] = 255
    res = classify(task, rgb)
    assert task.columns() == ["top1", "top1_score"]
    row = task.row(res)
    p = softmax(np.array([0.0, 10.0, 0.0]))
    assert row["top1"] == "green" and row["top1_score"] == pytest.approx(p[1], abs=1e-6)
    assert row["topk"] == [{"label": "green", "class": 1, "score": pytest.approx(p[1], abs=1e-6)},
                           {"label": "red", "class": 0, "score": pytest.approx(p[0], abs=1e-6)}]
    assert json.loads(json.dumps(row)) == row  # plain JSON values


def test_fresh_keeps_the_model_and_card(tmp_path):
    task = make_task(Engine(mean_colour_classifier(tmp_path / "m.onnx", {"kind": "probabilities", "top_k": 2})))
    twin = task.fresh()
    assert (twin.kind, twin.top_k, twin.labels, twin.history) == ("probabilities", 2, RGB, 0)
    assert twin.engine is task.engine


def test_card_checks_name_the_key():
    with pytest.raises(CardError, match="kind must be one of logits, probabilities"):
        check_classification_output({"kind": "softmax"})
    for bad in (0, 2.5, "5", True):
        with pytest.raises(CardError, match="top_k"):
            check_classification_output({"top_k": bad})
    check_classification_output({"kind": "probabilities", "top_k": 3})


def _write_png(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return path


def test_analyze_writes_the_label_and_score_in_csv_and_topk_in_jsonl(tmp_path):
    model = mean_colour_classifier(tmp_path / "colours.onnx", {"kind": "logits", "top_k": 3})
    red = np.zeros((30, 50, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((30, 50, 3), np.uint8)
    blue[..., 2] = 200
    inputs = [str(_write_png(tmp_path / "red.png", red)), str(_write_png(tmp_path / "blue.png", blue))]
    out_csv = tmp_path / "rows.csv"
    assert main(["analyze", *inputs, "--model", str(model), "--out", str(out_csv), "--quiet"]) == 0
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[-2:] == ["top1", "top1_score"] and "topk" not in rows[0]
    assert [r["top1"] for r in rows] == ["red", "blue"] and {r["task"] for r in rows} == {"classification"}
    p_red = softmax(np.array([10.0, 0.0, 0.0]))
    assert float(rows[0]["top1_score"]) == pytest.approx(p_red[0], abs=1e-6)

    out_jsonl = tmp_path / "rows.jsonl"
    assert main(["analyze", *inputs, "--model", str(model), "--out", str(out_jsonl), "--quiet"]) == 0
    lines = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert [r["top1"] for r in lines] == ["red", "blue"]
    assert [t["label"] for t in lines[0]["topk"]] == ["red", "green", "blue"]
    assert [t["class"] for t in lines[1]["topk"]] == [2, 0, 1]
    p_blue = softmax(np.array([0.0, 0.0, 10.0 * 200 / 255]))
    assert lines[1]["topk"][0]["score"] == pytest.approx(p_blue[2], abs=1e-5)


def test_analyze_summary_names_the_most_frequent_top_label(tmp_path, capsys):
    model = mean_colour_classifier(tmp_path / "colours.onnx", {"kind": "logits", "top_k": 3})
    red = np.zeros((30, 50, 3), np.uint8)
    red[..., 0] = 255
    folder = tmp_path / "reds"
    folder.mkdir()
    inputs = [str(_write_png(folder / f"{i}.png", red)) for i in range(3)]
    assert main(["analyze", *inputs, "--model", str(model), "--quiet"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("0.png"))
    assert "top1 mostly red (1/1)" in line and "top1_score 0.99" in line


def test_hand_written_sidecars_describe_a_classifier_and_a_probability_segmenter(tmp_path):
    """Card-less models described only by a sidecar a person wrote (plain JSON values)."""
    clf = mean_colour_classifier(tmp_path / "clf.onnx", None)
    (tmp_path / "clf.onnx.loupe.json").write_text(json.dumps({
        "loupe.task": "classification",
        "loupe.input": {"color": "RGB", "scale": 0.00392156862745098, "fixed_size": [8, 8], "center_crop": True},
        "loupe.labels": ["red", "green", "blue"],
        "loupe.output": {"kind": "logits", "top_k": 2},
    }))
    task = make_task(Engine(clf))
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 1] = 255
    res = classify(task, rgb)
    assert (res.top1_label, res.top.size, task.card.origin) == ("green", 2, "sidecar")

    from tests.tasks.test_segmentation_kinds import probability_map

    p = probability_map()
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 24])
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1, 16, 24])
    nodes = [helper.make_node("ReduceSum", ["image"], ["s"], keepdims=0),
             helper.make_node("Mul", ["s", "zero"], ["z"]),
             helper.make_node("Add", ["value", "z"], ["prob"])]
    inits = [numpy_helper.from_array(p[None, None], "value"), numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    seg = _save(helper.make_model(helper.make_graph(nodes, "text", [x], [y], inits),
                                  opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "text.onnx", None)
    (tmp_path / "text.onnx.loupe.json").write_text(json.dumps({
        "loupe.task": "segmentation",
        "loupe.input": {"fixed_size": [16, 24]},
        "loupe.labels": ["text"],
        "loupe.output": {"kind": "probability", "threshold": 0.3},
    }))
    seg_task = make_task(Engine(seg))
    feeds, ctx = seg_task.prepare(Frame(np.zeros((16, 24, 3), np.uint8), 0, 0.0))
    row = seg_task.row(seg_task.postprocess(seg_task.engine.run(feeds), ctx))
    assert row["area_text"] == pytest.approx((p > 0.3).mean(), abs=1e-6)
