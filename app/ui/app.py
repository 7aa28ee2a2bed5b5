"""Start the window: open what the command line asks for, or the bundled demo."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

logger = logging.getLogger(__name__)


def run_gui(args: argparse.Namespace) -> int:

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Loupe")
    app.setOrganizationName("Loupe")
    from PySide6.QtGui import QIcon

    from loupe.resources import resource_path

    app.setWindowIcon(QIcon(str(resource_path("icon.png"))))
    from loupe.ui.main_window import MainWindow

    screenshot = args.screenshot
    win = MainWindow(providers=args.providers, ask_task=not screenshot, lockstep=bool(screenshot))
    models = list(args.model)
    paths = list(args.paths)
    if not paths and args.camera is None and not args.no_demo:
        from loupe.base.media import demo_clip

        try:
            paths = [str(demo_clip())]
        except FileNotFoundError as e:
            win.show_error(str(e))
        if not models:
            from loupe.resources import demo_model

            try:
                models = [str(demo_model())]
            except FileNotFoundError as e:
                win.show_error(str(e))
    for m in models:
        win.add_model(m)
    if args.camera is not None:
        win.open_camera(args.camera, args.resolution)
    elif paths:
        win.open_paths(paths)
    if screenshot:
        win.resize(1400, 820)  # a fixed, README-sized window whatever the saved geometry
        win.resizeDocks([win.panel_dock, win.info_dock], [580, 200], Qt.Orientation.Vertical)
    win.show()

    rc = [0]
    if screenshot:
        target = max(1, args.frames)
        comparing: list[bool] = []

        def done() -> None:
            win._update_status()  # fps, latency and provider as of the last frame, not the last tick
            win.grab().save(screenshot)
            sys.stderr.write(f"loupe: saved {screenshot} after {win.shown} frames\n")
            win.close()
            app.quit()

        def on_frame(_fr) -> None:
            if win.shown >= target:
                win.frameShown.disconnect(on_frame)
                if win.player is not None:
                    win.player.pause()
                if os.environ.get("LOUPE_SCREENSHOT_COMPARE"):  # compression panel: build the report first
                    from loupe.ui.panels.compression import compare_then

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
        if not paths and args.camera is None:  # nothing to play: shoot the window as it is
            QTimer.singleShot(1000, done)
        else:  # a source that cannot open: shoot the window with its message, exit 1
            def on_error(_msg: str) -> None:
                if win.shown == 0 and win.player is None:
                    rc[0] = 1
                    QTimer.singleShot(300, done)

            win.errorShown.connect(on_error)
    signal.signal(signal.SIGINT, lambda *a: app.quit())
    app.exec()
    return rc[0]
