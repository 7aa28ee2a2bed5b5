""""Fit a codebook on this clip": ask a span, a time limit, the codebook size and k, fit a small
VQ autoencoder on a worker thread (progress, ETA, cancel; loss plotted, codes used, dead codes and
perplexity in the status line while it trains), save it as a card-carrying ONNX and load it.

The fitting is ``loupe_models.fitters.codebook.fit_codebook_clip`` (the same code as
``loupe fit codebook``); torch is only imported once the user asks for it, and never at all
without the ``[fit]`` extra.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from loupe.ui.fit_job import fit_buttons, minutes_box

logger = logging.getLogger(__name__)

SIZES = (64, 128, 256, 512, 1024)


class FitCodebookDialog(QDialog):
    """Span, time limit, codebook size and k for a codebook fit."""

    def __init__(self, clip: str, duration: float | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Fit a codebook on this clip")
        self.setMinimumWidth(460)
        form = QFormLayout(self)
        intro = QLabel(f"Fit a small vector-quantised autoencoder on <b>{Path(clip).name}</b>: every position of "
                       "a frame is replaced by the nearest of a few hundred learned codes. Dead codes are "
                       "restarted while it trains so the codebook gets used.")
        intro.setWordWrap(True)
        form.addRow(intro)
        self.span = QLineEdit(f"0:{min(duration, 10.0):.2f}" if duration else "0:10")
        self.span.setToolTip("START:END in seconds (either side may be empty: the whole clip)")
        form.addRow("Span (s)", self.span)
        self.minutes = minutes_box(120.0, 2.5, "The whole fit (decoding, training, export) stops at this limit")
        form.addRow("Time limit", self.minutes)
        self.size = QComboBox()
        for n in SIZES:
            self.size.addItem(f"{n} codes", n)
        self.size.setCurrentIndex(SIZES.index(256))
        form.addRow("Codebook", self.size)
        self.k = QSpinBox()
        self.k.setRange(1, 8)
        self.k.setValue(1)
        self.k.setToolTip("Active codes per position: 1 = VQ-VAE (nearest code); more = Codebook Features "
                          "(the k most similar codes, summed)")
        form.addRow("Codes per position (k)", self.k)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #b71c1c")
        self.error.setWordWrap(True)
        form.addRow(self.error)
        form.addRow(fit_buttons(self, self._accept))

    def values(self) -> tuple[float, float | None, float, int, int]:
        """(start, end, minutes, codebook_size, k); ValueError with a user message for a bad span."""
        from loupe.base.text import parse_span

        start, end = parse_span(self.span.text())
        return start, end, float(self.minutes.value()), int(self.size.currentData()), int(self.k.value())

    def _accept(self) -> None:
        try:
            self.values()
        except ValueError as e:
            self.error.setText(str(e))
            return
        self.accept()


def status_line(info: dict) -> str:
    """The dialog's status: what is running, then codes used, dead codes and perplexity."""
    parts = [str(info["status"])] if info.get("status") else []
    if info.get("codes_used") is not None:
        parts.append(f"codes used {int(info['codes_used'])}")
    if info.get("dead_pct") is not None:
        parts.append(f"dead {float(info['dead_pct']):.1f} %")
    if info.get("perplexity") is not None:
        parts.append(f"perplexity {float(info['perplexity']):.1f}")
    return " · ".join(parts) or "fitting…"


def make_fit(clip: str, out: Path, start: float, end: float | None, minutes: float, codebook_size: int, k: int,
             fit_fn: Callable | None = None):
    """The fitting function for a Job (``fit(progress)``); returns the CodebookFitResult."""

    def fit(progress):
        fn = fit_fn
        if fn is None:
            from loupe_models.fitters.codebook import fit_codebook_clip as fn

        shown = progress.part(0.0, 1.0, lambda status, info: status_line({**info, "status": status}))
        return fn(clip, out, start=start, end=end, minutes=minutes, codebook_size=codebook_size, k=k,
                  progress=shown)

    return fit


def start_fit(win, clip: str, out: Path, start: float, end: float | None, minutes: float,
              codebook_size: int = 256, k: int = 1, fit_fn: Callable | None = None):
    """Run the fitting in a Job with a FitDialog; load the model into ``win`` when done."""
    from loupe.ui.fit_job import run_fit

    job, win.codebook_dialog = run_fit(
        win, win.codebook_action, f"Fit a codebook ({codebook_size} codes, k={k}) on {Path(clip).name}",
        make_fit(clip, out, start, end, minutes, codebook_size, k, fit_fn),
        lambda res: (
            f"Fitted a {codebook_size}-code codebook on {res.frames} frames in {res.seconds:.0f} s: "
            f"{res.codes_used} of {codebook_size} codes used, perplexity {res.perplexity:.1f}, "
            f"held-out reconstruction {res.recon_psnr:.2f} dB. Saved {res.onnx_path} and loaded it."),
        "Fitting a codebook failed", cancelled="Codebook fitting cancelled; nothing was saved.")
    return job


def ask_and_fit(win) -> None:
    """The menu action: checks, the dialog, then ``start_fit``."""
    from loupe.ui.fit_job import can_fit
    from loupe.ui.learn_normal import models_dir

    if not can_fit(win, "Open a video file first: the codebook is fitted on a span of its frames."):
        return
    duration = None
    last = win.last_result
    if win.frame_count and last is not None and last.frame.index > 0 and last.frame.timestamp > 0:
        duration = last.frame.timestamp / last.frame.index * win.frame_count
    dlg = FitCodebookDialog(win.source_spec, duration, win)
    if dlg.exec() != QDialog.DialogCode.Accepted:
        return
    start, end, minutes, size, k = dlg.values()
    stem = Path(win.source_spec).stem
    out = models_dir() / f"{stem}_codebook_{size}x{k}_{time.strftime('%Y%m%d_%H%M%S')}.onnx"
    start_fit(win, win.source_spec, out, start, end, minutes, size, k)
