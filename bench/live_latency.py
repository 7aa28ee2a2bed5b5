"""Benchmark 4: live latency from capture to shown, with a fake camera.

A fake camera delivers frames of a clip at a fixed rate (30 and 60 fps), stamping
``capture_time`` (``time.monotonic()``) into each frame's metadata as the real camera source
does; the real window shows them with the demo segmentation model. Latency = the time a frame
is handed to the view (``frameShown``) minus its capture time. Prints p50/p95, the mean model
time and dropped frames (captured but never shown). Goal: p95 <= inference + one frame interval.

    python bench/live_latency.py [--seconds S] [--rates 30,60]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common

from loupe.base.media import clip_path
from loupe.resources import demo_model
from loupe.sources.base import Frame, ReaderSource


class FakeCamera(ReaderSource):
    """A live source: frames of a clip (looped) at ``fps``, paced like a camera, stamped with
    their capture time."""

    live = True

    def __init__(self, frames: list, fps: float) -> None:
        self.name = f"fake camera {fps:g} fps"
        self._frames = frames
        self._period = 1.0 / fps
        self._next = None
        self._i = 0
        self._closed = threading.Event()
        self.captured = 0

    @property
    def frame_count(self):
        return None

    @property
    def fps(self):
        return 1.0 / self._period

    def seek(self, index: int) -> None:
        pass

    def read(self):
        if self._closed.is_set():
            return None
        now = time.monotonic()
        if self._next is None:
            self._next = now
        if self._next > now:
            if self._closed.wait(self._next - now):
                return None
        self._next = max(self._next + self._period, time.monotonic() - self._period)
        src = self._frames[self._i % len(self._frames)]
        self._i += 1
        self.captured += 1
        return Frame(src.pixels, self._i - 1, self._i * self._period,
                     {"capture_time": time.monotonic(), "device": -1})

    def close(self) -> None:
        self._closed.set()


def measure(app, win, frames: list, fps: float, seconds: float) -> dict:
    from PySide6.QtCore import QEventLoop, QTimer

    cam = FakeCamera(frames, fps)
    lat: list[float] = []
    model_ms: list[float] = []
    shown = {"n": 0}

    def on_shown(fr) -> None:
        cap = fr.frame.metadata.get("capture_time")
        if cap is None or not fr.results:
            return
        shown["n"] += 1
        lat.append((time.monotonic() - cap) * 1e3)
        model_ms.append(sum(mr.latency_ms for mr in fr.results))

    win.frameShown.connect(on_shown)
    win._start_source(cam.name, cam, True)
    warm = time.monotonic() + 2.0
    while time.monotonic() < warm:
        app.processEvents()
        time.sleep(0.002)
    lat.clear()
    model_ms.clear()
    shown["n"] = 0
    cap0 = cam.captured
    loop = QEventLoop()  # not app.exec/quit: in Qt 6 quitting the application closes the window
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    captured = cam.captured - cap0
    win.frameShown.disconnect(on_shown)
    win._stop_player()
    infer = float(sum(model_ms) / len(model_ms)) if model_ms else float("nan")
    return dict(fps=fps, p50=common.pct(lat, 50), p95=common.pct(lat, 95), infer=infer,
                shown=shown["n"], captured=captured, dropped=max(0, captured - shown["n"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rates", default="30,60")
    ap.add_argument("--clip", default="bikes.mp4")
    args = ap.parse_args(argv)
    common.header("Live latency, fake camera -> shown (ms; provider CPU)")
    app, win = common.window_with_model(str(demo_model()))
    frames = common.decode_all(str(clip_path(args.clip)), 100)
    print(f"clip {args.clip} {frames[0].width}x{frames[0].height}, model demo_segmentation.onnx")
    print(f"{'rate':>5s} {'p50':>7s} {'p95':>7s} {'infer':>7s} {'goal':>7s} {'shown':>6s} {'captured':>8s} "
          f"{'dropped':>7s}")
    for rate in (float(r) for r in args.rates.split(",")):
        r = measure(app, win, frames, rate, args.seconds)
        goal = r["infer"] + 1000.0 / rate
        print(f"{rate:5.0f} {r['p50']:7.1f} {r['p95']:7.1f} {r['infer']:7.1f} {goal:7.1f} {r['shown']:6d} "
              f"{r['captured']:8d} {r['dropped']:7d}   p95 <= inference + interval: "
              f"{'met' if r['p95'] <= goal else 'NOT met'}   load {common.load()}", flush=True)
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
