"""Benchmark 3: UI responsiveness while the demo plays at full rate in the real window.

The main window (offscreen unless $QT_QPA_PLATFORM says otherwise) plays the demo clip with the
demo segmentation model, looping; a 1 ms timer on the UI thread records how late each tick
fires (the event-loop stall). Prints p50/p95/p99/max of the lateness, the frames shown and the
inference FPS. Goal: p99 <= 16 ms.

    python bench/ui_responsiveness.py [--seconds S] [--clip NAME] [--model M.onnx]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common

from loupe.base.media import clip_path
from loupe.resources import demo_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clip", default="bikes.mp4")
    ap.add_argument("--model", default=None)
    args = ap.parse_args(argv)
    common.header("UI responsiveness (event-loop stall, ms)")
    from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer
    t_end = time.monotonic() + 60
    model = args.model or str(demo_model())
    app, win = common.window_with_model(model)
    win.open_source(str(clip_path(args.clip)))
    common.wait_until(app, lambda: win.player is not None, t_end)
    if win.player is None or not win.models:
        print("could not start playback", file=sys.stderr)
        return 1
    win.player.loop = True
    late: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    state = {"last": None}

    def tick() -> None:
        now = clock.nsecsElapsed() / 1e6
        if state["last"] is not None:
            late.append(max(0.0, now - state["last"] - 1.0))
        state["last"] = now

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.timeout.connect(tick)
    warm_until = time.monotonic() + 2.0
    while time.monotonic() < warm_until:  # first frames, JIT-ish warm-up of the session
        app.processEvents()
    shown0, processed0 = win.shown, win.worker.processed
    t0 = time.monotonic()
    timer.start(1)
    loop = QEventLoop()
    QTimer.singleShot(int(args.seconds * 1000), loop.quit)
    loop.exec()
    timer.stop()
    dt = time.monotonic() - t0
    shown, processed = win.shown - shown0, win.worker.processed - processed0
    lat = [mr.latency_ms for mr in (win.last_result.results if win.last_result else ())]
    win.close()
    p99 = common.pct(late, 99)
    print(f"clip {args.clip}, model {os.path.basename(model)}, {dt:.1f} s, {len(late)} ticks")
    print(f"shown {shown / dt:.1f} fps, inference {processed / dt:.1f} fps, last model latency "
          f"{', '.join(f'{v:.0f}' for v in lat)} ms, dropped {win.slot.dropped + win.worker.skipped}")
    print(f"stall ms: p50 {common.pct(late, 50):.2f}  p95 {common.pct(late, 95):.2f}  p99 {p99:.2f}  "
          f"max {max(late) if late else float('nan'):.2f}   (goal p99 <= 16: {'met' if p99 <= 16 else 'NOT met'})"
          f"   load {common.load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
