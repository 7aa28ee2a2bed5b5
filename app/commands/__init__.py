"""The commands of ``loupe`` (``loupe analyze``, ``compare``, ``fit``, ``info``, ``sysinfo``,
``tasks``): one ``Command`` each, with its options and what it runs. ``loupe.cli`` builds the
argparse subcommands from them and dispatches on the first word; the window (``loupe PATH…``)
stays in ``loupe.cli``. Heavy imports happen inside ``run``, so ``loupe --help`` stays quick."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """One subcommand: ``loupe NAME``; ``summary`` is its line in ``loupe --help``,
    ``description`` heads ``loupe NAME --help``; ``add_arguments`` declares its options on its
    parser and ``run`` does it with the parsed options, returning the exit status."""

    name: str
    summary: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
