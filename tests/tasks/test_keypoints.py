"""Keypoints (pose): yolov8-pose and heatmap outputs of models whose outputs are known exactly land
on the frame where the input geometry put them (worked out by hand), for a landscape and a
portrait frame, through the registry and the runner the window uses, and in ``loupe analyze``."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from loupe.cli import main
from loupe.inference.card import CardError, InputSpec, ModelCard, check_keypoints_output, embed_card
from loupe.inference.engine import ModelError
from loupe.run.pipeline import Runner, load_model
from loupe.sources.base import Frame
from loupe.tasks.keypoints import COCO_KEYPOINTS, COCO_SKELETON, KeypointsResult, KeypointsTask
from tests.detection_models import (
    DETECTIONS,
    LABELS,
    expected_on_frame,
    make_constant_model,
    yolov8_output,
)

LANDSCAPE = (360, 640)  # frame (H, W): letterboxed into 320 x 320 with gain 0.5, 70 rows on top
PORTRAIT = (500, 300)  # gain 0.64, 64 columns on the left
NAMES = ("head", "left hand", "right hand", "left foot", "right foot")
SKELETON = [[0, 1], [0, 2], [0, 3], [0, 4]]
#: each detection's 5 keypoints in model-input pixels: its box's centre and corners (one corner
#: 5 px outside the box, so that on the landscape frame some land in the padding: clipped);
#: visibility scores, some below the 0.5 drawing threshold
VIS = (0.9, 0.2, 0.6, 0.95, 0.4)


def keypoints_in(box) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([[(x1 + x2) / 2, (y1 + y2) / 2], [x1, y1], [x2, y1], [x1, y2 + 5], [x2, y2]], np.float32)


def pose_output(dets=DETECTIONS, k_dims: int = 3, vis=VIS, anchors: int = 16) -> np.ndarray:
    """``1 x (4 + 3 + 5 x k_dims) x A``: yolov8's boxes and scores, then each anchor's keypoints."""
    det = yolov8_output(dets, anchors=anchors)
    kp = np.zeros((1, 5 * k_dims, anchors), np.float32)
    for a, (box, _c, _s) in enumerate(dets):
        pts = keypoints_in(box)
        for j in range(5):
            kp[0, j * k_dims: j * k_dims + 2, a] = pts[j]
            if k_dims == 3:
                kp[0, j * k_dims + 2, a] = vis[j]
    return np.concatenate([det, kp], axis=1)


def keypoints_model(path: Path, outputs: dict, output: dict, labels=LABELS, spec: InputSpec | None = None) -> Path:
    """A constant model (``tests.detection_models``) with a keypoints card."""
    make_constant_model(path, outputs, None, card=False, spec=spec)
    model = onnx.load(str(path))
    embed_card(model, ModelCard(task="keypoints", name="constant pose model",
                                input=spec or InputSpec(color="RGB", scale=1 / 255, fixed_size=(320, 320), letterbox=True),
                                labels=labels, output=dict(output),
                                source={"architecture": "test model: constant outputs", "demo": False}))
    onnx.save(model, str(path))
    return path


def to_frame(pts: np.ndarray, frame_hw) -> np.ndarray:
    """Letterbox's mapping worked out by hand (as ``expected_on_frame``), clipped to the frame."""
    h, w = frame_hw
    gain = min(320 / h, 320 / w)
    top, left = (320 - round(h * gain)) // 2, (320 - round(w * gain)) // 2
    out = np.empty_like(pts, dtype=np.float64)
    out[..., 0] = np.clip((pts[..., 0] - left) / gain, 0, w)
    out[..., 1] = np.clip((pts[..., 1] - top) / gain, 0, h)
    return out


def run(model, frame_hw) -> KeypointsResult:
    h, w = frame_hw
    (mr,) = Runner([model]).process(Frame(np.full((h, w, 3), 90, np.uint8), 0, 0.0)).results
    assert mr.task == "keypoints"
    return mr.result


FORMATS = {
    "pose": ({"output0": pose_output()}, {"format": "yolov8-pose", "keypoints": list(NAMES), "skeleton": SKELETON}),
    "pose_transposed": ({"output0": pose_output().transpose(0, 2, 1).copy()},
                        {"keypoints": list(NAMES), "skeleton": SKELETON}),
    "pose_kpt_shape": ({"output0": pose_output()}, {"format": "yolov8-pose", "kpt_shape": [5, 3], "skeleton": SKELETON}),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("pose")
    return {name: load_model(str(keypoints_model(d / f"{name}.onnx", outs, out))) for name, (outs, out) in FORMATS.items()}


@pytest.mark.parametrize("frame_hw", [LANDSCAPE, PORTRAIT], ids=["landscape", "portrait"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_yolov8_pose_keypoints_follow_their_boxes_onto_the_frame(models, fmt, frame_hw):
    task = models[fmt].task
    assert isinstance(task, KeypointsTask) and task.format == "yolov8-pose" and task.needs_nms
    r = run(models[fmt], frame_hw)
    want = expected_on_frame(frame_hw)
    assert isinstance(r, KeypointsResult) and r.count == len(want) == 3 and r.frame_hw == frame_hw
    np.testing.assert_allclose(r.boxes, [b for b, _c, _s in want], atol=1e-3)
    assert r.keypoints.shape == (3, 5, 3) and r.keypoints.dtype == np.float32
    # the detection each kept box came from (by score, best first): its own keypoints
    by_score = {s: box for box, _c, s in DETECTIONS}
    for i, (_b, _c, s) in enumerate(want):
        np.testing.assert_allclose(r.keypoints[i, :, :2], to_frame(keypoints_in(by_score[s]), frame_hw), atol=1e-3)
        np.testing.assert_allclose(r.keypoints[i, :, 2], VIS, atol=1e-6)
    if fmt != "pose_kpt_shape":
        assert r.keypoint_names == NAMES
    assert r.skeleton == tuple(map(tuple, SKELETON))


def test_the_hand_worked_keypoints(models):
    """Landscape (gain 0.5, 70 rows on top): the traffic light's box (140, 150)-(180, 170) ->
    frame (280, 160)-(360, 200); its left-foot keypoint (140, 175) -> (280, 210). Portrait
    (gain 0.64, 64 columns left): the dog's box top-left keypoint (100, 60) -> (56.25, 93.75)."""
    r = run(models["pose"], LANDSCAPE)
    np.testing.assert_allclose(r.keypoints[0, :, :2], [[320, 180], [280, 160], [360, 160], [280, 210], [360, 200]])
    r = run(models["pose"], PORTRAIT)
    np.testing.assert_allclose(r.keypoints[2, 1, :2], [56.25, 93.75], rtol=1e-6)


def test_keypoints_in_the_padding_are_clipped_to_the_frame(models):
    """The dog's box reaches into the landscape frame's top padding (input row 60 < 70): its
    corner keypoints there are clipped to row 0, as Ultralytics clips them."""
    r = run(models["pose"], LANDSCAPE)
    dog = int(np.flatnonzero(r.classes == 2)[0])
    assert r.keypoints[dog, 1, 1] == 0 and r.keypoints[dog, 2, 1] == 0
    assert (r.keypoints[..., 0] >= 0).all() and (r.keypoints[..., 0] <= 640).all()


def test_defaults_for_17_keypoints_are_cocos(tmp_path):
    """No names, no skeleton, 17 keypoints: COCO's names and skeleton; 2 values per keypoint
    (kpt_shape [17, 2]): scores 1."""
    k = 17
    out = yolov8_output(DETECTIONS[:2])
    kp = np.tile(np.array([[150.0], [160.0], [0.7]], np.float32), (k, 16))[None]
    model = load_model(str(keypoints_model(tmp_path / "coco.onnx", {"output0": np.concatenate([out, kp], 1)}, {})))
    r = run(model, LANDSCAPE)
    assert r.keypoint_names == COCO_KEYPOINTS and r.skeleton == COCO_SKELETON and len(COCO_SKELETON) == 19
    assert r.keypoints.shape == (2, 17, 3)
    np.testing.assert_allclose(r.keypoints[..., 2], 0.7, atol=1e-6)
    kp2 = np.tile(np.array([[150.0], [160.0]], np.float32), (k, 16))[None]
    model = load_model(str(keypoints_model(tmp_path / "coco2.onnx", {"output0": np.concatenate([out, kp2], 1)},
                                           {"kpt_shape": [17, 2]})))
    r = run(model, LANDSCAPE)
    assert (r.keypoints[..., 2] == 1).all()
    np.testing.assert_allclose(r.keypoints[..., :2], to_frame(np.array([150.0, 160.0]), LANDSCAPE) + 0 * r.keypoints[..., :2])


def test_keypoint_logits_go_through_a_sigmoid_when_the_card_says_so(tmp_path):
    logits = np.log(np.array(VIS) / (1 - np.array(VIS)))
    model = load_model(str(keypoints_model(tmp_path / "logits.onnx", {"output0": pose_output(vis=logits)},
                                           {"keypoints": list(NAMES), "keypoint_activation": "sigmoid"})))
    r = run(model, PORTRAIT)
    np.testing.assert_allclose(r.keypoints[..., 2], np.broadcast_to(VIS, (3, 5)), atol=1e-6)


def test_nms_keeps_each_surviving_box_with_its_own_keypoints(tmp_path):
    """Two overlapping boxes of one class (IoU 0.8): NMS keeps the better, and with it the
    keypoints of ITS anchor, not the other's."""
    a, b = (100.0, 100.0, 200.0, 200.0), (100.0, 100.0, 200.0, 180.0)
    dets = ((b, 0, 0.8), (a, 0, 0.9))  # the better box on the second anchor
    model = load_model(str(keypoints_model(tmp_path / "nms.onnx", {"output0": pose_output(dets)},
                                           {"keypoints": list(NAMES)})))
    r = run(model, (320, 320))
    assert r.count == 1
    np.testing.assert_allclose(r.keypoints[0, :, :2], keypoints_in(a), atol=1e-4)


def test_keypoint_threshold_is_a_setting_copied_by_fresh(models):
    task = models["pose"].task
    assert task.keypoint_threshold == 0.5
    task.set_keypoint_threshold(0.3)
    try:
        assert task.fresh().keypoint_threshold == 0.3
        with pytest.raises(ValueError, match="between 0 and 1"):
            task.set_keypoint_threshold(1.5)
    finally:
        task.set_keypoint_threshold(0.5)


@pytest.mark.parametrize(("output", "match"), [
    ({"keypoints": list(NAMES), "skeleton": [[0, 5]]}, "skeleton pair"),
    ({"keypoints": list(NAMES[:4])}, "4 keypoints"),
    ({"kpt_shape": [5, 3], "keypoints": list(NAMES[:4])}, "kpt_shape says 5"),
    ({"keypoints": list(NAMES), "format": "heatmaps"}, "1 x K x h x w"),
])
def test_card_and_output_disagreements_are_refused_clearly(tmp_path, output, match):
    path = keypoints_model(tmp_path / "bad.onnx", {"output0": pose_output()}, output)
    with pytest.raises(ModelError, match=match):
        load_model(str(path))


def test_card_check_names_the_key():
    check_keypoints_output({"format": "yolov8-pose", "keypoints": ["a", "b"], "skeleton": [[0, 1]], "kpt_shape": [2, 3]})
    for bad, key in (({"format": "pose"}, "format"), ({"skeleton": [[0, "x"]]}, "skeleton"),
                     ({"kpt_shape": [17, 4]}, "kpt_shape"), ({"keypoint_threshold": 2}, "keypoint_threshold"),
                     ({"keypoints": "nose"}, "keypoints"), ({"score_threshold": 3}, "score_threshold")):
        with pytest.raises(CardError, match=key):
            check_keypoints_output(bad)


# --- heatmaps ------------------------------------------------------------------------------------
#: Gaussian peaks (x, y) in heatmap-cell index coordinates (cell (i, j) centred at x = j, y = i),
#: off the cell centres, with their heights
PEAKS = ((20.3, 30.6, 0.9), (50.75, 12.2, 0.3), (40.0, 70.45, 0.7), (70.6, 60.1, 0.55), (10.4, 45.5, 0.8))


def heatmaps(hw=(80, 80), peaks=PEAKS, sigma=2.0) -> np.ndarray:
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    maps = [s * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)) for x, y, s in peaks]
    return np.stack(maps)[None].astype(np.float32)


def test_heatmaps_letterboxed_land_where_their_peaks_are(tmp_path):
    """msra alignment: cell x is input pixel x * 320 / 80 + 0.5; then letterbox's mapping. The
    Taylor step recovers a Gaussian's centre exactly but for float32 rounding (measured < 1e-3
    cell), so within 0.02 frame pixels."""
    model = load_model(str(keypoints_model(tmp_path / "hm.onnx", {"heatmaps": heatmaps()},
                                           {"format": "heatmaps", "keypoints": list(NAMES), "skeleton": SKELETON},
                                           labels=())))
    assert model.task.format == "heatmaps" and not model.task.needs_nms and model.task.labels == ("person",)
    for frame_hw in (LANDSCAPE, PORTRAIT):
        r = run(model, frame_hw)
        assert r.count == 1 and r.labels == ("person",) and r.counts.tolist() == [1]
        inp = np.array([[x * 4 + 0.5, y * 4 + 0.5] for x, y, _s in PEAKS])
        want = to_frame(inp, frame_hw)
        np.testing.assert_allclose(r.keypoints[0, :, :2], want, atol=0.02)
        # the score: the map's value at its argmax cell (not the Gaussian's height between cells)
        np.testing.assert_allclose(r.keypoints[0, :, 2], heatmaps()[0].reshape(5, -1).max(1), rtol=1e-6)
        box = r.boxes[0]
        np.testing.assert_allclose(box, [want[:, 0].min(), want[:, 1].min(), want[:, 0].max(), want[:, 1].max()], atol=0.02)
        assert r.scores[0] == pytest.approx(r.keypoints[0, :, 2].mean(), abs=1e-6)


@pytest.mark.parametrize("frame_hw", [LANDSCAPE, PORTRAIT], ids=["landscape", "portrait"])
def test_heatmaps_of_a_stretched_input_with_quarter_refinement(tmp_path, frame_hw):
    """A 256 x 192 input (stretched, as top-down pose models take a person crop) with 64 x 48
    maps, cells alignment ((x + 0.5) x 4), quarter-cell refinement: each peak moves a quarter
    cell from its argmax towards the higher neighbour (worked out here by hand)."""
    peaks = ((10.3, 20.0, 0.9), (30.0, 40.8, 0.5), (5.6, 5.4, 0.7), (40.2, 60.7, 0.6), (24.0, 32.0, 0.8))
    spec = InputSpec(color="RGB", scale=1 / 255, fixed_size=(256, 192))
    model = load_model(str(keypoints_model(tmp_path / "hm2.onnx", {"out": heatmaps((64, 48), peaks)},
                                           {"keypoints": list(NAMES), "refine": "quarter", "align": "cells"},
                                           labels=("person",), spec=spec)))
    r = run(model, frame_hw)
    # argmax cell, then +-0.25 towards the larger neighbour (none when the peak is on the centre)
    quarter = [(10.25, 20.0), (30.0, 40.75), (5.75, 5.25), (40.25, 60.75), (24.0, 32.0)]
    h, w = frame_hw
    want = np.array([[(x + 0.5) * 4 * w / 192, (y + 0.5) * 4 * h / 256] for x, y in quarter])
    np.testing.assert_allclose(r.keypoints[0, :, :2], want, rtol=1e-5)


# --- analyze ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("frames")
    cv2.imwrite(str(d / "a_landscape.png"), np.full((360, 640, 3), 80, np.uint8))
    cv2.imwrite(str(d / "b_portrait.png"), np.full((500, 300, 3), 160, np.uint8))
    return d


def test_analyze_rows_hold_every_keypoint_in_frame_pixels(tmp_path, images):
    model = keypoints_model(tmp_path / "pose.onnx", *FORMATS["pose"])
    out = tmp_path / "rows.jsonl"
    assert main(["analyze", str(images), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_score = {s: box for box, _c, s in DETECTIONS}
    for row, frame_hw in zip(rows, (LANDSCAPE, PORTRAIT)):
        assert row["task"] == "keypoints" and row["count"] == 3 and row["count_person"] == 1
        for det in row["detections"]:
            kp = np.asarray(det["keypoints"])
            assert kp.shape == (5, 3), "all K keypoints, below the drawing threshold too"
            np.testing.assert_allclose(kp[:, :2], to_frame(keypoints_in(by_score[det["score"]]), frame_hw), atol=0.006)
            assert kp[:, 2].tolist() == list(VIS)
    csv_out = tmp_path / "rows.csv"
    assert main(["analyze", str(images), "--model", str(model), "--out", str(csv_out), "--quiet"]) == 0
    header = csv_out.read_text().splitlines()[0].split(",")
    assert header[-4:] == ["count", "count_person", "count_traffic_light", "count_dog"]
    assert "keypoints" not in header and "detections" not in header


def test_tracking_gives_people_ids_and_keeps_their_keypoints(tmp_path):
    """Detection's tracker runs in ``finish``: the keypoints result gets track IDs, the same on
    the next frame (the people have not moved), and keeps its keypoints; JSONL gets track_id."""
    model = load_model(str(keypoints_model(tmp_path / "track.onnx", *FORMATS["pose"])))
    task = model.task
    task.set_tracking(True)
    try:
        runner = Runner([model])
        rs = [runner.process(Frame(np.full((360, 640, 3), 90, np.uint8), i, i / 25)).results[0].result for i in range(3)]
        assert all(isinstance(r, KeypointsResult) and r.keypoints.shape == (3, 5, 3) for r in rs)
        assert rs[-1].track_ids is not None and rs[-1].track_ids.tolist() == rs[-2].track_ids.tolist()
        assert len(set(rs[-1].track_ids.tolist())) == 3 and (rs[-1].track_ids > 0).all()
        row = task.row(rs[-1])
        assert [d["track_id"] for d in row["detections"]] == rs[-1].track_ids.tolist()
        assert all(len(d["keypoints"]) == 5 for d in row["detections"])
    finally:
        task.set_tracking(False)
