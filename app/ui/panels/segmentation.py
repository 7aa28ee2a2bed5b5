"""Segmentation panel: class overlay (fill or contour), opacity, per-class show/hide, legend.

A thin view over ``SegmentationResult``: the worker sends a uint8 class map at display resolution;
this panel colours it through the overlay item's lookup table, so hiding a class or changing the
opacity edits the table (or the item's opacity) and costs nothing per pixel.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from loupe.tasks.segmentation import NO_CLASS, SegmentationResult
from loupe.ui import settings as keys
from loupe.ui.panels.base import OverlayOnly, opacity_slider, swatch, titled_layout, value_under


def make_lut(palette: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """256 x 4 RGBA table: class k -> palette[k] (alpha 0 if hidden); unused rows transparent."""
    lut = np.zeros((256, 4), np.uint8)
    n = min(len(palette), 255)
    lut[:n, :3] = palette[:n]
    lut[:n, 3] = np.where(visible[:n], 255, 0)
    lut[NO_CLASS] = 0
    return lut


class SegmentationPanel(OverlayOnly, QWidget):
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

        lay = titled_layout(self, title or "Segmentation")
        form = QFormLayout()
        self.opacity = opacity_slider(self.overlay, 50, self.settingsChanged.emit)
        self.opacity.setToolTip("Overlay opacity")
        form.addRow("Opacity", self.opacity)
        self.mode_box = QComboBox()
        self.mode_box.addItems(["Fill", "Contour"])
        self.mode_box.setToolTip("Fill the classes or draw their outlines (C toggles)")
        self.mode_box.currentIndexChanged.connect(self._on_mode)
        form.addRow("Mode", self.mode_box)
        lay.addLayout(form)

        self.table = QTableWidget(len(self.labels), 4)
        self.table.setHorizontalHeaderLabels(["class", "area %", "mm²", "mL"])
        self.table.setColumnHidden(2, True)
        self.table.setColumnHidden(3, True)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2, 3):
            self.table.horizontalHeader().setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        for k, lab in enumerate(self.labels):
            pm = swatch(self.palette[k])
            it = QTableWidgetItem(pm, lab)
            it.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            it.setCheckState(Qt.CheckState.Checked)
            self.table.setItem(k, 0, it)
            for col in (1, 2, 3):
                a = QTableWidgetItem("")
                a.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(k, col, a)
        self.table.itemChanged.connect(self._on_item)
        lay.addWidget(self.table, 1)
        self.hint = QLabel("Tick a class to show or hide it.")
        self.hint.setStyleSheet("color: gray")
        self.hint.setWordWrap(True)
        lay.addWidget(self.hint)
        self.slice_mm2: dict[int, np.ndarray] = {}  # frame index -> mm² per class (a series)
        self.slice_spacing_mm: float | None = None
        self.series_frames: int | None = None
        self._apply_lut()

    # --- view of a result ------------------------------------------------------------------
    # (attach, detach, shutdown: OverlayOnly's)
    def refresh_slow(self, result: SegmentationResult, frame) -> None:
        """Bring the legend up to date with the last shown result."""
        self.update_legend(result)

    def update_from(self, result: SegmentationResult, frame, slow: bool) -> None:
        """The window's per-result call: ``slow`` is True at most a few times a second (legend)."""
        if result.class_area_mm2 is not None:
            md = frame.metadata
            self.record_slice(frame.index, result, md.get("slice_spacing_mm"), md.get("series_frames"))
        self.show_result(result, (frame.height, frame.width), slow)

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

    def value_at(self, x: float, y: float) -> str | None:
        """The class under frame pixel (x, y) in the last result (the status bar's readout)."""
        k = value_under(self.overlay, None if self.last is None else self.last.class_map, x, y)
        return self.labels[int(k)] if k is not None and int(k) < len(self.labels) else None

    def reset_series(self) -> None:
        """A new source: forget the per-slice areas behind the volume column."""
        self.slice_mm2.clear()
        self.slice_spacing_mm = None
        self.series_frames = None

    def record_slice(self, index: int, result: SegmentationResult, slice_spacing_mm, series_frames) -> None:
        """Keep this slice's mm² so the legend can show the volume over the slices seen."""
        if result.class_area_mm2 is None:
            return
        self.slice_mm2[index] = result.class_area_mm2
        self.slice_spacing_mm = float(slice_spacing_mm) if slice_spacing_mm else None
        self.series_frames = int(series_frames) if series_frames else None

    def volume_ml(self) -> np.ndarray | None:
        if not self.slice_mm2 or not self.slice_spacing_mm:
            return None
        return np.sum(list(self.slice_mm2.values()), axis=0) * self.slice_spacing_mm / 1000.0

    def update_legend(self, result: SegmentationResult) -> None:
        self.table.blockSignals(True)
        n = self.table.rowCount()
        for k, a in enumerate(result.class_area[:n]):
            self.table.item(k, 1).setText(f"{100 * a:.1f}")
        has_mm2 = result.class_area_mm2 is not None
        self.table.setColumnHidden(2, not has_mm2)
        if has_mm2:
            for k, a in enumerate(result.class_area_mm2[:n]):
                self.table.item(k, 2).setText(f"{a:.1f}")
        vol = self.volume_ml()
        self.table.setColumnHidden(3, vol is None)
        if vol is not None:
            for k, v in enumerate(vol[:n]):
                self.table.item(k, 3).setText(f"{v:.2f}")
            seen = len(self.slice_mm2)
            total = f" of {self.series_frames}" if self.series_frames else ""
            noun = "slice" if (self.series_frames or seen) == 1 else "slices"
            self.hint.setText(
                f"mL: volume over the {seen}{total} {noun} shown so far "
                f"({self.slice_spacing_mm:g} mm apart). Tick a class to show or hide it."
            )
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



def make_panel(model, host) -> SegmentationPanel:
    """The registry's panel factory (``loupe.ui.panels.base``): opacity and fill/contour as the
    user last left them, saved again when changed."""
    task = model.task
    panel = SegmentationPanel(task.labels, task.palette, title=model.engine.card.name or model.name)
    panel.set_opacity(float(host.settings.value(keys.SEGMENTATION_OPACITY, 0.5)))
    panel.set_mode(str(host.settings.value(keys.SEGMENTATION_MODE, "fill")))
    if task.binary:  # a foreground/background model: show the foreground only at first
        panel.set_class_visible(0, False)

    def save(p: SegmentationPanel = panel) -> None:
        host.settings.setValue(keys.SEGMENTATION_OPACITY, p.opacity.value() / 100.0)
        host.settings.setValue(keys.SEGMENTATION_MODE, p.mode)

    panel.settingsChanged.connect(save)
    return panel


if __name__ == "__main__":  # a preview fed a synthetic result
    from loupe.tasks.segmentation import boundary_map
    from loupe.ui.panels.base import preview_app, run_preview

    app = preview_app()
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
    run_preview(app, panel, view)
