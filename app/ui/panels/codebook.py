"""Codebook panel: which code fires where, for each level of a vector-quantised model.

A thin view over ``CodebookResult``: the worker sends, per level, a uint16 code map at display
resolution; the overlay item colours it through a lookup table with one row per code (the stable
``code_palette``), with fixed levels, so highlighting a code edits the table's alpha column and
costs nothing per pixel. Code usage over the session (``CodebookUsage``) is added up per frame;
the histogram, dead-code % and perplexity are redrawn at display rate (``refresh_slow``).
Clicking a bar highlights where that code fires (the rest dimmed; with k codes per position, a
mask marks every position where it is among the k); clicking the frame shows the code(s) there.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from loupe.tasks.codebook import CodebookResult, CodebookUsage, LevelCodes, code_palette
from loupe.ui.panels.base import OverlayOnly, clicked_at, opacity_slider, text_label, titled_layout

MAX_BARS = 1024  # histogram bars drawn (the most used codes of the session); all are counted
DIM_ALPHA = 40  # alpha of the other codes while one is highlighted


def code_lut(n: int, highlight: int | None = None) -> np.ndarray:
    """n x 4 RGBA: code i -> its palette colour; with a highlight, every other code dimmed."""
    lut = np.empty((n, 4), np.uint8)
    lut[:, :3] = code_palette(n)
    lut[:, 3] = 255 if highlight is None else DIM_ALPHA
    if highlight is not None and 0 <= highlight < n:
        lut[highlight, 3] = 255
    return lut


class CodebookPanel(OverlayOnly, QWidget):
    """Level picker, opacity, usage statistics and histogram for one codebook model; owns its
    overlay (the code map), a highlight mask and a probe marker on the frame view."""

    codeHighlighted = Signal(object)  # code id or None
    probed = Signal(str)  # the text shown for a clicked position

    def __init__(self, levels: list[tuple[str, int, int]], title: str = "", has_reconstruction: bool = False,
                 parent=None) -> None:
        """``levels``: (name, codebook_size, k) per level, as the card lists them."""
        super().__init__(parent)
        self.setMinimumWidth(320)
        self.setProperty("dock_width", 420)
        self.levels = [(str(n), int(s), int(k)) for n, s, k in levels]
        self.usage = CodebookUsage({n: s for n, s, _k in self.levels})
        self.level = self.levels[0][0]
        self.highlight: int | None = None
        self.last: CodebookResult | None = None
        self._frame_hw: tuple[int, int] | None = None
        self._probe: tuple[float, float] | None = None
        self._bar_order = np.zeros(0, np.intp)
        self._brushes: dict[str, list] = {}
        self._view_box: pg.ViewBox | None = None
        self._scene = None

        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setOpacity(0.45)
        self.mask_item = pg.ImageItem(axisOrder="row-major")  # k > 1: every position where the code is active
        self.mask_item.setLookupTable(np.array([[0, 0, 0, 0], [255, 255, 255, 150]], np.uint8))
        self.mask_item.hide()
        self.probe_item = QGraphicsRectItem()
        self.probe_item.setPen(pg.mkPen("#ffffff", width=2, cosmetic=True))
        self.probe_item.setZValue(102)
        self.probe_item.hide()

        lay = titled_layout(self, title or "Codebook")
        form = QFormLayout()
        self.level_box = QComboBox()
        for n, s, k in self.levels:
            self.level_box.addItem(f"{n}  ({s} codes{'' if k == 1 else f', k={k}'})", n)
        self.level_box.setToolTip("The quantised level shown over the frame and in the histogram")
        self.level_box.currentIndexChanged.connect(self._on_level)
        form.addRow("Level", self.level_box)
        self.opacity = opacity_slider(self.overlay, 45)
        form.addRow("Opacity", self.opacity)
        lay.addLayout(form)

        self.stats = text_label(lay, "waiting for a frame…")
        self.probe_label = QLabel("Click the frame to see the code(s) there; click a bar to see where a code fires.")
        self.probe_label.setTextFormat(Qt.TextFormat.RichText)
        self.probe_label.setWordWrap(True)
        self.probe_label.setStyleSheet("color: #444")
        lay.addWidget(self.probe_label)

        caption = QLabel("Code usage: <span style='color:#999'>■</span> session, "
                         "<span style='color:#c2185b'>■</span> this frame (code colours)")
        caption.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(caption)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("bottom", "codes, most used first")
        self.plot.setLabel("left", "share of positions", units="%")
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.setMinimumHeight(190)
        self.session_bars = pg.BarGraphItem(x=[], height=[], width=1.0, brush=pg.mkBrush(160, 160, 160, 170),
                                            pen=pg.mkPen(None), name="session")
        self.frame_bars = pg.BarGraphItem(x=[], height=[], width=0.6, brush=pg.mkBrush(40, 40, 40),
                                          pen=pg.mkPen(None), name="this frame")
        self.plot.addItem(self.session_bars)
        self.plot.addItem(self.frame_bars)
        self.mark = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#d50000", width=1, style=Qt.PenStyle.DashLine))
        self.mark.hide()
        self.plot.addItem(self.mark)
        self.plot.scene().sigMouseClicked.connect(self._on_plot_click)
        lay.addWidget(self.plot, 1)
        row = QHBoxLayout()
        self.highlight_label = QLabel("")
        row.addWidget(self.highlight_label, 1)
        self.clear_btn = QPushButton("Clear highlight")
        self.clear_btn.setEnabled(False)
        self.clear_btn.clicked.connect(lambda: self.set_highlight(None))
        row.addWidget(self.clear_btn)
        lay.addLayout(row)

        self.recon_widget = pg.GraphicsLayoutWidget()
        self.recon_widget.setMinimumHeight(120)
        self.recon_vb = self.recon_widget.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.recon_img = pg.ImageItem(axisOrder="row-major")
        self.recon_vb.addItem(self.recon_img)
        self.recon_text = pg.TextItem("reconstruction", color="w", fill=pg.mkBrush(0, 0, 0, 150))
        self.recon_text.setZValue(5)
        self.recon_vb.addItem(self.recon_text, ignoreBounds=True)
        self.recon_widget.setVisible(has_reconstruction)
        lay.addWidget(self.recon_widget)
        self._apply_lut()

    # --- the frame view -----------------------------------------------------------------
    # (attach, detach, shutdown: OverlayOnly's; frame clicks go to _on_frame_click)
    def frame_items(self) -> tuple[tuple[pg.GraphicsObject, bool], ...]:
        return (self.overlay, False), (self.mask_item, False), (self.probe_item, True)

    # --- view of a result -------------------------------------------------------------------
    def update_from(self, result: CodebookResult, frame, slow: bool) -> None:
        self.show_result(result, (frame.height, frame.width), frame.index, slow)

    def refresh_slow(self, result: CodebookResult, frame) -> None:
        self.refresh()

    def value_at(self, x: float, y: float) -> str | None:
        """The code(s) of the level shown under frame pixel (x, y) (the status bar's readout)."""
        lv = self.current()
        hit = None if lv is None else lv.codes_at(x, y)
        return None if hit is None else f"{lv.name} code " + ", ".join(str(k) for k in hit[2])

    def reset_series(self) -> None:
        """A new source: the session's usage starts again."""
        self.usage.reset()
        self.refresh()

    def show_result(self, result: CodebookResult, frame_hw: tuple[int, int], index: int | None = None,
                    update_plot: bool = True) -> None:
        self.last = result
        self._frame_hw = frame_hw
        self.usage.add(result, index)
        self._show_map()
        if update_plot:
            self.refresh()

    def current(self) -> LevelCodes | None:
        if self.last is None:
            return None
        try:
            return self.last.level(self.level)
        except KeyError:
            return None

    def _show_map(self) -> None:
        lv = self.current()
        if lv is None or self._frame_hw is None:
            return
        h, w = self._frame_hw
        self.overlay.setImage(lv.display, autoLevels=False, levels=(0, lv.codebook_size))
        self.overlay.setRect(QRectF(0, 0, w, h))
        self._show_mask(lv)

    def _show_mask(self, lv: LevelCodes) -> None:
        if self.highlight is None or lv.k == 1:  # k = 1: the dimmed lookup table says it all
            self.mask_item.hide()
            return
        mask = self.highlight_mask()
        self.mask_item.setImage(mask.astype(np.uint8), autoLevels=False, levels=(0, 2))
        rows, cols = mask.shape
        self.mask_item.setRect(QRectF(0, 0, cols * lv.cell[1], rows * lv.cell[0]))
        self.mask_item.setZValue(self.overlay.zValue() + 0.5)
        self.mask_item.show()

    def highlight_mask(self) -> np.ndarray:
        """bool h x w at the model's resolution: where the highlighted code fires (any of the k)."""
        lv = self.current()
        if lv is None or self.highlight is None:
            return np.zeros((0, 0), bool)
        c = lv.codes
        return (c == self.highlight) if c.ndim == 2 else (c == self.highlight).any(axis=2)

    def refresh(self) -> None:
        """Statistics, histogram and reconstruction for the last result (display rate)."""
        lv = self.current()
        if lv is None:
            return
        name, n = lv.name, lv.codebook_size
        frames = self.usage.frames
        session = self.usage.counts[name]
        td = "<td style='padding: 0 10px 0 0' align='right'>"
        rows = [
            "<tr><td></td>" + "".join(f"{td}<i>{h}</i></td>" for h in ("codes used", "dead", "perplexity")) + "</tr>",
            f"<tr><td><b>this frame</b></td>{td}{lv.codes_used} of {n}</td>{td}</td>{td}{lv.perplexity:.1f}</td></tr>",
            f"<tr><td><b>session</b> ({frames} frame{'s' if frames != 1 else ''})</td>{td}{self.usage.used(name)} of {n}"
            f"</td>{td}<b>{self.usage.dead_pct(name):.1f} %</b></td>{td}{self.usage.perplexity(name):.1f}</td></tr>",
        ]
        text = "<table cellspacing='0'>" + "".join(rows) + "</table>"
        if self.last is not None and self.last.recon_psnr is not None:
            text += f"reconstruction PSNR {self.last.recon_psnr:.2f} dB (8-bit RGB, vs the frame)"
        self.stats.setText(text)
        # histogram: codes in order of session use, both as shares of the positions counted
        # only codes used in the session get a bar (dead ones are the dead %), so bars stay clickable
        order = self.usage.order(name)[: min(max(self.usage.used(name), 1), MAX_BARS)]
        self._bar_order = order
        x = np.arange(len(order), dtype=float)
        s_tot = max(int(session.sum()), 1)
        f_tot = max(int(lv.histogram.sum()), 1)
        brushes = self._brushes.get(name)
        if brushes is None:
            brushes = self._brushes[name] = [pg.mkBrush(*map(int, c)) for c in code_palette(n)]
        self.session_bars.setOpts(x=x, height=100.0 * session[order] / s_tot, width=1.0)
        self.frame_bars.setOpts(x=x, height=100.0 * lv.histogram[order] / f_tot, width=0.6,
                                brushes=[brushes[int(c)] for c in order])
        self._update_mark()
        self._update_probe()
        rec = self.last.reconstruction if self.last is not None else None
        if rec is not None:
            self.recon_widget.setVisible(True)
            self.recon_img.setImage(rec, autoLevels=False, levels=(0, 255))
            psnr = self.last.recon_psnr
            self.recon_text.setText("reconstruction" + ("" if psnr is None else f"  {psnr:.1f} dB"))

    # --- highlight ------------------------------------------------------------------------------
    def set_highlight(self, code: int | None) -> None:
        """Show where ``code`` fires in the current level (others dimmed); None clears."""
        lv = self.current()
        n = lv.codebook_size if lv is not None else self._size(self.level)
        self.highlight = None if code is None or not (0 <= int(code) < n) else int(code)
        self._apply_lut()
        self.clear_btn.setEnabled(self.highlight is not None)
        if self.highlight is None:
            self.highlight_label.setText("")
        else:
            col = QColor(*map(int, code_palette(n)[self.highlight]))
            where = ""
            if lv is not None:
                m = self.highlight_mask()
                where = f": fires at {int(m.sum())} of {m.size} positions in this frame"
            self.highlight_label.setText(
                f"<span style='background:{col.name()}'>&nbsp;&nbsp;&nbsp;</span> code {self.highlight}{where}")
        if lv is not None:
            self._show_mask(lv)
        self._update_mark()
        self.codeHighlighted.emit(self.highlight)

    def _apply_lut(self) -> None:
        self.lut = code_lut(self._size(self.level), self.highlight)
        self.overlay.setLookupTable(self.lut)

    def _size(self, name: str) -> int:
        return next(s for n, s, _k in self.levels if n == name)

    def _update_mark(self) -> None:
        if self.highlight is None:
            self.mark.hide()
            return
        hit = np.nonzero(self._bar_order == self.highlight)[0]
        if len(hit):
            self.mark.setValue(float(hit[0]))
            self.mark.show()
        else:
            self.mark.hide()

    def bar_code(self, x: float) -> int | None:
        """The code drawn at histogram position x (None off the bars)."""
        rank = round(x)
        if 0 <= rank < len(self._bar_order):
            return int(self._bar_order[rank])
        return None

    def _on_plot_click(self, ev) -> None:
        at = clicked_at(self.plot.getPlotItem().vb, ev)
        code = None if at is None else self.bar_code(at[0])
        if code is not None:
            self.set_highlight(None if code == self.highlight else code)

    # --- probe: the code(s) at a position ---------------------------------------------------------
    def probe(self, x: float, y: float) -> str:
        """Show (and return) the code(s) of every level at frame pixel (x, y); it follows the frames."""
        self._probe = (float(x), float(y))
        return self._update_probe()

    def _update_probe(self) -> str:
        if self._probe is None or self.last is None:
            return ""
        x, y = self._probe
        parts = []
        marked = False
        for lv in self.last.levels:
            hit = lv.codes_at(x, y)
            if hit is None:
                continue
            r, c, codes = hit
            pal = code_palette(lv.codebook_size)
            swatches = " ".join(
                f"<span style='background:{QColor(*map(int, pal[k])).name()}'>&nbsp;&nbsp;</span> {k}" for k in codes)
            what = "code" if len(codes) == 1 else f"{len(codes)} codes (most active first)"
            text = f"{lv.name} [{r}, {c}]: {what} {swatches}"
            parts.append(f"<b>{text}</b>" if lv.name == self.level else text)
            if lv.name == self.level:
                self.probe_item.setRect(QRectF(c * lv.cell[1], r * lv.cell[0], lv.cell[1], lv.cell[0]))
                self.probe_item.show()
                marked = True
        if not marked:
            self.probe_item.hide()
        if not parts:
            self.probe_label.setText("Outside the frame.")
            return ""
        text = f"x {x:.0f}, y {y:.0f} → " + "; ".join(parts)
        self.probe_label.setText(text)
        self.probed.emit(text)
        return text

    def _on_frame_click(self, ev) -> None:
        at = clicked_at(self._view_box, ev) if self._frame_hw is not None else None
        h, w = self._frame_hw or (0, 0)
        if at is not None and 0 <= at[0] < w and 0 <= at[1] < h:
            self.probe(*at)

    # --- controls ------------------------------------------------------------------------------
    def set_level(self, name: str) -> None:
        i = self.level_box.findData(name)
        if i >= 0:
            self.level_box.setCurrentIndex(i)

    def _on_level(self, i: int) -> None:
        self.level = str(self.level_box.itemData(i))
        self.highlight = None
        self.set_highlight(None)
        self._show_map()
        self.refresh()



def make_panel(model, host) -> CodebookPanel:
    """The registry's panel factory: one entry per level of the model's codebooks."""
    task = model.task
    return CodebookPanel([(s.name, s.codebook_size, s.k) for s in task.levels],
                         model.engine.card.name or model.name,
                         has_reconstruction=task.recon_index is not None)


if __name__ == "__main__":  # a preview fed synthetic results
    from loupe.tasks.codebook import perplexity
    from loupe.ui.panels.base import preview_app, preview_view, run_preview

    app = preview_app()
    panel = CodebookPanel([("top", 64, 1), ("bottom", 256, 2)], "preview", has_reconstruction=True)
    view = preview_view(panel)
    rng = np.random.default_rng(0)
    h, w = 120, 200
    for i in range(30):
        levels = []
        for name, n, k, s in (("top", 64, 1, 8), ("bottom", 256, 2, 4)):
            shape = (h // s, w // s) + ((k,) if k > 1 else ())
            codes = (rng.zipf(1.6, shape) % n).astype(np.int32)
            first = codes if k == 1 else codes[:, :, 0]
            disp = np.repeat(np.repeat(first, s, 0), s, 1).astype(np.uint16)
            hist = np.bincount(codes.ravel(), minlength=n).astype(np.int64)
            levels.append(LevelCodes(name, n, k, codes, disp, hist, int(np.count_nonzero(hist)), perplexity(hist),
                                     (float(s), float(s))))
        recon = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        panel.show_result(CodebookResult(tuple(levels), (h, w), recon, 20.0 + i / 10), (h, w), i)
    panel.set_highlight(int(panel.usage.order("top")[0]))
    print(panel.probe(50, 30))
    panel.set_level("bottom")
    panel.set_highlight(int(panel.usage.order("bottom")[0]))
    print(panel.probe(50, 30))
    run_preview(app, panel, view)
