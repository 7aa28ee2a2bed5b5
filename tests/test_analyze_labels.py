"""``loupe analyze --labels PATH --summary FILE.json``: score columns in the rows and the pooled
figures, on models whose outputs are known (the brightest-channel segmenter, a constant detector)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from loupe.cli import main
from tests.detection_models import LABELS as DET_LABELS
from tests.detection_models import expected_on_frame, make_constant_model, yolov8_output
from tests.helpers import make_argmax_model, read_csv

SEG_SCORES = ["iou_red", "dice_red", "iou_green", "dice_green", "iou_blue", "dice_blue"]


@pytest.fixture(scope="module")
def seg_images(tmp_path_factory) -> Path:
    """a.png: left half red, right half green (BGR on disk); b.png: all blue (left unlabelled)."""
    d = tmp_path_factory.mktemp("seg_frames")
    a = np.zeros((40, 60, 3), np.uint8)
    a[:, :30, 2] = 255
    a[:, 30:, 1] = 255
    cv2.imwrite(str(d / "a.png"), a)
    b = np.zeros((40, 60, 3), np.uint8)
    b[..., 0] = 255
    cv2.imwrite(str(d / "b.png"), b)
    return d


def run(tmp_path, inputs, models, labels, summary=True, ext=".csv", extra=()):
    out = tmp_path / f"rows{ext}"
    args = ["analyze", *map(str, inputs), "--out", str(out), "--quiet", "--labels", str(labels)]
    for m in models:
        args += ["--model", str(m)]
    if summary:
        args += ["--summary", str(tmp_path / "summary.json")]
    assert main([*args, *extra]) == 0
    rows = read_csv(out) if ext == ".csv" else [json.loads(x) for x in out.read_text().splitlines()]
    return rows, (json.loads((tmp_path / "summary.json").read_text()) if summary else None)


def test_segmentation_scored_against_itself_and_against_all_one_class(tmp_path, seg_images):
    model = make_argmax_model(tmp_path / "seg.onnx")
    truth = np.zeros((40, 60), np.uint8)
    truth[:, 30:] = 1  # what the model gives on a.png
    right = tmp_path / "right"
    right.mkdir()
    cv2.imwrite(str(right / "a.png"), truth)  # matched by the image's stem; b.png has no label
    rows, summary = run(tmp_path, [seg_images], [model], right)
    assert list(rows[0])[-len(SEG_SCORES):] == SEG_SCORES
    a, b = rows
    assert [a[c] for c in SEG_SCORES] == ["1.0", "1.0", "1.0", "1.0", "", ""]  # blue: in neither
    assert all(b[c] == "" for c in SEG_SCORES)  # unlabelled, not empty
    assert summary["frames"] == 1 and summary["miou"] == 1.0
    assert summary["iou_red"] == summary["iou_green"] == 1.0 and summary["iou_blue"] is None

    red = tmp_path / "all_red"
    red.mkdir()
    cv2.imwrite(str(red / "a.png"), np.zeros((40, 60), np.uint8))
    cv2.imwrite(str(red / "b.png"), np.zeros((40, 60), np.uint8))
    rows, summary = run(tmp_path, [seg_images], [model], red)
    a, b = rows
    # against an all-red label, red's IoU is the predicted red area's fraction of the frame
    assert float(a["iou_red"]) == pytest.approx(0.5) and float(a["iou_green"]) == 0.0
    assert float(b["iou_red"]) == 0.0 and float(b["iou_blue"]) == 0.0 and b["iou_green"] == ""
    # pooled: red intersection 1200 of union 4800; not the mean of 0.5 and 0
    assert summary["iou_red"] == pytest.approx(1200 / 4800) and summary["frames"] == 2
    assert summary["miou"] == pytest.approx((0.25 + 0 + 0) / 3)


def coco_for(frame_hw, boxes, names=DET_LABELS, extra_category=None):
    cats = [{"id": 3 * (i + 1), "name": n} for i, n in enumerate(names)]  # ids with gaps
    if extra_category:
        cats.append({"id": 100, "name": extra_category})
    anns = []
    for k, (box, c) in enumerate(boxes):
        x1, y1, x2, y2 = box
        anns.append({"id": k + 1, "image_id": 1, "category_id": 3 * (c + 1) if c >= 0 else 100,
                     "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    h, w = frame_hw
    return {"images": [{"id": 1, "file_name": "imgs/a_landscape.png", "height": h, "width": w}],
            "categories": cats, "annotations": anns}


@pytest.fixture(scope="module")
def det_image(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("det_frames")
    cv2.imwrite(str(d / "a_landscape.png"), np.full((360, 640, 3), 80, np.uint8))
    return d / "a_landscape.png"


def test_detection_scored_from_coco_json(tmp_path, det_image, capfd):
    model = make_constant_model(tmp_path / "det.onnx", {"output0": yolov8_output()}, {"format": "yolov8"})
    found = expected_on_frame((360, 640))  # the model's three boxes on this frame
    # labels: the first two boxes as found, the third shifted right by its width (a miss and a false
    # positive), one more object never found, and a "cat" the model does not know
    boxes = [(b, c) for b, c, _ in found[:2]]
    (x1, y1, x2, y2), c3, _ = found[2]
    boxes.append(((x2, y1, x2 + (x2 - x1), y2), c3))
    boxes.append(((500.0, 300.0, 540.0, 340.0), 0))
    boxes.append(((10.0, 10.0, 50.0, 50.0), -1))
    labels = tmp_path / "coco.json"
    labels.write_text(json.dumps(coco_for((360, 640), boxes, extra_category="cat")))
    rows, summary = run(tmp_path, [det_image], [model], labels)
    assert rows[0]["tp"] == "2" and rows[0]["fp"] == "1" and rows[0]["fn"] == "2"
    err = capfd.readouterr().err
    assert err.count("'cat'") == 1  # reported once
    # AP@.50 per class: each found box is its class's best-scored detection, at precision 1, so AP is
    # the share of COCO's 101 recall points 0, .01, ..., 1 up to its recall (person: 1 of 2 found,
    # recall .5 -> 51/101); the shifted box's class has only a false positive: AP 0
    per_class = {lab: summary[f"ap50_{lab.replace(' ', '_')}"] for lab in DET_LABELS}
    gt_count = {c: sum(1 for _, k in boxes if k == c) for c in range(3)}
    tp_classes = [c for _, c, _ in found[:2]]
    for c, lab in enumerate(DET_LABELS):
        recall = tp_classes.count(c) / gt_count[c] if gt_count[c] else None
        want = None if recall is None else float(np.mean(np.linspace(0, 1, 101) <= recall + 1e-12)) if recall else 0.0
        if want is None:
            assert per_class[lab] is None
        else:
            assert per_class[lab] == pytest.approx(want, abs=1e-6)
    assert summary["map50"] == pytest.approx(np.mean([v for v in per_class.values() if v is not None]), abs=1e-9)
    assert summary["tp"] == 2 and summary["fp"] == 1 and summary["fn"] == 2


def test_two_models_summary_under_models(tmp_path, seg_images):
    m1 = make_argmax_model(tmp_path / "one.onnx")
    m2 = make_argmax_model(tmp_path / "two.onnx")
    lab = tmp_path / "labels"
    lab.mkdir()
    cv2.imwrite(str(lab / "0.png"), np.zeros((40, 60), np.uint8))  # named by frame index
    rows, summary = run(tmp_path, [seg_images / "a.png"], [m1, m2], lab, ext=".jsonl")
    assert set(summary) == {"models"} and set(summary["models"]) == {"one", "two"}
    assert summary["models"]["one"] == summary["models"]["two"]
    assert summary["models"]["one"]["iou_red"] == pytest.approx(0.5)
    assert [r["iou_red"] for r in rows] == [0.5, 0.5]


def test_label_option_errors(tmp_path, seg_images, capfd):
    model = make_argmax_model(tmp_path / "seg.onnx")
    base = ["analyze", str(seg_images), "--model", str(model), "--quiet"]
    assert main([*base, "--summary", str(tmp_path / "s.json")]) == 2
    assert "--labels" in capfd.readouterr().err
    assert main([*base, "--labels", str(tmp_path / "nowhere")]) == 2
    assert "no such label file or folder" in capfd.readouterr().err
    lab = tmp_path / "l"
    lab.mkdir()
    assert main([*base, "--labels", str(lab), "--summary", str(tmp_path / "s.csv")]) == 2
    assert ".json" in capfd.readouterr().err


def test_classification_scored_from_image_categories(tmp_path):
    from tests.tasks.test_classification import mean_colour_classifier

    model = mean_colour_classifier(tmp_path / "cls.onnx", {"kind": "logits"})
    frames = tmp_path / "frames"
    frames.mkdir()
    for name, bgr in (("a_red", (0, 0, 255)), ("b_green", (0, 255, 0)), ("c_blue", (255, 0, 0)), ("d_red", (0, 0, 255))):
        cv2.imwrite(str(frames / f"{name}.png"), np.full((8, 8, 3), bgr, np.uint8))
    cats = [{"id": 7, "name": "Blue"}, {"id": 2, "name": "red"}, {"id": 40, "name": "green"}]  # by name, any case
    truth = {"a_red": 2, "b_green": 7, "c_blue": 7}  # b_green labelled blue: wrong; d_red unlabelled
    coco = {"categories": cats, "annotations": [],
            "images": [{"id": i + 1, "file_name": f"{k}.png", "height": 8, "width": 8, "category_id": c}
                       for i, (k, c) in enumerate(truth.items())]}
    labels = tmp_path / "classes.json"
    labels.write_text(json.dumps(coco))
    rows, summary = run(tmp_path, [frames], [model], labels)
    assert [r["top1"] for r in rows] == ["red", "green", "blue", "red"]
    assert [r["correct"] for r in rows] == ["1", "0", "1", ""]
    assert summary["accuracy"] == pytest.approx(2 / 3) and summary["frames"] == 3
    # rows: the labelled class, columns: the predicted one, in the model's label order
    assert summary["confusion"] == {"labels": ["red", "green", "blue"], "matrix": [[1, 0, 0], [0, 0, 0], [0, 1, 1]]}


def test_a_label_of_another_aspect_fails_its_input_with_the_reason(tmp_path, seg_images, capfd):
    model = make_argmax_model(tmp_path / "seg.onnx")
    lab = tmp_path / "labels"
    lab.mkdir()
    cv2.imwrite(str(lab / "a.png"), np.zeros((40, 40), np.uint8))  # square label, 40 x 60 frame
    out = tmp_path / "rows.csv"
    code = main(["analyze", str(seg_images), "--model", str(model), "--out", str(out), "--quiet", "--labels", str(lab)])
    assert code == 3  # a.png failed, b.png (unlabelled) written
    err = capfd.readouterr().err
    assert "a.png" in err and "LabelError" not in err
    assert [Path(r["input"]).name for r in read_csv(out)] == ["b.png"]


def test_detection_scored_from_a_yolo_folder(tmp_path, det_image):
    """The same model against YOLO .txt labels (class cx cy w h, normalised; names in classes.txt in
    another order than the model's): all three boxes found, one extra object missed."""
    model = make_constant_model(tmp_path / "det.onnx", {"output0": yolov8_output()}, {"format": "yolov8"})
    found = expected_on_frame((360, 640))
    names = list(reversed(DET_LABELS))  # the label file's own class order, matched by name
    folder = tmp_path / "yolo"
    folder.mkdir()
    (folder / "classes.txt").write_text("\n".join(names) + "\n")
    lines = []
    for (x1, y1, x2, y2), c, _ in [*found, ((500.0, 300.0, 540.0, 340.0), 0, 1.0)]:
        cx, cy, w, h = (x1 + x2) / 2 / 640, (y1 + y2) / 2 / 360, (x2 - x1) / 640, (y2 - y1) / 360
        lines.append(f"{names.index(DET_LABELS[c])} {cx:.7f} {cy:.7f} {w:.7f} {h:.7f}")
    (folder / f"{det_image.stem}.txt").write_text("\n".join(lines) + "\n")
    rows, summary = run(tmp_path, [det_image], [model], folder)
    assert (rows[0]["tp"], rows[0]["fp"], rows[0]["fn"]) == (str(len(found)), "0", "1")
    assert summary["tp"] == len(found) and summary["fn"] == 1
