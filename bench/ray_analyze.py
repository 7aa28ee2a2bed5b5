"""Benchmark: `loupe analyze` on one process vs on a local Ray (loupe.run.cluster), same inputs.

Prints the machine, then frames/s of the local run (1 and 2 ONNX Runtime threads) and of the Ray
run (2 actors x 1 thread; long videos split into frame ranges), with Ray's start-up (starting the
local cluster, creating the actors and loading the model in each) timed apart from the analysis,
and checks that the Ray rows equal the local rows (every column but latency_ms).

    python bench/ray_analyze.py [--model M.onnx] [--cpus 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import header

from loupe.base.media import clip_path
from loupe.resources import demo_model
from loupe.run.analyze import RowWriter, analyze, columns_for
from loupe.run.pipeline import load_model


def rows_without_latency(text: str) -> list[dict[str, str]]:
    import csv

    return [{k: v for k, v in r.items() if k != "latency_ms"} for r in csv.DictReader(io.StringIO(text))]


def first_difference(a: list[dict[str, str]], b: list[dict[str, str]]) -> str:
    if len(a) != len(b):
        return f"{len(a)} rows vs {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            diff = {k: (x.get(k), y.get(k)) for k in set(x) | set(y) if x.get(k) != y.get(k)}
            return f"row {i} ({x.get('input', '')[-20:]} frame {x.get('frame')}): {diff}"
    return ""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (one actor each)")
    ap.add_argument("--repeat", type=int, default=2, help="Ray runs on the same cluster (the first pays start-up)")
    args = ap.parse_args()
    import ray

    from loupe.run.cluster import analyze_on_ray

    model = args.model or str(demo_model())
    inputs = [str(clip_path("bikes.mp4")), str(clip_path("bigbuckbunny.mp4"))]
    header("loupe analyze: one process vs a local Ray")
    print(f"model: {Path(model).name}; inputs: bikes.mp4 (640x272), bigbuckbunny.mp4 (1280x720, 132 frames)")
    cols = columns_for([load_model(model, display_max_side=None)], False)

    local_text = None
    for threads in (1, 2):
        lm = load_model(model, threads=threads, display_max_side=None)
        buf = io.StringIO()
        t = time.perf_counter()
        summary = analyze(inputs, [lm], RowWriter(buf, "csv", cols))
        dt = time.perf_counter() - t
        local_text = local_text or buf.getvalue()
        print(f"local, 1 process, {threads} ORT thread(s):    {summary.frames:4d} frames in {dt:6.1f} s = "
              f"{summary.frames / dt:6.1f} frames/s")

    t = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    print(f"ray.init (local, {args.cpus} CPUs):                {time.perf_counter() - t:6.1f} s")
    try:
        for run in range(args.repeat):
            buf = io.StringIO()
            t = time.perf_counter()
            summary, parts = analyze_on_ray(inputs, [model], RowWriter(buf, "csv", cols), workers=args.cpus, threads=1)
            dt = time.perf_counter() - t
            pids = len({p.pid for p in parts})
            diff = first_difference(rows_without_latency(buf.getvalue()), rows_without_latency(local_text))
            note = "incl. actor start-up + model load" if run == 0 else "actors created again"
            print(f"ray, {args.cpus} actors x 1 thread, run {run + 1}: {summary.frames:4d} frames in {dt:6.1f} s = "
                  f"{summary.frames / dt:6.1f} frames/s ({len(parts)} parts on {pids} processes; {note}); "
                  f"rows equal local: {'yes' if not diff else 'NO, ' + diff}")
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
