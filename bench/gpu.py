"""Benchmark 7: GPU: DDRNet-23-slim at 1024x2048 with TensorRT FP16 and CUDA.

Only where a GPU provider loads (``loupe.inference.engine.gpu_provider_status``) and a GPU is
present; otherwise prints why and exits 0. For each of TensorRT (FP16, engine cache) and CUDA:
session start-up time (twice: the second TensorRT start must reuse the engine cache, not
rebuild), model-only FPS (bare ``session.run`` on a prepared 1024x2048 input) and the app's
pipeline FPS (``loupe analyze`` on bigbuckbunny.mp4 upscaled to 2048x1024, GUI class map).

    python bench/gpu.py [--frames N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common
import cv2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    args = ap.parse_args(argv)
    common.header("GPU: DDRNet-23-slim 1024x2048 (FPS)")
    from loupe.inference.engine import gpu_provider_status
    from loupe.sysinfo import gpu_name

    status = gpu_provider_status()
    gpu = gpu_name()
    usable = [p for p, why in status.items() if why is None]
    if not usable or not gpu or gpu.lower().startswith(("none", "no ", "n/a")):
        reasons = "; ".join(f"{p}: {why}" for p, why in status.items() if why) or "no GPU found"
        print(f"GPU benchmark skipped: no usable GPU here (GPU: {gpu or 'none'}; {reasons})")
        return 0
    from loupe.base.media import clip_path
    from loupe.inference.engine import Engine, trt_cache_dir
    from loupe.run.analyze import analyze
    from loupe.run.pipeline import LoadedModel
    from loupe.sources.base import Frame
    from loupe.tasks import make_task

    print(f"GPU: {gpu}; TensorRT engine cache: {trt_cache_dir()}")
    model = str(common.ddrnet_onnx())
    src = common.decode_all(str(clip_path("bigbuckbunny.mp4")), 1)[0].pixels
    frame = Frame(cv2.resize(src, (2048, 1024), interpolation=cv2.INTER_LINEAR), 0, 0.0)
    # a 2048x1024 clip for the pipeline figure (lossless-ish MJPEG in a temporary folder)
    tmp = tempfile.mkdtemp(prefix="loupe-gpu-")
    clip = os.path.join(tmp, "bunny_2048x1024.avi")
    wr = cv2.VideoWriter(clip, cv2.VideoWriter_fourcc(*"MJPG"), 24, (2048, 1024))
    for f in common.decode_all(str(clip_path("bigbuckbunny.mp4")), min(args.frames, 132)):
        wr.write(cv2.cvtColor(cv2.resize(f.pixels, (2048, 1024)), cv2.COLOR_RGB2BGR))
    wr.release()
    print(f"{'provider':10s} {'start 1 s':>9s} {'start 2 s':>9s} {'model fps':>9s} {'app fps':>8s} {'app/model':>9s}")
    for pref in ("tensorrt", "cuda"):
        starts = []
        eng = None
        for _ in range(2):
            t = time.perf_counter()
            eng = Engine(model, providers=pref)
            starts.append(time.perf_counter() - t)
        if eng.provider == "CPU":
            print(f"{pref:10s} not used: {eng.provider_note}")
            continue
        task = make_task(eng, display_max_side=1280)
        feeds, _ = task.prepare(frame)
        for _ in range(10):
            eng.session.run(None, feeds)
        t = time.perf_counter()
        for _ in range(args.frames):
            eng.session.run(None, feeds)
        model_fps = args.frames / (time.perf_counter() - t)
        lm = LoadedModel(eng, task)
        analyze([clip], [lm], None, max_frames=5)
        t = time.perf_counter()
        summ = analyze([clip], [lm], None, max_frames=args.frames)
        app_fps = summ.frames / (time.perf_counter() - t)
        print(f"{eng.provider:10s} {starts[0]:9.2f} {starts[1]:9.2f} {model_fps:9.1f} {app_fps:8.1f} "
              f"{app_fps / model_fps:9.2f}   load {common.load()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
