""""Fit HNeRV on this clip": ask a parameter budget and a time limit (showing the time estimate
first, and saying plainly when the clip needs a GPU), fit on a worker thread with progress, PSNR
so far, ETA and cancel, then load the fitted compression model into the window.

The fitting is ``loupe_models.fitters.hnerv`` (the same code as ``loupe fit hnerv``); torch is only
imported once the user asks for it, and never at all without the ``[fit]`` extra.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QLabel,
    QWidget,
)

from loupe.ui.fit_job import fit_buttons, minutes_box
from loupe.ui.job import Job

logger = logging.getLogger(__name__)

BUDGETS = (("0.1M", 0.1e6), ("0.3M", 0.3e6), ("1M", 1.0e6), ("1.5M", 1.5e6), ("3M", 3.0e6))


def format_params(params: float) -> str:
    return f"{params / 1e6:g}M"


def format_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


class FitHNeRVDialog(QDialog):
    """Budget and time limit; the estimate is computed off the UI thread as the budget changes."""

    estimated = Signal(int, object)  # request number, FitEstimate or an error string (on the UI thread)

    def __init__(self, clip: str, parent: QWidget | None = None,
                 estimate: Callable[[str, float], Any] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Fit HNeRV on this clip")
        self.setMinimumWidth(480)
        self.clip = clip
        self._estimate = estimate
        self._request = 0
        self.last_estimate = None
        form = QFormLayout(self)
        form.addRow(QLabel(f"Fit a neural representation of <b>{Path(clip).name}</b>: one decoder and an embedding "
                           "per frame, quantised and entropy-coded into a file whose size gives the bits per pixel."))
        self.budget = QComboBox()
        for text, value in BUDGETS:
            self.budget.addItem(text + " parameters", value)
        self.budget.setCurrentIndex(1)
        self.budget.setToolTip("Decoder size: more parameters, more bits, better frames, slower fitting")
        self.budget.currentIndexChanged.connect(self._ask_estimate)
        form.addRow("Parameter budget", self.budget)
        self.minutes = minutes_box(600.0, 9.0,  # the CLI default (DEFAULT_MINUTES)
                                   "Fitting stops at this time limit (then quantises, codes and exports)")
        form.addRow("Time limit", self.minutes)
        self.estimate_label = QLabel("estimating the fitting time…")
        self.estimate_label.setWordWrap(True)
        form.addRow("Estimate", self.estimate_label)
        self.buttons = fit_buttons(self, self.accept)
        form.addRow(self.buttons)
        self.estimated.connect(self._on_estimate)
        self._ask_estimate()

    @property
    def params(self) -> float:
        return float(self.budget.currentData())

    def _ask_estimate(self, *_) -> None:
        self._request += 1
        n, clip, params = self._request, self.clip, self.params
        self.estimate_label.setText("estimating the fitting time…")
        self.estimate_label.setStyleSheet("")
        est = self._estimate

        def work(_progress) -> Any:
            fn = est
            if fn is None:
                from loupe_models.fitters.hnerv import estimate as fn
            return fn(clip, params)

        job = Job(work, "hnerv-estimate", self)  # a failure: a LoupeError's message, else type and message
        job.finishedWith.connect(lambda answer: self.estimated.emit(n, answer))
        job.failedWith.connect(lambda msg: self.estimated.emit(n, msg))
        job.done.connect(job.deleteLater)
        job.start()

    def _on_estimate(self, n: int, est: Any) -> None:
        if n != self._request:
            return
        if isinstance(est, str):
            self.estimate_label.setText(f"could not estimate: {est}")
            self.estimate_label.setStyleSheet("color: #b71c1c")
            return
        self.last_estimate = est
        h, w = est.size
        text = est.message or (f"about {format_seconds(est.seconds)} for {est.frames} frames at {w}x{h} "
                               f"with {format_params(self.params)} parameters.")
        if est.needs_gpu:
            text = "<b>This clip needs a GPU</b> at this budget: " + text + \
                   " On this CPU the time limit will stop the fitting early and the frames will be poor."
            self.estimate_label.setStyleSheet("color: #b71c1c")
        else:
            self.estimate_label.setStyleSheet("")
            if est.seconds > 60 * self.minutes.value():
                text += f" The {self.minutes.value():g} min limit stops it before that."
        self.estimate_label.setText(text)


def make_fit(clip: str, out: Path, params: float, minutes: float, fit_fn: Callable | None = None):
    """The fitting function for a Job (``fit(progress)``): PSNR so far in the status line;
    returns HNeRVFitResult."""

    def fit(progress):
        fn, kw = fit_fn, {}
        if fn is None:  # the default epochs (what estimate() timed), stopped early by the time limit
            from loupe_models.fitters.hnerv import DEFAULT_EPOCHS
            from loupe_models.fitters.hnerv import fit_hnerv_clip as fn

            kw["epochs"] = DEFAULT_EPOCHS

        def describe(status: str, info) -> str:
            parts = [status] if status else []
            if info.get("epoch") is not None and "epoch" not in " ".join(parts):
                parts.append(f"epoch {info['epoch']}")
            if info.get("psnr") is not None:
                parts.append(f"PSNR so far {float(info['psnr']):.2f} dB")
            return " · ".join(parts) or "fitting…"

        progress.update(0.0, f"decoding {Path(clip).name}…")
        return fn(clip, out, params=params, minutes=minutes, progress=progress.part(0.0, 1.0, describe), **kw)

    return fit


def start_fit(win, clip: str, params: float, minutes: float, out: Path, fit_fn: Callable | None = None):
    """Run the fitting in a Job with a FitDialog; load the model into ``win`` when done."""
    from loupe.ui.fit_job import run_fit

    job, win.hnerv_dialog = run_fit(
        win, win.hnerv_action, f"Fit HNeRV ({format_params(params)}) on {Path(clip).name}",
        make_fit(clip, out, params, minutes, fit_fn),
        lambda res: (
            f"Fitted HNeRV on {res.frames} frames in {format_seconds(res.seconds)} ({res.epochs} epochs): "
            f"RGB PSNR {res.psnr:.2f} dB, SSIM {res.ssim:.4f} at {res.bpp:.4f} bpp ({res.bits / 8 / 1024:.1f} KiB, "
            f"decoder included). Saved {res.onnx_path} and loaded it."),
        "Fitting HNeRV failed")
    return job


def ask_and_fit(win) -> None:
    """The menu action: checks, the dialog, then ``start_fit``."""
    from loupe.ui.fit_job import can_fit
    from loupe.ui.learn_normal import models_dir

    if not can_fit(win, "Open a video file first: HNeRV is fitted on the frames of one clip."):
        return
    dlg = FitHNeRVDialog(win.source_spec, win)
    if dlg.exec() != QDialog.DialogCode.Accepted:
        return
    params, minutes = dlg.params, dlg.minutes.value()
    stem = Path(win.source_spec).stem
    out = models_dir() / f"{stem}_hnerv_{format_params(params)}_{time.strftime('%Y%m%d_%H%M%S')}.onnx"
    start_fit(win, win.source_spec, params, minutes, out)
