"""``loupe render``: one input's frames with the models' overlays drawn as the window draws them,
written to an H.264 video to send to someone (``loupe.run.render``; the drawing is the window's,
``loupe.ui.render_view``, which ``loupe.cli`` hands in: the commands do not import the UI).

Exit status as ``loupe analyze``: 0 written; 2 bad options, a model that cannot load or does not
fit the frames, an input that cannot be read; 130 interrupted (Ctrl-C), the frames written so
far kept in a video that plays."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loupe.base.errors import user_message
from loupe.commands import Command
from loupe.commands.analyze import (
    add_limit_options,
    add_model_options,
    add_progress_options,
    apply_limit_options,
    check_model_options,
    load_models,
)
from loupe.commands.output import err, make_progress

logger = logging.getLogger("loupe")

SUMMARY = "Write a video of one input with the models' overlays drawn on it."
DESCRIPTION = (SUMMARY + " Every frame, in order, drawn as the window draws it (colours, opacity, "
               "models stacked), with a caption strip naming the models and each frame's key figures; "
               "H.264 at the input's size (odd sizes padded to even) and frame rate (images, folders "
               "and DICOM: --fps, default 5).")


def _add_arguments(ap: argparse.ArgumentParser) -> None:
    from loupe.run.render import DEFAULT_CRF, DEFAULT_PRESET, DEFAULT_STILL_FPS, PRESETS

    ap.add_argument("input", metavar="INPUT", help="video, image, folder or DICOM file/series")
    ap.add_argument("--out", required=True, metavar="OUT.mp4", help="the video to write (.mp4, .mkv or .mov)")
    ap.add_argument("--start", type=int, default=1, metavar="N",
                    help="the first frame to render, numbered from 1 as the window shows them (default 1)")
    ap.add_argument("--max-frames", type=int, metavar="N", help="at most N frames (from --start)")
    ap.add_argument("--fps", type=float, metavar="F",
                    help=f"frame rate of the video (default: a video's own; images, folders and DICOM "
                         f"{DEFAULT_STILL_FPS:g})")
    ap.add_argument("--crf", type=float, default=DEFAULT_CRF, metavar="Q",
                    help=f"H.264 quality, 0 (lossless) to 51 (default {DEFAULT_CRF}: close to visually lossless)")
    ap.add_argument("--preset", default=DEFAULT_PRESET, choices=PRESETS, metavar="P",
                    help=f"H.264 speed: {', '.join(PRESETS)} (default {DEFAULT_PRESET}); a faster one encodes "
                         f"a 4K frame in a fraction of the time for a larger file at the same --crf")
    ap.add_argument("--no-caption", action="store_true", help="no caption strip (model names and figures)")
    ap.add_argument("--scale", type=int, default=1, metavar="N",
                    help="draw each frame N times its size, each pixel an N x N block (1 to 8; default 1: the "
                         "source's size), for small frames such as 64x64 MR slices, whose caption is unreadable "
                         "at their own size")
    ap.add_argument("--compare", action="store_true",
                    help="with exactly two --model of the same task: draw them as Model ▸ Compare two models does, "
                         "the first left of a line and the second right of it, where they disagree over both, and "
                         "their agreement in the caption")
    ap.add_argument("--split", type=float, default=0.5, metavar="F",
                    help="with --compare: the line's place, a fraction of the frame's width (default 0.5)")
    ap.add_argument("--side-by-side", action="store_true",
                    help="with --compare: the whole frame twice, the first model's overlay on the left copy and "
                         "the second's on the right (a video twice as wide), instead of the split")
    ap.add_argument("--no-disagreement", action="store_true",
                    help="with --compare: do not draw where the two models disagree")
    add_model_options(ap, "detection-like models: track IDs and trails")
    add_progress_options(ap, "no progress (errors and the last line only)")
    add_limit_options(ap)


def _check(args: argparse.Namespace) -> str | None:
    """The error line for options used wrongly, or None."""
    from loupe.run.render import MAX_SCALE, VIDEO_SUFFIXES

    if Path(args.out).suffix.lower() not in VIDEO_SUFFIXES:
        return f"--out must end in {', '.join(VIDEO_SUFFIXES)}, got {args.out}"
    if args.max_frames is not None and args.max_frames < 1:
        return "--max-frames must be at least 1"
    if args.start < 1:
        return f"--start is a frame number from 1, got {args.start}"
    if args.fps is not None and not args.fps > 0:
        return f"--fps must be above 0, got {args.fps:g}"
    if not 0 <= args.crf <= 51:
        return f"--crf must be between 0 and 51, got {args.crf:g}"
    problem = check_model_options(args)
    if problem:
        return problem
    if not 1 <= args.scale <= MAX_SCALE:
        return f"--scale must be 1 to {MAX_SCALE}, got {args.scale}"
    if not 0.0 <= args.split <= 1.0:
        return f"--split is a fraction of the frame's width, 0 to 1, got {args.split:g}"
    if (args.split != 0.5 or args.no_disagreement or args.side_by_side) and not args.compare:
        return "--split, --side-by-side and --no-disagreement go with --compare"
    if args.side_by_side and args.split != 0.5:
        return "--split places the split line; --side-by-side has none"
    if args.compare and len(args.model or []) != 2:
        return f"--compare needs exactly two --model, got {len(args.model or [])}"
    if not Path(args.out).expanduser().parent.is_dir():
        return f"--out {args.out}: there is no folder {Path(args.out).expanduser().parent}"
    if Path(args.out).resolve() == Path(args.input).resolve():
        return f"--out {args.out} is the input: choose another file"
    return apply_limit_options(args)


def run(args: argparse.Namespace, make_renderer: Callable[..., Any]) -> int:
    """``loupe render`` with the parsed options; ``make_renderer(models, source_spec=, caption=,
    total=, compare=, scale=)`` gives the object whose ``draw(frame_result)`` draws a frame (``OverlayRenderer``)."""
    problem = _check(args)
    if problem:
        err(problem)
        return 2
    loaded = load_models(args)  # with --task, the thresholds, --track and --compare's comparer
    if loaded is None:
        return 2
    models, comparer = loaded
    compare = None
    if comparer is not None:
        from loupe.run.render import CompareDraw

        compare = CompareDraw(0, 1, comparer, args.split, not args.no_disagreement, args.side_by_side)

    from loupe.run.pipeline import Runner
    from loupe.run.render import RenderError, VideoWriter, output_fps, render_frames, select_frames
    from loupe.sources.base import SourceError
    from loupe.sources.open import open_source

    try:
        source = open_source(args.input)
    except SourceError as e:
        err(str(e))
        return 2
    out = Path(args.out)
    writers: list[VideoWriter] = []
    progress = make_progress(args.quiet, args.progress)
    renderer = None
    try:
        fps = output_fps(source, args.fps)
        frames, total = select_frames(source, args.start, args.max_frames)
        # the caption numbers frames as the window does: of the whole input
        renderer = make_renderer(models, source_spec=args.input, caption=not args.no_caption,
                                 total=source.frame_count, compare=compare, scale=args.scale)

        def open_writer(width: int, height: int) -> VideoWriter:
            writers.append(VideoWriter(out, width, height, fps, crf=args.crf, preset=args.preset))
            return writers[-1]

        summary, _ = render_frames(frames, Runner(models), renderer.draw, open_writer, total, progress,
                                   status=Path(args.input).name)
    except KeyboardInterrupt:
        _end(progress)
        n = writers[0].frames if writers else 0
        err(f"interrupted; {n} frames written to {out}" if n else "interrupted; no frame written")
        return 130
    except RenderError as e:
        _end(progress)
        err(str(e))
        return 2
    except Exception as e:  # the input failed mid-way (a bad frame, a model that does not fit it)
        _end(progress)
        logger.info("render of %s failed", args.input, exc_info=True)
        reason = user_message(e)
        n = writers[0].frames if writers else 0
        err(f"{args.input}: {reason}" + (f"; {n} frames written to {out}" if n else ""))
        if writers and not n:
            out.unlink(missing_ok=True)
        return 2
    finally:
        source.close()
        if renderer is not None:
            renderer.close()
    if progress:
        progress.finish()
    if summary.cancelled:
        err(f"interrupted; {summary.frames} frames written to {out}")
        return 130
    if summary.frames == 0:
        err(f"{args.input}: no frames to render")
        return 2
    providers = ", ".join(sorted({m.engine.provider for m in models}))
    size_mb = out.stat().st_size / 1e6 if out.exists() else 0.0
    w = writers[0]
    from loupe.run.render import even

    sys.stderr.write(
        f"loupe: {summary.frames} frames at {summary.fps:.1f} frames/s on {providers} "
        f"(inference {summary.infer_s:.1f} s, drawing {summary.draw_s:.1f} s, encoding {summary.encode_s:.1f} s) "
        f"-> {out} ({even(w.width)}x{even(w.height)}, {w.fps:g} fps, {size_mb:.1f} MB)\n")
    return 0


def _end(progress: Any) -> None:
    if progress:
        progress.input_failed()
        progress.finish()


def command(make_renderer: Callable[..., Any]) -> Command:
    """The ``render`` command, drawing with ``make_renderer`` (see ``run``)."""
    return Command("render", SUMMARY, DESCRIPTION, _add_arguments, lambda args: run(args, make_renderer))
