"""The "Compare" dock's widgets and the items drawn over the frame while two models are compared
(Model ▸ Compare two models; the controller is ``loupe.ui.compare_view``).

``Split``: model A's overlay items left of a draggable vertical line, model B's right of it, by
moving them under two clipping parents in the frame's view box (and back, exactly, on release).
``pair_rgba`` colours a segmentation disagreement map (``Agreement.pair_map``) with one stable
colour per (A class, B class) pair; ``OnlyBoxesItem`` draws the boxes one detector found and the
other did not, dashed, in A's and B's colours, in one ``paint``. ``CompareWidget``: agreement over
frames (with labels, both models' scores and a strip coloured by the better one; a click seeks),
the frames where they disagree most (a click seeks), the pooled figures and the frame's detail.
"""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGraphicsItem,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QToolButton,
)

from loupe.tasks.agreement import class_name
from loupe.ui.panels.base import text_label
from loupe.ui.panels.frame_scores import FrameScoresWidget
from loupe.ui.panels.ground_truth import LabelBoxesItem, dot

A_RGB = (255, 140, 0)  # model A: orange (curve, strip, its own boxes)
B_RGB = (0, 170, 255)  # model B: sky blue
AGREE_RGB = (70, 70, 70)  # the agreement curve
TIE_RGB = (200, 200, 200)  # a strip bar where both score the same
MAP_ALPHA = 190  # the disagreement map's opacity where the classes differ
SPLIT_PX = 2  # the split line's width, screen pixels
STRIP = (-0.13, 0.08)  # the winner strip under the curves: y0, height (the scores are 0..1)


# --- the disagreement map ------------------------------------------------------------------------
def pair_colour(a: int, b: int, classes: int = 256) -> tuple[int, int, int]:
    """A stable, saturated colour for the class pair (A says ``a``, B says ``b``) of models with
    up to ``classes`` classes: the same pair has the same colour on every frame and in every
    session; (a, b) and (b, a) differ. Pairs are numbered ``a * classes + b`` and the hue steps by
    the golden ratio, so pairs of few classes get hues far apart."""
    k = int(a) * max(int(classes), 1) + int(b)
    hue = (0.08 + k * 0.6180339887498949) % 1.0
    r, g, b_ = colorsys.hsv_to_rgb(hue, 0.9 if k % 2 else 0.7, 1.0 if k % 3 else 0.8)
    return round(r * 255), round(g * 255), round(b_ * 255)


def pair_lut(pairs: Any, classes: int = 256, alpha: int = MAP_ALPHA) -> np.ndarray:
    """(len(pairs) + 1, 4) uint8: row 0 transparent (the classes agree), row k + 1 pair k's colour."""
    lut = np.zeros((len(pairs) + 1, 4), np.uint8)
    for k, p in enumerate(pairs):
        lut[k + 1, :3] = pair_colour(p[0], p[1], classes)
        lut[k + 1, 3] = alpha
    return lut


def pair_rgba(pair_map: np.ndarray, pairs: Any, classes: int = 256, alpha: int = MAP_ALPHA) -> np.ndarray:
    """(H, W, 4) uint8: transparent where ``pair_map`` is -1 (A and B agree), elsewhere the colour
    of the pair it indexes in ``pairs`` ((A class, B class, pixels) rows). One table lookup."""
    return pair_lut(pairs, classes, alpha)[pair_map.astype(np.int32) + 1]


def pair_legend(pairs: Any, labels_a: Any, labels_b: Any, total: int, top: int = 5) -> str:
    """Rich text: the ``top`` pairs with most pixels, "■ A road / B pavement 3.1%" (the share of
    all ``total`` pixels of the map)."""
    classes = max(len(labels_a), len(labels_b))
    parts = []
    for a, b, n in list(pairs)[:top]:
        r, g, b_ = pair_colour(a, b, classes)
        share = 100.0 * n / max(total, 1)
        parts.append(dot((r, g, b_), f"A {class_name(labels_a, a)} / B {class_name(labels_b, b)} {share:.1f}%"))
    return "<br>".join(parts)


class OnlyBoxesItem(LabelBoxesItem):
    """The boxes only one of two detectors found: A's dashed in A's colour, B's dashed in B's, with
    cosmetic pens (screen pixels at any zoom); frame pixel coordinates. ``pred`` holds A's, ``gt``
    B's (``LabelBoxesItem``'s storage and geometry)."""

    ONLY_A, ONLY_B = QColor(*A_RGB), QColor(*B_RGB)

    def set_only(self, frame_hw: tuple[int, int], only_a: Any, only_b: Any) -> None:
        """A's boxes no box of B matches, B's no box of A matches ((N, 4) x1 y1 x2 y2 each)."""
        a = np.asarray(only_a, np.float32).reshape(-1, 4)
        b = np.asarray(only_b, np.float32).reshape(-1, 4)
        self.set_boxes(frame_hw, a, np.zeros(len(a), bool), b, np.zeros(len(b), bool))

    def paint(self, p, *args) -> None:
        p.setBrush(Qt.BrushStyle.NoBrush)
        for boxes, colour, style in ((self.pred, self.ONLY_A, Qt.PenStyle.DashLine),
                                     (self.gt, self.ONLY_B, Qt.PenStyle.DashDotLine)):
            self.draw_boxes(p, boxes, self.pen(colour, 2.5, style))


class Disagreement:
    """Where two results disagree, drawn over the frame in ``view_box`` (the window's Compare view
    and ``loupe render --compare`` draw with it): a segmentation pair map (``pair_rgba``) or the
    boxes only one model found (``OnlyBoxesItem``), above the models' overlays."""

    def __init__(self, view_box: Any) -> None:
        self.map_item = pg.ImageItem(axisOrder="row-major")
        self.boxes_item = OnlyBoxesItem()
        for z, item in ((38, self.map_item), (39, self.boxes_item)):
            item.setZValue(z)
            item.hide()
            view_box.addItem(item, ignoreBounds=True)

    def show(self, ag: Any, ra: Any, rb: Any, hw: tuple[int, int], names: tuple[str, str]) -> str:
        """Draw ``ag`` (an ``Agreement`` of results ``ra`` and ``rb``) over a frame of ``hw``; the
        legend as rich text ("" when the agreement has nothing to draw)."""
        h, w = hw
        if ag.pair_map is not None:
            classes = max(len(ra.labels), len(rb.labels))
            self.map_item.setImage(pair_rgba(ag.pair_map, ag.pairs, classes), autoLevels=False, levels=(0, 255))
            self.map_item.setRect(QRectF(0, 0, w, h))
            self.map_item.show()
            self.boxes_item.hide()
            return pair_legend(ag.pairs, ra.labels, rb.labels, int(ag.pair_map.size)) or \
                "the two maps agree on every pixel"
        if ag.only_a is not None and ag.only_b is not None:
            self.boxes_item.set_only(hw, ra.boxes[ag.only_a], rb.boxes[ag.only_b])
            self.boxes_item.show()
            self.map_item.hide()
            return (dot(A_RGB, f"only A ({names[0]}): {len(ag.only_a)}, dashed") + " &nbsp; "
                    + dot(B_RGB, f"only B ({names[1]}): {len(ag.only_b)}, dash-dot"))
        self.hide()
        return ""

    def hide(self) -> None:
        self.map_item.hide()
        self.boxes_item.hide()

    def mirror(self, other: Disagreement, hw: tuple[int, int]) -> None:
        """Draw what ``other`` draws now (a side-by-side view's second copy), from its items:
        the map image and the boxes are not worked out again."""
        if other.map_item.isVisible():
            self.map_item.setImage(other.map_item.image, autoLevels=False, levels=(0, 255))
            self.map_item.setRect(QRectF(0, 0, hw[1], hw[0]))
        if other.boxes_item.isVisible():
            self.boxes_item.set_only(hw, other.boxes_item.pred, other.boxes_item.gt)
        self.map_item.setVisible(other.map_item.isVisible())
        self.boxes_item.setVisible(other.boxes_item.isVisible())

    def move_to(self, x: float) -> None:
        """Draw ``x`` frame pixels right (over the second copy of a side-by-side view)."""
        for item in (self.map_item, self.boxes_item):
            item.setPos(x, 0)


# --- the split ---------------------------------------------------------------------------------
class ClipRect(QGraphicsRectItem):
    """An invisible rectangle that clips its children to itself (no pen, no brush)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemClipsChildrenToShape, True)
        self.setPen(QPen(Qt.PenStyle.NoPen))
        self.setBrush(Qt.BrushStyle.NoBrush)


class Split:
    """Model A's items left of a vertical line in ``view_box``, model B's right of it.

    ``engage`` moves the items under two ``ClipRect`` parents (rects (0, 0, x, h) and (x, 0, w - x,
    h) in frame pixels) and shows the draggable line; ``release`` puts each item back under the
    parent it had, with its own z value, and removes the clips and the line. An item that left the
    scene meanwhile (its model was removed: ``ViewBox.removeItem``) is left where it is.

    Side by side (``engage(..., twin_x=X)``): no line; A's items clipped to the frame, B's moved
    ``X`` frame pixels right, over the view's second copy of the frame (``FrameView.show_twin``)."""

    def __init__(self, view_box: Any, on_finished: Any = None) -> None:
        self.vb = view_box
        self.clips = (ClipRect(), ClipRect())
        self.line = pg.InfiniteLine(
            angle=90, movable=True, pen=pg.mkPen((255, 255, 255), width=SPLIT_PX),
            hoverPen=pg.mkPen((255, 230, 90), width=3), label="",
            labelOpts={"position": 0.04, "color": (255, 255, 255), "fill": (0, 0, 0, 150), "movable": False},
        )
        self.line.setZValue(60)
        self.line.setToolTip("drag: move the split between model A (left) and model B (right)")
        self.line.sigPositionChanged.connect(lambda _l: self._clip())
        if on_finished is not None:
            self.line.sigPositionChangeFinished.connect(lambda _l: on_finished())
        self.moved: list[tuple[Any, Any]] = []  # (item, its parent before) while engaged
        self.size: tuple[int, int] | None = None  # (h, w) of the frame the clips fit
        self.engaged = False
        self.twin_x = 0.0  # side by side: where B's copy of the frame starts (0: the split)
        self._fraction = 0.5  # side by side: the line's place to go back to
        # side by side: each model's name under its copy's bottom-left corner, in its colour
        self.name_items = tuple(pg.TextItem("", color=rgb, anchor=(0, 1), fill=pg.mkBrush(0, 0, 0, 160))
                                for rgb in (A_RGB, B_RGB))
        for item in self.name_items:
            item.setZValue(61)

    def engage(self, items_a: Any, items_b: Any, names: tuple[str, str], frame_hw: tuple[int, int],
               fraction: float, twin_x: float = 0.0) -> None:
        """Clip ``items_a`` to the left of the line and ``items_b`` to its right; the line at
        ``fraction`` of the frame's width, labelled with the two names. ``twin_x`` > 0: side by
        side instead, B's items drawn that far right."""
        self.release()
        self.twin_x = float(twin_x)
        for clip, items in zip(self.clips, (items_a, items_b)):
            zs = [it.zValue() for it in items]
            clip.setZValue(min(zs) if zs else 10)
            self.vb.addItem(clip, ignoreBounds=True)
            for it in items:
                self.moved.append((it, it.parentItem()))
                z = it.zValue()
                it.setParentItem(clip)
                it.setZValue(z)
        if not self.twin_x:
            self.vb.addItem(self.line, ignoreBounds=True)
        else:
            for item, tag, name in zip(self.name_items, "AB", names):
                item.setText(f"{tag}  {name}")
                self.vb.addItem(item, ignoreBounds=True)
        self.line.label.setFormat(f"◀ {names[0]}  |  {names[1]} ▶")
        self.engaged = True
        self.fit(frame_hw, fraction, twin_x)

    def fit(self, frame_hw: tuple[int, int], fraction: float, twin_x: float | None = None) -> None:
        """The line's bounds (the frame's width) and place for a frame of ``frame_hw`` (side by
        side: B's copy at ``twin_x``)."""
        self.size = (int(frame_hw[0]), int(frame_hw[1]))
        if twin_x is not None:
            self.twin_x = float(twin_x)
        w = self.size[1]
        self._fraction = min(max(fraction, 0.0), 1.0)
        self.line.setBounds((0, w))
        self.line.setValue(self._fraction * w)
        self._clip()

    def fraction(self) -> float:
        """Where the line is, as a fraction of the frame's width."""
        if self.twin_x or not self.size or not self.size[1]:
            return self._fraction
        return min(max(float(self.line.value()) / self.size[1], 0.0), 1.0)

    def _clip(self) -> None:
        if self.size is None:
            return
        h, w = self.size
        if self.twin_x:  # side by side: each model's items over its own copy of the frame
            self.clips[0].setRect(QRectF(0, 0, w, h))
            self.clips[1].setRect(QRectF(0, 0, w, h))
            self.clips[1].setPos(self.twin_x, 0)
            for item, x in zip(self.name_items, (0.0, self.twin_x)):
                item.setPos(x, h)
            return
        x = min(max(float(self.line.value()), 0.0), float(w))
        self.clips[0].setRect(QRectF(0, 0, x, h))
        self.clips[1].setRect(QRectF(x, 0, w - x, h))
        self.clips[1].setPos(0, 0)

    def release(self) -> None:
        """Every moved item back under its own parent; the clips and the line out of the view."""
        clips = set(self.clips)
        for it, parent in self.moved:
            try:
                if it.parentItem() in clips:
                    z = it.zValue()
                    it.setParentItem(parent)
                    it.setZValue(z)
            except RuntimeError:  # the item was deleted with its panel
                pass
        self.moved.clear()
        if self.engaged:
            for clip in self.clips:
                self.vb.removeItem(clip)
            for item in (self.line, *self.name_items):
                if item.scene() is not None:
                    self.vb.removeItem(item)
        self.engaged = False
        self.size = None
        self.twin_x = 0.0


# --- the dock's widget ---------------------------------------------------------------------------
def _pen(rgb, width: float = 1.5, style=Qt.PenStyle.SolidLine):
    return pg.mkPen(rgb, width=width, style=style)


class CompareWidget(FrameScoresWidget):
    """Plot | frames where they disagree most | figures, side by side (the dock sits under the view).
    Above the figures, which loaded models are A and B (``pairChosen(a, b)``: indices into the
    names given to :meth:`set_choices`) and a button that swaps them."""

    pairChosen = Signal(int, int)

    def __init__(self) -> None:
        super().__init__("<b>Compare</b>: load two models of the same task (Model ▸ Compare two models)",
                         "agreement", "agreement of the two models on each frame played (1: the same result); "
                         "with labels, each model's score and a strip in the colour of the better one (click: "
                         "show that frame)",
                         "Disagree most", "the frames played where the two models agree least (click: show that frame)",
                         "Disagreement over the frame", "segmentation: the pixels whose class differs, coloured by "
                         "the pair of classes; detection: the boxes only one model found", y_min=STRIP[0] - 0.02)
        self.map_box = self.overlay_box
        self.curve = self.plot.plot([], [], pen=_pen(AGREE_RGB, 2), symbol="o", symbolSize=4,
                                    symbolBrush=AGREE_RGB, symbolPen=None)
        self.curve_a = self.plot.plot([], [], pen=_pen(A_RGB, 1.5, Qt.PenStyle.DashLine))
        self.curve_b = self.plot.plot([], [], pen=_pen(B_RGB, 1.5, Qt.PenStyle.DashLine))
        self.strip = pg.BarGraphItem(x=[], height=[], width=1.0, y0=STRIP[0], brushes=[], pen=None)
        self.plot.addItem(self.strip)
        self.key = text_label(self.left)
        self.mean = QLabel("")
        self.differ = QLabel("")  # where they differ most over the frames played
        self.differ.setWordWrap(True)
        self.add_figures()
        self.right.insertWidget(2, self.mean)  # under the legend
        self.right.insertWidget(3, self.differ)
        row = QHBoxLayout()
        self.combo_a, self.combo_b = QComboBox(), QComboBox()
        self.swap_button = QToolButton()
        self.swap_button.setText("⇄")
        self.swap_button.setToolTip("Swap A and B: A's overlay goes right of the line, B's left")
        self.swap_button.clicked.connect(lambda: self.pairChosen.emit(self.combo_b.currentIndex(),
                                                                      self.combo_a.currentIndex()))
        for name, combo, rgb in (("A", self.combo_a, A_RGB), ("B", self.combo_b, B_RGB)):
            label = QLabel(dot(rgb, name))
            combo.setToolTip(f"The model compared as {name} (the loaded models of the task compared)")
            combo.setMinimumContentsLength(8)
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.activated.connect(lambda _i: self.pairChosen.emit(self.combo_a.currentIndex(),
                                                                    self.combo_b.currentIndex()))
            row.addWidget(label)
            row.addWidget(combo, 1)
            if name == "A":
                row.addWidget(self.swap_button)
        self.right.insertLayout(0, row)
        self.side_box = QCheckBox("Side by side")
        self.side_box.setToolTip("The frame twice: A's result on the left copy, B's on the right one "
                                 "(off: one frame, A left of a line you drag and B right of it). Key: S")
        self.right.insertWidget(2, self.side_box)  # under the disagreement box
        self.set_names("A", "B", scored=False)

    def set_choices(self, names: list[str], a: int, b: int) -> None:
        """The models that can be compared (``names``, in load order) with ``a`` and ``b`` chosen."""
        for combo, k in ((self.combo_a, a), (self.combo_b, b)):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([f"{i + 1}. {n}" for i, n in enumerate(names)])
            combo.setCurrentIndex(k)
            combo.blockSignals(False)

    def set_names(self, a: str, b: str, scored: bool, note: str = "") -> None:
        """The heading and the plot's key for models ``a`` and ``b`` (``scored``: labels are open)."""
        head = f"<b>Compare</b>: A {a} · B {b}"
        self.title.setText(head + (f" <span style='color: gray'>({note})</span>" if note else ""))
        parts = [dot(AGREE_RGB, "agreement")]
        if scored:
            parts += [dot(A_RGB, f"A score ({a})"), dot(B_RGB, f"B score ({b})"), "strip: the better model"]
        self.key.setText(" &nbsp; ".join(parts))

    def show_series(self, values: dict[int, float], scores_a: dict[int, float | None] | None = None,
                    scores_b: dict[int, float | None] | None = None) -> None:
        """The curves, the strip and the worst list from ``{frame index: value}``."""
        pts = self.show_values(self.curve, values)
        self.set_curve(self.curve_a, scores_a or {})
        self.set_curve(self.curve_b, scores_b or {})
        xs_w, brushes = [], []
        for i in sorted(set(scores_a or {}) & set(scores_b or {})):
            a, b = scores_a[i], scores_b[i]
            if a is None or b is None or a != a or b != b:
                continue
            xs_w.append(float(i))
            brushes.append(pg.mkBrush(*(A_RGB if a > b + 1e-9 else B_RGB if b > a + 1e-9 else TIE_RGB)))
        self.strip.setOpts(x=np.asarray(xs_w, float), height=np.full(len(xs_w), STRIP[1]), width=1.0,
                           y0=STRIP[0], brushes=brushes, pen=None)
        self.mean.setText(f"mean agreement {np.mean([v for _, v in pts]):.3f} over {len(pts)} "
                          f"frame{'s' if len(pts) != 1 else ''}" if pts else "")

    def winners(self) -> list[tuple[int, tuple[int, int, int]]]:
        """The strip as drawn: (frame index, colour) per bar."""
        xs = self.strip.opts.get("x")
        brushes = self.strip.opts.get("brushes") or []
        return [(int(x), tuple(b.color().getRgb()[:3])) for x, b in zip([] if xs is None else xs, brushes)]


if __name__ == "__main__":  # a preview fed synthetic agreements and a synthetic disagreement map
    from loupe.ui.panels.base import preview_app, run_preview

    app = preview_app()
    widget = CompareWidget()
    rng = np.random.default_rng(0)
    values = {i: float(v) for i, v in enumerate(np.clip(0.9 + 0.05 * rng.standard_normal(80), 0, 1))}
    sa = {i: float(v) for i, v in enumerate(np.clip(0.7 + 0.1 * rng.standard_normal(80), 0, 1))}
    sb = {i: float(v) for i, v in enumerate(np.clip(0.7 + 0.1 * rng.standard_normal(80), 0, 1))}
    widget.set_names("left.onnx", "right.onnx", scored=True)
    widget.show_series(values, sa, sb)
    pm = -np.ones((120, 200), np.int32)
    pm[20:60, 30:90] = 0
    pm[70:100, 120:180] = 1
    pairs = ((1, 2, 2400), (0, 3, 1800))
    widget.legend.setText(pair_legend(pairs, ("sky", "road", "pavement", "car"), ("sky", "road", "pavement", "car"),
                                      pm.size))
    view = pg.GraphicsLayoutWidget()
    vb = view.addViewBox(lockAspect=True, invertY=True)
    img = pg.ImageItem(pair_rgba(pm, pairs, 4), axisOrder="row-major")
    vb.addItem(img)
    boxes = OnlyBoxesItem()
    boxes.set_only((120, 200), [[10, 10, 50, 40]], [[150, 20, 190, 60]])
    vb.addItem(boxes)
    run_preview(app, widget, view)
