"""``loupe analyze`` on detection models: ``count`` and ``count_<label>`` in CSV, ``detections``
(boxes in source-frame pixels) in JSONL, for each output format on a landscape and a portrait
image, and the thresholds from the command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from loupe.cli import main
from tests.detection_models import (
    FORMATS,
    OVERLAP,
    end2end_output,
    expected_on_frame,
    make_constant_model,
    yolov8_output,
)

COUNT_COLUMNS = ["count", "count_person", "count_traffic_light", "count_dog"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A folder with a 640 x 360 and a 300 x 500 image (names sort landscape first)."""
    d = tmp_path_factory.mktemp("frames")
    cv2.imwrite(str(d / "a_landscape.png"), np.full((360, 640, 3), 80, np.uint8))
    cv2.imwrite(str(d / "b_portrait.png"), np.full((500, 300, 3), 160, np.uint8))
    return d


def analyze(tmp_path, model: Path, images: Path, ext: str, *extra: str):
    out = tmp_path / f"rows{ext}"
    assert main(["analyze", str(images), "--model", str(model), "--out", str(out), "--quiet", *extra]) == 0
    if ext == ".csv":
        with open(out, newline="") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("fmt", ["yolov8", "yolov5", "end2end", "detr", "rtdetr_one_output", "boxes_scores_labels_count"])
def test_csv_counts_and_jsonl_boxes_in_frame_pixels(tmp_path, images, fmt):
    outs, output = FORMATS[fmt]
    model = make_constant_model(tmp_path / f"{fmt}.onnx", outs, output)
    rows = analyze(tmp_path, model, images, ".csv")
    assert [Path(r["input"]).name for r in rows] == ["a_landscape.png", "b_portrait.png"]
    assert list(rows[0])[-len(COUNT_COLUMNS):] == COUNT_COLUMNS and "detections" not in rows[0]
    for r in rows:
        assert r["task"] == "detection"
        assert [int(r[c]) for c in COUNT_COLUMNS] == [3, 1, 1, 1]
    rows = analyze(tmp_path, model, images, ".jsonl")
    for r, frame_hw in zip(rows, [(360, 640), (500, 300)]):
        want = expected_on_frame(frame_hw)
        dets = r["detections"]
        assert r["count"] == len(dets) == len(want)
        assert [d["class"] for d in dets] == [c for _b, c, _s in want]
        assert [d["label"] for d in dets] == [["person", "traffic light", "dog"][c] for _b, c, _s in want]
        for d, (box, _c, s) in zip(dets, want):
            assert d["box"] == pytest.approx([round(v, 2) for v in box], abs=0.011)
            assert d["score"] == pytest.approx(s, abs=1e-4)


def test_landscape_rows_hold_the_hand_worked_boxes(tmp_path, images):
    model = make_constant_model(tmp_path / "v8.onnx", {"output0": yolov8_output()}, {"format": "yolov8"})
    rows = analyze(tmp_path, model, images, ".jsonl")
    assert rows[0]["detections"] == [
        {"box": [280.0, 160.0, 360.0, 200.0], "score": 0.9, "class": 1, "label": "traffic light"},
        {"box": [300.0, 180.0, 460.0, 260.0], "score": 0.8, "class": 0, "label": "person"},
        {"box": [200.0, 0.0, 280.0, 60.0], "score": 0.6, "class": 2, "label": "dog"},
    ]
    assert rows[1]["detections"][0]["box"] == [118.75, 234.38, 181.25, 265.62]  # 234.375, 265.625 rounded


def test_threshold_options_reach_the_task(tmp_path, images):
    model = make_constant_model(tmp_path / "nms.onnx", {"output0": yolov8_output(OVERLAP)}, {"format": "yolov8"})
    base = analyze(tmp_path, model, images, ".jsonl")
    assert [r["count"] for r in base] == [2, 2]  # BOX_B suppressed by BOX_A at IoU 0.8 > 0.7
    loose = analyze(tmp_path, model, images, ".jsonl", "--iou-threshold", "0.85")
    assert [r["count"] for r in loose] == [3, 3]
    high = analyze(tmp_path, model, images, ".jsonl", "--score-threshold", "0.75")
    assert [[d["score"] for d in r["detections"]] for r in high] == [[0.9], [0.9]]


def test_no_detection_is_a_zero_count(tmp_path, images):
    model = make_constant_model(tmp_path / "none.onnx", {"output0": end2end_output(())}, {"format": "end2end"})
    rows = analyze(tmp_path, model, images, ".csv")
    assert [[int(r[c]) for c in COUNT_COLUMNS] for r in rows] == [[0, 0, 0, 0]] * 2



def test_summary_without_out_gives_the_mean_counts(tmp_path, images, capsys):
    """Without --out the summary table says what a detector found (it said nothing before)."""
    outs, output = FORMATS["yolov8"]
    model = make_constant_model(tmp_path / "summary.onnx", outs, output)
    assert main(["analyze", str(images), "--model", str(model), "--quiet"]) == 0
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if "a_landscape.png" in x)
    assert line.endswith("count 3, count_person 1, count_traffic_light 1, count_dog 1 (mean)")
