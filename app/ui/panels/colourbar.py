"""A small painted colour bar for a heatmap overlay: the colour table left to right (over a
chequer, so the alpha ramp shows), the range's ends and its unit."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QSize
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget


class ColourBar(QWidget):
    """``lut`` (N x 4 RGBA uint8) from ``lo`` to ``hi`` in ``unit``; ``set_range`` as the range changes."""

    def __init__(self, lut: np.ndarray, unit: str, lo: float = 0.0, hi: float = 1.0, parent=None) -> None:
        super().__init__(parent)
        self.lut = np.ascontiguousarray(lut, np.uint8)
        self.unit = unit
        self.lo, self.hi = float(lo), float(hi)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip(f"Colour scale of the overlay ({unit})")

    def set_range(self, lo: float, hi: float) -> None:
        self.lo, self.hi = float(lo), float(hi)
        self.update()

    def labels(self) -> tuple[str, str]:
        return f"{self.lo:.3g}", f"{self.hi:.3g} {self.unit}"

    def sizeHint(self) -> QSize:
        fm = self.fontMetrics()
        lo, hi = self.labels()
        return QSize(fm.horizontalAdvance(lo) + fm.horizontalAdvance(hi) + 80, fm.height() + 16)

    def minimumSizeHint(self) -> QSize:
        return self.sizeHint()

    def paintEvent(self, _ev) -> None:
        fm = self.fontMetrics()
        lo, hi = self.labels()
        p = QPainter(self)
        bar = QRect(0, 0, self.width() - 1, 12)
        for i in range(0, bar.width(), 6):  # chequer under the table: alpha shows as see-through
            p.fillRect(i, 0, 6, 6, QColor(200, 200, 200) if i // 6 % 2 else QColor(90, 90, 90))
            p.fillRect(i, 6, 6, 6, QColor(90, 90, 90) if i // 6 % 2 else QColor(200, 200, 200))
        rgba = np.ascontiguousarray(np.repeat(self.lut[None], 2, axis=0))
        img = QImage(rgba.data, rgba.shape[1], 2, rgba.shape[1] * 4, QImage.Format.Format_RGBA8888)
        p.drawImage(bar, img)
        p.setPen(self.palette().windowText().color())
        p.drawRect(bar)
        y = 12 + fm.ascent() + 2
        p.drawText(0, y, lo)
        p.drawText(self.width() - fm.horizontalAdvance(hi) - 1, y, hi)
        p.end()
        del rgba  # the image read it while painting

