""""Learn normal from this clip": fit a next-frame predictor on a span of the open file, on a
worker thread (torch, GPU if present), save it as a card-carrying ONNX and load it at once.

The fitting itself is ``loupe_models.fitters.anomaly`` (the same code as ``loupe fit anomaly``);
this module only asks for the span, runs it in a ``Job`` and shows progress, ETA and loss.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import QInputDialog, QWidget

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LearnedModel:
    path: Path
    heldout_psnr: float
    baseline_psnr: float
    seconds: float
    frames: int

    @property
    def onnx_path(self) -> Path:  # the name the other fittings' results use
        return self.path


def models_dir() -> Path:
    try:
        from platformdirs import user_data_dir

        base = Path(user_data_dir("loupe"))
    except ImportError:  # platformdirs is a dependency; keep working without it
        base = Path.home() / ".local" / "share" / "loupe"
    d = base / "models"
    d.mkdir(parents=True, exist_ok=True)
    return d


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("loupe_models") is not None


def make_fit(clip: str, start: float, end: float | None, minutes: float, out: Path, size=(128, 128)):
    """The fitting function for a Job (``fit(progress)``): decode the span, fit, export; returns
    LearnedModel. A cancel while fitting stops it early and keeps what was learned (as the
    fitter's time limit does); before that, nothing is saved."""

    def fit(progress) -> LearnedModel:
        from loupe_models.exporters.anomaly import export_predictor
        from loupe_models.fitters.anomaly import (
            FitConfig,
            decode_span,
            fit_card_info,
            fit_predictor,
        )

        progress.update(0.0, f"decoding {Path(clip).name} {start:g}–{'' if end is None else f'{end:g}'} s…")
        frames, _fps = decode_span(clip, start, end, size=size)
        progress.check()
        cfg = FitConfig(time_budget_s=60.0 * minutes, threads=0)  # 0: time 1 vs 2 threads, keep the faster
        t0 = time.perf_counter()
        status = f"fitting on {len(frames)} frames at {size[1]}x{size[0]}"
        result = fit_predictor(frames, size, 4, progress=progress.part(0.0, 1.0, lambda _s, _i: status), config=cfg)
        progress.update(1.0, "exporting…")
        span = f"{start:g}:{'' if end is None else f'{end:g}'} s"
        info = fit_card_info(result, f"Learned normal: {Path(clip).stem} ({span})", {
            "training_data": f"{Path(clip).name}, normal span {span}, {len(frames)} frames",
            "demo": False,
        })
        path, _check = export_predictor(result.model, out, info)
        return LearnedModel(Path(path), result.heldout_psnr, result.baseline_psnr,
                            time.perf_counter() - t0, len(frames))

    return fit


def ask_span(parent: QWidget, duration: float | None, marked: tuple[float, float] | None) -> tuple[float, float | None, float] | None:
    """(start, end, minutes) from the user, or None."""
    if marked is not None:
        default = f"{marked[0]:.2f}:{marked[1]:.2f}"
    elif duration:
        default = f"0:{min(duration, 10.0):.2f}"
    else:
        default = "0:10"
    text, ok = QInputDialog.getText(
        parent, "Learn normal from this clip",
        "Span of NORMAL footage to learn from, START:END in seconds\n"
        "(a 10 s span fits in about 4 minutes on a 2-core CPU; faster on a GPU):", text=default,
    )
    if not ok:
        return None
    from loupe.base.text import parse_span

    start, end = parse_span(text)
    minutes, ok = QInputDialog.getDouble(parent, "Learn normal from this clip", "Time budget (minutes):", 4.0, 0.2, 120.0, 1)
    if not ok:
        return None
    return start, end, minutes
