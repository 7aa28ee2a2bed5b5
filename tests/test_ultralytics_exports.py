"""Real Ultralytics exports open with no card, and Loupe's decoding equals Ultralytics' own.

tests/data/ultralytics holds tiny ONNX files exported by Ultralytics itself (detect: YOLO11 and
YOLOv8 heads, ``1 x (4 + C) x A``; YOLO26 exported both NMS-free, ``1 x 300 x 6`` with
``end2end: True``, and the default way, ``1 x 84 x 2100`` with ``end2end: False``; RT-DETR,
one ``1 x 300 x 6`` output of normalised cx, cy, w, h, score, class, its input stretched;
classify: YOLO11-cls), two PNG frames of two aspect ratios, and what Ultralytics' own predictor
(``YOLO(onnx).predict(png, conf=0.25, iou=0.7, max_det=300)``, ``RTDETR(onnx).predict`` for
RT-DETR) returned on them, and the model inputs its predictors built (``input*__*.png``). The README there
says how they were made (tools/make_ultralytics_refs.py, in a venv of its own: Ultralytics is AGPL
and never a dependency of Loupe). Each model is opened here with no sidecar, the card read from
Ultralytics' metadata, and run on the PNGs in the window's path (``load_model`` + ``Runner``:
prepare, engine.run, postprocess) and through ``loupe analyze``.

Tolerances, and why:

- Detection boxes: Loupe's letterbox is the same as Ultralytics' (cv2 INTER_LINEAR resize to
  ``round(side * gain)``, centred padding of 114 with the odd pixel at the bottom/right) and both
  feed RGB / 255 in float32, so the model input differs at most in the last bit (Loupe multiplies
  by 1/255 where Ultralytics divides) and the same ONNX graph gives the same boxes but for float
  rounding (ONNX Runtime's version and CPU kernels). Ultralytics 8.4 maps boxes back per axis
  from the rounded resized size (``scale_boxes``: ``x / (new_w / w)`` after the padding), which
  is the exact inverse of the resize. Boxes are compared within BOX_TOL = 0.01 frame pixels
  (measured with per-axis mapping: 4.6e-4 px at most, Loupe's ONNX Runtime 1.31 vs the
  references' 1.32 on a 2-core Xeon; test_measured_deviation_is_reported prints it); the
  ``analyze`` JSONL rounds boxes to 2 decimals, so there the tolerance is BOX_TOL + 0.005.
- Scores within SCORE_TOL = 1e-4 (measured 1.8e-5 at most: the models move their scores by up
  to ~2e-5 when the input's last bit changes, manifest ``rounding_shift``, and by up to 2e-5
  with ONNX Runtime's graph optimisations off, i.e. other kernels; the JSONL rounds scores to 4
  decimals: + 5e-5).
- Reference boxes are clipped to the frame as Loupe's are (Ultralytics' RT-DETR predictor
  leaves them unclipped), and boxes wholly outside the frame (in the letterbox padding), which
  Ultralytics reports with zero width or height and Loupe drops by design, are left out of the
  reference (``visible``); the rest:
- Same number of boxes and the same class for each: the references were made so that no
  candidate score lies within 1e-5 of the threshold, no best class within 1e-4 of the runner-up,
  and no IoU with a kept box within 3e-3 of the IoU threshold (manifest ``margins``), far above
  the float noise, so a disagreement there is a decoding difference, not rounding.
- Classification: Ultralytics resizes the short side with torchvision on a PIL image (bilinear
  with antialiasing) then centre-crops; Loupe's centre crop resizes with cv2 INTER_AREA. The two
  inputs differ by 0.6 grey levels on average (13 at most), which moved the probabilities by
  2.7e-3 at most (measured); PROB_TOL = 0.01. Top-1 and top-5 must be the same (the references' top-1/top-2 and top-5/top-6
  gaps are >= 0.024, more than twice PROB_TOL).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from loupe.cli import main
from loupe.run.pipeline import Runner, load_model
from loupe.sources.open import open_source
from loupe.tasks.detection import count_column

DATA = Path(__file__).parent / "data" / "ultralytics"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
MODELS = MANIFEST["models"]
FRAMES = sorted(MANIFEST["frames"])
DETECTORS = sorted(n for n, m in MODELS.items() if m["task"] == "detect")
LETTERBOXED = sorted(n for n in DETECTORS if MODELS[n]["metadata_props"]["head"] != "RTDETRDecoder")
CLASSIFIERS = sorted(n for n, m in MODELS.items() if m["task"] == "classify")

BOX_TOL = 0.01  # frame pixels
SCORE_TOL = 1e-4
PROB_TOL = 0.01
#: classifier input, Loupe's centre crop vs Ultralytics', in grey levels: measured mean 0.57 and
#: 0.67, 99th percentile 4 and 5, max 11 and 13 (bikes, bunny)
CROP_MEAN_TOL = 1.0
CROP_P99_TOL = 8


def reference(model: str, frame: str) -> dict:
    return json.loads((DATA / f"{Path(model).stem}__{Path(frame).stem}.json").read_text())


def visible(ref: dict) -> dict:
    """The reference as Loupe's contract shows it: boxes clipped to the frame (Ultralytics' YOLO
    predictor clips them too; its RT-DETR predictor does not, e.g. ``[544, -13.6, 672, 40.8]``
    on a 640 x 272 frame), and without the boxes that lie wholly outside it (in the letterbox
    padding: Ultralytics reports them with zero width or height, e.g. ``[253.5, 272, 345.2,
    272]``; Loupe, by design (loupe.tasks.detection), drops a box when nothing of it is left
    inside the frame). Everything else must be the same."""
    b = np.asarray(ref["boxes_xyxy"], np.float64).reshape(-1, 4)
    h, w = ref["orig_hw"]
    b = np.clip(b, 0, [w, h, w, h])
    wh = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    assert not ((wh > 0) & (wh < 10 * BOX_TOL)).any(), "a reference box is all but degenerate: ambiguous"
    keep = wh > 0
    out = dict(ref)
    out["boxes_xyxy"] = b[keep].tolist()
    for k in ("scores", "classes", "labels"):
        out[k] = [v for v, ok in zip(ref[k], keep) if ok]
    return out


def names_of(model: str) -> tuple[str, ...]:
    import ast

    names = ast.literal_eval(MODELS[model]["metadata_props"]["names"])
    return tuple(names[i] for i in range(len(names)))


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> Path:
    """The committed models copied to a folder of their own: nothing Loupe writes (a sidecar)
    may land in tests/data, and a test can check that none is written."""
    d = tmp_path_factory.mktemp("ultralytics")
    for name in MODELS:
        shutil.copy(DATA / name, d / name)
    for frame in FRAMES:
        shutil.copy(DATA / frame, d / frame)
    return d


@cache
def _loaded(path: str):
    return load_model(path, providers="cpu", threads=1)


def window_result(copies: Path, model: str, frame: str):
    """What the window computes for this frame: the model loaded as the window loads it, the
    frame read by its image source, one Runner pass (prepare -> engine.run -> postprocess)."""
    lm = _loaded(str(copies / model))
    with open_source(copies / frame) as src:
        f = next(iter(src))
    (res,) = Runner([lm]).process(f).results
    return lm, res.result


def match(ref_boxes: np.ndarray, ref_classes: np.ndarray, boxes: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """For each reference box, the index of Loupe's box of the same class nearest to it (largest
    coordinate difference); asserts the pairing is one-to-one. Order is not compared: equal
    scores may come in either order."""
    assert len(boxes) == len(ref_boxes), f"{len(boxes)} boxes, Ultralytics kept {len(ref_boxes)}"
    if not len(boxes):
        return np.zeros(0, int)
    d = np.abs(ref_boxes[:, None, :] - boxes[None, :, :]).max(-1)
    d[ref_classes[:, None] != classes[None, :]] = np.inf
    j = d.argmin(1)
    assert np.isfinite(d[np.arange(len(j)), j]).all(), "a reference box has no box of its class"
    assert len(set(j.tolist())) == len(j), "two reference boxes matched the same box"
    return j


# --- the committed data -------------------------------------------------------------------
def test_committed_models_are_the_ones_the_references_were_made_with():
    for name, m in MODELS.items():
        data = (DATA / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == m["sha256"], name
        assert len(data) < 1_500_000, f"{name} is {len(data)} bytes"
    assert sum((DATA / n).stat().st_size for n in MODELS) < 5_000_000
    for model in MODELS:
        for frame in FRAMES:
            assert reference(model, frame)["orig_hw"] == MANIFEST["frames"][frame]["hw"]


# --- the card read from Ultralytics' metadata ------------------------------------------------
@pytest.mark.parametrize("model", DETECTORS + CLASSIFIERS)
def test_metadata_is_read_as_the_card_with_no_sidecar(copies, model):
    lm = _loaded(str(copies / model))
    card, md = lm.engine.card, MODELS[model]["metadata_props"]
    assert card.origin == "ultralytics"
    assert card.labels == names_of(model)
    assert tuple(card.input.fixed_size) == tuple(MODELS[model]["imgsz"])
    assert card.input.color == "RGB" and card.input.scale == pytest.approx(1 / 255)
    if MODELS[model]["task"] == "detect" and md["head"] == "RTDETRDecoder":
        # Ultralytics' RT-DETR predictor stretches the frame to imgsz (no letterbox), and its
        # decoder has done the top-k: no NMS
        assert card.task == "detection" and lm.task.name == "detection"
        assert not card.input.letterbox and not card.input.center_crop
        assert not lm.task.needs_nms
        assert (lm.task.score_threshold, lm.task.max_detections) == (0.25, 300)
    elif MODELS[model]["task"] == "detect":
        assert card.task == "detection" and lm.task.name == "detection"
        assert card.input.letterbox and card.input.pad_value == 114
        want = "end2end" if md["end2end"] == "True" else "yolov8"
        assert lm.task.format == want
        assert lm.task.needs_nms == (want == "yolov8")
        assert (lm.task.score_threshold, lm.task.iou_threshold, lm.task.max_detections) == (0.25, 0.7, 300)
    else:
        assert card.task == "classification" and lm.task.name == "classification"
        assert card.input.center_crop
    assert not list(copies.glob("*.loupe.json")), "opening a model wrote a sidecar"


# --- detection -------------------------------------------------------------------------------
@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize("model", DETECTORS)
def test_detections_equal_ultralytics_in_the_window_path(copies, model, frame):
    ref = visible(reference(model, frame))
    _, r = window_result(copies, model, frame)
    h, w = ref["orig_hw"]
    assert r.frame_hw == (h, w)
    rb = np.asarray(ref["boxes_xyxy"], np.float64).reshape(-1, 4)
    rs, rc = np.asarray(ref["scores"], np.float64), np.asarray(ref["classes"], np.float64)
    assert len(rb) >= 10, "too few boxes on the frame for a meaningful comparison"
    j = match(rb, rc.astype(int), r.boxes.astype(np.float64), r.classes.astype(int))
    np.testing.assert_allclose(r.boxes[j], rb, rtol=0, atol=BOX_TOL)
    np.testing.assert_allclose(r.scores[j], rs, rtol=0, atol=SCORE_TOL)
    assert [r.labels[c] for c in r.classes[j]] == ref["labels"]
    assert (np.diff(r.scores) <= 0).all(), "scores not sorted descending"
    assert (r.boxes[:, [0, 2]] >= 0).all() and (r.boxes[:, [0, 2]] <= w).all()
    assert (r.boxes[:, [1, 3]] >= 0).all() and (r.boxes[:, [1, 3]] <= h).all()
    counts = np.bincount(rc.astype(int), minlength=len(r.labels))
    assert r.counts.tolist() == counts.tolist()


@pytest.mark.parametrize("model", DETECTORS)
def test_detections_equal_ultralytics_in_analyze(copies, tmp_path, model, capsys):
    for frame in FRAMES:
        ref = visible(reference(model, frame))
        out = tmp_path / f"{Path(model).stem}_{Path(frame).stem}.jsonl"
        rc = main(["analyze", str(copies / frame), "--model", str(copies / model), "--out", str(out), "--quiet"])
        assert rc == 0, capsys.readouterr().err
        (row,) = [json.loads(line) for line in out.read_text().splitlines()]
        dets = row["detections"]
        assert row["count"] == len(ref["scores"])
        for label in set(names_of(model)):
            assert row[count_column(label)] == ref["labels"].count(label), label
        boxes = np.asarray([d["box"] for d in dets], np.float64).reshape(-1, 4)
        classes = np.asarray([d["class"] for d in dets], int)
        j = match(np.asarray(ref["boxes_xyxy"]).reshape(-1, 4), np.asarray(ref["classes"], int), boxes, classes)
        np.testing.assert_allclose(boxes[j], np.asarray(ref["boxes_xyxy"]).reshape(-1, 4), rtol=0,
                                   atol=BOX_TOL + 0.005)
        np.testing.assert_allclose(np.asarray([d["score"] for d in dets])[j], ref["scores"], rtol=0,
                                   atol=SCORE_TOL + 5e-5)
        assert [dets[k]["label"] for k in j] == ref["labels"]
    assert not list(copies.glob("*.loupe.json")), "analyze wrote a sidecar"


# --- classification ----------------------------------------------------------------------------
@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize("model", CLASSIFIERS)
def test_classification_equals_ultralytics_in_the_window_path(copies, model, frame):
    ref = reference(model, frame)
    _, r = window_result(copies, model, frame)
    assert r.top1 == ref["top1"]
    assert r.top[:5].tolist() == ref["top5"]
    np.testing.assert_allclose(r.probs, ref["probs"], rtol=0, atol=PROB_TOL)
    assert r.probs.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("model", CLASSIFIERS)
def test_classification_equals_ultralytics_in_analyze(copies, tmp_path, model, capsys):
    names = names_of(model)
    for frame in FRAMES:
        ref = reference(model, frame)
        out = tmp_path / f"{Path(frame).stem}.jsonl"
        rc = main(["analyze", str(copies / frame), "--model", str(copies / model), "--out", str(out), "--quiet"])
        assert rc == 0, capsys.readouterr().err
        (row,) = [json.loads(line) for line in out.read_text().splitlines()]
        assert row["top1"] == names[ref["top1"]]
        assert row["top1_score"] == pytest.approx(ref["probs"][ref["top1"]], abs=PROB_TOL)
        assert [t["class"] for t in row["topk"]][:5] == ref["top5"]
        assert [t["label"] for t in row["topk"]][:5] == [names[i] for i in ref["top5"]]


# --- the deviation, measured ------------------------------------------------------------------
def test_measured_deviation_is_reported(copies, capsys):
    """Not a second check: prints the largest deviations found (pytest -s shows them), which the
    tolerances above were set from."""
    box = score = prob = 0.0
    for frame in FRAMES:
        for model in DETECTORS:
            ref = visible(reference(model, frame))
            _, r = window_result(copies, model, frame)
            rb = np.asarray(ref["boxes_xyxy"]).reshape(-1, 4)
            j = match(rb, np.asarray(ref["classes"], int), r.boxes.astype(np.float64), r.classes.astype(int))
            if len(j):
                box = max(box, float(np.abs(r.boxes[j] - rb).max()))
                score = max(score, float(np.abs(r.scores[j] - np.asarray(ref["scores"])).max()))
        for model in CLASSIFIERS:
            _, r = window_result(copies, model, frame)
            prob = max(prob, float(np.abs(r.probs - np.asarray(reference(model, frame)["probs"])).max()))
    with capsys.disabled():
        print(f"\nLoupe vs Ultralytics {MANIFEST['ultralytics']}: max box deviation {box:.3g} px, "
              f"max score deviation {score:.3g}, max classification probability deviation {prob:.3g}")
    assert box <= BOX_TOL and score <= SCORE_TOL and prob <= PROB_TOL


# --- the model input itself ------------------------------------------------------------------
def _fed(copies: Path, model: str, frame: str) -> np.ndarray:
    """The uint8 RGB image Loupe feeds ``model`` for ``frame`` (its NCHW float input x 255)."""
    lm = _loaded(str(copies / model))
    with open_source(copies / frame) as src:
        f = next(iter(src))
    feeds, _ = lm.task.prepare(f)
    (x,) = feeds.values()
    return np.rint(x[0].transpose(1, 2, 0) * 255).astype(np.int16)


def _theirs(kind: str, model: str, frame: str) -> np.ndarray:
    h, w = MODELS[model]["imgsz"]
    bgr = cv2.imread(str(DATA / f"{kind}__{h}x{w}__{frame}"))
    assert bgr is not None
    return bgr[:, :, ::-1].astype(np.int16)


@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize("model", DETECTORS)
def test_detector_input_equals_ultralytics(copies, model, frame):
    """Loupe's input is what Ultralytics' predictor feeds (input__*.png: LetterBox for YOLO,
    input_stretch__*.png: RT-DETR's plain stretch, LetterBox(scale_fill=True)): the same cv2
    INTER_LINEAR resize of uint8 (fixed-point, bit-exact on every CPU), the same padding.
    Measured for the letterboxed ones: identical (0 pixels differ, OpenCV 5.1.0 on both sides).
    One grey level on 0.1 % of the pixels is allowed for a future OpenCV release whose rounding
    differs from the one that wrote the PNG."""
    kind = "input" if model in LETTERBOXED else "input_stretch"
    diff = np.abs(_fed(copies, model, frame) - _theirs(kind, model, frame))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())


@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize("model", CLASSIFIERS)
def test_classification_input_is_close_to_ultralytics(copies, model, frame):
    """Loupe's centre crop (cv2 INTER_AREA) against Ultralytics' (torchvision Resize on a PIL
    image: antialiased bilinear, then CenterCrop), input_cls__*.png: the same crop of the same
    frame, resampled differently (CROP_MEAN_TOL, CROP_P99_TOL: twice what was measured, about)."""
    diff = np.abs(_fed(copies, model, frame) - _theirs("input_cls", model, frame))
    print(f"{model} {frame}: input grey-level difference max {diff.max()}, mean {diff.mean():.3f}")
    assert diff.mean() < CROP_MEAN_TOL and np.percentile(diff, 99) <= CROP_P99_TOL


# --- decoding alone: Loupe's postprocess fed Ultralytics' own input ---------------------------------
def _result_from_their_input(copies: Path, model: str, frame: str):
    """Loupe's task on ``frame`` with the model input replaced by the one Ultralytics' predictor
    built (input*__*.png, / 255 in float32 as Ultralytics does): what is left to differ is the
    decoding and the mapping back, not the resampling. Measured (ONNX Runtime 1.31 here vs 1.32
    for the references, 2-core Xeon): scores and probabilities identical, boxes within 3.1e-5 px
    (one float32 step); the tolerances stay those above, for other CPUs' kernels (2e-5 in scores
    measured with ONNX Runtime's graph optimisations off)."""
    lm = _loaded(str(copies / model))
    with open_source(copies / frame) as src:
        f = next(iter(src))
    feeds, ctx = lm.task.prepare(f)
    kind = "input_cls" if model in CLASSIFIERS else "input" if model in LETTERBOXED else "input_stretch"
    rgb = _theirs(kind, model, frame).astype(np.float32)
    (name,) = feeds
    x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]) / np.float32(255)
    assert x.shape == feeds[name].shape
    return lm.task.postprocess(lm.engine.run({name: x}), ctx)


@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize("model", DETECTORS)
def test_decoding_of_their_input_equals_ultralytics(copies, model, frame):
    ref = visible(reference(model, frame))
    r = _result_from_their_input(copies, model, frame)
    rb = np.asarray(ref["boxes_xyxy"], np.float64).reshape(-1, 4)
    j = match(rb, np.asarray(ref["classes"], int), r.boxes.astype(np.float64), r.classes.astype(int))
    np.testing.assert_allclose(r.boxes[j], rb, rtol=0, atol=BOX_TOL)
    np.testing.assert_allclose(r.scores[j], ref["scores"], rtol=0, atol=SCORE_TOL)


@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize("model", CLASSIFIERS)
def test_classification_of_their_input_equals_ultralytics(copies, model, frame):
    """Fed Ultralytics' own crop, the probabilities agree to float rounding (tolerance 1e-5;
    measured: identical), so PROB_TOL above is all preprocessing."""
    ref = reference(model, frame)
    r = _result_from_their_input(copies, model, frame)
    assert r.top[:5].tolist() == ref["top5"]
    np.testing.assert_allclose(r.probs, ref["probs"], rtol=0, atol=1e-5)
