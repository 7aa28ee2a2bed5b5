"""Segmentation: logits -> a uint8 class map at display resolution, areas per class (Qt-free).

Post-processing follows the official DDRNet evaluation: logits are upsampled bilinearly
(align_corners=False, as PyTorch and ``cv2.resize`` INTER_LINEAR do) and then argmaxed, computed
at display resolution (the frame size, capped; see ``logits_to_class_map``), inside the worker,
so the view only colours a ``uint8`` map through a lookup table.

Physical areas: when the frame says its ``pixel_spacing`` (DICOM, mm ``[row, col]``), the result
also holds ``class_area_mm2`` = area fraction x frame rows x frame cols x row spacing x col spacing,
i.e. measured at the frame's original resolution whatever the display cap. Volumes
(``volume_ml_<class>``, area_mm2 x slice spacing / 1000 summed over a series) are added by
``loupe.run.analyze``; ``physical_columns()`` names both.

Card ``loupe.output`` keys:

- ``kind``: what the first output holds (default ``logits``):
  ``logits``: N x C x h x w class scores, argmaxed after the bilinear upsampling (one channel: a
  foreground logit, foreground where it is > 0); ``probabilities``: the same after a softmax,
  treated exactly as logits (argmax; nothing is applied to them); ``probability``: one channel,
  a foreground probability already through a sigmoid, upsampled bilinearly to display size and
  foreground where it is > ``threshold``; ``class_map``: integer class ids per pixel, N x h x w
  (or N x 1 x h x w), resized nearest-neighbour. An integer-typed output is read as a class map
  whatever the kind says.
- ``threshold``: ``probability`` only, in [0, 1], default 0.5.
- ``layout``: ``NCHW`` (default) or ``NHWC`` (channels last: N x h x w x C, or h x w x C).
- ``stride``: the output's stride (informative; the output is mapped back by its own shape).

Labels for ``probability`` (and one-channel ``logits``): ``[background, <foreground>]``. A card
naming one label names the foreground (``background`` is put before it, and black before its
palette); a card naming two gives both; none gives ``["background", "foreground"]``. ``analyze``
then writes ``area_background`` and ``area_<foreground>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from loupe.inference.engine import Engine, ModelError, default_palette
from loupe.inference.preprocess import Geometry, prepare
from loupe.sources.base import Frame
from loupe.tasks.base import ClassesTask, column_safe

NO_CLASS = 255  # class-map value drawn transparent (used by the contour map)


@dataclass(frozen=True)
class SegmentationResult:
    """class_map: HxW uint8 class ids at display resolution; contour_map: the same with every
    pixel that is not on a class boundary set to NO_CLASS; class_area: fraction of the frame
    per class (sums to 1); class_area_mm2: area per class in mm² at the frame's original
    resolution, None when the frame has no pixel spacing."""

    class_map: np.ndarray
    contour_map: np.ndarray
    class_area: np.ndarray
    labels: tuple[str, ...]
    class_area_mm2: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.class_map.dtype != np.uint8 or self.class_map.ndim != 2:
            raise ValueError(f"class_map must be 2-d uint8, got {self.class_map.dtype} {self.class_map.shape}")
        if self.contour_map.shape != self.class_map.shape:
            raise ValueError(
                f"contour_map shape {self.contour_map.shape} != class_map shape {self.class_map.shape}"
            )
        if self.class_area.shape != (len(self.labels),):
            raise ValueError(f"class_area must have shape ({len(self.labels)},), got {self.class_area.shape}")
        if self.class_area_mm2 is not None and self.class_area_mm2.shape != (len(self.labels),):
            raise ValueError(
                f"class_area_mm2 must have shape ({len(self.labels)},), got {self.class_area_mm2.shape}"
            )


@dataclass(frozen=True)
class SegmentationContext:
    """What ``postprocess`` needs from ``prepare``: the geometry and the frame's pixel spacing
    (mm, rows then columns; None when unknown)."""

    geometry: Geometry
    pixel_spacing: tuple[float, float] | None = None


def column_name(label: str) -> str:
    """``area_<label>`` with the label made column-safe (``traffic light`` -> ``traffic_light``)."""
    return "area_" + column_safe(label)


def area_mm2_column(label: str) -> str:
    """``area_mm2_<label>``: the class area in mm² (frames with a pixel spacing)."""
    return "area_mm2_" + column_safe(label)


def volume_column(label: str) -> str:
    """``volume_ml_<label>``: the class volume in mL over a series (written by ``analyze``)."""
    return "volume_ml_" + column_safe(label)


def pixel_spacing_of(frame: Frame) -> tuple[float, float] | None:
    """The frame's ``pixel_spacing`` metadata (mm, rows then columns) when it is two positive
    finite numbers, else None."""
    value = frame.metadata.get("pixel_spacing")
    if value is None:
        return None
    try:
        row, col = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(row) and np.isfinite(col) and row > 0 and col > 0):
        return None
    return row, col


def boundary_map(class_map: np.ndarray) -> np.ndarray:
    """class_map on both sides of every class boundary (4-neighbourhood), NO_CLASS elsewhere."""
    edge = np.zeros(class_map.shape, bool)
    d = class_map[:, 1:] != class_map[:, :-1]
    edge[:, 1:] |= d
    edge[:, :-1] |= d
    d = class_map[1:, :] != class_map[:-1, :]
    edge[1:, :] |= d
    edge[:-1, :] |= d
    out = np.full_like(class_map, NO_CLASS)
    np.copyto(out, class_map, where=edge)
    return out


def class_counts(class_map: np.ndarray, n: int) -> np.ndarray:
    """Pixels per class id 0..n-1 (float64). OpenCV's histogram (exact while the counts fit a
    float32 mantissa) is 2x faster than ``np.bincount``, which first widens the map to int64."""
    if class_map.size < (1 << 24) and class_map.dtype == np.uint8:
        hist = cv2.calcHist([np.ascontiguousarray(class_map)], [0], None, [256], [0, 256])
        return hist.reshape(-1)[:n].astype(np.float64)
    return np.bincount(class_map.ravel(), minlength=n)[:n].astype(np.float64)


def confusion_matrix(pred: np.ndarray, target: np.ndarray, n: int) -> np.ndarray:
    """``n x n`` pixel counts, rows the target class, columns the predicted class (int64);
    add the matrices of several frames to pool them."""
    p = np.asarray(pred).ravel().astype(np.int64)
    t = np.asarray(target).ravel().astype(np.int64)
    if p.shape != t.shape:
        raise ValueError(f"prediction and target differ in size: {p.size} vs {t.size}")
    return np.bincount(t * n + p, minlength=n * n).reshape(n, n)


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """IoU per class from a confusion matrix: ``TP / (TP + FP + FN)``; NaN for a class absent
    from both prediction and target (leave it out of a mean with ``np.nanmean``)."""
    conf = np.asarray(conf)
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def logits_to_class_map(logits: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """(C, h, w) logits -> (H, W) uint8 argmax of the bilinearly upsampled logits.

    One class plane at a time (a running max), so memory stays at two H x W planes; measured
    faster than gathering interpolated logits only along class boundaries (bench notes in
    docs/ARCHITECTURE.md).
    """
    c = logits.shape[0]
    h, w = out_hw
    if c == 1:  # a single-channel output is a foreground logit
        up = cv2.resize(np.ascontiguousarray(logits[0]), (w, h), interpolation=cv2.INTER_LINEAR)
        return (up > 0).astype(np.uint8)
    if logits.shape[1:] == (h, w):
        return logits.argmax(0).astype(np.uint8)
    best = cv2.resize(np.ascontiguousarray(logits[0]), (w, h), interpolation=cv2.INTER_LINEAR)
    cls = np.zeros((h, w), np.uint8)
    up = np.empty_like(best)
    better = np.empty((h, w), bool)
    for k in range(1, c):  # loop over class planes, each step vectorised over pixels
        cv2.resize(np.ascontiguousarray(logits[k]), (w, h), dst=up, interpolation=cv2.INTER_LINEAR)
        np.greater(up, best, out=better)
        cls[better] = k
        np.maximum(best, up, out=best)
    return cls


KINDS = ("logits", "probabilities", "probability", "class_map")
LAYOUTS = ("NCHW", "NHWC")


def output_kind(output: dict[str, Any]) -> tuple[str, str, float]:
    """(kind, layout, threshold) from a card's ``loupe.output`` (checked by
    ``loupe.inference.card.check_segmentation_output`` when the card was read)."""
    kind = str(output.get("kind") or "logits")
    layout = str(output.get("layout") or "NCHW").upper()
    threshold = float(output.get("threshold", 0.5))
    return kind, layout, threshold


def channels_of(shape: tuple[Any, ...], layout: str) -> int | None:
    """The channel count of a rank-4 output shape (None when dynamic or another rank)."""
    if len(shape) != 4:
        return None
    c = shape[3] if layout == "NHWC" else shape[1]
    return c if isinstance(c, int) else None


def probability_labels(labels: tuple[str, ...]) -> tuple[str, ...]:
    """The two labels of a one-channel probability model: ``background`` then the foreground
    (the card's one label), the card's two as given, or ``background``/``foreground``."""
    if len(labels) == 1:
        return ("background", labels[0])
    return labels or ("background", "foreground")


def class_planes(out: np.ndarray, layout: str, model: str) -> np.ndarray:
    """One image's float output as C x h x w (a channels-last output is transposed once)."""
    a = out[0] if out.ndim == 4 else out
    if a.ndim != 3:
        want = "N x h x w x C" if layout == "NHWC" else "N x C x h x w"
        raise ModelError(f"{model}: expected {want} scores, got {out.shape}")
    if layout == "NHWC":
        a = np.ascontiguousarray(a.transpose(2, 0, 1))
    return a


def probability_plane(out: np.ndarray, layout: str, model: str) -> np.ndarray:
    """One image's foreground probability (N x 1 x h x w, N x h x w x 1, N x h x w, h x w) as
    h x w."""
    a = out[0] if out.ndim == 4 else out
    if a.ndim == 3:
        if layout == "NHWC" and a.shape[-1] == 1:
            a = a[..., 0]
        elif a.shape[0] == 1:
            a = a[0]
    if a.ndim != 2:
        raise ModelError(f"{model}: kind \"probability\" reads one foreground channel, got an output of shape "
                         f"{out.shape}")
    return a


def id_map(out: np.ndarray, layout: str, model: str) -> np.ndarray:
    """One image's class-map output (N x h x w, N x 1 x h x w, N x h x w x 1, h x w) as h x w."""
    a = out
    if a.ndim == 4:
        a = a[0, ..., 0] if layout == "NHWC" else a[0, 0]
    elif a.ndim == 3:
        a = a[0]
    if a.ndim != 2:
        raise ModelError(f"{model}: expected an N x h x w class map, got {out.shape}")
    return a


class SegmentationTask(ClassesTask):
    name = "segmentation"
    history = 0  # each frame on its own

    def __init__(self, engine: Engine, display_max_side: int | None = 1280) -> None:
        super().__init__(engine, display_max_side)
        self.kind, self.layout, self.threshold = output_kind(self.card.output)
        n = channels_of(engine.outputs[0].shape, self.layout)
        labels = self.card.labels
        pal = self.card.palette
        #: a one-channel foreground model: labels [background, foreground] (the panel shows the
        #: foreground only at first)
        self.binary = self.kind == "probability" or (self.kind == "logits" and n == 1)
        if self.binary:
            if n is not None and n != 1:
                raise ModelError(f"{engine.path.name}: the card says kind \"probability\" (one foreground "
                                 f"channel) but the model outputs {n} channels")
            if len(labels) == 1 and pal:
                pal = ((0, 0, 0), *pal)
            labels = probability_labels(labels)
            if len(labels) != 2:
                raise ModelError(f"{engine.path.name}: a one-channel probability model has 2 classes "
                                 f"(background, foreground) but the card names {len(labels)}")
        elif self.kind == "class_map":
            n = None  # one channel of ids: the labels say how many classes there are
        else:
            labels = labels or tuple(f"class {i}" for i in range(n or 0))
            if n is not None and labels and len(labels) != max(n, 2):
                raise ModelError(
                    f"{engine.path.name}: the card names {len(labels)} classes but the model outputs {n} channels"
                )
        self.labels: tuple[str, ...] = labels
        pal = pal or default_palette(len(labels))
        self.palette = np.array(pal[: len(labels)], np.uint8).reshape(-1, 3)

    def _ensure_labels(self, c: int) -> None:
        if not self.labels:  # fully dynamic output: learn the class count from the first frame
            n = max(c, 2)
            self.labels = tuple(f"class {i}" for i in range(n))
            self.palette = np.array(default_palette(n), np.uint8)

    def prepare(self, frame: Frame) -> tuple[dict[str, np.ndarray], SegmentationContext]:
        x, geo = prepare(frame, self.card.input)
        return {self.input_name: x}, SegmentationContext(geo, pixel_spacing_of(frame))

    def postprocess(
        self, outputs: list[np.ndarray], ctx: SegmentationContext | Geometry
    ) -> SegmentationResult:
        if isinstance(ctx, SegmentationContext):
            geo, spacing = ctx.geometry, ctx.pixel_spacing
        else:  # a bare Geometry: no physical units
            geo, spacing = ctx, None
        out = outputs[0]
        out_hw = self.display_hw(geo)
        is_ids = (self.kind == "class_map" or not np.issubdtype(out.dtype, np.floating)
                  or (out.ndim == 2 and self.kind != "probability"))
        if is_ids:
            ids = geo.crop_map(id_map(out, self.layout, self.model_name))
            self._ensure_labels(1)
            if np.issubdtype(ids.dtype, np.floating):
                ids = np.rint(ids)
            cm = cv2.resize(ids.astype(np.uint8), out_hw[::-1], interpolation=cv2.INTER_NEAREST)
        elif self.kind == "probability":
            plane = geo.crop_map(probability_plane(out, self.layout, self.model_name))
            cm = self._threshold(plane.astype(np.float32, copy=False), out_hw)
        else:
            planes = geo.crop_map(class_planes(out, self.layout, self.model_name))
            if self.kind == "probabilities" and planes.shape[0] == 1:
                raise ModelError(f"{self.model_name}: the card says kind \"probabilities\" (a softmax over the "
                                 f"classes) but the output has one channel; a sigmoid foreground map is kind "
                                 f"\"probability\"")
            self._ensure_labels(planes.shape[0])
            # logits or probabilities: both argmaxed as they are, nothing applied to them
            cm = logits_to_class_map(planes.astype(np.float32, copy=False), out_hw)
        n = len(self.labels)
        counts = class_counts(cm, n)
        area = counts / max(cm.size, 1)
        area_mm2 = None
        if spacing is not None:
            # pixel counts at display resolution scaled to the frame's own pixel grid
            frame_pixels = float(geo.frame_hw[0]) * float(geo.frame_hw[1])
            area_mm2 = counts * (frame_pixels / max(cm.size, 1)) * (spacing[0] * spacing[1])
        return SegmentationResult(cm, boundary_map(cm), area, self.labels, area_mm2)

    def _threshold(self, p: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
        """A foreground probability map -> 0/1 class map: upsampled bilinearly to display size,
        then foreground where it is above the threshold."""
        lo, hi = float(p.min()), float(p.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ModelError(f"{self.model_name}: the card says kind \"probability\" but the output holds values "
                             f"from {lo:.3g} to {hi:.3g}, outside [0, 1] (logits? then say kind \"logits\")")
        h, w = out_hw
        up = p if p.shape == (h, w) else cv2.resize(np.ascontiguousarray(p), (w, h), interpolation=cv2.INTER_LINEAR)
        return (up > np.float32(self.threshold)).astype(np.uint8)

    def columns(self) -> list[str]:
        return [column_name(label) for label in self.labels]

    def physical_columns(self) -> list[str]:
        """``area_mm2_<class>`` then ``volume_ml_<class>`` (added by ``analyze`` for DICOM)."""
        return [area_mm2_column(lab) for lab in self.labels] + [volume_column(lab) for lab in self.labels]

    def row(self, result: SegmentationResult) -> dict[str, Any]:
        """``area_<class>`` fractions, and ``area_mm2_<class>`` when the frame had a spacing."""
        out: dict[str, Any] = {
            column_name(lab): round(float(a), 6) for lab, a in zip(result.labels, result.class_area)
        }
        if result.class_area_mm2 is not None:
            for lab, a in zip(result.labels, result.class_area_mm2):
                out[area_mm2_column(lab)] = round(float(a), 6)
        return out
