"""The Fit menu: learn a normal-motion predictor, fit HNeRV or a codebook on the open clip.

Each action checks it can fit (a file open, PyTorch installed), asks its questions, then runs the
fitting in a background Job (``loupe.ui.fit_job``) and loads the model it wrote into the window.
"""

from __future__ import annotations

import time
from pathlib import Path

from loupe.ui.panels.anomaly import AnomalyPanel


def add_fit_menu(win, act) -> None:
    """The Fit menu of ``win``; ``act(menu, text, slot, shortcut)`` makes one action."""
    fit = win.menuBar().addMenu("F&it")
    win.learn_action = act(fit, "&Learn normal from this clip…", lambda: learn_normal(win), "Ctrl+L")
    win.hnerv_action = act(fit, "Fit &HNeRV on this clip…", lambda: fit_hnerv(win), "Ctrl+H")
    win.codebook_action = act(fit, "Fit a &codebook on this clip…", lambda: fit_codebook(win), "Ctrl+Shift+L")


def fit_hnerv(win) -> None:
    from loupe.ui.fit_hnerv import ask_and_fit

    ask_and_fit(win)


def fit_codebook(win) -> None:
    from loupe.ui.fit_codebook import ask_and_fit

    ask_and_fit(win)


def marked_span(win) -> tuple[float, float] | None:
    """The span marked on an anomaly panel's calibration region, in seconds at the nominal rate."""
    last = win.last_result
    marked = None
    for p in win.panels:
        if isinstance(p, AnomalyPanel) and p.calib.isVisible() and last is not None:
            lo, hi = p.calib.getRegion()  # frames -> seconds at the nominal rate
            fps = last.frame.index / last.frame.timestamp if last.frame.timestamp > 0 else 25.0
            marked = (max(0.0, lo / fps), hi / fps)
    return marked


def learn_normal(win) -> None:
    """Fit ▸ Learn normal from this clip: ask the span, then ``learn``."""
    from loupe.ui.fit_job import can_fit
    from loupe.ui.learn_normal import ask_span, models_dir

    if not can_fit(win, "Open a video file first: the predictor learns from a span of it.",
                   no_torch="Learning needs PyTorch: install Loupe with pip install 'loupe[fit]' "
                            "(the app bundle views and runs models only)."):
        return
    duration = None
    if win.frame_count and win.last_result is not None and win.last_result.frame.index > 0:
        f = win.last_result.frame
        duration = f.timestamp / f.index * win.frame_count
    try:
        answer = ask_span(win, duration, marked_span(win))
    except ValueError as e:
        win.show_error(str(e))
        return
    if answer is None:
        return
    start, end, minutes = answer
    out = models_dir() / f"{Path(win.source_spec).stem}_normal_{time.strftime('%Y%m%d_%H%M%S')}.onnx"
    win.learn(win.source_spec, start, end, minutes, out)


def learn(win, clip: str, start: float, end: float | None, minutes: float, out: Path):
    """Fit a predictor on [start, end) s of ``clip`` on a worker thread; load it when done."""
    from loupe.ui.fit_job import run_fit
    from loupe.ui.learn_normal import make_fit

    def message(res) -> str:
        verdict = "better" if res.heldout_psnr > res.baseline_psnr else "NOT better"
        return (f"Learned normal from {res.frames} frames in {res.seconds:.0f} s: held-out prediction PSNR "
                f"{res.heldout_psnr:.2f} dB vs {res.baseline_psnr:.2f} dB for copying the last frame "
                f"({verdict}). Saved {res.path} and loaded it.")

    job, _dlg = run_fit(win, win.learn_action, "Learn normal from this clip",
                        make_fit(clip, start, end, minutes, out), message, "Learning failed")
    return job
