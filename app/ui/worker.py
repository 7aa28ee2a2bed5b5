"""The inference worker: one QThread that runs every loaded model on the newest frame.

The UI thread never waits on it: frames arrive through a ``LatestSlot`` (filled by the source's
reader thread), results leave through a queued signal. Stopping sets a flag checked between frames.

Backpressure: ``results_in_flight`` counts the results emitted and not yet shown; it is raised
here and lowered by the window (``result_shown``) on the UI thread, so it is a ``SharedCounter``
(a lock around every change), as is ``results_skipped``, which the window zeroes on a source switch.
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QThread, Signal

from loupe.inference.engine import ModelError
from loupe.run.pipeline import LatestSlot, Runner, SharedCounter

logger = logging.getLogger(__name__)


class InferenceWorker(QThread):
    resultReady = Signal(object)  # FrameResult
    failed = Signal(str)

    def __init__(self, slot: LatestSlot, runner: Runner, parent=None) -> None:
        super().__init__(parent)
        self.slot = slot
        self.runner = runner
        self._stop = False
        self.processed = 0
        self.results_in_flight = SharedCounter()  # emitted, not yet shown (the window calls result_shown)
        self.max_in_flight = 2
        self.results_skipped = SharedCounter()  # dropped because the UI was behind
        self.patience = 1.0  # s to wait for the UI before a result may be dropped for a newer frame
        self.setObjectName("loupe-inference")

    @property
    def in_flight(self) -> int:
        return self.results_in_flight.value

    @property
    def skipped(self) -> int:
        return self.results_skipped.value

    def result_shown(self) -> None:
        """The UI took one result off the queue (any thread; never below zero)."""
        self.results_in_flight.release()

    def reset_skipped(self) -> None:
        self.results_skipped.reset()

    def run(self) -> None:
        while not self._stop:
            frame = self.slot.get(timeout=0.05)
            if frame is None or self._stop:
                continue
            try:
                result = self.runner.process(frame)
            except ModelError as e:
                self.failed.emit(str(e))
                continue
            except Exception as e:  # never let the thread die silently
                logger.exception("inference failed")
                self.failed.emit(f"inference failed: {type(e).__name__}: {e}")
                continue
            self.processed += 1
            if self.in_flight >= self.max_in_flight and self._ui_behind(self.patience):
                self.results_skipped.add(1)  # the UI is behind and a newer frame waits: that one is shown instead
                continue
            self.results_in_flight.add(1)
            self.resultReady.emit(result)

    def _ui_behind(self, patience: float = 1.0) -> bool:
        """The UI has ``max_in_flight`` results still to show: wait (briefly) for it, and drop
        this result only if a newer frame is already waiting. Never drop the last frame there is
        (a paused player's first frame after a source switch, a step, a seek): it would leave the
        view showing something else."""
        deadline = time.monotonic() + patience
        while self.in_flight >= self.max_in_flight and not self._stop:
            if self.slot.pending:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return False

    def stop(self, timeout_ms: int = 3000) -> None:
        self._stop = True
        self.slot.close()
        self.wait(timeout_ms)
