"""Benchmark 1: pipeline efficiency: Loupe vs the ONNX Runtime ceiling and vs a naive loop.

The same model and clip three ways, in one run, at 1, 2 and all ONNX Runtime threads:

  (a) ceiling: bare ``session.run`` on frames decoded and preprocessed beforehand;
  (b) naive: the loop a user writes from a paper's demo code, one step after another:
      decode (cv2.VideoCapture) -> preprocess -> run -> bilinear upsampling of the logits to full
      resolution (cv2.resize per channel) -> argmax -> each class's area;
  (c) Loupe: ``loupe.run.analyze.analyze`` through the app's own code, class map produced as the GUI
      produces it (display resolution: the frame size capped at 1280 px, i.e. full size for
      both clips here) with each class's area.

(b) and (c) do the same work and run the same ONNX Runtime session settings: (b) runs on the
session of an ``Engine`` built like (c)'s (intra-op threads as given, one inter-op thread,
sequential, idle threads sleeping instead of spinning), and neither blends a picture (analyze
writes rows; blending is the view's, measured by overlay_cost.py). So c/b is what the app's
pipelining (decode ahead on its own thread, the next inference overlapping post-processing, the
argmax as a running max over class planes) gains over the plain loop, not a session setting.

Models: the demo segmentation model on bikes.mp4 and DDRNet-23-slim (Cityscapes layout, 19
classes, deterministic reference-fill weights: speed does not depend on the weights) on
bigbuckbunny.mp4 at 1280x720. Goals: c/a >= 0.90, c/b >= 1.3.

    python bench/pipeline_efficiency.py [--frames N] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common

from loupe.base.media import clip_path
from loupe.inference.engine import Engine
from loupe.resources import demo_model
from loupe.run.analyze import analyze
from loupe.run.pipeline import load_model


def ceiling(engine: Engine, feeds_list: list[dict], n: int, warm: int = 2) -> float:
    """FPS of bare session.run on prepared inputs (cycled through for ``n`` runs)."""
    sess = engine.session
    for f in feeds_list[:warm]:
        sess.run(None, f)
    t = time.perf_counter()
    for i in range(n):
        sess.run(None, feeds_list[i % len(feeds_list)])
    return n / (time.perf_counter() - t)


def naive(model_path: str, clip: str, n: int, threads: int, warm: int = 2) -> float:
    """The paper-demo loop, sequential, with the card's normalisation, on a session with the
    app's options (an Engine's: same threads, no spinning, one inter-op thread); its outputs
    are (c)'s: the class map at full size and each class's area."""
    eng = Engine(model_path, providers="cpu", threads=threads)
    card = eng.card
    sess = eng.session
    name = sess.get_inputs()[0].name
    mean = np.array(card.input.mean, np.float32)
    std = np.array(card.input.std, np.float32)
    mult = max(1, card.input.size_multiple)
    n_classes = len(card.labels)
    cap = cv2.VideoCapture(clip)
    done = 0
    t = None
    while done < n + warm:
        if done == warm:
            t = time.perf_counter()
        ok, bgr = cap.read()
        if not ok:
            cap.release()
            cap = cv2.VideoCapture(clip)
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        ph, pw = -(-h // mult) * mult, -(-w // mult) * mult
        img = cv2.copyMakeBorder(rgb, 0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE)
        x = ((img.astype(np.float32) * card.input.scale - mean) / std).transpose(2, 0, 1)[None]
        logits = sess.run(None, {name: np.ascontiguousarray(x)})[0][0]
        lh, lw = logits.shape[1:]
        logits = logits[:, : -(-lh * h // ph), : -(-lw * w // pw)]
        up = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in logits])
        cls = up.argmax(0).astype(np.uint8)
        area = np.bincount(cls.ravel(), minlength=n_classes) / cls.size
        assert cls.shape == (h, w) and len(area) >= n_classes
        done += 1
    cap.release()
    return n / (time.perf_counter() - t)


def loupe_fps(lm, clip: str, n: int) -> tuple[float, float]:
    """FPS of ``analyze`` (GUI class-map resolution) and the mean per-frame model latency."""
    t = time.perf_counter()
    summ = analyze([clip], [lm], None, max_frames=n)
    dt = time.perf_counter() - t
    if summ.inputs[0].error:
        raise SystemExit(f"analyze failed: {summ.inputs[0].error}")
    lat = summ.inputs[0].latency_ms[lm.name]
    return summ.frames / dt, float(np.mean(lat))


def run_case(label: str, model_path: str, clip: str, n: int, thread_set: list[int], rounds: int) -> list[dict]:
    """(a), (b), (c) in ``rounds`` interleaved rounds of n / rounds frames each, so a burst of load
    from other processes hits all three alike; FPS are medians, ratios the medians of the
    per-round ratios."""
    frames = common.decode_all(clip, min(n, 16))  # 16 distinct inputs, cycled (memory)
    k = max(2, n // rounds)
    rows = []
    for threads in thread_set:
        lm = load_model(model_path, providers="cpu", threads=threads, display_max_side=1280)
        feeds = [lm.task.prepare(f)[0] for f in frames]
        ceiling(lm.engine, feeds, 2)  # warm-up
        analyze([clip], [lm], None, max_frames=3)
        a, b, c, lat = [], [], [], []
        for _ in range(rounds):
            a.append(ceiling(lm.engine, feeds, k, warm=0))
            b.append(naive(model_path, clip, k, threads, warm=1))
            fps, ms = loupe_fps(lm, clip, k)
            c.append(fps)
            lat.append(ms)
        del feeds, lm
        A, B, C = (float(np.median(v)) for v in (a, b, c))
        ca = float(np.median(np.array(c) / np.array(a)))
        cb = float(np.median(np.array(c) / np.array(b)))
        row = dict(case=label, threads=threads, a=A, b=B, c=C, ca=ca, cb=cb, lat=float(np.median(lat)),
                   load=common.load())
        rows.append(row)
        print(f"{label:34s} {threads:7d} {A:8.2f} {B:8.2f} {C:8.2f} {ca:6.2f} {cb:6.2f}   {row['load']}",
              flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40,
                    help="DDRNet frames per way and thread count (default 40); the demo model gets 5x")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--quick", action="store_true", help="8 frames, 2 rounds, 1 and all threads only")
    args = ap.parse_args(argv)
    n = 8 if args.quick else args.frames
    rounds = 2 if args.quick else args.rounds
    common.header("Pipeline efficiency (FPS; provider CPU)")
    cores = os.cpu_count() or 1
    thread_set = sorted({1, cores} if args.quick else {1, 2, cores})
    print("(a) ceiling: session.run on pre-decoded, pre-processed frames; (b) naive sequential loop; "
          "(c) loupe analyze (GUI class map); FPS: medians of interleaved rounds, ratios: medians of "
          "per-round ratios")
    print(f"{'model / clip':34s} {'threads':>7s} {'a fps':>8s} {'b fps':>8s} {'c fps':>8s} {'c/a':>6s} {'c/b':>6s}   load")
    cases = [
        ("demo segmentation / bikes 640x272", str(demo_model()), str(clip_path("bikes.mp4")), 5 * n),
        ("DDRNet-23-slim / bunny 1280x720", str(common.ddrnet_onnx()), str(clip_path("bigbuckbunny.mp4")), n),
    ]
    rows = []
    for label, model, clip, frames in cases:
        rows += run_case(label, model, clip, frames, thread_set, rounds)
    worst_ca = min(r["ca"] for r in rows)
    worst_cb = min(r["cb"] for r in rows)
    print(f"worst c/a {worst_ca:.2f} (goal >= 0.90: {'met' if worst_ca >= 0.9 else 'NOT met'}); "
          f"worst c/b {worst_cb:.2f} (goal >= 1.3: {'met' if worst_cb >= 1.3 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
