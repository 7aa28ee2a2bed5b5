"""Test set-up: offscreen Qt, quiet OpenCV, isolated settings, tiny ONNX models built here."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import pytest

from tests.helpers import make_argmax_model


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Keep QSettings (recent files, opacity) out of the user's real config."""
    cfg = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(cfg))
    try:
        from PySide6.QtCore import QSettings
    except ImportError:
        yield
        return
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(cfg))
    yield


@pytest.fixture
def argmax_model(tmp_path):
    """An ONNX segmenter whose class is the brightest RGB channel (0 red, 1 green, 2 blue)."""
    return make_argmax_model(tmp_path / "argmax.onnx")


@pytest.fixture
def win(qtbot):
    """A shown main window that asks nothing (no task or add/replace questions); closed after."""
    from loupe.ui.main_window import MainWindow

    w = MainWindow(ask_task=False)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


@pytest.fixture(scope="session", autouse=True)
def _qt_teardown():
    """Close and delete every window (and its threads) while Qt and Python are both alive, so
    nothing Qt-owned is left for interpreter finalisation to collect."""
    yield
    import gc
    import sys

    if "PySide6.QtWidgets" not in sys.modules:
        return
    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        return
    for w in QApplication.topLevelWidgets():
        w.close()
        w.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    app.processEvents()
    gc.collect()
