"""The ``loupe`` command: ``loupe PATH…`` opens the window; ``loupe COMMAND …`` runs one of the
commands of ``loupe.commands`` (analyze, compare, fit, info, sysinfo, tasks) as an argparse
subcommand. The first word decides: a command's name, else the window's paths and options (a word
that is neither a file, a camera nor a command is answered "no such file or command", exit 2)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from loupe import __version__
from loupe.base.errors import LoupeError
from loupe.commands import Command, about, analyze, compare, fit, render
from loupe.commands.output import err

logger = logging.getLogger("loupe")


def _overlay_renderer(*args, **kw):
    """``loupe render``'s drawing: the window's own (Qt, imported when a render starts; the
    commands do not import the UI)."""
    from loupe.ui.render_view import OverlayRenderer

    return OverlayRenderer(*args, **kw)


#: Every command, in the order ``loupe --help`` lists them.
ALL_COMMANDS: tuple[Command, ...] = (analyze.COMMAND, render.command(_overlay_renderer), compare.COMMAND,
                                     fit.COMMAND, about.INFO, about.SYSINFO, about.TASKS)
#: Their names, for the dispatch and the "no such file or command" line.
COMMANDS = tuple(c.name for c in ALL_COMMANDS)

USAGE = """loupe [PATH ...] [--model M.onnx]... [--camera N] [--screenshot OUT.png --frames N]
       loupe COMMAND [options]   (loupe COMMAND --help for its options)
       loupe --version"""


def command_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """``loupe COMMAND …``: one argparse subcommand per ``Command``; the parser and the subparsers by name."""
    ap = argparse.ArgumentParser(prog="loupe", usage="loupe COMMAND [options]")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parsers = {}
    for c in ALL_COMMANDS:
        p = parsers[c.name] = sub.add_parser(c.name, prog=f"loupe {c.name}", help=c.summary, description=c.description)
        c.add_arguments(p)
        p.set_defaults(run=c.run)
    return ap, parsers


def _commands_help() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [f"  {c.name:<{width}}  {c.summary}" for c in ALL_COMMANDS]
    return ("commands (loupe COMMAND --help for the options of each):\n" + "\n".join(lines)
            + "\n\n-v (any command but fit): log what happens, with the traceback of an unexpected error")


def window_parser() -> argparse.ArgumentParser:
    """``loupe [PATH …]``: the window's options; its help lists the commands too."""
    ap = argparse.ArgumentParser(prog="loupe", usage=USAGE, description="Loupe: see what your vision model does, live.",
                                 epilog=_commands_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", metavar="PATH", help="video, image, folder, DICOM or .onnx model")
    ap.add_argument("--model", action="append", default=[], metavar="M.onnx")
    ap.add_argument("--camera", type=int, metavar="N", help="open camera N")
    ap.add_argument("--resolution", metavar="WxH", help="camera resolution, e.g. 1280x720")
    ap.add_argument("--screenshot", metavar="OUT.png", help="play --frames frames, save a grab of the window, quit")
    ap.add_argument("--frames", type=int, default=30, metavar="N")
    ap.add_argument("--size", metavar="WxH", help="window size, e.g. 900x600 (--screenshot's default: 1400x820)")
    ap.add_argument("--providers", default="auto", choices=["auto", "tensorrt", "cuda", "cpu"])
    ap.add_argument("--no-demo", action="store_true", help="start empty instead of on the demo")
    ap.add_argument("--version", action="version", version=f"loupe {__version__}")
    return ap


def _window(argv: list[str]) -> int:
    args = _parse(window_parser(), argv)
    if isinstance(args, int):
        return args
    if args.size is not None:
        from loupe.ui.screenshot import parse_size

        try:
            args.size = parse_size(args.size)
        except ValueError as e:
            err(str(e))
            return 2
    missing = [p for p in args.paths if not _openable(p)]
    if missing:  # e.g. a mistyped command: say so instead of opening a window on nothing
        word = missing[0]
        err(f"no such file or command: {word!r} (commands: {', '.join(COMMANDS)}; "
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
        err(str(e))
        return 2
    except Exception as e:  # a library failed in a way nobody foresaw: one line, never a traceback
        logger.info("unexpected error", exc_info=True)  # -v shows it
        err(f"unexpected error: {type(e).__name__}: {e}" + ("" if verbose else " (run with -v for the details)"))
        return 2
    finally:
        root.setLevel(old_level)


def _parse(ap: argparse.ArgumentParser, argv: list[str],
           parsers: dict[str, argparse.ArgumentParser] | None = None) -> argparse.Namespace | int:
    """The parsed options, or the exit status when argparse stopped (``--help``: 0, a usage error: 2).
    An unknown option of a command is reported by that command's parser (its usage, ``loupe NAME: error``)."""
    try:
        args, extra = ap.parse_known_args(argv)
        if extra:
            (parsers or {}).get(getattr(args, "command", None), ap).error(f"unrecognized arguments: {' '.join(extra)}")
        return args
    except SystemExit as e:
        return 2 if e.code else 0


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        return _window(argv)
    ap, parsers = command_parser()
    args = _parse(ap, argv, parsers)
    if isinstance(args, int):
        return args
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
