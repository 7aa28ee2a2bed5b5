"""The transport bar under the frame view: play/pause, step, the seek slider and position, the
DICOM series picker, the display-window presets and the camera button.

A plain widget: it emits what the user asked for and shows what the window tells it; the player
and the source stay with the window.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QStyle,
    QStyleOptionSlider,
    QToolButton,
    QWidget,
)

from loupe.ui.viewer import WINDOW_PRESETS


class SeekSlider(QSlider):
    """A slider whose track jumps to the frame clicked (not a page step towards it)."""

    def mousePressEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.LeftButton and self.isEnabled():
            opt = QStyleOptionSlider()
            self.initStyleOption(opt)
            handle = self.style().subControlRect(QStyle.ComplexControl.CC_Slider, opt,
                                                 QStyle.SubControl.SC_SliderHandle, self)
            if not handle.contains(ev.position().toPoint()):  # on the track: jump, then drag from there
                groove = self.style().subControlRect(QStyle.ComplexControl.CC_Slider, opt,
                                                     QStyle.SubControl.SC_SliderGroove, self)
                half = handle.width() // 2
                x = int(ev.position().x()) - groove.x() - half
                span = max(1, groove.width() - handle.width())
                value = QStyle.sliderValueFromPosition(self.minimum(), self.maximum(), x, span,
                                                       opt.upsideDown)
                self.setSliderPosition(value)
                self.sliderMoved.emit(value)
        super().mousePressEvent(ev)


class TransportBar(QWidget):
    playClicked = Signal()
    stepClicked = Signal()
    seekRequested = Signal(int)  # frame index: the slider clicked, dragged, released or arrow-keyed
    seriesPicked = Signal(str)  # the spec of the DICOM series picked
    windowPreset = Signal(str)  # a display-window preset picked
    cameraClicked = Signal(bool)  # the camera button, checked or not

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 2, 6, 2)
        self.play_btn = QToolButton()
        self.play_btn.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.play_btn.setToolTip("Play / pause (Space)")
        self.play_btn.clicked.connect(self.playClicked)
        self.step_btn = QToolButton()
        self.step_btn.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaSkipForward))
        self.step_btn.setToolTip("Next frame (Right)")
        self.step_btn.clicked.connect(self.stepClicked)
        self.seek = SeekSlider(Qt.Orientation.Horizontal)
        self.seek.setEnabled(False)
        self.seek.setToolTip("Seek: click a point to go there, drag to scrub")
        self.seek.sliderMoved.connect(self.seekRequested)  # frames follow the handle (the newest seek wins)
        self.seek.sliderReleased.connect(lambda: self.seekRequested.emit(self.seek.value()))
        self.seek.actionTriggered.connect(self._on_seek_action)
        self.pos_label = QLabel("no source")
        self.pos_label.setMinimumWidth(200)
        self.series_box = QComboBox()
        self.series_box.setToolTip("This folder holds several DICOM series: pick one")
        self.series_box.setVisible(False)
        self.series_box.activated.connect(self._on_series_picked)
        self.window_box = QComboBox()
        self.window_box.addItems([*WINDOW_PRESETS, "Custom"])
        self.window_box.setToolTip("Display window for greyscale / DICOM frames (right-drag on the image: "
                                   "horizontal = width, vertical = level). The model never sees it.")
        self.window_box.textActivated.connect(self.windowPreset)
        self.window_box.setVisible(False)
        self.cam_btn = QToolButton()
        self.cam_btn.setText("Camera")
        self.cam_btn.setCheckable(True)
        self.cam_btn.setToolTip("Start / stop the camera (Ctrl+K)")
        self.cam_btn.clicked.connect(self.cameraClicked)
        for w in (self.play_btn, self.step_btn):
            lay.addWidget(w)
        lay.addWidget(self.seek, 1)
        lay.addWidget(self.pos_label)
        lay.addWidget(self.series_box)
        lay.addWidget(self.window_box)
        lay.addWidget(self.cam_btn)

    def _on_seek_action(self, _action: int) -> None:
        if not self.seek.isSliderDown():  # page/arrow clicks on the slider
            QTimer.singleShot(0, self, lambda: self.seekRequested.emit(self.seek.sliderPosition()))

    def _on_series_picked(self, i: int) -> None:
        spec = self.series_box.itemData(i)
        if spec:
            self.seriesPicked.emit(str(spec))

    def set_source(self, source) -> None:
        """A new source: the slider spans its frames (none for a live one), the series it offers."""
        frames = source.frame_count
        self.window_box.setCurrentText("From file")
        self.seek.setEnabled(bool(frames) and not source.live)
        self.seek.setRange(0, max(0, (frames or 1) - 1))
        self.seek.setValue(0)
        self.step_btn.setEnabled(not source.live)
        self.cam_btn.setChecked(source.live)
        series = list(getattr(source, "series", None) or [])
        self.series_box.blockSignals(True)
        self.series_box.clear()
        for info in series:
            self.series_box.addItem(info.label, info.spec)
        current = getattr(source, "info", None)
        if current is not None:
            self.series_box.setCurrentIndex(max(0, self.series_box.findData(current.spec)))
        self.series_box.blockSignals(False)
        self.series_box.setVisible(len(series) > 1)

    def show_position(self, frame, frame_count: int | None) -> None:
        """The slider (unless the user holds it) and the label at ``frame``."""
        if frame_count:
            if not self.seek.isSliderDown():
                self.seek.blockSignals(True)
                self.seek.setValue(frame.index)
                self.seek.blockSignals(False)
            self.pos_label.setText(f"frame {frame.index + 1} / {frame_count}   {frame.timestamp:7.2f} s")
        else:
            self.pos_label.setText(f"frame {frame.index + 1}   {frame.timestamp:7.2f} s")

    def set_playing(self, playing: bool) -> None:
        icon = QStyle.StandardPixmap.SP_MediaPause if playing else QStyle.StandardPixmap.SP_MediaPlay
        self.play_btn.setIcon(self.style().standardIcon(icon))
