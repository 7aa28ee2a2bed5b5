"""Run by tests/faults/test_sessions.py in a child process: open the window, start a job, close
the window while it runs, quit. Prints one line per step; the test reads them and stderr."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def wait(app, cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if cond():
            return True
        time.sleep(0.01)
    return False


def main(kind: str, model: str, clip: str, out: str) -> int:
    from PySide6.QtWidgets import QApplication

    from loupe.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    win = MainWindow(ask_task=False)
    win.show()
    loaded: list = []
    win.modelLoaded.connect(loaded.append)
    win.add_model(model)
    assert wait(app, lambda: bool(loaded), 60), "model did not load"
    opened: list = []
    win.sourceOpened.connect(opened.append)
    win.open_source(clip, playing=False)
    assert wait(app, lambda: bool(opened), 60), "clip did not open"
    if kind == "analysis":
        job = win.analyze_to(out)
        assert wait(app, lambda: Path(out).exists() and Path(out).read_text().count("\n") > 5, 60), "no rows"
    else:
        import loupe_models.fitters.anomaly as fa

        progressed: list = []
        job = win.learn(clip, 0.0, 2.0, 5.0, Path(out))  # a 5-minute budget: it is closed long before
        job.progressed.connect(lambda f, info: progressed.append(info))
        assert wait(app, lambda: any("loss" in i for i in progressed), 120), "fitting did not start"
        del fa
    t0 = time.monotonic()
    win.close()
    closed_in = time.monotonic() - t0
    print(f"closed in {closed_in:.2f} s; job running after close: {job.isRunning()}", flush=True)
    wait(app, lambda: False, 0.5)  # let queued signals of the finished job arrive
    win.deleteLater()
    app.processEvents()
    app.quit()
    print("clean exit", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
