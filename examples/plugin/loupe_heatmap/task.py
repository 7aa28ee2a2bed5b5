"""The heatmap task (no Qt here: ``loupe analyze`` runs it headless, on its worker threads).

Card (``loupe.output``): ``threshold`` (default 0.5: ``heat_above`` is the fraction of the frame
whose value is above it), ``display_max`` (the value drawn at the top of the colour range,
default 1; the panel never re-normalises per frame), ``output`` (the output's name; default the
first output).

Statistics are taken at the model's own output resolution, on the part of the map that covers the
frame (a frame padded up to the model's size multiple is cropped back); the map is resized to
display resolution for the panel only. The peak is the centre of the highest output cell, in
frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from loupe.inference.card import CardError, check_numbers
from loupe.inference.engine import ModelError
from loupe.inference.preprocess import Geometry, display_size, prepare
from loupe.inference.safety import check_image_input
from loupe.sources.base import Frame

COLUMNS = ["heat_mean", "heat_max", "heat_peak_x", "heat_peak_y", "heat_above"]


def check_card(output: dict[str, Any]) -> None:
    """``loupe.output`` entries, checked when the card is read (CardError names the key)."""
    check_numbers(output, ("threshold", "display_max"))
    if output.get("display_max") is not None and not float(output["display_max"]) > 0:
        raise CardError(f"loupe.output display_max must be > 0, got {output['display_max']!r}")
    if output.get("output") is not None and not isinstance(output["output"], str):
        raise CardError(f"loupe.output output must be an output's name, got {output['output']!r}")


def _output_index(engine: Any) -> int:
    names = [o.name for o in engine.outputs]
    want = engine.card.output.get("output")
    if want is None:
        return 0
    if want not in names:
        raise ModelError(f"{engine.path.name}: the card names output {want!r}; the model has {', '.join(names)}")
    return names.index(want)


def check_io(engine: Any) -> None:
    """One image in, one map out (N x 1 x h x w or N x h x w): checked before the task is made."""
    check_image_input(engine)
    out = list(engine.outputs)[_output_index(engine)]
    shape = tuple(out.shape)
    if len(shape) not in (3, 4) or (len(shape) == 4 and isinstance(shape[1], int) and shape[1] != 1):
        dims = "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
        raise ModelError(f"{engine.path.name}: its output '{out.name}' is {dims}; a heatmap model outputs "
                         f"one map, N x 1 x h x w")


@dataclass(frozen=True)
class HeatmapResult:
    """heat: float32 map at display resolution; mean/max at the model's resolution; peak: (x, y)
    in frame pixels; above: fraction of the map > threshold; display_max: top of the colour range."""

    heat: np.ndarray
    mean: float
    max: float
    peak: tuple[float, float]
    above: float
    threshold: float
    display_max: float


@dataclass(frozen=True)
class HeatmapContext:
    geometry: Geometry
    threshold: float  # as it was when the frame was prepared (the panel may move it meanwhile)


class HeatmapTask:
    name = "heatmap"
    history = 0

    def __init__(self, engine: Any, display_max_side: int | None = 1280) -> None:
        self.engine = engine
        self.card = engine.card
        self.display_max_side = display_max_side
        self.input_name = engine.inputs[0].name
        self.output_index = _output_index(engine)
        out = self.card.output
        self.threshold = float(out.get("threshold", 0.5))
        self.display_max = float(out.get("display_max", 1.0))

    def reset(self) -> None:
        pass  # no state carried from frame to frame

    def fresh(self, display_max_side: int | None = None) -> HeatmapTask:
        task = HeatmapTask(self.engine, display_max_side=display_max_side)
        task.threshold = self.threshold
        return task

    def prepare(self, frame: Frame) -> tuple[dict[str, np.ndarray], HeatmapContext]:
        x, geo = prepare(frame, self.card.input, pad="zero")
        return {self.input_name: x}, HeatmapContext(geo, self.threshold)

    def postprocess(self, outputs: list[np.ndarray], ctx: HeatmapContext) -> HeatmapResult:
        m = np.asarray(outputs[self.output_index])
        while m.ndim > 2:
            if m.shape[0] != 1:
                raise ModelError(f"{self.engine.path.name}: expected one 1 x 1 x h x w map, got {m.shape}")
            m = m[0]
        m = m.astype(np.float32, copy=False)
        geo = ctx.geometry
        if geo.mode == "pad":
            rh, rw = geo.crop_output(m.shape)
            m = m[:rh, :rw]
        finite = np.isfinite(m)
        if not finite.all():
            raise ModelError(f"{self.engine.path.name}: the map holds {int((~finite).sum())} NaN or infinite values")
        fh, fw = geo.frame_hw
        iy, ix = np.unravel_index(int(np.argmax(m)), m.shape)
        # the output cell's centre, in frame pixels (the map covers the frame; pad mode was cropped)
        peak = ((ix + 0.5) * fw / m.shape[1], (iy + 0.5) * fh / m.shape[0])
        oh, ow = display_size(geo.frame_hw, self.display_max_side)
        heat = cv2.resize(np.ascontiguousarray(m), (ow, oh), interpolation=cv2.INTER_LINEAR)
        return HeatmapResult(
            heat=heat,
            mean=float(m.mean(dtype=np.float64)),
            max=float(m.max()),
            peak=peak,
            above=float((m > ctx.threshold).mean()),
            threshold=ctx.threshold,
            display_max=self.display_max,
        )

    def columns(self) -> list[str]:
        return list(COLUMNS)

    def row(self, result: HeatmapResult) -> dict[str, Any]:
        return {
            "heat_mean": round(result.mean, 6),
            "heat_max": round(result.max, 6),
            "heat_peak_x": round(result.peak[0], 2),
            "heat_peak_y": round(result.peak[1], 2),
            "heat_above": round(result.above, 6),
        }
