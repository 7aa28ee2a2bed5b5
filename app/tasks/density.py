"""Crowd density: a density map whose sum is the count (Qt-free).

The count is the sum of the density map at the model's own output resolution (cropped to the
frame when the input was padded) times the card's ``count_scale`` — exactly; resizing a frame to
a fixed model size does not change how many people are in it, so no area factor applies. The map
sent to the view is upsampled (bilinear) to display resolution for display only. A region of
interest (a polygon in frame pixels) has its own count: the sum of the output pixels whose centres
fall inside it.

Card ``loupe.output`` keys: ``stride`` (output stride), ``count_scale`` (default 1),
``outputs`` (output names; the one called ``density``, else the first, is the map),
``display_max`` (density per output pixel drawn at the top of the colour range; the view never
re-normalises per frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from loupe.inference.engine import Engine, ModelError
from loupe.inference.preprocess import Geometry, prepare
from loupe.sources.base import Frame
from loupe.tasks.base import ModelTask


def robust_max(values: np.ndarray) -> float:
    """The 99th percentile of the positive values (0 when there are none): the top of what is
    there, not one hot pixel."""
    v = np.asarray(values, np.float32).ravel()
    v = v[v > 0]
    return float(np.percentile(v, 99)) if v.size else 0.0


@dataclass(frozen=True)
class DensityResult:
    """density: float32 H x W map at display resolution (people per model output pixel);
    count: sum at model resolution x count_scale; roi_count: the same inside the region of
    interest (None without one); display_max: the top of the fixed colour range; peak: the
    map's robust maximum (``robust_max`` at model resolution, for the panel's colour range;
    None where nothing is displayed, e.g. ``analyze``)."""

    density: np.ndarray
    count: float
    roi_count: float | None
    display_max: float
    peak: float | None = None

    def __post_init__(self) -> None:
        if self.density.dtype != np.float32 or self.density.ndim != 2:
            raise ValueError(f"density must be 2-d float32, got {self.density.dtype} {self.density.shape}")
        if not np.isfinite(self.count):
            raise ValueError(f"count must be finite, got {self.count}")


def polygon_mask(points: np.ndarray, frame_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """bool mask at output resolution: the cells whose centres lie inside a polygon given in
    frame pixels (x, y). Even-odd rule, one vectorised pass per polygon edge."""
    fh, fw = frame_hw
    oh, ow = out_hw
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    px = pts[:, 0] * ow / fw  # frame -> output cell units; cell (i, j) is centred at (j + .5, i + .5)
    py = pts[:, 1] * oh / fh
    cx = (np.arange(ow) + 0.5)[None, :]
    cy = (np.arange(oh) + 0.5)[:, None]
    inside = np.zeros((oh, ow), bool)
    n = len(pts)
    for k in range(n):  # loop over edges (a handful), each step vectorised over cells
        x0, y0, x1, y1 = px[k], py[k], px[(k + 1) % n], py[(k + 1) % n]
        if y0 == y1:
            continue
        crosses = (cy >= min(y0, y1)) & (cy < max(y0, y1))
        x_at = x0 + (cy - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (cx < x_at)
    return inside


class DensityTask(ModelTask):
    name = "density"
    history = 0  # each frame on its own (display_max, fixed from the first frame, is display only)

    def __init__(self, engine: Engine, display_max_side: int | None = 1280) -> None:
        super().__init__(engine, display_max_side)
        out = self.card.output
        self.count_scale = float(out.get("count_scale", 1.0))
        self.display_max = float(out.get("display_max", 0.0)) or None  # None: set from the first frame
        names = [o.name for o in engine.outputs]
        self.output_index = names.index("density") if "density" in names else 0
        self.roi: np.ndarray | None = None  # polygon, frame pixels (x, y); swapped whole, never edited

    def fresh(self, display_max_side: int | None = None) -> DensityTask:
        """The region of interest as it is now; a later edit of it does not reach the copy."""
        task = super().fresh(display_max_side)
        task.set_roi(self.roi)
        return task

    def set_roi(self, points: np.ndarray | None) -> None:
        self.roi = None if points is None or len(points) < 3 else np.asarray(points, np.float64).copy()

    def prepare(self, frame: Frame) -> tuple[dict[str, np.ndarray], Geometry]:
        x, geo = prepare(frame, self.card.input, pad="zero")  # padding must add no density
        return {self.input_name: x}, geo

    def postprocess(self, outputs: list[np.ndarray], geo: Geometry) -> DensityResult:
        d = np.asarray(outputs[self.output_index])
        while d.ndim > 2:
            if d.shape[0] != 1:
                raise ModelError(f"{self.model_name}: expected a 1 x 1 x h x w density map, got {outputs[self.output_index].shape}")
            d = d[0]
        d = d.astype(np.float32, copy=False)
        if geo.mode == "pad":
            rh, rw = geo.crop_output(d.shape)
            d = d[:rh, :rw]
        count = float(d.sum(dtype=np.float64)) * self.count_scale
        roi = self.roi
        roi_count = None
        if roi is not None:
            mask = polygon_mask(roi, geo.frame_hw, d.shape)
            roi_count = float(d[mask].sum(dtype=np.float64)) * self.count_scale
        if self.display_max is None:  # fixed from the first frame on, never per frame
            self.display_max = max(float(np.percentile(d, 99.5)), 1e-6)
        oh, ow = self.display_hw(geo)
        shown = cv2.resize(np.ascontiguousarray(d), (ow, oh), interpolation=cv2.INTER_LINEAR)
        # the panel's colour range follows this; on the small map here, not the display-size one
        # on the UI thread
        peak = robust_max(d) if self.display_max_side is not None else None
        return DensityResult(shown, count, roi_count, self.display_max, peak)

    def columns(self) -> list[str]:
        return ["count", "roi_count"]

    def row(self, result: DensityResult) -> dict[str, Any]:
        return {
            "count": round(result.count, 4),
            "roi_count": None if result.roi_count is None else round(result.roi_count, 4),
        }
