"""One graphics item that draws every detection box of a frame and its label tag.

A frame can hold hundreds of boxes (a crowd, a car park): they are drawn by one ``paint`` of one
item, not by an item or widget per box, so the scene stays small and a new frame is one
``update()``. Box outlines use a cosmetic pen (their width is in screen pixels at any zoom); the
label tags ("person 0.87", filled in the class colour, black or white text by the colour's
luminance) are drawn with the painter's transform reset, so their text keeps its size on screen
when the view zooms. Everything is clipped to the frame.

Coordinates are frame pixels of the frame on screen (the view box's coordinates).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPen


def text_colour(rgb) -> QColor:
    """Black on a light tag, white on a dark one (relative luminance of the sRGB colour, with
    the threshold where both give about the same contrast)."""
    c = np.asarray(rgb, np.float64)[:3] / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    lum = float(lin @ np.array([0.2126, 0.7152, 0.0722]))
    return QColor(0, 0, 0) if lum > 0.179 else QColor(255, 255, 255)


def pick_box(boxes: np.ndarray, keep: np.ndarray, x: float, y: float) -> int | None:
    """Index of the smallest kept box (x1, y1, x2, y2 rows) containing (x, y), or None."""
    if len(boxes) == 0:
        return None
    b = boxes
    inside = keep & (b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3])
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        return None
    area = (b[idx, 2] - b[idx, 0]) * (b[idx, 3] - b[idx, 1])
    return int(idx[int(np.argmin(area))])


class BoxesItem(pg.GraphicsObject):
    """All boxes of one result, with label tags; ``boundingRect`` is the frame."""

    PEN_PX = 2  # box outline width, screen pixels
    FONT_PX = 12  # label text height, screen pixels

    def __init__(self, palette: np.ndarray, labels: tuple[str, ...]) -> None:
        super().__init__()
        self.show_labels = True
        self.selected: int | None = None
        self._rect = QRectF(0, 0, 1, 1)
        self.boxes = np.zeros((0, 4), np.float32)
        self.scores = np.zeros(0, np.float32)
        self.classes = np.zeros(0, np.int32)
        self.font = QFont()
        self.font.setPixelSize(self.FONT_PX)
        self._fm = QFontMetricsF(self.font)
        self.set_labels(labels, palette)

    def set_labels(self, labels: tuple[str, ...], palette: np.ndarray) -> None:
        """The class names and colours (every class shown again)."""
        self.labels = tuple(labels)
        self.palette = np.asarray(palette, np.uint8).reshape(-1, 3)
        self.visible = np.ones(len(self.labels), bool)
        self._label_w = [self._fm.horizontalAdvance(f"{lab} ") for lab in self.labels]
        self._score_w = self._fm.horizontalAdvance("0.00")  # digits have one width in UI fonts
        self._colours = [QColor(*[int(v) for v in self._colour(k)]) for k in range(len(self.labels))]
        self._text_colours = [text_colour(self._colour(k)) for k in range(len(self.labels))]
        self.update()

    def _colour(self, k: int) -> np.ndarray:
        return self.palette[k % len(self.palette)] if len(self.palette) else np.array([255, 0, 0], np.uint8)

    # --- data --------------------------------------------------------------------------------
    def set_boxes(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                  frame_hw: tuple[int, int]) -> None:
        """Show these boxes (frame pixels) over a frame of ``frame_hw`` (height, width)."""
        h, w = frame_hw
        rect = QRectF(0, 0, float(w), float(h))
        if rect != self._rect:
            self.prepareGeometryChange()
            self._rect = rect
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.scores = np.asarray(scores, np.float32).reshape(-1)
        self.classes = np.asarray(classes, np.int64).reshape(-1)
        self.selected = None
        self.update()

    def set_visible_classes(self, visible: np.ndarray) -> None:
        self.visible = np.asarray(visible, bool).copy()
        self.update()

    def set_show_labels(self, on: bool) -> None:
        self.show_labels = bool(on)
        self.update()

    def set_selected(self, index: int | None) -> None:
        self.selected = index
        self.update()

    def kept(self) -> np.ndarray:
        """Which boxes are drawn: those of shown classes (a class index past the labels is shown)."""
        c = self.classes
        ok = (c >= 0) & (c < len(self.visible))
        keep = np.ones(len(c), bool)
        keep[ok] = self.visible[c[ok]]
        return keep

    def box_at(self, x: float, y: float) -> int | None:
        """The smallest drawn box containing frame point (x, y)."""
        return pick_box(self.boxes, self.kept(), x, y)

    def label_text(self, i: int) -> str:
        c = int(self.classes[i])
        name = self.labels[c] if 0 <= c < len(self.labels) else f"class {c}"
        return f"{name} {float(self.scores[i]):.2f}"

    # --- drawing -----------------------------------------------------------------------------
    def boundingRect(self) -> QRectF:
        return QRectF(self._rect)

    def paint(self, p: QPainter, *args) -> None:
        if len(self.boxes) == 0:
            return
        keep = self.kept()
        idx = np.flatnonzero(keep)
        if idx.size == 0:
            return
        p.setClipRect(self._rect)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        p.setBrush(Qt.BrushStyle.NoBrush)
        b = self.boxes
        cls = self.classes
        for c in np.unique(cls[idx]):  # one pen per class, its boxes in one call
            sel = idx[cls[idx] == c]
            pen = QPen(self._class_qcolour(int(c)), self.PEN_PX)
            pen.setCosmetic(True)
            pen.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
            p.setPen(pen)
            p.drawRects([QRectF(float(r[0]), float(r[1]), float(r[2] - r[0]), float(r[3] - r[1])) for r in b[sel]])
        if self.selected is not None and 0 <= self.selected < len(b) and keep[self.selected]:
            r = b[self.selected]
            rect = QRectF(float(r[0]), float(r[1]), float(r[2] - r[0]), float(r[3] - r[1]))
            pen = QPen(QColor(255, 255, 255), self.PEN_PX + 3)
            pen.setCosmetic(True)
            p.setPen(pen)
            p.drawRect(rect)
            pen = QPen(self._class_qcolour(int(cls[self.selected])), self.PEN_PX + 1)
            pen.setCosmetic(True)
            p.setPen(pen)
            p.drawRect(rect)
        if self.show_labels:
            self._paint_tags(p, idx)

    def _class_qcolour(self, c: int) -> QColor:
        return self._colours[c] if 0 <= c < len(self._colours) else QColor(255, 0, 0)

    def _paint_tags(self, p: QPainter, idx: np.ndarray) -> None:
        """The label tags, in screen pixels: the transform is reset (the clip set above stays in
        device coordinates), each tag sits on its box's top-left corner, above the box where the
        frame has room, inside it otherwise, and kept inside the frame's right edge."""
        t = p.transform()
        frame = t.mapRect(self._rect)
        p.resetTransform()
        p.setFont(self.font)
        th = self._fm.height() + 2
        pad = 3.0
        ascent = self._fm.ascent() + 1
        # higher scores last: where tags overlap, the most confident one is on top
        for i in idx[::-1]:
            c = int(self.classes[i])
            tl = t.map(QPointF(float(self.boxes[i, 0]), float(self.boxes[i, 1])))
            known = 0 <= c < len(self.labels)
            tw = (self._label_w[c] if known else self._fm.horizontalAdvance(f"class {c} ")) + self._score_w + 2 * pad
            x = min(tl.x(), frame.right() - tw)
            x = max(x, frame.left())
            y = tl.y() - th if tl.y() - th >= frame.top() else tl.y()
            p.fillRect(QRectF(x, y, tw, th), self._class_qcolour(c))
            p.setPen(self._text_colours[c] if known else QColor(255, 255, 255))
            p.drawText(QPointF(x + pad, y + ascent), self.label_text(int(i)))
        p.setTransform(t)
