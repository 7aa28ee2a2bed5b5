"""The ``loupe`` command: the window, ``loupe analyze``, ``loupe compare``, ``loupe info``, ``loupe sysinfo`` and ``loupe tasks``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from loupe import __version__
from loupe.base.errors import LoupeError
from loupe.base.progress import Progress

logger = logging.getLogger("loupe")

USAGE = """loupe [PATH ...] [--model M.onnx]... [--camera N] [--screenshot OUT.png --frames N]
       loupe analyze INPUT... [--model M.onnx]... [--out FILE.csv|FILE.jsonl] [--max-frames N]
                     [--resume] [--ray [ADDRESS]] [--max-megapixels MP] [--max-dicom-frames N] [--max-memory-mb MB]
                     [--quiet | --progress]
       loupe info M.onnx
       loupe compare REFERENCE DISTORTED [--out FILE.json]
       loupe fit {anomaly,codebook,hnerv} CLIP ...
       loupe sysinfo [--json]
       loupe tasks
       loupe --version
       -v (any command but fit): log what happens, with the traceback of an unexpected error"""

#: The subcommands, for the "no such file or command" line.
COMMANDS = ("analyze", "compare", "fit", "info", "sysinfo", "tasks")


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class TextProgress(Progress):
    """A progress bar on stderr, redrawn in place with ``\\r`` (a ``loupe.base.progress.Progress``);
    for a terminal only (``make_progress``)."""

    def __init__(self, stream=None, width: int = 30) -> None:
        super().__init__()
        self.stream, self.width = stream or sys.stderr, width
        self.status = ""
        self.fraction = 0.0
        self._last = 0.0
        self._drawn = False
        self._t0 = time.monotonic()

    def set_status(self, text: str) -> None:
        self.status = text
        self._draw(force=True)

    def set_progress(self, fraction: float) -> None:
        self.fraction = max(0.0, min(1.0, fraction))
        self._draw(force=self.fraction >= 1.0)

    def show(self, fraction: float, status: str, info) -> None:  # Progress.update
        if status:
            self.set_status(status)
        self.set_progress(fraction)

    def step_done(self, text: str, fraction: float) -> None:
        """A step that is reported when it ends (a part on Ray)."""
        self.set_status(text)
        self.set_progress(fraction)

    def input_failed(self) -> None:
        """An error line follows: end the bar's line first."""
        if self._drawn:
            self.stream.write("\n")
            self._drawn = False

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        done = int(self.width * self.fraction)
        el = now - self._t0
        eta = el / self.fraction - el if self.fraction > 0.01 else 0.0
        bar = "#" * done + "-" * (self.width - done)
        self.stream.write(f"\r[{bar}] {100 * self.fraction:5.1f}%  eta {eta:5.0f}s  {self.status[:40]:40s}")
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


class LineProgress(Progress):
    """Progress for a log (stderr not a terminal: CI, a pipe, a file): no bar, one short line
    per finished step (an input of ``analyze``, a part on Ray), none for a step that failed
    (its error line says so)."""

    def __init__(self, stream=None) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self._status = ""
        self._failed = False
        self._t0 = time.monotonic()

    def set_status(self, text: str) -> None:
        if text != self._status:
            self._done()
            self._status, self._failed, self._t0 = text, False, time.monotonic()

    def set_progress(self, fraction: float) -> None:
        pass

    def show(self, fraction: float, status: str, info) -> None:  # Progress.update
        if status:
            self.set_status(status)

    def step_done(self, text: str, fraction: float) -> None:
        """A step that is reported when it ends (a part on Ray): its line now."""
        self.stream.write(f"loupe: {text}: done ({100 * fraction:.0f}%)\n")
        self.stream.flush()

    def input_failed(self) -> None:
        self._failed = True

    def _done(self) -> None:
        if self._status and not self._failed:
            self.stream.write(f"loupe: {self._status}: done in {time.monotonic() - self._t0:.1f} s\n")
            self.stream.flush()
        self._status = ""

    def finish(self) -> None:
        self._done()


def make_progress(quiet: bool = False, force_bar: bool = False, stream=None) -> TextProgress | LineProgress | None:
    """None with ``quiet``; the redrawn bar on a terminal (or with ``force_bar``); else lines."""
    stream = stream or sys.stderr
    if quiet:
        return None
    if force_bar or _is_terminal(stream):
        return TextProgress(stream)
    return LineProgress(stream)


def one_line(msg: str) -> str:
    """A message as one line (decoder errors sometimes span several)."""
    return "; ".join(part.strip() for part in str(msg).splitlines() if part.strip()) or str(msg).strip()


def _err(msg: str) -> None:
    sys.stderr.write(f"loupe: {one_line(msg)}\n")


def add_limit_options(ap: argparse.ArgumentParser) -> None:
    """``--max-megapixels``, ``--max-dicom-frames``, ``--max-memory-mb`` (see ``loupe.base.limits``)."""
    from loupe.base.limits import Limits

    d = Limits()
    ap.add_argument("--max-megapixels", type=float, metavar="MP",
                    help=f"refuse frames larger than this (default {d.max_megapixels:g}; env LOUPE_MAX_MEGAPIXELS)")
    ap.add_argument("--max-dicom-frames", type=int, metavar="N",
                    help=f"refuse DICOM files with more frames (default {d.max_dicom_frames}; env LOUPE_MAX_DICOM_FRAMES)")
    ap.add_argument("--max-memory-mb", type=float, metavar="MB",
                    help=f"decoded memory budget per frame (default {d.max_memory_mb:g}; env LOUPE_MAX_MEMORY_MB)")


def apply_limit_options(args: argparse.Namespace) -> str | None:
    """Set the process's limits from the options; the error message, or None."""
    from loupe.base.limits import LimitError, configure

    try:
        configure(max_megapixels=args.max_megapixels, max_dicom_frames=args.max_dicom_frames,
                  max_memory_mb=args.max_memory_mb)
    except LimitError as e:
        return str(e)
    return None


def _default_models(models: list[str] | None) -> list[str]:
    if models:
        return models
    from loupe.resources import demo_model

    return [str(demo_model())]


def cmd_analyze(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="loupe analyze", description="Run models over every frame of the inputs, headless.")
    ap.add_argument("inputs", nargs="+", metavar="INPUT", help="video, image, folder or DICOM file")
    ap.add_argument("--model", action="append", metavar="M.onnx", help="model (repeatable); default: the demo model")
    ap.add_argument("--out", metavar="FILE", help="write rows to FILE.csv or FILE.jsonl (default: print a summary)")
    ap.add_argument("--max-frames", type=int, metavar="N", help="at most N frames per input")
    ap.add_argument("--providers", default="auto", choices=["auto", "tensorrt", "cuda", "cpu"])
    ap.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads per model (default: one per physical core, or $LOUPE_ORT_THREADS)")
    ap.add_argument("--calibrate-per-video", action="store_true",
                    help="anomaly: normalise PSNR min-max per input (as the papers do; uses the whole input)")
    shown = ap.add_mutually_exclusive_group()
    shown.add_argument("--quiet", action="store_true", help="no progress at all (errors and the summary only)")
    shown.add_argument("--progress", action="store_true",
                       help="draw the progress bar even when stderr is not a terminal (by default a log gets "
                            "one line per finished input instead)")
    ap.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                    help="spread the inputs (long videos by frame ranges) over a Ray cluster; without ADDRESS a "
                         "local Ray with --ray-cpus CPUs (needs loupe[cluster]); every other option works with it "
                         "and the rows equal a local run's")
    ap.add_argument("--ray-workers", type=int, metavar="N", help="Ray actors (default: one per CPU, or per GPU with --ray-gpus)")
    ap.add_argument("--ray-cpus", type=int, default=2, metavar="N", help="CPUs of the local Ray (default 2)")
    ap.add_argument("--ray-gpus", type=float, default=0.0, metavar="G", help="GPUs per Ray actor (default 0)")
    ap.add_argument("--ray-part-frames", type=int, metavar="N", help="frames per part of a split video (default: ~2 parts per actor)")
    ap.add_argument("--resume", action="store_true",
                    help="continue an interrupted run: keep the rows already in --out, add the missing ones")
    add_limit_options(ap)
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    if args.max_frames is not None and args.max_frames < 1:
        _err("--max-frames must be at least 1")
        return 2
    problem = apply_limit_options(args)
    if problem:
        _err(problem)
        return 2
    if args.resume and not args.out:
        _err("--resume needs --out: the file whose rows the run continues")
        return 2
    if args.ray is not None:
        from loupe.run.cluster import ray_available

        if not ray_available():
            _err("--ray needs Ray: pip install 'loupe[cluster]'")
            return 2
    fmt = None
    if args.out:
        ext = Path(args.out).suffix.lower()
        fmt = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(ext)
        if fmt is None:
            _err(f"--out must end in .csv or .jsonl, got {args.out}")
            return 2

    from loupe.inference.card import CardError
    from loupe.inference.engine import ModelError
    from loupe.run.analyze import (
        RowWriter,
        analyze,
        columns_for,
        expand_inputs,
        is_dicom_input,
        summary_table,
    )
    from loupe.run.pipeline import load_model
    from loupe.tasks import UnsupportedTask

    try:
        model_paths = _default_models(args.model)
    except FileNotFoundError as e:
        _err(str(e))
        return 2
    models, model_errors = [], 0
    for m in model_paths:  # every bad model gets its line, then exit 2
        try:
            models.append(load_model(m, providers=args.providers, threads=args.threads, display_max_side=None))
        except (ModelError, UnsupportedTask, CardError, FileNotFoundError) as e:
            _err(str(e))
            model_errors += 1
        except Exception as e:  # a library failed unforeseen: still one line naming the model
            logger.info("loading %s failed", m, exc_info=True)  # -v shows the traceback
            _err(f"{Path(m).name} cannot be loaded: unexpected {type(e).__name__} ({one_line(str(e))}); "
                 "-v shows the traceback")
            model_errors += 1
    if model_errors:
        return 2
    for m in models:
        if m.engine.needs_task:
            sys.stderr.write(
                f"loupe: {m.engine.path.name} has no model card; treating it as {m.engine.card.task} "
                "(open it once in the app to confirm the task and save a card)\n"
            )
    inputs = expand_inputs(args.inputs)
    progress = make_progress(args.quiet, args.progress)
    bad: list[tuple[str, str]] = []

    def on_error(spec: str, reason: str) -> None:
        bad.append((spec, reason))
        if progress:
            progress.input_failed()
        if "unexpected error" in reason and not logger.isEnabledFor(logging.INFO):
            reason += "; -v shows the traceback"
        _err(f"{spec}: {reason}")

    stream = None
    start_at = None
    done = None  # --resume: the rows already written (Ray plans its parts from them)
    try:
        writer = None
        if args.out:
            cols = columns_for(models, with_dicom=any(is_dicom_input(i) for i in inputs))
            if args.resume:
                from loupe.run.resume import ResumeError, SkipDone, make_start_at, prepare_resume

                try:
                    state = prepare_resume(args.out, fmt or "csv", cols)
                except ResumeError as e:
                    _err(str(e))
                    return 2
                if state.rows or state.dropped_partial:
                    sys.stderr.write(
                        f"loupe: resuming {args.out}: {state.rows} rows already there"
                        + (" (a partial last line was dropped)" if state.dropped_partial else "") + "\n"
                    )
                stream = open(args.out, "a", encoding="utf-8", newline="")  # noqa: SIM115
                writer = SkipDone(RowWriter(stream, fmt or "csv", cols, header=not state.has_header), state.done)
                start_at = make_start_at(models, state.done)
                done = state.done
            else:
                stream = open(args.out, "w", encoding="utf-8", newline="")  # noqa: SIM115
                writer = RowWriter(stream, fmt or "csv", cols)
        wall = time.perf_counter()
        if args.ray is not None:
            from loupe.run.cluster import analyze_on_ray

            def on_part(res, n: int, total: int) -> None:
                if progress:
                    progress.step_done(f"part {n}/{total} on {res.host}:{res.pid}", n / total)

            summary, _parts = analyze_on_ray(
                inputs, [str(m.engine.path) for m in models], writer, address=args.ray, workers=args.ray_workers,
                num_cpus=args.ray_cpus, gpus_per_worker=args.ray_gpus, providers=args.providers,
                threads=args.threads or 1, calibrate_per_video=args.calibrate_per_video,
                part_frames=args.ray_part_frames, on_error=on_error, on_part=on_part,
                max_frames=args.max_frames, done=done)
        else:
            summary = analyze(inputs, models, writer, args.max_frames, progress, on_error,
                              calibrate_per_video=args.calibrate_per_video, start_at=start_at)
        wall = time.perf_counter() - wall
    except KeyboardInterrupt:
        if progress:
            progress.input_failed()
            progress.finish()
        _err(f"interrupted; rows written so far are in {args.out}" if args.out else "interrupted")
        return 130
    finally:
        if stream:
            stream.close()
    if progress:
        progress.finish()
    secs = wall if args.ray is not None else summary.seconds  # Ray parts overlap: wall time
    fps = summary.frames / secs if secs > 0 else 0.0
    providers = ", ".join(sorted({m.engine.provider for m in models}))
    if args.out:
        sys.stderr.write(
            f"loupe: {summary.frames} frames from {len(inputs) - len(summary.failed)}/{len(inputs)} inputs "
            f"at {fps:.1f} frames/s on {providers} -> {args.out}\n"
        )
    else:
        sys.stdout.write(summary_table(summary) + "\n")
        sys.stdout.write(f"{summary.frames} frames at {fps:.1f} frames/s on {providers}\n")
    return summary.exit_code


def cmd_compare(argv: list[str]) -> int:
    """``loupe compare REF DIST``: PSNR/SSIM per frame and pooled, as FFmpeg's psnr/ssim filters."""
    ap = argparse.ArgumentParser(
        prog="loupe compare",
        description="PSNR and SSIM of DISTORTED against REFERENCE on YUV 4:2:0 planes, as FFmpeg's psnr and ssim "
                    "filters compute them: per frame, pooled (PSNR of the mean MSE, FFmpeg's 'average') and the mean "
                    "of per-frame PSNR; SSIM 'All'.",
    )
    ap.add_argument("reference", metavar="REFERENCE", help="the original video")
    ap.add_argument("distorted", metavar="DISTORTED", help="the video to score against it")
    ap.add_argument("--out", metavar="FILE.json", help="write per-frame and pooled figures as JSON (inf PSNR -> null)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar and no per-frame lines")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
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
        _err(f"cannot compare {Path(args.distorted).name} with {Path(args.reference).name}: {e}")
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
            _err(f"cannot write {args.out}: {e.strerror or e}")
            return 2
        sys.stderr.write(f"loupe: {len(res.frames)} frames compared in {res.seconds:.1f} s -> {args.out}\n")
    return 0


def cmd_info(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="loupe info", description="Print a model's card, inputs/outputs and providers.")
    ap.add_argument("model", metavar="M.onnx")
    ap.add_argument("--providers", default="auto", choices=["auto", "tensorrt", "cuda", "cpu"])
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    from loupe.inference.engine import Engine, ModelError

    try:
        eng = Engine(args.model, providers=args.providers)
    except ModelError as e:
        _err(str(e))
        return 2
    sys.stdout.write(eng.describe() + "\n")
    return 0


def cmd_sysinfo(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="loupe sysinfo",
        description="Print versions, DICOM decoders, ONNX Runtime providers and the GPU (for bug reports).",
    )
    ap.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    from loupe.sysinfo import format_system_info, system_info

    if args.json:
        import json

        sys.stdout.write(json.dumps(system_info(), indent=2) + "\n")
    else:
        sys.stdout.write(format_system_info() + "\n")
    return 0


def cmd_tasks(argv: list[str]) -> int:
    """``loupe tasks``: one line per registered task (name, origin, panel), then one per plug-in
    that failed to load (its error). Exit 0, or 1 when some plug-in failed."""
    ap = argparse.ArgumentParser(
        prog="loupe tasks",
        description="List the tasks this Loupe knows: built-in ones and those of installed plug-ins "
                    "(entry-point group loupe.tasks), and plug-ins that failed to load.",
    )
    try:
        ap.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    from loupe.base import registry

    specs = registry.all_specs()
    failed = registry.failures()
    width = max([len(s.name) for s in specs] + [len(f.name) for f in failed] + [4])
    origin_w = max([len(s.origin) for s in specs] + [8])
    for s in specs:
        panel = "panel" if s.has_panel else "no panel"
        sys.stdout.write(f"{s.name:<{width}}  {s.origin:<{origin_w}}  {panel:<8}  {s.summary}".rstrip() + "\n")
    for f in failed:
        sys.stdout.write(f"{f.name:<{width}}  {f.origin:<{origin_w}}  FAILED    {one_line(f.error)}\n")
    return 1 if failed else 0


def cmd_gui(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="loupe", usage=USAGE, description="Loupe: see what your vision model does, live.")
    ap.add_argument("paths", nargs="*", metavar="PATH", help="video, image, folder, DICOM or .onnx model")
    ap.add_argument("--model", action="append", default=[], metavar="M.onnx")
    ap.add_argument("--camera", type=int, metavar="N", help="open camera N")
    ap.add_argument("--resolution", metavar="WxH", help="camera resolution, e.g. 1280x720")
    ap.add_argument("--screenshot", metavar="OUT.png", help="play --frames frames, save a grab of the window, quit")
    ap.add_argument("--frames", type=int, default=30, metavar="N")
    ap.add_argument("--providers", default="auto", choices=["auto", "tensorrt", "cuda", "cpu"])
    ap.add_argument("--no-demo", action="store_true", help="start empty instead of on the demo")
    ap.add_argument("--version", action="version", version=f"loupe {__version__}")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    missing = [p for p in args.paths if not _openable(p)]
    if missing:  # e.g. a mistyped command: say so instead of opening a window on nothing
        word = missing[0]
        _err(f"no such file or command: {word!r} (commands: {', '.join(COMMANDS)}; "
             "`loupe --help` for the window's options)")
        return 2
    from loupe.ui.app import run_gui

    return run_gui(args)


def _openable(spec: str) -> bool:
    """What the window can be given as a PATH: an existing file or folder, a camera (``N``,
    ``camera:N``) or a DICOM series of a folder (``folder#<series uid>``)."""
    from loupe.sources.open import parse_camera
    from loupe.sources.series import parse_series_spec

    path = Path(spec).expanduser()
    return path.exists() or parse_camera(spec) is not None or parse_series_spec(path) is not None


FIT_KINDS = {"anomaly": "loupe_models.fitters.anomaly", "codebook": "loupe_models.fitters.codebook",
             "hnerv": "loupe_models.fitters.hnerv"}


def cmd_fit(argv: list[str]) -> int:
    """``loupe fit KIND ...``: fit a model on your own footage (needs torch: ``loupe[fit]``)."""
    if not argv or argv[0] not in FIT_KINDS:
        _err(f"usage: loupe fit {{{','.join(FIT_KINDS)}}} CLIP [options]   (e.g. loupe fit anomaly clip.mp4 --normal 0:10 --out model.onnx)")
        return 2
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        _err("fitting needs PyTorch: pip install 'loupe[fit]' (the app bundle views and runs models only)")
        return 2
    import importlib

    module = importlib.import_module(FIT_KINDS[argv[0]])
    return int(module.main(argv[1:]) or 0)


VERBOSE_FLAGS = ("-v", "--verbose", "-vv")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    verbose = 0
    if not argv or argv[0] != "fit":  # the fit tools have their own options
        verbose = sum(2 if a == "-vv" else 1 for a in argv if a in VERBOSE_FLAGS)
        argv = [a for a in argv if a not in VERBOSE_FLAGS]
    level = {0: os.environ.get("LOUPE_LOG", "WARNING").upper(), 1: "INFO"}.get(verbose, "DEBUG")
    logging.basicConfig(level=level, format="loupe: %(message)s")
    root = logging.getLogger()
    old_level = root.level
    if verbose:
        root.setLevel(level)  # also when logging was set up before (tests, embedding)
    try:
        return _dispatch(argv)
    except LoupeError as e:  # meant for the user: its message, as it is
        logger.info("error", exc_info=True)
        _err(str(e))
        return 2
    except Exception as e:  # a library failed in a way nobody foresaw: one line, never a traceback
        logger.info("unexpected error", exc_info=True)  # -v shows it
        _err(f"unexpected error: {type(e).__name__}: {e}" + ("" if verbose else " (run with -v for the details)"))
        return 2
    finally:
        root.setLevel(old_level)


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] == "analyze":
        return cmd_analyze(argv[1:])
    if argv and argv[0] == "info":
        return cmd_info(argv[1:])
    if argv and argv[0] == "compare":
        return cmd_compare(argv[1:])
    if argv and argv[0] == "fit":
        return cmd_fit(argv[1:])
    if argv and argv[0] == "sysinfo":
        return cmd_sysinfo(argv[1:])
    if argv and argv[0] == "tasks":
        return cmd_tasks(argv[1:])
    return cmd_gui(argv)


if __name__ == "__main__":
    sys.exit(main())
