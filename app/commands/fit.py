"""``loupe fit KIND CLIP …``: fit a model on your own footage with one of the fitters of
``loupe_models`` (needs PyTorch: ``loupe[fit]``); everything after KIND is the fitter's own
options (``loupe fit KIND --help``)."""

from __future__ import annotations

import argparse

from loupe.commands import Command
from loupe.commands.output import err

FIT_KINDS = {"anomaly": "loupe_models.fitters.anomaly", "codebook": "loupe_models.fitters.codebook",
             "hnerv": "loupe_models.fitters.hnerv"}


def _add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("kind", nargs="?", metavar="KIND", help=f"what to fit: {', '.join(FIT_KINDS)}")
    ap.add_argument("options", nargs=argparse.REMAINDER, metavar="CLIP ...",
                    help="the clip and the fitter's options (loupe fit KIND --help lists them)")


def _run(args: argparse.Namespace) -> int:
    if args.kind not in FIT_KINDS:
        err(f"usage: loupe fit {{{','.join(FIT_KINDS)}}} CLIP [options]   (e.g. loupe fit anomaly clip.mp4 --normal 0:10 --out model.onnx)")
        return 2
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        err("fitting needs PyTorch: pip install 'loupe[fit]' (the app bundle views and runs models only)")
        return 2
    import importlib

    module = importlib.import_module(FIT_KINDS[args.kind])
    return int(module.main(args.options) or 0)


COMMAND = Command("fit", f"Fit a model on your own footage: {', '.join(FIT_KINDS)} (needs loupe[fit]).",
                  "Fit a model on your own footage (needs PyTorch: pip install 'loupe[fit]').",
                  _add_arguments, _run)
