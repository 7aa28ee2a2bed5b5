"""Screenshots: File ▸ Save screenshot, and ``loupe --screenshot OUT.png`` (the README's pictures):
play N frames in lockstep, optionally build the compression panel's report
(``LOUPE_SCREENSHOT_COMPARE=1``), grab the window, quit."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFileDialog

from loupe.ui.settings import last_dir


def save_dialog(win) -> None:
    path, _ = QFileDialog.getSaveFileName(win, "Save screenshot", str(Path(last_dir(win.settings)) / "loupe.png"),
                                          "PNG (*.png)")
    if path:
        win.grab().save(path)


DEFAULT_SIZE = (1400, 820)  # the README's pictures


def parse_size(text: str) -> tuple[int, int]:
    """``"1400x820"`` → ``(1400, 820)``; ValueError with the expected form otherwise."""
    w, sep, h = text.lower().strip().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or not (100 <= int(w) <= 10000 and 100 <= int(h) <= 10000):
        raise ValueError(f"--size must look like 1400x820 (100 to 10000 pixels each way), got {text!r}")
    return int(w), int(h)


def prepare(win, size: tuple[int, int] | None = None) -> None:
    """A fixed window size (``size``, else the README's 1400x820) whatever the saved geometry."""
    w, h = size or DEFAULT_SIZE
    win.resize(w, h)
    docks = [round(h * 580 / 820), max(80, round(h * 200 / 820))]  # the README's proportions at any size
    win.resizeDocks([win.panel_dock, win.info_dock], docks, Qt.Orientation.Vertical)


def compare_then(win, done: Callable[[], None]) -> bool:
    """Build the first compression panel's report, then call ``done`` (on success or failure).
    False when the window has no compression panel."""
    from loupe.ui.panels.compression import CompressionPanel

    panel = next((p for p in win.panels if isinstance(p, CompressionPanel)), None)
    if panel is None:
        return False
    win.panel_tabs.setCurrentWidget(panel)  # room for the four frames and the plots
    win.resizeDocks([win.panel_dock], [740], Qt.Orientation.Horizontal)
    win.resizeDocks([win.panel_dock, win.info_dock], [700, 80], Qt.Orientation.Vertical)
    panel.reportReady.connect(lambda _r: done())
    panel.reportFailed.connect(lambda _m: done())
    panel.compare()  # a failure to start still ends in reportFailed
    return True


def play_then_show(win, frames: int, show: int, done: Callable[[], None],
                   before_seek: Callable[[], None] | None = None) -> None:
    """Once ``frames`` frames were played: pause, call ``before_seek``, show frame ``show`` (from
    1), and call ``done`` 400 ms after it is on screen, once the plots settled (pictures of one
    frame with the history of many: the ground-truth and compare screenshots)."""
    phase = ["play"]

    def on_frame(fr) -> None:
        if phase[0] == "play" and fr.frame.index >= frames - 1:
            phase[0] = "seek"
            win.player.pause()
            if before_seek is not None:
                before_seek()
            win.seek_to(show - 1)
        elif phase[0] == "seek" and fr.frame.index == show - 1:
            phase[0] = "done"
            win._update_play_button()
            QTimer.singleShot(400, done)

    win.frameShown.connect(on_frame)


def shoot(win, app, out: str, frames: int, has_source: bool) -> list[int]:
    """Grab ``win`` into ``out`` once ``frames`` frames were shown (or at the end, a timeout, or a
    source that cannot open), then quit ``app``. The returned list's one item is the exit status
    (1 when no frame was shown), set by the time the event loop ends."""
    rc = [0]
    target = max(1, frames)
    comparing: list[bool] = []

    def done() -> None:
        win._update_status()  # fps, latency and provider as of the last frame, not the last tick
        win.grab().save(out)
        sys.stderr.write(f"loupe: saved {out} after {win.shown} frames\n")
        win.close()
        app.quit()

    def on_frame(_fr) -> None:
        if win.shown >= target:
            win.frameShown.disconnect(on_frame)
            if win.player is not None:
                win.player.pause()
            if os.environ.get("LOUPE_SCREENSHOT_COMPARE"):  # compression panel: build the report first
                if compare_then(win, lambda: QTimer.singleShot(300, done)):
                    comparing.append(True)
                    return
            QTimer.singleShot(100, done)  # let the last paint land

    def on_end_or_timeout() -> None:
        if win.isVisible() and not comparing:
            rc[0] = 1 if win.shown == 0 else 0
            done()

    win.frameShown.connect(on_frame)
    QTimer.singleShot(int(1000 * max(30.0, target * 0.5)), on_end_or_timeout)
    if not has_source:  # nothing to play: shoot the window as it is
        QTimer.singleShot(1000, done)
    else:  # a source that cannot open: shoot the window with its message, exit 1
        def on_error(_msg: str) -> None:
            if win.shown == 0 and win.player is None:
                rc[0] = 1
                QTimer.singleShot(300, done)

        win.errorShown.connect(on_error)
    return rc
