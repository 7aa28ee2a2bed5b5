"""Segmentation output kinds (logits, probabilities, probability, class_map) and layouts (NCHW,
NHWC), on tiny ONNX models whose outputs are known exactly."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from loupe.cli import main
from loupe.inference.card import CardError, InputSpec, ModelCard, embed_card
from loupe.inference.engine import Engine, ModelError
from loupe.inference.safety import check_segmentation
from loupe.sources.base import Frame
from loupe.tasks import make_task
from loupe.tasks.segmentation import SegmentationTask


def _save(model: onnx.ModelProto, path: Path, output: dict, labels=(), palette=(), spec: InputSpec | None = None) -> Path:
    embed_card(model, ModelCard(task="segmentation", name=path.stem, input=spec or InputSpec(),
                                labels=tuple(labels), palette=tuple(palette), output=output))
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def constant_model(path: Path, value: np.ndarray, output: dict, in_hw=("h", "w"), **card) -> Path:
    """A model that ignores its image and outputs ``value`` (float32, any shape)."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, *in_hw])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, list(value.shape))
    const = numpy_helper.from_array(value.astype(np.float32), "value")
    # out = value + 0 * sum(image): depends on the input so nothing folds it away
    nodes = [
        helper.make_node("ReduceSum", ["image"], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "zero"], ["z"]),
        helper.make_node("Add", ["value", "z"], ["out"]),
    ]
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    graph = helper.make_graph(nodes, "constant", [x], [y], [const, zero])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path, output, **card)


def rgb_model(path: Path, layout: str, output: dict, labels=("red", "green", "blue")) -> Path:
    """Scores = the image in [0, 1], as NCHW (identity) or NHWC (transposed)."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])
    if layout == "NHWC":
        y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", "h", "w", 3])
        nodes = [helper.make_node("Transpose", ["image"], ["out"], perm=[0, 2, 3, 1])]
    else:
        y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3, "h", "w"])
        nodes = [helper.make_node("Identity", ["image"], ["out"])]
    graph = helper.make_graph(nodes, "rgb", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return _save(model, path, {"layout": layout, **output}, labels=labels)


def run(task, rgb: np.ndarray):
    feeds, ctx = task.prepare(Frame(rgb, 0, 0.0))
    return task.postprocess(task.engine.run(feeds), ctx)


def probability_map(h: int = 16, w: int = 24) -> np.ndarray:
    """A fixed map of probabilities on a 1/64 grid (no value equals the 0.5 threshold)."""
    rng = np.random.default_rng(7)
    return (rng.integers(0, 64, (h, w)) / 64.0 + 1 / 128).astype(np.float32)


def test_probability_kind_foreground_area_is_the_fraction_above_threshold(tmp_path):
    p = probability_map()
    path = constant_model(tmp_path / "text.onnx", p[None, None], {"kind": "probability", "threshold": 0.5},
                          labels=("text",), spec=InputSpec(fixed_size=(16, 24)))
    task = make_task(Engine(path))
    assert task.labels == ("background", "text") and task.columns() == ["area_background", "area_text"]
    res = run(task, np.zeros((16, 24, 3), np.uint8))  # frame = model size: no resampling
    assert res.class_map.tolist() == (p > 0.5).astype(np.uint8).tolist()
    assert res.class_area[1] == pytest.approx((p > 0.5).mean(), abs=1e-9)
    assert task.row(res)["area_text"] == pytest.approx((p > 0.5).mean(), abs=1e-6)
    task.threshold = 0.8  # another threshold, another area
    assert run(task, np.zeros((16, 24, 3), np.uint8)).class_area[1] == pytest.approx((p > 0.8).mean(), abs=1e-9)


def test_probability_is_upsampled_bilinearly_before_the_threshold(tmp_path):
    p = probability_map(8, 12)
    path = constant_model(tmp_path / "lesion.onnx", p[None, None], {"kind": "probability", "threshold": 0.4},
                          spec=InputSpec(fixed_size=(8, 12)))
    task = make_task(Engine(path))
    assert task.labels == ("background", "foreground")
    res = run(task, np.zeros((32, 48, 3), np.uint8))
    up = cv2.resize(p, (48, 32), interpolation=cv2.INTER_LINEAR)
    assert res.class_map.shape == (32, 48)
    assert (res.class_map == (up > 0.4)).all()
    # bilinear, not nearest: the two disagree somewhere on this map
    near = cv2.resize(p, (48, 32), interpolation=cv2.INTER_NEAREST)
    assert ((near > 0.4) != (up > 0.4)).any()


def test_probability_kind_refuses_several_channels_and_logit_values(tmp_path):
    two = constant_model(tmp_path / "two.onnx", np.zeros((1, 2, 4, 4)), {"kind": "probability"},
                         spec=InputSpec(fixed_size=(4, 4)))
    with pytest.raises(ModelError, match="2 channels.*probability"):
        check_segmentation(Engine(two))
    logits = constant_model(tmp_path / "logit.onnx", np.full((1, 1, 4, 4), 3.0), {"kind": "probability"},
                            spec=InputSpec(fixed_size=(4, 4)))
    with pytest.raises(ModelError, match=r"outside \[0, 1\].*logits"):
        run(make_task(Engine(logits)), np.zeros((4, 4, 3), np.uint8))


def test_one_channel_logits_stay_a_foreground_logit(tmp_path):
    v = np.array([[-1.0, 0.2], [0.3, -0.1]], np.float32)  # > 0 is foreground (not > 0.5)
    path = constant_model(tmp_path / "logit1.onnx", v[None, None], {"kind": "logits"}, spec=InputSpec(fixed_size=(2, 2)))
    res = run(make_task(Engine(path)), np.zeros((2, 2, 3), np.uint8))
    assert res.class_map.tolist() == [[0, 1], [1, 0]]


def test_probability_labels_and_palette_from_the_card(tmp_path):
    m = np.full((1, 1, 2, 2), 0.9, np.float32)
    one = make_task(Engine(constant_model(tmp_path / "a.onnx", m, {"kind": "probability"}, labels=("crack",),
                                          palette=((255, 0, 0),), spec=InputSpec(fixed_size=(2, 2)))))
    assert one.labels == ("background", "crack") and one.palette.tolist() == [[0, 0, 0], [255, 0, 0]]
    two = make_task(Engine(constant_model(tmp_path / "b.onnx", m, {"kind": "probability"}, labels=("sea", "ship"),
                                          spec=InputSpec(fixed_size=(2, 2)))))
    assert two.labels == ("sea", "ship")
    with pytest.raises(ModelError, match="2 classes"):
        make_task(Engine(constant_model(tmp_path / "c.onnx", m, {"kind": "probability"}, labels=("a", "b", "c"),
                                        spec=InputSpec(fixed_size=(2, 2)))))


@pytest.mark.parametrize("kind", ["logits", "probabilities"])
def test_nhwc_gives_the_same_class_map_as_nchw(tmp_path, kind):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (21, 30, 3), dtype=np.uint8)
    nchw = make_task(Engine(rgb_model(tmp_path / "nchw.onnx", "NCHW", {"kind": kind})))
    nhwc = make_task(Engine(rgb_model(tmp_path / "nhwc.onnx", "NHWC", {"kind": kind})))
    a, b = run(nchw, rgb), run(nhwc, rgb)
    assert (a.class_map == b.class_map).all()
    assert (a.class_map == rgb.argmax(2)).all()  # brightest channel, first on ties
    np.testing.assert_array_equal(a.class_area, b.class_area)


def test_probabilities_are_argmaxed_as_given_not_softmaxed_again(tmp_path):
    # the same scores said to be logits or probabilities give the same map, the argmax of the
    # scores themselves upsampled (a softmax applied here would change the upsampled argmax)
    rng = np.random.default_rng(11)
    e = rng.random((3, 6, 8)).astype(np.float32)
    probs = e / e.sum(0, keepdims=True)
    spec = InputSpec(fixed_size=(6, 8))
    as_logits = make_task(Engine(constant_model(tmp_path / "l.onnx", probs[None], {"kind": "logits"},
                                                labels=("a", "b", "c"), spec=spec)))
    as_probs = make_task(Engine(constant_model(tmp_path / "p.onnx", probs[None], {"kind": "probabilities"},
                                               labels=("a", "b", "c"), spec=spec)))
    frame = np.zeros((18, 24, 3), np.uint8)
    a, b = run(as_logits, frame), run(as_probs, frame)
    assert (a.class_map == b.class_map).all()
    up = np.stack([cv2.resize(probs[k], (24, 18), interpolation=cv2.INTER_LINEAR) for k in range(3)])
    assert (b.class_map == up.argmax(0)).all()
    soft = np.exp(probs) / np.exp(probs).sum(0)  # what a second softmax would have argmaxed
    up_soft = np.stack([cv2.resize(soft[k].astype(np.float32), (24, 18), interpolation=cv2.INTER_LINEAR) for k in range(3)])
    assert (up_soft.argmax(0) != b.class_map).any()


def test_nhwc_class_map_and_integer_ids(tmp_path):
    ids = np.array([[0, 1, 2], [2, 1, 0]], np.float32)
    path = constant_model(tmp_path / "ids.onnx", ids[None, :, :, None], {"kind": "class_map", "layout": "NHWC"},
                          labels=("a", "b", "c"), spec=InputSpec(fixed_size=(2, 3)))
    task = make_task(Engine(path))
    res = run(task, np.zeros((4, 6, 3), np.uint8))
    assert res.class_map.tolist() == np.repeat(np.repeat(ids, 2, 0), 2, 1).astype(int).tolist()
    np.testing.assert_allclose(res.class_area, [1 / 3, 1 / 3, 1 / 3])


def test_letterboxed_segmenter_maps_back_to_the_frame(tmp_path):
    # a 32 x 32 letterboxed input: a 16 x 32 frame sits in rows 8..24; the model says
    # foreground on the left half of every row (the padding rows hold 1 too)
    m = np.zeros((1, 1, 32, 32), np.float32)
    m[..., :16] = 0.9
    m[:, :, :8, :] = 1.0
    path = constant_model(tmp_path / "lb.onnx", m, {"kind": "probability"},
                          spec=InputSpec(fixed_size=(32, 32), letterbox=True))
    res = run(make_task(Engine(path)), np.zeros((16, 32, 3), np.uint8))
    assert res.class_map.shape == (16, 32)
    assert (res.class_map[:, :16] == 1).all() and (res.class_map[:, 16:] == 0).all()


def test_card_checks_name_the_key():
    from loupe.inference.card import check_segmentation_output

    with pytest.raises(CardError, match="kind must be one of"):
        check_segmentation_output({"kind": "softmax"})
    with pytest.raises(CardError, match="layout must be one of"):
        check_segmentation_output({"layout": "HWC"})
    with pytest.raises(CardError, match="threshold"):
        check_segmentation_output({"kind": "probability", "threshold": 1.5})
    check_segmentation_output({"kind": "probability", "threshold": 0.3, "layout": "NHWC"})


def test_analyze_writes_area_of_the_foreground(tmp_path):
    p = probability_map()
    path = constant_model(tmp_path / "text.onnx", p[None, None], {"kind": "probability"},
                          labels=("text line",), spec=InputSpec(fixed_size=(16, 24)))
    img = tmp_path / "page.png"
    cv2.imwrite(str(img), np.full((16, 24, 3), 200, np.uint8))
    out = tmp_path / "rows.jsonl"
    assert main(["analyze", str(img), "--model", str(path), "--out", str(out), "--quiet"]) == 0
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["area_text_line"] == pytest.approx((p > 0.5).mean(), abs=1e-6)
    assert row["area_background"] == pytest.approx(1 - (p > 0.5).mean(), abs=1e-6)


def test_logits_models_are_unchanged(argmax_model):
    """The default kind still reads a 3-channel output as logits (SegmentationTask directly)."""
    task = SegmentationTask(Engine(argmax_model))
    assert (task.kind, task.layout, task.threshold) == ("logits", "NCHW", 0.5)


@pytest.mark.parametrize(("shape", "layout"), [((1, 16, 24), "NCHW"), ((1, 16, 24, 1), "NHWC"), ((1, 16, 24), "NHWC")])
def test_probability_map_shapes(tmp_path, shape, layout):
    p = probability_map()
    path = constant_model(tmp_path / "m.onnx", p.reshape(shape), {"kind": "probability", "layout": layout},
                          spec=InputSpec(fixed_size=(16, 24)))
    res = run(make_task(Engine(path)), np.zeros((16, 24, 3), np.uint8))
    assert res.class_map.tolist() == (p > 0.5).astype(np.uint8).tolist()


def test_one_channel_probabilities_kind_is_refused_with_the_right_kind_named(tmp_path):
    path = constant_model(tmp_path / "m.onnx", np.full((1, 1, 4, 4), 0.7), {"kind": "probabilities"},
                          spec=InputSpec(fixed_size=(4, 4)), labels=("a", "b"))
    with pytest.raises(ModelError, match='one channel.*kind "probability"'):
        run(make_task(Engine(path)), np.zeros((4, 4, 3), np.uint8))


def test_binary_models_are_flagged_for_the_panel(tmp_path, argmax_model):
    m = np.full((1, 1, 2, 2), 0.9, np.float32)
    spec = InputSpec(fixed_size=(2, 2))
    assert make_task(Engine(constant_model(tmp_path / "p.onnx", m, {"kind": "probability"}, spec=spec))).binary
    assert make_task(Engine(constant_model(tmp_path / "l.onnx", m, {"kind": "logits"}, spec=spec))).binary
    assert not make_task(Engine(argmax_model)).binary
