"""A real Ultralytics segment export opens with no card, and Loupe's boxes and masks equal
Ultralytics' own.

tests/data/ultralytics holds a tiny YOLO11 segment export (``yolo11t_seg_320.onnx``: outputs
``1 x 41 x 2100`` = 4 box + 5 classes + 32 mask coefficients, and ``1 x 32 x 80 x 80``
prototypes) made by tools/make_ultralytics_seg_refs.py in a venv of its own (Ultralytics is
AGPL: never a dependency), ``seg_manifest.json`` and Ultralytics' predictions on the two PNG
frames: boxes, scores, classes, and each mask in source-frame pixels as Ultralytics maps it back
(``masks.data`` through ``ops.scale_masks``, above 0.5) as a run-length code and an area.

Tolerances, and why:

- Boxes and scores: as the detect exports (tests/test_ultralytics_exports.py: BOX_TOL,
  SCORE_TOL; boxes wholly in the letterbox padding, which Ultralytics keeps with zero width and
  Loupe drops, are left out of the reference). The same number of boxes means Loupe also drops
  the box Ultralytics drops for an empty mask (on each frame NMS keeps one box more than Ultralytics does).
- Masks: Loupe makes them with Ultralytics' two steps (logits upsampled to the input's pixels,
  above 0, cut to the box; the letterbox content resized bilinearly to the frame, above 0.5), so
  they differ only where a value lies within float rounding of a threshold: a pixel where the
  bilinear weights put a resized 0 / 1 edge at exactly 0.5, or a logit within ~1e-6 of 0.
  Measured: every instance's IoU 1.0 and one mask area 4 pixels off (1164 vs 1168) out of 53.
  Compared on the instance-id maps (the better instance on top, Ultralytics' masks stacked in
  Loupe's order), per instance: IoU >= MASK_IOU = 0.98 where the reference shows at least
  MIN_AREA = 30 pixels (a smaller mask is nearly all edge), and each ``mask_area`` within
  max(AREA_PX = 8, 1 %) of Ultralytics'.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from loupe.cli import main
from loupe.run.pipeline import Runner, load_model
from loupe.sources.open import open_source
from loupe.tasks.instances import InstancesResult
from tests.test_ultralytics_exports import BOX_TOL, SCORE_TOL, match

DATA = Path(__file__).parent / "data" / "ultralytics"
SEG = json.loads((DATA / "seg_manifest.json").read_text())
MODEL = "yolo11t_seg_320.onnx"
FRAMES = sorted(SEG["frames"])
MASK_IOU = 0.98
MIN_AREA = 30
AREA_PX = 8


def reference(frame: str) -> dict:
    """Ultralytics' prediction, without the boxes wholly outside the frame (zero width or height
    once clipped), boxes clipped to the frame."""
    ref = json.loads((DATA / f"{Path(MODEL).stem}__{Path(frame).stem}.json").read_text())
    h, w = ref["orig_hw"]
    b = np.clip(np.asarray(ref["boxes_xyxy"], np.float64).reshape(-1, 4), 0, [w, h, w, h])
    wh = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    assert not ((wh > 0) & (wh < 10 * BOX_TOL)).any(), "a reference box is all but degenerate: ambiguous"
    keep = wh > 0
    out = {"orig_hw": (h, w), "boxes_xyxy": b[keep]}
    for k in ("scores", "classes", "labels", "mask_area", "rle"):
        out[k] = [v for v, ok in zip(ref[k], keep) if ok]
    return out


def decode_rle(runs: list[int], hw: tuple[int, int]) -> np.ndarray:
    """Row-major run lengths alternating 0s and 1s, starting with 0s."""
    values = np.arange(len(runs)) % 2 == 1
    return np.repeat(values, runs).reshape(hw)


def assert_areas(got: np.ndarray, want: np.ndarray) -> None:
    off = np.abs(np.asarray(got, np.int64) - want)
    bad = off > np.maximum(AREA_PX, 0.01 * want)
    assert not bad.any(), f"mask areas {got[bad].tolist()}, Ultralytics {want[bad].tolist()}"


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ultralytics_seg")
    for name in (MODEL, *FRAMES):
        shutil.copy(DATA / name, d / name)
    return d


@pytest.fixture(scope="module")
def model(copies):
    return load_model(str(copies / MODEL), providers="cpu", threads=1)


def window_result(copies: Path, model, frame: str) -> InstancesResult:
    with open_source(copies / frame) as src:
        f = next(iter(src))
    (res,) = Runner([model]).process(f).results
    return res.result


def test_committed_model_is_the_one_the_references_were_made_with():
    data = (DATA / MODEL).read_bytes()
    entry = SEG["models"][MODEL]
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert len(data) < 1_000_000
    for frame in FRAMES:
        assert reference(frame)["orig_hw"] == tuple(SEG["frames"][frame]["hw"])


def test_metadata_is_read_as_an_instances_card(copies, model):
    card = model.engine.card
    assert card.origin == "ultralytics" and card.task == "instances" and model.task.name == "instances"
    assert card.labels == ("person", "bicycle", "car", "motorcycle", "bus")
    assert card.input.letterbox and card.input.pad_value == 114 and tuple(card.input.fixed_size) == (320, 320)
    assert model.task.format == "yolov8-seg" and model.task.needs_nms
    assert card.output["outputs"] == {"predictions": "output0", "protos": "output1"}
    t = model.task
    assert (t.score_threshold, t.iou_threshold, t.max_detections) == (0.25, 0.7, 300)
    assert not list(copies.glob("*.loupe.json")), "opening the model wrote a sidecar"


@pytest.mark.parametrize("frame", FRAMES)
def test_boxes_and_masks_equal_ultralytics_in_the_window_path(copies, model, frame):
    ref = reference(frame)
    h, w = ref["orig_hw"]
    r = window_result(copies, model, frame)
    assert r.frame_hw == (h, w) and r.masks.shape == (h, w)  # small frames: no display cap
    assert len(ref["scores"]) >= 20, "too few boxes for a meaningful comparison"
    j = match(ref["boxes_xyxy"], np.asarray(ref["classes"]), r.boxes.astype(np.float64), r.classes.astype(int))
    np.testing.assert_allclose(r.boxes[j], ref["boxes_xyxy"], rtol=0, atol=BOX_TOL)
    np.testing.assert_allclose(r.scores[j], ref["scores"], rtol=0, atol=SCORE_TOL)
    assert [r.labels[c] for c in r.classes[j]] == ref["labels"]
    # areas: each whole mask
    want = np.asarray(ref["mask_area"])
    assert_areas(r.mask_areas[j], want)
    # the id maps: Ultralytics' masks stacked in Loupe's order (the better instance on top)
    theirs = np.zeros((h, w), np.int32)
    for k in np.argsort(j)[::-1]:  # reference instance k is Loupe's j[k]: paint Loupe's worst first
        theirs[decode_rle(ref["rle"][k], (h, w))] = j[k] + 1
    compared = 0
    for k, i in enumerate(j.tolist()):
        a, b = r.masks == i + 1, theirs == i + 1
        if b.sum() < MIN_AREA:
            continue
        iou = (a & b).sum() / (a | b).sum()
        assert iou >= MASK_IOU, f"instance {i} ({ref['labels'][k]}): mask IoU {iou:.3f}"
        compared += 1
    assert compared >= 10


def test_analyze_jsonl_mask_areas_equal_ultralytics(copies, tmp_path, capsys):
    for frame in FRAMES:
        ref = reference(frame)
        out = tmp_path / f"{Path(frame).stem}.jsonl"
        rc = main(["analyze", str(copies / frame), "--model", str(copies / MODEL), "--out", str(out), "--quiet"])
        assert rc == 0, capsys.readouterr().err
        (row,) = [json.loads(line) for line in out.read_text().splitlines()]
        assert row["task"] == "instances" and row["count"] == len(ref["scores"])
        dets = row["detections"]
        boxes = np.asarray([d["box"] for d in dets], np.float64).reshape(-1, 4)
        j = match(ref["boxes_xyxy"], np.asarray(ref["classes"]), boxes, np.asarray([d["class"] for d in dets]))
        np.testing.assert_allclose(boxes[j], ref["boxes_xyxy"], rtol=0, atol=BOX_TOL + 0.005)
        areas = np.asarray([d["mask_area"] for d in dets])[j]
        want = np.asarray(ref["mask_area"])
        assert_areas(areas, want)
