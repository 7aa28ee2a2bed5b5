"""``loupe compare REFERENCE DISTORTED``: PSNR and SSIM per frame and pooled, as FFmpeg's psnr and
ssim filters compute them (``loupe.base.quality``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loupe.commands import Command
from loupe.commands.output import err, make_progress

DESCRIPTION = (
    "PSNR and SSIM of DISTORTED against REFERENCE on YUV 4:2:0 planes, as FFmpeg's psnr and ssim "
    "filters compute them: per frame, pooled (PSNR of the mean MSE, FFmpeg's 'average') and the mean "
    "of per-frame PSNR; SSIM 'All'."
)


def _add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("reference", metavar="REFERENCE", help="the original video")
    ap.add_argument("distorted", metavar="DISTORTED", help="the video to score against it")
    ap.add_argument("--out", metavar="FILE.json", help="write per-frame and pooled figures as JSON (inf PSNR -> null)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar and no per-frame lines")


def _run(args: argparse.Namespace) -> int:
    import json

    from loupe.base.quality import AlignmentError, VideoReadError, compare_videos

    progress = make_progress(args.quiet)
    if progress:
        progress.set_status("comparing")
    try:
        res = compare_videos(args.reference, args.distorted, progress=progress)
    except (AlignmentError, VideoReadError) as e:
        if progress:
            progress.input_failed()
            progress.finish()
        err(f"cannot compare {Path(args.distorted).name} with {Path(args.reference).name}: {e}")
        return 2
    if progress:
        progress.finish()

    def db(x: float) -> str:
        return "inf" if x == float("inf") else f"{x:.4f}"

    out = sys.stdout
    if not args.quiet:
        out.write("frame  pts_s     psnr_y   psnr_u   psnr_v   psnr_all  ssim_y    ssim_u    ssim_v    ssim_all\n")
        for f in res.frames:
            out.write(f"{f['index']:5d}  {f['pts']:8.3f}  {db(f['psnr_y']):>7}  {db(f['psnr_u']):>7}  {db(f['psnr_v']):>7}  "
                      f"{db(f['psnr_all']):>8}  {f['ssim_y']:.6f}  {f['ssim_u']:.6f}  {f['ssim_v']:.6f}  {f['ssim_all']:.6f}\n")
    p = res.pooled
    out.write(f"{len(res.frames)} frames {res.width}x{res.height}\n")
    out.write(f"PSNR pooled (mean MSE, FFmpeg 'average'): {db(p['psnr_pooled'])} dB   "
              f"y {db(p['psnr_y_pooled'])}  u {db(p['psnr_u_pooled'])}  v {db(p['psnr_v_pooled'])}\n")
    out.write(f"PSNR mean of frames: {db(p['psnr_mean'])} dB\n")
    out.write(f"SSIM All: {p['ssim_mean']:.6f}   y {p['ssim_y_mean']:.6f}  u {p['ssim_u_mean']:.6f}  v {p['ssim_v_mean']:.6f}\n")
    if args.out:
        try:
            Path(args.out).write_text(json.dumps(res.to_json(), indent=1, allow_nan=False) + "\n", encoding="utf-8")
        except OSError as e:
            err(f"cannot write {args.out}: {e.strerror or e}")
            return 2
        sys.stderr.write(f"loupe: {len(res.frames)} frames compared in {res.seconds:.1f} s -> {args.out}\n")
    return 0


COMMAND = Command("compare", "PSNR and SSIM of a video against its reference, as FFmpeg computes them.",
                  DESCRIPTION, _add_arguments, _run)
