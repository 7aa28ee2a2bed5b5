"""``loupe analyze --ray [ADDRESS]``: the same analysis spread over a Ray cluster (Qt-free).

The inputs are cut into *parts*: a whole file, or, for a long video, a range of frames. Each Ray
actor (``AnalyzeWorker``) loads the models once and analyses parts with the very code of
``loupe.run.analyze.analyze`` (seeked to the part's first frame, stopped after its last); the driver
hands parts to whichever actor is free (``ray.util.ActorPool``), takes the results back in part
order and writes the rows itself, so the output file is the local run's, row for row and in the
same order, in every column but ``latency_ms``.

What makes a part give exactly the local rows:
- a video is split when every task declares a bounded ``history`` (past frames its results need:
  0 for segmentation, density, codebook and compression, T for the anomaly predictor): a part
  starts that many frames early and writes no rows for them (warm-up), so the history equals
  the local run's;
- DICOM inputs (running volumes per series), images and ``--calibrate-per-video`` runs (which
  normalise over a whole input) are never split;
- frames are decoded with frame-exact seeks (``VideoSource.seek``), timestamps from the stream's
  own start, so a part's frames are the local run's frames;
- the first part of an input that fails ends that input (the parts after it are dropped), as
  the local run stops an input at its first error.

Every ``loupe analyze`` option works here: ``--max-frames N`` caps each input at its first N
frames (a video is split within them), ``--resume`` plans the parts from each input's first
missing frame (as the local resume seeks there; the rows already written are skipped by the
driver's writer), ``--calibrate-per-video`` keeps each input whole, the limits and ONNX Runtime
options are handed to every actor.

Without an address a local Ray with ``num_cpus`` CPUs (default 2) is started and shut down at the
end; with one (``ray://host:10001`` or ``host:6379``, or ``auto``) the running cluster is used.
``gpus_per_worker`` reserves GPUs for each actor (ONNX Runtime then picks CUDA/TensorRT there).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loupe.base.progress import Progress
from loupe.run.analyze import InputSummary, Summary, analyze
from loupe.sources.base import SourceError

logger = logging.getLogger(__name__)

__all__ = ["AnalyzeWorker", "Part", "analyze_on_ray", "plan_parts", "ray_available"]

MIN_PART_FRAMES = 16


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


@dataclass(frozen=True)
class Part:
    """Frames ``start`` <= index < ``stop`` of input ``spec`` (``stop`` None: to its end), after
    ``warmup`` frames before ``start`` that are run for the models' history but give no rows."""

    spec: str
    order: int  # the input's position in the run
    start: int = 0
    stop: int | None = None
    warmup: int = 0
    max_frames: int | None = None  # --max-frames: the input's first N frames only


@dataclass
class PartResult:
    part: Part
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: InputSummary | None = None
    error: str | None = None
    pid: int = 0
    host: str = ""


@dataclass(frozen=True)
class Probe:
    """What a worker found out about an input: its kind (``video`` when it is a video file that
    can be split), frame count (None: unknown) and the error that stops it (None: none)."""

    spec: str
    kind: str
    frames: int | None
    error: str | None = None


class _Collect:
    """A row writer that keeps the part's rows (frames from ``start`` on) in memory and tells
    ``_StopAfter`` which frame it has reached."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.rows: list[dict[str, Any]] = []
        self.last_frame = -1

    def write(self, row: dict[str, Any]) -> None:
        self.last_frame = max(self.last_frame, int(row["frame"]))
        if int(row["frame"]) >= self.start:
            self.rows.append(row)


class _StopAfter(Progress):
    """The Progress ``analyze`` checks before each frame: cancelled once frame ``stop - 1`` is done."""

    def __init__(self, collect: _Collect, stop: int | None) -> None:
        super().__init__()
        self.collect, self.stop = collect, stop

    @property
    def cancelled(self) -> bool:
        return self.stop is not None and self.collect.last_frame >= self.stop - 1


class AnalyzeWorker:
    """One Ray actor: the models, loaded once, and ``run(part)``. Plain Python: ``ray.remote``
    wraps it in ``analyze_on_ray`` (and tests can use it without Ray)."""

    def __init__(self, model_paths: Sequence[str], providers: str = "auto", threads: int | None = 1,
                 limits: dict[str, float] | None = None, calibrate_per_video: bool = False) -> None:
        from loupe.base.limits import configure
        from loupe.run.pipeline import load_model

        if limits:
            configure(**limits)
        self.models = [load_model(p, providers=providers, threads=threads, display_max_side=None) for p in model_paths]
        self.calibrate_per_video = calibrate_per_video
        self.pid = os.getpid()
        import socket

        self.host = socket.gethostname()

    def info(self) -> dict[str, Any]:
        return {"pid": self.pid, "host": self.host,
                "providers": sorted({m.engine.provider for m in self.models})}

    def warmup_frames(self) -> int | None:
        """Frames of history the tasks need before a part's first frame (their declared
        ``history``); None when some task needs every frame since the start (never split)."""
        from loupe.run.resume import history_of

        return history_of(self.models)

    def probe(self, spec: str) -> Probe:
        from loupe.sources.open import open_source
        from loupe.sources.video import VideoSource

        try:
            source = open_source(spec)
        except SourceError:
            return Probe(spec, "other", None)  # the part itself reports the error, as analyze would
        try:
            kind = "video" if isinstance(source, VideoSource) else "other"
            return Probe(spec, kind, source.frame_count)
        finally:
            source.close()

    def run(self, part: Part) -> PartResult:
        collect = _Collect(part.start)
        errors: list[str] = []
        first = max(0, part.start - part.warmup)

        def start_at(spec: str, source: Any) -> int:
            if not first:
                return 0
            try:
                source.seek(first)
            except SourceError:  # as the local resume: from the start (rows before `start` are dropped)
                logger.info("%s: cannot seek to frame %d; starting at 0", spec, first, exc_info=True)
                source.seek(0)
                return 0
            return first

        summary = analyze([part.spec], self.models, collect, part.max_frames, _StopAfter(collect, part.stop),
                          lambda spec, reason: errors.append(reason),
                          calibrate_per_video=self.calibrate_per_video, start_at=start_at)
        s = summary.inputs[0] if summary.inputs else InputSummary(part.spec, error="no input")
        s.frames = len({int(r["frame"]) for r in collect.rows})
        return PartResult(part, collect.rows, s, errors[0] if errors else s.error, self.pid, self.host)


def plan_parts(probes: Sequence[Probe], workers: int, warmup: int | None, calibrate_per_video: bool,
               part_frames: int | None = None, max_frames: int | None = None,
               done: set[tuple[str, int, str]] | None = None, model_names: Sequence[str] = ()) -> list[Part]:
    """The parts of a run, in order. A video is split into ranges of ``part_frames`` frames
    (default: about two parts per worker, at least MIN_PART_FRAMES) when ``warmup`` is known and
    the run does not normalise per video; everything else is one part. ``max_frames``: each
    input's first N frames only. ``done`` (``--resume``: the ``(input, frame, model)`` rows
    already written, ``model_names`` the models' names): an input starts at its first frame not
    written for every model, less ``warmup``, where the local resume starts (not DICOM, nor per
    video calibration, nor an unbounded history: those start at 0)."""
    from loupe.run.analyze import is_dicom_input

    parts: list[Part] = []
    for order, p in enumerate(probes):
        begin = 0
        if done and warmup is not None and not calibrate_per_video and not is_dicom_input(p.spec):
            while all((p.spec, begin, n) in done for n in model_names):
                begin += 1
        frames = p.frames if max_frames is None or not p.frames else min(p.frames, max_frames)
        splittable = (p.kind == "video" and frames and warmup is not None and not calibrate_per_video
                      and p.error is None)
        if not splittable:
            parts.append(Part(p.spec, order, begin, None, warmup or 0, max_frames))
            continue
        size = part_frames or max(MIN_PART_FRAMES, math.ceil((frames - min(begin, frames)) / max(1, 2 * workers)))
        starts = list(range(begin, frames, size)) or [begin]
        for i, start in enumerate(starts):
            last = i == len(starts) - 1
            # the last part reads to the real end (a truncated file reports it there, as locally)
            parts.append(Part(p.spec, order, start, None if last else start + size, warmup if start else 0,
                              max_frames))
    return parts


def _init_ray(address: str | None, num_cpus: int) -> bool:
    """Connect to (or start) Ray; True when this call started it (and should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False}
    if address and address != "local":
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, **kwargs)
    return True


def analyze_on_ray(
    inputs: list[str],
    model_paths: Sequence[str],
    writer: Any = None,
    *,
    address: str | None = None,
    workers: int | None = None,
    num_cpus: int = 2,
    gpus_per_worker: float = 0.0,
    providers: str = "auto",
    threads: int | None = 1,
    calibrate_per_video: bool = False,
    part_frames: int | None = None,
    on_error: Callable[[str, str], None] | None = None,
    on_part: Callable[[PartResult, int, int], None] | None = None,
    max_frames: int | None = None,
    done: set[tuple[str, int, str]] | None = None,
) -> tuple[Summary, list[PartResult]]:
    """Analyse ``inputs`` on Ray; rows go to ``writer`` in the local run's order. Returns the
    summary (as ``analyze`` gives it) and, per part, who ran it (pid, host; rows emptied).
    ``max_frames``: each input's first N frames (``--max-frames``); ``done``: the rows already
    in the output (``--resume``; ``writer`` is then expected to skip them, as ``SkipDone`` does)."""
    import ray
    from ray.util import ActorPool

    from loupe.base.limits import current
    from loupe.run.analyze import expand_inputs

    started = _init_ray(address, num_cpus)
    try:
        resources = ray.cluster_resources()
        if workers is None:
            if gpus_per_worker > 0:
                workers = max(1, int(resources.get("GPU", 0) / gpus_per_worker))
            else:
                workers = max(1, int(resources.get("CPU", 1)))
        limits = {k: getattr(current(), k) for k in ("max_megapixels", "max_dicom_frames", "max_memory_mb")}
        remote = ray.remote(AnalyzeWorker).options(num_cpus=1, num_gpus=gpus_per_worker or 0)
        actors = [remote.remote(list(model_paths), providers, threads, limits, calibrate_per_video)
                  for _ in range(workers)]
        expanded = expand_inputs(inputs)  # folders become their files, DICOM folders their series
        warmup = ray.get(actors[0].warmup_frames.remote())
        pool = ActorPool(actors)
        probes = list(pool.map(lambda a, spec: a.probe.remote(spec), expanded))
        from pathlib import Path

        parts = plan_parts(probes, workers, warmup, calibrate_per_video, part_frames, max_frames, done,
                           [Path(p).stem for p in model_paths])
        logger.info("%d inputs in %d parts on %d Ray workers", len(expanded), len(parts), workers)
        summaries: dict[int, InputSummary] = {}
        failed: set[int] = set()
        done: list[PartResult] = []
        for n, res in enumerate(pool.map(lambda a, part: a.run.remote(part), parts), 1):
            order = res.part.order
            if order in failed:  # an earlier part of this input failed: the local run stops there
                res.rows = []
                done.append(res)
                continue
            if writer is not None:
                for row in res.rows:
                    writer.write(row)
            s = summaries.get(order)
            if s is None:
                s = summaries[order] = InputSummary(res.part.spec)
            _merge(s, res.summary)
            if res.error:
                s.error = res.error
                failed.add(order)
                if on_error:
                    on_error(res.part.spec, res.error)
            res.rows = []  # the driver keeps who ran what, not the rows twice
            done.append(res)
            if on_part:
                on_part(res, n, len(parts))
        summary = Summary([summaries.get(i) or InputSummary(spec) for i, spec in enumerate(expanded)])
        for a in actors:
            ray.kill(a)
        return summary, done
    finally:
        if started:
            ray.shutdown()


def _merge(total: InputSummary, part: InputSummary | None) -> None:
    if part is None:
        return
    total.frames += part.frames
    total.seconds += part.seconds
    total.series_description = total.series_description or part.series_description
    for model, lats in part.latency_ms.items():
        total.latency_ms.setdefault(model, []).extend(lats)
    for model, areas in part.area_sum.items():
        acc = total.area_sum.setdefault(model, {})
        for label, value in areas.items():
            acc[label] = acc.get(label, 0.0) + value
    for model, vols in part.volume_ml.items():
        total.volume_ml[model] = dict(vols)  # DICOM inputs are one part: its totals are the input's
