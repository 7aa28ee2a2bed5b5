"""Instance segmentation: detection boxes, each with a mask of the object inside it (Qt-free).

Format ``yolov8-seg`` (YOLOv8 / YOLO11 segment exports): two outputs,

- ``predictions`` ``1 x (4 + C + M) x A``: per anchor ``cx, cy, w, h`` (input pixels), C class
  scores, then M (32) mask coefficients (``A x (4 + C + M)`` is read too);
- ``protos`` ``1 x M x mh x mw``: M prototype masks, at a quarter of the input's resolution.

The boxes are the detection task's (``DetectionTask.decode_outputs`` on the first ``4 + C``
rows, ``select``: NMS, the frame mapping, clipping); each kept box's coefficients are the column
of its anchor (``Candidates.index``). Its mask, as Ultralytics' predictor makes it and maps it
to the frame (``process_mask(..., upsample=True)`` then ``scale_masks``; documented behaviour,
own code): the logits ``coefficients @ prototypes`` upsampled bilinearly to the input's pixels
(half-pixel centres, edges clamped), above 0 (sigmoid above ``mask_threshold``, 0.5), cut to the
box (input pixels ``x1 <= col < x2``); that binary mask resized bilinearly to the frame (with a
letterbox, its content cropped first) and above 0.5. A box whose mask has no pixel at the input's
resolution is dropped, as Ultralytics drops it (one whose mask lies only in the letterbox padding
stays, with an empty mask on the frame).

``instance_masks`` does both steps around each box only, as separable interpolation matrices:
``Wy @ (c @ P[:, rows, cols]) @ Wx.T`` for the box's input pixels, then the same from those to
the display pixels they reach, straight at the display resolution (the frame's size capped:
``display_hw``; ``analyze`` has no cap): the work grows with the boxes' areas, never N x the
frame.

Card ``loupe.output`` keys: those of detection (``score_threshold``, ``iou_threshold``,
``max_detections``, ``activation`` of the class scores) with ``format`` ``yolov8-seg``, plus
``outputs`` ``{"predictions": name, "protos": name}`` (found from the shapes when left out: the
rank-4 output holds the prototypes) and ``mask_threshold`` (default 0.5, on the sigmoid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from loupe.inference.engine import Engine, ModelError
from loupe.inference.preprocess import Geometry
from loupe.tasks.detection import DetectionResult, DetectionTask, _unit
from loupe.tasks.detection_formats import Candidates, FormatError, decode_yolov8, unbatch

FORMATS = ("yolov8-seg",)
DEFAULT_MASK_THRESHOLD = 0.5
MAX_INSTANCES = 65535  # ids in a uint16 map


@dataclass(frozen=True, kw_only=True)
class InstancesResult(DetectionResult):
    """A detection result with masks. ``masks``: (h, w) uint16 instance-id map at the display
    resolution (the frame's size, capped: ``mask_hw``), 0 where no instance is, ``i + 1`` where
    instance ``i`` is (boxes, scores, classes index it); where masks overlap the better-scoring
    instance is on top. ``mask_areas``: (N,) int64 each instance's whole mask (before overlaps
    are resolved) in SOURCE-FRAME pixels (counted at the display resolution and scaled by the
    frame-to-display area ratio when the display is capped; exact when it is not, as in
    ``analyze``)."""

    masks: np.ndarray
    mask_areas: np.ndarray

    def __post_init__(self) -> None:
        super().__post_init__()
        n = len(self.scores)
        if self.masks.dtype != np.uint16 or self.masks.ndim != 2:
            raise ValueError(f"masks must be a 2-d uint16 id map, got {self.masks.dtype} {self.masks.shape}")
        if self.mask_areas.dtype != np.int64 or self.mask_areas.shape != (n,):
            raise ValueError(f"mask_areas must be ({n},) int64, got {self.mask_areas.dtype} {self.mask_areas.shape}")
        if self.masks.size and int(self.masks.max()) > n:
            raise ValueError(f"the mask map names instance {int(self.masks.max())} of {n}")

    @property
    def mask_hw(self) -> tuple[int, int]:
        return self.masks.shape[0], self.masks.shape[1]


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return float(np.log(p / (1 - p)))


def _weights(n_out: int, n_in: int, pos: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_out, n_in) bilinear weights sampling an axis of ``n_in`` cells at positions ``pos``
    (cell-centre units) clamped to cells ``lo .. hi`` (as ``F.interpolate(...,
    align_corners=False)`` and ``cv2.resize`` clamp to the edge), and each row's first tap."""
    p = np.clip(pos, lo, hi)
    i0 = np.minimum(np.floor(p).astype(np.int64), max(hi - 1, lo))
    w1 = (p - i0).astype(np.float32)
    wmat = np.zeros((n_out, n_in), np.float32)
    rows = np.arange(n_out)
    wmat[rows, i0] = 1.0 - w1
    if hi > lo:
        wmat[rows, i0 + 1] += w1
    return wmat, i0


def _display_taps(geo: Geometry, out_hw: tuple[int, int]) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Per axis (rows, then columns): the weights with which each display pixel samples the
    model input's pixels, and its first tap. Letterbox: the content cropped and resized to the
    display as Ultralytics' ``scale_masks`` does (clamped to the content); other modes: each
    display pixel's centre mapped through the geometry (``Geometry.to_frame`` inverted)."""
    ih, iw = geo.input_hw
    fh, fw = geo.frame_hw
    dh, dw = out_hw
    out = []
    f = geo.to_frame(np.array([0.0, 0.0, 1.0, 1.0], np.float32)).astype(np.float64)
    for axis, (n_in, n_f, n_d) in enumerate(((ih, fh, dh), (iw, fw, dw))):
        u = np.arange(n_d, dtype=np.float64) + 0.5
        if geo.mode == "letterbox" and geo.content_hw is not None:
            start, size = geo.offset[axis], geo.content_hw[axis]
            pos = start + u * size / n_d - 0.5
            lo, hi = start, start + size - 1
        else:  # input = frame * s + o, per axis
            s = 1.0 / (f[3] - f[1]) if axis == 0 else 1.0 / (f[2] - f[0])
            o = -(f[1] if axis == 0 else f[0]) * s
            pos = (u * n_f / n_d) * s + o - 0.5
            lo, hi = 0, n_in - 1
        out.append(_weights(n_d, n_in, pos, max(lo, 0), min(hi, n_in - 1)))
    return tuple(out)


def box_ranges(boxes: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """(N, 4) int64 ``r0, r1, c0, c1``: the model-input pixels each box (input pixels) keeps,
    ``x1 <= col < x2`` and ``y1 <= row < y2`` (Ultralytics' ``crop_mask``)."""
    ih, iw = input_hw
    b = np.ceil(np.asarray(boxes, np.float64).reshape(-1, 4)).astype(np.int64)
    out = b[:, [1, 3, 0, 2]]
    np.clip(out[:, :2], 0, ih, out=out[:, :2])
    np.clip(out[:, 2:], 0, iw, out=out[:, 2:])
    return out


def instance_masks(protos: np.ndarray, coeffs: np.ndarray, boxes: np.ndarray, geo: Geometry,
                   out_hw: tuple[int, int], threshold: float = DEFAULT_MASK_THRESHOLD
                   ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Each instance's mask at the display size ``out_hw``, computed only around its box.

    ``protos`` (M, mh, mw) prototypes over the model input; ``coeffs`` (N, M); ``boxes`` (N, 4)
    in MODEL-INPUT pixels. As Ultralytics: the logits ``coeffs @ protos`` upsampled bilinearly to
    the input's pixels inside the box, above the threshold; that binary mask (zero elsewhere)
    resized bilinearly to the display (letterbox: its content crop) and above 0.5. Returns the
    display masks (bool), their display ranges ``r0, r1, c0, c1`` (N, 4) and whether each mask
    has any pixel at the input's resolution (N,) bool (Ultralytics drops boxes without)."""
    _m, mh, mw = protos.shape
    ih, iw = geo.input_hw
    n = len(coeffs)
    # prototype cells sampled by input pixel centres, and input pixels sampled by display pixels
    py, _ = _weights(ih, mh, (np.arange(ih) + 0.5) * mh / ih - 0.5, 0, mh - 1)
    px, _ = _weights(iw, mw, (np.arange(iw) + 0.5) * mw / iw - 0.5, 0, mw - 1)
    (dy, ty), (dx, tx) = _display_taps(geo, out_hw)
    inb = box_ranges(boxes, geo.input_hw)
    flat = np.ascontiguousarray(protos, np.float32)
    coeffs = np.asarray(coeffs, np.float32).reshape(n, -1)
    t = np.float32(_logit(threshold))
    masks: list[np.ndarray] = []
    ranges = np.zeros((n, 4), np.int64)
    present = np.zeros(n, bool)
    for i, (r0, r1, c0, c1) in enumerate(inb.tolist()):
        if r1 <= r0 or c1 <= c0:
            masks.append(np.zeros((0, 0), bool))
            continue
        pr = np.flatnonzero(py[r0:r1].any(0))
        pc = np.flatnonzero(px[c0:c1].any(0))
        patch = np.tensordot(coeffs[i], flat[:, pr[0]:pr[-1] + 1, pc[0]:pc[-1] + 1], axes=(0, 0))
        binary = (py[r0:r1, pr[0]:pr[-1] + 1] @ patch @ px[c0:c1, pc[0]:pc[-1] + 1].T) > t
        present[i] = binary.any()
        # display pixels with a tap in the box's input pixels (taps i0, i0 + 1)
        u0, u1 = int(np.searchsorted(ty, r0 - 1, "left")), int(np.searchsorted(ty, r1 - 1, "right"))
        v0, v1 = int(np.searchsorted(tx, c0 - 1, "left")), int(np.searchsorted(tx, c1 - 1, "right"))
        ranges[i] = (u0, u1, v0, v1)
        if not present[i] or u1 <= u0 or v1 <= v0:
            masks.append(np.zeros((max(u1 - u0, 0), max(v1 - v0, 0)), bool))
            continue
        up = dy[u0:u1, r0:r1] @ binary.astype(np.float32) @ dx[v0:v1, c0:c1].T
        masks.append(up > np.float32(0.5))
    return masks, ranges, present


def compose(masks: list[np.ndarray], ranges: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """The (h, w) uint16 id map: instance ``i`` as ``i + 1``, painted worst first so that the
    best (first) instance is on top where masks overlap."""
    ids = np.zeros(out_hw, np.uint16)
    for i in range(len(masks) - 1, -1, -1):
        mk = masks[i]
        if mk.size:
            r0, _r1, c0, _c1 = (int(v) for v in ranges[i])
            region = ids[r0:r0 + mk.shape[0], c0:c0 + mk.shape[1]]
            region[mk] = i + 1
    return ids


class InstancesTask(DetectionTask):
    name = "instances"
    history = 0

    def __init__(self, engine: Engine, display_max_side: int | None = 1280) -> None:
        super().__init__(engine, display_max_side)
        self.needs_nms = True
        try:
            self.mask_threshold = _unit(self.card.output.get("mask_threshold", DEFAULT_MASK_THRESHOLD),
                                        "mask threshold")
        except ValueError as e:
            raise ModelError(f"{self.model_name}: {e} (loupe.output)") from None
        self.max_detections = min(self.max_detections, MAX_INSTANCES)

    def set_max_detections(self, value: int) -> None:
        """At most ``value`` instances (and at most 65,535: ids of a uint16 map)."""
        super().set_max_detections(min(int(value), MAX_INSTANCES))

    def _resolve(self, engine: Engine, n_labels: int | None) -> tuple[str, dict[str, int], int | None]:
        """``yolov8-seg``: which output holds the predictions and which the prototypes, and the
        class count ``values - 4 - M``."""
        name, out = self.model_name, self.card.output
        fmt = out.get("format", "yolov8-seg")
        if fmt not in FORMATS:
            raise ModelError(f"{name}: loupe.output format must be one of {', '.join(FORMATS)} for instance "
                             f"segmentation, got {fmt!r}")
        outs = list(engine.outputs)
        names = [o.name for o in outs]
        given = out.get("outputs") or {}
        if not isinstance(given, dict):
            raise ModelError(f"{name}: loupe.output outputs must be an object of role -> output name")
        roles: dict[str, int] = {}
        for role, oname in given.items():
            if role not in ("predictions", "protos") or oname not in names:
                raise ModelError(f"{name}: loupe.output outputs must map predictions and protos to outputs of the "
                                 f"model ({', '.join(names)}), got {role!r}: {oname!r}")
            roles[role] = names.index(oname)
        shapes = ", ".join(o.describe() for o in outs)
        if "protos" not in roles:
            four = [i for i, o in enumerate(outs) if len(o.shape) == 4 and i != roles.get("predictions")]
            if len(four) != 1:
                raise ModelError(f"{name}: cannot tell which output holds the mask prototypes (1 x M x h x w) of its "
                                 f"yolov8-seg outputs ({shapes}): name it in loupe.output outputs.protos")
            roles["protos"] = four[0]
        if "predictions" not in roles:
            three = [i for i, o in enumerate(outs) if len(o.shape) == 3 and i != roles["protos"]]
            if len(three) != 1:
                raise ModelError(f"{name}: cannot tell which output holds the predictions (1 x (4 + C + M) x A) of "
                                 f"its yolov8-seg outputs ({shapes}): name it in loupe.output outputs.predictions")
            roles["predictions"] = three[0]
        p, q = outs[roles["predictions"]].shape, outs[roles["protos"]].shape
        if len(p) != 3 or len(q) != 4:
            raise ModelError(f"{name}: yolov8-seg needs predictions 1 x (4 + C + M) x A and prototypes 1 x M x h x w, "
                             f"got {shapes}")
        m = q[1] if isinstance(q[1], int) and q[1] > 0 else None
        fixed = [d for d in p[1:] if isinstance(d, int) and d > 0]
        n = n_labels
        if m is not None and fixed:
            if n_labels is None:  # the values axis is the shorter one (4 + 80 + 32 vs 8,400 anchors)
                n = min(fixed) - 4 - m
                if n < 1:
                    raise ModelError(f"{name}: predictions {shapes} leave no class scores beside 4 box values and "
                                     f"{m} mask coefficients")
            elif len(fixed) == 2 and 4 + n_labels + m not in fixed:
                raise ModelError(f"{name}: the card names {n_labels} classes but the predictions ({shapes}) do "
                                 f"not hold 4 + {n_labels} + {m} mask coefficients values per anchor")
        return fmt, roles, n

    # --- frames --------------------------------------------------------------------
    def split(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
        """The (4 + C + M, A) prediction (values first), the (M, mh, mw) prototypes and C."""
        try:
            protos = unbatch(outputs[self.roles["protos"]], 3, "mask prototypes 1 x M x h x w")
            pred = unbatch(outputs[self.roles["predictions"]], 2, "a 1 x (4 + C + M) x A prediction")
        except FormatError as e:
            raise ModelError(f"{self.model_name}: yolov8-seg outputs: {e}") from None
        m, c = protos.shape[0], len(self.labels)
        want = 4 + c + m
        if pred.shape[0] != want and pred.shape[1] == want:
            pred = pred.T
        if pred.shape[0] != want:
            raise ModelError(f"{self.model_name}: yolov8-seg predictions {pred.shape[0]} x {pred.shape[1]} do not hold "
                             f"4 + {c} classes + {m} mask coefficients = {want} values per anchor")
        return pred, protos, c

    def decode_outputs(self, outputs: list[np.ndarray], geo: Geometry, score_t: float) -> Candidates:
        pred, _protos, c = self.split(outputs)
        act = self.options.get("activation") or "none"
        try:
            return decode_yolov8(pred[: 4 + c], score_t, c, act)
        except FormatError as e:
            raise ModelError(f"{self.model_name}: yolov8-seg outputs: {e}") from None

    def postprocess(self, outputs: list[np.ndarray], geo: Geometry) -> InstancesResult:
        settings = (self.score_threshold, self.iou_threshold, self.max_detections)
        pred, protos, c = self.split(outputs)
        cand = self.decode_outputs(outputs, geo, settings[0])
        idx, boxes = self.select(cand, geo, settings)
        coeffs = pred[4 + c:, cand.index[idx]].T
        out_hw = self.display_hw(geo)
        masks, ranges, present = instance_masks(protos, coeffs, cand.boxes[idx], geo, out_hw, self.mask_threshold)
        pixels = np.array([int(np.count_nonzero(mk)) for mk in masks], np.int64)
        # as Ultralytics: a box whose mask has no pixel at the input's resolution is dropped (one
        # with a mask only in the letterbox padding stays, with an empty mask on the frame)
        keep = np.flatnonzero(present)
        if len(keep) != len(idx):
            idx, boxes, ranges, pixels = idx[keep], boxes[keep], ranges[keep], pixels[keep]
            masks = [masks[i] for i in keep]
        fh, fw = geo.frame_hw
        dh, dw = out_hw
        areas = pixels if (dh, dw) == (fh, fw) else np.rint(pixels * (fh * fw / (dh * dw))).astype(np.int64)
        det = self.make_result(cand, idx, boxes, geo)
        result = InstancesResult(boxes=det.boxes, scores=det.scores, classes=det.classes, labels=det.labels,
                                 frame_hw=det.frame_hw, counts=det.counts,
                                 masks=compose(masks, ranges, out_hw), mask_areas=areas)
        return self.finish(result)

    # --- analyze -------------------------------------------------------------------
    def row(self, result: InstancesResult) -> dict[str, Any]:
        """Detection's row; each detection also gets ``mask_area`` (source-frame pixels)."""
        out = super().row(result)
        for d, a in zip(out["detections"], result.mask_areas.tolist()):
            d["mask_area"] = int(a)
        return out
