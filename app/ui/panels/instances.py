"""Instance segmentation panel: the detection panel (boxes, thresholds, classes, counts, plot,
box details) with every instance's mask over the frame, filled semi-transparent in its class
colour and outlined.

All masks are ONE ``ImageItem``: the result's instance-id map (display resolution) turned into an
RGBA image through a per-instance colour table (``mask_rgba``), outlines where the id changes
from one pixel to the next. It follows the boxes item (the panel's ``overlay``): shown, hidden
(the window's overlay toggle), faded and stacked with it, just behind it; a hidden class hides
its masks.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QCheckBox, QFormLayout

from loupe.ui.panels.base import percent_slider
from loupe.ui.panels.detection import DetectionPanel, connect_panel

if TYPE_CHECKING:
    from loupe.tasks.instances import InstancesResult

FILL_KEY = "instances/fill"  # 0..1, the masks' fill opacity
OUTLINE_KEY = "instances/outlines"  # bool
DEFAULT_FILL = 0.45


def boundaries(ids: np.ndarray) -> np.ndarray:
    """Pixels of an instance whose right, left, lower or upper neighbour belongs to another
    instance (or none): the outlines (bool, the map's shape)."""
    edge = np.zeros(ids.shape, bool)
    dx = np.not_equal(ids[:, 1:], ids[:, :-1])
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    dy = np.not_equal(ids[1:], ids[:-1])
    edge[1:] |= dy
    edge[:-1] |= dy
    edge &= ids > 0
    return edge


def mask_rgba(ids: np.ndarray, classes: np.ndarray, palette: np.ndarray, visible: np.ndarray,
              fill: float = DEFAULT_FILL, outlines: bool = True) -> np.ndarray:
    """(h, w, 4) uint8: each instance's pixels in its class colour at ``fill`` opacity, its outline
    opaque; nothing where no instance is or the instance's class is hidden. One table look-up of
    4-byte pixels: ids ``0 .. n`` fill, ``n + 1 ..`` the same instances' outline pixels."""
    n = len(classes)
    lut = np.zeros((2 * (n + 1), 4), np.uint8)
    if n:
        c = np.asarray(classes, np.int64)
        pal = np.asarray(palette, np.uint8).reshape(-1, 3)
        shown = np.ones(n, bool)
        ok = (c >= 0) & (c < len(visible))
        shown[ok] = np.asarray(visible, bool)[c[ok]]
        for base, alpha in ((1, round(255 * min(max(fill, 0.0), 1.0))), (n + 2, 255)):
            lut[base:base + n, :3] = pal[c % len(pal)]
            lut[base:base + n, 3] = np.where(shown, alpha, 0)
    index = ids.astype(np.int32)
    if outlines and n:
        index += boundaries(ids).view(np.uint8) * np.int32(n + 1)
    return lut.view(np.uint32).reshape(-1)[index].view(np.uint8).reshape(*ids.shape, 4)


class InstancesPanel(DetectionPanel):
    """The detection panel plus the masks item, a fill opacity and an outline switch."""

    def __init__(self, labels, palette, title: str = "", **kw) -> None:
        super().__init__(labels, palette, title or "Instance segmentation", **kw)
        self.fill = DEFAULT_FILL
        self.outlines = True
        self.masks_item = pg.ImageItem(axisOrder="row-major")
        self.masks_item.setVisible(False)
        self._mask_rect: tuple[int, int] | None = None
        self._shown = False  # the last result has masks to show
        # shown, hidden (the window's overlay toggle), faded and stacked with the boxes, just behind
        self.overlay.visibleChanged.connect(self._follow_overlay)
        self.overlay.opacityChanged.connect(self._follow_overlay)
        self.overlay.zChanged.connect(self._follow_overlay)
        self._follow_overlay()

        form = QFormLayout()
        self.fill_slider = percent_slider(round(100 * self.fill), self._on_fill,
                                          "Opacity of the masks' fill (outlines stay opaque)")
        form.addRow("Mask fill", self.fill_slider)
        self.outline_box = QCheckBox("Outline each mask")
        self.outline_box.setChecked(True)
        self.outline_box.toggled.connect(self._on_outlines)
        form.addRow(self.outline_box)
        lay = self.layout()
        lay.insertLayout(lay.indexOf(self.table), form)

    # --- the frame view ----------------------------------------------------------------------
    def frame_items(self) -> tuple[tuple[pg.GraphicsObject, bool], ...]:
        return (*super().frame_items(), (self.masks_item, False))

    def attach(self, view_box: pg.ViewBox) -> None:
        super().attach(view_box)
        self._follow_overlay()

    def _follow_overlay(self) -> None:
        self.masks_item.setVisible(self._shown and self.overlay.isVisible())
        self.masks_item.setOpacity(self.overlay.opacity())
        self.masks_item.setZValue(self.overlay.zValue() - 0.5)

    # --- view of a result --------------------------------------------------------------------
    def show_result(self, result: InstancesResult, frame_hw: tuple[int, int], index: int,
                    update_slow: bool = True) -> None:
        super().show_result(result, frame_hw, index, update_slow)
        self._mask_rect = (frame_hw[0], frame_hw[1])
        self.draw_masks()

    def draw_masks(self) -> None:
        """The last result's masks as one RGBA image over the frame on screen."""
        r = self.last
        ids = getattr(r, "masks", None)
        self._shown = not (r is None or ids is None or self._mask_rect is None or not ids.size)
        if not self._shown:
            self.masks_item.setVisible(False)
            return
        rgba = mask_rgba(ids, r.classes, self.palette, self.visible, self.fill, self.outlines)
        self.masks_item.setImage(rgba, autoLevels=False, levels=(0, 255))
        h, w = self._mask_rect
        self.masks_item.setRect(QRectF(0, 0, w, h))  # the map's pixels stretched over the frame shown
        self._follow_overlay()

    def mask_area_at(self, i: int) -> int:
        return int(self.last.mask_areas[i])

    def pick(self, x: float, y: float) -> int | None:
        """The box details (detection's), with the instance's mask area."""
        i = super().pick(x, y)
        if i is not None and getattr(self.last, "mask_areas", None) is not None:
            self.details.setText(self.details.text() + f"<br>mask {self.mask_area_at(i)} px")
        return i

    def value_at(self, x: float, y: float) -> str | None:
        """The instance whose mask is under frame pixel (x, y), else detection's box readout."""
        r = self.last
        ids = getattr(r, "masks", None)
        if ids is not None and self._mask_rect is not None and ids.size:
            h, w = self._mask_rect
            row, col = math.floor(y * ids.shape[0] / h), math.floor(x * ids.shape[1] / w)
            if 0 <= row < ids.shape[0] and 0 <= col < ids.shape[1]:
                k = int(ids[row, col]) - 1
                if k >= 0 and self.overlay.kept()[k]:
                    return self.overlay.label_text(k) + " (mask)"
        return super().value_at(x, y)

    # --- controls -----------------------------------------------------------------------------
    def set_fill(self, value: float) -> None:
        self.fill_slider.setValue(round(100 * value))

    def set_outlines(self, on: bool) -> None:
        self.outline_box.setChecked(on)

    def _on_fill(self, v: int) -> None:
        self.fill = v / 100.0
        self.draw_masks()
        self.settingsChanged.emit()

    def _on_outlines(self, on: bool) -> None:
        self.outlines = bool(on)
        self.draw_masks()
        self.settingsChanged.emit()

    def _on_item(self, item) -> None:
        super()._on_item(item)
        if item.column() == 0:
            self.draw_masks()  # a hidden class hides its masks


def make_panel(model, host) -> InstancesPanel:
    """The registry's panel factory: detection's wiring (``connect_panel``: thresholds and
    tracking go to the task, re-running a paused frame; settings kept) plus the masks' fill and
    outlines as the user last left them."""
    task = model.task
    panel = InstancesPanel(task.labels, task.palette, title=model.engine.card.name or model.name,
                           score_threshold=task.score_threshold, iou_threshold=task.iou_threshold,
                           needs_nms=task.needs_nms)
    connect_panel(panel, task, host)
    s = host.settings
    panel.set_fill(float(s.value(FILL_KEY, DEFAULT_FILL)))
    panel.set_outlines(str(s.value(OUTLINE_KEY, "true")).lower() in ("true", "1"))

    def save(p: InstancesPanel = panel) -> None:
        s.setValue(FILL_KEY, p.fill)
        s.setValue(OUTLINE_KEY, p.outlines)

    panel.settingsChanged.connect(save)
    return panel
