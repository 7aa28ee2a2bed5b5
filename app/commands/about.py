"""``loupe info`` (a model's card, inputs, outputs and providers), ``loupe sysinfo`` (versions,
decoders, providers, GPU: for bug reports) and ``loupe tasks`` (the tasks this Loupe knows)."""

from __future__ import annotations

import argparse
import sys

from loupe.commands import Command
from loupe.commands.output import err, one_line

PROVIDERS = ["auto", "tensorrt", "cuda", "cpu"]


def _info_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("model", metavar="M.onnx")
    ap.add_argument("--providers", default="auto", choices=PROVIDERS)


def _info(args: argparse.Namespace) -> int:
    from loupe.inference.engine import Engine, ModelError

    try:
        eng = Engine(args.model, providers=args.providers)
    except ModelError as e:
        err(str(e))
        return 2
    sys.stdout.write(eng.describe() + "\n")
    return 0


def _sysinfo_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--json", action="store_true", help="print a JSON object instead of text")


def _sysinfo(args: argparse.Namespace) -> int:
    from loupe.sysinfo import format_system_info, system_info

    if args.json:
        import json

        sys.stdout.write(json.dumps(system_info(), indent=2) + "\n")
    else:
        sys.stdout.write(format_system_info() + "\n")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    """One line per registered task (name, origin, panel), then one per plug-in that failed to
    load (its error). Exit 0, or 1 when some plug-in failed."""
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


INFO = Command("info", "Print a model's card, inputs/outputs and providers.",
               "Print a model's card, inputs/outputs and providers.", _info_arguments, _info)
SYSINFO = Command("sysinfo", "Print versions, DICOM decoders, ONNX Runtime providers and the GPU.",
                  "Print versions, DICOM decoders, ONNX Runtime providers and the GPU (for bug reports).",
                  _sysinfo_arguments, _sysinfo)
TASKS = Command("tasks", "List the tasks this Loupe knows (built-in and plug-ins).",
                "List the tasks this Loupe knows: built-in ones and those of installed plug-ins "
                "(entry-point group loupe.tasks), and plug-ins that failed to load.",
                lambda ap: None, _tasks)
