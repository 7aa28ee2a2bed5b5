"""``loupe analyze``: run models over every frame of videos, images, folders and DICOM, headless;
rows to CSV/JSONL (``--resume`` continues an interrupted run), spread over Ray with ``--ray``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loupe.commands import Command
from loupe.commands.output import err, make_progress, one_line

logger = logging.getLogger("loupe")

DESCRIPTION = "Run models over every frame of the inputs, headless."


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


def load_models(args: argparse.Namespace) -> tuple[list, Callable[[Any, Any], Any] | None] | None:
    """``--model`` (default: the demo model) loaded at full resolution, with ``--providers``,
    ``--threads`` and ``--task``, then ``apply_overrides``; a guessed model's note goes to stderr.
    The models and, with ``--compare``, their comparer (``comparer_of``). None after the error
    lines: one for each model that cannot load (all are tried, so every bad one is named at once),
    the override that applies to none, or two models that cannot be compared."""
    from loupe.inference.card import CardError
    from loupe.inference.engine import ModelError
    from loupe.run.pipeline import load_model
    from loupe.tasks import UnsupportedTask

    try:
        paths = _default_models(args.model)
    except FileNotFoundError as e:
        err(str(e))
        return None
    models, bad = [], 0
    for m in paths:
        try:
            models.append(load_model(m, providers=args.providers, threads=args.threads, display_max_side=None,
                                     task=args.task))
        except (ModelError, UnsupportedTask, CardError, FileNotFoundError) as e:
            err(str(e))
            bad += 1
        except Exception as e:  # a library failed unforeseen: still one line naming the model
            logger.info("loading %s failed", m, exc_info=True)  # -v shows the traceback
            err(f"{Path(m).name} cannot be loaded: unexpected {type(e).__name__} ({one_line(str(e))}); "
                "-v shows the traceback")
            bad += 1
    if bad:
        return None
    problem = apply_overrides(models, args)
    if problem:
        err(problem)
        return None
    for m in models:
        if m.engine.guess is not None:
            sys.stderr.write(f"loupe: {m.engine.guess.note}\n")
    comparer = None
    if args.compare:
        comparer = comparer_of(models)
        if comparer is None:
            return None
    return models, comparer


def add_model_options(ap: argparse.ArgumentParser, track_help: str) -> None:
    """The models and what may be said of them: ``--model`` (repeatable), ``--providers``,
    ``--threads``, ``--task``, the detection thresholds and ``--track`` (``load_models`` reads them)."""
    ap.add_argument("--model", action="append", metavar="M.onnx", help="model (repeatable); default: the demo model")
    ap.add_argument("--providers", default="auto", choices=["auto", "tensorrt", "cuda", "cpu"])
    ap.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads per model (default: one per physical "
                                                "core, or $LOUPE_ORT_THREADS)")
    ap.add_argument("--task", metavar="NAME",
                    help="the task of a model without a card, when its outputs fit several (a task name, or "
                         "detection:FORMAT; the error lists the candidates); models with a card ignore it")
    ap.add_argument("--score-threshold", type=float, metavar="S",
                    help="detection: keep boxes scoring above S (overrides the card; 0..1)")
    ap.add_argument("--iou-threshold", type=float, metavar="T",
                    help="detection: NMS IoU threshold (overrides the card; 0..1)")
    ap.add_argument("--track", action="store_true", help=track_help)


def check_model_options(args: argparse.Namespace) -> str | None:
    """The error line for a detection threshold out of 0..1 (``add_model_options``), or None."""
    for opt, v in (("--score-threshold", args.score_threshold), ("--iou-threshold", args.iou_threshold)):
        if v is not None and not 0.0 <= v <= 1.0:
            return f"{opt} must be between 0 and 1, got {v:g}"
    return None


def add_progress_options(ap: argparse.ArgumentParser, quiet_help: str) -> None:
    """``--quiet`` or ``--progress`` (``loupe.commands.output.make_progress``)."""
    shown = ap.add_mutually_exclusive_group()
    shown.add_argument("--quiet", action="store_true", help=quiet_help)
    shown.add_argument("--progress", action="store_true",
                       help="draw the progress bar even when stderr is not a terminal (by default a log gets "
                            "one line per finished input instead)")


def _add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("inputs", nargs="+", metavar="INPUT", help="video, image, folder or DICOM file")
    ap.add_argument("--out", metavar="FILE", help="write rows to FILE.csv or FILE.jsonl (default: print a summary)")
    ap.add_argument("--max-frames", type=int, metavar="N", help="at most N frames per input")
    add_model_options(ap, "detection-like models: track objects across each input's frames (JSONL detections get "
                          "\"track_id\", from 1; 0: not tracked; JSONL only, not with --ray); with --resume an input "
                          "is run again from its start")
    ap.add_argument("--calibrate-per-video", action="store_true",
                    help="anomaly: normalise PSNR min-max per input (as the papers do; uses the whole input)")
    add_progress_options(ap, "no progress at all (errors and the summary only)")
    ap.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                    help="spread the inputs (long videos by frame ranges) over a Ray cluster; without ADDRESS a "
                         "local Ray with --ray-cpus CPUs (needs loupe[cluster]); the other options work with it (except "
                         "--task, the thresholds and --track, which are refused) and the rows equal a local run's")
    ap.add_argument("--ray-workers", type=int, metavar="N", help="Ray actors (default: one per CPU, or per GPU with --ray-gpus)")
    ap.add_argument("--ray-cpus", type=int, default=2, metavar="N", help="CPUs of the local Ray (default 2)")
    ap.add_argument("--ray-gpus", type=float, default=0.0, metavar="G", help="GPUs per Ray actor (default 0)")
    ap.add_argument("--ray-part-frames", type=int, metavar="N", help="frames per part of a split video (default: ~2 parts per actor)")
    ap.add_argument("--labels", metavar="PATH",
                    help="ground truth to score the results against: a folder of mask PNGs, a COCO .json or a folder of "
                         "YOLO .txt (several inputs: one COCO file, or a folder with one sub-folder/file per input stem); "
                         "rows get iou_/dice_<label> (segmentation), tp/fp/fn at IoU 0.5 (detection), correct "
                         "(classification), empty for unlabelled frames")
    ap.add_argument("--summary", metavar="FILE.json",
                    help="with --labels: write the pooled figures (miou, map50, map50_95, accuracy, ...) to FILE.json")
    ap.add_argument("--compare", action="store_true",
                    help="with exactly two --model of the same task: add an 'agreement' column (0..1: the fraction of "
                         "pixels of the same class, the F1 of boxes matched at IoU 0.5, or 1/0 for the same top-1 "
                         "label), the same on both models' rows of a frame, and print its mean and lowest")
    ap.add_argument("--resume", action="store_true",
                    help="continue an interrupted run: keep the rows already in --out, add the missing ones")
    add_limit_options(ap)


def apply_overrides(models: list, args: argparse.Namespace) -> str | None:
    """``--task``, ``--score-threshold``, ``--iou-threshold``, ``--track`` on the loaded models;
    the error line when an option reaches none of them."""
    if args.task is not None and not any(m.engine.guess is not None for m in models):
        return (f"--task applies to models without a card; every model given has one "
                f"({', '.join(f'{m.engine.path.name}: {m.engine.card.task}' for m in models)})")
    for opt, value, setter in (("--score-threshold", args.score_threshold, "set_score_threshold"),
                               ("--iou-threshold", args.iou_threshold, "set_iou_threshold")):
        if value is None:
            continue
        takers = [m for m in models if callable(getattr(m.task, setter, None))]
        if not takers:
            tasks = ", ".join(f"{m.engine.path.name}: {m.task.name}" for m in models)
            return f"{opt} applies to detection models; no model given takes it ({tasks})"
        for m in takers:
            try:
                getattr(m.task, setter)(value)
            except ValueError as e:
                return f"{opt}: {e}"
    if args.track:
        takers = [m for m in models if callable(getattr(m.task, "set_tracking", None))]
        if not takers:
            tasks = ", ".join(f"{m.engine.path.name}: {m.task.name}" for m in models)
            return f"--track applies to detection-like models (boxes); no model given has them ({tasks})"
        for m in takers:
            m.task.set_tracking(True)
    return None


def _run(args: argparse.Namespace) -> int:
    if args.max_frames is not None and args.max_frames < 1:
        err("--max-frames must be at least 1")
        return 2
    problem = apply_limit_options(args)
    if problem:
        err(problem)
        return 2
    if args.resume and not args.out:
        err("--resume needs --out: the file whose rows the run continues")
        return 2
    problem = check_model_options(args) or _check_label_options(args) or _check_compare_options(args)
    if problem:
        err(problem)
        return 2
    if args.ray is not None and args.track:
        err("--track cannot run on Ray: a track follows every frame of an input in order, on one process "
            "(run without --ray; --resume works with --track)")
        return 2
    if args.ray is not None:
        overrides = [o for o, v in (("--task", args.task), ("--score-threshold", args.score_threshold),
                                    ("--iou-threshold", args.iou_threshold)) if v is not None]
        if overrides:
            err(f"{' and '.join(overrides)} cannot be sent to Ray workers yet: write the task or thresholds in "
                "the model's sidecar card (docs/MODEL_CARD.md) and run again")
            return 2
        from loupe.run.cluster import ray_available

        if not ray_available():
            err("--ray needs Ray: pip install 'loupe[cluster]'")
            return 2
    fmt = None
    if args.out:
        ext = Path(args.out).suffix.lower()
        fmt = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(ext)
        if fmt is None:
            err(f"--out must end in .csv or .jsonl, got {args.out}")
            return 2
    if args.track and fmt != "jsonl":
        err("--track gives each detection a track_id in JSONL rows: add --out FILE.jsonl")
        return 2

    from loupe.run.analyze import (
        RowWriter,
        analyze,
        columns_for,
        expand_inputs,
        is_dicom_input,
        summary_table,
    )

    loaded = load_models(args)  # and --compare's comparer
    if loaded is None:
        return 2
    models, compare = loaded
    scoring = None
    if args.labels:
        from loupe.run.scoring import LabelScoring

        scoring = LabelScoring(args.labels, models, warn=lambda line: sys.stderr.write(f"loupe: {line}\n"))
        if not scoring.scorers:
            err(f"--labels: no model given can be scored against labels ({', '.join(scoring.unscored)}); "
                "segmentation, detection, keypoints, instances and classification can")
            return 2
        if scoring.unscored:
            sys.stderr.write(f"loupe: not scored (their tasks have no scorer): {', '.join(scoring.unscored)}\n")
    inputs = expand_inputs(args.inputs)
    progress = make_progress(args.quiet, args.progress)
    bad: list[tuple[str, str]] = []

    def on_error(spec: str, reason: str) -> None:
        bad.append((spec, reason))
        if progress:
            progress.input_failed()
        if "unexpected error" in reason and not logger.isEnabledFor(logging.INFO):
            reason += "; -v shows the traceback"
        err(f"{spec}: {reason}")

    stream = None
    start_at = None
    done = None  # --resume: the rows already written (Ray plans its parts from them)
    try:
        writer = None
        if args.out:
            cols = columns_for(models, with_dicom=any(is_dicom_input(i) for i in inputs), compare=args.compare)
            if scoring is not None:
                cols += [c for c in scoring.columns() if c not in cols]
            if args.resume:
                from loupe.run.resume import ResumeError, SkipDone, make_start_at, prepare_resume

                try:
                    state = prepare_resume(args.out, fmt or "csv", cols)
                except ResumeError as e:
                    err(str(e))
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
                              calibrate_per_video=args.calibrate_per_video, start_at=start_at, scoring=scoring,
                              compare=compare)
        wall = time.perf_counter() - wall
    except KeyboardInterrupt:
        if progress:
            progress.input_failed()
            progress.finish()
        err(f"interrupted; rows written so far are in {args.out}" if args.out else "interrupted")
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
    if compare is not None:
        sys.stderr.write(f"loupe: {_agreement_line(summary, models)}\n")
        where = _differ_line(summary)
        if where:
            sys.stderr.write(f"loupe: {where}\n")
    if scoring is not None:
        for line in scoring.headlines():
            sys.stderr.write(f"loupe: {line}\n")
        if args.summary:
            import json

            from loupe.base.quality import json_safe

            try:
                Path(args.summary).write_text(json.dumps(json_safe(scoring.summary()), indent=2, allow_nan=False) + "\n",
                                              encoding="utf-8")
            except OSError as e:
                err(f"--summary {args.summary}: cannot write it ({e.strerror or e})")
                return 2
    return summary.exit_code


def _check_label_options(args: argparse.Namespace) -> str | None:
    """The error line for ``--labels`` / ``--summary`` used wrongly, or None."""
    if args.summary and not args.labels:
        return "--summary writes the figures scored against --labels: add --labels PATH"
    if args.summary and not args.summary.lower().endswith(".json"):
        return f"--summary must end in .json, got {args.summary}"
    if not args.labels:
        return None
    if not Path(args.labels).exists():
        return f"--labels {args.labels}: no such label file or folder"
    if args.ray is not None:
        return "--labels cannot be scored on Ray yet: run without --ray"
    if args.resume and args.summary:
        return "--summary pools every frame's scores, which --resume does not run again: run without --resume"
    return None


def _check_compare_options(args: argparse.Namespace) -> str | None:
    """The error line for ``--compare`` used wrongly before any model loads, or None."""
    if not args.compare:
        return None
    if args.ray is not None:
        return "--compare cannot run on Ray yet: run without --ray"
    n = len(args.model or [])
    if n != 2:
        return f"--compare compares exactly two models: give --model twice (got {n} --model)"
    return None


def comparer_of(models: list) -> Callable[[Any, Any], Any] | None:
    """``--compare``: the comparer of the two loaded models' task; None after the error line (tasks
    that differ, or a task that cannot be compared). Two models with no class name in common get
    a note: classes are compared by name."""
    from loupe.tasks.agreement import comparable_tasks, comparer_for

    a, b = models
    if a.task.name != b.task.name:
        err(f"--compare needs two models of the same task: {a.engine.path.name} is {a.task.name}, "
            f"{b.engine.path.name} is {b.task.name}")
        return None
    fn = comparer_for(a.task.name)
    if fn is None:
        err(f"--compare: {a.task.name} models cannot be compared (tasks that can: {', '.join(comparable_tasks())})")
        return None
    names = [set(getattr(m.task, "labels", None) or ()) for m in models]
    if all(names) and not names[0] & names[1]:  # (a model learning its classes from frame 1 has none yet)
        sys.stderr.write(f"loupe: {a.name} and {b.name} have no class name in common; classes are compared by "
                         "name, so they agree nowhere\n")
    return fn


def _agreement_line(summary: Any, models: list) -> str:
    """'agreement A vs B: mean 0.913 over 120 frames (lowest 0.520 at frame 77)'."""
    from loupe.run.analyze import agreement_figures

    head = f"agreement {models[0].name} vs {models[1].name}"
    compared = [s for s in summary.inputs if s.agreement]
    if not compared:
        return f"{head}: no frame was compared"
    mean, low, (spec, frame) = agreement_figures(compared)
    n = sum(len(s.agreement) for s in compared)
    where = f"frame {frame}" if len(compared) == 1 else f"{Path(spec.split('#')[0]).name} frame {frame}"
    return f"{head}: mean {mean:.3f} over {n} frame{'s' if n != 1 else ''} (lowest {low:.3f} at {where})"


def _differ_line(summary: Any) -> str:
    """'where they differ most: A moving / B other 2.1% of pixels, ...' over every compared frame."""
    from loupe.tasks.agreement import Tally

    tally = Tally()
    for s in summary.inputs:
        tally.merge(s.differ)
    text = tally.headline()
    return f"where they differ most: {text}" if text else ""


COMMAND = Command("analyze", DESCRIPTION, DESCRIPTION, _add_arguments, _run)
