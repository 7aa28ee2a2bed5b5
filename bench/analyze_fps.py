"""Benchmark: `loupe analyze` throughput on the shipped clips, through the app's own code.

Prints the core count, the providers that actually ran, and frames/s with the per-stage split
(decode, model incl. pre/post-processing) for the demo segmentation model on bikes.mp4 and
bigbuckbunny.mp4, at 1, 2 and all ONNX Runtime threads.

    python bench/analyze_fps.py [--frames N] [--model M.onnx]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from loupe.base.media import clip_path
from loupe.resources import demo_model
from loupe.run.analyze import analyze
from loupe.run.pipeline import load_model
from loupe.sources.open import open_source


def decode_fps(path: str, n: int) -> float:
    src = open_source(path)
    t = time.perf_counter()
    k = 0
    for _ in src:
        k += 1
        if k >= n:
            break
    src.close()
    return k / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    model = args.model or str(demo_model())
    cores = os.cpu_count() or 1
    print(f"cores: {cores}   model: {os.path.basename(model)}")
    print(f"{'clip':22s} {'size':>10s} {'threads':>7s} {'provider':>8s} {'decode fps':>10s} {'analyze fps':>11s} {'model ms':>8s}")
    for clip in ("bikes.mp4", "bigbuckbunny.mp4"):
        path = str(clip_path(clip))
        dfps = decode_fps(path, args.frames)
        src = open_source(path)
        first = next(iter(src))
        size = f"{first.width}x{first.height}"
        src.close()
        for threads in sorted({1, 2, cores}):
            lm = load_model(model, threads=threads, display_max_side=None)
            analyze([path], [lm], None, max_frames=5)  # warm-up
            t = time.perf_counter()
            summ = analyze([path], [lm], None, max_frames=args.frames)
            dt = time.perf_counter() - t
            lat = summ.inputs[0].latency_ms[lm.name]
            print(f"{clip:22s} {size:>10s} {threads:7d} {lm.engine.provider:>8s} {dfps:10.1f} "
                  f"{summ.frames / dt:11.1f} {sum(lat) / len(lat):8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
