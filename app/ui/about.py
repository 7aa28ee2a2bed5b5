"""Help → About: name, version, and the system report (``loupe sysinfo``) with a Copy button."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase, QGuiApplication, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from loupe import __version__

logger = logging.getLogger(__name__)

DESCRIPTION = "See what your exported vision model does, live."


class AboutDialog(QDialog):
    """Loupe's name, version and one-line description over a read-only system report.

    ``info_text`` replaces the report (tests); by default it is ``format_system_info()``.
    """

    def __init__(self, parent: QWidget | None = None, info_text: str | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About Loupe")
        self.setObjectName("aboutDialog")
        if info_text is None:
            from loupe.sysinfo import format_system_info

            QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
            try:
                info_text = format_system_info()
            finally:
                QGuiApplication.restoreOverrideCursor()
        self.info_text = info_text

        icon = QLabel()
        pix = _icon_pixmap(64)
        if pix is not None:
            icon.setPixmap(pix)
        title = QLabel(f"<b style='font-size:16pt'>Loupe</b>&nbsp;&nbsp;{__version__}")
        title.setObjectName("aboutTitle")
        title.setTextFormat(Qt.TextFormat.RichText)
        desc = QLabel(DESCRIPTION)
        desc.setWordWrap(True)
        head_text = QVBoxLayout()
        head_text.addWidget(title)
        head_text.addWidget(desc)
        head_text.addStretch(1)
        head = QHBoxLayout()
        head.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        head.addLayout(head_text, 1)

        self.text = QPlainTextEdit(info_text)
        self.text.setObjectName("aboutSystemInfo")
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))

        self.status = QLabel("")
        self.status.setObjectName("aboutStatus")
        buttons = QDialogButtonBox()
        self.copy_button = QPushButton("Copy")
        self.copy_button.setObjectName("aboutCopy")
        self.copy_button.setToolTip("Copy the system report to the clipboard (for a bug report)")
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.close_button = buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.copy_button.clicked.connect(self.copy_to_clipboard)
        buttons.rejected.connect(self.reject)

        lay = QVBoxLayout(self)
        lay.addLayout(head)
        lay.addWidget(QLabel("System information:"))
        lay.addWidget(self.text, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(buttons)
        lay.addLayout(bottom)
        self.resize(760, 520)

    def copy_to_clipboard(self) -> None:
        QGuiApplication.clipboard().setText(self.info_text)
        self.status.setText("Copied to the clipboard.")
        logger.debug("system report copied to the clipboard")


def _icon_pixmap(size: int) -> QPixmap | None:
    from loupe.resources import icon_path

    try:
        pix = QPixmap(str(icon_path(size)))
    except FileNotFoundError:
        return None
    return None if pix.isNull() else pix


def show_about(parent: QWidget | None = None) -> AboutDialog:
    """Open the About dialog (window-modal, returns at once; the dialog deletes itself on close)."""
    dlg = AboutDialog(parent)
    dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dlg.open()
    return dlg
