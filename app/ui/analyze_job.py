"""Analyse the open file to CSV/JSONL from the window: every frame, in order, with progress and cancel.

A thin adapter over ``loupe.run.analyze.analyze`` (the same code as ``loupe analyze``): it runs in a
background ``Job`` (``loupe.ui.job``) and reports through the core's Progress protocol.

The job never touches the live view's task objects: it builds fresh tasks on the same engines (an
ONNX Runtime session may be run from two threads) when it is created, on the UI thread, with the
user's settings as they are then (anomaly threshold and calibration, density region of interest),
and at full resolution (no 1280-px display cap), as ``loupe analyze`` does. So the live view keeps
its own history, moving the threshold or the region mid-run does not change rows being written,
and the file equals the CLI's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loupe.base.errors import LoupeError
from loupe.base.progress import Progress
from loupe.run.analyze import (
    RowWriter,
    Summary,
    agreement_figures,
    analyze,
    columns_for,
    is_dicom_input,
)
from loupe.run.pipeline import LoadedModel
from loupe.ui.job import Job, start_with_dialog

logger = logging.getLogger(__name__)


class OutputError(LoupeError):
    """The rows' file cannot be written; the message names it and says why."""


def analysis_job(inputs: list[str], models: list[LoadedModel], out: str, parent=None,
                 compare: tuple[LoadedModel, LoadedModel, Callable[[Any, Any], Any]] | None = None) -> Job:
    """A Job (not started) analysing ``inputs`` to ``out``; it finishes with the ``Summary`` (also
    when cancelled: ``summary.cancelled``, the rows so far are kept). Its tasks are fresh ones,
    made now, on the UI thread (see the module docstring). ``compare``: (model A, model B, their
    comparer), two of ``models`` (Model ▸ Compare two models is on): the rows get the
    ``agreement`` column, as ``loupe analyze --compare`` writes it, and A and B come first."""
    if compare is not None:
        a, b, _ = compare
        models = [a, b] + [m for m in models if m is not a and m is not b]
    mine = [LoadedModel(m.engine, m.task.fresh(display_max_side=None)) for m in models]
    fmt = "jsonl" if Path(out).suffix.lower() in (".jsonl", ".json") else "csv"
    comparer = None if compare is None else compare[2]

    def work(progress: Progress) -> Summary:
        cols = columns_for(mine, any(is_dicom_input(i) for i in inputs), compare=comparer is not None)
        try:
            with open(out, "w", encoding="utf-8", newline="") as f:
                return analyze(inputs, mine, RowWriter(f, fmt, cols), None, progress, compare=comparer)
        except OSError as e:
            raise OutputError(f"cannot write {out}: {e}") from e

    return Job(work, "analysis", parent)


def describe(summary: Summary, out: str) -> str:
    done = len(summary.inputs) - len(summary.failed)
    text = f"{summary.frames} frames from {done}/{len(summary.inputs)} inputs written to {out}"
    if summary.cancelled:
        text += " (cancelled: the rows so far are kept)"
    if summary.failed:
        text += "; failed: " + "; ".join(f"{Path(i.path).name}: {i.error}" for i in summary.failed)
    if any(i.agreement for i in summary.inputs):
        mean, low, (_, at) = agreement_figures(summary.inputs)
        text += f"; agreement {mean:.3f} (mean), lowest {low:.3f} at frame {at + 1}"
    return text


def analyze_dialog(win) -> None:
    """File ▸ Analyse to file: ask where, then ``win.analyze_to``."""
    from PySide6.QtWidgets import QFileDialog

    from loupe.ui.settings import last_dir

    if not win.models or not win.source_spec or win.source_spec.startswith("camera:"):
        win.show_error("Open a file and load a model first: analysis runs every frame of a file.", "info")
        return
    default = str(Path(last_dir(win.settings)) / (Path(win.source_spec).stem + "_loupe.csv"))
    out, _ = QFileDialog.getSaveFileName(win, "Analyse to file", default, "CSV (*.csv);;JSON lines (*.jsonl)")
    if out:
        win.analyze_to(out)


def analyze_to(win, out: str) -> Job:
    """Every frame of the window's open file through every model, in order, rows to ``out``; the
    player pauses, a progress dialog shows, the result or failure lands in the banner."""
    if win.player is not None:
        win.player.pause()
        win._update_play_button()
    cmp = getattr(win, "compare", None)  # Model ▸ Compare two models on: the agreement column too
    pair = None if cmp is None else cmp.pair
    job = analysis_job([win.source_spec], win.models, out, win, compare=pair)  # tasks of its own (see above)
    return start_with_dialog(win, job, "analyze_job", win.analyze_action, "Analyse to file", "Analysing…",
                             lambda info: f"Analysing {info['status']}…" if info.get("status") else None,
                             lambda s: win.show_error(describe(s, out), "error" if s.failed else "info"),
                             "Analysis failed")
