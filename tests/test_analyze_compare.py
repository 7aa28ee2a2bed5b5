"""``loupe analyze --model A --model B --compare``: an ``agreement`` column whose values are known by
construction (the same model twice, a model with two classes' names swapped, detectors that share
all but one box), the same on both models' rows of a frame; the summary lines; the refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from loupe.base.media import clip_path
from loupe.cli import main
from tests.detection_models import DETECTIONS, make_constant_model, yolov8_output
from tests.helpers import make_argmax_model, make_density_model, read_csv


def by_frame(rows: list[dict[str, str]]) -> dict[int, list[dict[str, str]]]:
    out: dict[int, list[dict[str, str]]] = {}
    for r in rows:
        out.setdefault(int(r["frame"]), []).append(r)
    return out


@pytest.fixture
def twins(tmp_path) -> tuple[Path, Path]:
    """The brightest-channel segmenter under two names."""
    a = make_argmax_model(tmp_path / "left.onnx")
    return a, Path(shutil.copy(a, tmp_path / "right.onnx"))


def analyze(tmp_path, inputs, models, *extra, out_name="rows.csv") -> tuple[int, Path]:
    out = tmp_path / out_name
    args = ["analyze", *map(str, inputs), "--out", str(out), "--quiet", "--compare", *extra]
    for m in models:
        args += ["--model", str(m)]
    return main(args), out


def test_the_same_model_twice_agrees_on_every_frame_of_a_real_clip(tmp_path, twins, capfd):
    rc, out = analyze(tmp_path, [clip_path("bikes.mp4")], twins, "--max-frames", "3")
    assert rc == 0
    rows = read_csv(out)
    assert list(rows[0])[:7] == ["input", "frame", "timestamp_s", "model", "task", "latency_ms", "agreement"]
    frames = by_frame(rows)
    assert sorted(frames) == [0, 1, 2]
    for pair in frames.values():
        assert [r["model"] for r in pair] == ["left", "right"]
        assert [float(r["agreement"]) for r in pair] == [1.0, 1.0]
    err = capfd.readouterr().err
    assert "loupe: agreement left vs right: mean 1.000 over 3 frames (lowest 1.000 at frame 0)" in err
    assert "where they differ" not in err  # they never do


def test_swapped_class_names_disagree_on_exactly_those_pixels(tmp_path, capfd):
    img = np.zeros((40, 100, 3), np.uint8)  # RGB
    img[:, :25] = (250, 0, 0)    # 1000 red pixels
    img[:, 25:40] = (0, 250, 0)  # 600 green pixels
    img[:, 40:] = (0, 0, 250)    # 2400 blue pixels: the only ones both models call by one name
    p = tmp_path / "stripes.png"
    cv2.imwrite(str(p), img[:, :, ::-1])
    plain = make_argmax_model(tmp_path / "plain.onnx")
    swapped = make_argmax_model(tmp_path / "swapped.onnx", labels=("green", "red", "blue"))  # names swapped
    rc, out = analyze(tmp_path, [p], [plain, swapped])
    assert rc == 0
    a, b = read_csv(out)
    assert a["agreement"] == b["agreement"] and float(a["agreement"]) == pytest.approx(2400 / 4000)
    # each model's own columns are as without --compare: the swapped one calls the red stripe green
    assert float(a["area_red"]) == pytest.approx(0.25) and float(b["area_green"]) == pytest.approx(0.25)
    err = capfd.readouterr().err
    assert "mean 0.600 over 1 frame (lowest 0.600 at frame 0)" in err and "no class name in common" not in err
    # where: the red stripe (1000 of 4000 pixels) and the green one (600)
    assert "loupe: where they differ most: A red / B green 25.0% of pixels, A green / B red 15.0%\n" in err
    # models naming no class alike agree nowhere, and are told so
    other = make_argmax_model(tmp_path / "other.onnx", labels=("x", "y", "z"))
    rc, out = analyze(tmp_path, [p], [plain, other])
    assert rc == 0 and {r["agreement"] for r in read_csv(out)} == {"0.0"}
    assert "plain and other have no class name in common" in capfd.readouterr().err


def test_detectors_sharing_all_but_one_box_agree_at_f1_four_fifths(tmp_path, capfd):
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((360, 640, 3), 80, np.uint8))  # three boxes land on it
    a = make_constant_model(tmp_path / "three.onnx", {"output0": yolov8_output()}, {"format": "yolov8"})
    # B: the same detections without the dog (0.6), and its labels in another order (classes renumbered)
    order = ("dog", "person", "traffic light")
    renumber = {0: 1, 1: 2, 2: 0}
    dets = [(box, renumber[c], s) for box, c, s in DETECTIONS if s != 0.6]
    b = make_constant_model(tmp_path / "two.onnx", {"output0": yolov8_output(dets)}, {"format": "yolov8"},
                            labels=order)
    rc, out = analyze(tmp_path, [tmp_path / "grey.png"], [a, b])
    assert rc == 0
    ra, rb = read_csv(out)
    assert ra["count"] == "3" and rb["count"] == "2"
    assert float(ra["agreement"]) == float(rb["agreement"]) == pytest.approx(2 * 2 / 5)
    assert "loupe: where they differ most: only A: dog 1 (of 5 boxes)\n" in capfd.readouterr().err


def test_summary_table_shows_the_mean_agreement(twins, capfd):
    args = ["analyze", str(clip_path("bikes.mp4")), "--max-frames", "2", "--quiet", "--compare"]
    assert main([*args, "--model", str(twins[0]), "--model", str(twins[1])]) == 0
    out = capfd.readouterr().out
    line = next(x for x in out.splitlines() if "(agreement)" in x)
    assert "agreement 1.000 (mean), lowest 1.000 at frame 0" in line


def test_compare_with_labels_scores_both_models_as_before(tmp_path, twins):
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :30, 2] = 255  # left half red (BGR on disk)
    img[:, 30:, 1] = 255
    cv2.imwrite(str(tmp_path / "a.png"), img)
    lab = tmp_path / "labels"
    lab.mkdir()
    cv2.imwrite(str(lab / "a.png"), np.zeros((40, 60), np.uint8))  # all red
    plain = tmp_path / "plain.csv"
    assert main(["analyze", str(tmp_path / "a.png"), "--out", str(plain), "--quiet", "--labels", str(lab),
                 "--model", str(twins[0]), "--model", str(twins[1])]) == 0
    rc, out = analyze(tmp_path, [tmp_path / "a.png"], twins, "--labels", str(lab))
    assert rc == 0
    compared = read_csv(out)
    assert [r["agreement"] for r in compared] == ["1.0", "1.0"]
    for before, after in zip(read_csv(plain), compared):
        assert float(after["iou_red"]) == pytest.approx(0.5)
        assert {k: v for k, v in after.items() if k.startswith(("iou_", "dice_"))} == \
            {k: v for k, v in before.items() if k.startswith(("iou_", "dice_"))}


def test_resume_keeps_the_agreement_column(tmp_path, twins):
    clip = clip_path("bikes.mp4")
    rc, out = analyze(tmp_path, [clip], twins, "--max-frames", "2")
    assert rc == 0 and len(read_csv(out)) == 4
    rc, out = analyze(tmp_path, [clip], twins, "--max-frames", "3", "--resume")
    assert rc == 0
    rows = read_csv(out)
    assert [(int(r["frame"]), r["model"]) for r in rows] == [(f, m) for f in range(3) for m in ("left", "right")]
    assert {r["agreement"] for r in rows} == {"1.0"}


def test_compare_refusals_exit_2_with_one_line(tmp_path, twins, capfd):
    img = tmp_path / "grey.png"
    cv2.imwrite(str(img), np.full((40, 60, 3), 80, np.uint8))
    third = Path(shutil.copy(twins[0], tmp_path / "third.onnx"))
    det = make_constant_model(tmp_path / "det.onnx", {"output0": yolov8_output()}, {"format": "yolov8"})
    dens = [make_density_model(tmp_path / f"dens{i}.onnx") for i in (1, 2)]
    cases = [
        ([twins[0]], (), "--compare compares exactly two models: give --model twice (got 1 --model)"),
        ([*twins, third], (), "--compare compares exactly two models: give --model twice (got 3 --model)"),
        ([twins[0], det], (), "--compare needs two models of the same task: left.onnx is segmentation, "
                              "det.onnx is detection"),
        (dens, (), "--compare: density models cannot be compared (tasks that can: segmentation, detection, "
                   "classification, keypoints, instances)"),
        (list(twins), ("--ray",), "--compare cannot run on Ray yet: run without --ray"),
    ]
    for models, extra, line in cases:
        rc, out = analyze(tmp_path, [img], models, *extra, out_name="refused.csv")
        err = capfd.readouterr().err
        assert rc == 2, line
        assert line in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
