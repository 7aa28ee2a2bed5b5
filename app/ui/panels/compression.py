"""Compression panel: how well a neural video representation (HNeRV) reconstructs the clip, and
how it compares with H.264 / H.265 at the same bits. A thin view over two things:

- the live ``CompressionResult`` of each shown frame (original vs neural reconstruction, PSNR,
  SSIM, bpp) — the error map is the overlay on the frame view;
- a ``CompressionReport`` built on demand ("Compare with H.264/H.265", on a worker thread with
  progress and cancel): the four streams side by side or two under a split slider, per-frame
  PSNR/SSIM plots linked to the frame slider, pooled figures, a rate-distortion plot, the five
  worst frames of each method and CSV export.

Every number and image comes from the task or the report (loupe.base.quality): the task hands
over the frame, its reconstruction and the error map, ``ReportFrames`` converts the codecs' frames
on its own thread; the panel only draws them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from loupe.base.progress import Cancelled, Progress
from loupe.ui.job import Job
from loupe.ui.panels.big_view import BigView, mosaic
from loupe.ui.panels.density import heat_lut
from loupe.ui.panels.report_tabs import ReportTabs
from loupe.ui.panels.report_view import (
    STREAM_NAMES,
    STREAMS,
    ReportFrames,
    ReportView,
    compose_split,
    fmt,
)

logger = logging.getLogger(__name__)

__all__ = ["CODEC_SIZES", "CompressionPanel", "compose_split", "make_panel"]

CODEC_SIZES = (0.5, 1.0, 2.0)


class _ResizeAware(pg.GraphicsLayoutWidget):
    def __init__(self, on_resize: Callable[[], None]) -> None:
        super().__init__()
        self._on_resize = on_resize

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        cb = getattr(self, "_on_resize", None)  # None while the base constructor runs
        if cb is not None:
            cb()


class CompressionPanel(QWidget):
    seekRequested = Signal(int)  # frame index
    reportReady = Signal(object)  # the CompressionReport, on the UI thread
    reportFailed = Signal(str)

    def __init__(self, title: str = "", output: dict | None = None, model_path: str = "",
                 clip: Callable[[], str] | None = None, build_report: Callable | None = None,
                 parent=None) -> None:
        super().__init__(parent)
        self.setProperty("dock_width", 640)  # room for the four streams and the report's table
        self.output = dict(output or {})
        self.model_path = model_path
        self._clip = clip or (lambda: "")
        self._build_report = build_report  # injectable: tests, or None -> loupe.run.compression_report
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setLookupTable(heat_lut("inferno"))
        self.overlay.setOpacity(0.0)
        self._view_box: pg.ViewBox | None = None
        self.last = None
        self.index = 0
        self.original: np.ndarray | None = None
        self.neural: np.ndarray | None = None
        self.report = None
        self.view: ReportView | None = None
        self.report_clip = ""
        self.job: Job | None = None
        self.frames = ReportFrames(self)  # the codecs' RGB frames, converted off the UI thread
        self.frames.ready.connect(self.refresh_frames)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(4)
        self.live_label = QLabel("PSNR —   SSIM —   bpp —")
        self.live_label.setStyleSheet("font-size: 15px")
        self.live_label.setWordWrap(True)  # a narrow dock wraps the figures instead of cutting them
        self.live_label.setToolTip("This frame: PSNR and SSIM on the YUV 4:2:0 planes as FFmpeg computes them; "
                                   "bpp of the entropy-coded representation (decoder included); RGB PSNR: 8-bit RGB")
        lay.addWidget(QLabel(f"<b>{title or 'Compression'}</b>"))
        lay.addWidget(self.live_label)

        row = QHBoxLayout()
        self.compare_btn = QPushButton("Compare with H.264/H.265")
        self.compare_btn.setToolTip("Encode the clip with libx264 and libx265 at the neural version's bits "
                                    f"(and at {', '.join(f'{s:g}x' for s in CODEC_SIZES)} of them), decode, "
                                    "check alignment, measure every frame")
        self.compare_btn.clicked.connect(lambda: self.compare())
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        self.csv_btn = QPushButton("Export CSV…")
        self.csv_btn.setEnabled(False)
        self.csv_btn.clicked.connect(self._export_dialog)
        self.mode_box = QComboBox()
        self.mode_box.addItems(["Side by side", "Split"])
        self.mode_box.setToolTip("Four streams side by side, or two under a split you drag")
        self.mode_box.currentIndexChanged.connect(self._on_mode)
        self.error_box = QCheckBox("Error on frame")
        self.error_box.setToolTip("The neural reconstruction's absolute error over the frame view")
        self.error_box.toggled.connect(self._toggle_error)
        self.big = BigView("Show the four streams (or the split view) in the main view; the plots stay here")
        self.big.button.toggled.connect(lambda _on: self._show_big())
        row.addWidget(self.compare_btn)
        row.addWidget(self.cancel_btn)
        row.addStretch(1)
        lay.addLayout(row)
        for widgets in ((self.mode_box, self.error_box), (self.big.button, self.csv_btn)):  # rows a narrow dock fits
            more = QHBoxLayout()
            for w in widgets:
                more.addWidget(w)
            more.addStretch(1)
            lay.addLayout(more)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(12)
        self.progress.hide()
        lay.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.hide()
        lay.addWidget(self.status)

        # --- the frames: four side by side or a split view -------------------------------
        self.left_box = QComboBox()
        self.right_box = QComboBox()
        for box, default in ((self.left_box, "original"), (self.right_box, "neural")):
            for s in STREAMS:
                box.addItem(STREAM_NAMES[s], s)
            box.setCurrentIndex(STREAMS.index(default))
            box.currentIndexChanged.connect(lambda *_: self.refresh_frames())
        self.left_box.setToolTip("Left of the divider")
        self.right_box.setToolTip("Right of the divider")
        self.split_controls = QWidget()
        sc = QHBoxLayout(self.split_controls)
        sc.setContentsMargins(0, 0, 0, 0)
        sc.addWidget(QLabel("Split: left"))
        sc.addWidget(self.left_box, 1)
        sc.addWidget(QLabel("right"))
        sc.addWidget(self.right_box, 1)
        self.split_controls.hide()
        lay.addWidget(self.split_controls)

        self.frames_stack = QStackedWidget()
        grid = _ResizeAware(self._arrange)
        grid.ci.setSpacing(2)
        grid.ci.setContentsMargins(0, 0, 0, 0)
        self.boxes: dict[str, pg.ViewBox] = {}
        self.images: dict[str, pg.ImageItem] = {}
        self.captions: dict[str, pg.TextItem] = {}
        for i, s in enumerate(STREAMS):
            vb = grid.addViewBox(row=i // 2, col=i % 2, lockAspect=True, invertY=True, enableMenu=False)
            img = pg.ImageItem(axisOrder="row-major")
            vb.addItem(img)
            cap = pg.TextItem(STREAM_NAMES[s], color="w", fill=pg.mkBrush(0, 0, 0, 160))
            cap.setZValue(5)
            vb.addItem(cap, ignoreBounds=True)
            self.boxes[s], self.images[s], self.captions[s] = vb, img, cap
        first = self.boxes[STREAMS[0]]
        for s in STREAMS[1:]:  # one zoom and pan for all four
            self.boxes[s].setXLink(first)
            self.boxes[s].setYLink(first)
        self.grid = grid
        self.grid_shape = (2, 2)
        self.frames_stack.addWidget(grid)
        split = pg.GraphicsLayoutWidget()
        split.ci.setContentsMargins(0, 0, 0, 0)
        self.split_vb = split.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.split_img = pg.ImageItem(axisOrder="row-major")
        self.split_vb.addItem(self.split_img)
        self.divider = pg.InfiniteLine(0, angle=90, movable=True, pen=pg.mkPen("#ffeb3b", width=2),
                                       hoverPen=pg.mkPen("#fff59d", width=3))
        self.divider.setZValue(10)
        self.divider.sigPositionChanged.connect(lambda *_: self._compose_split())
        self.split_vb.addItem(self.divider, ignoreBounds=True)
        self.split_left_cap = pg.TextItem("", color="w", fill=pg.mkBrush(0, 0, 0, 160), anchor=(0, 0))
        self.split_right_cap = pg.TextItem("", color="w", fill=pg.mkBrush(0, 0, 0, 160), anchor=(1, 0))
        for c in (self.split_left_cap, self.split_right_cap):
            c.setZValue(11)
            self.split_vb.addItem(c, ignoreBounds=True)
        self.split = split
        self.split_composed: np.ndarray | None = None
        self._split_w = 0
        self._split_range: tuple[int, int] | None = None
        self._grid_hw: tuple[int, int] | None = None
        self._frame_hw: tuple[int, int] | None = None
        self._fitted_height: tuple[int, int] | None = None
        self.frames_stack.addWidget(split)
        self.frames_stack.setMinimumHeight(150)

        self.tabs = ReportTabs()
        self.tabs.setUsesScrollButtons(False)  # a narrow dock: shorter, elided tab names, no arrows
        self.tabs.setElideMode(Qt.TextElideMode.ElideRight)
        self.tabs.seekRequested.connect(self.seekRequested)
        t = self.tabs  # the panel's names for the tabs' widgets
        self.psnr_plot, self.ssim_plot, self.lines = t.psnr_plot, t.ssim_plot, t.lines
        self.psnr_curves, self.ssim_curves, self.table, self.summary = t.psnr_curves, t.ssim_curves, t.table, t.summary
        self.rd_plot, self.worst_list = t.rd_plot, t.worst_list

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.frames_stack)
        splitter.addWidget(self.tabs)
        splitter.setChildrenCollapsible(False)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        self.splitter = splitter
        lay.addWidget(splitter, 1)
        self._show_placeholders()

    def _toggle_error(self, on: bool) -> None:
        self.overlay.setOpacity(0.65 if on else 0.0)
        if on:
            self._show_error()

    def _arrange(self) -> None:
        """Four frames in the arrangement that shows them largest: 2 x 2, 1 x 4 or 4 x 1."""
        w, h = self.grid.width(), self.grid.height()
        ih, iw = self._grid_hw or (144, 176)
        if w < 10 or h < 10:
            return
        best = max(((2, 2), (1, 4), (4, 1)), key=lambda rc: min(w / rc[1] / iw, h / rc[0] / ih))
        if best != self.grid_shape:
            self.grid_shape = best
            for s in STREAMS:
                self.grid.ci.removeItem(self.boxes[s])
            for i, s in enumerate(STREAMS):
                r, c = (i // 2, i % 2) if best == (2, 2) else ((0, i) if best == (1, 4) else (i, 0))
                self.grid.ci.addItem(self.boxes[s], row=r, col=c)
        if self._grid_hw is not None:  # a new size shows the whole frame again
            self.boxes[STREAMS[0]].setRange(QRectF(0, 0, iw, ih), padding=0)
            rows, cols = best
            need = int(min(w / cols / iw, h / rows / ih) * ih * rows) + 4
            if need < h - 24 and self._fitted_height != (w, need):  # give the spare height to the plots
                self._fitted_height = (w, need)
                sizes = self.splitter.sizes()
                self.splitter.setSizes([need, sum(sizes) - need])

    # --- panel interface (main window) ---------------------------------------------------
    def attach(self, view_box: pg.ViewBox) -> None:
        self._view_box = view_box
        view_box.addItem(self.overlay)
        self.big.attach(view_box)

    def detach(self) -> None:
        self.shutdown()
        if self._view_box is not None:
            self._view_box.removeItem(self.overlay)
        self.big.detach()

    def shutdown(self) -> None:
        """Stop a report being built (window closing or model removed)."""
        job, self.job = self.job, None
        if job is not None:
            job.cancel()
            job.wait(30000)
            self._job_ended()
        self.frames.close()

    def update_from(self, result, frame, slow: bool) -> None:
        """A ``CompressionResult``: its images are ready-made (the task crops, resizes and
        computes the error map on the inference thread)."""
        self.last = result
        self.index = int(frame.index)
        self._frame_hw = (frame.height, frame.width)
        self.original = result.target  # also for a frame the model does not cover
        self.neural = result.recon
        if self.error_box.isChecked():  # the error map only while it is shown
            self._show_error()
        if slow:
            self.refresh()

    def _show_error(self) -> None:
        err = self.last.error if self.last is not None else None
        if err is None:
            self.overlay.clear()
            return
        self.overlay.setImage(err, autoLevels=False, levels=(0.0, 32.0))
        crop = self.output.get("crop")
        if crop:
            t, lft, h, w = (float(v) for v in crop)
        else:
            h, w = (float(v) for v in (self._frame_hw or err.shape[:2]))
            t = lft = 0.0
        self.overlay.setRect(QRectF(lft, t, w, h))

    def refresh_slow(self, result, frame) -> None:
        self.refresh()

    def reset_series(self) -> None:
        """A new source: a report of another clip no longer applies."""
        if self.report is not None and self._clip() != self.report_clip:
            self.set_report(None)

    # --- drawing -------------------------------------------------------------------------
    def refresh(self) -> None:
        r = self.last
        if r is not None and r.message:
            self.live_label.setText(f"frame {self.index + 1}: {r.message}")
        elif r is not None:
            bpp = r.bpp if r.bpp is not None else self.output.get("bpp")
            txt = f"PSNR {fmt(r.psnr)} dB   SSIM {fmt(r.ssim, 4)}   {fmt(bpp, 3)} bpp"
            if r.psnr_rgb is not None:
                txt += f"   (RGB PSNR {fmt(r.psnr_rgb)} dB)"
            self.live_label.setText(f"frame {self.index + 1}:  {txt}")
        self.tabs.set_index(self.index)
        self.refresh_frames()

    def stream_frame(self, stream: str) -> np.ndarray | None:
        """The current frame of one stream (original/neural live; codecs from the report)."""
        if self.view is not None and stream in ("h264", "h265"):
            m = self.view.matched(stream)
            shown = tuple(c for c in ("h264", "h265") if self.view.matched(c))
            return None if m is None else self.frames.get(m, self.index, shown)
        if stream == "original":
            return self.original
        if stream == "neural":
            return self.neural
        return None

    def refresh_frames(self) -> None:
        if self.mode_box.currentIndex() == 0:
            for s in STREAMS:
                img = self.stream_frame(s)
                if img is None:
                    self.images[s].clear()
                    continue
                if s == "original" and self._grid_hw != img.shape[:2]:  # new size: fit it (links do the rest)
                    self._grid_hw = img.shape[:2]
                    self._arrange()
                    self.boxes[s].setRange(QRectF(0, 0, img.shape[1], img.shape[0]), padding=0)
                self.images[s].setImage(img, autoLevels=False, levels=(0, 255))
                self.images[s].setRect(QRectF(0, 0, img.shape[1], img.shape[0]))
                self._caption(s)
        else:
            self._compose_split()
        self._show_big()

    def _show_big(self) -> None:
        """The four streams (2 x 2) or the split view over the main view while its button is down."""
        if not self.big.active:
            return
        if self.mode_box.currentIndex() == 0:
            self.big.set_captions([(self.captions[s].toPlainText().replace("\n", "  "), (i % 2) / 2, (i // 2) / 2)
                                   for i, s in enumerate(STREAMS)])
            img = mosaic([self.stream_frame(s) for s in STREAMS])
        else:
            self.big.set_captions([(STREAM_NAMES[self.left_box.currentData()], 0.0, 0.0)])
            img = self.split_composed
        self.big.show(img, self._frame_hw or (None if img is None else img.shape[:2]))

    def _caption(self, s: str) -> None:
        text = STREAM_NAMES[s]
        if self.view is not None and s != "original":
            m = s if s == "neural" else self.view.matched(s)
            if m is not None and m in self.view.methods:
                psnr = self.view.per_frame(m, "psnr")
                k = np.nonzero(self.view.index == self.index)[0]
                if k.size:
                    text += f"\n{fmt(psnr[k[0]])} dB"  # a second line: a narrow frame cuts no caption
        elif s == "neural" and self.last is not None:
            text += f"\n{fmt(self.last.psnr)} dB"
        self.captions[s].setText(text)

    def _compose_split(self) -> None:
        ls, rs = self.left_box.currentData(), self.right_box.currentData()
        a, b = self.stream_frame(ls), self.stream_frame(rs)
        if a is None or b is None or a.shape != b.shape:
            self.split_img.clear()
            missing = [STREAM_NAMES[s] for s, x in ((ls, a), (rs, b)) if x is None]
            self.split_left_cap.setText(f"{', '.join(missing)}: press Compare" if missing else "sizes differ")
            self.split_right_cap.setText("")
            self.split_composed = None
            return
        w = a.shape[1]
        if self._split_w != w:  # first frame (or new size): divider in the middle
            self._split_w = w
            self.divider.blockSignals(True)
            self.divider.setValue(w / 2)
            self.divider.blockSignals(False)
            self.divider.setBounds((0, w))
        self.split_composed = compose_split(a, b, self.divider.value())
        self.split_img.setImage(self.split_composed, autoLevels=False, levels=(0, 255))
        if self._split_range != a.shape[:2]:
            self._split_range = a.shape[:2]
            self.split_vb.setRange(QRectF(0, 0, w, a.shape[0]), padding=0)
        self.split_left_cap.setText(STREAM_NAMES[ls])
        self.split_left_cap.setPos(0, 0)
        self.split_right_cap.setText(STREAM_NAMES[rs])
        self.split_right_cap.setPos(w, 0)

    def _on_mode(self, i: int) -> None:
        self.frames_stack.setCurrentIndex(i)
        self.split_controls.setVisible(i == 1)
        total = sum(self.splitter.sizes())
        if i == 1:  # one large frame: most of the height
            self.splitter.setSizes([int(total * 0.6), total - int(total * 0.6)])
        else:  # four frames: as tall as they need
            self._fitted_height = None
            self.splitter.setSizes([int(total * 0.6), total - int(total * 0.6)])
            self._arrange()
        self.refresh_frames()

    def set_split(self, left: str, right: str, x: float | None = None) -> None:
        self.mode_box.setCurrentIndex(1)
        self.left_box.setCurrentIndex(STREAMS.index(left))
        self.right_box.setCurrentIndex(STREAMS.index(right))
        if x is not None:
            self.divider.setValue(x)
        self.refresh_frames()

    def _show_placeholders(self) -> None:
        for s in ("h264", "h265"):
            self.captions[s].setText(f"{STREAM_NAMES[s]}: press Compare")

    # --- the report ----------------------------------------------------------------------
    def compare(self, codecs=("h264", "h265"), sizes=CODEC_SIZES, max_frames: int | None = None) -> Job | None:
        """Build a report of the open clip on a worker thread; ``reportReady`` or ``reportFailed``."""
        if self.job is not None:
            return self.job
        clip = self._clip()
        if not clip or clip.startswith("camera:"):
            self._fail("Open the clip this model was fitted on first: the comparison encodes that file.")
            return None
        build = self._build_report
        if build is None:
            from loupe.run.compression_report import build_report as build
        model = self.model_path
        kw = {} if max_frames is None else {"max_frames": max_frames}

        def work(progress: Progress):
            report = build(model, clip, codecs=tuple(codecs), sizes=tuple(sizes), progress=progress, **kw)
            progress.check()  # cancelled as it ended: no report shown
            if report is None:  # a stand-in build that gave up
                raise Cancelled()
            return report

        job = Job(work, "compression report", self)
        job.progressed.connect(self._on_progress)
        job.finishedWith.connect(lambda rep, c=clip: self._on_report(rep, c))
        job.failedWith.connect(self._fail)
        job.wasCancelled.connect(self._on_cancelled)
        job.done.connect(lambda j=job: self._job_done(j))
        self.job = job
        self.compare_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.progress.setValue(0)
        self.progress.show()
        self._status(f"encoding {clip.rsplit('/', 1)[-1]} with {', '.join(c.upper().replace('H', 'H.') for c in codecs)}…")
        job.start()
        return job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.cancel_btn.setEnabled(False)
            self._status("cancelling…")

    def _job_done(self, job: Job) -> None:
        if self.job is job:
            self.job = None
            self._job_ended()
        job.deleteLater()

    def _job_ended(self) -> None:
        self.compare_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self.progress.hide()

    def _on_progress(self, fraction: float, info: dict) -> None:
        self.progress.setValue(int(1000 * min(max(fraction, 0.0), 1.0)))
        if info.get("status"):
            self._status(str(info["status"]))

    def _status(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #b71c1c; font-weight: bold" if error else "color: #37474f")
        self.status.setText(text)
        self.status.setVisible(bool(text))

    def _fail(self, msg: str) -> None:
        # no figure stays on screen from a comparison that failed (e.g. misaligned streams)
        if self.report is not None:
            self.set_report(None)
        self._status(f"No comparison: {msg}", error=True)
        self.reportFailed.emit(msg)

    def _on_cancelled(self) -> None:
        self._status("comparison cancelled")
        self.reportFailed.emit("cancelled")

    def _on_report(self, report, clip: str) -> None:
        self.report_clip = clip
        self.set_report(report)
        self._status("")
        self.reportReady.emit(report)

    def set_report(self, report) -> None:
        """Show a report (or clear it): curves, table, rate-distortion, worst frames."""
        self.report = report
        self.view = ReportView(report) if report is not None else None
        self.frames.set_report(report)
        self.tabs.show_report(self.view)
        self.csv_btn.setEnabled(report is not None)
        if self.view is None:
            self._show_placeholders()
            self.refresh_frames()
            return
        self.refresh()

    def seek_plot(self, x: float) -> None:
        """A click on a plot at frame number ``x`` (from 1): go to the nearest measured frame."""
        self.tabs.seek_plot(x)

    def export_csv(self, path: str) -> None:
        if self.report is None:
            raise ValueError("no comparison to export yet")
        self.report.to_csv(path)

    def _export_dialog(self) -> None:
        if self.report is None:
            return
        stem = (self.report_clip.rsplit("/", 1)[-1].rsplit(".", 1)[0] or "clip") + "_compression.csv"
        path, _ = QFileDialog.getSaveFileName(self, "Export comparison", stem, "CSV (*.csv)")
        if path:
            try:
                self.export_csv(path)
            except OSError as e:
                self._status(f"could not write {path}: {e}", error=True)
                return
            self._status(f"wrote {path}")


def make_panel(model, host) -> CompressionPanel:
    """The registry's panel factory: the codec comparison runs on the window's open clip."""
    panel = CompressionPanel(model.engine.card.name or model.name, output=model.engine.card.output,
                             model_path=str(model.engine.path), clip=lambda: host.source_spec)
    panel.seekRequested.connect(host.seek_to)
    return panel
