"""Whole-file analysis: every frame of every input through every model, one row each (Qt-free).

Rows: ``input, frame, timestamp_s, model, task, latency_ms``, then DICOM columns
(``series_uid, series_description, instance, slice_position_mm, slice_spacing_mm``) when an input
is DICOM, then each task's columns. With several models the columns are the union, empty where
they do not apply. Rows are written and flushed as they are computed, so an interrupted run keeps
what it did.

Inputs: a folder of images expands to its files (natural order). A DICOM folder (as many DICOM
files as images, or more) expands to one input per series, named ``<folder>#<series uid>`` (the
``input`` column; ``open_source`` accepts it), in the folder's series order (Series Number, then
UID); each series is analysed in playing order (along the slice normal). Non-DICOM files in a
DICOM folder are ignored.

Physical units (segmentation, columns present whenever an input is DICOM, empty where unknown):
``area_mm2_<class>`` is the class area in mm² (from the frame's pixel spacing, at the frame's own
resolution); ``volume_ml_<class>`` is a running total within the series: the sum over the
series' frames so far of area_mm2 x slice_spacing_mm / 1000, so the last row of a series holds
the series volume (it is empty where the slice spacing is unknown, e.g. a cine loop). The final
volumes are in the summary (``InputSummary.volume_ml``, ``summary_table``).

Agreement (``--compare``, two models of one task): ``agreement`` is how far the two models'
results on the frame agree (0..1, the task's comparer, ``loupe.tasks.agreement``), the same value
on both models' rows of the frame.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from loupe.base.progress import Cancelled, Progress, as_progress
from loupe.base.quality import json_number
from loupe.base.text import natural_key
from loupe.run.pipeline import LoadedModel, Runner, run_stream
from loupe.sources.base import SourceError
from loupe.sources.labels import LabelError
from loupe.sources.open import classify_path, folder_dicom_files, open_source
from loupe.sources.series import parse_series_spec, scan_series
from loupe.tasks.agreement import Tally
from loupe.tasks.segmentation import volume_column

logger = logging.getLogger(__name__)

BASE_COLUMNS = ["input", "frame", "timestamp_s", "model", "task", "latency_ms"]
DICOM_COLUMNS = ["series_uid", "series_description", "instance", "slice_position_mm", "slice_spacing_mm"]
AGREEMENT_COLUMN = "agreement"


@dataclass
class InputSummary:
    path: str
    frames: int = 0
    error: str | None = None
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    area_sum: dict[str, dict[str, float]] = field(default_factory=dict)
    #: model -> class -> volume in mL (segmentation of frames with pixel and slice spacing)
    volume_ml: dict[str, dict[str, float]] = field(default_factory=dict)
    #: model -> column -> (sum, frames) of the other tasks' numeric columns, and the most
    #: frequent value of their text columns (classification's top1): the summary's figures
    column_sum: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    column_text: dict[str, dict[str, Counter]] = field(default_factory=dict)
    #: (frame index, agreement) of each frame compared (``analyze(compare=...)``)
    agreement: list[tuple[int, float]] = field(default_factory=list)
    #: where the two compared models disagreed, summed over those frames
    differ: Tally = field(default_factory=Tally)
    series_description: str | None = None
    seconds: float = 0.0


@dataclass
class Summary:
    inputs: list[InputSummary]
    cancelled: bool = False

    @property
    def failed(self) -> list[InputSummary]:
        return [i for i in self.inputs if i.error]

    @property
    def exit_code(self) -> int:
        """0: every input analysed; 2: every input failed (rows of frames read before a failure
        are kept); 3: some failed, the rest were written."""
        if not self.inputs:
            return 2
        n_bad = len(self.failed)
        if n_bad == 0:
            return 0
        return 2 if n_bad == len(self.inputs) else 3

    @property
    def frames(self) -> int:
        return sum(i.frames for i in self.inputs)

    @property
    def seconds(self) -> float:
        return sum(i.seconds for i in self.inputs)


def _dicom_series_specs(folder: Path) -> list[str] | None:
    """``folder#uid`` for each series of a DICOM folder; None if it is not a DICOM folder."""
    try:
        files = folder_dicom_files(folder)
    except SourceError:
        return None
    if files is None:
        return None
    specs = [s.spec for s in scan_series(folder) if s.spec]
    logger.info("%s: %d DICOM series", folder, len(specs))
    return specs


def expand_inputs(inputs: Iterable[str]) -> list[str]:
    """Folders expand to the files they hold (sorted naturally), DICOM folders to their series
    (``folder#uid``); files, series specs and cameras stay."""
    out: list[str] = []
    for spec in inputs:
        p = Path(spec)
        if p.is_dir():
            series = _dicom_series_specs(p)
            if series is not None:
                out.extend(series) if series else out.append(spec)  # none: open_source says why
                continue
            files = sorted((f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")), key=natural_key)
            out.extend(str(f) for f in files) if files else out.append(spec)
        else:
            out.append(spec)
    return out


class RowWriter:
    """CSV or JSONL rows, flushed as written. ``columns`` fixes the CSV header."""

    def __init__(self, stream: IO[str], fmt: str, columns: list[str], header: bool = True) -> None:
        self.stream, self.fmt, self.columns = stream, fmt, columns
        self._csv = None
        if fmt == "csv":
            self._csv = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
            if header:  # False: appending to a file that has it (--resume)
                self._csv.writeheader()
                stream.flush()

    def write(self, row: dict[str, Any]) -> None:
        # A non-finite float (an infinite PSNR of identical frames) is JSON null and an empty CSV
        # cell, whichever task wrote it: JSON has no inf/nan and "Infinity" breaks strict readers.
        row = {k: json_number(v) for k, v in row.items()}
        if self._csv is not None:
            self._csv.writerow({k: ("" if v is None else v) for k, v in row.items()})
        else:
            self.stream.write(json.dumps(row, allow_nan=False) + "\n")
        self.stream.flush()


def columns_for(models: list[LoadedModel], with_dicom: bool, compare: bool = False) -> list[str]:
    """The CSV header: base, DICOM (if ``with_dicom``), ``agreement`` (if ``compare``), each
    task's columns and, with DICOM, the tasks' physical columns (``area_mm2_*``, ``volume_ml_*``)."""
    cols = list(BASE_COLUMNS)
    if with_dicom:
        cols += DICOM_COLUMNS
    if compare:
        cols.append(AGREEMENT_COLUMN)
    for m in models:
        task_cols = list(m.task.columns())
        spec = m.spec
        if with_dicom and spec is not None and spec.physical_columns:
            task_cols += m.task.physical_columns()
        for c in task_cols:
            if c not in cols:
                cols.append(c)
    return cols


def analyze(
    inputs: list[str],
    models: list[LoadedModel],
    writer: RowWriter | None = None,
    max_frames: int | None = None,
    progress: Progress | None = None,
    on_error: Callable[[str, str], None] | None = None,
    calibrate_per_video: bool = False,
    read_ahead: int = 2,
    start_at: Callable[[str, Any], int | None] | None = None,
    scoring: Any = None,
    compare: Callable[[Any, Any], Any] | None = None,
) -> Summary:
    """Analyse every frame of every input; rows go to ``writer`` as they are computed.

    ``calibrate_per_video``: anomaly scores use the papers' per-video min-max normalisation of
    the PSNRs (which needs the whole input), so each input's rows are written when it ends.

    A DICOM folder among ``inputs`` is analysed series by series (see the module docstring),
    whether or not the caller ran ``expand_inputs``.

    ``read_ahead``: frames decoded ahead on a reader thread, while the next frame's inference
    overlaps this one's post-processing (``loupe.run.pipeline.run_stream``); 0 runs everything on
    the calling thread. The rows are the same either way.

    ``start_at(spec, source)``: called once an input is open; it may seek the source and returns
    the index of the frame it starts at (``--resume``, a Ray part); ``max_frames`` still counts
    from frame 0 (the input's first ``max_frames`` frames). Not called with
    ``calibrate_per_video``, whose scores need the whole input.

    ``scoring``: a ``loupe.run.scoring.LabelScoring`` (``--labels``) adding each row's score
    cells and pooling the figures of its ``summary()``.

    ``compare(a, b) -> Agreement``: the comparer of the first two models' task; each frame's
    ``agreement`` (its value, 6 digits) goes on both models' rows and into
    ``InputSummary.agreement``.
    """
    progress = as_progress(progress)
    expanded: list[str] = []
    for spec in inputs:
        series = _dicom_series_specs(Path(spec)) if Path(spec).is_dir() else None
        expanded.extend(series if series else [spec])
    inputs = expanded
    runner = Runner(models)
    summary = Summary([])
    n_inputs = len(inputs)
    for k, spec in enumerate(inputs):
        s = InputSummary(spec)
        summary.inputs.append(s)
        volumes: dict[tuple[str, Any], np.ndarray] = {}  # (model, series uid) -> running mL
        t_start = time.perf_counter()
        try:
            source = open_source(spec)
        except SourceError as e:
            s.error = str(e)
            if on_error:
                on_error(spec, s.error)
            continue
        for m in models:
            m.task.reset()  # no history carried from one input to the next
        first = 0
        if start_at is not None and not calibrate_per_video:
            first = start_at(spec, source) or 0  # e.g. --resume: seek past the frames already written
        pending: list[dict[str, Any]] | None = [] if calibrate_per_video else None
        total = source.frame_count
        if max_frames is not None:
            total = min(total, max_frames) if total else max_frames
        total = max(total - first, 0) if total else total
        progress.update(k / n_inputs, f"{Path(spec).name} ({k + 1}/{n_inputs})")
        frames = iter(source) if max_frames is None else itertools.islice(source, max(max_frames - first, 0))
        # decode (and the next frame's inference) on their own threads, ahead of this one
        stream = run_stream(frames, runner, read_ahead=read_ahead)
        try:
            for fr in stream:
                progress.check()
                frame = fr.frame
                agreement = None
                if compare is not None:
                    ra, rb = fr.results[0].result, fr.results[1].result
                    ag = compare(ra, rb)
                    agreement = round(float(ag.value), 6)
                    s.agreement.append((frame.index, agreement))
                    s.differ.add(ag, ra, rb)
                for m, mr in zip(runner.models, fr.results):
                    row = _row(spec, fr.frame, mr)
                    if agreement is not None:
                        row[AGREEMENT_COLUMN] = agreement
                    row.update(m.task.row(mr.result))
                    if scoring is not None:
                        row.update(scoring.row(spec, m, frame, mr.result))
                    s.latency_ms.setdefault(mr.model, []).append(mr.latency_ms)
                    if mr.task == "segmentation":
                        acc = s.area_sum.setdefault(mr.model, {})
                        for lab, a in zip(mr.result.labels, mr.result.class_area):
                            acc[lab] = acc.get(lab, 0.0) + float(a)
                        row.update(_volume_row(s, volumes, fr.frame, mr))
                    else:
                        _add_figures(s, mr.model, m.task.columns(), row)
                    if pending is not None:
                        pending.append(row)
                    elif writer:
                        writer.write(row)
                s.frames += 1
                if s.series_description is None:
                    s.series_description = frame.metadata.get("series_description")
                if total:
                    progress.update((k + min(s.frames / total, 1.0)) / n_inputs)
        except Cancelled:  # the rows so far are kept (Summary.cancelled)
            summary.cancelled = True
        except (SourceError, Exception) as e:  # a bad frame mid-file fails this input only
            logger.debug("analysis of %s failed", spec, exc_info=True)
            s.error = str(e) if isinstance(e, (SourceError, LabelError)) else f"{type(e).__name__}: {e}"
            if on_error:
                on_error(spec, s.error)
        finally:
            stream.close()  # joins the read-ahead threads before the source closes
            source.close()
            if pending:
                _rescore_per_video(pending, models)
                if writer:
                    for row in pending:
                        writer.write(row)
            s.seconds = time.perf_counter() - t_start
        if summary.cancelled:
            break
    if not summary.cancelled:
        progress.update(1.0)
    return summary


def _rescore_per_video(rows: list[dict[str, Any]], models: list[LoadedModel]) -> None:
    """Replace each anomaly model's ``score``/``flagged`` by the per-video min-max normalisation."""
    from loupe.tasks.anomaly import per_video_scores

    for m in models:
        if m.task.name != "anomaly":
            continue
        mine = [r for r in rows if r.get("model") == m.name and r.get("psnr") is not None]
        if not mine:
            continue
        scores = per_video_scores(np.array([r["psnr"] for r in mine], np.float64))
        for r, sc in zip(mine, scores):
            r["score"] = round(float(sc), 6)
            r["flagged"] = int(sc >= m.task.threshold)


def _volume_row(
    s: InputSummary, volumes: dict[tuple[str, Any], np.ndarray], frame: Any, mr: Any
) -> dict[str, Any]:
    """Add this frame's slab (area_mm2 x slice spacing) to its series' running volume; the
    ``volume_ml_*`` values so far (nothing without mm² areas or a slice spacing)."""
    area_mm2 = mr.result.class_area_mm2  # a segmentation result: None without a pixel spacing
    spacing = frame.metadata.get("slice_spacing_mm")
    if area_mm2 is None or spacing is None or not (float(spacing) > 0):
        return {}
    key = (mr.model, frame.metadata.get("series_uid"))
    total = volumes.get(key)
    if total is None or total.shape != area_mm2.shape:
        total = volumes[key] = np.zeros(area_mm2.shape, np.float64)
    total += area_mm2 * (float(spacing) / 1000.0)
    labels = mr.result.labels
    # the input's volume: the sum over its series (one, unless a file list mixes series)
    input_total = np.zeros(total.shape, np.float64)
    for (model, _), series_total in volumes.items():
        if model == mr.model and series_total.shape == total.shape:
            input_total += series_total
    s.volume_ml[mr.model] = {lab: float(v) for lab, v in zip(labels, input_total)}
    return {volume_column(lab): round(float(v), 6) for lab, v in zip(labels, total)}


def _row(spec: str, frame: Any, mr: Any) -> dict[str, Any]:
    md = frame.metadata
    row: dict[str, Any] = {
        "input": spec,
        "frame": frame.index,
        "timestamp_s": round(float(frame.timestamp), 6),
        "model": mr.model,
        "task": mr.task,
        "latency_ms": round(mr.latency_ms, 3),
    }
    if md.get("modality") is not None or "series_uid" in md:
        for c in DICOM_COLUMNS:
            v = md.get(c)
            row[c] = None if v is None or (isinstance(v, float) and math.isnan(v)) else v
    return row


def _input_name(s: InputSummary) -> str:
    series = parse_series_spec(s.path)
    if series is not None:
        folder, uid = series
        return f"{folder.name or folder} [{s.series_description or uid or 'no series UID'}]"
    return os.path.basename(s.path.rstrip('/')) or s.path


def _add_figures(s: InputSummary, model: str, columns: list[str], row: dict[str, Any]) -> None:
    """Accumulate a non-segmentation row's task columns for the summary table."""
    sums = s.column_sum.setdefault(model, {})
    texts = s.column_text.setdefault(model, {})
    for c in columns:
        v = row.get(c)
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, (int, float)):
            if math.isfinite(v):
                acc = sums.setdefault(c, [0.0, 0])
                acc[0] += float(v)
                acc[1] += 1
        elif isinstance(v, str):
            texts.setdefault(c, Counter())[v] += 1


def _figures(s: InputSummary, model: str, top: int) -> str:
    """'count 3.20, count_car 2.10 (means); top1 mostly cat (12/20)'."""
    parts = []
    sums = s.column_sum.get(model, {})
    nums = [(c, acc[0] / acc[1]) for c, acc in sums.items() if acc[1]]
    if nums:
        head, rest = nums[:1], sorted(nums[1:], key=lambda cv: -abs(cv[1]))
        parts.append(", ".join(f"{c} {v:.4g}" for c, v in head + rest[: top - 1]) + " (mean)")
    for c, counter in s.column_text.get(model, {}).items():
        value, n = counter.most_common(1)[0]
        parts.append(f"{c} mostly {value} ({n}/{sum(counter.values())})")
    return "; ".join(parts)


def summary_table(summary: Summary, top: int = 4) -> str:
    """A plain-text table: per input x model, frames, FPS, latency and the largest classes
    (then, for DICOM series with spacings, the largest class volumes in mL)."""
    lines = [f"{'input':40s} {'model':28s} {'frames':>6s} {'ms/frame':>9s}  largest classes (mean area) / figures"]
    for s in summary.inputs:
        name = _input_name(s)
        if s.error:
            lines.append(f"{name[:40]:40s} {'-':28s} {'-':>6s} {'-':>9s}  FAILED: {s.error}")
            continue
        for model, lats in s.latency_ms.items():
            mean_ms = sum(lats) / len(lats) if lats else 0.0
            areas = s.area_sum.get(model, {})
            best = sorted(areas.items(), key=lambda kv: -kv[1])[:top]
            classes = ", ".join(f"{lab} {100 * v / max(s.frames, 1):.1f}%" for lab, v in best)
            volumes = sorted(s.volume_ml.get(model, {}).items(), key=lambda kv: -kv[1])[:top]
            if any(v > 0 for _, v in volumes):
                classes += "; volume " + ", ".join(f"{lab} {v:.2f} mL" for lab, v in volumes if v > 0)
            if not areas:
                classes = _figures(s, model, top)
            lines.append(f"{name[:40]:40s} {model[:28]:28s} {s.frames:6d} {mean_ms:9.1f}  {classes}")
        if s.agreement:
            mean, low, at = agreement_figures([s])
            lines.append(f"{name[:40]:40s} {'(agreement)':28s} {len(s.agreement):6d} {'-':>9s}  "
                         f"agreement {mean:.3f} (mean), lowest {low:.3f} at frame {at[1]}")
    return "\n".join(lines)


def agreement_figures(inputs: list[InputSummary]) -> tuple[float, float, tuple[str, int]]:
    """The mean agreement over the compared frames of ``inputs``, the lowest and where it is
    (input, frame index; the first such frame)."""
    values = [(v, s.path, i) for s in inputs for i, v in s.agreement]
    if not values:
        raise ValueError("no frame was compared")
    low = min(values, key=lambda t: t[0])
    return sum(v for v, _, _ in values) / len(values), low[0], (low[1], low[2])


def is_dicom_input(spec: str) -> bool:
    if parse_series_spec(spec) is not None:
        return True
    p = Path(spec)
    if p.is_dir():
        return any(classify_path(str(f)) == "dicom" for f in p.iterdir() if f.is_file())
    return classify_path(spec) == "dicom"
