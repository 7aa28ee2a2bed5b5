"""What the commands write on stderr: the progress bar for a terminal, one line per finished
step for a log, and error lines (``loupe: MESSAGE``, always one line)."""

from __future__ import annotations

import sys
import time

from loupe.base.progress import Progress


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


def err(msg: str) -> None:
    """``loupe: MESSAGE`` on stderr, as one line."""
    sys.stderr.write(f"loupe: {one_line(msg)}\n")
