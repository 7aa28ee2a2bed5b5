"""Benchmark 5b: memory soak with the window: bikes.mp4 at its own size (640x272), looped, played
in the main window with the demo segmentation model.

``memory_soak.py`` measures the worker alone (frames at a quarter size, no view, no panel). This
one runs the whole GUI path: the window (offscreen Qt platform, 1400x800) decodes the clip at
full size, the worker runs the model, the view paints each frame with its class overlay, the
segmentation panel updates its legend, the status bar its meters. The player runs in the
window's lockstep mode (the one ``loupe --screenshot`` uses): the reader hands over every frame,
at the speed the model allows rather than the clip's 25 fps (the worker may still skip a result
when the UI is two behind and the next frame waits: the count is printed, 2 in 10,000 when
measured). The clip is looped until ``--frames`` frames have been shown.

RSS is printed every ``--every`` frames shown (after a garbage collection); the growth after
warm-up (RSS at the end minus RSS at the first report at or after ``--warmup`` frames) is the
figure. Goal: <= 20 MB, as for the worker-only soak.

    python bench/window_soak.py [--frames 10000] [--warmup 1000] [--every 500] [--max-minutes 20]
"""

from __future__ import annotations

import argparse
import gc
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
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--max-minutes", type=float, default=20.0)
    ap.add_argument("--clip", default="bikes.mp4")
    ap.add_argument("--model", default=None, help="default: the demo segmentation model")
    args = ap.parse_args(argv)
    common.header("Memory soak with the window (RSS, MB; provider CPU)")
    from PySide6.QtCore import QEventLoop, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from loupe.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    model = args.model or str(demo_model())
    clip = str(clip_path(args.clip))
    win = MainWindow(providers="cpu", ask_task=False, lockstep=True)
    win.resize(1400, 800)
    win.show()
    win.add_model(model)
    if not common.wait_until(app, lambda: bool(win.models), time.monotonic() + 120):
        print(f"the model did not load: {model}")
        return 1
    shown = [0]
    opened: list = []
    win.sourceOpened.connect(lambda *a: opened.append(True))
    win.open_source(clip, playing=False)
    if not common.wait_until(app, lambda: bool(opened) and win.player is not None, time.monotonic() + 60):
        print(f"the clip did not open: {clip}")
        return 1
    win.player.loop = True  # the clip starts over at its end
    print(f"model {win.models[0].name} ({win.models[0].task.name}) on {win.models[0].engine.provider}, "
          f"{win.models[0].engine.threads} threads; clip {args.clip} looped, {win.player.source.frame_count} "
          f"frames per pass; target {args.frames} frames shown, stop after {args.max_minutes:g} min")

    samples: list[tuple[int, float]] = []
    t0 = [time.monotonic()]
    loop = QEventLoop()
    size: list = []

    def on_frame(fr) -> None:
        shown[0] += 1
        n = shown[0]
        if not size:
            size.append(fr.frame.pixels.shape)
            print(f"  frames shown at {fr.frame.width}x{fr.frame.height}, class maps "
                  f"{fr.results[0].result.class_map.shape[1]}x{fr.results[0].result.class_map.shape[0]}",
                  flush=True)
        if n % args.every == 0:
            gc.collect()
            rss = common.rss_mb()
            samples.append((n, rss))
            el = time.monotonic() - t0[0]
            print(f"  frame {n:6d}  RSS {rss:8.1f} MB  {el:6.0f} s  {n / el:5.1f} fps  "
                  f"dropped {win.slot.dropped + win.worker.skipped}  load {common.load()}", flush=True)
        if n >= args.frames or time.monotonic() - t0[0] > 60 * args.max_minutes:
            loop.quit()

    win.frameShown.connect(on_frame, Qt.ConnectionType.DirectConnection)
    QTimer.singleShot(int((args.max_minutes * 60 + 30) * 1000), loop.quit)
    gc.collect()
    print(f"  start RSS {common.rss_mb():.1f} MB", flush=True)
    t0[0] = time.monotonic()
    win.toggle_play()
    loop.exec()
    el = time.monotonic() - t0[0]
    if win.player is not None:
        win.player.pause()
    win.frameShown.disconnect(on_frame)
    verdict = common.rss_growth(samples, args.warmup)
    if verdict:
        print(f"frames shown {shown[0]} in {el:.0f} s ({shown[0] / el:.1f} fps), at "
              f"{size[0][1]}x{size[0][0]}; {verdict}")
    else:
        print(f"frames shown {shown[0]} in {el:.0f} s: too few reports after warm-up for a growth figure")
    win.close()
    win.deleteLater()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
