"""The frame view: the frame and one overlay item per model, in a pyqtgraph ViewBox."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from loupe.inference.preprocess import window_levels
from loupe.sources.base import Frame
from PySide6.QtCore import QRectF, Qt


class FrameView(pg.GraphicsLayoutWidget):
    """Shows frames; overlays are ImageItems added above the frame (one per panel)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setBackground("#202124")
        self.vb = self.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.vb.setDefaultPadding(0.0)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.vb.addItem(self.image)
        self.text = pg.TextItem("", color="#e8eaed", anchor=(0, 0), fill=pg.mkBrush(0, 0, 0, 140))
        self.text.setZValue(100)
        self.vb.addItem(self.text, ignoreBounds=True)
        self._shape: tuple[int, ...] | None = None
        self._levels: tuple[float, float] | None = None
        self.placeholder = pg.TextItem(
            "Drop a video, image, folder, DICOM file or .onnx model here", color="#9aa0a6", anchor=(0.5, 0.5)
        )
        self.vb.addItem(self.placeholder)
        self.placeholder.setPos(320, 136)
        self.vb.setRange(QRectF(0, 0, 640, 272), padding=0)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)

    def add_overlay(self, item: pg.ImageItem, z: float = 10) -> None:
        item.setZValue(z)
        self.vb.addItem(item)

    def show_frame(self, frame: Frame) -> None:
        p = frame.pixels
        if p.ndim == 3 and p.shape[2] == 4:
            p = p[:, :, :3]
        if p.ndim == 3 and p.shape[2] == 1:
            p = p[:, :, 0]
        if p.dtype == np.uint8 and p.ndim == 3:
            levels: tuple[float, float] = (0.0, 255.0)
        else:  # greyscale, DICOM (float32 HU): fixed window levels, no per-frame sampling
            levels = window_levels(frame)
            if p.dtype not in (np.uint8, np.uint16, np.float32):
                p = p.astype(np.float32)
        if self.placeholder is not None:
            self.vb.removeItem(self.placeholder)
            self.placeholder = None
        self.image.setImage(p, autoLevels=False, levels=levels)
        self._levels = levels
        if self._shape != p.shape[:2]:
            self._shape = p.shape[:2]
            self.vb.setRange(QRectF(0, 0, p.shape[1], p.shape[0]), padding=0)

    @property
    def frame_shape(self) -> tuple[int, ...] | None:
        return self._shape

    def set_caption(self, text: str) -> None:
        self.text.setText(text)
        self.text.setPos(0, 0)
