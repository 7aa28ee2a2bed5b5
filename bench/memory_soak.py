"""Benchmark 5: memory soak: the demo clip, looped, through the GUI's worker with every
streaming demo model loaded (worker only: no window, no view; ``window_soak.py`` soaks the
window itself at the clip's own size).

The reader (``Player``, lockstep so no frame is dropped) feeds the ``InferenceWorker`` QThread,
which runs every shipped streaming demo model (segmentation, density, anomaly, and codebook
models when resources/ holds one); results arrive on the UI thread by queued signal, as in the
window. RSS is printed every 500 frames; the growth after warm-up (RSS at the end minus RSS at
the first report after ``--warmup`` frames) is the figure. Goal: <= 20 MB.

Frames are scaled by ``--scale`` (default 0.25) so that 10,000 frames fit the time budget on a
2-core CPU; allocation behaviour does not depend on the frame size. ``--max-minutes`` stops
early (the frames done are printed).

    python bench/memory_soak.py [--frames 10000] [--scale 0.25] [--max-minutes 20]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common
import cv2

from loupe.base.media import clip_path
from loupe.resources import resource_path
from loupe.sources.base import Frame


class ScaledSource:
    """A file source whose frames are resized by ``scale`` (looping is the Player's)."""

    def __init__(self, path: str, scale: float) -> None:
        from loupe.sources.open import open_source

        self._src = open_source(path)
        self.scale = scale
        self.name = self._src.name
        self.live = False

    @property
    def frame_count(self):
        return self._src.frame_count

    @property
    def fps(self):
        return self._src.fps

    def seek(self, index: int) -> None:
        self._src.seek(index)

    def __iter__(self):
        for f in self._src:
            if self.scale != 1.0:
                px = cv2.resize(f.pixels, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_AREA)
                f = Frame(px, f.index, f.timestamp, f.metadata)
            yield f

    def close(self) -> None:
        self._src.close()


def streaming_models() -> list[str]:
    """Shipped demo models of the streaming tasks (not the CT model: DICOM, not a video)."""
    from loupe.inference.engine import Engine

    out = []
    for p in sorted(Path(str(resource_path("."))).glob("*.onnx")):
        try:
            eng = Engine(p, providers="cpu")
        except Exception:
            continue
        if eng.card.task in ("segmentation", "density", "anomaly", "codebook") and "ct" not in p.stem.split("_"):
            out.append(str(p))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--max-minutes", type=float, default=20.0)
    ap.add_argument("--clip", default="bikes.mp4")
    args = ap.parse_args(argv)
    common.header("Memory soak (RSS, MB; provider CPU)")
    from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, Qt, QTimer, Signal

    from loupe.run.pipeline import LatestSlot, Runner, load_model
    from loupe.run.player import Player
    from loupe.ui.worker import InferenceWorker

    _app = QCoreApplication.instance() or QCoreApplication([])  # kept alive for the run
    paths = streaming_models()
    models = [load_model(p, providers="cpu") for p in paths]
    print(f"models: {', '.join(f'{m.name} ({m.task.name})' for m in models)}")
    source = ScaledSource(str(clip_path(args.clip)), args.scale)
    first = next(iter(source))
    source.seek(0)
    print(f"clip {args.clip} looped, frames {first.width}x{first.height} (scale {args.scale:g}), "
          f"target {args.frames} frames, stop after {args.max_minutes:g} min")
    slot = LatestSlot()
    runner = Runner(models)
    worker = InferenceWorker(slot, runner)
    player = Player(source, slot, realtime=False, loop=True, lockstep=True)

    class Sink(QObject):
        done = Signal()

        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.t0 = time.monotonic()
            self.samples: list[tuple[int, float]] = []
            self.last = None

        def on_result(self, fr) -> None:
            worker.result_shown()
            self.last = fr  # the window keeps the last result too
            self.n += 1
            if self.n % args.every == 0:
                gc.collect()
                rss = common.rss_mb()
                self.samples.append((self.n, rss))
                el = time.monotonic() - self.t0
                print(f"  frame {self.n:6d}  RSS {rss:8.1f} MB  {el:6.0f} s  {self.n / el:5.1f} fps  "
                      f"load {common.load()}", flush=True)
            if self.n >= args.frames or time.monotonic() - self.t0 > 60 * args.max_minutes:
                self.done.emit()

    sink = Sink()
    worker.resultReady.connect(sink.on_result, Qt.ConnectionType.QueuedConnection)
    loop = QEventLoop()
    sink.done.connect(loop.quit)
    worker.start()
    player.start(playing=True)
    print(f"  start RSS {common.rss_mb():.1f} MB", flush=True)
    QTimer.singleShot(int((args.max_minutes * 60 + 30) * 1000), loop.quit)
    loop.exec()
    player.stop()
    worker.stop()
    el = time.monotonic() - sink.t0
    verdict = common.rss_growth(sink.samples, args.warmup)
    if verdict:
        print(f"worker only (no view), frames at scale {args.scale:g} ({first.width}x{first.height}): "
              f"frames {sink.n} in {el:.0f} s ({sink.n / el:.1f} fps); {verdict}")
    else:
        print(f"frames {sink.n} in {el:.0f} s: too few reports after warm-up for a growth figure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
