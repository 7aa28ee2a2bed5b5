"""Classification panel: the top-k labels with bars, the top label over time as a strip (one colour
per class, click to seek), and the top label with its score in a corner of the frame.

A thin view over ``ClassificationResult``. Per frame it sets one line of text on the frame and
records the frame's top class; the bars and the strip are redrawn on the window's slow updates
(a few times a second), each one widget painted at once, however many classes the model has.
"""

from __future__ import annotations

from html import escape

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from loupe.inference.engine import default_palette
from loupe.tasks.classification import ClassificationResult
from loupe.ui.panels.base import OverlayOnly, big_label, frame_axis, titled_layout


def score_text(p: float) -> str:
    return f"{100.0 * p:.1f}%"


class TopBars(QWidget):
    """The top-k classes, best first: one row each, a bar as long as its probability in the class
    colour (light, so the text over it stays readable), the label at the left and the score at the
    right. One widget painting k rows."""

    def __init__(self, rows: int = 5, parent=None) -> None:
        super().__init__(parent)
        self._rows: list[tuple[str, float, tuple[int, int, int]]] = []
        self._k = max(1, rows)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def _row_h(self) -> int:
        return self.fontMetrics().height() + 8

    def sizeHint(self) -> QSize:
        return QSize(220, self._k * self._row_h())

    def minimumSizeHint(self) -> QSize:
        return QSize(80, self._k * self._row_h())

    def set_rows(self, rows: list[tuple[str, float, tuple[int, int, int]]]) -> None:
        """(label, probability, colour) per row, best first."""
        self._rows = list(rows)
        self.setToolTip("\n".join(f"{lab}: {score_text(p)}" for lab, p, _ in self._rows))
        self.update()

    def rows(self) -> list[tuple[str, float]]:
        """What the bars show: (label, probability), top to bottom."""
        return [(lab, p) for lab, p, _ in self._rows]

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        pal = self.palette()
        track, text = pal.color(pal.ColorRole.Base), pal.color(pal.ColorRole.WindowText)
        fm = self.fontMetrics()
        h, w = self._row_h(), self.width()
        for i, (label, prob, rgb) in enumerate(self._rows):
            top = i * h
            p.fillRect(0, top + 2, w, h - 4, track)
            bar = QColor(*rgb)
            bar.setAlpha(120)
            p.fillRect(0, top + 2, round(w * min(max(prob, 0.0), 1.0)), h - 4, bar)
            p.setPen(text)
            pct = score_text(prob)
            pw = fm.horizontalAdvance(pct)
            p.drawText(w - pw - 6, top + 4 + fm.ascent(), pct)
            room = max(0, w - pw - 18)
            p.drawText(6, top + 4 + fm.ascent(), fm.elidedText(label, Qt.TextElideMode.ElideRight, room))
        p.end()


class ClassificationPanel(OverlayOnly, QWidget):
    """Top-k bars, the strip of the top label over time and the label on the frame."""

    seekRequested = Signal(int)  # frame index

    def __init__(self, labels: tuple[str, ...], palette: np.ndarray, title: str = "", top_k: int = 5,
                 parent=None) -> None:
        super().__init__(parent)
        self.labels = tuple(labels)
        self.palette = np.asarray(palette, np.uint8).reshape(-1, 3)
        self.last: ClassificationResult | None = None
        self._frame_hw: tuple[int, int] | None = None
        self._view_box: pg.ViewBox | None = None
        self._series: dict[int, int] = {}  # frame index -> top class
        self._strip = np.zeros((1, 0, 4), np.uint8)  # RGBA per frame index (alpha 0: not seen)
        # on the frame: the top label and its score, white on a dark fill, in the top-left corner
        self.overlay = pg.TextItem("", color="#ffffff", anchor=(0, 0), fill=pg.mkBrush(0, 0, 0, 170))
        font = QFont()
        font.setPointSize(13)
        font.setBold(True)
        self.overlay.setFont(font)

        lay = titled_layout(self, title or "Classification")
        self.top_label = big_label(lay, "—", 18)
        self.top_label.setWordWrap(True)
        self.bars = TopBars(top_k)
        lay.addWidget(self.bars)
        self.strip_plot = pg.PlotWidget(background="w", axisItems={"bottom": frame_axis()})
        self.strip_plot.setLabel("bottom", "frame")
        self.strip_plot.hideAxis("left")
        self.strip_plot.setMouseEnabled(x=True, y=False)
        self.strip_plot.setMenuEnabled(False)
        self.strip_plot.setYRange(0, 1, padding=0)
        self.strip_plot.setFixedHeight(80)
        self.strip_plot.setToolTip("The top label of each frame shown so far (one colour per class); "
                                   "click to go to a frame")
        self.strip = pg.ImageItem(axisOrder="row-major")
        self.strip_plot.addItem(self.strip)
        self.strip_plot.scene().sigMouseClicked.connect(self._on_strip_click)
        lay.addWidget(QLabel("Top label over time"))
        lay.addWidget(self.strip_plot)
        self.strip_hint = QLabel("")
        self.strip_hint.setTextFormat(Qt.TextFormat.RichText)
        self.strip_hint.setWordWrap(True)
        lay.addWidget(self.strip_hint)
        lay.addStretch(1)

    # --- the window's calls ----------------------------------------------------------------
    # (attach, detach, shutdown: OverlayOnly's)
    def frame_items(self) -> tuple[tuple[pg.GraphicsObject, bool], ...]:
        return ((self.overlay, True),)  # the label leaves the view's auto-range alone

    def update_from(self, result: ClassificationResult, frame, slow: bool) -> None:
        self.show_result(result, (frame.height, frame.width), frame.index, slow)

    def refresh_slow(self, result: ClassificationResult, frame) -> None:
        self._refresh_bars(result)
        self.refresh_strip()

    def reset_series(self) -> None:
        """A new source: the strip starts again."""
        self._series.clear()
        self._strip = np.zeros((1, 0, 4), np.uint8)
        self.strip.clear()
        self.strip_hint.setText("")

    def value_at(self, x: float, y: float) -> str | None:
        """The frame's top label and score (the same anywhere on the frame), None off it."""
        if self.last is None or self._frame_hw is None:
            return None
        h, w = self._frame_hw
        if not (0 <= x < w and 0 <= y < h):
            return None
        return f"{self.last.top1_label} {score_text(self.last.top1_score)}"

    # --- view of a result ------------------------------------------------------------------
    def colour(self, k: int) -> tuple[int, int, int]:
        if k >= len(self.palette):  # a class count learned from the model's first frame
            self.palette = np.array(default_palette(max(k + 1, len(self.labels))), np.uint8)
        r, g, b = (int(v) for v in self.palette[k])
        return r, g, b

    def show_result(self, result: ClassificationResult, frame_hw: tuple[int, int], index: int,
                    slow: bool = True) -> None:
        """Per frame: the text on the frame and the frame's strip cell; with ``slow``, the bars
        and the strip's image too."""
        self.last = result
        self._frame_hw = frame_hw
        text = f"{result.top1_label}  {score_text(result.top1_score)}"
        self.overlay.setText(text)
        self.overlay.setPos(0, 0)
        self._record(index, result.top1)
        if slow:
            self._refresh_bars(result)
            self.refresh_strip()

    def _record(self, index: int, k: int) -> None:
        self._series[index] = k
        if index >= self._strip.shape[1]:
            grown = np.zeros((1, max(index + 1, 2 * self._strip.shape[1]), 4), np.uint8)
            grown[:, : self._strip.shape[1]] = self._strip
            self._strip = grown
        self._strip[0, index, :3] = self.colour(k)
        self._strip[0, index, 3] = 255

    def _refresh_bars(self, result: ClassificationResult) -> None:
        self.top_label.setText(f"{result.top1_label}  {score_text(result.top1_score)}")
        self.bars.set_rows([(result.labels[int(k)], float(result.probs[k]), self.colour(int(k)))
                            for k in result.top])

    def refresh_strip(self) -> None:
        if not self._series:
            return
        last = max(self._series) + 1
        self.strip.setImage(self._strip[:, :last], autoLevels=False, levels=(0, 255))
        self.strip.setRect(QRectF(-0.5, 0, last, 1))
        self.strip_plot.setXRange(-0.5, last - 0.5, padding=0.01)
        counts: dict[int, int] = {}
        for k in self._series.values():
            counts[k] = counts.get(k, 0) + 1
        labels = self.last.labels if self.last is not None else self.labels
        common = sorted(counts, key=lambda k: (-counts[k], k))[:6]
        keys = "  ".join(f'<span style="color: rgb{self.colour(k)}">&#9632;</span>&nbsp;{escape(labels[k])} '
                         f"({counts[k]})" for k in common if k < len(labels))
        more = f" and {len(counts) - len(common)} more" if len(counts) > len(common) else ""
        self.strip_hint.setText(f"{len(self._series)} frames shown: {keys}{more}")

    def top_of(self, index: int) -> int | None:
        """The top class recorded for frame ``index`` (None when not shown yet)."""
        return self._series.get(index)

    def seek_strip(self, x: float) -> None:
        """A click on the strip at frame index ``x``: go to the nearest frame shown so far."""
        if not self._series:
            return
        seen = np.fromiter(self._series, np.int64)
        self.seekRequested.emit(int(seen[np.argmin(np.abs(seen - x))]))

    def _on_strip_click(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        pos = self.strip_plot.getPlotItem().vb.mapSceneToView(ev.scenePos())
        self.seek_strip(pos.x())


def make_panel(model, host) -> ClassificationPanel:
    """The registry's panel factory: a click on the strip seeks the window."""
    task = model.task
    panel = ClassificationPanel(task.labels, task.palette, title=model.engine.card.name or model.name,
                                top_k=task.top_k)
    panel.seekRequested.connect(host.seek_to)
    return panel


if __name__ == "__main__":  # a preview fed synthetic results
    from loupe.tasks.classification import softmax, top_indices
    from loupe.ui.panels.base import preview_app, preview_view, run_preview

    app = preview_app()
    labels = ("cat", "dog", "a bird with a rather long name", "fish", "horse", "cow")
    panel = ClassificationPanel(labels, np.array(default_palette(len(labels)), np.uint8), "preview")
    view = preview_view(panel)
    rng = np.random.default_rng(0)
    for i in range(40):
        logits = rng.normal(0, 1, len(labels)).astype(np.float32)
        logits[(i // 10) % len(labels)] += 3
        probs = softmax(logits)
        panel.show_result(ClassificationResult(probs, labels, top_indices(probs, 5)), (120, 200), i, i % 5 == 0)
    run_preview(app, panel, view)
