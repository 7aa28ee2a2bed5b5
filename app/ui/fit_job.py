"""Fitting a model from the window: torch on a worker thread, with progress, ETA, a live loss
plot and cancel. Generic over the fitting function, which reports through a callback:

    fit(report) -> result, where report(fraction, info: dict) -> bool (False: stop now)

``info`` may hold ``loss``, ``eta_s`` and a ``status`` line. The result reaches ``finishedWith``
on the UI thread; an exception's message reaches ``failedWith``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QThread, Signal
from PySide6.QtWidgets import QDialog, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

logger = logging.getLogger(__name__)


class FitJob(QThread):
    progressed = Signal(float, object)  # fraction, info dict
    finishedWith = Signal(object)
    failedWith = Signal(str)

    def __init__(self, fit: Callable[[Callable[[float, dict], bool]], Any], parent=None) -> None:
        super().__init__(parent)
        self._fit = fit
        self._cancel = False
        self._last_emit = 0.0

    def cancel(self) -> None:
        self._cancel = True

    @property
    def cancelled(self) -> bool:
        return self._cancel

    def _report(self, fraction: float, info: dict) -> bool:
        now = time.monotonic()
        if now - self._last_emit > 0.2 or fraction >= 1.0:  # at display rate, not step rate
            self._last_emit = now
            self.progressed.emit(float(fraction), dict(info))
        return not self._cancel

    def run(self) -> None:
        try:
            result = self._fit(self._report)
        except Exception as e:  # shown in the window, never a crash
            logger.exception("fitting failed")
            self.failedWith.emit(f"{type(e).__name__}: {e}" if not str(e).startswith("cannot") else str(e))
            return
        self.finishedWith.emit(result)


class FitDialog(QDialog):
    """Progress bar, ETA, loss plot and a Cancel button for a FitJob."""

    def __init__(self, title: str, job: FitJob, parent: QWidget | None = None) -> None:
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


def run_fit(win, action, title: str, fit: Callable[[Callable[[float, dict], bool]], Any],
            done_message: Callable[[Any], str], failed: str,
            cancelled: str | None = None) -> tuple[FitJob, FitDialog]:
    """Run ``fit`` in a FitJob with a FitDialog over ``win``: the player pauses, ``action`` is off
    and ``win.fit_job`` holds the job while it runs. When it is done the window shows
    ``done_message(result)`` and loads the model at ``result.onnx_path``; when it fails it shows
    "``failed``: why" (or ``cancelled``, where given, when the user cancelled)."""
    if win.player is not None:
        win.player.pause()
        win._update_play_button()
    job = FitJob(fit, win)
    dlg = FitDialog(title, job, win)

    def done(res) -> None:
        win.fit_job = None
        action.setEnabled(True)
        win.show_error(done_message(res), "info")
        win.add_model(str(res.onnx_path))

    def failed_with(msg: str) -> None:
        win.fit_job = None
        action.setEnabled(True)
        if cancelled is not None and job.cancelled:
            win.show_error(cancelled, "info")
        else:
            win.show_error(f"{failed}: {msg}")

    job.finishedWith.connect(done)
    job.failedWith.connect(failed_with)
    job.finished.connect(job.deleteLater)
    action.setEnabled(False)
    win.fit_job = job
    job.start()
    dlg.show()
    return job, dlg
