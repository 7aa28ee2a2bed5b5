"""Keypoints (pose): detection boxes, each with K keypoints ``x, y, score`` and a skeleton (Qt-free).

Built on detection (``loupe.tasks.detection``): the boxes are decoded, thresholded, thinned by
NMS, capped and mapped to the frame by the same steps (``decode_outputs``, ``select``); each kept
box's keypoints are then taken from the anchor it came from, mapped to frame pixels through the
same input geometry (``Geometry.to_frame``) and clipped to the frame (as Ultralytics clips them).
Every result holds all K keypoints of every box, whatever their scores: the keypoint threshold
(``keypoint_threshold``) decides only what the panel draws.

Card ``loupe.output`` keys (besides detection's ``score_threshold``, ``iou_threshold``,
``max_detections``, ``outputs`` ``{"predictions": name}`` and ``activation``):

- ``format``: ``yolov8-pose`` (one output ``1 x (4 + C + 3K) x A``, or its transpose: per
  anchor ``cx, cy, w, h`` in input pixels, C class scores, then K times ``x, y, visibility`` in
  input pixels; Ultralytics' exporter applies the sigmoid to the visibility in the graph, so it
  is a score in 0..1; with ``kpt_shape`` [K, 2] there is no visibility and every score is 1) or
  ``heatmaps`` (one output ``1 x K x h x w`` covering the model input, for top-down or
  single-person models: one "person" per frame, its box the extent of its keypoints, its score
  their mean peak value). Each keypoint is its map's argmax refined below one cell
  (``refine``: ``taylor``, the default, one Newton step on the log-heatmap as DARK does, exact
  for a Gaussian peak; ``quarter``, a quarter cell towards the higher neighbour as
  SimpleBaseline/HRNet do; ``none``), mapped to input pixels by ``align`` (``msra``, the
  default, ``udp`` or ``cells``: see ``loupe.tasks.heatmaps``), its score the peak value.
  Without ``format``: ``heatmaps`` for a rank-4 output, ``yolov8-pose`` for a rank-3 one.
- ``keypoints``: the keypoint names, in the model's order (K = their number); else
  ``kpt_shape`` [K, 2 or 3] (Ultralytics' metadata) says K; else K is 17 (COCO).
- ``skeleton``: pairs ``[i, j]`` of keypoint indices (from 0) joined by a line. Without it, 17
  keypoints get COCO's skeleton; other counts get none.
- ``keypoint_threshold`` (default 0.5, as Ultralytics' plots): keypoints scoring below it are
  not drawn, nor the skeleton lines that touch them (rows keep every keypoint).
- ``keypoint_activation`` (yolov8-pose): ``none`` (default: the visibility is already a
  sigmoid) or ``sigmoid`` (an export that left it a logit).

Without ``loupe.labels``, a yolov8-pose model's classes are ``class 0`` ... and a heatmap
model's one class is ``person``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from loupe.inference.engine import Engine, ModelError
from loupe.inference.preprocess import Geometry
from loupe.tasks.base import output_choice
from loupe.tasks.detection import DetectionResult, DetectionTask, _unit
from loupe.tasks.detection_formats import FormatError, decode_yolov8, unbatch
from loupe.tasks.heatmaps import ALIGNMENTS, REFINEMENTS, decode_heatmaps, heatmap_to_input

FORMATS = ("yolov8-pose", "heatmaps")
DEFAULT_KEYPOINT_THRESHOLD = 0.5

#: COCO's 17 person keypoints, in the order of its annotations (and of every COCO-trained model)
COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)
#: COCO's person skeleton (its annotations list it from 1; here from 0): legs, hips, torso, arms, head
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)


@dataclass(frozen=True, kw_only=True)
class KeypointsResult(DetectionResult):
    """A detection result whose boxes each carry K keypoints: keypoints (N, K, 3) float32 ``x, y,
    score`` in source-frame pixels (clipped to the frame), in the boxes' order; keypoint_names
    (K names); skeleton: pairs of keypoint indices joined by a line."""

    keypoints: np.ndarray
    keypoint_names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        n, k = len(self.scores), len(self.keypoint_names)
        if self.keypoints.dtype != np.float32 or self.keypoints.shape != (n, k, 3):
            raise ValueError(f"keypoints must be ({n}, {k}, 3) float32, got {self.keypoints.dtype} "
                             f"{self.keypoints.shape}")
        if any(not (0 <= i < k and 0 <= j < k) for i, j in self.skeleton):
            raise ValueError(f"skeleton pairs must index the {k} keypoints")


def keypoint_layout(output: dict[str, Any], name: str) -> tuple[tuple[str, ...], int, tuple[tuple[int, int], ...]]:
    """(keypoint names, values per keypoint (2 or 3), skeleton) from a card's ``loupe.output``."""
    names = output.get("keypoints")
    shape = output.get("kpt_shape")
    dims = 3
    k = None
    if shape is not None:
        try:
            k, dims = (int(v) for v in shape)
        except (TypeError, ValueError):
            raise ModelError(f"{name}: loupe.output kpt_shape must be [K, 2 or 3], got {shape!r}") from None
        if k < 1 or dims not in (2, 3):
            raise ModelError(f"{name}: loupe.output kpt_shape must be [K, 2 or 3], got {shape!r}")
    if names is not None:
        names = tuple(str(v) for v in names)
        if k is not None and len(names) != k:
            raise ModelError(f"{name}: loupe.output names {len(names)} keypoints but kpt_shape says {k}")
    else:
        k = 17 if k is None else k
        names = COCO_KEYPOINTS if k == 17 else tuple(f"keypoint {i}" for i in range(k))
    skel = output.get("skeleton")
    if skel is None:
        skeleton = COCO_SKELETON if len(names) == 17 else ()
    else:
        try:
            skeleton = tuple((int(i), int(j)) for i, j in skel)
        except (TypeError, ValueError):
            raise ModelError(f"{name}: loupe.output skeleton must be a list of [i, j] pairs") from None
        bad = [p for p in skeleton if not (0 <= p[0] < len(names) and 0 <= p[1] < len(names))]
        if bad:
            raise ModelError(f"{name}: loupe.output skeleton pair {list(bad[0])} is not two of the "
                             f"{len(names)} keypoints (0..{len(names) - 1})")
    return names, dims, skeleton


class KeypointsTask(DetectionTask):
    name = "keypoints"
    history = 0

    def __init__(self, engine: Engine, display_max_side: int | None = 1280) -> None:
        name, out = engine.path.name, engine.card.output
        self.keypoint_names, self.kpt_dims, self.skeleton = keypoint_layout(out, name)
        try:
            self.keypoint_threshold = _unit(out.get("keypoint_threshold", DEFAULT_KEYPOINT_THRESHOLD),
                                            "keypoint threshold")
        except ValueError as e:
            raise ModelError(f"{name}: {e} (loupe.output)") from None
        self.keypoint_activation = output_choice(out.get("keypoint_activation", "none"), "keypoint_activation",
                                                 ("none", "sigmoid"), name)
        super().__init__(engine, display_max_side)
        self.needs_nms = self.format == "yolov8-pose"
        if self.format == "heatmaps":
            for key, choices in (("refine", REFINEMENTS), ("align", ALIGNMENTS)):
                output_choice(self.options.get(key, choices[0]), key, choices, name)
            if not self.card.labels:
                self.labels, self.palette = ("person",), self._palette(("person",))

    @property
    def n_keypoints(self) -> int:
        return len(self.keypoint_names)

    def _resolve(self, engine: Engine, n_labels: int | None) -> tuple[str, dict[str, int], int | None]:
        name, outs = self.model_name, list(engine.outputs)
        names = [o.name for o in outs]
        given = self.card.output.get("outputs") or {}
        oname = given.get("predictions") if isinstance(given, dict) else None
        if oname is not None and oname not in names:
            raise ModelError(f"{name}: loupe.output outputs names {oname!r}, but the model's outputs are "
                             f"{', '.join(names)}")
        if oname is None and len(outs) != 1:
            raise ModelError(f"{name}: a keypoints model with {len(outs)} outputs: name the one holding the "
                             "predictions in the card's loupe.output outputs {\"predictions\": name}")
        i = names.index(oname) if oname is not None else 0
        shape = tuple(outs[i].shape)
        fmt = self.card.output.get("format") or ("heatmaps" if len(shape) == 4 else "yolov8-pose")
        output_choice(fmt, "format", FORMATS, name)
        k, per = self.n_keypoints, self.kpt_dims
        dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
        if fmt == "heatmaps":
            if len(shape) != 4 or dims[1] not in (None, k):
                raise ModelError(f"{name}: heatmaps outputs are 1 x {k} keypoints x h x w; '{outs[i].name}' is "
                                 + " x ".join(str(d) for d in shape))
            return fmt, {"predictions": i}, n_labels or 1
        if len(shape) != 3:
            raise ModelError(f"{name}: yolov8-pose outputs are 1 x (4 + C + {per} x {k}) x anchors; "
                             f"'{outs[i].name}' has rank {len(shape)}")
        c = None
        fixed = [d for d in dims[1:] if d is not None]
        if n_labels is not None:
            c = n_labels
            if fixed and 4 + c + per * k not in fixed:
                raise ModelError(f"{name}: the card names {c} classes and {k} keypoints (4 + {c} + {per} x {k} = "
                                 f"{4 + c + per * k} values per anchor), but the output is "
                                 + " x ".join(str(d) for d in shape))
        elif fixed:
            c = min(fixed) - 4 - per * k
            if c < 1:
                raise ModelError(f"{name}: a 1 x {min(fixed)} x anchors output holds no class scores after "
                                 f"4 box values and {k} keypoints x {per}")
        return fmt, {"predictions": i}, c

    # --- settings ------------------------------------------------------------------
    def set_keypoint_threshold(self, value: float) -> None:
        """Keypoints scoring below ``value`` (0..1) are not drawn (results keep them all)."""
        self.keypoint_threshold = _unit(value, "keypoint threshold")

    def fresh(self, display_max_side: int | None = None) -> KeypointsTask:
        task = super().fresh(display_max_side)
        task.keypoint_threshold = self.keypoint_threshold
        return task

    # --- frames --------------------------------------------------------------------
    def postprocess(self, outputs: list[np.ndarray], geo: Geometry) -> KeypointsResult:
        settings = (self.score_threshold, self.iou_threshold, self.max_detections)
        pred = outputs[self.roles["predictions"]]
        try:
            if self.format == "heatmaps":
                return self.finish(self._from_heatmaps(pred, geo))
            p = self._values_first(pred)
        except FormatError as e:
            raise ModelError(f"{self.model_name}: {self.format} outputs: {e}") from None
        c = len(self.labels)
        cand = decode_yolov8(p[: 4 + c], settings[0], c, self.options.get("activation", "none"))
        idx, boxes = self.select(cand, geo, settings)
        kp = p[4 + c:, cand.index[idx]].T.reshape(len(idx), self.n_keypoints, self.kpt_dims)
        result = self.make_result(cand, idx, boxes, geo)
        return self.finish(self._with_keypoints(result, kp, geo))

    def _values_first(self, pred: np.ndarray) -> np.ndarray:
        a = unbatch(pred, 2, f"a 1 x (4 + C + {self.kpt_dims} x {self.n_keypoints}) x anchors prediction")
        if not self.labels:  # a fully dynamic output: the class count from the first frame's shape
            c = min(a.shape) - 4 - self.kpt_dims * self.n_keypoints
            if c < 1:
                raise FormatError(f"{a.shape[0]} x {a.shape[1]} holds no class scores besides 4 box values "
                                  f"and {self.n_keypoints} keypoints x {self.kpt_dims}")
            self.labels = tuple(f"class {i}" for i in range(c))
            self.palette = self._palette(self.labels)
        want = 4 + len(self.labels) + self.kpt_dims * self.n_keypoints
        if a.shape[0] == want:
            return a
        if a.shape[1] == want:
            return a.T
        raise FormatError(f"expected 4 + {len(self.labels)} classes + {self.kpt_dims} x {self.n_keypoints} "
                          f"keypoints = {want} values per anchor on one axis, got {a.shape[0]} x {a.shape[1]}")

    def _keypoints_to_frame(self, kp: np.ndarray, geo: Geometry) -> np.ndarray:
        """(N, K, 2 or 3) input-pixel keypoints -> (N, K, 3) float32 frame pixels (clipped) and scores."""
        n, k = kp.shape[:2]
        out = np.empty((n, k, 3), np.float32)
        xy = geo.to_frame(np.ascontiguousarray(kp[..., :2], np.float32).reshape(n, 2 * k)).reshape(n, k, 2)
        h, w = geo.frame_hw
        out[..., 0] = np.clip(xy[..., 0], 0, w)
        out[..., 1] = np.clip(xy[..., 1], 0, h)
        if kp.shape[2] == 3:
            s = np.asarray(kp[..., 2], np.float32)
            out[..., 2] = 1 / (1 + np.exp(-np.clip(s, -80, 80))) if self.keypoint_activation == "sigmoid" else s
        else:
            out[..., 2] = 1.0
        return out

    def _with_keypoints(self, r: DetectionResult, kp: np.ndarray, geo: Geometry) -> KeypointsResult:
        fields = {f: getattr(r, f) for f in r.__dataclass_fields__}
        return KeypointsResult(**fields, keypoints=self._keypoints_to_frame(kp, geo),
                               keypoint_names=self.keypoint_names, skeleton=self.skeleton)

    def _from_heatmaps(self, pred: np.ndarray, geo: Geometry) -> KeypointsResult:
        """One person: each keypoint at its heatmap's refined peak (``decode_heatmaps`` with the
        card's ``refine``, mapped to input pixels with its ``align``), its score the peak value;
        the box is the keypoints' extent in the frame (at least one pixel each way), its score
        their mean peak."""
        maps = unbatch(pred, 3, f"a 1 x {self.n_keypoints} x h x w heatmap output")
        if maps.shape[0] != self.n_keypoints:
            raise FormatError(f"expected {self.n_keypoints} heatmaps, got {maps.shape[0]}")
        try:
            dec = decode_heatmaps(maps, self.options.get("refine", "taylor"))
            xy = heatmap_to_input(dec[:, :2], maps.shape[1:], geo.input_hw, self.options.get("align", "msra"))
        except ValueError as e:
            raise FormatError(str(e)) from None
        kp = np.concatenate([xy, dec[:, 2:3]], axis=1)[None].astype(np.float32)
        kp[..., 2] = np.nan_to_num(kp[..., 2], nan=0.0)
        kp[..., :2] = np.nan_to_num(kp[..., :2], nan=0.0)
        frame_kp = self._keypoints_to_frame(kp, geo)
        h, w = geo.frame_hw
        x1, y1 = min(float(frame_kp[0, :, 0].min()), max(w - 1.0, 0.0)), min(float(frame_kp[0, :, 1].min()), max(h - 1.0, 0.0))
        box = np.array([[x1, y1, max(float(frame_kp[0, :, 0].max()), x1 + 1.0),
                         max(float(frame_kp[0, :, 1].max()), y1 + 1.0)]], np.float32)
        np.clip(box[:, 0::2], 0, w, out=box[:, 0::2])
        np.clip(box[:, 1::2], 0, h, out=box[:, 1::2])
        counts = np.zeros(len(self.labels), np.int64)
        counts[0] = 1
        return KeypointsResult(boxes=box, scores=np.array([frame_kp[0, :, 2].mean()], np.float32),
                               classes=np.zeros(1, np.int32), labels=self.labels, frame_hw=tuple(geo.frame_hw),
                               counts=counts, keypoints=frame_kp, keypoint_names=self.keypoint_names,
                               skeleton=self.skeleton)

    # --- analyze -------------------------------------------------------------------
    def row(self, result: KeypointsResult) -> dict[str, Any]:
        """Detection's row; each detection also gets ``keypoints``: all K ``[x, y, score]`` in
        frame pixels (2 decimals; score 4), whatever the drawing threshold."""
        out = super().row(result)
        for det, kp in zip(out["detections"], result.keypoints.tolist()):
            det["keypoints"] = [[round(x, 2), round(y, 2), round(s, 4)] for x, y, s in kp]
        return out


__all__ = ["COCO_KEYPOINTS", "COCO_SKELETON", "FORMATS", "KeypointsResult", "KeypointsTask", "keypoint_layout"]
