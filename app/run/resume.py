"""``loupe analyze --resume``: continue an interrupted run from the rows already in its output
file (Qt-free).

Rows are written and flushed one by one, so after a crash, a kill or Ctrl+C the file holds every
finished row and at most one partial last line. ``prepare_resume`` drops that partial line,
checks that the file was written with the same columns, and collects the ``(input, frame,
model)`` keys present; ``SkipDone`` keeps those rows from being written twice, and
``first_missing`` lets ``analyze`` seek close to the first frame still to do: as many frames
before it as the tasks' declared ``history`` (their rows are already written and skipped; the
frames refill the history), so no result changes. DICOM inputs (a running volume per series)
restart at their first frame. The resumed file equals an uninterrupted run's, row for row, in
every column but ``latency_ms``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loupe.base.errors import LoupeError

logger = logging.getLogger(__name__)

__all__ = ["ResumeError", "ResumeState", "SkipDone", "first_missing", "history_of", "make_start_at", "prepare_resume"]

Key = tuple[str, int, str]


class ResumeError(LoupeError):
    """The output file cannot be continued (other columns, unreadable); meant for the user."""


@dataclass
class ResumeState:
    done: set[Key] = field(default_factory=set)
    rows: int = 0  # complete rows found
    dropped_partial: bool = False  # a partial last line was cut off
    has_header: bool = False  # CSV: the header is already there


def _key(row: dict[str, Any]) -> Key:
    return (str(row["input"]), int(row["frame"]), str(row["model"]))


def prepare_resume(path: str | Path, fmt: str, columns: Sequence[str]) -> ResumeState:
    """Read the rows already in ``path`` (csv or jsonl), cutting off a partial last line in the
    file itself, so that appending continues it. A missing or empty file is a fresh start."""
    path = Path(path)
    state = ResumeState()
    if not path.exists() or path.stat().st_size == 0:
        return state
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # everything after the last newline is a partial row
    if end < len(data):
        state.dropped_partial = True
        with open(path, "r+b") as f:
            f.truncate(end)
        logger.info("%s: dropped a partial last line (%d bytes)", path.name, len(data) - end)
    try:
        text = data[:end].decode("utf-8")
    except UnicodeDecodeError as e:
        raise ResumeError(f"cannot resume {path.name}: it is not a text file Loupe wrote ({e})") from None
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        if not header:
            return state
        state.has_header = True
        if list(header) != list(columns):
            raise ResumeError(
                f"cannot resume {path.name}: it has other columns than this run writes (different "
                f"models or inputs?); use another --out file"
            )
        rows: list[dict[str, Any]] = list(reader)
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise ResumeError(f"cannot resume {path.name}: line {n} is not JSON") from None
    for row in rows:
        try:
            state.done.add(_key(row))
        except (KeyError, TypeError, ValueError):
            raise ResumeError(f"cannot resume {path.name}: a row lacks input, frame or model") from None
    state.rows = len(rows)
    return state


class SkipDone:
    """A row writer that drops the rows whose ``(input, frame, model)`` is already written."""

    def __init__(self, writer: Any, done: set[Key]) -> None:
        self.writer, self.done = writer, done
        self.skipped = 0

    def write(self, row: dict[str, Any]) -> None:
        if _key(row) in self.done:
            self.skipped += 1
            return
        self.writer.write(row)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer, name)


def make_start_at(models: Sequence[Any], done: set[Key]):
    """The ``start_at(spec, source)`` hook for ``analyze``: seeks ``source`` to
    ``first_missing`` (never past its end; a source that cannot seek starts at 0) and returns
    the frame it starts at."""
    from loupe.run.analyze import is_dicom_input
    from loupe.sources.base import SourceError

    def start_at(spec: str, source: Any) -> int:
        start = first_missing(spec, models, done, is_dicom_input(spec))
        count = source.frame_count
        if start <= 0 or not count:
            return 0
        start = min(start, count)
        try:
            source.seek(start)
        except SourceError:
            logger.info("%s: cannot seek to frame %d to resume; starting at 0", spec, start, exc_info=True)
            source.seek(0)
            return 0
        return start

    return start_at


def history_of(models: Sequence[Any]) -> int | None:
    """The past frames the models' results depend on: the largest ``task.history`` (None: some
    task depends on every frame since the input's start)."""
    need = 0
    for m in models:
        h = m.task.history
        if h is None:
            return None
        need = max(need, int(h))
    return need


def first_missing(spec: str, models: Sequence[Any], done: set[Key], is_dicom: bool) -> int:
    """The frame of input ``spec`` to start from so that every row still missing comes out as in
    an uninterrupted run: the first frame not written for every model, less the tasks' history
    (those frames refill it; their rows are written already and skipped). DICOM rows carry a
    running volume and a task with an unbounded history needs everything: both start at 0."""
    history = history_of(models)
    if not done or is_dicom or history is None:
        return 0
    names = [m.name for m in models]
    i = 0
    while all((spec, i, n) in done for n in names):
        i += 1
    return max(0, i - history)
