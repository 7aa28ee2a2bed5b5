"""Detection output formats decoded to candidate boxes, and class-aware NMS (pure numpy, Qt-free).

Each ``decode_<format>`` takes the model's outputs for one image (a leading batch axis of 1 is
dropped) and returns ``Candidates``: boxes ``x1, y1, x2, y2`` in MODEL-INPUT pixels, their scores
and class ids, keeping only those scoring strictly above the score threshold (as Ultralytics'
``non_max_suppression`` does). ``decode`` picks the decoder by the card's ``format``; ``nms``
is the greedy class-aware suppression YOLO outputs need. Mapping back to the frame is the task's
(``loupe.tasks.detection``). Which shapes fit which format is ``loupe.inference.formats``'.

Facts the decoders follow (from the exporters' documented output layouts, no code copied):

- ``yolov5``: ``A x (5 + C)`` rows ``cx, cy, w, h, objectness, class scores`` (all already
  sigmoid); score = objectness x best class score; boxes in input pixels.
- ``yolov8`` (YOLOv8, YOLO11, YOLOv10 without its end-to-end head): ``(4 + C) x A``, rows
  ``cx, cy, w, h`` in input pixels then class scores (already sigmoid), no objectness. The
  transposed ``A x (4 + C)`` is read too when the class count says which axis is which.
- ``end2end``: ``K x 6`` rows ``x1, y1, x2, y2, score, class``, NMS already done.
- ``detr``: boxes ``Q x 4`` normalised ``cx, cy, w, h`` (0..1 of the model input) and class
  logits ``Q x (C + 1)`` whose LAST class is "no object": softmax, drop it, best class.
- ``rtdetr``: the same boxes with ``Q x C`` class logits (sigmoid, no no-object class); or
  Ultralytics' single output ``Q x (4 + C)``: normalised ``cx, cy, w, h`` then scores already
  sigmoid.
- ``boxes_scores_labels``: ``N x 4`` boxes, ``N`` scores, ``N`` labels (torchvision, ONNX
  exports with NMS in the graph) and, with TensorRT's EfficientNMS, a detection count (only the
  first ``count`` rows hold detections).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

FORMATS = ("yolov5", "yolov8", "end2end", "detr", "rtdetr", "boxes_scores_labels")
#: formats whose outputs still hold overlapping candidates (the task runs ``nms`` on them)
NMS_FORMATS = frozenset({"yolov5", "yolov8"})
BOX_FORMATS = ("xyxy", "cxcywh", "xywh")
NMS_CHUNK = 128  # candidates NMS takes at a time (see ``nms``)
ACTIVATIONS = ("sigmoid", "softmax", "none")


class FormatError(ValueError):
    """Outputs that do not have the layout their format says (the task adds the model's name)."""


@dataclass(frozen=True)
class Candidates:
    """Decoded detections of one image before NMS: boxes (N, 4) float32 ``x1, y1, x2, y2`` in
    model-input pixels, scores (N,) float32, classes (N,) int32 (not sorted); index (N,) int64:
    the anchor (or query) each came from, where the decoder knows it (None otherwise): tasks
    built on detection pick their per-box outputs (keypoints, mask coefficients) with it."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    index: np.ndarray | None = None

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    def take(self, idx: np.ndarray) -> Candidates:
        return Candidates(self.boxes[idx], self.scores[idx], self.classes[idx],
                          None if self.index is None else self.index[idx])

    def __len__(self) -> int:
        return len(self.scores)


def _shape(a: np.ndarray) -> str:
    return " x ".join(str(d) for d in a.shape)


def unbatch(a: np.ndarray, rank: int, what: str) -> np.ndarray:
    """``a`` without its leading batch axes of size 1, checked to have ``rank`` axes."""
    a = np.asarray(a)
    orig = a
    while a.ndim > rank and a.shape[0] == 1:
        a = a[0]
    if a.ndim != rank:
        raise FormatError(f"expected {what}, got an output of shape {_shape(orig)}")
    return a


def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    """(N, 4) centre, width, height -> corners (float32)."""
    b = np.asarray(b, np.float32)
    out = np.empty(b.shape, np.float32)
    half_w, half_h = b[:, 2] * np.float32(0.5), b[:, 3] * np.float32(0.5)
    out[:, 0] = b[:, 0] - half_w
    out[:, 1] = b[:, 1] - half_h
    out[:, 2] = b[:, 0] + half_w
    out[:, 3] = b[:, 1] + half_h
    return out


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    """(N, 4) top-left corner, width, height -> corners (float32)."""
    b = np.asarray(b, np.float32)
    out = b.copy()
    out[:, 2] += b[:, 0]
    out[:, 3] += b[:, 1]
    return out


def _values_first(a: np.ndarray, extra: int, n_classes: int | None, default_first: bool) -> np.ndarray:
    """A (values x anchors) view of a 2-d prediction whose values per anchor are ``extra`` box
    (and objectness) numbers then ``n_classes`` scores, whichever axis they lie on. With no class
    count, the shorter axis holds the values (80 classes + 4 vs 8,400 anchors) when it holds more
    than ``extra``; a square one is taken as ``default_first`` says."""
    r, c = a.shape
    if n_classes is not None:
        want = extra + n_classes
        if r == want and (c != want or default_first):
            return a
        if c == want:
            return a.T
        raise FormatError(
            f"expected {extra} + {n_classes} classes = {want} values per anchor on one axis, got "
            f"{r} x {c}"
        )
    if r == c:
        return a if default_first else a.T
    for p in ((a, a.T) if r < c else (a.T, a)):
        if p.shape[0] > extra:  # the shorter axis, unless it is too short to hold a class score
            return p
    raise FormatError(f"expected more than {extra} values per anchor (boxes, then class scores), got {r} x {c}")


def _best_class(scores_cf: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Class ids (int32) of the best score of the kept anchors of a (classes x anchors) array."""
    return scores_cf[:, keep].argmax(axis=0).astype(np.int32)


def _yolo_scores(x: np.ndarray, activation: str) -> np.ndarray:
    return _activate(x, "sigmoid") if activation == "sigmoid" else x


def decode_yolov8(pred: np.ndarray, score_threshold: float, n_classes: int | None = None,
                  activation: str = "none") -> Candidates:
    """``1 x (4 + C) x A`` (or ``1 x A x (4 + C)``): ``cx, cy, w, h`` input pixels, C scores
    (``activation`` "sigmoid" when the export left them as logits)."""
    a = unbatch(pred, 2, "a 1 x (4 + C) x anchors YOLOv8 prediction")
    p = _values_first(a, 4, n_classes, default_first=True)
    cls = p[4:]
    best = cls.max(axis=0)  # the sigmoid is monotonic: the best logit is the best score
    conf = _yolo_scores(best, activation)
    keep = np.flatnonzero(conf > score_threshold)
    boxes = cxcywh_to_xyxy(p[:4, keep].T)
    return Candidates(boxes, conf[keep].astype(np.float32), _best_class(cls, keep), keep.astype(np.int64))


def decode_yolov5(pred: np.ndarray, score_threshold: float, n_classes: int | None = None,
                  activation: str = "none") -> Candidates:
    """``1 x A x (5 + C)``: ``cx, cy, w, h`` input pixels, objectness, C class scores; score =
    objectness x best class score (``activation`` "sigmoid" when the export left logits)."""
    a = unbatch(pred, 2, "a 1 x anchors x (5 + C) YOLOv5 prediction")
    p = _values_first(a, 5, n_classes, default_first=False)
    obj = _yolo_scores(p[4], activation)
    cand = np.flatnonzero(obj > score_threshold)  # obj x cls > t needs obj > t (scores <= 1)
    cls = _yolo_scores(p[5:, cand], activation) * obj[cand]
    conf = cls.max(axis=0) if cls.shape[1] else np.zeros(0, np.float32)
    sel = np.flatnonzero(conf > score_threshold)
    keep = cand[sel]
    boxes = cxcywh_to_xyxy(p[:4, keep].T)
    return Candidates(boxes, conf[sel].astype(np.float32), cls[:, sel].argmax(axis=0).astype(np.int32),
                      keep.astype(np.int64))


def decode_end2end(pred: np.ndarray, score_threshold: float, box_format: str = "xyxy", normalized: bool = False,
                   input_hw: tuple[int, int] | None = None) -> Candidates:
    """``1 x K x 6``: ``x1, y1, x2, y2, score, class`` (NMS done by the model). ``box_format``
    ``cxcywh`` / ``xywh`` and ``normalized`` (0..1 of ``input_hw``) read other box layouts, e.g.
    Ultralytics 8.4's RT-DETR export (normalised cx, cy, w, h, score, class)."""
    a = unbatch(pred, 2, "a 1 x K x 6 end-to-end prediction (x1, y1, x2, y2, score, class)")
    if a.shape[1] != 6:
        raise FormatError(f"expected 6 values per detection (x1, y1, x2, y2, score, class), got {_shape(a)}")
    keep = np.flatnonzero(a[:, 4] > score_threshold)
    d = a[keep]
    if box_format == "cxcywh":
        boxes = cxcywh_to_xyxy(d[:, :4])
    elif box_format == "xywh":
        boxes = xywh_to_xyxy(d[:, :4])
    elif box_format == "xyxy":
        boxes = d[:, :4].astype(np.float32)
    else:
        raise FormatError(f"box_format must be one of {', '.join(BOX_FORMATS)}, got {box_format!r}")
    if normalized:
        if input_hw is None:
            raise FormatError("normalized boxes need the model's input size")
        boxes = _scale_normalised(boxes, input_hw)
    return Candidates(boxes, d[:, 4].astype(np.float32), np.rint(d[:, 5]).astype(np.int32))


def _activate(x: np.ndarray, activation: str) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-np.clip(x, -80, 80)))
    if activation == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return x


def _scale_normalised(boxes: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    h, w = input_hw
    boxes[:, 0::2] *= np.float32(w)
    boxes[:, 1::2] *= np.float32(h)
    return boxes


def decode_detr(boxes: np.ndarray, logits: np.ndarray, input_hw: tuple[int, int], score_threshold: float,
                activation: str = "softmax") -> Candidates:
    """Boxes ``1 x Q x 4`` normalised ``cx, cy, w, h`` and class logits ``1 x Q x (C + 1)``, the
    last class "no object": softmax, drop it, best class."""
    b = unbatch(boxes, 2, "DETR boxes 1 x Q x 4")
    s = unbatch(logits, 2, "DETR class logits 1 x Q x (C + 1)")
    if b.shape[1] != 4 or s.shape[0] != b.shape[0] or s.shape[1] < 2:
        raise FormatError(f"expected boxes Q x 4 and class logits Q x (C + 1), got {_shape(b)} and {_shape(s)}")
    probs = _activate(s, activation)[:, :-1]
    conf = probs.max(axis=1)
    keep = np.flatnonzero(conf > score_threshold)
    xyxy = _scale_normalised(cxcywh_to_xyxy(b[keep]), input_hw)
    return Candidates(xyxy, conf[keep].astype(np.float32), probs[keep].argmax(axis=1).astype(np.int32))


def decode_rtdetr(boxes: np.ndarray, scores: np.ndarray | None, input_hw: tuple[int, int], score_threshold: float,
                  activation: str | None = None, n_classes: int | None = None) -> Candidates:
    """Boxes ``1 x Q x 4`` normalised ``cx, cy, w, h`` with class logits ``1 x Q x C`` (sigmoid
    by default), or, with ``scores`` None, one ``1 x Q x (4 + C)`` output whose scores are
    already sigmoid (Ultralytics' RT-DETR export)."""
    if scores is None:
        a = unbatch(boxes, 2, "an RT-DETR prediction 1 x Q x (4 + C)")
        if n_classes is not None and a.shape[1] != 4 + n_classes:
            raise FormatError(f"expected Q x (4 + {n_classes}) values, got {_shape(a)}")
        if a.shape[1] < 5:
            raise FormatError(f"expected Q x (4 + C) values (C >= 1), got {_shape(a)}")
        b, s = a[:, :4], a[:, 4:]
        activation = activation or "none"
    else:
        b = unbatch(boxes, 2, "RT-DETR boxes 1 x Q x 4")
        s = unbatch(scores, 2, "RT-DETR class scores 1 x Q x C")
        if b.shape[1] != 4 or s.shape[0] != b.shape[0]:
            raise FormatError(f"expected boxes Q x 4 and class scores Q x C, got {_shape(b)} and {_shape(s)}")
        activation = activation or "sigmoid"
    probs = _activate(s, activation)
    conf = probs.max(axis=1)
    keep = np.flatnonzero(conf > score_threshold)
    xyxy = _scale_normalised(cxcywh_to_xyxy(b[keep]), input_hw)
    return Candidates(xyxy, conf[keep].astype(np.float32), probs[keep].argmax(axis=1).astype(np.int32))


def decode_boxes_scores_labels(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, input_hw: tuple[int, int], score_threshold: float,
    count: np.ndarray | None = None, box_format: str = "xyxy", normalized: bool = False, label_offset: int = 0,
) -> Candidates:
    """Separate ``N x 4`` boxes, ``N`` scores and ``N`` labels (a leading batch axis of 1 is
    dropped); with ``count`` only its first rows. Labels minus ``label_offset`` are the class
    ids (torchvision counts background as 0: offset 1)."""
    b = unbatch(boxes, 2, "boxes N x 4")
    s = unbatch(scores, 1, "scores N").astype(np.float32, copy=False)
    lab = unbatch(labels, 1, "labels N")
    if b.shape[1] != 4 or not (len(b) == len(s) == len(lab)):
        raise FormatError(f"expected boxes N x 4, scores N and labels N, got {_shape(b)}, {_shape(s)} and {_shape(lab)}")
    n = len(s)
    if count is not None:
        c = np.asarray(count).ravel()
        if c.size != 1:
            raise FormatError(f"expected one detection count, got an output of shape {_shape(np.asarray(count))}")
        n = int(min(max(int(c[0]), 0), n))
    keep = np.flatnonzero(s[:n] > score_threshold)
    bb = np.asarray(b[keep], np.float32)
    if box_format == "cxcywh":
        bb = cxcywh_to_xyxy(bb)
    elif box_format == "xywh":
        bb = xywh_to_xyxy(bb)
    elif box_format != "xyxy":
        raise FormatError(f"box_format must be one of {', '.join(BOX_FORMATS)}, got {box_format!r}")
    else:
        bb = bb.copy()
    if normalized:
        bb = _scale_normalised(bb, input_hw)
    cls = np.rint(np.asarray(lab[keep], np.float64)).astype(np.int64) - int(label_offset)
    return Candidates(bb, s[keep].copy(), cls.astype(np.int32))


def decode(fmt: str, arrays: Mapping[str, np.ndarray], input_hw: tuple[int, int], score_threshold: float,
           n_classes: int | None = None, options: Mapping[str, Any] | None = None) -> Candidates:
    """The candidates of one image in format ``fmt``. ``arrays`` maps roles to outputs:
    ``predictions`` (yolov5, yolov8, end2end, single-output rtdetr), ``boxes`` and ``scores``
    (detr, rtdetr), ``boxes``, ``scores``, ``labels`` and optionally ``count``
    (boxes_scores_labels). ``options``: the card's ``loupe.output`` (``activation``,
    ``box_format``, ``normalized``, ``label_offset``)."""
    opts = dict(options or {})
    act = opts.get("activation")
    if act is not None and act not in ACTIVATIONS:
        raise FormatError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {act!r}")
    t = float(score_threshold)
    if fmt in ("yolov8", "yolov5"):
        if act not in (None, "none", "sigmoid"):
            raise FormatError(f"activation of a {fmt} prediction must be sigmoid or none, got {act!r}")
        dec = decode_yolov8 if fmt == "yolov8" else decode_yolov5
        return dec(arrays["predictions"], t, n_classes, act or "none")
    if fmt == "end2end":
        return decode_end2end(arrays["predictions"], t, box_format=str(opts.get("box_format", "xyxy")),
                              normalized=bool(opts.get("normalized", False)), input_hw=input_hw)
    if fmt == "detr":
        return decode_detr(arrays["boxes"], arrays["scores"], input_hw, t, act or "softmax")
    if fmt == "rtdetr":
        if "scores" in arrays:
            return decode_rtdetr(arrays["boxes"], arrays["scores"], input_hw, t, act, n_classes)
        return decode_rtdetr(arrays["predictions"], None, input_hw, t, act, n_classes)
    if fmt == "boxes_scores_labels":
        return decode_boxes_scores_labels(
            arrays["boxes"], arrays["scores"], arrays["labels"], input_hw, t, arrays.get("count"),
            box_format=str(opts.get("box_format", "xyxy")), normalized=bool(opts.get("normalized", False)),
            label_offset=int(opts.get("label_offset", 0)),
        )
    raise FormatError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


# ----------------------------------------------------------------------------- NMS

def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``x1, y1, x2, y2`` box with each of (N, 4) boxes (0 where both are empty)."""
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _overlaps(x1, y1, x2, y2, areas, i, rest, thr):
    """Which of the boxes ``rest`` (indices) overlap box(es) ``i`` with IoU > ``thr``; ``i`` a
    scalar index or an index column (then one row per box of ``i``)."""
    iw = np.minimum(x2[i], x2[rest])
    iw -= np.maximum(x1[i], x1[rest])
    ih = np.minimum(y2[i], y2[rest])
    ih -= np.maximum(y1[i], y1[rest])
    np.maximum(iw, 0, out=iw)
    np.maximum(ih, 0, out=ih)
    inter = iw * ih
    union = areas[rest] + areas[i] - inter
    np.maximum(union, np.float32(1e-12), out=union)
    return inter / union > thr


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float,
        max_detections: int) -> np.ndarray:
    """Greedy class-aware non-maximum suppression: the indices kept, best score first (ties in
    input order). Taking boxes best first, each suppresses the later boxes OF ITS OWN CLASS whose
    IoU with it exceeds ``iou_threshold`` (boxes of different classes never suppress each other;
    compared by class id, exactly, rather than by shifting each class's boxes apart); at most
    ``max_detections`` are kept.

    Whether a box is kept depends only on the boxes scoring above it, so the candidates are taken
    in chunks of 128, best first, and the work stops once ``max_detections`` are kept. Each chunk
    is first checked against every box kept so far (one vectorised IoU matrix); then, with ``S``
    the chunk's own "i suppresses j" matrix (i before j), its greedy outcome is the one ``keep``
    with ``keep[j] = not any(keep[i] and S[i, j])``: found by iterating that equation from
    "all kept" until it stops changing (a box's outcome is final once the boxes above it are,
    so this ends after at most chain-length + 1 rounds, usually 2 or 3; each round is one
    matrix-vector product) instead of a Python step per box."""
    n = len(scores)
    if n == 0 or max_detections <= 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-np.asarray(scores, np.float32), kind="stable")
    b = np.asarray(boxes, np.float32)[order]
    cls = np.asarray(classes)[order]
    x1, y1, x2, y2 = (np.ascontiguousarray(b[:, k]) for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    thr = np.float32(iou_threshold)
    kept = np.zeros(0, np.int64)
    for start in range(0, n, NMS_CHUNK):
        idx = np.arange(start, min(n, start + NMS_CHUNK))
        if kept.size:  # suppressed by a box kept from an earlier chunk
            k = kept[:, None]
            hit = _overlaps(x1, y1, x2, y2, areas, k, idx[None, :], thr) & (cls[k] == cls[idx][None, :])
            idx = idx[~hit.any(axis=0)]
        if idx.size:
            col = idx[:, None]
            sup = _overlaps(x1, y1, x2, y2, areas, col, idx[None, :], thr) & (cls[col] == cls[idx][None, :])
            sup = np.triu(sup, 1).astype(np.float32)
            keep = np.ones(idx.size, bool)
            for _ in range(idx.size + 1):
                new = (keep.astype(np.float32) @ sup) == 0
                if np.array_equal(new, keep):
                    break
                keep = new
            kept = np.concatenate([kept, idx[keep][: max_detections - kept.size]])
        if kept.size >= max_detections:
            break
    return order[kept]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best scores, best first (ties in input order): the formats whose
    NMS is done keep their best ``max_detections``."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    return order[: max(int(k), 0)]
