"""Fitting a model from the window: torch in a background ``Job``, with progress, ETA, a live
loss plot and cancel. Generic over the fitting function:

    fit(progress) -> result, with progress a loupe.base.progress.Progress

whose updates may carry ``loss``, ``eta_s``, ``step`` and a status line. The result, a failure
(a ``LoupeError``'s message, or an unexpected error's type and message) or a cancel reach the
window on the UI thread through the Job's signals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pyqtgraph as pg
from PySide6.QtWidgets import QDialog, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from loupe.base.progress import Progress
from loupe.ui.job import Job

logger = logging.getLogger(__name__)


class FitDialog(QDialog):
    """Progress bar, ETA, loss plot and a Cancel button for a fitting Job."""

    def __init__(self, title: str, job: Job, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setMinimumWidth(460)
        lay = QVBoxLayout(self)
        self.status = QLabel("starting…")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        lay.addWidget(self.bar)
        self.eta = QLabel("")
        lay.addWidget(self.eta)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss")
        self.plot.setLogMode(y=True)
        self.plot.setMinimumHeight(180)
        self.curve = self.plot.plot(pen=pg.mkPen("#1565c0", width=2))
        lay.addWidget(self.plot)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self._cancel)
        lay.addWidget(self.cancel_btn)
        self.losses: list[float] = []
        self.steps: list[int] = []
        self.job = job
        job.progressed.connect(self.on_progress)
        job.finishedWith.connect(lambda _r: self.accept())
        job.failedWith.connect(lambda _m: self.reject())
        job.wasCancelled.connect(self.reject)

    def on_progress(self, fraction: float, info: dict) -> None:
        self.bar.setValue(int(1000 * fraction))
        if "status" in info:
            self.status.setText(str(info["status"]))
        if info.get("eta_s") is not None:
            self.eta.setText(f"about {float(info['eta_s']):.0f} s left")
        if info.get("loss") is not None:
            self.losses.append(max(float(info["loss"]), 1e-12))
            self.steps.append(int(info.get("step", len(self.losses))))
            self.curve.setData(self.steps, self.losses)

    def _cancel(self) -> None:
        self.job.cancel()
        self.cancel_btn.setEnabled(False)
        self.status.setText("cancelling after the current step…")

    def closeEvent(self, event) -> None:
        self.job.cancel()
        super().closeEvent(event)


NO_TORCH = ("Fitting needs PyTorch: install Loupe with pip install 'loupe[fit]' "
            "(the app bundle views and runs models only).")


def can_fit(win, no_file: str, no_torch: str = NO_TORCH) -> bool:
    """The checks before asking anything for a fitting from ``win``: PyTorch is installed, a video
    file (not a camera) is open and no other fitting runs. Says in the window why not."""
    from loupe.ui.learn_normal import torch_available

    if not torch_available():
        win.show_error(no_torch)
        return False
    if not win.source_spec or win.source_spec.startswith("camera:"):
        win.show_error(no_file, "info")
        return False
    if win.fit_job is not None:
        win.show_error("A fitting is already running; wait for it or cancel it first.", "info")
        return False
    return True


def run_fit(win, action, title: str, fit: Callable[[Progress], Any],
            done_message: Callable[[Any], str], failed: str,
            cancelled: str | None = None) -> tuple[Job, FitDialog]:
    """Run ``fit`` in a Job with a FitDialog over ``win``: the player pauses, ``action`` is off
    and ``win.fit_job`` holds the job while it runs. When it is done the window shows
    ``done_message(result)`` and loads the model at ``result.onnx_path``; when it fails it shows
    "``failed``: why"; when the user cancelled, ``cancelled`` (by default "``title``:
    cancelled; nothing was saved.")."""
    if win.player is not None:
        win.player.pause()
        win._update_play_button()
    job = Job(fit, "fit", win)
    dlg = FitDialog(title, job, win)

    def succeeded(res) -> None:
        win.show_error(done_message(res), "info")
        win.add_model(str(res.onnx_path))

    def ended() -> None:
        win.fit_job = None
        action.setEnabled(True)
        job.deleteLater()

    job.finishedWith.connect(succeeded)
    job.failedWith.connect(lambda msg: win.show_error(f"{failed}: {msg}"))
    job.wasCancelled.connect(lambda: win.show_error(cancelled or f"{title}: cancelled; nothing was saved.", "info"))
    job.done.connect(ended)
    action.setEnabled(False)
    win.fit_job = job
    job.start()
    dlg.show()
    return job, dlg


def minutes_box(top: float, value: float, tip: str) -> QWidget:
    """A fitting dialog's time limit, in minutes (0.2 up to ``top``)."""
    from PySide6.QtWidgets import QDoubleSpinBox

    box = QDoubleSpinBox()
    box.setRange(0.2, top)
    box.setDecimals(1)
    box.setValue(value)
    box.setSuffix(" min")
    box.setToolTip(tip)
    return box


def fit_buttons(dialog: QDialog, on_fit: Callable[[], None]) -> QWidget:
    """A fitting dialog's Fit / Cancel buttons."""
    from PySide6.QtWidgets import QDialogButtonBox

    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
    buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Fit")
    buttons.accepted.connect(on_fit)
    buttons.rejected.connect(dialog.reject)
    return buttons
