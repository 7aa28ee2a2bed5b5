"""The window's one background mechanism, ``loupe.ui.job.Job``: progress reaches the UI thread,
cancel stops the work with the one Cancelled, a LoupeError shows its own message, anything else
its type and message (and is logged), and the window's loading runs one job after the other."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from loupe.base.errors import LoupeError
from loupe.sources.base import SourceError
from loupe.ui.job import Job, JobQueue


def record(job: Job) -> dict:
    got: dict = {"progress": [], "threads": set(), "outcome": [], "done": 0}

    def on_progress(f, info):
        got["progress"].append((f, dict(info)))
        got["threads"].add(threading.current_thread())

    job.progressed.connect(on_progress)
    job.finishedWith.connect(lambda r: got["outcome"].append(("finished", r)))
    job.failedWith.connect(lambda m: got["outcome"].append(("failed", m)))
    job.wasCancelled.connect(lambda: got["outcome"].append(("cancelled", None)))

    def done():
        got["done"] += 1
        got["threads"].add(threading.current_thread())

    job.done.connect(done)
    return got


def test_progress_reaches_the_ui_thread_and_the_result_follows(qtbot):
    worker = []

    def work(progress):
        worker.append(threading.current_thread())
        for i in range(1, 6):
            progress.update(i / 5, f"step {i}", loss=1.0 / i)
            time.sleep(0.12)  # slower than the display rate: each update is shown
        return 42

    job = Job(work, "test")
    got = record(job)
    job.start()
    qtbot.waitUntil(lambda: got["done"] == 1, timeout=10000)
    assert worker[0] is not threading.main_thread()
    assert got["threads"] == {threading.main_thread()}
    fractions = [f for f, _ in got["progress"]]
    assert fractions == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert got["progress"][-1][1] == {"status": "step 5", "loss": 0.2}
    assert got["outcome"] == [("finished", 42)] and job.result == 42 and not job.isRunning()


def test_updates_at_step_rate_are_thinned_but_the_last_is_shown(qtbot):
    def work(progress):
        for i in range(2000):
            progress.update(i / 2000 * 0.9, "busy", step=i)
        progress.update(0.95, "almost")  # the last update before the end, within 0.1 s of the previous
        return None

    job = Job(work, "fast")
    got = record(job)
    job.start()
    qtbot.waitUntil(lambda: got["done"] == 1, timeout=10000)
    assert len(got["progress"]) < 100
    assert got["progress"][-1] == (0.95, {"status": "almost"})


def test_cancel_stops_the_work_promptly(qtbot):
    steps = []

    def work(progress):
        while True:
            steps.append(1)
            progress.update(min(0.9, len(steps) / 1000))
            progress.check()
            time.sleep(0.005)

    job = Job(work, "endless")
    got = record(job)
    job.start()
    qtbot.waitUntil(lambda: len(steps) > 3, timeout=10000)
    job.cancel()
    assert job.wait(5000) and job.cancelled and not job.isRunning()
    n = len(steps)
    qtbot.waitUntil(lambda: got["done"] == 1, timeout=10000)
    assert got["outcome"] == [("cancelled", None)] and len(steps) == n


def test_a_loupe_error_shows_its_own_message(qtbot, caplog):
    def work(progress):
        raise SourceError("No such file: nowhere.mp4")

    job = Job(work, "open")
    got = record(job)
    with caplog.at_level(logging.INFO, logger="loupe.ui.job"):
        job.start()
        qtbot.waitUntil(lambda: got["done"] == 1, timeout=10000)
    assert got["outcome"] == [("failed", "No such file: nowhere.mp4")]
    assert isinstance(job.error, LoupeError)
    assert not any(r.exc_info for r in caplog.records)  # meant for the user: no traceback


def test_an_unexpected_error_shows_type_and_message_and_is_logged(qtbot, caplog):
    def work(progress):
        return {}["missing"]

    job = Job(work, "broken")
    got = record(job)
    with caplog.at_level(logging.INFO, logger="loupe.ui.job"):
        job.start()
        qtbot.waitUntil(lambda: got["done"] == 1, timeout=10000)
    assert got["outcome"] == [("failed", "KeyError: 'missing'")]
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and logged[0].exc_info[0] is KeyError and "broken" in logged[0].getMessage()


def test_a_queue_runs_its_jobs_one_after_the_other_in_order(qtbot):
    queue = JobQueue()
    log = []

    def work(name, seconds):
        def run(progress):
            log.append(("start", name))
            time.sleep(seconds)
            log.append(("end", name))
            return name
        return run

    jobs = [Job(work("model", 0.3), "a"), Job(work("clip", 0.0), "b"), Job(work("never", 0.0), "c")]
    results = []
    for j in jobs:
        j.finishedWith.connect(results.append)
    jobs[2].cancel()  # cancelled while waiting: it never runs
    cancelled = []
    jobs[2].wasCancelled.connect(lambda: cancelled.append(1))
    for j in jobs:
        j.start(queue)
    qtbot.waitUntil(lambda: len(results) == 2 and bool(cancelled), timeout=10000)
    assert log == [("start", "model"), ("end", "model"), ("start", "clip"), ("end", "clip")]
    assert results == ["model", "clip"]
    queue.close()
    with pytest.raises(RuntimeError):
        Job(work("late", 0.0), "d").start(queue)


def test_the_window_shows_a_loading_error_by_its_kind(qtbot, tmp_path, caplog):
    from loupe.ui.main_window import MainWindow

    win = MainWindow(ask_task=False, providers="cpu")
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.errorShown, timeout=10000) as sig:
        win.add_model(str(tmp_path / "missing.onnx"))
    assert sig.args[0].startswith("No such model file")  # a ModelError (LoupeError): its message only

    def broken():
        raise ZeroDivisionError("division by zero")

    with caplog.at_level(logging.INFO, logger="loupe.ui.job"), \
            qtbot.waitSignal(win.errorShown, timeout=10000) as sig:
        win._in_background(broken, lambda _r: None)
    assert sig.args[0] == "ZeroDivisionError: division by zero"
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)
    win.close()
