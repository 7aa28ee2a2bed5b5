"""Analyse the open file to CSV/JSONL from the window: every frame, in order, with progress and cancel.

A thin Qt adapter over ``loupe.analyze.analyze`` (the same code as ``loupe analyze``): the job runs on
its own QThread and reports through the core's Progress protocol.

The job never touches the live view's task objects: it builds fresh tasks on the same engines (an
ONNX Runtime session may be run from two threads) when it is created, on the UI thread, with the
user's settings as they are then (anomaly threshold and calibration, density region of interest),
and at full resolution (no 1280-px display cap), as ``loupe analyze`` does. So the live view keeps
its own history, moving the threshold or the region mid-run does not change rows being written,
and the file equals the CLI's.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QThread, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget

from loupe.analyze import RowWriter, Summary, analyze, columns_for, is_dicom_input
from loupe.pipeline import LoadedModel

logger = logging.getLogger(__name__)


class AnalyzeJob(QThread):
    progressed = Signal(int)  # per mille
    status = Signal(str)
    finishedWith = Signal(object)  # Summary, or an error string

    def __init__(self, inputs: list[str], models: list[LoadedModel], out: str, parent=None) -> None:
        super().__init__(parent)
        self.inputs, self.out = inputs, out
        self.models = [LoadedModel(m.engine, m.task.fresh(display_max_side=None)) for m in models]
        self._cancel = False
        self._last = -1

    # Progress protocol (called on this thread)
    def set_progress(self, fraction: float) -> None:
        v = int(1000 * fraction)
        if v != self._last:  # emit only when the rounded value moves
            self._last = v
            self.progressed.emit(v)

    def set_status(self, text: str) -> None:
        self.status.emit(text)

    def cancelled(self) -> bool:
        return self._cancel

    def cancel(self) -> None:
        self._cancel = True

    def run(self) -> None:
        fmt = "jsonl" if Path(self.out).suffix.lower() in (".jsonl", ".json") else "csv"
        errors: list[str] = []
        try:
            cols = columns_for(self.models, any(is_dicom_input(i) for i in self.inputs))
            with open(self.out, "w", encoding="utf-8", newline="") as f:
                summary = analyze(self.inputs, self.models, RowWriter(f, fmt, cols), None, self,
                                  lambda spec, reason: errors.append(f"{Path(spec).name}: {reason}"))
        except OSError as e:
            self.finishedWith.emit(f"cannot write {self.out}: {e}")
            return
        except Exception as e:  # report, never crash the window
            logger.exception("analysis failed")
            self.finishedWith.emit(f"analysis failed: {type(e).__name__}: {e}")
            return
        self.finishedWith.emit(summary)


def progress_dialog(parent: QWidget, job: AnalyzeJob) -> QProgressDialog:
    dlg = QProgressDialog("Analysing…", "Cancel", 0, 1000, parent)
    dlg.setWindowTitle("Analyse to file")
    dlg.setMinimumDuration(0)
    dlg.setAutoClose(False)
    dlg.setAutoReset(False)
    job.progressed.connect(lambda v: dlg.setValue(v))
    job.status.connect(lambda s: dlg.setLabelText(f"Analysing {s}…"))
    dlg.canceled.connect(job.cancel)
    return dlg


def describe(summary: Summary, out: str) -> str:
    done = len(summary.inputs) - len(summary.failed)
    text = f"{summary.frames} frames from {done}/{len(summary.inputs)} inputs written to {out}"
    if summary.cancelled:
        text += " (cancelled: the rows so far are kept)"
    if summary.failed:
        text += "; failed: " + "; ".join(f"{Path(i.path).name}: {i.error}" for i in summary.failed)
    return text
