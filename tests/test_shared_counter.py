"""``SharedCounter``: the live path's backpressure count, changed from two threads at once, loses
no update (a plain ``n += 1`` does, between its load and its store)."""

from __future__ import annotations

import sys
import threading

from loupe.run.pipeline import LatestSlot, SharedCounter

N = 100_000


def hammer(*jobs) -> None:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # as many thread switches as the interpreter allows
    try:
        threads = [threading.Thread(target=j) for j in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)


def test_two_threads_adding_lose_nothing():
    c = SharedCounter()

    def up() -> None:
        for _ in range(N):
            c.add(1)

    hammer(up, up)
    assert c.value == 2 * N


def test_raised_on_one_thread_and_lowered_on_another_ends_at_zero():
    """The worker raises it per emitted result, the UI lowers it per shown result: when every
    result was shown it is back at zero (and never went below)."""
    c = SharedCounter()
    emitted = threading.Semaphore(0)

    def worker() -> None:
        for _ in range(N):
            c.add(1)
            emitted.release()

    def ui() -> None:
        for _ in range(N):
            emitted.acquire()
            assert c.release() >= 0

    hammer(worker, ui)
    assert c.value == 0


def test_release_stops_at_zero_and_reset_returns_the_old_value():
    c = SharedCounter(1)
    assert c.release() == 0 and c.release() == 0
    c.add(5)
    assert c.reset() == 5 and c.value == 0 and int(c) == 0


def test_the_slots_dropped_count_resets_while_a_reader_puts():
    slot = LatestSlot()

    def reader() -> None:
        for i in range(N):
            slot.put(i)

    resets = []

    def ui() -> None:
        for _ in range(200):
            resets.append(slot.reset_dropped())

    hammer(reader, ui)
    # every put after the first replaced an unread item: each drop is counted once, reset or not
    assert sum(resets) + slot.dropped == N - 1
