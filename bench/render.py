"""Benchmark: `loupe render` against `loupe analyze` on bikes.mp4, through the app's own code.

For the demo segmentation model, the demo detection model and both together: analyze's frames/s
(rows, no drawing), render's frames/s (the same inference, plus the window's drawing offscreen and
H.264 encoding), where render's time goes (inference: the models' own latency, which overlaps the
rest on the read-ahead threads; drawing: panels + rasterising + caption on this thread; encoding:
RGB -> yuv420p and libx264 at CRF 18), and the video's size. Then a 4K clip (bigbuckbunny.mp4's
first frames scaled to 3840x2160) rendered with the demo detector at three libx264 presets
(``loupe render --preset``): where encoding is most of the time, what a faster preset buys.

    python bench/render.py [--frames N] [--uhd-frames N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from common import header

from loupe.base.media import clip_path
from loupe.resources import resource_path
from loupe.run.analyze import analyze
from loupe.run.pipeline import Runner, load_model
from loupe.run.render import VideoWriter, render_frames
from loupe.sources.open import open_source


def analyze_fps(path: str, models: list, frames: int) -> float:
    analyze([path], models, None, max_frames=5)  # warm-up
    t = time.perf_counter()
    summary = analyze([path], models, None, max_frames=frames)
    return summary.frames / (time.perf_counter() - t)


def render_once(path: str, models: list, frames: int, out: Path, preset: str = "fast"):
    from loupe.ui.render_view import OverlayRenderer

    renderer = OverlayRenderer(models, source_spec=path, total=frames)
    src = open_source(path)
    try:
        fps = src.fps or 25.0
        summary, _ = render_frames(itertools.islice(src, frames), Runner(models), renderer.draw,
                                   lambda w, h: VideoWriter(out, w, h, fps, preset=preset), frames)
    finally:
        src.close()
        renderer.close()
    return summary, out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=250, help="frames of bikes.mp4 (250: all)")
    ap.add_argument("--uhd-frames", type=int, default=24, help="frames of the 4K clip (0: none)")
    args = ap.parse_args(argv)
    header("loupe render vs loupe analyze (bikes.mp4, 640x272, 25 fps)")
    path = str(clip_path("bikes.mp4"))
    sets = {
        "segmentation": ["demo_segmentation.onnx"],
        "detection": ["demo_detection.onnx"],
        "both": ["demo_segmentation.onnx", "demo_detection.onnx"],
    }
    print(f"{'models':14s} {'analyze fps':>11s} {'render fps':>10s} {'ratio':>6s} {'infer ms':>8s} "
          f"{'draw ms':>8s} {'encode ms':>9s} {'size MB':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, files in sets.items():
            models = [load_model(str(resource_path(f)), display_max_side=None) for f in files]
            a = analyze_fps(path, models, args.frames)
            render_once(path, models, 5, Path(tmp) / "warm.mp4")  # warm-up (Qt, fonts, encoder)
            s, size = render_once(path, models, args.frames, Path(tmp) / f"{name}.mp4")
            n = max(s.frames, 1)
            print(f"{name:14s} {a:11.1f} {s.fps:10.1f} {s.fps / a:6.2f} {1e3 * s.infer_s / n:8.1f} "
                  f"{1e3 * s.draw_s / n:8.1f} {1e3 * s.encode_s / n:9.1f} {size / 1e6:8.2f}", flush=True)
    print("infer ms: the models' latency per frame (overlaps drawing and encoding on the read-ahead threads); "
          "draw and encode ms: on the rendering thread, per frame")
    if args.uhd_frames > 0:
        uhd_presets(args.uhd_frames)
    return 0


def make_uhd_clip(out: Path, frames: int) -> None:
    """bigbuckbunny.mp4's first ``frames`` frames scaled to 3840x2160, H.264 (a near-lossless input)."""
    import av
    import cv2

    with av.open(str(clip_path("bigbuckbunny.mp4"))) as src, \
            VideoWriter(out, 3840, 2160, 25, crf=10, preset="ultrafast") as dst:
        for f in itertools.islice(src.decode(video=0), frames):
            dst.write(cv2.resize(f.to_ndarray(format="rgb24"), (3840, 2160), interpolation=cv2.INTER_CUBIC))


def uhd_presets(frames: int) -> None:
    header(f"loupe render of a 3840x2160 clip, demo detection, by --preset ({frames} frames)")
    print(f"{'preset':10s} {'render fps':>10s} {'draw ms':>8s} {'encode ms':>9s} {'size MB':>8s}")
    models = [load_model(str(resource_path("demo_detection.onnx")), display_max_side=None)]
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "uhd.mp4"
        make_uhd_clip(clip, frames)
        render_once(str(clip), models, 2, Path(tmp) / "warm.mp4")
        for preset in ("ultrafast", "veryfast", "fast"):
            s, size = render_once(str(clip), models, frames, Path(tmp) / f"{preset}.mp4", preset)
            n = max(s.frames, 1)
            print(f"{preset:10s} {s.fps:10.2f} {1e3 * s.draw_s / n:8.1f} {1e3 * s.encode_s / n:9.1f} "
                  f"{size / 1e6:8.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
