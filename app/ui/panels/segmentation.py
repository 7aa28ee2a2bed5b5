"""Segmentation panel: class overlay (fill or contour), opacity, per-class show/hide, legend.

A thin view over ``SegmentationResult``: the worker sends a uint8 class map at display resolution;
this panel colours it through the overlay item's lookup table, so hiding a class or changing the
opacity edits the table (or the item's opacity) and costs nothing per pixel.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from loupe.tasks.segmentation import NO_CLASS, SegmentationResult
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)


def make_lut(palette: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """256 x 4 RGBA table: class k -> palette[k] (alpha 0 if hidden); unused rows transparent."""
    lut = np.zeros((256, 4), np.uint8)
    n = min(len(palette), 255)
    lut[:n, :3] = palette[:n]
    lut[:n, 3] = np.where(visible[:n], 255, 0)
    lut[NO_CLASS] = 0
    return lut


class SegmentationPanel(QWidget):
    """Controls and legend for one segmentation model; owns its overlay ImageItem."""

    settingsChanged = Signal()

    def __init__(self, labels: tuple[str, ...], palette: np.ndarray, title: str = "", parent=None) -> None:
        super().__init__(parent)
        self.labels = tuple(labels)
        self.palette = np.asarray(palette, np.uint8).reshape(-1, 3)
        self.visible = np.ones(len(self.labels), bool)
        self.mode = "fill"
        self.last: SegmentationResult | None = None
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setLevels([0, 255])
        self.overlay.setOpacity(0.5)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        head = QLabel(f"<b>{title or 'Segmentation'}</b>")
        head.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(head)
        form = QFormLayout()
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.setToolTip("Overlay opacity")
        self.opacity.valueChanged.connect(self._on_opacity)
        form.addRow("Opacity", self.opacity)
        self.mode_box = QComboBox()
        self.mode_box.addItems(["Fill", "Contour"])
        self.mode_box.setToolTip("Fill the classes or draw their outlines (C toggles)")
        self.mode_box.currentIndexChanged.connect(self._on_mode)
        form.addRow("Mode", self.mode_box)
        lay.addLayout(form)

        self.table = QTableWidget(len(self.labels), 2)
        self.table.setHorizontalHeaderLabels(["class", "area %"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        for k, lab in enumerate(self.labels):
            pm = QPixmap(14, 14)
            pm.fill(QColor(*[int(v) for v in self.palette[k]]))
            it = QTableWidgetItem(pm, lab)
            it.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            it.setCheckState(Qt.CheckState.Checked)
            self.table.setItem(k, 0, it)
            a = QTableWidgetItem("")
            a.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(k, 1, a)
        self.table.itemChanged.connect(self._on_item)
        lay.addWidget(self.table, 1)
        hint = QLabel("Tick a class to show or hide it.")
        hint.setStyleSheet("color: gray")
        lay.addWidget(hint)
        self._apply_lut()

    # --- view of a result ------------------------------------------------------------------
    def show_result(self, result: SegmentationResult, frame_hw: tuple[int, int], update_legend: bool = True) -> None:
        self.last = result
        img = result.class_map if self.mode == "fill" else result.contour_map
        self.overlay.setImage(img, autoLevels=False, levels=[0, 255])
        h, w = frame_hw
        if img.shape != (h, w):
            self.overlay.setRect(QRectF(0, 0, w, h))
        else:
            self.overlay.resetTransform()
        if update_legend:
            self.update_legend(result)

    def update_legend(self, result: SegmentationResult) -> None:
        self.table.blockSignals(True)
        for k, a in enumerate(result.class_area[: self.table.rowCount()]):
            self.table.item(k, 1).setText(f"{100 * a:.1f}")
        self.table.blockSignals(False)

    # --- controls --------------------------------------------------------------------------
    def set_opacity(self, value: float) -> None:
        self.opacity.setValue(round(100 * value))

    def set_mode(self, mode: str) -> None:
        self.mode_box.setCurrentIndex(0 if mode == "fill" else 1)

    def toggle_mode(self) -> None:
        self.set_mode("contour" if self.mode == "fill" else "fill")

    def set_class_visible(self, k: int, visible: bool) -> None:
        self.table.item(k, 0).setCheckState(Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked)

    def _on_opacity(self, v: int) -> None:
        self.overlay.setOpacity(v / 100.0)
        self.settingsChanged.emit()

    def _on_mode(self, i: int) -> None:
        self.mode = "fill" if i == 0 else "contour"
        if self.last is not None:
            img = self.last.class_map if self.mode == "fill" else self.last.contour_map
            self.overlay.setImage(img, autoLevels=False, levels=[0, 255])
        self.settingsChanged.emit()

    def _on_item(self, item: QTableWidgetItem) -> None:
        if item.column() != 0:
            return
        self.visible[item.row()] = item.checkState() == Qt.CheckState.Checked
        self._apply_lut()

    def _apply_lut(self) -> None:
        self.lut = make_lut(self.palette, self.visible)
        self.overlay.setLookupTable(self.lut)


if __name__ == "__main__":  # a preview fed a synthetic result
    import sys

    from loupe.tasks.segmentation import boundary_map
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    cm = np.zeros((120, 200), np.uint8)
    cm[:, 70:140] = 1
    cm[40:80, :] = 2
    area = np.bincount(cm.ravel(), minlength=3) / cm.size
    res = SegmentationResult(cm, boundary_map(cm), area, ("sky", "road", "rider"))
    panel = SegmentationPanel(res.labels, np.array([[70, 130, 180], [128, 64, 128], [255, 0, 0]]), "preview")
    view = pg.GraphicsLayoutWidget()
    vb = view.addViewBox(lockAspect=True, invertY=True)
    vb.addItem(panel.overlay)
    panel.show_result(res, cm.shape)
    panel.show()
    view.show()
    if "--quit" not in sys.argv:
        app.exec()
