"""Object detection: boxes with a label and a score, mapped back to the frame (Qt-free).

The model's outputs are decoded (``loupe.tasks.detection_formats``, pure numpy) to candidate
boxes in model-input pixels, kept when they score strictly above the score threshold, thinned by
class-aware NMS where the format needs it (``yolov5``, ``yolov8``), cut to the best
``max_detections``, then mapped to frame pixels through the input geometry (letterbox, stretch,
pad or centre crop: ``Geometry.to_frame``), clipped to the frame, and dropped when nothing of them
is left inside it.

Card ``loupe.output`` keys (``loupe.labels`` names the classes, ``loupe.palette`` colours them):

- ``format``: how the outputs are laid out (shapes: see ``loupe.inference.formats``):
  ``yolov5`` (``1 x A x (5 + C)``: cx, cy, w, h, objectness, class scores), ``yolov8``
  (``1 x (4 + C) x A``: cx, cy, w, h, class scores; YOLOv8, YOLO11, YOLOv10 exported without its
  end-to-end head), ``end2end`` (``1 x K x 6``: x1, y1, x2, y2, score, class; NMS done by the
  model), ``detr`` (boxes ``1 x Q x 4`` normalised cx, cy, w, h + class logits ``1 x Q x (C + 1)``,
  the last class "no object"), ``rtdetr`` (the same boxes + ``1 x Q x C`` class logits, or one
  ``1 x Q x (4 + C)`` output with scores already sigmoid), ``boxes_scores_labels`` (separate boxes
  ``[1 x] N x 4``, scores ``[1 x] N``, labels ``[1 x] N`` and optionally a detection count).
  Without ``format``, the one format the output shapes fit is used (several: the model is refused
  naming them).
- ``score_threshold`` (default 0.25): a box is kept when its score is strictly above it.
- ``iou_threshold`` (default 0.7): NMS suppresses a box whose IoU with a better box of the same
  class is above it (``yolov5`` and ``yolov8`` only; the other formats come with NMS done).
- ``max_detections`` (default 300): at most this many boxes per frame, the best.
- ``outputs``: which ONNX output plays which role, by name: ``{"predictions": name}``
  (yolov5, yolov8, end2end, one-output rtdetr), ``{"boxes": name, "scores": name}`` (detr,
  rtdetr; ``scores`` holds the class logits), ``{"boxes": .., "scores": .., "labels": ..,
  "count": ..}`` (boxes_scores_labels; ``count`` optional: only the first ``count`` rows hold
  detections, as TensorRT's EfficientNMS writes ``num_dets``). Roles left out are found from the
  output shapes and names (``box``, ``score``/``conf``, ``label``/``class``, an ``N`` or ``N x 1``
  count).
- ``activation``: what turns the class outputs into scores: ``softmax`` (detr's default),
  ``sigmoid`` (two-output rtdetr's default; for yolov5/yolov8 exported with raw logits) or
  ``none`` (the scores as given: the default of yolov5, yolov8 and one-output rtdetr).
- ``box_format`` (boxes_scores_labels, end2end; default ``xyxy``): ``xyxy`` corners, ``cxcywh`` centre and
  size, ``xywh`` top-left corner and size.
- ``normalized`` (boxes_scores_labels, end2end; default false): boxes in 0..1 of the model input instead of
  input pixels (detr and rtdetr boxes are always normalised).
- ``label_offset`` (boxes_scores_labels; default 0): subtracted from the labels to index
  ``loupe.labels`` (torchvision's detectors count background as label 0: offset 1).

Without ``loupe.labels`` the classes are ``class 0`` ... ``class C-1`` (C from the output shapes;
``end2end`` and ``boxes_scores_labels`` outputs do not say C: their card must list the labels).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from loupe.inference.engine import Engine, ModelError
from loupe.inference.formats import DETECTION_FORMATS, detection_formats_for
from loupe.inference.preprocess import Geometry, prepare
from loupe.sources.base import Frame
from loupe.tasks.base import ClassesTask, column_safe, output_choice
from loupe.tasks.detection_formats import NMS_FORMATS, Candidates, FormatError, decode, nms, top_k
from loupe.tasks.tracking import Tracker, settings_for

DEFAULT_SCORE_THRESHOLD = 0.25
DEFAULT_IOU_THRESHOLD = 0.7
DEFAULT_MAX_DETECTIONS = 300
#: the roles each format's outputs play (``outputs`` on the card); "count" is optional
ROLES = {
    "yolov5": ("predictions",), "yolov8": ("predictions",), "end2end": ("predictions",),
    "detr": ("boxes", "scores"), "rtdetr": ("boxes", "scores"),
    "boxes_scores_labels": ("boxes", "scores", "labels"),
}


@dataclass(frozen=True)
class DetectionResult:
    """boxes: (N, 4) float32 ``x1, y1, x2, y2`` in source-frame pixels, clipped to
    ``[0, W] x [0, H]``; scores: (N,) float32, best first; classes: (N,) int32 indices into
    ``labels``; frame_hw: the frame's (H, W); counts: (len(labels),) int64 boxes per class;
    track_ids: (N,) int64 track IDs from 1 (0: not tracked), or None when tracking is off."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    labels: tuple[str, ...]
    frame_hw: tuple[int, int]
    counts: np.ndarray
    track_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.boxes.dtype != np.float32 or self.boxes.shape != (n, 4):
            raise ValueError(f"boxes must be ({n}, 4) float32, got {self.boxes.dtype} {self.boxes.shape}")
        if self.scores.dtype != np.float32 or self.scores.ndim != 1:
            raise ValueError(f"scores must be 1-d float32, got {self.scores.dtype} {self.scores.shape}")
        if self.classes.dtype != np.int32 or self.classes.shape != (n,):
            raise ValueError(f"classes must be ({n},) int32, got {self.classes.dtype} {self.classes.shape}")
        if self.counts.dtype != np.int64 or self.counts.shape != (len(self.labels),):
            raise ValueError(f"counts must be ({len(self.labels)},) int64, got {self.counts.dtype} {self.counts.shape}")
        if n and (self.classes.min() < 0 or self.classes.max() >= len(self.labels)):
            raise ValueError(f"class ids must index the {len(self.labels)} labels, got {self.classes.min()}..{self.classes.max()}")
        if n > 1 and np.any(np.diff(self.scores) > 0):
            raise ValueError("scores must be sorted best first")
        t = self.track_ids
        if t is not None and (not isinstance(t, np.ndarray) or t.dtype != np.int64 or t.shape != (n,) or (n and t.min() < 0)):
            raise ValueError(f"track_ids must be ({n},) int64 >= 0 or None, got {getattr(t, 'dtype', type(t))} {getattr(t, 'shape', '')}")
        h, w = self.frame_hw
        if n and (self.boxes.min() < 0 or np.any(self.boxes[:, 0::2] > w) or np.any(self.boxes[:, 1::2] > h)):
            raise ValueError(f"boxes must lie inside the {w} x {h} frame")

    @property
    def count(self) -> int:
        return len(self.scores)


def count_column(label: str) -> str:
    """``count_<label>`` with the label made column-safe (``traffic light`` -> ``count_traffic_light``),
    as segmentation's ``area_`` columns."""
    return "count_" + column_safe(label)


@lru_cache(maxsize=32)
def count_columns(labels: tuple[str, ...]) -> tuple[str, ...]:
    """``count_column`` of each label, kept distinct: a label with nothing column-safe in it (a
    name in another script) is ``count_class_<i>``, and a name met before gets ``_<i>``."""
    out: list[str] = []
    for i, label in enumerate(labels):
        name = count_column(label) if column_safe(label) else f"count_class_{i}"
        out.append(f"{name}_{i}" if name in out else name)
    return tuple(out)


def _unit(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"the {what} must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"the {what} must be between 0 and 1, got {v:g}")
    return v


class DetectionTask(ClassesTask):
    name = "detection"
    history = 0  # each frame on its own

    def __init__(self, engine: Engine, display_max_side: int | None = 1280) -> None:
        super().__init__(engine, display_max_side)
        out = self.card.output
        name = self.model_name
        try:
            self.score_threshold = _unit(out.get("score_threshold", DEFAULT_SCORE_THRESHOLD), "score threshold")
            self.iou_threshold = _unit(out.get("iou_threshold", DEFAULT_IOU_THRESHOLD), "IoU threshold")
        except ValueError as e:
            raise ModelError(f"{name}: {e} (loupe.output)") from None
        self.max_detections = int(out.get("max_detections", DEFAULT_MAX_DETECTIONS))
        if self.max_detections < 1:
            raise ModelError(f"{name}: loupe.output max_detections must be at least 1, got {self.max_detections}")
        self.options = dict(out)
        n_labels = len(self.card.labels) or None
        self.format, self.roles, n = self._resolve(engine, n_labels)
        self.needs_nms: bool = self.format in NMS_FORMATS
        labels = self.card.labels or tuple(f"class {i}" for i in range(n or 0))
        if n is not None and self.card.labels and len(labels) != n:
            raise ModelError(f"{name}: the card names {len(labels)} classes but the outputs hold {n} ({self.format})")
        if not labels and self.format in ("end2end", "boxes_scores_labels"):
            raise ModelError(f"{name}: {self.format} outputs do not say how many classes there are: "
                             "list the class names in the card's loupe.labels")
        self.labels: tuple[str, ...] = labels
        self.palette = self._palette(labels)
        self._tracker: Tracker | None = None  # set_tracking
        self._pending: deque[tuple[Geometry, int]] = deque()  # (geometry, frame index) prepared, not finished
        self._geo_hint: Geometry | None = None  # the geometry of the frame being post-processed
        self._last_index: int | None = None  # the frame last tracked
        self._before: tuple[Tracker, int] | None = None  # the tracker before that frame, and its steps

    def _palette(self, labels: tuple[str, ...]) -> np.ndarray:
        return self.card_palette(len(labels))

    def _resolve(self, engine: Engine, n_labels: int | None) -> tuple[str, dict[str, int], int | None]:
        """The format, the output index of each role and the class count the shapes imply."""
        name, out = self.model_name, self.card.output
        outs = list(engine.outputs)
        names = [o.name for o in outs]
        fmt = out.get("format")
        matches = detection_formats_for(outs, n_labels)
        if fmt is None:
            fits = sorted({m.format for m in matches}, key=DETECTION_FORMATS.index)
            if len(fits) != 1:
                shapes = ", ".join(o.describe() for o in outs)
                found = f"fit {' and '.join(fits)}" if fits else "fit no detection format"
                raise ModelError(f"{name}: its outputs ({shapes}) {found}: say which in the card's "
                                 f"loupe.output format ({', '.join(DETECTION_FORMATS)})")
            fmt = fits[0]
        output_choice(fmt, "format", DETECTION_FORMATS, name)
        match = next((m for m in matches if m.format == fmt), None)
        if match is None and n_labels is not None:  # the shapes' own class count, to say they disagree
            match = next((m for m in detection_formats_for(outs, None) if m.format == fmt), None)
        given = out.get("outputs") or {}
        if not isinstance(given, dict):
            raise ModelError(f"{name}: loupe.output outputs must be an object of role -> output name")
        roles: dict[str, int] = {}
        for role, oname in given.items():
            if oname not in names:
                raise ModelError(f"{name}: loupe.output outputs names {oname!r} for {role}, but the model's "
                                 f"outputs are {', '.join(names)}")
            roles[role] = names.index(oname)
        if match is not None:
            for role, oname in match.outputs.items():
                roles.setdefault(role, names.index(oname))
        if fmt == "rtdetr" and "predictions" not in roles and "boxes" not in roles and len(outs) == 1:
            roles["predictions"] = 0
        if ROLES[fmt] == ("predictions",) and "predictions" not in roles:
            roles["predictions"] = 0  # the one output (the decoder checks its shape on each frame)
        want = ("predictions",) if fmt == "rtdetr" and "predictions" in roles else ROLES[fmt]
        missing = [r for r in want if r not in roles]
        if missing:
            shapes = ", ".join(o.describe() for o in outs)
            raise ModelError(f"{name}: cannot tell which output holds the {' and '.join(missing)} of its "
                             f"{fmt} outputs ({shapes}): name them in the card's loupe.output outputs")
        return fmt, roles, (match.n_classes if match is not None else n_labels)

    # --- settings ------------------------------------------------------------------
    def set_score_threshold(self, value: float) -> None:
        """Keep boxes scoring strictly above ``value`` (0..1; ValueError otherwise)."""
        self.score_threshold = _unit(value, "score threshold")

    def set_iou_threshold(self, value: float) -> None:
        """NMS suppresses same-class boxes overlapping a better one by IoU above ``value`` (0..1)."""
        self.iou_threshold = _unit(value, "IoU threshold")

    def set_max_detections(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"the maximum number of detections must be at least 1, got {value}")
        self.max_detections = int(value)

    def fresh(self, display_max_side: int | None = None) -> DetectionTask:
        """The thresholds and detection cap as they are now (and classes learnt from a dynamic
        output)."""
        task = super().fresh(display_max_side)
        task.score_threshold, task.iou_threshold = self.score_threshold, self.iou_threshold
        task.max_detections = self.max_detections
        task.set_tracking(self.tracking)
        return task

    # --- frames --------------------------------------------------------------------
    def prepare(self, frame: Frame) -> tuple[dict[str, np.ndarray], Geometry]:
        x, geo = prepare(frame, self.card.input)
        if self._tracker is not None:  # finish needs the frame's index (prepare may run frames ahead)
            self._pending.append((geo, frame.index))
        return {self.input_name: x}, geo

    def postprocess(self, outputs: list[np.ndarray], geo: Geometry) -> DetectionResult:
        # the user's settings as they are now, read once (a slider may move meanwhile)
        settings = (self.score_threshold, self.iou_threshold, self.max_detections)
        cand = self.decode_outputs(outputs, geo, settings[0])
        idx, boxes = self.select(cand, geo, settings)
        return self.finish(self.make_result(cand, idx, boxes, geo))

    def decode_outputs(self, outputs: list[np.ndarray], geo: Geometry, score_t: float) -> Candidates:
        """The format's candidates above ``score_t``, boxes in model-input pixels."""
        self._geo_hint = geo
        arrays = {role: outputs[i] for role, i in self.roles.items()}
        try:
            cand = decode(self.format, arrays, geo.input_hw, score_t, len(self.labels) or None, self.options)
        except FormatError as e:
            raise ModelError(f"{self.model_name}: {self.format} outputs: {e}") from None
        if not self.labels:  # fully dynamic output: learn the class count from the first frame
            self._learn_labels(outputs)
        return cand

    def select(self, cand: Candidates, geo: Geometry,
               settings: tuple[float, float, int]) -> tuple[np.ndarray, np.ndarray]:
        """NMS (or the best ``max_detections``), the class check, boxes mapped to the frame and
        clipped, empty ones dropped: the indices into ``cand`` of the boxes kept, best first, and
        their (N, 4) float32 frame boxes. Tasks built on detection (pose, instance masks) use the
        indices to pick their own per-box outputs."""
        self._geo_hint = geo
        _score_t, iou_t, max_det = settings
        keep = nms(cand.boxes, cand.scores, cand.classes, iou_t, max_det) if self.needs_nms \
            else top_k(cand.scores, max_det)
        keep = np.asarray(keep, np.int64)
        classes = cand.classes[keep]
        n_cls = len(self.labels)
        if len(keep) and (classes.min() < 0 or classes.max() >= n_cls):
            bad = int(classes.max() if classes.max() >= n_cls else classes.min())
            raise ModelError(f"{self.model_name}: the model gave class {bad}, but the card names {n_cls} "
                             f"classes (0..{n_cls - 1}); check loupe.labels"
                             + (" and label_offset" if self.format == "boxes_scores_labels" else ""))
        h, w = geo.frame_hw
        boxes = geo.to_frame(cand.boxes[keep])
        np.clip(boxes[:, 0::2], 0, w, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, h, out=boxes[:, 1::2])
        inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return keep[inside], np.ascontiguousarray(boxes[inside], np.float32)

    def make_result(self, cand: Candidates, idx: np.ndarray, boxes: np.ndarray, geo: Geometry) -> DetectionResult:
        """The result record of the selected boxes (``select``'s indices and frame boxes)."""
        classes = cand.classes[idx].astype(np.int32, copy=False)
        counts = np.bincount(classes, minlength=len(self.labels)).astype(np.int64)
        return DetectionResult(boxes, cand.scores[idx].astype(np.float32, copy=False), classes, self.labels,
                               tuple(geo.frame_hw), counts)

    def finish(self, result: DetectionResult) -> DetectionResult:
        """The last step of every detection-like task's ``postprocess`` (pose and instance masks
        call it too): with tracking on, the result with its ``track_ids``.

        Frames are expected in order. The same frame again (a paused frame re-run after a setting
        changed) redoes that frame's update from the tracker as it was before it; a jump of up to
        the tracker's buffer forward (frames the live view dropped) predicts the tracks across the
        gap; any other jump (a seek, backwards, a new input from frame 0) starts the tracks again."""
        tracker = self._tracker
        if tracker is None:
            return result
        index, last = self._frame_index(), self._last_index
        if last is not None and index == last and self._before is not None:
            tracker, steps = self._before[0].copy(), self._before[1]
            self._tracker = tracker
        elif last is not None and 0 < index - last <= tracker.settings.buffer:
            steps = index - last
        else:
            tracker.reset()
            steps = 1
        self._before = (tracker.copy(), steps)
        self._last_index = index
        tracker.settings = settings_for(self.score_threshold)
        ids = tracker.update(result.boxes, result.scores, result.classes, steps)
        return dataclasses.replace(result, track_ids=ids)

    def _frame_index(self) -> int:
        """The index of the frame being finished: its entry in the prepared queue (found by its
        geometry when decode_outputs or select saw it; the oldest otherwise)."""
        hint, self._geo_hint = self._geo_hint, None
        while self._pending:
            geo, index = self._pending.popleft()
            if hint is None or geo is hint:
                return index
        return 0 if self._last_index is None else self._last_index + 1

    # --- tracking ------------------------------------------------------------------
    @property
    def tracking(self) -> bool:
        return self._tracker is not None

    def set_tracking(self, on: bool) -> None:
        """Track IDs across frames (``DetectionResult.track_ids``, a ByteTrack-style tracker:
        ``loupe.tasks.tracking``) from the next frame on, or not. With tracking a result depends
        on every earlier frame of the input, so ``history`` becomes None (``analyze --resume``
        runs an input again from its first frame, skipping the rows written; Ray never splits
        it); off, it is 0 again."""
        if bool(on) == self.tracking:
            return
        self._tracker = Tracker() if on else None
        self.history = None if on else 0
        self.reset()

    def reset(self) -> None:
        """A new input: the tracks start again (IDs from 1)."""
        if self._tracker is not None:
            self._tracker = Tracker(self._tracker.settings)
        self._pending.clear()
        self._geo_hint = self._last_index = self._before = None

    def _learn_labels(self, outputs: list[np.ndarray]) -> None:
        shape = np.asarray(outputs[self.roles.get("predictions", self.roles.get("scores", 0))]).shape
        last, mid = shape[-1], shape[-2] if len(shape) > 1 else 0
        c = {"yolov8": min(last, mid) - 4, "yolov5": min(last, mid) - 5, "detr": last - 1,
             "rtdetr": last - 4 if "predictions" in self.roles else last}.get(self.format, 0)
        n = max(int(c), 1)
        self.labels = tuple(f"class {i}" for i in range(n))
        self.palette = self._palette(self.labels)

    # --- analyze -------------------------------------------------------------------
    def columns(self) -> list[str]:
        return ["count", *count_columns(self.labels)]

    def row(self, result: DetectionResult) -> dict[str, Any]:
        """``count``, ``count_<label>`` per class, and (JSONL only) ``detections``: each box
        ``[x1, y1, x2, y2]`` in frame pixels (2 decimals), its score (4), class and label, and its
        ``track_id`` when tracking is on (0: not tracked)."""
        out: dict[str, Any] = {"count": result.count}
        for column, k in zip(count_columns(result.labels), result.counts):
            out[column] = int(k)
        out["detections"] = [
            {"box": [round(float(v), 2) for v in box], "score": round(float(s), 4), "class": int(c),
             "label": result.labels[c]}
            for box, s, c in zip(result.boxes, result.scores, result.classes)
        ]
        if result.track_ids is not None:
            for d, t in zip(out["detections"], result.track_ids.tolist()):
                d["track_id"] = t
        return out
