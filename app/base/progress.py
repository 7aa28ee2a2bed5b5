"""One way for long work to report progress and to be cancelled (Qt-free).

Every long function of Loupe (``analyze``, the fitters in ``loupe_models``, the compression
report, the matched-size encoder, ``compare_videos``) takes one ``progress: Progress | None``
argument and, on the thread it runs on:

* calls ``progress.update(fraction, status, **info)`` as work gets done: ``fraction`` in [0, 1]
  (kept monotone: a smaller value than one already reported is raised to it), ``status`` a short
  line saying what runs now ("" keeps the last one), ``info`` any figures worth showing
  (``loss``, ``eta_s``, ``psnr``, ``step``...);
* calls ``progress.check()`` where stopping is safe; it raises :class:`Cancelled` once someone
  called ``progress.cancel()`` (from any thread). A function that keeps partial results instead
  (``analyze`` keeps the rows written, ``fit_predictor`` keeps the model trained so far) reads
  ``progress.cancelled`` and says so in its result.

``Progress()`` itself is the no-op (it still has a cancel flag); subclasses show the updates by
overriding :meth:`Progress.show`: the CLI's bar and log lines, the window's ``Job``, and
:class:`CallbackProgress`, which adapts plain functions. ``progress.part(start, end)`` is the
same work seen from a stage that fills ``[start, end]`` of the whole (one cancel flag).

:class:`Cancelled` is the one exception for "stopped because asked to"; it is not a
``LoupeError`` (nothing went wrong) and whoever started the work tells the user it was cancelled.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from typing import Any


class Cancelled(Exception):
    """The work was cancelled through its Progress (``progress.cancel()``); nothing half-done is
    kept unless the function that raised it says otherwise."""

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)


class Progress:
    """Progress of one piece of work and its cancel flag; this base class shows nothing.

    ``update`` and ``check`` are called by the work (one thread); ``cancel`` and ``cancelled``
    from any thread."""

    def __init__(self) -> None:
        self._cancel = threading.Event()
        self._fraction = 0.0

    # --- called by the work ------------------------------------------------------------------
    def update(self, fraction: float, status: str = "", **info: Any) -> None:
        """Report ``fraction`` (clamped to [0, 1] and never below the last one), a status line
        ("" keeps the last) and any figures in ``info``."""
        f = float(fraction)
        f = self._fraction if math.isnan(f) else max(self._fraction, min(1.0, f))
        self._fraction = f
        self.show(f, status, info)

    def check(self) -> None:
        """Raise :class:`Cancelled` if the work was cancelled."""
        if self.cancelled:
            raise Cancelled()

    @property
    def done_fraction(self) -> float:
        """The largest fraction reported so far."""
        return self._fraction

    # --- called by whoever started the work ----------------------------------------------------
    def cancel(self) -> None:
        """Ask the work to stop at its next ``check()`` (any thread)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # --- for subclasses ------------------------------------------------------------------------
    def show(self, fraction: float, status: str, info: Mapping[str, Any]) -> None:
        """Show one update (called by ``update`` with the monotone fraction); no-op here."""

    def part(self, start: float, end: float,
             describe: Callable[[str, Mapping[str, Any]], str] | None = None) -> Progress:
        """This work seen from a stage filling ``[start, end]`` of it: the stage's fraction 0..1
        maps onto that span; ``describe(status, info)``, where given, rewrites the status line.
        Cancelling either cancels both."""
        return _Part(self, start, end, describe)


def as_progress(progress: Progress | None) -> Progress:
    """``progress``, or a no-op Progress for None."""
    return progress if progress is not None else Progress()


class _Part(Progress):
    def __init__(self, parent: Progress, start: float, end: float,
                 describe: Callable[[str, Mapping[str, Any]], str] | None) -> None:
        super().__init__()
        self._parent, self._start, self._end, self._describe = parent, float(start), float(end), describe

    def show(self, fraction: float, status: str, info: Mapping[str, Any]) -> None:
        if self._describe is not None:
            status = self._describe(status, info)
        self._parent.update(self._start + (self._end - self._start) * fraction, status, **info)

    def cancel(self) -> None:
        self._parent.cancel()

    @property
    def cancelled(self) -> bool:
        return self._parent.cancelled


class CallbackProgress(Progress):
    """A Progress made of plain functions, for scripts and tests.

    ``on_update(fraction, info)`` gets each update, with the status line (when one was given) in
    ``info["status"]``; returning ``False`` cancels the work (its next ``check()`` raises).
    ``cancelled()``, where given, is asked as well whenever the work checks."""

    def __init__(self, on_update: Callable[[float, dict[str, Any]], Any] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> None:
        super().__init__()
        self._on_update, self._ask = on_update, cancelled

    def show(self, fraction: float, status: str, info: Mapping[str, Any]) -> None:
        if self._on_update is None:
            return
        data = dict(info)
        if status:
            data["status"] = status
        if self._on_update(fraction, data) is False:
            self.cancel()

    @property
    def cancelled(self) -> bool:
        if not self._cancel.is_set() and self._ask is not None and self._ask():
            self._cancel.set()
        return self._cancel.is_set()
