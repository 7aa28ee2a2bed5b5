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

from loupe.base import registry
from loupe.base.registry import TaskSpec
from loupe.inference.engine import Engine, ModelError
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

    @property
    def spec(self) -> TaskSpec | None:
        """The task's registry entry (None for a task object no registered task class made)."""
        return registry.spec_of(self.task)


def load_model(path: str, providers: str = "auto", threads: int | None = None,
               display_max_side: int | None = 1280, task: str | None = None) -> LoadedModel:
    """A model and its task, headless. ``task`` picks the task of a model without a card among
    the guessed ones (``analyze --task``); a card-less model whose outputs fit several tasks and
    no ``task`` is refused (ModelError naming them), before any task is made."""
    eng = Engine(path, providers=providers, threads=threads, task=task)
    if eng.guess is not None and eng.guess.ambiguous:
        raise ModelError(eng.guess.note)
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
        return self.finish(self.infer(frame))

    # The two halves of ``process``: ``run_stream`` runs ``infer`` of the next frame on its own
    # thread while this frame is post-processed (when every task allows it: ``overlap_safe``).
    def infer(self, frame: Frame) -> _Inferred:
        """prepare + run for every model (in frame order: prepare may keep history)."""
        t0 = time.monotonic()
        models = self._models
        staged = []
        for m in models:
            t = time.perf_counter()
            feeds, ctx = m.task.prepare(frame)
            outputs = None if feeds is None else m.engine.run(feeds)  # None: e.g. history filling
            staged.append((ctx, outputs, time.perf_counter() - t))
        return _Inferred(frame, models, staged, t0)

    @staticmethod
    def finish(inf: _Inferred) -> FrameResult:
        """postprocess of every model: the FrameResult."""
        out = []
        for m, (ctx, outputs, dt) in zip(inf.models, inf.staged):
            t = time.perf_counter()
            res = m.task.postprocess(outputs, ctx)
            out.append(ModelResult(m.name, m.task.name, res, (dt + time.perf_counter() - t) * 1e3))
        return FrameResult(inf.frame, tuple(out), inf.t0, time.monotonic())

    @property
    def overlap_safe(self) -> bool:
        """True when every task's postprocess depends only on its outputs and context (not on
        state a later ``prepare`` changes), so post-processing may overlap the next inference:
        what each task's registry entry declares (``TaskSpec.overlap_safe``)."""
        specs = [m.spec for m in self._models]
        return all(s is not None and s.overlap_safe for s in specs)


@dataclass(frozen=True)
class _Inferred:
    frame: Frame
    models: tuple[LoadedModel, ...]
    staged: list[tuple[Any, Any, float]]  # per model: (context, outputs, seconds so far)
    t0: float


_END = object()


class _Ahead:
    """Runs ``fn(item)`` for each item of ``items`` on its own thread, at most ``depth`` results
    ahead of the consumer; yields them in order. An exception is re-raised at its place in the
    order (the items before it are yielded first). ``close()`` stops and joins the thread."""

    def __init__(self, items: Iterator[Any], fn, depth: int, name: str) -> None:
        import queue

        self._q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._items, self._fn = items, fn
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._items:
                if self._stop.is_set() or not self._put((True, self._fn(item))):
                    return
        except BaseException as e:  # handed to the consumer, raised there in order
            self._put((False, e))
            return
        self._put((True, _END))

    def __iter__(self) -> Iterator[Any]:
        while True:
            ok, value = self._q.get()
            if not ok:
                raise value
            if value is _END:
                return
            yield value

    def close(self, timeout: float = 10.0) -> None:
        import queue

        self._stop.set()
        while self._thread.is_alive():
            try:  # unblock a producer waiting on a full queue
                self._q.get_nowait()
            except queue.Empty:
                self._thread.join(0.01)
        self._thread.join(timeout)


def run_stream(frames: Iterable[Frame], runner: Runner, read_ahead: int = 2) -> Iterator[FrameResult]:
    """Every frame, in order, through every model (whole-file analysis).

    With ``read_ahead`` > 0 the source is decoded on its own thread up to that many frames ahead
    and, when the tasks allow it (``Runner.overlap_safe``), prepare + inference of the next frame
    run on a second thread while this one is post-processed. Results, their order and any
    exception (raised where it happened in the order) are the same as without read-ahead.
    Closing the generator stops and joins the threads before it returns.
    """
    if read_ahead <= 0:
        for f in frames:
            yield runner.process(f)
        return
    stages: list[_Ahead] = []
    try:
        decoded = _Ahead(iter(frames), lambda f: f, read_ahead, "loupe-decode")
        stages.append(decoded)
        if runner.overlap_safe:
            inferred = _Ahead(iter(decoded), runner.infer, 1, "loupe-infer")
            stages.append(inferred)
            for inf in inferred:
                yield runner.finish(inf)
        else:
            for f in decoded:
                yield runner.process(f)
    finally:
        for st in reversed(stages):  # the consumer of a stage first, then the stage itself
            st.close()


class SharedCounter:
    """An integer that several threads change: every read-modify-write holds one lock.

    ``n += 1`` on a plain attribute is a load, an add and a store; a thread switch in between
    loses the other thread's update. The live path's backpressure counter is raised on the
    inference thread and lowered on the UI thread, and one lost decrement would leave it stuck
    at its limit (every result then dropped while frames keep arriving), hence this class."""

    def __init__(self, value: int = 0) -> None:
        self._lock = threading.Lock()
        self._value = int(value)

    @property
    def value(self) -> int:
        return self._value  # a single load: no lock needed to read

    def add(self, n: int = 1) -> int:
        """Add ``n`` (may be negative); the new value."""
        with self._lock:
            self._value += n
            return self._value

    def release(self) -> int:
        """Subtract one, never below zero; the new value."""
        with self._lock:
            if self._value > 0:
                self._value -= 1
            return self._value

    def reset(self, value: int = 0) -> int:
        """Set to ``value``; the value before."""
        with self._lock:
            old, self._value = self._value, int(value)
            return old

    def __int__(self) -> int:
        return self._value

    def __repr__(self) -> str:
        return f"SharedCounter({self._value})"


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

    @property
    def pending(self) -> bool:
        """True while an item waits to be taken."""
        return self._has

    def wait_empty(self, timeout: float | None = None) -> bool:
        """Block until the item was taken (or closed); True if the slot is empty."""
        with self._cond:
            if self._has and not self.closed:
                self._cond.wait_for(lambda: not self._has or self.closed, timeout)
            return not self._has

    def clear(self) -> None:
        with self._cond:
            self._item, self._has = None, False

    def reset_dropped(self) -> int:
        """Zero the dropped count under the lock ``put`` raises it with (any thread); the count before."""
        with self._cond:
            old, self.dropped = self.dropped, 0
            return old

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
