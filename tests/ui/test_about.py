"""Help → About: the dialog shows name, version and the system report, and copies it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDialog, QLabel, QPlainTextEdit, QWidget

import loupe
from loupe.ui.about import DESCRIPTION, AboutDialog, show_about

REPORT = "Loupe: 0.1.0\nGPU:   none found (test)"


def test_dialog_shows_name_version_description_and_report(qtbot):
    dlg = AboutDialog(None, info_text=REPORT)
    qtbot.addWidget(dlg)
    labels = " ".join(lbl.text() for lbl in dlg.findChildren(QLabel))
    assert "Loupe" in labels and loupe.__version__ in labels and DESCRIPTION in labels
    box = dlg.findChild(QPlainTextEdit, "aboutSystemInfo")
    assert box is not None and box.isReadOnly()
    assert box.toPlainText() == REPORT
    assert dlg.copy_button.text() == "Copy"
    assert dlg.close_button is not None


def test_copy_puts_the_report_on_the_clipboard(qtbot):
    QGuiApplication.clipboard().setText("something else")
    dlg = AboutDialog(None, info_text=REPORT)
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.mouseClick(dlg.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == REPORT
    assert "Copied" in dlg.status.text()


def test_close_button_closes(qtbot):
    dlg = AboutDialog(None, info_text=REPORT)
    qtbot.addWidget(dlg)
    dlg.show()
    with qtbot.waitSignal(dlg.rejected, timeout=30000):
        qtbot.mouseClick(dlg.close_button, Qt.MouseButton.LeftButton)
    assert not dlg.isVisible()


def test_default_report_is_the_real_system_info(qtbot):
    dlg = AboutDialog()
    qtbot.addWidget(dlg)
    assert dlg.info_text.splitlines()[0].startswith("Loupe:")
    assert "ORT providers (load here):" in dlg.info_text


def test_show_about_opens_a_window_modal_dialog(qtbot, monkeypatch):
    import loupe.sysinfo

    monkeypatch.setattr(loupe.sysinfo, "format_system_info", lambda: REPORT)
    parent = QWidget()
    qtbot.addWidget(parent)
    parent.show()
    dlg = show_about(parent)
    assert isinstance(dlg, QDialog) and dlg.isVisible() and dlg.parent() is parent
    assert dlg.windowModality() == Qt.WindowModality.WindowModal
    assert dlg.info_text == REPORT
    dlg.close()
