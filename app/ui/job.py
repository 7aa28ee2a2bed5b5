"""The window's one way to run work in the background: a :class:`Job`.

``Job(work)`` runs ``work(progress)`` on a thread of its own (or, with ``queue``, one after the
other with the queue's other jobs) and reports on the UI thread through signals:

* ``progressed(fraction, info)``: ``info`` holds the status line (``info["status"]``) and the
  figures the work passed to ``progress.update`` (loss, eta_s...). Sent at display rate (at most
  every 0.1 s, and always the last update before the job ends), never at step rate.
* then exactly one of ``finishedWith(result)``, ``failedWith(message)`` or ``wasCancelled()``; then
  ``done()``, whichever it was (the place to clean up).

``progress`` is a :class:`loupe.base.progress.Progress`; ``job.cancel()`` sets its flag (any
thread), so the work stops at its next ``progress.check()`` with ``Cancelled`` (reported as
``wasCancelled``), or returns early by itself. A failure's message: a ``LoupeError``'s own text
(meant for the user); anything else is unexpected: its type and message, and the traceback is
logged. The window's job never touches a widget: it only computes.

A Job lives on the UI thread (signals are queued to it), so connect plain callables; keep a
reference (the window's attribute, or ``parent``) until ``done``. ``wait(ms)`` joins it (the
window's close: cancel, then wait).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

from loupe.base.errors import LoupeError, user_message
from loupe.base.progress import Cancelled, Progress

logger = logging.getLogger(__name__)

#: seconds between two ``progressed`` signals
EMIT_INTERVAL_S = 0.1


class _JobProgress(Progress):
    """The Progress a Job's work reports to: forwards to the job at display rate."""

    def __init__(self, job: Job) -> None:
        super().__init__()
        self._job = job
        self._status = ""
        self._last_emit = 0.0
        self._pending: tuple[float, dict[str, Any]] | None = None

    def show(self, fraction: float, status: str, info: Mapping[str, Any]) -> None:
        if status:
            self._status = status
        data = dict(info)
        data["status"] = self._status
        now = time.monotonic()
        if now - self._last_emit >= EMIT_INTERVAL_S or fraction >= 1.0:
            self._last_emit = now
            self._pending = None
            self._job._emit_progress(fraction, data)
        else:
            self._pending = (fraction, data)

    def flush(self) -> None:
        if self._pending is not None:
            fraction, data = self._pending
            self._pending = None
            self._job._emit_progress(fraction, data)


class JobQueue:
    """Runs the jobs given to it one after the other, in the order they were started (the
    window's model and source loading: a model named before a clip is loaded before it opens)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # jobs are added on the UI thread, the next starts on a worker's
        self._waiting: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._closed = False

    def _submit(self, job: Job) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the queue is closed")
            self._waiting.append(job)
        self._next()

    def _next(self) -> None:
        skipped: list[Job] = []
        with self._lock:
            if self._running is not None and self._running.isRunning():
                return
            self._running = None
            while self._waiting and self._running is None:
                job = self._waiting.popleft()
                if job.cancelled:  # cancelled before it started: it ends without running
                    skipped.append(job)
                    continue
                self._running = job
                job._start_thread()
        for job in skipped:
            job._finish_unstarted()

    def close(self, wait_ms: int = 30000) -> None:
        """Cancel the jobs not started yet and wait for the running one to end (the window's close)."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting), collections.deque()
            running = self._running
        for job in waiting:
            job.cancel()
            job._finish_unstarted()
        if running is not None:
            running.wait(wait_ms)


class Job(QObject):
    """``work(progress) -> result`` on a worker thread, reported through signals on the UI thread."""

    progressed = Signal(float, object)  # fraction, info dict (with "status")
    finishedWith = Signal(object)  # the result
    failedWith = Signal(str)  # a message for the user
    wasCancelled = Signal()
    done = Signal()  # after any of the three above
    _relay = Signal(str, object)  # from the worker thread, queued to the UI thread

    def __init__(self, work: Callable[[Progress], Any], name: str = "job", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._work = work
        self.name = name
        self.progress = _JobProgress(self)
        self._thread: threading.Thread | None = None
        self._ended = threading.Event()
        self._queue: JobQueue | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        # queued, to a method of this object (which lives on the UI thread): the public signals
        # are sent from the UI thread, whatever their receivers and connection types
        self._relay.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    # --- starting and stopping ---------------------------------------------------------------
    def start(self, queue: JobQueue | None = None) -> Job:
        """Run on a thread of its own now, or after the queue's earlier jobs."""
        if self._thread is not None or self._queue is not None:
            raise RuntimeError(f"job {self.name} was already started")
        if queue is not None:
            self._queue = queue
            queue._submit(self)
        else:
            self._start_thread()
        return self

    def cancel(self) -> None:
        """Ask the work to stop (at its next ``progress.check()``); any thread."""
        self.progress.cancel()

    @property
    def cancelled(self) -> bool:
        return self.progress.cancelled

    def isRunning(self) -> bool:  # Qt's spelling, as QThread's
        """Started and not ended yet (queued counts as running: it will run)."""
        return (self._thread is not None or self._queue is not None) and not self._ended.is_set()

    def wait(self, timeout_ms: int | None = None) -> bool:
        """Block until the work has ended (True) or ``timeout_ms`` passed (False). The signals
        that follow are delivered by the UI thread's event loop afterwards."""
        if self._thread is None and self._queue is None:
            return True
        return self._ended.wait(None if timeout_ms is None else timeout_ms / 1000.0)

    # --- inside ------------------------------------------------------------------------------
    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"loupe-{self.name}", daemon=True)
        self._thread.start()

    def _emit_progress(self, fraction: float, info: dict[str, Any]) -> None:
        self._send("progressed", (float(fraction), info))

    def _send(self, what: str, value: Any) -> None:
        try:
            self._relay.emit(what, value)
        except RuntimeError:  # the Job's C++ object is gone (its window was destroyed)
            logger.debug("%s: %s after its window", self.name, what)

    def _deliver(self, what: str, value: Any) -> None:  # on the UI thread
        if what == "progressed":
            self.progressed.emit(*value)
            return
        if what == "finishedWith":
            self.finishedWith.emit(value)
        elif what == "failed":
            self.failedWith.emit(value)
        else:
            self.wasCancelled.emit()
        self.done.emit()

    def _run(self) -> None:
        outcome: tuple[str, Any]
        try:
            result = self._work(self.progress)
        except Cancelled:
            outcome = ("cancelled", None)
        except Exception as e:  # shown in the window, never a crash
            self.error = e
            if isinstance(e, LoupeError):
                logger.info("%s failed: %s", self.name, e)
            else:
                logger.exception("%s failed unexpectedly", self.name)
            outcome = ("failed", user_message(e))
        else:
            self.result = result
            outcome = ("finishedWith", result)
        self.progress.flush()
        self._ended.set()
        self._report(*outcome)

    def _finish_unstarted(self) -> None:
        self._ended.set()
        self._send("cancelled", None)

    def _report(self, what: str, value: Any) -> None:
        self._send(what, value)
        if self._queue is not None:  # the next one starts now, not when the UI thread gets to it
            self._queue._next()


def progress_dialog(parent: Any, job: Job, title: str, text: str,
                    label: Callable[[dict[str, Any]], str | None]) -> Any:
    """A modeless progress dialog following ``job`` (0..1 as 0..1000); its Cancel cancels the
    job. ``label(info)`` is the line to show for a progress report's info (None: keep the last)."""
    from PySide6.QtWidgets import QProgressDialog

    dlg = QProgressDialog(text, "Cancel", 0, 1000, parent)
    dlg.setWindowTitle(title)
    dlg.setMinimumDuration(0)
    dlg.setAutoClose(False)
    dlg.setAutoReset(False)

    def show(fraction: float, info: dict[str, Any]) -> None:
        dlg.setValue(int(1000 * fraction))
        line = label(info)
        if line:
            dlg.setLabelText(line)

    job.progressed.connect(show)
    dlg.canceled.connect(job.cancel)
    return dlg


def start_with_dialog(win: Any, job: Job, attr: str, action: Any, title: str, text: str,
                      label: Callable[[dict[str, Any]], str | None], finished: Callable[[Any], None],
                      failed: str) -> Job:
    """Start one of the window's file jobs (Analyse to file, Export video): a progress dialog
    follows it (its Cancel cancels), ``action`` is disabled and ``win.<attr>`` holds the job until
    it ends (the window's close cancels and waits for it there); ``finished(result)`` on success,
    the banner says ``"<failed>: <message>"`` on failure."""
    dlg = progress_dialog(win, job, title, text, label)

    def ended() -> None:
        if getattr(win, attr, None) is job:
            setattr(win, attr, None)
        dlg.close()
        dlg.deleteLater()
        action.setEnabled(True)
        job.deleteLater()

    job.finishedWith.connect(finished)
    job.failedWith.connect(lambda msg: win.show_error(f"{failed}: {msg}"))
    job.done.connect(ended)
    action.setEnabled(False)
    setattr(win, attr, job)
    job.start()
    return job

