"""The panel of a task that has none of its own: this frame's ``analyze`` values in a table.

A plug-in may register a task without a panel (``TaskSpec.panel`` None); its model still gets a
tab (which shows what ``loupe analyze`` would write for the frame on screen, and which closes like
any other) and draws nothing over the frame.
"""

from __future__ import annotations

import math
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from loupe.ui.panels.base import OverlayOnly


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return str(value)


class TablePanel(OverlayOnly, QWidget):
    """One row per ``analyze`` column of the task, with this frame's value."""

    def __init__(self, task: Any, title: str = "", parent=None) -> None:
        super().__init__(parent)
        self.task = task
        self.columns = list(task.columns())
        self.overlay = pg.ImageItem(axisOrder="row-major")  # draws nothing: the task has no view
        self._view_box = None
        self.last: Any = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        head = QLabel(f"<b>{title or task.name}</b> ({task.name})")
        head.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(head)
        self.table = QTableWidget(len(self.columns), 2)
        self.table.setHorizontalHeaderLabels(["column", "this frame"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for i, c in enumerate(self.columns):
            self.table.setItem(i, 0, QTableWidgetItem(c))
            self.table.setItem(i, 1, QTableWidgetItem(""))
        lay.addWidget(self.table, 1)

    def update_from(self, result: Any, frame: Any, slow: bool) -> None:
        self.last = result
        if slow:
            self.refresh_slow(result, frame)

    def refresh_slow(self, result: Any, frame: Any) -> None:
        row = self.task.row(result)
        for i, c in enumerate(self.columns):
            self.table.item(i, 1).setText(_text(row.get(c)))

    def reset_series(self) -> None:
        for i in range(len(self.columns)):
            self.table.item(i, 1).setText("")


def make_panel(model: Any, host: Any) -> TablePanel:
    return TablePanel(model.task, model.engine.card.name or model.name)
