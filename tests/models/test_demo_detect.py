"""Demo detector: its network and losses, the synthetic scenes, the AP computation, the quick
training recipe, and the shipped model through Loupe's detection task."""

from __future__ import annotations

import math
import re

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from loupe.inference.card import ModelCard
from loupe.inference.engine import Engine
from loupe.inference.formats import anchor_counts
from loupe.resources import demo_models, resource_path
from loupe.sources.base import Frame
from loupe.tasks.detection import DetectionTask
from loupe_models.demos import detect as dd
from loupe_models.nets import detector as det

TORCH_THREADS = 2  # at most (tests/models/conftest.py sets and restores torch's threads)


def background(hw: tuple[int, int] = (192, 320), seed: int = 5) -> np.ndarray:
    """A cluttered stand-in for a video frame (no decoding needed)."""
    noise = np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


# --- scenes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_scenes_are_deterministic_with_boxes_inside_the_image(seed):
    bg = background()
    a = dd.render_scene(bg, np.random.default_rng(seed))
    b = dd.render_scene(bg.copy(), np.random.default_rng(seed))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.classes, b.classes)
    assert a.image.shape == bg.shape and a.image.dtype == np.uint8
    assert a.boxes.dtype == np.float32 and a.boxes.shape == (a.count, 4)
    assert 0 <= a.count <= dd.MAX_OBJECTS
    h, w = bg.shape[:2]
    assert (a.boxes[:, :2] >= 0).all() and (a.boxes[:, 2] <= w).all() and (a.boxes[:, 3] <= h).all()
    assert (a.boxes[:, 2:] - a.boxes[:, :2] >= 6).all()
    assert set(a.classes.tolist()) <= {0, 1, 2}


def test_scene_with_a_given_count_and_no_heavy_occlusion():
    s = dd.render_scene(background((256, 448)), np.random.default_rng(7), count=8)
    assert s.count == 8
    for i in range(s.count):  # every later object covers at most MAX_COVER of an earlier box
        for j in range(i + 1, s.count):
            assert dd._covers(s.boxes[j], s.boxes[i]) <= dd.MAX_COVER + 1e-6
    assert dd.render_scene(background(), np.random.default_rng(7), count=0).count == 0


@pytest.mark.parametrize("kind", dd.LABELS)
@pytest.mark.parametrize("paint_seed", [0, 2])  # 2: with a 2 px outline
def test_a_drawn_shape_fills_exactly_its_box(kind, paint_seed):
    """The box is the polygon's extent: the painted pixels reach each side of the box (within
    the anti-aliased pixel) and nothing is painted outside it."""
    rng = np.random.default_rng(3)
    verts = dd.shape_outline(kind, 60.0, 1.2, 0.7, rng) + np.array([100.0, 80.0])
    canvas = np.zeros((160, 200, 3), np.float32)
    dd._draw(canvas, verts, np.random.default_rng(paint_seed))
    box = np.concatenate([verts.min(0), verts.max(0)])
    assert (box[2:] - box[:2]).max() == pytest.approx(60.0)
    ys, xs = np.nonzero(canvas.max(2) > 8)  # pixel k spans [k, k + 1)
    # inside the box but for OpenCV's anti-aliased edge (about a pixel) and a 2 px
    # outline, whose round ends stick out at sharp corners ...
    assert xs.min() >= box[0] - 3 and xs.max() + 1 <= box[2] + 3
    assert ys.min() >= box[1] - 3 and ys.max() + 1 <= box[3] + 3
    # ... and reaching each side of it
    assert xs.min() <= box[0] + 1 and xs.max() + 1 >= box[2] - 1
    assert ys.min() <= box[1] + 1 and ys.max() + 1 >= box[3] - 1


def test_letterboxed_scene_has_grey_bands_and_shifted_boxes():
    rng = np.random.default_rng(0)
    s = dd.letterboxed(lambda hw: dd.render_scene(background(hw), rng, count=4), (256, 448),
                       np.random.default_rng(1))
    assert s.image.shape == (256, 448, 3)
    band = (s.image == dd.PAD_VALUE).all(2)
    assert band[0].all() or band[:, 0].all()  # a band at the top or on the left
    content = ~band
    ys, xs = np.nonzero(content)
    for b in s.boxes:  # the boxes lie in the content area
        assert b[0] >= xs.min() - 1 and b[2] <= xs.max() + 1
        assert b[1] >= ys.min() - 1 and b[3] <= ys.max() + 1


# --- network and losses ----------------------------------------------------------------------
def test_anchor_count_is_yolov8s_for_the_input():
    model = dd.build_model().eval()
    head = det.YoloV8Output(model, dd.INPUT_HW).eval()
    with torch.no_grad():
        out = head(torch.zeros(1, 3, *dd.INPUT_HW))
    a = sum(math.ceil(dd.INPUT_HW[0] / s) * math.ceil(dd.INPUT_HW[1] / s) for s in (8, 16, 32))
    assert out.shape == (1, 4 + len(dd.LABELS), a) == (1, 7, 2352)
    assert a in anchor_counts(dd.INPUT_HW)  # the guesser's YOLO anchor counts hold it too
    scores = out[0, 4:]
    assert ((scores >= 0) & (scores <= 1)).all()
    assert (out[0, 2:4] > 0).all()  # widths and heights


def test_yolov8_output_is_centre_and_size_from_the_distances():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            pts, _ = det.anchor_points(x.shape[-2:])
            a = pts.shape[0]
            dist = torch.arange(a * 4, dtype=torch.float32).reshape(1, a, 4) % 7 + 1
            logits = torch.linspace(-3, 3, a * 3).reshape(1, a, 3)
            return logits, dist

    head = det.YoloV8Output(Fixed(), (64, 96))
    out = head(torch.zeros(1, 3, 64, 96))[0].numpy()
    pts, strides = det.anchor_points((64, 96))
    assert out.shape == (7, pts.shape[0]) and pts.shape[0] == 8 * 12 + 4 * 6 + 2 * 3
    assert strides[0] == 8 and strides[-1] == 32
    np.testing.assert_allclose(pts[:2].numpy(), [[4, 4], [12, 4]])  # row-major cell centres
    _, dist = Fixed()(torch.zeros(1, 3, 64, 96))
    lt, rb = dist[0, :, :2].numpy(), dist[0, :, 2:].numpy()
    boxes = np.concatenate([pts.numpy() - lt, pts.numpy() + rb], 1)
    np.testing.assert_allclose(out[:2].T, (boxes[:, :2] + boxes[:, 2:]) / 2, atol=1e-5)
    np.testing.assert_allclose(out[2:4].T, boxes[:, 2:] - boxes[:, :2], atol=1e-5)
    np.testing.assert_allclose(out[4:].T, 1 / (1 + np.exp(-np.linspace(-3, 3, out.shape[1] * 3)
                                                           .reshape(-1, 3))), atol=1e-6)


def test_assignment_takes_central_cells_of_the_right_level_and_the_smaller_box():
    pts, strides = det.anchor_points((128, 128))
    assert (det.assign(pts, strides, torch.zeros(0, 4)) == -1).all()
    small = torch.tensor([[20.0, 20.0, 44.0, 40.0]])  # 24 px: stride 8 only
    idx = det.assign(pts, strides, small)
    pos = idx >= 0
    assert pos.any() and (strides[pos] == 8).all()
    p = pts[pos]
    assert ((p[:, 0] > 20) & (p[:, 0] < 44) & (p[:, 1] > 20) & (p[:, 1] < 40)).all()
    big = torch.tensor([[0.0, 0.0, 120.0, 100.0]])  # 120 px: stride 32 only
    pos = det.assign(pts, strides, big) >= 0
    assert pos.any() and (strides[pos] == 32).all()
    p = pts[pos]  # within CENTER_RADIUS strides of the centre (60, 50)
    assert ((p - torch.tensor([60.0, 50.0])).abs() < det.CENTER_RADIUS * 32).all()
    both = torch.cat([big, torch.tensor([[40.0, 30.0, 90.0, 80.0]])])  # 50 px: strides 8 and 16
    idx = det.assign(pts, strides, both)
    shared = (idx >= 0) & (strides == 16)
    assert shared.any() and (idx[shared] == 1).all()  # a cell both could take goes to the smaller


def test_losses_fall_when_the_model_fits_one_batch():
    torch.manual_seed(0)
    model = dd.build_model()
    scenes = [dd.render_scene(background((96, 128), s), np.random.default_rng(s), count=3)
              for s in range(2)]
    x = dd.normalise(np.stack([s.image for s in scenes]))
    targets = [(torch.from_numpy(s.boxes), torch.from_numpy(s.classes)) for s in scenes]
    pts, strides = det.anchor_points((96, 128))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    first = None
    for _ in range(15):
        parts = det.detection_losses(*model(x), pts, strides, targets)
        first = first or {k: float(v.detach()) for k, v in parts.items()}
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
    assert first["positives"] > 0
    assert float(parts["box"].detach()) < 0.8 * first["box"]
    assert float(parts["loss"].detach()) < first["loss"]


# --- decoding and AP -------------------------------------------------------------------------
def test_average_precision_is_the_all_point_interpolated_area():
    assert dd.average_precision(np.array([0.9, 0.8]), np.array([True, True]), 2) == 1.0
    # tp, fp, tp of 2 objects: recall 0.5 at precision 1, then 1.0 at 2/3
    assert dd.average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]),
                                2) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # the same with 4 objects: half of them never found
    assert dd.average_precision(np.array([0.7, 0.9, 0.8]), np.array([True, True, False]),
                                4) == pytest.approx(0.25 + 0.25 * 2 / 3)
    # a false alarm ranked first: precision 1/2 at recall 0.5 is lifted to the 2/3 reached
    # later (precision made non-increasing from the right)
    assert dd.average_precision(np.array([0.9, 0.8, 0.1]), np.array([False, True, True]),
                                2) == pytest.approx(2 / 3)
    assert dd.average_precision(np.zeros(0), np.zeros(0, bool), 3) == 0.0
    assert math.isnan(dd.average_precision(np.array([0.5]), np.array([False]), 0))


def test_matching_is_greedy_by_score_and_one_to_one():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    det_boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 31], [50, 50, 60, 60]],
                         np.float32)
    tp = dd.match(det_boxes, np.array([0.5, 0.9, 0.8, 0.7]), gt)
    assert tp.tolist() == [False, True, True, False]  # the better-scored duplicate wins


def _yolo(boxes_cxcywh, scores):
    return np.concatenate([np.asarray(boxes_cxcywh, np.float32).T,
                           np.asarray(scores, np.float32).T])


def test_decode_keeps_the_best_of_overlapping_same_class_boxes():
    out = _yolo([[50, 50, 20, 20], [51, 50, 20, 20], [51, 50, 20, 20], [150, 50, 10, 10]],
                [[0.9, 0.0, 0.1], [0.8, 0.0, 0.0], [0.0, 0.7, 0.0], [0.3, 0.0, 0.0]])
    boxes, scores, classes = dd.decode_yolov8(out, 0.3)
    # the second box is suppressed (same class), the third kept (another class), the fourth is
    # not strictly above the threshold
    np.testing.assert_allclose(boxes, [[40, 40, 60, 60], [41, 40, 61, 60]])
    assert scores.tolist() == pytest.approx([0.9, 0.7]) and classes.tolist() == [0, 1]
    m = dd.collect(out[None], [dd.Scene(np.zeros((100, 200, 3), np.uint8),
                                        np.array([[40, 40, 60, 60]], np.float32), np.array([0]))])
    stats = dd.summarise(m, 0.5)
    assert stats["ap50_disc"] == 1.0 and math.isnan(stats["ap50_triangle"])
    assert stats["precision"] == 0.5 and stats["recall"] == 1.0  # the triangle is a false alarm


# --- the quick recipe ------------------------------------------------------------------------
def _card(path) -> ModelCard:
    proto = onnx.load(str(path))
    assert proto.ir_version <= 10
    return ModelCard.from_metadata({p.key: p.value for p in proto.metadata_props})


@pytest.fixture(scope="module")
def quick_onnx(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_detect") / "demo_detection.onnx"
    assert dd.main(["--quick", "--out", str(out)]) == 0
    return out


def check_card(card: ModelCard) -> None:
    assert card.task == "detection" and card.is_demo and card.source["demo"] is True
    assert card.labels == dd.LABELS and len(card.palette) == len(dd.LABELS)
    out = card.output
    assert out["format"] == "yolov8"
    assert 0 < out["score_threshold"] < 1 and out["iou_threshold"] == dd.IOU_THRESHOLD
    assert out["max_detections"] == dd.MAX_DETECTIONS
    spec = card.input
    assert spec.fixed_size == dd.INPUT_HW and spec.letterbox and spec.pad_value == 114
    assert spec.color == "RGB" and spec.scale == pytest.approx(1 / 255)
    assert spec.mean == (0, 0, 0) and spec.std == (1, 1, 1)
    for key in ("architecture", "training_data", "heldout_map50", "heldout_precision",
                "heldout_recall", "heldout_scenes", "heldout_objects", "bikes_boxes_per_frame",
                *(f"heldout_ap50_{k}" for k in dd.LABELS)):
        assert key in card.source, key
    assert card.source["recipe"] == dd.RECIPE


def test_quick_recipe_exports_a_carded_yolov8_onnx(quick_onnx):
    check_card(_card(quick_onnx))
    sess = ort.InferenceSession(str(quick_onnx), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.shape == [1, 3, *dd.INPUT_HW] and out.shape == [1, 7, 2352]
    assert quick_onnx.stat().st_size <= 6 * 1024 * 1024
    task = DetectionTask(Engine(quick_onnx, providers="cpu"))  # the app takes it as it is
    assert task.format == "yolov8" and task.needs_nms and task.labels == dd.LABELS


def test_export_check_refuses_a_changed_weight(tmp_path):
    """The recipe's ONNX Runtime check compares with the float64 model that was meant to be
    exported: the exported file passes, a model with one bias moved does not."""
    from loupe_models.exporters.onnx import check_onnx

    torch.manual_seed(0)
    model = dd.build_model().eval()
    stats = {"scenes": 1, "objects": 0, "map50": float("nan"), "precision": float("nan"),
             "recall": float("nan"), **{f"ap50_{k}": float("nan") for k in dd.LABELS}}
    path = dd.export(model, tmp_path / "m.onnx", dd.make_card(stats, 0.4, 0.0, 0, 0))
    x = dd.normalise(dd.render_scene(background(dd.INPUT_HW), np.random.default_rng(2)).image[None])
    head = det.YoloV8Output(model, dd.INPUT_HW).eval()
    assert check_onnx(head, path, x).ok
    other = dd.build_model().eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.head8.box.bias.add_(0.05)
    assert not check_onnx(det.YoloV8Output(other, dd.INPUT_HW).eval(), path, x).ok


# --- the shipped model -----------------------------------------------------------------------
SHIPPED = resource_path("demo_detection.onnx")
NOTE = resource_path("demo_detection.md")
shipped = pytest.mark.skipif(not SHIPPED.is_file(), reason="resources/demo_detection.onnx not built")


@shipped
def test_shipped_card_is_complete_and_the_model_is_small():
    check_card(_card(SHIPPED))
    assert SHIPPED.stat().st_size <= 6 * 1024 * 1024
    assert SHIPPED in demo_models()
    sess = ort.InferenceSession(str(SHIPPED), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, *dd.INPUT_HW), np.float32)
    (out,) = sess.run(None, {sess.get_inputs()[0].name: x})
    assert out.shape == (1, 4 + len(dd.LABELS), 2352)


def held_out_frames():
    """Held-out frames of two aspect ratios (the first 20% of each clip is held out)."""
    from loupe_models.demos.density import _read_clip

    return {"bikes.mp4": _read_clip("bikes.mp4", 1)[0],  # 272 x 640
            "carphone_pristine.mp4": _read_clip("carphone_pristine.mp4", 1)[0]}  # 144 x 176


def _found(boxes, classes, scene) -> float:
    """Share of the scene's boxes matched (IoU >= 0.5, same class) by the detections."""
    hits = 0
    for c in range(len(dd.LABELS)):
        gt = scene.boxes[scene.classes == c]
        d = boxes[classes == c]
        if len(gt) and len(d):
            hits += int(dd.match(d, np.ones(len(d)), gt).sum())
    return hits / max(scene.count, 1)


@shipped
@pytest.mark.parametrize("clip", ["bikes.mp4", "carphone_pristine.mp4"])
def test_shipped_model_finds_the_objects_of_a_held_out_frame(clip):
    """Objects drawn on a held-out frame at its own size, fed the way the app feeds it (its
    letterbox) and decoded by Loupe's detection task: most boxes are found (IoU >= 0.5, the right
    class), and they agree with
    the raw ONNX output decoded here and mapped back through the letterbox by hand."""
    frame = held_out_frames()[clip]
    engine = Engine(SHIPPED, providers="cpu")
    task = DetectionTask(engine)
    found = []
    for seed in range(6):
        scene = dd.frame_scene(frame, np.random.default_rng(300 + seed), count=6)
        feeds, geo = task.prepare(Frame(scene.image, 0, 0.0))
        outputs = engine.run(feeds)
        r = task.postprocess(outputs, geo)
        assert r.frame_hw == frame.shape[:2] and r.labels == dd.LABELS
        found.append(_found(r.boxes, r.classes, scene))
        # the raw output decoded here, mapped to the frame by the input's geometry (and, to
        # within a pixel, by undoing the letterbox by hand)
        h, w = frame.shape[:2]
        boxes, scores, classes = dd.decode_yolov8(outputs[0][0], task.score_threshold)
        order = np.argsort(-scores, kind="stable")
        boxes, classes = boxes[order], classes[order]
        assert len(r.boxes) == len(boxes)
        np.testing.assert_allclose(r.boxes, np.clip(geo.to_frame(boxes), 0, [w, h, w, h]),
                                   atol=1e-3)
        np.testing.assert_array_equal(r.classes, classes)
        gain = min(dd.INPUT_HW[0] / h, dd.INPUT_HW[1] / w)
        top = (dd.INPUT_HW[0] - round(h * gain)) // 2
        left = (dd.INPUT_HW[1] - round(w * gain)) // 2
        by_hand = np.clip((boxes - [left, top, left, top]) / gain, 0, [w, h, w, h])
        np.testing.assert_allclose(r.boxes, by_hand, atol=1.0)
    # most boxes (the model finds 29 of 36 on either clip; one box more or less moves this by 0.03)
    assert np.mean(found) >= 0.7, found


@shipped
def test_shipped_model_reports_few_boxes_on_real_frames():
    """bikes.mp4 holds none of its objects: at the card's threshold it reports at most a few
    stray boxes per frame (the card's figure, measured by the recipe on every 10th frame)."""
    card = _card(SHIPPED)
    assert card.source["bikes_boxes_per_frame"] <= 1.0
    engine = Engine(SHIPPED, providers="cpu")
    task = DetectionTask(engine)
    frame = held_out_frames()["bikes.mp4"]
    feeds, geo = task.prepare(Frame(frame, 0, 0.0))
    assert task.postprocess(engine.run(feeds), geo).count <= 2


def _figure(v: float) -> str:
    return f"{v:.3f}"


@shipped
def test_note_states_the_cards_figures():
    card = _card(SHIPPED)
    text = NOTE.read_text()
    src = card.source
    for key in ("heldout_map50", "heldout_precision", "heldout_recall",
                *(f"heldout_ap50_{k}" for k in dd.LABELS)):
        assert _figure(src[key]) in text, (key, src[key])
    assert f"{card.output['score_threshold']:.2f}" in text
    assert f"{src['heldout_scenes']} " in text and f"{src['heldout_objects']} " in text
    assert re.search(rf"{SHIPPED.stat().st_size / 1e6:.1f} MB", text)
    assert dd.RECIPE in text


@shipped
def test_demo_menu_pairs_the_model_with_a_clip():
    """File ▸ Demo models names each model by its file's stem and offers its clip."""
    from loupe.ui.status import demo_clip_path

    assert SHIPPED.stem == "demo_detection"
    clip = demo_clip_path("detection")
    assert clip is not None and clip.name == "bikes.mp4" and clip.is_file()
