"""What the demo recipes share (``demo_seg``, ``demo_ct``, ``demo_density``, ``demo_codebook``,
``demo_hnerv``): the command-line front, the logging set-up, the throttled progress report and
the torch settings (threads, deterministic algorithms, seed) a training run is made under,
the training loop (Adam, warm-up + cosine, a smoothed loss in the log), the timing of a run's
stages and the class weights of the segmentation recipes. The export side they share is in :mod:`loupe_models.exporters.onnx`."""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from loupe.base.progress import CallbackProgress, Progress
from loupe.inference.card import InputSpec, ModelCard
from loupe_models.nets.ddrnet import DualResNet

LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"
logger = logging.getLogger(__name__)


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


def cli_run(argv: Sequence[str] | None, parser: argparse.ArgumentParser, config_cls: Any,
            run: Callable[..., R], quiet: Sequence[str] = ()) -> R:
    """A recipe's ``main`` up to its report: parse ``argv``, start logging (the loggers named in
    ``quiet`` at ERROR only), build the config (:func:`recipe_config`) and return
    ``run(args.out, cfg, preview=args.preview)``."""
    args = parser.parse_args(argv)
    start_logging()
    for name in quiet:
        logging.getLogger(name).setLevel(logging.ERROR)
    return run(args.out, recipe_config(config_cls, args), preview=args.preview)


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


def runner(body: Callable[[Path, C, str | Path | None], R],
           config_cls: Callable[[], C]) -> Callable[..., R]:
    """A recipe's public ``run(out, cfg=None, preview=None)``: ``body(Path(out), cfg or
    config_cls(), preview)`` under :func:`run_recipe`."""

    def run(out: str | Path, cfg: C | None = None, preview: str | Path | None = None) -> R:
        """The whole recipe; torch's thread count and determinism flag are restored afterwards."""
        return run_recipe(body, out, cfg or config_cls(), preview)

    return run


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB ``H x W x 3`` uint8 image (a recipe's preview) as an image file (PNG)."""
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


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


def parameter_count(model: nn.Module, architecture: str, log: logging.Logger = logger) -> int:
    """How many parameters ``model`` has, logged to ``log`` after its ``architecture`` line."""
    params = sum(p.numel() for p in model.parameters())
    log.info("%s: %d parameters", architecture, params)
    return params


class StageTimes:
    """The wall-clock seconds of a recipe's stages, in the order they ran, then ``total`` since
    this was made: the recipe's ``Result.seconds``, printed by :func:`times_line`."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as stage ``name``."""
        t = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - t

    def total(self) -> dict[str, float]:
        """``seconds`` with ``total`` (since this was made) added."""
        self.seconds["total"] = time.perf_counter() - self.start
        return self.seconds


def times_line(seconds: dict[str, float]) -> str:
    """``time: decode 3 s, train 120 s, ...`` as the recipes print it."""
    return "time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())


def class_weights(labels: Iterable[np.ndarray], num_classes: int, power: float) -> torch.Tensor:
    """Per-class loss weights ``freq ** -power`` from the label maps' pixel frequencies (each at
    least 1e-4), scaled so that the mean weight per pixel is 1."""
    freq = sum(np.bincount(lab.ravel(), minlength=num_classes) for lab in labels)
    freq = np.maximum(np.asarray(freq, np.float64) / np.sum(freq), 1e-4)
    w = freq ** -power
    return torch.tensor(w / (w * freq).sum(), dtype=torch.float32)


#: The residual layers of the segmentation demos' DDRNet-23-slim (BasicBlock [2, 2, 2, 2]).
SLIM_LAYERS = (2, 2, 2, 2)


def slim_ddrnet(num_classes: int, planes: int, spp_planes: int, head_planes: int) -> DualResNet:
    """The segmentation demos' width-reduced DDRNet-23-slim, without the auxiliary head."""
    return DualResNet(num_classes=num_classes, planes=planes, spp_planes=spp_planes,
                      head_planes=head_planes, augment=False, layers=SLIM_LAYERS)


def slim_ddrnet_text(planes: int, spp_planes: int, head_planes: int, prefix: str = "") -> str:
    """The card's ``architecture`` line of :func:`slim_ddrnet`."""
    return (f"DDRNet-23-slim, width-reduced ({prefix}planes={planes}, spp_planes={spp_planes}, "
            f"head_planes={head_planes}, layers={SLIM_LAYERS})")


def segmentation_card(name: str, spec: InputSpec, labels: Sequence[str],
                      palette: Sequence[Sequence[int]], source: dict[str, Any]) -> ModelCard:
    """A segmentation demo's card: ``logits`` at stride 8."""
    return ModelCard(task="segmentation", name=name, input=spec, labels=labels, palette=palette,
                     output={"stride": 8, "kind": "logits"}, source=source)


def segmentation_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """Weighted cross-entropy of ``model(x)`` resized (bilinear) to the labels ``y``, as
    :func:`train_loop` takes it."""
    logits = F.interpolate(model(x), size=y.shape[-2:], mode="bilinear", align_corners=False)
    return {"loss": F.cross_entropy(logits, y, weight=weights)}


def train_loop(model: nn.Module, losses: Callable[[], dict[str, torch.Tensor]], steps: int,
               lr: float, weight_decay: float, *, max_warmup: int = 100, smoothing: float = 0.05,
               log_every: int = 100, log: logging.Logger = logger) -> None:
    """Train ``model`` for ``steps`` steps: Adam (``lr``, ``weight_decay``) under
    :func:`warmup_cosine`, minimising ``losses()["loss"]`` (``losses`` draws a batch and returns
    the total ``"loss"`` and any named parts). Every ``log_every`` steps and at the end ``log``
    gets each entry's running mean (weight ``smoothing`` on the newest step). Leaves the model
    in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = warmup_cosine(opt, steps, max_warmup=max_warmup)
    model.train()
    t0 = time.perf_counter()
    avg: dict[str, float] = {}
    for step in range(steps):
        parts = losses()
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        opt.step()
        sched.step()
        for k, v in parts.items():
            avg[k] = (1 - smoothing) * avg[k] + smoothing * v.item() if step else v.item()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            log.info("step %d/%d %s (%.0f s)", step + 1, steps,
                     " ".join(f"{k} {v:.3f}" for k, v in avg.items()), time.perf_counter() - t0)
    model.eval()
