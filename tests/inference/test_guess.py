"""Cards for models without one: exporter metadata and the shape decision table (loupe.inference.guess)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from loupe.inference.card import ModelCard
from loupe.inference.engine import Engine, ModelError, TensorInfo
from loupe.inference.formats import anchor_counts, detection_formats_for
from loupe.inference.guess import (
    GuessError,
    character_labels,
    guess_card,
    labels_from,
    parse_literal,
)

ROOT = Path(__file__).resolve().parents[2]
F = "tensor(float)"


def ins(*shape, name="images"):
    return [TensorInfo(name, tuple(shape), F)]


def outs(*shapes, dtypes=None, names=None):
    dtypes = dtypes or [F] * len(shapes)
    names = names or [f"output{i}" for i in range(len(shapes))]
    return [TensorInfo(n, tuple(s), d) for n, s, d in zip(names, shapes, dtypes)]


def ultralytics_md(task="detect", names="{0: 'person', 1: 'bicycle', 2: 'car'}", imgsz="[640, 640]", **extra):
    """Metadata as Ultralytics' exporter writes it: every value str()-ed (Python literals, not JSON)."""
    md = {"description": "Ultralytics YOLO11n model trained on coco.yaml", "author": "Ultralytics",
          "date": "2025-01-01T00:00:00+00:00", "version": "8.3.40", "license": "AGPL-3.0 License",
          "docs": "https://docs.ultralytics.com", "stride": "32", "task": task, "batch": "1",
          "imgsz": imgsz, "names": names, "args": "{'batch': 1, 'half': False, 'dynamic': False, 'nms': False}",
          "channels": "3", "end2end": "False"}
    md.update(extra)
    return md


# ----------------------------------------------------------------------------- Ultralytics
def test_ultralytics_detect_reads_as_a_yolov8_card_with_its_defaults():
    g = guess_card(ins(1, 3, 640, 640), outs((1, 7, 8400)), ultralytics_md(), "yolo11n", filename="yolo11n.onnx")
    assert not g.ambiguous and g.source == "ultralytics"
    card = g.card
    assert card.task == "detection" and card.origin == "ultralytics"
    assert card.labels == ("person", "bicycle", "car")
    assert card.output["format"] == "yolov8" and card.output["outputs"] == {"predictions": "output0"}
    assert (card.output["score_threshold"], card.output["iou_threshold"], card.output["max_detections"]) == (0.25, 0.7, 300)
    spec = card.input
    assert (spec.color, spec.fixed_size, spec.letterbox, spec.pad_value) == ("RGB", (640, 640), True, 114.0)
    assert spec.scale == pytest.approx(1 / 255) and spec.mean == (0, 0, 0) and spec.std == (1, 1, 1)
    assert "Ultralytics metadata" in g.note and "\n" not in g.note


def test_ultralytics_imgsz_is_height_then_width_and_dynamic_exports_use_it():
    # a dynamic export: the input says nothing, imgsz [384, 640] (h, w) gives the letterbox size
    g = guess_card(ins("batch", 3, "height", "width"), outs(("batch", 7, "anchors")),
                   ultralytics_md(imgsz="[384, 640]"), "m")
    assert g.card.input.fixed_size == (384, 640) and g.card.output["format"] == "yolov8"


@pytest.mark.parametrize("flag", ["end2end", "nms"])
def test_ultralytics_end2end_and_nms_exports_are_end2end(flag):
    md = ultralytics_md(end2end="True") if flag == "end2end" else ultralytics_md(
        args="{'batch': 1, 'nms': True, 'max_det': 100}")
    g = guess_card(ins(1, 3, 640, 640), outs((1, 300 if flag == "end2end" else 100, 6)), md, "m")
    assert g.card.output["format"] == "end2end" and g.card.input.letterbox
    if flag == "nms":
        assert g.card.output["max_detections"] == 100


def test_ultralytics_unreadable_args_are_ignored_but_unreadable_imgsz_refused():
    md = ultralytics_md(args="{'project': <object at 0x7f>}")
    assert guess_card(ins(1, 3, 640, 640), outs((1, 7, 8400)), md, "m").card.output["format"] == "yolov8"
    with pytest.raises(GuessError, match="imgsz"):
        guess_card(ins(1, 3, 640, 640), outs((1, 7, 8400)), ultralytics_md(imgsz="big"), "m")


def test_ultralytics_k_by_6_without_an_end2end_flag_is_end2end():
    # an export that writes no end2end entry (an older or forked exporter) but outputs 1 x 300 x 6
    md = ultralytics_md()
    del md["end2end"]
    assert guess_card(ins(1, 3, 640, 640), outs((1, 300, 6)), md, "v10").card.output["format"] == "end2end"


def test_ultralytics_rtdetr_is_stretched_not_letterboxed():
    # RT-DETR exports: task detect, one 1 x 300 x (4 + C) output; Ultralytics' RT-DETR predictor
    # resizes the image to imgsz without keeping its aspect (LetterBox(scale_fill=True))
    g = guess_card(ins(1, 3, 640, 640), outs((1, 300, 7)), ultralytics_md(), "rtdetr-l")
    assert g.card.output["format"] == "rtdetr"
    assert g.card.input.fixed_size == (640, 640) and not g.card.input.letterbox


def test_ultralytics_8_4_rtdetr_is_end2end_of_normalised_centre_boxes():
    # 8.4 exports RT-DETR's decoder with its top-k: one 1 x 300 x 6 output (cx, cy, w, h in 0..1,
    # score, class), head RTDETRDecoder, end2end False (tests/data/ultralytics/rtdetr_t_320.onnx)
    md = ultralytics_md(head="RTDETRDecoder", version="8.4.190", imgsz="[320, 320]")
    card = guess_card(ins(1, 3, 320, 320), outs((1, 300, 6)), md, "rtdetr").card
    assert card.output["format"] == "end2end" and card.output["box_format"] == "cxcywh" and card.output["normalized"]
    assert card.input.fixed_size == (320, 320) and not card.input.letterbox
    # with 2 classes, an older exporter's 1 x 300 x (4 + 2) reads as rtdetr
    md2 = ultralytics_md(head="RTDETRDecoder", version="8.3.40", names="{0: 'a', 1: 'b'}", imgsz="[320, 320]")
    assert guess_card(ins(1, 3, 320, 320), outs((1, 300, 6)), md2, "r").card.output["format"] == "rtdetr"


def test_ultralytics_classify_is_probabilities_with_a_centre_crop():
    g = guess_card(ins(1, 3, 224, 224), outs((1, 3)), ultralytics_md("classify", imgsz="[224, 224]"), "cls")
    card = g.card
    assert card.task == "classification" and card.origin == "ultralytics"
    assert card.output["kind"] == "probabilities"
    assert card.input.center_crop and card.input.fixed_size == (224, 224) and not card.input.letterbox


@pytest.mark.parametrize("task", ["obb"])
def test_ultralytics_obb_is_refused_in_one_line(task):
    with pytest.raises(GuessError) as info:
        guess_card(ins(1, 3, 640, 640), outs((1, 56, 8400)), ultralytics_md(task), "m", filename="m.onnx")
    msg = str(info.value)
    assert "\n" not in msg and f"Ultralytics {task}" in msg and "not supported yet" in msg


def test_ultralytics_segment_reads_as_an_instances_card():
    # YOLO11n-seg: 1 x (4 + 3 + 32) x 8400 predictions and 1 x 32 x 160 x 160 prototypes
    g = guess_card(ins(1, 3, 640, 640), outs((1, 39, 8400), (1, 32, 160, 160)), ultralytics_md("segment"), "m",
                   filename="m.onnx")
    card = g.card
    assert card.task == "instances" and card.origin == "ultralytics" and card.labels == ("person", "bicycle", "car")
    assert card.output["format"] == "yolov8-seg" and card.output["outputs"] == {"predictions": "output0",
                                                                                "protos": "output1"}
    assert card.input.letterbox and card.input.fixed_size == (640, 640)
    assert (card.output["score_threshold"], card.output["iou_threshold"], card.output["max_detections"]) == (0.25, 0.7, 300)
    # prototypes first: the roles follow the shapes, not the order
    g = guess_card(ins(1, 3, 640, 640), outs((1, 32, 160, 160), (1, 39, 8400)), ultralytics_md("segment"), "m")
    assert g.card.output["outputs"] == {"predictions": "output1", "protos": "output0"}


@pytest.mark.parametrize("shapes", [[(1, 56, 8400)], [(1, 40, 8400), (1, 32, 160, 160)], [(1, 39, 8400), (1, 39, 8400)]],
                         ids=["one output", "class count disagrees", "no prototypes"])
def test_ultralytics_segment_that_does_not_fit_is_refused_in_one_line(shapes):
    with pytest.raises(GuessError) as info:
        guess_card(ins(1, 3, 640, 640), outs(*shapes), ultralytics_md("segment"), "m", filename="m.onnx")
    msg = str(info.value)
    assert "\n" not in msg and "Ultralytics segment" in msg and "mask prototypes" in msg


def test_ultralytics_pose_reads_as_a_keypoints_card():
    md = ultralytics_md("pose", names="{0: 'person'}", kpt_shape="[17, 3]")
    g = guess_card(ins(1, 3, 640, 640), outs((1, 56, 8400)), md, "m", filename="m.onnx")
    card = g.card
    assert [c.key for c in g.candidates] == ["keypoints"] and g.source == "ultralytics"
    assert card.task == "keypoints" and card.labels == ("person",) and card.origin == "ultralytics"
    assert card.input.letterbox and card.input.pad_value == 114 and card.input.fixed_size == (640, 640)
    assert card.output["format"] == "yolov8-pose" and card.output["kpt_shape"] == [17, 3]
    assert card.output["outputs"] == {"predictions": "output0"}
    # kpt_shape [5, 2] (no visibility): 4 + 1 + 10 values
    g = guess_card(ins(1, 3, 640, 640), outs((1, 15, 8400)), ultralytics_md("pose", names="{0: 'hand'}", kpt_shape="[5, 2]"), "m")
    assert g.card.output["kpt_shape"] == [5, 2]


def test_ultralytics_pose_whose_outputs_disagree_with_kpt_shape_is_refused():
    md = ultralytics_md("pose", names="{0: 'person'}", kpt_shape="[21, 3]")
    with pytest.raises(GuessError, match=r"1x56x8400.*kpt_shape \[21, 3\]") as info:
        guess_card(ins(1, 3, 640, 640), outs((1, 56, 8400)), md, "m", filename="m.onnx")
    assert "\n" not in str(info.value)


def test_ultralytics_outputs_that_disagree_with_names_are_refused():
    # 80 classes in the output, 3 names: no format fits both
    with pytest.raises(GuessError, match=r"3 names.*1x84x8400"):
        guess_card(ins(1, 3, 640, 640), outs((1, 84, 8400)), ultralytics_md(), "m")


def test_names_are_parsed_as_literals_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = f"__import__('os').system('touch {marker}')"
    with pytest.raises(GuessError, match="names"):
        guess_card(ins(1, 3, 640, 640), outs((1, 7, 8400)), ultralytics_md(names=evil), "m")
    assert not marker.exists()
    with pytest.raises(ValueError):
        parse_literal(evil, "names")
    with pytest.raises(ValueError):
        parse_literal("[x for x in ().__class__.__base__.__subclasses__()]", "names")
    assert parse_literal("{0: 'a', 1: 'b'}", "names") == {0: "a", 1: "b"}
    assert labels_from({0: "a", 2: "c"}, "names") == ("a", "class 1", "c")  # a gap gets a name
    assert labels_from(["x", "y"], "labels") == ("x", "y")


# ----------------------------------------------------------------------------- other exporters
def test_paddle_character_is_one_label_per_line():
    assert character_labels("a\nb\n \nc\n") == ("a", "b", " ", "c")  # a space is a character
    assert character_labels("x\r\ny") == ("x", "y")
    g = guess_card(ins(1, 3, 48, 192), outs((1, 3)), {"character": "0\n90\n180\n"}, "cls")
    assert g.card.task == "classification" and g.card.labels == ("0", "90", "180")
    assert "character" in g.note


def test_paddle_text_recogniser_is_refused_not_taken_for_a_detector():
    # a CTC recogniser: T x (characters + blank + space); its shapes would fit a dynamic yolov5
    # head, but not with the 6623 characters its metadata lists
    chars = "\n".join(chr(0x4E00 + i) for i in range(6623))
    with pytest.raises(GuessError) as info:
        guess_card(ins("x", 3, 48, "w"), outs(("x", "t", 6625)), {"character": chars}, "rec", filename="rec.onnx")
    assert "6623 labels" in str(info.value) and "'character'" in str(info.value)


@pytest.mark.parametrize("value", ['["road", "car"]', "['road', 'car']", '{"0": "road", "1": "car"}', "{0: 'road', 1: 'car'}"])
def test_other_exporters_label_keys_in_json_or_literal_form(value):
    for key in ("names", "labels", "classes", "class_names"):
        g = guess_card(ins(1, 3, 64, 64), outs((1, 2, 64, 64)), {key: value}, "seg")
        assert g.card.task == "segmentation" and g.card.labels == ("road", "car")


def test_unreadable_label_entry_is_ignored_with_a_note():
    g = guess_card(ins(1, 3, 8, 8), outs((1, 4)), {"classes": "__import__('os')"}, "c")
    assert g.card.labels == ("class 0", "class 1", "class 2", "class 3") and "ignored" in g.note


# ----------------------------------------------------------------------------- shape table
@pytest.mark.parametrize("shapes,want", [
    ([(1, 19, 64, 128)], ["segmentation"]),
    ([(1, 1, 64, 64)], ["density", "segmentation", "depth"]),  # ambiguous: asked
    ([(1, 64, 64)], ["density", "depth"]),  # a channel-less float map at the input's scale: asked
    ([(1, 4)], ["classification"]),
    ([(4,)], ["classification"]),
    ([(1, 1000, 1, 1)], ["classification"]),
    ([(1, 1, 1, 1000)], ["classification"]),
    ([(1, 84, 8400)], ["detection"]),
    ([(1, 25200, 85)], ["detection"]),
    ([(1, 300, 6)], ["detection:end2end", "detection:rtdetr"]),
    ([(1, 100, 4), (1, 100, 92)], ["detection:detr", "detection:rtdetr"]),
])
def test_shape_table_rows(shapes, want):
    g = guess_card(ins(1, 3, 640, 640), outs(*shapes), {}, "m")
    assert list(g.keys) == want
    assert all(c.card.origin == "inferred" for c in g.candidates)
    assert g.ambiguous == (len(want) > 1)


def test_channels_last_maps_are_read_as_nhwc():
    # fixed input: only h x w in the middle scale to the input (stride 4)
    g = guess_card(ins(1, 3, 512, 256), outs((1, 128, 64, 2)), {}, "m")
    assert g.keys == ("segmentation",) and g.card.output == {"kind": "logits", "layout": "NHWC"}
    assert g.card.labels == ("class 0", "class 1")
    # dynamic input: the dynamic axes are h and w
    g = guess_card(ins(1, 3, "h", "w"), outs((1, "h", "w", 5)), {}, "m")
    assert g.card.output["layout"] == "NHWC" and len(g.card.labels) == 5
    g = guess_card(ins(1, 3, "h", "w"), outs((1, 5, "h", "w")), {}, "m")
    assert "layout" not in g.card.output and len(g.card.labels) == 5
    assert g.card.input.fixed_size is None and g.card.input.size_multiple == 32  # dynamic: padded
    assert "padded to a multiple of 32" in g.note
    # a square map whose every axis would fit stays N x C x h x w
    assert "layout" not in guess_card(ins(1, 3, 512, 512), outs((1, 64, 64, 64)), {}, "m").card.output
    # one channel last: a sigmoid map is a probability map or a depth map (density reads N x 1 x h x w
    # only); without the sigmoid, depth (the window still asks before using a guessed card)
    g = guess_card(ins(1, 3, "h", "w"), outs((1, "h", "w", 1)), {}, "m", final_ops={"output0": "Sigmoid"})
    assert g.keys == ("segmentation", "depth") and g.card.output["layout"] == "NHWC"
    assert g.candidates[1].card.output == {"kind": "relative", "layout": "NHWC"}
    g = guess_card(ins(1, 3, "h", "w"), outs((1, "h", "w", 1)), {}, "m")
    assert g.keys == ("depth",) and g.card.output == {"kind": "relative", "layout": "NHWC"}


def test_segmentation_probabilities_when_the_graph_ends_in_softmax():
    g = guess_card(ins(1, 3, 32, 32), outs((1, 3, 32, 32)), {}, "m", final_ops={"output0": "Softmax"})
    assert g.card.output["kind"] == "probabilities"
    g = guess_card(ins(1, 3, 32, 32), outs((1, 3)), {}, "m", final_ops={"output0": "Softmax"})
    assert g.card.output["kind"] == "probabilities"
    assert guess_card(ins(1, 3, 32, 32), outs((1, 3)), {}, "m").card.output["kind"] == "logits"


def test_one_channel_sigmoid_map_is_never_silently_density():
    # a text detector (DBNet-like): one sigmoid map. Both readings are offered, segmentation first
    g = guess_card(ins(1, 3, 736, 736), outs((1, 1, 736, 736)), {}, "det", final_ops={"output0": "Sigmoid"})
    assert g.ambiguous and g.keys == ("segmentation", "density", "depth")
    seg = g.candidates[0].card
    assert seg.output == {"kind": "probability", "threshold": 0.5} and seg.labels == ("background", "foreground")
    assert "density" in g.note and "segmentation" in g.note and "--task" in g.note


def test_detection_candidates_carry_their_format_and_roles():
    g = guess_card(ins(1, 3, 640, 640), outs((1, 84, 8400)), {}, "m")
    out = g.card.output
    assert out == {"format": "yolov8", "outputs": {"predictions": "output0"}}
    assert g.card.labels == tuple(f"class {i}" for i in range(80)) and g.card.input.letterbox
    # TensorRT EfficientNMS: a count, boxes, scores and classes
    o = outs((1, 1), (1, 100, 4), (1, 100), (1, 100), dtypes=["tensor(int32)", F, F, "tensor(int32)"],
             names=["num_dets", "det_boxes", "det_scores", "det_classes"])
    g = guess_card(ins(1, 3, 640, 640), o, {}, "trt")
    assert g.card.output["format"] == "boxes_scores_labels"
    assert g.card.output["outputs"] == {"boxes": "det_boxes", "scores": "det_scores", "labels": "det_classes",
                                        "count": "num_dets"}
    # torchvision: boxes, labels (int64), scores, no batch axis
    o = outs(("n", 4), ("n",), ("n",), dtypes=[F, "tensor(int64)", F], names=["boxes", "labels", "scores"])
    assert guess_card(ins(1, 3, 480, 640), o, {}, "tv").card.output["outputs"] == {
        "boxes": "boxes", "scores": "scores", "labels": "labels"}


def test_anchor_counts_check_the_fixed_input():
    assert 8400 in anchor_counts((640, 640)) and 25200 in anchor_counts((640, 640), 3)
    assert 8400 not in anchor_counts((320, 320))
    # the same output shape on a 320 x 320 input is no YOLO head
    assert [m.format for m in detection_formats_for(outs((1, 84, 8400)), None, (640, 640))] == ["yolov8"]
    assert detection_formats_for(outs((1, 84, 8400)), None, (320, 320)) == []


def test_a_map_without_a_channel_axis_is_not_taken_for_boxes():
    # 1 x 256 x 256 on a 256 x 256 input would fit "256 queries x (4 + 252 classes)": it is a map,
    # a density or a depth map (asked); class ids (integers) fit no task
    assert guess_card(ins(1, 3, 256, 256), outs((1, 256, 256)), {}, "m").keys == ("density", "depth")
    g = guess_card(ins(1, 3, 512, 512), outs((1, 64, 64)), {}, "m")
    assert g.ambiguous and g.keys == ("density", "depth") and "--task" in g.note
    assert guess_card(ins(1, 3, "h", "w"), outs((1, "h", "w")), {}, "m").keys == ("density", "depth")
    with pytest.raises(GuessError, match="fit no task"):
        guess_card(ins(1, 3, 256, 256), outs((1, 256, 256), dtypes=["tensor(int64)"]), {}, "m")
    # 300 x 84 does not scale to a 640 x 640 input both ways: a query head (RT-DETR, 80 classes)
    g = guess_card(ins(1, 3, 640, 640), outs((1, 300, 84)), {}, "m")
    assert g.keys == ("detection",) and g.card.output["format"] == "rtdetr"


def test_outputs_that_fit_nothing_are_refused_in_one_line():
    # a raw detection head: eight per-level outputs
    shapes = [(1, 64, 80, 80), (1, 80, 80, 80), (1, 64, 40, 40), (1, 80, 40, 40),
              (1, 64, 20, 20), (1, 80, 20, 20), (1, 64, 10, 10), (1, 80, 10, 10)]
    with pytest.raises(GuessError) as info:
        guess_card(ins(1, 3, 640, 640), outs(*shapes), {}, "head", filename="head.onnx")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("head.onnx")
    assert "8 outputs: 1x64x80x80" in msg and "(4 more)" in msg
    assert "head.onnx.loupe.json" in msg and "docs/MODEL_CARD.md" in msg and "plug-in" in msg


def test_inputs_loupe_cannot_feed_are_refused():
    with pytest.raises(GuessError, match="2 inputs"):
        guess_card(ins(1, 3, 8, 8) + ins(1, 3, 8, 8, name="b"), outs((1, 4)), {}, "m")
    with pytest.raises(GuessError, match="batch of 4"):
        guess_card(ins(4, 3, 8, 8), outs((4, 4)), {}, "m")
    with pytest.raises(GuessError, match="224 channels, not an image's 1 or 3"):
        guess_card(ins(1, 224, 224, 3), outs((1, 4)), {}, "m")
    with pytest.raises(GuessError, match=r"rank 2 \(nx3\); Loupe feeds images as N x C x H x W"):
        guess_card(ins("n", 3), outs((1, 4)), {}, "m")


def test_anomaly_codebook_compression_are_never_guessed():
    # a next-frame predictor (4 past RGB frames in, a frame out) is refused: it needs its card
    with pytest.raises(GuessError, match="12 channels"):
        guess_card(ins(1, 12, 64, 64), outs((1, 3, 64, 64)), {}, "m")
    # a frame-shaped output of a one-image model is only ever a segmentation candidate
    g = guess_card(ins(1, 3, 64, 64), outs((1, 3, 64, 64)), {}, "m")
    assert g.keys == ("segmentation",)


def test_pick_chooses_a_candidate_or_names_them():
    g = guess_card(ins(1, 3, 64, 64), outs((1, 1, 64, 64)), {}, "m")
    assert g.pick("segmentation").card.output["kind"] == "probability"
    assert g.pick("density").keys == ("density",)
    with pytest.raises(GuessError, match=r"--task classification does not fit.*density.*segmentation"):
        g.pick("classification", "m.onnx")
    g = guess_card(ins(1, 3, 640, 640), outs((1, 300, 6)), {}, "m")
    with pytest.raises(GuessError, match=r"several ways; name one: detection:end2end \(.*\), detection:rtdetr"):
        g.pick("detection")
    assert g.pick("detection:rtdetr").card.output["format"] == "rtdetr"


# ----------------------------------------------------------------------------- real models
def _save(graph, path: Path, metadata: dict[str, str] | None = None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def sigmoid_map_model(path: Path) -> Path:
    """A text-detector-like model: one 1 x 1 x h x w sigmoid map (Conv 1x1 then Sigmoid)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("maps", TensorProto.FLOAT, [1, 1, 32, 32])
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [4.0, 0.0, 0.0])
    b = helper.make_tensor("b", TensorProto.FLOAT, [1], [-2.0])
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["z"]), helper.make_node("Sigmoid", ["z"], ["maps"])]
    return _save(helper.make_graph(nodes, "db", [x], [y], [w, b]), path)


def classifier_model(path: Path, n: int = 3, softmax: bool = True, metadata=None, hw=(16, 16)) -> Path:
    """Mean of each channel -> n scores (channel i for class i, the rest 0), softmax optional."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *hw])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, n])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, n], np.eye(3, n, dtype=np.float32).ravel().tolist())
    nodes = [helper.make_node("GlobalAveragePool", ["images"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["s" if softmax else "output0"])]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["s"], ["output0"], axis=1))
    return _save(helper.make_graph(nodes, "cls", [x], [y], [w]), path, metadata)


def test_engine_reads_ultralytics_classify_metadata_and_asks_nothing(tmp_path):
    md = ultralytics_md("classify", names="{0: 'red', 1: 'green', 2: 'blue'}", imgsz="[16, 16]")
    eng = Engine(classifier_model(tmp_path / "cls.onnx", metadata=md), providers="cpu")
    assert not eng.needs_task and eng.card.origin == "ultralytics"
    assert eng.card.labels == ("red", "green", "blue") and eng.card.output["kind"] == "probabilities"
    assert eng.guess is not None and "Ultralytics" in eng.guess.note
    assert "fixed size (16, 16), centre crop" in eng.describe()


def test_engine_refuses_malicious_ultralytics_names(tmp_path):
    marker = tmp_path / "pwned"
    md = ultralytics_md("classify", names=f"__import__('os').system('touch {marker}')", imgsz="[16, 16]")
    with pytest.raises(ModelError, match="names"):
        Engine(classifier_model(tmp_path / "cls.onnx", metadata=md), providers="cpu")
    assert not marker.exists()


def test_engine_sees_the_final_sigmoid_and_softmax(tmp_path):
    eng = Engine(sigmoid_map_model(tmp_path / "db.onnx"), providers="cpu")
    assert eng.needs_task and eng.guess.ambiguous and eng.guess.keys == ("segmentation", "density", "depth")
    assert f"guess: {eng.guess.note}" in eng.describe()  # `loupe info` says what was guessed
    eng = Engine(classifier_model(tmp_path / "c.onnx"), providers="cpu")
    assert eng.card.output["kind"] == "probabilities"
    eng = Engine(classifier_model(tmp_path / "l.onnx", softmax=False), providers="cpu")
    assert eng.card.output["kind"] == "logits" and not eng.guess.ambiguous


def test_engine_task_picks_among_candidates(tmp_path):
    path = sigmoid_map_model(tmp_path / "db.onnx")
    assert Engine(path, providers="cpu", task="density").card.task == "density"
    with pytest.raises(ModelError, match="--task classification does not fit"):
        Engine(path, providers="cpu", task="classification")


def test_engine_task_depth_reads_a_card_less_map(tmp_path):
    """A card-less one-channel map is asked (density, segmentation or depth); --task depth runs it."""
    from loupe.sources.base import Frame
    from loupe.tasks import make_task
    from tests.depth_models import make_ramp_depth_model

    path = make_ramp_depth_model(tmp_path / "ramp.onnx", card=False)
    assert Engine(path, providers="cpu").guess.keys == ("density", "segmentation", "depth")
    eng = Engine(path, providers="cpu", task="depth")
    assert eng.card.task == "depth" and eng.card.output == {"kind": "relative"}
    task = make_task(eng)
    feeds, geo = task.prepare(Frame(np.zeros((40, 60, 3), np.uint8), 0, 0.0))  # padded to 64 x 64
    res = task.postprocess(eng.run(feeds), geo)
    assert res.values.shape == (40, 60) and res.depth_max == pytest.approx(1 + 0.1 * 39 + 0.01 * 59, abs=1e-5)


def test_real_ultralytics_exports_open_without_a_card():
    """Real `yolo export format=onnx` files (helper data in tests/data/ultralytics), when present."""
    folder = ROOT / "tests" / "data" / "ultralytics"
    models = sorted(folder.glob("*.onnx")) if folder.is_dir() else []
    if not models:
        pytest.skip("no real Ultralytics exports in tests/data/ultralytics")
    for path in models:
        eng = Engine(path, providers="cpu")
        assert eng.card.origin == "ultralytics" and not eng.needs_task, path.name
        assert eng.card.task in ("detection", "classification", "keypoints", "instances") and eng.card.labels, path.name


# ----------------------------------------------------------------------------- docs
def test_every_sidecar_example_in_model_card_doc_is_a_card():
    text = (ROOT / "docs" / "MODEL_CARD.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    tasks = set()
    for block in blocks:
        md = json.loads(block)
        card = ModelCard.from_metadata(md, origin="sidecar")
        tasks.add(card.task)
    assert tasks >= {"segmentation", "detection", "classification", "density", "anomaly", "codebook", "compression",
                     "depth"}


def test_readme_decision_table_names_every_row():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Models without a card", 1)[1].split("\n## ", 1)[0]
    for words in ("Ultralytics", "character", "N x 1 x h x w", "--task", "docs/MODEL_CARD.md", "plug-in"):
        assert words in section, words
