"""A panel's pictures in the main frame view: a "Show in main view" button puts a panel's image
(the codec streams, the split view, the real/predicted pair) over the frame, fitted into the
frame's rectangle with its aspect kept, on black; the dock keeps the plots. Off again: the frame."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QPushButton

Z = 500  # above the frame and every overlay


def fit_rect(img_hw: tuple[int, int], frame_hw: tuple[int, int]) -> QRectF:
    """The largest rectangle of ``img_hw``'s aspect centred in the frame ``frame_hw``."""
    ih, iw = img_hw
    fh, fw = frame_hw
    s = min(fw / max(iw, 1), fh / max(ih, 1))
    w, h = iw * s, ih * s
    return QRectF((fw - w) / 2, (fh - h) / 2, w, h)


def mosaic(images: list[np.ndarray | None], cols: int = 2) -> np.ndarray | None:
    """Images of one size in a grid (a missing one grey); None when there is none."""
    real = [im for im in images if im is not None]
    if not real:
        return None
    h, w = real[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    out = np.full((rows * h, cols * w, 3), 60, np.uint8)
    for i, im in enumerate(images):
        if im is not None and im.shape[:2] == (h, w):
            r, c = divmod(i, cols)
            out[r * h:(r + 1) * h, c * w:(c + 1) * w] = im[..., :3]
    return out


class BigView:
    """The items a panel shows over the main view while its button is down."""

    def __init__(self, tooltip: str) -> None:
        self.button = QPushButton("Show in main view")
        self.button.setCheckable(True)
        self.button.setToolTip(tooltip)
        self.backdrop = pg.ImageItem(np.zeros((2, 2), np.uint8), axisOrder="row-major", levels=(0, 255))
        self.image = pg.ImageItem(axisOrder="row-major")
        self.backdrop.setZValue(Z)
        self.image.setZValue(Z + 1)
        self.labels: list[pg.TextItem] = []
        self._view_box: pg.ViewBox | None = None
        self.button.toggled.connect(self._on_toggle)
        self._on_toggle(False)

    @property
    def active(self) -> bool:
        return self.button.isChecked() and self._view_box is not None

    def attach(self, view_box: pg.ViewBox) -> None:
        self._view_box = view_box
        view_box.addItem(self.backdrop, ignoreBounds=True)
        view_box.addItem(self.image, ignoreBounds=True)
        for t in self.labels:
            view_box.addItem(t, ignoreBounds=True)

    def detach(self) -> None:
        if self._view_box is not None:
            for item in (self.backdrop, self.image, *self.labels):
                self._view_box.removeItem(item)
        self._view_box = None

    def set_captions(self, texts: list[tuple[str, float, float]]) -> None:
        """Captions at fractions (fx, fy) of the shown image's rectangle."""
        while len(self.labels) < len(texts):
            t = pg.TextItem("", color="w", fill=pg.mkBrush(0, 0, 0, 170))
            t.setZValue(Z + 2)
            t.setVisible(self.button.isChecked())
            self.labels.append(t)
            if self._view_box is not None:
                self._view_box.addItem(t, ignoreBounds=True)
        self._captions = texts
        for i, t in enumerate(self.labels):
            t.setText(texts[i][0] if i < len(texts) else "")

    def show(self, img: np.ndarray | None, frame_hw: tuple[int, int] | None) -> None:
        """Put ``img`` over the frame (when the button is down); None clears it."""
        if not self.active or frame_hw is None:
            return
        fh, fw = frame_hw
        self.backdrop.setRect(QRectF(0, 0, fw, fh))
        if img is None:
            self.image.clear()
            return
        rect = fit_rect(img.shape[:2], frame_hw)
        self.image.setImage(img, autoLevels=False, levels=(0, 255))
        self.image.setRect(rect)
        for t, (_text, fx, fy) in zip(self.labels, getattr(self, "_captions", [])):
            t.setPos(rect.left() + fx * rect.width(), rect.top() + fy * rect.height())

    def _on_toggle(self, on: bool) -> None:
        for item in (self.backdrop, self.image, *self.labels):
            item.setVisible(on)
