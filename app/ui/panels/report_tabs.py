"""The compression panel's report tabs: per-frame PSNR/SSIM plots (x linked, a line at the frame
shown, a click seeks), the pooled table, the rate-distortion plot and the five worst frames of
each method (a click seeks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from loupe.ui.panels.report_view import METHOD_COLORS, STREAM_NAMES, ReportView, fmt, method_color


class ReportTabs(QTabWidget):
    seekRequested = Signal(int)  # frame index

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.view: ReportView | None = None
        # --- per-frame plots (one widget, x linked) --------------------------------------
        per_frame = QWidget()
        pf = QVBoxLayout(per_frame)
        pf.setContentsMargins(0, 0, 0, 0)
        pf.setSpacing(0)
        self.legend = QLabel(" ".join(f"<span style='color:{c}'>&#9644; {STREAM_NAMES[m]}</span>&nbsp;&nbsp;"
                                      for m, c in METHOD_COLORS.items()))
        self.legend.setToolTip("Click a plot to go to that frame; the vertical line is the frame shown")
        pf.addWidget(self.legend)
        self.plots = pg.GraphicsLayoutWidget()
        self.plots.setBackground("w")
        self.psnr_plot = self.plots.addPlot(row=0, col=0)
        self.ssim_plot = self.plots.addPlot(row=1, col=0)
        for p, label in ((self.psnr_plot, "PSNR dB"), (self.ssim_plot, "SSIM")):
            p.setLabel("left", label)
            p.showGrid(x=True, y=True, alpha=0.3)
            p.getAxis("left").enableAutoSIPrefix(False)
            p.getAxis("left").setWidth(48)
            p.setMenuEnabled(False)
        self.ssim_plot.setLabel("bottom", "frame")
        self.ssim_plot.setXLink(self.psnr_plot)
        self.lines = []
        for p in (self.psnr_plot, self.ssim_plot):
            line = pg.InfiniteLine(0, angle=90, movable=False, pen=pg.mkPen("#6a1b9a", width=1.5))
            p.addItem(line, ignoreBounds=True)
            self.lines.append(line)
        self.plots.scene().sigMouseClicked.connect(self._on_plot_click)
        self.plots.setMinimumHeight(120)
        pf.addWidget(self.plots, 1)
        self.psnr_curves: dict[str, pg.PlotDataItem] = {}
        self.ssim_curves: dict[str, pg.PlotDataItem] = {}

        # --- pooled, rate-distortion, worst frames ---------------------------------------
        pooled = QWidget()
        pl = QVBoxLayout(pooled)
        pl.setContentsMargins(0, 0, 0, 0)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet("color: #546e7a; font-size: 11px")
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["method", "PSNR pooled", "PSNR mean", "SSIM mean", "RGB PSNR", "bpp"])
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setToolTip("PSNR pooled: PSNR of the mean MSE over frames (FFmpeg 'average'); PSNR mean: "
                              "mean of per-frame PSNR; SSIM: FFmpeg's 'All'; RGB PSNR: 8-bit RGB, neural only; "
                              "* not within 5% of the neural bits")
        pl.addWidget(self.table, 1)
        pl.addWidget(self.summary)
        self.rd_plot = pg.PlotWidget(background="w")
        self.rd_plot.setLabel("bottom", "bits per pixel")
        self.rd_plot.setLabel("left", "PSNR pooled (dB)")
        self.rd_plot.showGrid(x=True, y=True, alpha=0.3)
        self.rd_plot.addLegend(offset=(-4, -4), labelTextSize="8pt", brush=pg.mkBrush(255, 255, 255, 210))
        self.worst_list = QListWidget()
        self.worst_list.setToolTip("The five lowest-PSNR frames of each method; click to go there")
        self.worst_list.itemClicked.connect(self._on_worst)

        self.addTab(per_frame, "Per frame")
        self.addTab(pooled, "Pooled")
        self.addTab(self.rd_plot, "Rate–distortion")
        self.addTab(self.worst_list, "Worst frames")

    def show_report(self, v: ReportView | None) -> None:
        """Fill the tabs from a report (or clear them)."""
        self.view = v
        for p in (self.psnr_plot, self.ssim_plot):
            for item in list(p.listDataItems()):
                p.removeItem(item)
        for item in list(self.rd_plot.listDataItems()):
            self.rd_plot.removeItem(item)
        if self.rd_plot.plotItem.legend is not None:
            self.rd_plot.plotItem.legend.clear()
        self.psnr_curves.clear()
        self.ssim_curves.clear()
        self.table.setRowCount(0)
        self.worst_list.clear()
        self.summary.setText("")
        if v is None:
            return
        for m in v.methods:
            pen = pg.mkPen(method_color(m), width=1.5)
            # x: frame numbers as the player shows them (from 1)
            self.psnr_curves[m] = self.psnr_plot.plot(v.index + 1, v.per_frame(m, "psnr"), pen=pen, name=v.label(m))
            self.ssim_curves[m] = self.ssim_plot.plot(v.index + 1, v.per_frame(m, "ssim"), pen=pen)
        # pooled figures: at the neural bits, then the codecs at the other sizes
        self.table.setRowCount(len(v.all_methods))
        for r, m in enumerate(v.all_methods):
            pooled = v.pooled(m)
            res = v.report.methods[m]
            cells = [v.label(m) + ("" if res.matched else " *"), fmt(pooled.get("psnr_pooled")),
                     fmt(pooled.get("psnr_mean")), fmt(pooled.get("ssim_mean"), 4),
                     fmt(pooled.get("psnr_rgb_pooled")) if m == "neural" else "", fmt(v.bpp(m), 4)]
            for c, text in enumerate(cells):
                it = QTableWidgetItem(text)
                if c:
                    it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if res.note:
                    it.setToolTip(res.note)
                self.table.setItem(r, c, it)
        self.table.resizeRowsToContents()
        # rate-distortion: one curve per codec over its sizes, the neural point(s)
        for m in v.methods:
            x, y = v.rd_curve(m)
            if m == "neural":
                self.rd_plot.plot(x, y, pen=None, symbol="star", symbolSize=16, symbolBrush=method_color(m),
                                  name=v.label(m))
            else:
                self.rd_plot.plot(x, y, pen=pg.mkPen(method_color(m), width=2), symbol="o", symbolSize=7,
                                  symbolBrush=method_color(m), name=v.label(m))
        # five worst frames per method
        for m in v.methods:
            head = QListWidgetItem(f"{v.label(m)}:")
            head.setFlags(Qt.ItemFlag.NoItemFlags)
            font = head.font()
            font.setBold(True)
            head.setFont(font)
            head.setForeground(QColor(method_color(m)))
            self.worst_list.addItem(head)
            for idx, val in v.worst(m, 5):
                it = QListWidgetItem(f"    frame {idx + 1}   {fmt(val)} dB")  # from 1, as the player shows
                it.setData(Qt.ItemDataRole.UserRole, idx)
                self.worst_list.addItem(it)
        self.summary.setText(
            f"{v.report.frames} frames of {Path(v.report.clip).name} at {v.report.size[1]}x{v.report.size[0]}, "
            f"YUV 4:2:0 PSNR/SSIM as FFmpeg; codecs at the neural bits (built in {v.report.seconds:.0f} s)")

    def set_index(self, index: int) -> None:
        """The line at the frame shown (``index`` 0-based; the plots' x counts from 1)."""
        for line in self.lines:
            line.setValue(index + 1)

    def _on_plot_click(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton or self.view is None:
            return
        for p in (self.psnr_plot, self.ssim_plot):
            if p.sceneBoundingRect().contains(ev.scenePos()):
                self.seek_plot(p.vb.mapSceneToView(ev.scenePos()).x())
                return

    def seek_plot(self, x: float) -> None:
        """A click on a plot at frame number ``x`` (from 1): go to the nearest measured frame."""
        if self.view is None or self.view.index.size == 0:
            return
        k = int(np.argmin(np.abs(self.view.index + 1 - x)))
        self.seekRequested.emit(int(self.view.index[k]))

    def _on_worst(self, item: QListWidgetItem) -> None:
        idx = item.data(Qt.ItemDataRole.UserRole)
        if idx is not None:
            self.seekRequested.emit(int(idx))
