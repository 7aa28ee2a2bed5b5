"""The interface every task follows, and the set-up the built-in tasks share (Qt-free)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from loupe.inference.engine import ModelError, default_palette
from loupe.inference.preprocess import Geometry, display_size
from loupe.sources.base import Frame

if TYPE_CHECKING:
    from typing_extensions import Self

    from loupe.inference.card import ModelCard
    from loupe.inference.engine import Engine


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


class ModelTask:
    """What a task made for one loaded model starts from (the built-ins subclass it; a plug-in
    may, though only the ``Task`` protocol is required): the engine, its card, the name of its
    first input and the display cap; ``reset`` with nothing to forget and ``fresh`` making
    another on the same engine. A subclass with user settings or past frames extends
    ``fresh`` (copying the settings) and ``reset``."""

    name: str
    history: int | None = 0

    def __init__(self, engine: Engine, display_max_side: int | None = 1280) -> None:
        self.engine = engine
        self.card: ModelCard = engine.card
        self.input_name: str = engine.inputs[0].name if engine.inputs else ""
        self.display_max_side = display_max_side

    @property
    def model_name(self) -> str:
        """The model file's name, which starts every ModelError a task raises."""
        return self.engine.path.name

    def reset(self) -> None:
        """Nothing to forget: each frame's result depends on that frame alone."""

    def fresh(self, display_max_side: int | None = None) -> Self:
        return type(self)(self.engine, display_max_side=display_max_side)

    def display_hw(self, geo: Geometry) -> tuple[int, int]:
        """(h, w) at which this task's overlays are drawn: the frame's size, capped."""
        return display_size(geo.frame_hw, self.display_max_side)


class ClassesTask(ModelTask):
    """A task whose results name classes: ``labels`` and one colour each in ``palette``. A model
    with a dynamic class count learns them from its first frame; ``fresh`` keeps what was learnt."""

    labels: tuple[str, ...]
    palette: np.ndarray

    def fresh(self, display_max_side: int | None = None) -> Self:
        task = super().fresh(display_max_side)
        if not task.labels:  # a dynamic class count this task learned from a frame: keep it
            task.labels, task.palette = self.labels, self.palette
        return task

    def card_palette(self, n: int) -> np.ndarray:
        """(n, 3) uint8 colours: the card's palette when it has n or more, else the default one."""
        pal = self.card.palette if len(self.card.palette) >= n else default_palette(n)
        return np.array(pal[:n], np.uint8).reshape(-1, 3)


def column_safe(name: str) -> str:
    """A class or contour name made fit for a column name: runs of anything but ASCII letters and
    digits become one ``_``, lower case (``Traffic light`` -> ``traffic_light``; "" when nothing
    is left)."""
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").lower()


def output_choice(value: Any, key: str, choices: tuple[str, ...], model: str) -> Any:
    """``value``, the card's ``loupe.output`` ``key`` (defaulted by the caller), when it is one
    of ``choices``; a ModelError naming the model, the key and the choices otherwise."""
    if value not in choices:
        raise ModelError(f"{model}: loupe.output {key} must be one of {', '.join(choices)}, got {value!r}")
    return value
