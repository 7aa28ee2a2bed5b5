"""The inference worker's backpressure: when the UI is behind it drops a result only if a newer
frame is already waiting, never the last frame there is (a paused player's first frame after a
source switch would otherwise never be shown). The count of results in flight is raised on the
worker thread and lowered on the UI thread: no update may be lost, or the live view freezes."""

from __future__ import annotations

import queue
import sys
import threading

from PySide6.QtCore import Qt

from loupe.run.pipeline import LatestSlot
from loupe.ui.worker import InferenceWorker


class EchoRunner:
    def process(self, frame):
        return frame


def start_worker(qtbot, in_flight: int, patience: float = 1.0):
    slot = LatestSlot()
    worker = InferenceWorker(slot, EchoRunner())
    worker.results_in_flight.reset(in_flight)
    worker.patience = patience
    got: list = []
    worker.resultReady.connect(got.append)
    return slot, worker, got


def test_last_frame_is_shown_even_when_the_ui_is_behind(qtbot):
    slot, worker, got = start_worker(qtbot, in_flight=2, patience=0.05)  # two results still queued for the UI
    slot.put("first frame of the new source")
    worker.start()
    try:
        qtbot.waitUntil(lambda: got == ["first frame of the new source"], timeout=30000)
        assert worker.skipped == 0
    finally:
        worker.stop()


def test_a_result_is_dropped_when_a_newer_frame_waits(qtbot):
    # patience far longer than the test: "old" is dropped because "new" arrived, not on a clock
    slot, worker, got = start_worker(qtbot, in_flight=2, patience=600.0)
    slot.put("old")
    worker.start()
    try:
        qtbot.waitUntil(lambda: worker.processed == 1, timeout=30000)  # "old" waits for the UI
        slot.put("new")
        qtbot.waitUntil(lambda: worker.skipped == 1, timeout=30000)
        worker.result_shown()  # the UI catches up: "new" may go
        qtbot.waitUntil(lambda: got == ["new"], timeout=30000)
        assert worker.skipped == 1 and worker.in_flight == 2
    finally:
        worker.stop()


def test_results_flow_while_the_ui_keeps_up(qtbot):
    slot, worker, got = start_worker(qtbot, in_flight=0)
    worker.start()
    try:
        for i in range(3):
            slot.put(i)
            qtbot.waitUntil(lambda i=i: len(got) == i + 1, timeout=30000)
            worker.result_shown()  # the UI showed it
        assert got == [0, 1, 2] and worker.skipped == 0 and worker.in_flight == 0
    finally:
        worker.stop()


def test_no_update_is_lost_while_the_worker_and_the_ui_thread_race(qtbot):
    """A live source floods the worker while a second thread (the UI's role) shows each result as
    it arrives: afterwards nothing is in flight, every processed frame was either delivered or
    skipped, and the worker still delivers the next frame at once."""
    slot, worker, _ = start_worker(qtbot, in_flight=0, patience=600.0)
    delivered: queue.Queue = queue.Queue()
    worker.resultReady.connect(delivered.put, Qt.ConnectionType.DirectConnection)  # on the worker thread
    shown: list = []
    stop_ui = threading.Event()

    def ui() -> None:
        while not stop_ui.is_set():
            try:
                item = delivered.get(timeout=0.01)
            except queue.Empty:
                continue
            shown.append(item)
            worker.result_shown()

    def camera(n: int) -> None:
        for i in range(n):
            slot.put(i)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up if they can
    ui_thread = threading.Thread(target=ui, daemon=True)
    ui_thread.start()
    worker.start()
    try:
        for _ in range(4):
            cam = threading.Thread(target=camera, args=(5000,))
            cam.start()
            cam.join()
        sys.setswitchinterval(old)
        # settled: every processed frame shown or skipped, nothing left in flight
        qtbot.waitUntil(lambda: not slot.pending and worker.processed == len(shown) + worker.skipped,
                        timeout=20000)
        assert worker.in_flight == 0, worker.in_flight
        assert len(shown) > 0
        n = len(shown)
        slot.put("next")
        qtbot.waitUntil(lambda: len(shown) == n + 1, timeout=30000)
        assert shown[-1] == "next" and worker.in_flight == 0
    finally:
        sys.setswitchinterval(old)
        stop_ui.set()
        worker.stop()
        ui_thread.join(5)
