"""Depth, and any dense map of one value per pixel that is not a count (saliency, ...) (Qt-free).

The model outputs one map: N x 1 x h x w, N x h x w, N x h x w x 1 (channels last) or h x w. The
statistics (``depth_min``, ``depth_median``, ``depth_max``) are taken at the model's output
resolution over the part of the map that covers the frame (``Geometry.crop_map``: letterbox bands
and padding excluded) and over its finite values only; the map sent to the view is that part
upsampled (bilinear) to display size, for display only. ``value_at``-style readouts read the
model's own cell (``DepthResult.values``), not the interpolated display map.

Card ``loupe.output`` keys:

- ``kind``: ``"relative"`` (default; values in no unit: relative depth or disparity, saliency;
  rows give the raw values) or ``"metric"`` (values in ``unit``).
- ``unit``: the values' unit (default ``"m"`` for metric, none for relative).
- ``inverse``: true when larger values are nearer (disparity-like; MiDaS and Depth Anything's
  relative outputs are such inverse depths); default false. The panel says which end is near.
- ``range``: ``[lo, hi]``, the values drawn at the ends of the colour range.
- ``range_mode``: ``"fixed"`` (``range``, the default when it is given) or ``"clip"`` (per clip:
  the range grows with each frame's robust low and high, the 1st and 99th percentiles, seen so far
  in the source, and starts again for a new source; the default without ``range``).
- ``layout``: ``"NCHW"`` or ``"NHWC"`` when the shape alone does not say (by default a rank-4
  output is N x 1 x h x w when its axis 1 is 1, else N x h x w x 1).

The map is the output called ``depth`` (else the first). A card whose input is centre-cropped is
refused: the map is drawn over the whole frame, and a crop would leave its edges unseen.
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

#: percentiles of a map's finite values read per frame: min, robust low, median, robust high, max
_PERCENTILES = (0.0, 1.0, 50.0, 99.0, 100.0)


def single_map(arr: np.ndarray, layout: str | None = None) -> np.ndarray:
    """The h x w map of an output N x 1 x h x w, N x h x w x 1, N x h x w or h x w (N = 1); a
    ValueError saying what the shape is otherwise."""
    a = np.asarray(arr)
    s = a.shape
    if a.ndim == 2:
        return a
    if a.ndim == 3:
        if s[0] != 1:
            raise ValueError(f"an N x h x w map with a batch of {s[0]} (shape {list(s)}); Loupe feeds one image")
        return a[0]
    if a.ndim == 4:
        nhwc = layout == "NHWC" or (layout is None and s[1] != 1 and s[3] == 1)
        c = s[3] if nhwc else s[1]
        if c != 1 or s[0] != 1:
            want = "N x h x w x 1" if nhwc else "N x 1 x h x w"
            raise ValueError(f"shape {list(s)} is not one map ({want} with N = 1)")
        return a[0, :, :, 0] if nhwc else a[0, 0]
    raise ValueError(f"rank {a.ndim} (shape {list(s)}); a depth map is N x 1 x h x w, N x h x w or N x h x w x 1")


def map_stats(values: np.ndarray) -> tuple[float, float, float, float, float] | None:
    """(min, 1st percentile, median, 99th percentile, max) of the finite values; None when there
    are none. One partition pass for all five."""
    v = np.asarray(values, np.float32)
    finite = np.isfinite(v)
    if not finite.all():
        v = v[finite]
    if v.size == 0:
        return None
    q = np.percentile(v.ravel(), _PERCENTILES)
    return tuple(float(x) for x in q)  # type: ignore[return-value]


def format_value(v: float, unit: str) -> str:
    """``2.35 m``; ``0.412`` for a map without a unit."""
    return f"{v:.3g} {unit}" if unit else f"{v:.3g}"


class ClipRange:
    """The per-clip colour range: it grows with each frame's robust low and high (never shrinks
    within a source) and starts again with ``reset`` for a new source."""

    def __init__(self) -> None:
        self.low: float | None = None
        self.high: float | None = None

    def reset(self) -> None:
        self.low = self.high = None

    def add(self, low: float | None, high: float | None) -> bool:
        """Widen the range to include [low, high]; True when it changed."""
        if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
            return False
        new_low = low if self.low is None else min(self.low, low)
        new_high = high if self.high is None else max(self.high, high)
        changed = (new_low, new_high) != (self.low, self.high)
        self.low, self.high = float(new_low), float(new_high)
        return changed

    @property
    def range(self) -> tuple[float, float] | None:
        """(lo, hi), hi > lo (a flat map gets a small width around its value), or None before any frame."""
        if self.low is None or self.high is None:
            return None
        lo, hi = self.low, self.high
        if hi <= lo:
            pad = max(abs(lo) * 1e-3, 1e-6)
            lo, hi = lo - pad, hi + pad
        return lo, hi


@dataclass(frozen=True)
class DepthResult:
    """depth: float32 H x W map to draw (display resolution; at model resolution where nothing is
    displayed, e.g. ``analyze``); values: float32 h x w, the model's map over the frame's part
    (padding cropped off), which the statistics and the readout under the cursor read;
    depth_min/median/max: over its finite values (None when there are none), in ``unit`` (raw
    values for a relative map); low/high: its 1st and 99th percentiles (the per-clip range);
    frame_hw: the source frame's (h, w)."""

    depth: np.ndarray
    values: np.ndarray
    depth_min: float | None
    depth_median: float | None
    depth_max: float | None
    low: float | None
    high: float | None
    unit: str
    frame_hw: tuple[int, int]

    def __post_init__(self) -> None:
        for name in ("depth", "values"):
            a = getattr(self, name)
            if a.dtype != np.float32 or a.ndim != 2:
                raise ValueError(f"{name} must be 2-d float32, got {a.dtype} {a.shape}")

    def value_at(self, x: float, y: float) -> float | None:
        """The model's value at frame pixel (x, y) (its output cell there), or None outside the frame."""
        fh, fw = self.frame_hw
        if not (0 <= x < fw and 0 <= y < fh):
            return None
        h, w = self.values.shape
        return float(self.values[min(h - 1, int(y * h / fh)), min(w - 1, int(x * w / fw))])


class DepthTask(ModelTask):
    name = "depth"
    history = 0  # each frame on its own (the per-clip colour range is the panel's, display only)

    def __init__(self, engine: Engine, display_max_side: int | None = 1280) -> None:
        super().__init__(engine, display_max_side)
        out = self.card.output
        self.kind: str = out.get("kind") or "relative"
        self.unit: str = str(out.get("unit") if out.get("unit") is not None else ("m" if self.kind == "metric" else ""))
        self.inverse = bool(out.get("inverse", False))
        rng = out.get("range")
        self.range: tuple[float, float] | None = (float(rng[0]), float(rng[1])) if rng else None
        self.range_mode: str = out.get("range_mode") or ("fixed" if self.range else "clip")
        if self.card.input.center_crop:
            raise ModelError(f"{self.model_name}: a depth map is drawn over the whole frame, but the card's "
                             "loupe.input center_crop cuts the frame's edges off; use letterbox or a plain resize")
        if self.range_mode == "fixed" and self.range is None:
            raise ModelError(f"{self.model_name}: the card's loupe.output range_mode \"fixed\" needs a range [lo, hi]")
        self.layout: str | None = out.get("layout")
        names = [o.name for o in engine.outputs]
        self.output_index = names.index("depth") if "depth" in names else 0

    def prepare(self, frame: Frame) -> tuple[dict[str, np.ndarray], Geometry]:
        x, geo = prepare(frame, self.card.input)
        return {self.input_name: x}, geo

    def postprocess(self, outputs: list[np.ndarray], geo: Geometry) -> DepthResult:
        raw = outputs[self.output_index]
        try:
            m = single_map(raw, self.layout)
        except ValueError as e:
            raise ModelError(f"{self.model_name}: its depth output has {e}") from None
        values = np.ascontiguousarray(geo.crop_map(m), np.float32)
        stats = map_stats(values)
        lo_, low, med, high, hi_ = stats if stats is not None else (None,) * 5
        if self.display_max_side is None:
            shown = values  # nothing is drawn (analyze): no display-size copy
        else:
            oh, ow = self.display_hw(geo)
            shown = cv2.resize(values, (ow, oh), interpolation=cv2.INTER_LINEAR)
        return DepthResult(shown, values, lo_, med, hi_, low, high, self.unit, geo.frame_hw)

    def columns(self) -> list[str]:
        return ["depth_min", "depth_median", "depth_max"]

    def row(self, result: DepthResult) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else float(f"{v:.7g}")  # 7 significant digits (float32's)

        return {"depth_min": r(result.depth_min), "depth_median": r(result.depth_median),
                "depth_max": r(result.depth_max)}
