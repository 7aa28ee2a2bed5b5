"""Frame -> results for every loaded model, and the hand-over structures (Qt-free).

``Runner.process(frame)`` is what the GUI worker and ``loupe analyze`` both call.
``LatestSlot`` is the one-place, newest-frame-wins hand-over used for live sources and playback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from loupe.inference.engine import Engine
from loupe.sources.base import Frame
from loupe.tasks import make_task
from loupe.tasks.base import Task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelResult:
    model: str  # display name (file stem)
    task: str
    result: Any  # the task's frozen result record
    latency_ms: float  # prepare + run + postprocess


@dataclass(frozen=True)
class FrameResult:
    frame: Frame
    results: tuple[ModelResult, ...]
    received_at: float  # time.monotonic() when the worker took the frame
    done_at: float  # time.monotonic() when every model had run


@dataclass
class LoadedModel:
    engine: Engine
    task: Task

    @property
    def name(self) -> str:
        return self.engine.path.stem


def load_model(path: str, providers: str = "auto", threads: int | None = None,
               display_max_side: int | None = 1280) -> LoadedModel:
    eng = Engine(path, providers=providers, threads=threads)
    return LoadedModel(eng, make_task(eng, display_max_side=display_max_side))


class Runner:
    """Runs every loaded model on a frame. The model list may be swapped between frames."""

    def __init__(self, models: Iterable[LoadedModel] = ()) -> None:
        self._models: tuple[LoadedModel, ...] = tuple(models)

    @property
    def models(self) -> tuple[LoadedModel, ...]:
        return self._models

    def set_models(self, models: Iterable[LoadedModel]) -> None:
        self._models = tuple(models)  # atomic swap; the next frame sees the new list

    def process(self, frame: Frame) -> FrameResult:
        t0 = time.monotonic()
        out = []
        for m in self._models:
            t = time.perf_counter()
            feeds, ctx = m.task.prepare(frame)
            outputs = None if feeds is None else m.engine.run(feeds)  # None: e.g. history filling
            res = m.task.postprocess(outputs, ctx)
            out.append(ModelResult(m.name, m.task.name, res, (time.perf_counter() - t) * 1e3))
        return FrameResult(frame, tuple(out), t0, time.monotonic())


def run_stream(frames: Iterable[Frame], runner: Runner) -> Iterator[FrameResult]:
    """Every frame, in order, through every model (whole-file analysis)."""
    for f in frames:
        yield runner.process(f)


class LatestSlot:
    """One-place hand-over: ``put`` replaces an unread item (counted as dropped)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._has = False
        self.dropped = 0
        self.closed = False

    def put(self, item: Any) -> None:
        with self._cond:
            if self._has:
                self.dropped += 1
            self._item, self._has = item, True
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Any:
        """The newest item, or None after timeout / when closed."""
        with self._cond:
            if not self._has and not self.closed:
                self._cond.wait(timeout)
            if not self._has:
                return None
            item, self._item, self._has = self._item, None, False
            self._cond.notify_all()  # a lockstep producer waits for the slot to empty
            return item

    def wait_empty(self, timeout: float | None = None) -> bool:
        """Block until the item was taken (or closed); True if the slot is empty."""
        with self._cond:
            if self._has and not self.closed:
                self._cond.wait_for(lambda: not self._has or self.closed, timeout)
            return not self._has

    def clear(self) -> None:
        with self._cond:
            self._item, self._has = None, False

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class RateMeter:
    """FPS and latency percentiles over the last ``n`` frames."""

    def __init__(self, n: int = 120) -> None:
        self._times: deque[float] = deque(maxlen=n)
        self._lat: deque[float] = deque(maxlen=n)

    def add(self, done_at: float, latency_ms: float) -> None:
        self._times.append(done_at)
        self._lat.append(latency_ms)

    def reset(self) -> None:
        self._times.clear()
        self._lat.clear()

    @property
    def fps(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def latency(self, q: float) -> float:
        return float(np.percentile(np.fromiter(self._lat, float), q)) if self._lat else 0.0
