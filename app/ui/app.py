"""Start the window: open what the command line asks for, or the bundled demo."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

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
    size = getattr(args, "size", None)  # (w, h), parsed by the CLI
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
        from loupe.ui.screenshot import prepare

        prepare(win, size)
    elif size is not None:
        win.resize(*size)
    win.show()
    rc = [0]
    if screenshot:
        from loupe.ui.screenshot import shoot

        rc = shoot(win, app, screenshot, args.frames, bool(paths) or args.camera is not None)
    signal.signal(signal.SIGINT, lambda *a: app.quit())
    app.exec()
    return rc[0]
