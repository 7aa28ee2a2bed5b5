"""Detection panel: boxes with label and score over the frame (one item draws them all), the
score threshold (and the NMS IoU where the format needs NMS), per-class show/hide with this
frame's counts, the count over time (click to seek), and the details of a box clicked on the frame.
"Track IDs" switches the task's tracker on (``DetectionTask.set_tracking``): tags then start with
each box's track ID and every track leaves a trail of its last ``TRAIL_LEN`` centres.

A thin view over ``DetectionResult``: the task has already decoded, thresholded and mapped the
boxes to the source frame's pixels; the thresholds set here are the task's, and a change re-runs
the paused frame (``PanelHost.rerun_frame``) so the boxes on screen follow at once.
"""

from __future__ import annotations

import html
from collections import deque
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from loupe.inference.engine import default_palette
from loupe.ui.panels.base import (
    OverlayOnly,
    big_label,
    clicked_at,
    frame_axis,
    opacity_slider,
    plot_frame,
    swatch,
    titled_layout,
)
from loupe.ui.panels.boxes_item import BoxesItem

if TYPE_CHECKING:
    from loupe.tasks.detection import DetectionResult

OPACITY_KEY = "detection/opacity"  # 0..1
SHOW_LABELS_KEY = "detection/show_labels"  # bool
TRACK_KEY = "detection/track_ids"  # bool
TRAIL_LEN = 30  # centres per trail (frames a trail outlives its track's last box, too)
LIST_ALL_AT = 20  # with more classes than this, the table lists the classes seen so far
TABLE_ROWS = 10  # rows the class table shows before it scrolls


def _threshold_slider(value: float) -> tuple[QSlider, QLabel]:
    """A 0.00-1.00 slider in steps of 0.01 and the label that shows its value."""
    s = QSlider(Qt.Orientation.Horizontal)
    s.setRange(0, 100)
    s.setSingleStep(1)
    s.setPageStep(5)
    s.setValue(round(100 * value))
    label = QLabel(f"{value:.2f}")
    label.setMinimumWidth(label.fontMetrics().horizontalAdvance("0.000"))
    return s, label


class _CountPlot(pg.PlotWidget):
    """The count plot, asking for a modest height: the dock's scroll area sizes a panel by its
    preferred height (its labels wrap), and a plot's default hint (480 px) would make the panel
    scroll where the plot could simply be shorter."""

    def sizeHint(self) -> QSize:
        return QSize(240, 180)


class DetectionPanel(OverlayOnly, QWidget):
    """Controls, counts, plot and box details for one detection model; owns the boxes item."""

    scoreChanged = Signal(float)
    iouChanged = Signal(float)
    seekRequested = Signal(int)  # frame index
    trackingChanged = Signal(bool)
    settingsChanged = Signal()

    def __init__(self, labels: tuple[str, ...], palette: np.ndarray, title: str = "", *,
                 score_threshold: float = 0.25, iou_threshold: float = 0.7, needs_nms: bool = True,
                 parent=None) -> None:
        super().__init__(parent)
        self.labels = tuple(labels)
        if len(palette) < len(self.labels):
            palette = default_palette(len(self.labels))
        self.palette = np.asarray(palette, np.uint8).reshape(-1, 3)
        self.visible = np.ones(len(self.labels), bool)
        self.seen = np.zeros(len(self.labels), bool)  # classes with a box in this source so far
        self.last: DetectionResult | None = None
        self.last_index: int | None = None
        self._scale = (1.0, 1.0)  # result pixels -> shown frame pixels (x, y)
        self._series: dict[int, int] = {}  # frame index -> count
        self._view_box: pg.ViewBox | None = None
        self._scene = None
        self._picked_point: tuple[float, float] | None = None  # the last click on the frame
        self._trails: dict[int, tuple[int, deque]] = {}  # track id -> (class, recent centres)
        self._trail_seen: dict[int, int] = {}  # track id -> the last frame it had a box
        self._trail_index: int | None = None
        self.overlay = BoxesItem(self.palette, self.labels)

        lay = titled_layout(self, title or "Detection")
        self.count_label = big_label(lay, "count —", 20)
        form = QFormLayout()
        self.score_slider, self.score_value = _threshold_slider(score_threshold)
        self.score_slider.setToolTip("Boxes scoring below this are dropped (the model runs again on a paused frame)")
        self.score_slider.valueChanged.connect(self._on_score)
        form.addRow("Min score", self._with_value(self.score_slider, self.score_value))
        self.iou_slider, self.iou_value = _threshold_slider(iou_threshold)
        self.iou_slider.setToolTip("Non-maximum suppression: of two boxes of a class overlapping more than "
                                   "this (intersection over union), the lower-scoring one is dropped")
        self.iou_slider.valueChanged.connect(self._on_iou)
        self.iou_row = self._with_value(self.iou_slider, self.iou_value)
        form.addRow("NMS IoU", self.iou_row)
        self.iou_label = form.labelForField(self.iou_row)
        self.set_needs_nms(needs_nms)
        self.opacity = opacity_slider(self.overlay, 100, self.settingsChanged.emit)
        self.opacity.setToolTip("Opacity of the boxes and labels")
        form.addRow("Opacity", self.opacity)
        self.labels_box = QCheckBox("Label and score on each box")
        self.labels_box.setChecked(True)
        self.labels_box.toggled.connect(self._on_show_labels)
        form.addRow(self.labels_box)
        self.track_box = QCheckBox("Track IDs and trails")
        self.track_box.setToolTip("Follow objects across frames (ByteTrack-style): each box's track ID in its tag, "
                                  f"a line through its last {TRAIL_LEN} centres; a seek starts the tracks again")
        self.track_box.toggled.connect(self._on_track)
        self.track_box.setVisible(False)  # connect_panel shows it for a task that can track
        form.addRow(self.track_box)
        lay.addLayout(form)

        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["class", "count"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.table.itemChanged.connect(self._on_item)
        lay.addWidget(self.table, 1)
        self.list_all = QCheckBox()
        self.list_all.setToolTip("Otherwise the table lists the classes seen in this source so far")
        self.list_all.toggled.connect(lambda _on: self._update_rows())
        lay.addWidget(self.list_all)
        self.details = QLabel("Click a box on the frame for its details; tick a class to show or hide it.")
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setStyleSheet("color: gray")
        lay.addWidget(self.details)

        self.plot = _CountPlot(background="w", axisItems={"bottom": frame_axis()})  # frames from 1
        self.plot.setLabel("bottom", "frame")
        self.plot.setLabel("left", "count")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.plot.setDownsampling(auto=True, mode="peak")
        self.plot.setClipToView(True)
        self.plot.setToolTip("Boxes per frame; click to go to a frame")
        self.curve = self.plot.plot(pen=pg.mkPen("#1565c0", width=2), name="count")
        self.plot.scene().sigMouseClicked.connect(self._on_plot_click)
        self._y_follow = True  # the count axis follows the counts until the user zooms it
        self.plot.getViewBox().sigRangeChangedManually.connect(self._on_plot_zoom)
        self.plot.setMinimumHeight(140)
        lay.addWidget(self.plot, 1)
        self._fill_table()

    def _fill_table(self) -> None:
        """One row per class: its swatch and name (ticked: shown) and this frame's count."""
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.labels))
        for k, lab in enumerate(self.labels):
            it = QTableWidgetItem(swatch(self.palette[k % len(self.palette)]), lab)
            it.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            it.setCheckState(Qt.CheckState.Checked if self.visible[k] else Qt.CheckState.Unchecked)
            self.table.setItem(k, 0, it)
            n = QTableWidgetItem("0")
            n.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(k, 1, n)
        self.table.blockSignals(False)
        many = len(self.labels) > LIST_ALL_AT
        self.list_all.setText(f"List all {len(self.labels)} classes")
        self.list_all.blockSignals(True)
        self.list_all.setChecked(not many)
        self.list_all.blockSignals(False)
        self.list_all.setVisible(many)
        self._update_rows()

    def set_labels(self, labels: tuple[str, ...], palette: np.ndarray | None = None) -> None:
        """Other class names (a model whose class count is only known from its first output):
        the table, the item's colours and the per-class state start again."""
        self.labels = tuple(labels)
        if palette is None or len(palette) < len(self.labels):
            palette = default_palette(len(self.labels))
        self.palette = np.asarray(palette, np.uint8).reshape(-1, 3)
        self.visible = np.ones(len(self.labels), bool)
        self.seen = np.zeros(len(self.labels), bool)
        self.overlay.set_labels(self.labels, self.palette)
        self._fill_table()

    @staticmethod
    def _with_value(slider: QSlider, label: QLabel) -> QWidget:
        w = QWidget()
        row = QHBoxLayout(w)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(slider, 1)
        row.addWidget(label)
        return w

    # --- the frame view ----------------------------------------------------------------------
    # (attach, detach, shutdown: OverlayOnly's; frame clicks go to _on_frame_click)

    # --- view of a result --------------------------------------------------------------------
    def update_from(self, result: DetectionResult, frame, slow: bool) -> None:
        self.show_result(result, (frame.height, frame.width), frame.index, slow)

    def refresh_slow(self, result: DetectionResult, frame) -> None:
        self.update_counts(result)
        self.refresh_plot()

    def show_result(self, result: DetectionResult, frame_hw: tuple[int, int], index: int,
                    update_slow: bool = True) -> None:
        """Draw ``result`` over a frame of ``frame_hw`` (the frame on screen; boxes are scaled
        if the result's frame had another size); counts, table and plot when ``update_slow``."""
        if tuple(result.labels) != self.labels:
            self.set_labels(tuple(result.labels))
        same_frame = index == self.last_index
        picked = self._picked_point if same_frame else None
        self.last, self.last_index = result, index
        rh, rw = result.frame_hw
        h, w = frame_hw
        self._scale = (w / rw if rw else 1.0, h / rh if rh else 1.0)
        boxes = np.asarray(result.boxes, np.float32).reshape(-1, 4)
        if self._scale != (1.0, 1.0):
            boxes = boxes * np.array([self._scale[0], self._scale[1]] * 2, np.float32)
        track_ids = getattr(result, "track_ids", None)
        self.overlay.set_boxes(boxes, result.scores, result.classes, frame_hw, track_ids)
        self._update_trails(track_ids, boxes, result.classes, index, same_frame)
        self._series[index] = int(result.count)
        n = np.asarray(result.counts)[: len(self.labels)]
        self.seen[: len(n)] |= n > 0
        if picked is not None:  # the same frame again (a threshold changed): the same point
            self.pick(*picked)
        if update_slow:
            self.update_counts(result)
            self.refresh_plot()

    def update_counts(self, result: DetectionResult) -> None:
        counts = np.asarray(result.counts, np.int64)
        shown = int(np.count_nonzero(self.overlay.kept()))
        txt = f"count {int(result.count)}"
        if shown != result.count:
            txt += f"  ({shown} shown)"
        self.count_label.setText(txt)
        self.table.blockSignals(True)
        for k in range(min(len(counts), self.table.rowCount())):
            self.table.item(k, 1).setText(str(int(counts[k])))
        self.table.blockSignals(False)
        self._update_rows()

    def _update_rows(self) -> None:
        every = self.list_all.isChecked()
        for k in range(self.table.rowCount()):
            self.table.setRowHidden(k, not (every or self.seen[k] or not self.visible[k]))
        self._fit_table()

    def _fit_table(self) -> None:
        """The table as tall as its listed rows (up to TABLE_ROWS, then it scrolls), so the plot
        below gets the room an empty table would take."""
        rows = [k for k in range(self.table.rowCount()) if not self.table.isRowHidden(k)]
        row_h = self.table.verticalHeader().defaultSectionSize()
        n = min(max(len(rows), 2), TABLE_ROWS)
        h = self.table.horizontalHeader().height() + n * row_h + 2 * self.table.frameWidth()
        self.table.setMaximumHeight(h)
        self.table.setMinimumHeight(min(h, self.table.horizontalHeader().height() + 3 * row_h + 4))

    def refresh_plot(self) -> None:
        frames = sorted(self._series)
        counts = [self._series[f] for f in frames]
        self.curve.setData(frames, counts, symbol="o" if len(frames) == 1 else None, symbolSize=6,
                           symbolBrush="#1565c0", symbolPen=None)  # one frame: a dot, not nothing
        if self._y_follow and counts:  # from 0, whole counts: a flat 7 is not drawn as 7.0-7.4
            top = max(counts)
            self.plot.getViewBox().setYRange(0, top + max(1.0, 0.08 * top), padding=0)

    def _update_trails(self, track_ids: np.ndarray | None, boxes: np.ndarray, classes: np.ndarray,
                       index: int, same_frame: bool) -> None:
        """Add this frame's box centres (shown frame pixels) to their tracks' trails; a seek
        (not the next frames) clears them, the same frame again moves its points."""
        if track_ids is None:
            if self._trails or self._trail_index is not None:
                self.clear_trails()
            return
        last = self._trail_index
        if last is not None and not same_frame and not 0 < index - last <= TRAIL_LEN:
            self.clear_trails()
        cx = ((boxes[:, 0] + boxes[:, 2]) / 2).tolist()
        cy = ((boxes[:, 1] + boxes[:, 3]) / 2).tolist()
        for k, t in enumerate(np.asarray(track_ids).tolist()):
            if t <= 0:
                continue
            entry = self._trails.get(t)
            if entry is None:
                entry = self._trails[t] = (int(classes[k]), deque(maxlen=TRAIL_LEN))
            pts = entry[1]
            if same_frame and pts and self._trail_seen.get(t) == index:
                pts[-1] = (cx[k], cy[k])
            else:
                pts.append((cx[k], cy[k]))
            self._trail_seen[t] = index
        for t in [t for t, i in self._trail_seen.items() if index - i > TRAIL_LEN]:
            del self._trails[t], self._trail_seen[t]
        self._trail_index = index
        self.overlay.set_trails([(c, np.array(pts)) for c, pts in self._trails.values()])

    def clear_trails(self) -> None:
        self._trails.clear()
        self._trail_seen.clear()
        self._trail_index = None
        self.overlay.set_trails([])

    def trails(self) -> dict[int, list[tuple[float, float]]]:
        """Track id -> its trail's centres (shown frame pixels, oldest first)."""
        return {t: list(pts) for t, (_c, pts) in self._trails.items()}

    def reset_series(self) -> None:
        """A new source: the count over time, the classes seen and the trails start again."""
        self.clear_trails()
        self._series.clear()
        self.seen[:] = False
        self.last_index = None
        self._picked_point = None
        self._y_follow = True
        self.curve.setData([], [])
        self._update_rows()

    def value_at(self, x: float, y: float) -> str | None:
        """"label score" of the (smallest) box under frame pixel (x, y) (the status bar's readout)."""
        i = self.overlay.box_at(x, y)
        return None if i is None else self.overlay.label_text(i)

    # --- box details --------------------------------------------------------------------------
    def pick(self, x: float, y: float) -> int | None:
        """Select the smallest shown box under frame pixel (x, y) and show its details."""
        self._picked_point = (x, y)
        i = self.overlay.box_at(x, y)
        self.overlay.set_selected(i)
        if i is None:
            self.details.setText("No box there. Click a box on the frame for its details.")
            self.details.setStyleSheet("color: gray")
            return None
        sx, sy = self._scale
        x1, y1, x2, y2 = (float(v) for v in self.last.boxes[i])  # the result's own pixels
        frame = "" if self.last_index is None else f"frame {self.last_index + 1}: "
        self.details.setText(
            f"{frame}<b>{html.escape(self.overlay.label_text(i))}</b> (class {int(self.last.classes[i])})<br>"
            f"box x1 {x1:.0f}, y1 {y1:.0f}, x2 {x2:.0f}, y2 {y2:.0f}<br>"
            f"{x2 - x1:.0f} × {y2 - y1:.0f} px"
            + ("" if (sx, sy) == (1.0, 1.0) else " (pixels of the {1}×{0} frame the model ran on)".format(
                *self.last.frame_hw)))
        self.details.setStyleSheet("")
        return i

    def _on_frame_click(self, ev) -> None:
        at = clicked_at(self._view_box, ev) if self.last is not None else None
        if at is not None:
            self.pick(*at)

    def _on_plot_zoom(self, mask) -> None:
        if mask[1]:
            self._y_follow = False

    def _on_plot_click(self, ev) -> None:
        index = plot_frame(self.plot, ev, self._series)
        if index is not None:
            self.seekRequested.emit(index)

    # --- controls -----------------------------------------------------------------------------
    def set_needs_nms(self, on: bool) -> None:
        """The IoU slider only for formats whose boxes still need NMS."""
        self.iou_row.setVisible(on)
        if self.iou_label is not None:
            self.iou_label.setVisible(on)

    def set_opacity(self, value: float) -> None:
        self.opacity.setValue(round(100 * value))

    def set_show_labels(self, on: bool) -> None:
        self.labels_box.setChecked(on)

    def set_tracking(self, on: bool) -> None:
        """Tick or untick "Track IDs" (``trackingChanged`` tells the task)."""
        self.track_box.setChecked(on)

    def set_class_visible(self, k: int, visible: bool) -> None:
        self.table.item(k, 0).setCheckState(Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked)

    def _on_score(self, v: int) -> None:
        self.score_value.setText(f"{v / 100:.2f}")
        self.scoreChanged.emit(v / 100.0)

    def _on_iou(self, v: int) -> None:
        self.iou_value.setText(f"{v / 100:.2f}")
        self.iouChanged.emit(v / 100.0)

    def _on_show_labels(self, on: bool) -> None:
        self.overlay.set_show_labels(on)
        self.settingsChanged.emit()

    def _on_track(self, on: bool) -> None:
        if not on:
            self.clear_trails()
        self.trackingChanged.emit(on)
        self.settingsChanged.emit()

    def _on_item(self, item: QTableWidgetItem) -> None:
        if item.column() != 0:
            return
        self.visible[item.row()] = item.checkState() == Qt.CheckState.Checked
        self.overlay.set_visible_classes(self.visible)
        if self._picked_point is not None and self.overlay.selected is not None \
                and not self.overlay.kept()[self.overlay.selected]:
            self.pick(*self._picked_point)  # the selected box's class was hidden
        if self.last is not None:
            self.update_counts(self.last)


def _flag(value, default: bool) -> bool:
    return default if value is None else str(value).lower() in ("true", "1")


def make_panel(model, host) -> DetectionPanel:
    """The registry's panel factory: thresholds start from the task's (the card's) and go back
    to it, re-running a paused frame; opacity, labels and tracking as the user last left them."""
    task = model.task
    panel = DetectionPanel(task.labels, task.palette, title=model.engine.card.name or model.name,
                           score_threshold=task.score_threshold, iou_threshold=task.iou_threshold,
                           needs_nms=task.needs_nms)
    connect_panel(panel, task, host)
    return panel


def connect_panel(panel: DetectionPanel, task, host) -> None:
    """Wire a detection panel (or a subclass's: pose, instance masks) to its task and the window:
    the thresholds and "Track IDs" go to the task (re-running a paused frame), a click on the
    plot seeks, and opacity, labels and tracking are restored from and saved to the settings."""
    panel.set_opacity(float(host.settings.value(OPACITY_KEY, 1.0)))
    panel.set_show_labels(_flag(host.settings.value(SHOW_LABELS_KEY), True))
    can_track = callable(getattr(task, "set_tracking", None))
    panel.track_box.setVisible(can_track)
    if can_track:
        tracking = _flag(host.settings.value(TRACK_KEY), False)
        task.set_tracking(tracking)
        panel.track_box.blockSignals(True)  # set up without a re-run
        panel.set_tracking(tracking)
        panel.track_box.blockSignals(False)

    def on_score(v: float, t=task) -> None:
        t.set_score_threshold(v)
        host.rerun_frame()

    def on_iou(v: float, t=task) -> None:
        t.set_iou_threshold(v)
        host.rerun_frame()

    def on_track(on: bool, t=task) -> None:
        if can_track:
            t.set_tracking(on)
            host.rerun_frame()

    def save(p: DetectionPanel = panel) -> None:
        host.settings.setValue(OPACITY_KEY, p.opacity.value() / 100.0)
        host.settings.setValue(SHOW_LABELS_KEY, p.labels_box.isChecked())
        host.settings.setValue(TRACK_KEY, p.track_box.isChecked())

    panel.scoreChanged.connect(on_score)
    panel.iouChanged.connect(on_iou)
    panel.trackingChanged.connect(on_track)
    panel.seekRequested.connect(host.seek_to)
    panel.settingsChanged.connect(save)


if __name__ == "__main__":  # a preview fed synthetic results
    from loupe.tasks.detection import DetectionResult
    from loupe.ui.panels.base import preview_app, preview_view, run_preview

    app = preview_app()
    names = ("person", "bicycle", "car")
    panel = DetectionPanel(names, np.array([[220, 60, 60], [60, 110, 240], [250, 220, 40]]), "preview")
    view = preview_view(panel)
    panel.track_box.setVisible(True)
    panel.set_tracking(True)
    for i in range(20):
        b = np.array([[10 + 3 * i, 20, 60 + 3 * i, 110], [100, 30, 190, 90], [120, 50, 150, 80]], np.float32)
        cls = np.array([0, 2, 1], np.int32)
        res = DetectionResult(b, np.array([0.91, 0.8, 0.42], np.float32), cls, names, (120, 200),
                              np.bincount(cls, minlength=3).astype(np.int64), np.array([1, 2, 3], np.int64))
        panel.show_result(res, (120, 200), i)
    panel.pick(130.0, 60.0)
    run_preview(app, panel, view)
