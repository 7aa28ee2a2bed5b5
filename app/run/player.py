"""Reads a source on its own thread into a newest-frame-wins slot: play, pause, step, seek (Qt-free).

Files play at their nominal rate (frames are paced by timestamp; when inference is slower, the
slot drops the stale ones and counts them). Cameras deliver as fast as they capture.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from loupe.run.pipeline import LatestSlot
from loupe.sources.base import Source, SourceError

logger = logging.getLogger(__name__)


class Player:
    def __init__(
        self,
        source: Source,
        slot: LatestSlot,
        on_error: Callable[[str], None] = lambda msg: None,
        on_end: Callable[[], None] = lambda: None,
        realtime: bool = True,
        loop: bool = False,
        lockstep: bool = False,
        on_status: Callable[[str], None] = lambda msg: None,
        on_recovered: Callable[[str], None] = lambda msg: None,
        reconnect_delays: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0),
    ) -> None:
        self.source = source
        self.slot = slot
        self.on_error = on_error
        self.on_end = on_end
        # a live source that fails (a camera unplugged) is reopened with these waits between
        # tries (the last one repeats) until it comes back or the player stops
        self.on_status = on_status
        self.on_recovered = on_recovered
        self.reconnect_delays = tuple(reconnect_delays) or (1.0,)
        self.reconnect_attempts = 0
        self.realtime = realtime
        self.loop = loop
        self.lockstep = lockstep  # wait for each frame to be taken: no drops (screenshots, exports)
        self.speed = 1.0
        self.frames_read = 0
        self._cond = threading.Condition()
        self._playing = False
        self._stop = False
        self._step = 0
        self._seek: int | None = None
        self._thread = threading.Thread(target=self._run, name=f"loupe-reader-{source.name}", daemon=True)

    # --- control (any thread) ------------------------------------------------------------
    def start(self, playing: bool = True) -> None:
        self._playing = playing
        if not playing:
            self._step = 1  # show the first frame
        self._thread.start()

    @property
    def playing(self) -> bool:
        return self._playing

    def play(self) -> None:
        with self._cond:
            self._playing = True
            self._cond.notify_all()

    def pause(self) -> None:
        with self._cond:
            self._playing = False
            self._cond.notify_all()

    def step(self, n: int = 1) -> None:
        """Show the next frame (pauses playback)."""
        with self._cond:
            self._playing = False
            self._step += n
            self._cond.notify_all()

    def seek(self, index: int) -> None:
        """Jump to frame ``index`` and show it (playback state unchanged)."""
        if self.source.live:
            return
        with self._cond:
            self._seek = max(0, int(index))
            self._cond.notify_all()

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        try:
            self.source.close()
        except Exception:  # closing must never take the app down
            logger.debug("closing %s failed", self.source.name, exc_info=True)

    # --- reader thread ---------------------------------------------------------------------
    def _reconnect(self, reason: str) -> bool:
        """Reopen a failed live source, waiting longer between tries (``reconnect_delays``);
        True once it is back, False when the player stops or the source cannot reconnect."""
        reopen = getattr(self.source, "reconnect", None)
        if reopen is None:
            return False
        tries = 0
        while True:
            delay = self.reconnect_delays[min(tries, len(self.reconnect_delays) - 1)]
            tries += 1
            self.on_status(f"{self.source.name}: reconnecting (try {tries}, in {delay:g} s)…")
            with self._cond:
                self._cond.wait_for(lambda: self._stop, delay)
                if self._stop:
                    return False
            self.reconnect_attempts += 1
            try:
                back = bool(reopen())
            except Exception:  # a driver error is one more failed try
                logger.debug("reconnecting %s failed", self.source.name, exc_info=True)
                back = False
            if back:
                self.on_recovered(f"{self.source.name} is back after {tries} tr{'y' if tries == 1 else 'ies'}")
                return True

    def _run(self) -> None:
        it = iter(self.source)
        anchor: tuple[float, float] | None = None  # (wall time, frame timestamp)
        while True:
            with self._cond:
                while not self._stop and not self._playing and self._step == 0 and self._seek is None:
                    self._cond.wait()
                    anchor = None
                if self._stop:
                    return
                seek, self._seek = self._seek, None
                stepping = not self._playing
                if stepping and self._step > 0 and seek is None:
                    self._step -= 1
            try:
                if seek is not None:
                    self.source.seek(seek)
                    it = iter(self.source)
                    anchor = None
                frame = next(it)
            except StopIteration:
                if self.loop and not self.source.live and self.frames_read:
                    self.source.seek(0)
                    it = iter(self.source)
                    anchor = None
                    continue
                with self._cond:
                    self._playing = False
                    self._step = 0
                self.on_end()
                continue
            except SourceError as e:
                with self._cond:
                    self._playing = False
                    self._step = 0
                self.on_error(str(e))
                if self.source.live:
                    if not self._reconnect(str(e)):
                        return
                    it = iter(self.source)
                    with self._cond:
                        self._playing = True
                continue
            except Exception as e:  # a decoder bug must not kill the reader silently
                logger.exception("reading %s failed", self.source.name)
                with self._cond:
                    self._playing = False
                    self._step = 0
                self.on_error(f"{self.source.name}: {type(e).__name__}: {e}")
                continue
            self.frames_read += 1
            if self.realtime and not stepping and not self.source.live:
                now = time.monotonic()
                if anchor is None:
                    anchor = (now, frame.timestamp)
                else:
                    due = anchor[0] + (frame.timestamp - anchor[1]) / self.speed
                    if due > now:
                        with self._cond:  # wait, but wake at once for pause/seek/stop
                            self._cond.wait(due - now)
                    elif now - due > 0.5:  # far behind (e.g. after a stall): re-anchor
                        anchor = (now, frame.timestamp)
            if self.lockstep:
                while not self._stop and not self.slot.wait_empty(0.1):
                    pass
            self.slot.put(frame)
