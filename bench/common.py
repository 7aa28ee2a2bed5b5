"""Shared helpers for the benchmarks in bench/ (not part of the app or the test suite).

Every benchmark prints ``header()`` first: core count, load average, ONNX Runtime version and the
providers it lists, so each table says what it was measured on.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DDRNET_CACHE = Path(tempfile.gettempdir()) / "loupe-bench"


def load() -> str:
    try:
        a, b, c = os.getloadavg()
        return f"{a:.2f} {b:.2f} {c:.2f}"
    except OSError:
        return "n/a"


def physical_cores() -> int:
    from loupe.inference.engine import physical_cores as pc

    return pc()


def header(title: str) -> str:
    import onnxruntime as ort

    lines = [
        f"== {title} ==",
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores "
        f"({physical_cores()} physical), load average {load()}",
        f"onnxruntime {ort.__version__}, providers listed: {', '.join(ort.get_available_providers())}",
        f"python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
    ]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def ddrnet_onnx(num_classes: int = 19) -> Path:
    """DDRNet-23-slim (Cityscapes layout) with the deterministic reference fill, exported once to a
    temporary ONNX with its card (inference speed does not depend on the weights)."""
    DDRNET_CACHE.mkdir(parents=True, exist_ok=True)
    out = DDRNET_CACHE / f"ddrnet23_slim_fill_{num_classes}.onnx"
    if out.exists():
        return out
    import torch

    from loupe_models.exporters.onnx import ddrnet23_slim_card, export_segmentation
    from loupe_models.golden import fill_state_dict
    from loupe_models.nets.ddrnet import ddrnet23_slim

    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    net = ddrnet23_slim(num_classes=num_classes)
    net.load_state_dict(fill_state_dict(net), strict=True)
    net.eval()
    tmp = out.with_suffix(".tmp.onnx")
    export_segmentation(net, tmp, ddrnet23_slim_card("reference fill (bench)"), sample_hw=(256, 512))
    tmp.replace(out)
    return out


def decode_all(path: str, limit: int | None = None) -> list:
    """Every frame of a clip (or the first ``limit``), decoded beforehand."""
    from loupe.sources.open import open_source

    src = open_source(path)
    frames = []
    try:
        for f in src:
            frames.append(f)
            if limit is not None and len(frames) >= limit:
                break
    finally:
        src.close()
    return frames


def window_with_model(model: str, timeout: float = 60.0):
    """(app, MainWindow) on the CPU provider at 1400x800, shown, with ``model`` loaded (waits up
    to ``timeout`` s; ``win.models`` stays empty when it did not load)."""
    from PySide6.QtWidgets import QApplication

    from loupe.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    win = MainWindow(providers="cpu", ask_task=False)
    win.resize(1400, 800)
    win.show()
    win.add_model(model)
    wait_until(app, lambda: bool(win.models), time.monotonic() + timeout)
    return app, win


def wait_until(app, done, deadline: float) -> bool:
    """Process Qt events until ``done()`` or ``deadline`` (monotonic seconds); ``done()``."""
    while not done() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    return done()


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError):
        import psutil

        return psutil.Process().memory_info().rss / 1e6


def pct(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, float), q)) if len(values) else float("nan")


def rss_growth(samples: list[tuple[int, float]], warmup: int) -> str | None:
    """The soak benchmarks' verdict from ``(frames, RSS MB)`` samples: RSS growth after the
    first ``warmup`` frames against the 20 MB goal, with the load; None with too few samples."""
    after = [(n, r) for n, r in samples if n >= warmup]
    if len(after) < 2:
        return None
    growth = after[-1][1] - after[0][1]
    peak = max(r for _, r in after) - after[0][1]
    return (f"RSS after warm-up ({after[0][0]} frames) {after[0][1]:.1f} MB -> {after[-1][1]:.1f} MB at "
            f"{after[-1][0]}: growth {growth:+.1f} MB (peak {peak:+.1f}); goal <= 20 MB: "
            f"{'met' if growth <= 20 else 'NOT met'}   load {load()}")


def minus(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, ...]:
    """(median, best) of ``a`` less ``b``'s, never below 0: what one step adds to another."""
    return tuple(max(0.0, x - y) for x, y in zip(a, b))


def print_steps(rows: list[tuple[str, tuple[float, float]]], width: int) -> None:
    """The (step, (median ms, best ms)) rows as a table, the step's name ``width`` wide."""
    print(f"{'step':{width}s} {'median':>8s} {'best':>8s}  ms")
    for name, (med, best) in rows:
        print(f"{name:{width}s} {med:8.2f} {best:8.2f}")


def per_frame_total(title: str, *parts: tuple[float, float]) -> tuple[float, ...]:
    """Print and return the sum of ``parts`` ((median, best) each): the post-processing and drawing
    a frame costs."""
    total = tuple(sum(p[k] for p in parts) for k in range(2))
    print(f"{title}: {total[0]:.2f} ms median, {total[1]:.2f} ms best   load {load()}")
    return total
