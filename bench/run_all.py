"""Run every benchmark in bench/ in one go (under 40 minutes on a 2-core CPU) and keep a log.

    python bench/run_all.py [--budget-minutes 40] [--log FILE] [--quick]

Order: start-up, pipeline efficiency, overlay cost, UI responsiveness, live latency, GPU (skips
without a GPU), then the memory soak with the window (10,000 frames of bikes.mp4 at its own size,
about 8 minutes on 2 cores), then the worker-only memory soak, which gets the time left in the
budget (at most its own 20-minute cap) and prints how many of its 10,000 frames it reached. Each benchmark prints its
own header (cores, load average, ONNX Runtime providers) and its figures. ``--quick`` is a
smoke run of a few minutes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-minutes", type=float, default=40.0)
    ap.add_argument("--log", default=None, help="also write everything to this file "
                    "(default: build/bench-<date>.txt)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip", default="", help="comma-separated benchmarks to leave out, e.g. memory_soak")
    args = ap.parse_args(argv)
    log_path = Path(args.log) if args.log else HERE.parent / "build" / time.strftime("bench-%Y%m%d-%H%M%S.txt")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    q = args.quick
    plan = [
        ("startup.py", ["--runs", "1" if q else "3"]),
        ("pipeline_efficiency.py", ["--quick"] if q else ["--frames", "40"]),
        ("overlay_cost.py", ["--reps", "5" if q else "20"]),
        ("ui_responsiveness.py", ["--seconds", "5" if q else "20"]),
        ("live_latency.py", ["--seconds", "4" if q else "15"]),
        ("render.py", ["--frames", "50" if q else "250"]),
        ("gpu.py", []),
    ]
    skip = {n.strip().removesuffix(".py") for n in args.skip.split(",") if n.strip()}
    plan = [(name, extra) for name, extra in plan if name.removesuffix(".py") not in skip]
    t0 = time.monotonic()
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    failed = []
    with open(log_path, "w") as log:
        def run(name: str, extra: list[str]) -> None:
            cmd = [sys.executable, str(HERE / name), *extra]
            banner = f"\n### {name} {' '.join(extra)}  (t = {(time.monotonic() - t0) / 60:.1f} min)\n"
            sys.stdout.write(banner)
            log.write(banner)
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for line in proc.stdout:
                if "propagateSizeHints" in line:  # offscreen Qt plugin noise
                    continue
                sys.stdout.write(line)
                sys.stdout.flush()
                log.write(line)
                log.flush()
            if proc.wait() != 0:
                failed.append(name)

        for name, extra in plan:
            run(name, extra)
        if "window_soak" not in skip:
            run("window_soak.py", ["--frames", "600", "--warmup", "200", "--every", "200", "--max-minutes", "3"]
                if q else ["--max-minutes", "12"])
        left = args.budget_minutes - (time.monotonic() - t0) / 60 - 1.5  # start-up and report margin
        soak_min = max(1.0, min(20.0, left))
        soak = ["--max-minutes", f"{soak_min:.1f}"]
        if q:
            soak = ["--frames", "600", "--warmup", "200", "--every", "200", "--max-minutes", "3"]
        if "memory_soak" not in skip:
            run("memory_soak.py", soak)
        total = (time.monotonic() - t0) / 60
        end = f"\nall benchmarks: {total:.1f} min; failed: {', '.join(failed) or 'none'}; log {log_path}\n"
        sys.stdout.write(end)
        log.write(end)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
