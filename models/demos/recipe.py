"""What the demo recipes share (``demo_seg``, ``demo_ct``, ``demo_density``, ``demo_codebook``,
``demo_hnerv``): the command-line front, the logging set-up, the throttled progress report and
the torch settings (threads, deterministic algorithms, seed) a training run is made under.
The export side they share is in :mod:`loupe_models.exporters.onnx`."""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from loupe.base.progress import CallbackProgress, Progress

LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"


class _RecipeConfig(Protocol):
    @property
    def threads(self) -> int: ...

    @property
    def seed(self) -> int: ...


C = TypeVar("C", bound=_RecipeConfig)
R = TypeVar("R")


def start_logging() -> None:
    """INFO lines with time and logger name, as every recipe logs its progress."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


def recipe_parser(prog: str, description: str, out: str, preview_help: str, *,
                  threads_help: str | None = None) -> argparse.ArgumentParser:
    """The options of a training recipe: ``--out`` (default ``out``), ``--quick``, ``--steps``,
    ``--threads`` when ``threads_help`` is given, and ``--preview``."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--out", default=out, help="ONNX file to write")
    p.add_argument("--quick", action="store_true", help="a few training steps only (smoke test)")
    p.add_argument("--steps", type=int, help="override the number of training steps")
    if threads_help is not None:
        p.add_argument("--threads", type=int, help=threads_help)
    p.add_argument("--preview", help=preview_help)
    return p


def recipe_config(cls: Any, args: argparse.Namespace) -> Any:
    """``cls.quick()`` for ``--quick``, else ``cls()``; then the ``--steps`` and ``--threads``
    given on the command line."""
    cfg = cls.quick() if args.quick else cls()
    given = {k: getattr(args, k) for k in ("steps", "threads") if getattr(args, k, None) is not None}
    return replace(cfg, **given) if given else cfg


def fit_parser(name: str, what: str, out_help: str) -> argparse.ArgumentParser:
    """The front of a fitting recipe (``python -m loupe_models.demo_<name>``): a required ``--out``."""
    p = argparse.ArgumentParser(prog=f"python -m loupe_models.demo_{name}",
                                description=f"Fit and export Loupe's demo {what} model.")
    p.add_argument("--out", required=True, help=out_help)
    return p


def throttled_report(seconds: float, ready: Callable[[dict[str, Any]], bool],
                     log: Callable[[float, dict[str, Any]], None]) -> Progress:
    """A fitter's ``progress`` that calls ``log(frac, info)`` when ``ready(info)`` and more than
    ``seconds`` have passed since it last did (``info["status"]``: the status line)."""
    last = [0.0]

    def report(frac: float, info: dict[str, Any]) -> None:
        if ready(info) and time.perf_counter() - last[0] > seconds:
            last[0] = time.perf_counter()
            log(frac, info)

    return CallbackProgress(report)


@contextmanager
def torch_settings(threads: int, seed: int) -> Iterator[None]:
    """``threads`` torch threads, deterministic algorithms and ``torch.manual_seed(seed)``;
    the thread count and determinism flag are restored afterwards."""
    saved = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])


def run_recipe(run: Callable[[Path, C, str | Path | None], R], out: str | Path, cfg: C,
               preview: str | Path | None) -> R:
    """``run(Path(out), cfg, preview)`` under :func:`torch_settings` (``cfg.threads``, ``cfg.seed``)."""
    with torch_settings(cfg.threads, cfg.seed):
        return run(Path(out), cfg, preview)


def warmup_cosine(opt: torch.optim.Optimizer, steps: int,
                  max_warmup: int = 100) -> torch.optim.lr_scheduler.LambdaLR:
    """The recipes' learning-rate schedule for ``steps`` steps: linear warm-up over
    ``max(1, min(max_warmup, steps // 10))`` steps, then cosine to 2% of the peak."""
    warmup = max(1, min(max_warmup, steps // 10))

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(opt, lr_at)


def times_line(seconds: dict[str, float]) -> str:
    """``time: decode 3 s, train 120 s, ...`` as the recipes print it."""
    return "time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
