"""The interface every task follows (Qt-free)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from loupe.sources.base import Frame


class Task(Protocol):
    name: str
    #: How many past frames a result depends on besides its own: 0 when each frame's result
    #: depends on that frame alone (segmentation, density, codebook, and compression, whose
    #: decoder is fed the frame's index, not earlier frames), T for a predictor fed the T frames
    #: before (anomaly). ``--resume`` and Ray parts start that many frames early to refill it;
    #: None would mean "every frame since the input's start" (never resumed mid-input nor split).
    history: int | None

    def reset(self) -> None:
        """Forget the past frames (a new input starts); a no-op for tasks with ``history`` 0."""
        ...

    def fresh(self, display_max_side: int | None = None) -> Task:
        """A new task on the same engine (its ONNX Runtime session is shared) with this task's
        user settings copied now (threshold, calibration, region of interest) and none of its
        state: what a whole-file analysis runs beside the live view."""
        ...

    def prepare(self, frame: Frame) -> tuple[dict[str, np.ndarray], Any]:
        """Model feeds for one frame, and a context postprocess needs (e.g. geometry)."""
        ...

    def postprocess(self, outputs: list[np.ndarray], ctx: Any) -> Any:
        """The task's frozen result record (display-ready arrays)."""
        ...

    def columns(self) -> list[str]:
        """The task's ``analyze`` columns, in order."""
        ...

    def row(self, result: Any) -> dict[str, Any]:
        """The task's ``analyze`` values for one result."""
        ...
