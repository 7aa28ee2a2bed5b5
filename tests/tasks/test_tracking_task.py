"""Tracking in the detection task: ``DetectionTask.finish`` driven with hand-made results (IDs
kept across consecutive frames, a re-run frame redone, a seek or a new input starting the tracks
again, frames dropped in between predicted across), ``history`` while tracking, and ``loupe
analyze --track`` on a video (IDs constant where the model's boxes are; ``--resume`` equal to an
uninterrupted run; ``--ray`` and CSV refused)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from loupe.base.media import clip_path
from loupe.cli import main
from loupe.inference.card import InputSpec, ModelCard, embed_card
from loupe.run.pipeline import Runner, load_model, run_stream
from loupe.sources.base import Frame
from loupe.tasks.detection import DetectionResult, DetectionTask
from tests.detection_models import LABELS, make_constant_model, yolov8_output

H, W = 240, 320


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("track")
    return make_constant_model(d / "v8.onnx", {"output0": yolov8_output()}, {"format": "yolov8"})


@pytest.fixture
def task(model_path) -> DetectionTask:
    t = load_model(str(model_path), display_max_side=None).task
    t.set_tracking(True)
    return t


def frame(i: int) -> Frame:
    return Frame(np.zeros((H, W, 3), np.uint8), i, i / 25.0, {})


def res(centres, classes=None, scores=None) -> DetectionResult:
    n = len(centres)
    boxes = np.array([[x - 15, y - 15, x + 15, y + 15] for x, y in centres], np.float32).reshape(-1, 4)
    classes = np.zeros(n, np.int32) if classes is None else np.asarray(classes, np.int32)
    scores = np.linspace(0.9, 0.8, n).astype(np.float32) if scores is None else np.asarray(scores, np.float32)
    return DetectionResult(boxes, scores, classes, LABELS, (H, W), np.bincount(classes, minlength=3).astype(np.int64))


def step(task: DetectionTask, i: int, centres, **kw) -> list[int]:
    task.prepare(frame(i))
    out = task.finish(res(centres, **kw))
    assert out.track_ids is not None and out.track_ids.dtype == np.int64
    return out.track_ids.tolist()


def test_tracking_off_gives_no_ids_and_history_0(model_path):
    t = load_model(str(model_path)).task
    assert not t.tracking and t.history == 0
    t.prepare(frame(0))
    assert t.finish(res([(50, 50)])).track_ids is None
    assert "track_id" not in t.row(t.finish(res([(50, 50)])))["detections"][0]
    t.set_tracking(True)
    assert t.history is None  # results depend on every earlier frame
    assert t.fresh().tracking and t.fresh().history is None  # the whole-file analysis tracks too
    t.set_tracking(False)
    assert t.history == 0 and not t.fresh().tracking


def test_ids_follow_moving_boxes_across_consecutive_frames(task):
    for i in range(10):
        assert step(task, i, [(40 + 8 * i, 60), (280 - 8 * i, 150)]) == [1, 2]
    row = task.row(task.finish(res([(50, 50)])))
    assert row["detections"][0]["track_id"] in (0, 1, 2)


def test_the_same_frame_again_redoes_its_update(task):
    for i in range(5):
        step(task, i, [(40 + 8 * i, 60)])
    before = task._tracker.copy()
    # a threshold moved on the paused frame 4: its result again, now with a second box
    assert step(task, 4, [(72, 60), (200, 200)]) == [1, 0]  # the new box is tentative
    assert step(task, 4, [(72, 60), (200, 200)]) == [1, 0]  # still: the update is redone, not repeated
    assert step(task, 4, [(72, 60)]) == [1]
    assert task._tracker.frame == before.frame
    assert step(task, 5, [(80, 60), (200, 200)]) == [1, 0]  # a new object: tentative on its first frame


def test_a_seek_or_a_new_input_starts_the_tracks_again(task):
    for i in range(5):
        step(task, i, [(40 + 8 * i, 60), (200, 150)])
    assert step(task, 5, [(200, 150), (80, 60)]) == [2, 1]
    assert step(task, 2, [(200, 150), (80, 60)]) == [1, 2]  # backwards: IDs from 1 again
    assert step(task, 500, [(80, 60)]) == [1]  # far forward: again
    task.reset()  # analyze: the next input
    assert step(task, 501, [(150, 150), (80, 60)]) == [1, 2]


def test_frames_dropped_between_are_predicted_across(task):
    for i in range(0, 10, 2):  # the live view showed every other frame
        assert step(task, i, [(40 + 6 * i, 60)]) == [1]
    assert step(task, 16, [(40 + 6 * 16, 60)]) == [1]  # 6 frames later, 36 px on: the velocity carries it


def test_results_of_other_shapes_keep_their_fields(task):
    r = res([(50, 50), (150, 150)], classes=[1, 2])
    task.prepare(frame(0))
    out = task.finish(r)
    assert out.track_ids.tolist() == [1, 2]
    assert out.boxes is r.boxes and out.counts is r.counts and out.labels == r.labels
    with pytest.raises(ValueError, match="track_ids"):
        DetectionResult(r.boxes, r.scores, r.classes, r.labels, r.frame_hw, r.counts, np.array([1], np.int64))


def test_overlapping_prepare_and_postprocess_keep_the_frame_order(model_path):
    """run_stream prepares the next frame before this one is post-processed; the IDs of a
    constant model stay put, and a second pass (frame 0 again) starts from 1."""
    m = load_model(str(model_path), display_max_side=None)
    m.task.set_tracking(True)
    runner = Runner([m])
    assert runner.overlap_safe
    for _ in range(2):
        ids = [fr.results[0].result.track_ids.tolist() for fr in run_stream((frame(i) for i in range(8)), runner)]
        assert ids == [[1, 2, 3]] * 8


# --- analyze --track -------------------------------------------------------------------------
def analyze(model, out, *extra) -> int:
    return main(["analyze", str(clip_path("carphone_pristine.mp4")), "--model", str(model), "--out", str(out),
                 "--max-frames", "12", "--quiet", *extra])


def test_analyze_track_writes_the_same_ids_on_every_frame(tmp_path, model_path):
    out = tmp_path / "rows.jsonl"
    assert analyze(model_path, out, "--track") == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in rows] == list(range(12))
    for r in rows:  # the 176 x 144 clip keeps the box in the padding of wider frames
        assert [d["track_id"] for d in r["detections"]] == [1, 2, 3, 4]
        assert [d["label"] for d in r["detections"]] == ["traffic light", "person", "person", "dog"]
    assert analyze(model_path, tmp_path / "plain.jsonl") == 0
    plain = [json.loads(line) for line in (tmp_path / "plain.jsonl").read_text().splitlines()]
    assert all("track_id" not in d for r in plain for d in r["detections"])


SIDE = 30  # the squares' side
FH, FW = 160, 320


def make_square_finder(path) -> str:
    """A detector in the yolov8 layout that finds the red square (anchor 0, score 0.9) and the
    green one (anchor 1, score 0.8) of a frame exactly: per channel, the first column and row
    where the channel is brightest are the square's left and top edges. Both are "person"."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, FH, FW])
    nodes, inits = [], [numpy_helper.from_array(np.array([SIDE / 2], np.float32), "half"),
                        numpy_helper.from_array(np.array([SIDE, SIDE], np.float32), "wh")]
    columns = []
    for c, score in ((0, 0.9), (1, 0.8)):
        inits += [numpy_helper.from_array(np.array(c, np.int64), f"ch{c}"),
                  numpy_helper.from_array(np.array([score, 0.01, 0.01], np.float32), f"scores{c}")]
        nodes.append(helper.make_node("Gather", ["images", f"ch{c}"], [f"plane{c}"], axis=1))  # 1 x H x W
        for name, axis in (("x", 1), ("y", 2)):  # the column profile (max over rows), the row profile
            nodes += [
                helper.make_node("ReduceMax", [f"plane{c}"], [f"prof{name}{c}"], axes=[axis], keepdims=0),
                helper.make_node("ArgMax", [f"prof{name}{c}"], [f"edge{name}{c}"], axis=1, keepdims=0),
                helper.make_node("Cast", [f"edge{name}{c}"], [f"edgef{name}{c}"], to=TensorProto.FLOAT),
                helper.make_node("Add", [f"edgef{name}{c}", "half"], [f"c{name}{c}"]),
            ]
        nodes.append(helper.make_node("Concat", [f"cx{c}", f"cy{c}", "wh", f"scores{c}"], [f"col{c}"], axis=0))
        nodes.append(helper.make_node("Unsqueeze", [f"col{c}", "one"], [f"col2d{c}"]))
        columns.append(f"col2d{c}")
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "one"))
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "zero"))
    nodes.append(helper.make_node("Concat", columns, ["table"], axis=1))  # 7 x 2
    nodes.append(helper.make_node("Unsqueeze", ["table", "zero"], ["output0"]))
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 7, 2])
    model = helper.make_model(helper.make_graph(nodes, "square_finder", [x], [out], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    embed_card(model, ModelCard(task="detection", name="square finder",
                                input=InputSpec(color="RGB", scale=1 / 255, fixed_size=(FH, FW)),
                                labels=LABELS, output={"format": "yolov8"},
                                source={"architecture": "test model", "demo": False}))
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def test_analyze_track_follows_two_squares_crossing_paths(tmp_path):
    """A red square going right and a green one going left, 8 px a frame, 10 px apart
    vertically, pass each other (overlapping on frames 11-14): each keeps its ID."""
    model = make_square_finder(tmp_path / "squares.onnx")
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(20):
        img = np.zeros((FH, FW, 3), np.uint8)  # BGR for cv2
        img[60:60 + SIDE, 40 + 8 * i:40 + 8 * i + SIDE, 1] = 255  # green
        img[70:70 + SIDE, 240 - 8 * i:240 - 8 * i + SIDE, 2] = 255  # red: the 0.9 box
        cv2.imwrite(str(folder / f"f{i:02d}.png"), img)
    out = tmp_path / "rows.jsonl"
    assert main(["analyze", str(folder), "--model", model, "--out", str(out), "--quiet", "--track"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 20
    for i, r in enumerate(rows):
        red, green = r["detections"]
        assert red["box"] == [240 - 8 * i, 70, 270 - 8 * i, 100] and green["box"][0] == 40 + 8 * i
        assert (red["track_id"], green["track_id"]) == (1, 2)


def test_analyze_track_resumes_from_the_input_start_and_equals_an_uninterrupted_run(tmp_path, model_path, capsys):
    full = tmp_path / "full.jsonl"
    assert analyze(model_path, full, "--track") == 0
    cut = tmp_path / "cut.jsonl"
    lines = full.read_text().splitlines(keepends=True)
    cut.write_text("".join(lines[:5]) + lines[5][:20])  # interrupted mid-line
    capsys.readouterr()
    assert analyze(model_path, cut, "--track", "--resume") == 0
    assert "12 frames from 1/1 inputs" in capsys.readouterr().err  # run again from frame 0

    def rows(path):
        return [{k: v for k, v in json.loads(line).items() if k != "latency_ms"}
                for line in path.read_text().splitlines()]

    assert rows(cut) == rows(full)
    assert rows(cut)[5:] == rows(full)[5:] and len(rows(cut)) == 12


def test_analyze_track_is_refused_where_it_cannot_work(tmp_path, model_path, argmax_model, capsys):
    assert analyze(model_path, tmp_path / "rows.csv", "--track") == 2
    assert "--out FILE.jsonl" in capsys.readouterr().err
    assert analyze(model_path, tmp_path / "rows.jsonl", "--track", "--ray") == 2
    assert "--track cannot run on Ray" in capsys.readouterr().err
    assert analyze(argmax_model, tmp_path / "seg.jsonl", "--track") == 2
    assert "--track applies to detection-like models" in capsys.readouterr().err


def test_boxes_the_user_sees_get_ids_whatever_their_scores(task):
    """A small model's boxes scoring 0.35-0.4 at the default 0.25 threshold are tracked (ByteTrack's
    fixed 0.6 for a new track would give them none); at 0.5 its own values apply again."""
    ids = [step(task, i, [(60 + 3 * i, 80), (200, 120 + 2 * i)], scores=[0.38, 0.36]) for i in range(6)]
    assert ids[-1] == [1, 2] and all(row == ids[-1] for row in ids[1:])
    task.set_score_threshold(0.5)
    task.reset()
    ids = [step(task, i, [(60 + 3 * i, 80)], scores=[0.55]) for i in range(6)]
    assert ids[-1] == [0]  # below ByteTrack's 0.6 for a new track
