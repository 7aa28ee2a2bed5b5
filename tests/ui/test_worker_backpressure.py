"""The inference worker's backpressure: when the UI is behind it drops a result only if a newer
frame is already waiting, never the last frame there is (a paused player's first frame after a
source switch would otherwise never be shown)."""

from __future__ import annotations

from loupe.pipeline import LatestSlot
from loupe.ui.worker import InferenceWorker


class EchoRunner:
    def process(self, frame):
        return frame


def start_worker(qtbot, in_flight: int):
    slot = LatestSlot()
    worker = InferenceWorker(slot, EchoRunner())
    worker.in_flight = in_flight
    got: list = []
    worker.resultReady.connect(got.append)
    return slot, worker, got


def test_last_frame_is_shown_even_when_the_ui_is_behind(qtbot):
    slot, worker, got = start_worker(qtbot, in_flight=2)  # two results still queued for the UI
    slot.put("first frame of the new source")
    worker.start()
    try:
        qtbot.waitUntil(lambda: got == ["first frame of the new source"], timeout=5000)
        assert worker.skipped == 0
    finally:
        worker.stop()


def test_a_result_is_dropped_when_a_newer_frame_waits(qtbot):
    slot, worker, got = start_worker(qtbot, in_flight=2)
    slot.put("old")
    worker.start()
    try:
        qtbot.waitUntil(lambda: worker.processed == 1, timeout=5000)  # "old" waits for the UI
        slot.put("new")
        qtbot.waitUntil(lambda: got == ["new"], timeout=5000)
        assert worker.skipped == 1
    finally:
        worker.stop()


def test_results_flow_while_the_ui_keeps_up(qtbot):
    slot, worker, got = start_worker(qtbot, in_flight=0)
    worker.start()
    try:
        for i in range(3):
            slot.put(i)
            qtbot.waitUntil(lambda i=i: len(got) == i + 1, timeout=5000)
            worker.in_flight = 0  # the UI showed it
        assert got == [0, 1, 2] and worker.skipped == 0
    finally:
        worker.stop()
