"""Real Ultralytics pose exports open with no card, and Loupe's boxes and keypoints equal Ultralytics'
own decoding of them.

tests/data/ultralytics holds two tiny pose exports made by Ultralytics 8.4 itself
(tools/make_ultralytics_pose_refs.py, in a venv of its own: Ultralytics is AGPL and never a
dependency of Loupe; pose_manifest.json and the README there say how): YOLO11-pose at 320 x 320
and YOLOv8-pose at 256 x 320, one class, ``kpt_shape`` [17, 3], output ``1 x 56 x A``, and what
``YOLO(onnx, task="pose").predict(png, conf=0.25, iou=0.7, max_det=300)`` returned on the two
PNG frames (boxes, scores and ``Results.keypoints.data``: x, y, visibility in frame pixels).

Tolerances, and why (as for the detect references, tests/test_ultralytics_exports.py):

- Boxes within BOX_TOL = 0.01 frame pixels, scores within SCORE_TOL = 1e-4: the same letterboxed
  input (to the last bit of the / 255), the same graph; what is left is float rounding of ONNX
  Runtime's kernels (measured 3.8e-4 px). Ultralytics 8.4 maps boxes and keypoints back per
  axis from the rounded resized size (``scale_boxes``, ``scale_coords``: the exact inverse of
  the resize); where the letterbox gain does not give whole pixels (the 240 x 400 frame into
  256 x 320: 153.6 -> 154 columns) a single ``1 / gain`` is up to 0.56 px off, and a box at the
  frame's edge can be kept by one and dropped by the other: these tests need
  ``Geometry.to_frame``'s per-axis mapping, as the detect references do.
- Keypoint x, y within KP_TOL = 0.01 frame pixels: the graph decodes them as ``(2 t + anchor -
  0.5) x stride``; a last-bit change of the input moves them by up to 4.5e-4 input pixels
  (manifest ``keypoint_rounding_shift``), and Loupe and Ultralytics map them back through the
  same letterbox geometry (measured 1.3e-3 frame pixels at most; test_measured_deviation prints
  it). Both clip keypoints to the frame.
- Visibility within SCORE_TOL: a sigmoid inside the graph (Ultralytics' exporter applies it to the
  third value of each keypoint), read as is (measured 2.5e-6).
- Boxes wholly in the letterbox padding (Ultralytics reports them with zero width or height,
  Loupe drops them) are left out, with their keypoints (``visible``); every other box must be
  there with the same class. The references were made with the detect references' margins (no
  score within 1e-5 of 0.25, no IoU with a kept box within 3e-3 of 0.7), so which boxes are kept
  is not decided by rounding.
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from loupe.cli import main
from loupe.run.pipeline import Runner, load_model
from loupe.sources.open import open_source
from loupe.tasks.keypoints import COCO_KEYPOINTS, COCO_SKELETON, KeypointsResult
from tests.test_ultralytics_exports import BOX_TOL, SCORE_TOL, match

DATA = Path(__file__).parents[1] / "data" / "ultralytics"
MANIFEST = json.loads((DATA / "pose_manifest.json").read_text())
MODELS = sorted(MANIFEST["models"])
FRAMES = sorted(MANIFEST["frames"])
KP_TOL = 0.01  # frame pixels


def reference(model: str, frame: str) -> dict:
    return json.loads((DATA / f"{Path(model).stem}__{Path(frame).stem}.json").read_text())


def visible(ref: dict) -> dict:
    """The reference without the boxes (and their keypoints) wholly in the letterbox padding."""
    b = np.asarray(ref["boxes_xyxy"], np.float64).reshape(-1, 4)
    wh = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    assert not ((wh > 0) & (wh < 10 * BOX_TOL)).any(), "a reference box is all but degenerate: ambiguous"
    keep = wh > 0
    out = dict(ref)
    out["boxes_xyxy"] = b[keep]
    out["keypoints"] = np.asarray(ref["keypoints"], np.float64).reshape(len(b), 17, 3)[keep]
    for k in ("scores", "classes", "labels"):
        out[k] = [v for v, ok in zip(ref[k], keep) if ok]
    return out


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ultralytics_pose")
    for name in (*MODELS, *FRAMES):
        shutil.copy(DATA / name, d / name)
    return d


@cache
def _loaded(path: str):
    return load_model(path, providers="cpu", threads=1)


def window_result(copies: Path, model: str, frame: str) -> KeypointsResult:
    lm = _loaded(str(copies / model))
    with open_source(copies / frame) as src:
        f = next(iter(src))
    (res,) = Runner([lm]).process(f).results
    return res.result


def test_committed_models_are_small_and_the_ones_the_references_were_made_with():
    import hashlib

    for name, m in MANIFEST["models"].items():
        data = (DATA / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == m["sha256"] and len(data) < 1_000_000, name
        assert m["metadata_props"]["task"] == "pose" and m["metadata_props"]["kpt_shape"] == "[17, 3]"


@pytest.mark.parametrize("model", MODELS)
def test_pose_metadata_is_read_as_a_keypoints_card(copies, model):
    lm = _loaded(str(copies / model))
    card, task = lm.engine.card, lm.task
    assert card.origin == "ultralytics" and card.task == "keypoints" and task.name == "keypoints"
    assert card.input.letterbox and card.input.pad_value == 114
    assert tuple(card.input.fixed_size) == tuple(MANIFEST["models"][model]["imgsz"])
    assert task.format == "yolov8-pose" and task.needs_nms and task.labels == ("person",)
    assert (task.score_threshold, task.iou_threshold, task.max_detections) == (0.25, 0.7, 300)
    assert task.keypoint_names == COCO_KEYPOINTS and task.skeleton == COCO_SKELETON
    assert not list(copies.glob("*.loupe.json")), "opening a model wrote a sidecar"


@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize("model", MODELS)
def test_boxes_and_keypoints_equal_ultralytics_in_the_window_path(copies, model, frame):
    ref = visible(reference(model, frame))
    r = window_result(copies, model, frame)
    assert r.frame_hw == tuple(ref["orig_hw"])
    rb = ref["boxes_xyxy"]
    assert len(rb) >= 10, "too few boxes on the frame for a meaningful comparison"
    j = match(rb, np.asarray(ref["classes"], int), r.boxes.astype(np.float64), r.classes.astype(int))
    np.testing.assert_allclose(r.boxes[j], rb, rtol=0, atol=BOX_TOL)
    np.testing.assert_allclose(r.scores[j], ref["scores"], rtol=0, atol=SCORE_TOL)
    np.testing.assert_allclose(r.keypoints[j][..., :2], ref["keypoints"][..., :2], rtol=0, atol=KP_TOL)
    np.testing.assert_allclose(r.keypoints[j][..., 2], ref["keypoints"][..., 2], rtol=0, atol=SCORE_TOL)


@pytest.mark.parametrize("model", MODELS)
def test_boxes_and_keypoints_equal_ultralytics_in_analyze(copies, tmp_path, model, capsys):
    for frame in FRAMES:
        ref = visible(reference(model, frame))
        out = tmp_path / f"{Path(frame).stem}.jsonl"
        rc = main(["analyze", str(copies / frame), "--model", str(copies / model), "--out", str(out), "--quiet"])
        assert rc == 0, capsys.readouterr().err
        (row,) = [json.loads(line) for line in out.read_text().splitlines()]
        dets = row["detections"]
        assert row["task"] == "keypoints" and row["count"] == row["count_person"] == len(ref["scores"])
        boxes = np.asarray([d["box"] for d in dets], np.float64).reshape(-1, 4)
        j = match(ref["boxes_xyxy"], np.asarray(ref["classes"], int), boxes, np.asarray([d["class"] for d in dets]))
        kp = np.asarray([dets[k]["keypoints"] for k in j], np.float64)
        assert kp.shape == (len(j), 17, 3)
        np.testing.assert_allclose(kp[..., :2], ref["keypoints"][..., :2], rtol=0, atol=KP_TOL + 0.005)
        np.testing.assert_allclose(kp[..., 2], ref["keypoints"][..., 2], rtol=0, atol=SCORE_TOL + 5e-5)


def test_measured_deviation(copies, capsys):
    """Not a second check: prints the largest deviations (pytest -s), which the tolerances were
    set from."""
    box = kxy = kvis = 0.0
    for model in MODELS:
        for frame in FRAMES:
            ref = visible(reference(model, frame))
            r = window_result(copies, model, frame)
            j = match(ref["boxes_xyxy"], np.asarray(ref["classes"], int), r.boxes.astype(np.float64),
                      r.classes.astype(int))
            box = max(box, float(np.abs(r.boxes[j] - ref["boxes_xyxy"]).max()))
            kxy = max(kxy, float(np.abs(r.keypoints[j][..., :2] - ref["keypoints"][..., :2]).max()))
            kvis = max(kvis, float(np.abs(r.keypoints[j][..., 2] - ref["keypoints"][..., 2]).max()))
    with capsys.disabled():
        print(f"\nLoupe vs Ultralytics {MANIFEST['ultralytics']} pose: max box deviation {box:.3g} px, keypoint "
              f"{kxy:.3g} px, visibility {kvis:.3g}")
    assert box <= BOX_TOL and kxy <= KP_TOL and kvis <= SCORE_TOL
