"""Landmark contours: a model that outputs points, drawn joined into the card's contours (Qt-free).

A landmark model predicts a fixed set of P points (organ outlines on a chest X-ray, the corners
of a part, ...). The card says how to read them and which points make which contour; every
frame's result holds the points in source-frame pixels and each closed contour's enclosed area
(shoelace formula), in px² and, when the frame says its pixel spacing (DICOM), in mm².

Card ``loupe.output`` keys (checked by ``loupe.inference.card.check_landmarks_output``):

- ``format``: ``points`` (default): the first output holds x, y per point, ``1 x P x 2`` (also
  ``P x 2``, ``1 x 2P`` or ``2P`` as x0, y0, x1, y1, ...; a third column, ``1 x P x 3``, is read
  as a per-point score); ``heatmaps``: ``1 x P x h x w``, one map per point, decoded by
  ``loupe.tasks.heatmaps.decode_heatmaps`` (argmax with sub-pixel refinement; the score is the
  peak value).
- ``normalized`` (``points``; default false): true when x, y are fractions 0..1 of the model
  input's width and height, false when they are model-input pixels.
- ``refine`` (``heatmaps``): ``taylor`` (default), ``quarter`` or ``none``; ``align``
  (``heatmaps``): ``msra`` (default), ``udp`` or ``cells`` (see ``loupe.tasks.heatmaps``).
- ``contours``: a list of ``{"name": str, "points": [i, ...], "closed": bool}`` (``closed``
  defaults to true): the points, by index, joined in the listed order; a closed contour also
  joins its last point to its first. None listed: the points are drawn alone.
- ``point_names``: optional, one name per point (the panel names the point under the cursor).

The top-level ``loupe.palette`` gives one colour per contour (else ``default_palette``).

Areas: a closed contour's area is the absolute shoelace area of its polygon in frame pixels
(the points as they are: a self-intersecting outline gives the shoelace's signed-area sum, not
a pixel count). An open contour is a curve (a spine line, a rib): it has no area, so no
``area_*`` column (it is not closed implicitly). With a pixel spacing (mm, rows then columns),
``area_mm2 = area_px x row spacing x column spacing``.

Points are mapped to frame pixels by ``Geometry.to_frame`` (continuous pixel coordinates: pixel
(r, c) covers [c, c + 1) x [r, r + 1)) and are not clipped: a point predicted in the padding
lies outside the frame.

``loupe analyze`` columns: ``area_px_<contour>`` per closed contour and, for DICOM inputs,
``area_mm2_<contour>``; the JSONL rows also hold ``"points": [[x, y], ...]`` (frame pixels,
all P) and, when the model gives them, ``"point_scores"``.

Worked example, HybridGNet (Gaggion et al., IEEE TMI 2022: organ outlines on chest X-rays as
graphs of points; its lungs-and-heart model outputs 120 points, x, y as fractions of its 1024 x
1024 greyscale input, the right lung's 44 points first, then the left lung's 50, then the
heart's 26). Its preprocessing pads the image to a square, centred, and resizes it, which is
a letterbox with black padding. A sidecar for an export of it::

    {"loupe.task": "landmarks",
     "loupe.input": {"color": "GRAY", "scale": 0.00392156862745098, "mean": [0], "std": [1],
                     "fixed_size": [1024, 1024], "letterbox": true, "pad_value": 0},
     "loupe.palette": [[255, 99, 71], [65, 105, 225], [255, 215, 0]],
     "loupe.output": {"format": "points", "normalized": true,
                      "contours": [{"name": "right lung", "points": [0, 1, ..., 43]},
                                   {"name": "left lung", "points": [44, 45, ..., 93]},
                                   {"name": "heart", "points": [94, 95, ..., 119]}]}}

(the ``...`` stand for the full runs of indices), which gives the columns ``area_px_right_lung``,
``area_px_left_lung`` and ``area_px_heart``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from loupe.inference.engine import Engine, ModelError, default_palette
from loupe.inference.preprocess import Geometry, prepare
from loupe.sources.base import Frame
from loupe.tasks.base import ModelTask, column_safe, output_choice
from loupe.tasks.heatmaps import decode_heatmaps, heatmap_to_input
from loupe.tasks.segmentation import pixel_spacing_of

FORMATS = ("points", "heatmaps")


@dataclass(frozen=True)
class Contour:
    """One contour of the card: its name, the indices of its points in drawing order, closed or
    open."""

    name: str
    points: tuple[int, ...]
    closed: bool = True


def area_px_column(name: str) -> str:
    return "area_px_" + column_safe(name)


def area_mm2_column(name: str) -> str:
    return "area_mm2_" + column_safe(name)


def parse_contours(output: dict[str, Any], model: str = "the model") -> tuple[Contour, ...]:
    """The card's ``contours`` as ``Contour`` records (ModelError naming what is wrong; the card
    check has already refused most of it when the card was read)."""
    raw = output.get("contours") or []
    if not isinstance(raw, list):
        raise ModelError(f"{model}: loupe.output contours must be a list of contours")
    out = []
    for k, c in enumerate(raw):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not isinstance(c.get("points"), list):
            raise ModelError(f"{model}: loupe.output contours[{k}] must be an object with a name and points")
        pts = c["points"]
        if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in pts):
            raise ModelError(f"{model}: loupe.output contours[{k}] ({c['name']!r}) points must be point indices >= 0")
        out.append(Contour(c["name"], tuple(pts), bool(c.get("closed", True))))
    return tuple(out)


def shoelace_area(xy: np.ndarray) -> float:
    """The area enclosed by a closed polygon (its vertices (n, 2) in order; absolute value of the
    shoelace sum; 0 for fewer than 3 vertices; NaN when a vertex is not finite)."""
    p = np.asarray(xy, np.float64)
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    # centred first: the cross products then stay small, so float64 keeps its precision
    x = x - x.mean()
    y = y - y.mean()
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2.0)


def read_points(out: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray | None]:
    """One image's ``points`` output -> ((P, 2) x, y float64, (P,) scores or None)."""
    a = np.asarray(out)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2 and a.shape[0] == 1:  # 1 x 2P: x0, y0, x1, y1, ...
        a = a[0]
    if a.ndim == 2 and a.shape[1] in (2, 3):
        pts = a.astype(np.float64)
        return pts[:, :2], (pts[:, 2] if pts.shape[1] == 3 else None)
    if a.ndim == 1 and a.size % 2 == 0 and a.size:
        return a.astype(np.float64).reshape(-1, 2), None
    raise ModelError(f"{model}: expected points as 1 x P x 2 (x, y), 1 x P x 3 (x, y, score) or 1 x 2P, "
                     f"got an output of shape {out.shape}")


def read_heatmaps(out: np.ndarray, model: str) -> np.ndarray:
    """One image's heatmaps (``1 x P x h x w`` or ``P x h x w``) as P x h x w."""
    a = np.asarray(out)
    if a.ndim == 4:
        a = a[0]
    if a.ndim != 3:
        raise ModelError(f"{model}: format \"heatmaps\" reads 1 x P x h x w maps, got an output of shape {out.shape}")
    return a


@dataclass(frozen=True)
class LandmarksContext:
    geometry: Geometry
    pixel_spacing: tuple[float, float] | None = None


@dataclass(frozen=True)
class LandmarksResult:
    """points: (P, 2) float32 x, y in source-frame pixels (not clipped); scores: (P,) float32
    per point (heatmap peaks, or a third output column) or None; contours: the card's;
    area_px: (len(contours),) float64 enclosed area per contour in frame pixels², NaN for an
    open contour; area_mm2: the same in mm² (None without a pixel spacing); point_names: the
    card's (may be empty)."""

    points: np.ndarray
    scores: np.ndarray | None
    contours: tuple[Contour, ...]
    area_px: np.ndarray
    frame_hw: tuple[int, int]
    area_mm2: np.ndarray | None = None
    point_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.points.ndim != 2 or self.points.shape[1] != 2:
            raise ValueError(f"points must be P x 2, got {self.points.shape}")
        if self.area_px.shape != (len(self.contours),):
            raise ValueError(f"area_px must have shape ({len(self.contours)},), got {self.area_px.shape}")
        if self.area_mm2 is not None and self.area_mm2.shape != self.area_px.shape:
            raise ValueError(f"area_mm2 must have shape {self.area_px.shape}, got {self.area_mm2.shape}")

    @property
    def count(self) -> int:
        return len(self.points)

    def point_label(self, i: int) -> str:
        """Point ``i``'s name from the card, else ``point <i>``."""
        if 0 <= i < len(self.point_names):
            return self.point_names[i]
        return f"point {i}"

    @property
    def labels(self) -> tuple[str, ...]:
        """The closed contours' names (those with an area)."""
        return tuple(c.name for c in self.contours if c.closed)

    @property
    def class_area_mm2(self) -> np.ndarray | None:
        """mm² per closed contour (in ``labels`` order), None without a pixel spacing."""
        if self.area_mm2 is None:
            return None
        return self.area_mm2[[k for k, c in enumerate(self.contours) if c.closed]]


class LandmarksTask(ModelTask):
    name = "landmarks"
    history = 0  # each frame on its own

    def __init__(self, engine: Engine, display_max_side: int | None = 1280) -> None:
        super().__init__(engine, display_max_side)
        out = self.card.output
        model = self.model_name
        self.format = output_choice(str(out.get("format") or "points"), "format", FORMATS, model)
        self.normalized = bool(out.get("normalized", False))
        self.refine = str(out.get("refine") or "taylor")
        self.align = str(out.get("align") or "msra")
        self.contours = parse_contours(out, model)
        names = out.get("point_names") or []
        self.point_names: tuple[str, ...] = tuple(str(n) for n in names)
        seen: dict[str, str] = {}
        for c in self.contours:
            key = column_safe(c.name)
            if not key:
                raise ModelError(f"{model}: contour name {c.name!r} has no letter or digit to name its columns by")
            if key in seen:
                raise ModelError(f"{model}: contours {seen[key]!r} and {c.name!r} would both write the "
                                 f"columns area_px_{key}; give them distinct names")
            seen[key] = c.name
        pal = self.card.palette or default_palette(len(self.contours))
        if len(pal) < len(self.contours):
            raise ModelError(f"{model}: loupe.palette has {len(pal)} colours for {len(self.contours)} contours")
        self.palette = np.array(pal[: len(self.contours)], np.uint8).reshape(-1, 3)
        self.n_points = self._static_points(engine)
        if self.n_points is not None:
            self._check_indices(self.n_points)

    def _static_points(self, engine: Engine) -> int | None:
        """P from the first output's shape when it is fixed (else learnt from the first frame)."""
        shape = engine.outputs[0].shape if engine.outputs else ()
        if self.format == "heatmaps":
            d = shape[-3] if len(shape) >= 3 else None
            return d if isinstance(d, int) else None
        if len(shape) == 3 and isinstance(shape[1], int) and shape[2] in (2, 3):
            return shape[1]
        if len(shape) == 2 and shape[0] == 1 and isinstance(shape[1], int) and shape[1] % 2 == 0:
            return shape[1] // 2
        if len(shape) == 2 and isinstance(shape[0], int) and shape[0] != 1 and shape[1] in (2, 3):
            return shape[0]
        return None

    def _check_indices(self, p: int) -> None:
        for c in self.contours:
            bad = [i for i in c.points if i >= p]
            if bad:
                raise ModelError(f"{self.model_name}: contour {c.name!r} names point {bad[0]}, but the model "
                                 f"outputs {p} points (0 to {p - 1})")
        if self.point_names and len(self.point_names) != p:
            raise ModelError(f"{self.model_name}: the card names {len(self.point_names)} points, the model "
                             f"outputs {p}")

    def prepare(self, frame: Frame) -> tuple[dict[str, np.ndarray], LandmarksContext]:
        x, geo = prepare(frame, self.card.input)
        return {self.input_name: x}, LandmarksContext(geo, pixel_spacing_of(frame))

    def input_points(self, out: np.ndarray, geo: Geometry) -> tuple[np.ndarray, np.ndarray | None]:
        """The first output -> ((P, 2) model-input pixels, scores or None)."""
        if self.format == "heatmaps":
            maps = read_heatmaps(out, self.model_name)
            dec = decode_heatmaps(maps, refine=self.refine)
            xy = heatmap_to_input(dec[:, :2], maps.shape[1:], geo.input_hw, align=self.align)
            return xy.astype(np.float64), dec[:, 2].astype(np.float32)
        xy, scores = read_points(out, self.model_name)
        if self.normalized:
            ih, iw = geo.input_hw
            xy = xy * np.array([iw, ih], np.float64)
        return xy, None if scores is None else scores.astype(np.float32)

    def postprocess(self, outputs: list[np.ndarray], ctx: LandmarksContext | Geometry) -> LandmarksResult:
        if isinstance(ctx, LandmarksContext):
            geo, spacing = ctx.geometry, ctx.pixel_spacing
        else:  # a bare Geometry: no physical units
            geo, spacing = ctx, None
        xy, scores = self.input_points(outputs[0], geo)
        p = len(xy)
        if self.n_points is None:  # a dynamic output: check the card against the first frame
            self._check_indices(p)
            self.n_points = p
        elif p != self.n_points:
            raise ModelError(f"{self.model_name}: the model output {p} points on this frame, {self.n_points} before")
        pts = geo.to_frame(xy.astype(np.float32)).reshape(-1, 2)
        area = np.full(len(self.contours), np.nan)
        pts64 = pts.astype(np.float64)
        for k, c in enumerate(self.contours):
            if c.closed:
                area[k] = shoelace_area(pts64[list(c.points)])
        area_mm2 = None if spacing is None else area * (spacing[0] * spacing[1])
        return LandmarksResult(pts, scores, self.contours, area, tuple(geo.frame_hw), area_mm2, self.point_names)

    def fresh(self, display_max_side: int | None = None) -> LandmarksTask:
        task = super().fresh(display_max_side)
        task.n_points = self.n_points
        return task

    def columns(self) -> list[str]:
        return [area_px_column(c.name) for c in self.contours if c.closed]

    def physical_columns(self) -> list[str]:
        """``area_mm2_<contour>`` per closed contour (inputs with a pixel spacing)."""
        return [area_mm2_column(c.name) for c in self.contours if c.closed]

    def row(self, result: LandmarksResult) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, c in enumerate(result.contours):
            if not c.closed:
                continue
            out[area_px_column(c.name)] = round(float(result.area_px[k]), 4)
            if result.area_mm2 is not None:
                out[area_mm2_column(c.name)] = round(float(result.area_mm2[k]), 4)
        out["points"] = [[round(float(x), 3), round(float(y), 3)] for x, y in result.points]
        if result.scores is not None:
            out["point_scores"] = [round(float(s), 5) for s in result.scores]
        return out
