"""One graphics item that draws every detection box of a frame and its label tag.

A frame can hold hundreds of boxes (a crowd, a car park): they are drawn by one ``paint`` of one
item, not by an item or widget per box, so the scene stays small and a new frame is one
``update()``. Box outlines use a cosmetic pen (their width is in screen pixels at any zoom); the
label tags ("person 0.87", filled in the class colour, black or white text by the colour's
luminance) are drawn with the painter's transform reset, so their text keeps its size on screen
when the view zooms. A tag goes above its box, or inside the box's top where a more confident
box's tag is already there (``place_tags``). With tracking on, tags start with the track ID
("#12 person 0.87") and each track's recent centres are drawn as a thin line in its class colour
(its trail), by the same item. Everything is clipped to the frame.

Coordinates are frame pixels of the frame on screen (the view box's coordinates).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPen, QPolygonF, QStaticText

from loupe.ui.panels.screen_px import ScreenPx

BLACK, WHITE = QColor(0, 0, 0), QColor(255, 255, 255)


def text_colour(rgb) -> QColor:
    """Black on a light tag, white on a dark one (relative luminance of the sRGB colour, with
    the threshold where both give about the same contrast)."""
    c = np.asarray(rgb, np.float64)[:3] / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    lum = float(lin @ np.array([0.2126, 0.7152, 0.0722]))
    return BLACK if lum > 0.179 else WHITE


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


class BoxesItem(ScreenPx, pg.GraphicsObject):
    """All boxes of one result, with label tags; ``boundingRect`` is the frame."""

    PEN_PX = 2  # box outline width, screen pixels
    TRAIL_PX = 1.5  # trail width, screen pixels
    FONT_PX = 12  # label text height, screen pixels
    MAX_TEXTS = 4096  # laid-out tag texts kept (track IDs keep adding new ones)

    def __init__(self, palette: np.ndarray, labels: tuple[str, ...]) -> None:
        super().__init__()
        self.show_labels = True
        self.selected: int | None = None
        self._rect = QRectF(0, 0, 1, 1)
        self.boxes = np.zeros((0, 4), np.float32)
        self.scores = np.zeros(0, np.float32)
        self.classes = np.zeros(0, np.int32)
        self.track_ids = np.zeros(0, np.int64)
        self._trails: list[tuple[int, QPolygonF]] = []  # (class, centres oldest first)
        self._rects: list[QRectF] = []
        self._score_text: list[str] = []
        self._texts: dict[str, QStaticText] = {}
        self.font = QFont()
        self.screen_scale_changed()
        self.set_labels(labels, palette)

    def screen_scale_changed(self) -> None:
        """The tag font at ``FONT_PX`` screen pixels (times the screen scale), texts laid out again."""
        self.font.setPixelSize(max(1, round(self.px(self.FONT_PX))))
        self._fm = QFontMetricsF(self.font)
        self._texts.clear()

    def set_labels(self, labels: tuple[str, ...], palette: np.ndarray) -> None:
        """The class names and colours (every class shown again)."""
        self.labels = tuple(labels)
        self.palette = np.asarray(palette, np.uint8).reshape(-1, 3)
        self.visible = np.ones(len(self.labels), bool)
        self._texts.clear()
        self._colours = [QColor(*[int(v) for v in self._colour(k)]) for k in range(len(self.labels))]
        self._text_colours = [text_colour(self._colour(k)) for k in range(len(self.labels))]
        self.update()

    def _colour(self, k: int) -> np.ndarray:
        return self.palette[k % len(self.palette)] if len(self.palette) else np.array([255, 0, 0], np.uint8)

    # --- data --------------------------------------------------------------------------------
    def set_boxes(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                  frame_hw: tuple[int, int], track_ids: np.ndarray | None = None) -> None:
        """Show these boxes (frame pixels) over a frame of ``frame_hw`` (height, width), with
        their track IDs in the tags (0 or None: no ID)."""
        h, w = frame_hw
        rect = QRectF(0, 0, float(w), float(h))
        if rect != self._rect:
            self.prepareGeometryChange()
            self._rect = rect
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.scores = np.asarray(scores, np.float32).reshape(-1)
        self.classes = np.asarray(classes, np.int64).reshape(-1)
        self.track_ids = (np.zeros(len(self.classes), np.int64) if track_ids is None
                          else np.asarray(track_ids, np.int64).reshape(-1))
        # what paint() reads, as Qt and Python values once per result rather than per repaint
        self._rects = [QRectF(x1, y1, x2 - x1, y2 - y1) for x1, y1, x2, y2 in self.boxes.tolist()]
        self._score_text = [f"{v:.2f}" for v in self.scores.tolist()]
        self.selected = None
        self.update()

    def set_trails(self, trails: list[tuple[int, np.ndarray]]) -> None:
        """Trails to draw: (class, (K, 2) x, y centres in frame pixels, oldest first) per track;
        one point draws nothing."""
        self._trails = [(int(c), QPolygonF([QPointF(x, y) for x, y in np.asarray(pts, np.float64).tolist()]))
                        for c, pts in trails if len(pts) >= 2]
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
        """"person 0.87", or "#12 person 0.87" for a box of track 12."""
        c = int(self.classes[i])
        name = self.labels[c] if 0 <= c < len(self.labels) else f"class {c}"
        return f"{self._id_prefix(i)}{name} {float(self.scores[i]):.2f}"

    def _id_prefix(self, i: int) -> str:
        t = int(self.track_ids[i]) if i < len(self.track_ids) else 0
        return f"#{t} " if t > 0 else ""

    # --- drawing -----------------------------------------------------------------------------
    def boundingRect(self) -> QRectF:
        return QRectF(self._rect)

    def paint(self, p: QPainter, *args) -> None:
        if self._trails:
            self._paint_trails(p)
        if len(self.boxes) == 0:
            return
        keep = self.kept()
        idx = np.flatnonzero(keep)
        if idx.size == 0:
            return
        p.setClipRect(self._rect)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        p.setBrush(Qt.BrushStyle.NoBrush)
        b = self._rects
        order = idx[np.argsort(self.classes[idx], kind="stable")]
        cls = self.classes[order]
        cuts = np.flatnonzero(np.diff(cls)) + 1
        for part in np.split(order, cuts):  # one pen per class, its boxes in one call
            p.setPen(self._pen(self._class_qcolour(int(self.classes[part[0]])), self.PEN_PX))
            p.drawRects([b[i] for i in part.tolist()])
        sel = self.selected
        if sel is not None and 0 <= sel < len(b) and keep[sel]:
            p.setPen(self._pen(QColor(255, 255, 255), self.PEN_PX + 3))
            p.drawRect(b[sel])
            p.setPen(self._pen(self._class_qcolour(int(self.classes[sel])), self.PEN_PX + 1))
            p.drawRect(b[sel])
        if self.show_labels:
            self._paint_tags(p, idx)

    def _paint_trails(self, p: QPainter) -> None:
        """Each shown class's trails, one pen per class."""
        p.setClipRect(self._rect)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setBrush(Qt.BrushStyle.NoBrush)
        vis = self.visible
        pen_class = None
        for c, poly in sorted(self._trails, key=lambda t: t[0]):
            if 0 <= c < len(vis) and not vis[c]:
                continue
            if c != pen_class:
                pen = self._pen(self._class_qcolour(c), self.TRAIL_PX)
                pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
                p.setPen(pen)
                pen_class = c
            p.drawPolyline(poly)

    def _pen(self, colour: QColor, px: float) -> QPen:
        return self.pen(colour, px, join=Qt.PenJoinStyle.MiterJoin)

    def _class_qcolour(self, c: int) -> QColor:
        return self._colours[c] if 0 <= c < len(self._colours) else QColor(255, 0, 0)

    def _static(self, text: str) -> QStaticText:
        """Laid-out text, kept: class names (after a track ID) and the 101 score strings; track
        IDs keep adding names, so past MAX_TEXTS the cache starts again."""
        st = self._texts.get(text)
        if st is None:
            if len(self._texts) >= self.MAX_TEXTS:
                self._texts.clear()
            st = self._texts[text] = QStaticText(text)
            st.setTextFormat(Qt.TextFormat.PlainText)
            st.prepare(font=self.font)
        return st

    def _paint_tags(self, p: QPainter, idx: np.ndarray) -> None:
        """The label tags, in screen pixels: the transform is reset (the clip set above stays in
        device coordinates) and each tag placed by ``place_tags`` on its box's top-left corner."""
        t = p.transform()
        frame = t.mapRect(self._rect)
        # the boxes' corners on screen, all at once (the view's transform is affine)
        b = self.boxes[idx].astype(np.float64)
        xs = t.m11() * b[:, 0::2] + t.m21() * b[:, 1::2] + t.dx()
        ys = t.m12() * b[:, 0::2] + t.m22() * b[:, 1::2] + t.dy()
        classes, scores = self.classes[idx].tolist(), self._score_text
        ids = idx.tolist()
        names, score_texts, widths = [], [], []
        pad = self.px(3.0)
        for k, c in enumerate(classes):
            name = self._static(self._id_prefix(ids[k])
                                + (f"{self.labels[c]} " if 0 <= c < len(self.labels) else f"class {c} "))
            score = self._static(scores[ids[k]])
            names.append(name)
            score_texts.append(score)
            widths.append(name.size().width() + score.size().width() + 2 * pad)
        th = self._fm.height() + self.px(2.0)
        spots = place_tags(np.minimum(xs[:, 0], xs[:, 1]).tolist(), np.minimum(ys[:, 0], ys[:, 1]).tolist(),
                           np.maximum(ys[:, 0], ys[:, 1]).tolist(), widths, th,
                           (frame.left(), frame.top(), frame.right(), frame.bottom()))
        nudge = self.px(1.0)
        p.resetTransform()
        p.setFont(self.font)
        pen_colour = None
        # higher scores last: where tags still overlap, the most confident one is on top
        for k in range(len(ids) - 1, -1, -1):
            c = classes[k]
            x, y = spots[k]
            p.fillRect(QRectF(x, y, widths[k], th), self._class_qcolour(c))
            colour = self._text_colours[c] if 0 <= c < len(self.labels) else WHITE
            if colour is not pen_colour:
                p.setPen(colour)
                pen_colour = colour
            p.drawStaticText(QPointF(x + pad, y + nudge), names[k])
            p.drawStaticText(QPointF(x + pad + names[k].size().width(), y + nudge), score_texts[k])
        p.setTransform(t)


def place_tags(left: list[float], top: list[float], bottom: list[float], widths: list[float], th: float,
               frame: tuple[float, float, float, float]) -> list[tuple[float, float]]:
    """Top-left corners (screen pixels) of the label tags of boxes given best first: each on its
    box's left edge (kept inside the frame's sides), above the box where the frame has room and no
    better box's tag is there, else inside the box's top, one tag height lower at a time (at most
    twice, and not past the box's bottom); where every spot is taken, above (or inside, at the
    frame's top) all the same. Taken spots are kept in a grid of cells about a tag's size, so
    each check looks at the few tags near it."""
    f_left, f_top, f_right, f_bottom = frame
    cw, ch = 128.0, 2.0 * th
    grid: dict[tuple[int, int], list[tuple[float, float, float, float]]] = {}
    get = grid.get
    out = []
    for k in range(len(left)):
        w = widths[k]
        x = max(min(left[k], f_right - w), f_left)
        x2 = x + w
        t, above = top[k], top[k] - th
        floor = min(bottom[k], f_bottom)
        spots = [above] if above >= f_top else []
        spots.append(t)
        if t + 2 * th <= floor:
            spots.append(t + th)
            if t + 3 * th <= floor:
                spots.append(t + 2 * th)
        i0, i1 = int(x // cw), int(x2 // cw)
        chosen = spots[0]
        for y in spots:
            y2 = y + th
            taken = False
            for i in range(i0, i1 + 1):
                for j in range(int(y // ch), int(y2 // ch) + 1):
                    for rx, ry, rx2, ry2 in get((i, j), ()):
                        if x < rx2 and rx < x2 and y < ry2 and ry < y2:
                            taken = True
                            break
                    if taken:
                        break
                if taken:
                    break
            if not taken:
                chosen = y
                break
        out.append((x, chosen))
        rect = (x, chosen, x2, chosen + th)
        for i in range(i0, i1 + 1):
            for j in range(int(chosen // ch), int((chosen + th) // ch) + 1):
                grid.setdefault((i, j), []).append(rect)
    return out
