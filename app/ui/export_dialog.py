"""The dialog of File ▸ Export video with overlays…: where to write, and what ``loupe render``'s
options would say (the caption strip, the first N frames only, the pixel scale for small frames,
H.264 quality and speed). The choices other than the file and the frame count persist.

The dialog shows what the file will be (its size, frame rate and frame count) as the options
change, and says why it cannot export (no file name, a folder that does not exist, a suffix the
writer does not take) instead of closing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from loupe.run.render import DEFAULT_CRF, DEFAULT_PRESET, MAX_SCALE, PRESETS, VIDEO_SUFFIXES, even
from loupe.ui.settings import EXPORT_CAPTION, EXPORT_CRF, EXPORT_PRESET, EXPORT_SCALE


@dataclass(frozen=True)
class ExportOptions:
    """What an export draws and how it encodes (``loupe render``'s options of the same names)."""

    caption: bool = True
    start: int = 1  # the first frame, numbered from 1 as the transport shows them
    max_frames: int | None = None  # None: every frame (from ``start``)
    scale: int = 1  # image pixels per frame pixel, each way
    crf: float = DEFAULT_CRF
    preset: str = DEFAULT_PRESET


def saved_options(store: Any) -> ExportOptions:
    """The options last used (the defaults where the settings hold nothing usable)."""

    def number(key: str, default: float, lo: float, hi: float) -> float:
        try:
            v = float(store.value(key, default))
        except (TypeError, ValueError):
            return default
        return v if lo <= v <= hi else default

    caption = str(store.value(EXPORT_CAPTION, "true")).lower() not in ("false", "0", "no")
    preset = str(store.value(EXPORT_PRESET, DEFAULT_PRESET))
    return ExportOptions(caption=caption, scale=int(number(EXPORT_SCALE, 1, 1, MAX_SCALE)),
                         crf=number(EXPORT_CRF, DEFAULT_CRF, 0, 51),
                         preset=preset if preset in PRESETS else DEFAULT_PRESET)


def save_options(store: Any, opts: ExportOptions) -> None:
    store.setValue(EXPORT_CAPTION, "true" if opts.caption else "false")
    store.setValue(EXPORT_SCALE, int(opts.scale))
    store.setValue(EXPORT_CRF, float(opts.crf))
    store.setValue(EXPORT_PRESET, opts.preset)


def out_problem(text: str) -> str | None:
    """Why ``text`` cannot be the output file (None: it can)."""
    if not text.strip():
        return "Choose a file to write."
    path = Path(text).expanduser()
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        return f"The file must end in {', '.join(VIDEO_SUFFIXES)}."
    if not path.parent.is_dir():
        return f"There is no folder {path.parent}."
    if path.is_dir():
        return f"{path} is a folder."
    return None


class ExportDialog(QDialog):
    """The file and the options of one export. ``frame_size`` (width, height), ``fps`` and
    ``frame_count`` describe the open file, ``shown`` the frame on screen (from 1; None where
    unknown)."""

    def __init__(self, out: str, opts: ExportOptions, frame_size: tuple[int, int] | None = None,
                 fps: float | None = None, frame_count: int | None = None, shown: int | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export video with overlays")
        self.setMinimumWidth(500)
        self.frame_size, self.fps, self.frame_count = frame_size, fps, frame_count
        form = QFormLayout(self)
        intro = QLabel("The open file's frames, in order, with the overlays as the view draws them "
                       "(what <code>loupe render</code> writes), to an H.264 video.")
        intro.setWordWrap(True)
        form.addRow(intro)
        row = QHBoxLayout()
        self.path = QLineEdit(out)
        self.path.setToolTip(f"The video to write ({', '.join(VIDEO_SUFFIXES)})")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        form.addRow("File", row)
        row = QHBoxLayout()
        self.start = QSpinBox()
        self.start.setRange(1, frame_count if frame_count else 10_000_000)
        self.start.setValue(opts.start)
        self.start.setToolTip("The first frame of the video, numbered as the transport shows them")
        row.addWidget(self.start, 1)
        self.from_shown = QPushButton(f"From the frame shown ({shown})" if shown else "From the frame shown")
        self.from_shown.setEnabled(shown is not None)
        self.from_shown.clicked.connect(lambda: self.start.setValue(shown or 1))
        row.addWidget(self.from_shown)
        form.addRow("Start at frame", row)
        self.frames = QSpinBox()
        self.frames.setRange(0, frame_count if frame_count else 10_000_000)
        self.frames.setSpecialValueText("all")
        self.frames.setValue(0 if opts.max_frames is None else opts.max_frames)
        self.frames.setToolTip("At most this many frames from the start (all: to the end)")
        form.addRow("Frames", self.frames)
        self.caption = QCheckBox("Caption strip: model names, key figures, frame and time")
        self.caption.setChecked(opts.caption)
        form.addRow("", self.caption)
        self.scale = QSpinBox()
        self.scale.setRange(1, MAX_SCALE)
        self.scale.setSuffix(" ×")
        self.scale.setValue(opts.scale)
        self.scale.setToolTip("Each frame pixel drawn as an N x N block, for small frames (a 64x64 MR slice) "
                              "whose caption cannot be read at their own size")
        form.addRow("Pixel scale", self.scale)
        self.crf = QSpinBox()
        self.crf.setRange(0, 51)
        self.crf.setValue(round(opts.crf))
        self.crf.setToolTip("H.264 CRF: 0 lossless, 18 close to visually lossless, higher values smaller files")
        form.addRow("Quality (CRF)", self.crf)
        self.preset = QComboBox()
        self.preset.addItems(list(PRESETS))
        self.preset.setCurrentText(opts.preset)
        self.preset.setToolTip("libx264's speed: a faster preset encodes a large frame in a fraction of the "
                               "time, for a larger file at the same quality")
        form.addRow("Encoder speed", self.preset)
        self.summary = QLabel("")
        form.addRow("Video", self.summary)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #b71c1c")
        self.error.setWordWrap(True)
        form.addRow(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.export_button = buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.setDefault(True)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        for signal in (self.start.valueChanged, self.frames.valueChanged, self.scale.valueChanged):
            signal.connect(self._describe)
        self.path.textChanged.connect(lambda _t: self.error.setText(""))
        self._describe()

    def options(self) -> ExportOptions:
        n = int(self.frames.value())
        return ExportOptions(caption=self.caption.isChecked(), start=int(self.start.value()), max_frames=n or None,
                             scale=int(self.scale.value()), crf=float(self.crf.value()),
                             preset=self.preset.currentText())

    def out(self) -> str:
        return str(Path(self.path.text().strip()).expanduser())

    def _describe(self) -> None:
        """The video the options make: "1280x544 (2 × 640x272), 25 fps, frames 20 to 31 of 250"."""
        parts = []
        s = int(self.scale.value())
        if self.frame_size is not None:
            w, h = self.frame_size
            size = f"{even(w * s)}x{even(h * s)}"
            parts.append(size + (f" ({s} × {w}x{h})" if s > 1 else ""))
        if self.fps:
            parts.append(f"{self.fps:g} fps")
        n, first, count = int(self.frames.value()), int(self.start.value()), self.frame_count
        if count:
            last = min(count, first + n - 1) if n else count
            parts.append(f"{count} frames" if (first, last) == (1, count) else
                         f"frames {first} to {last} of {count} ({last - first + 1} frames)")
        elif n:
            parts.append(f"{n} frames from frame {first}")
        elif first > 1:
            parts.append(f"from frame {first}")
        self.summary.setText(", ".join(parts))

    def _browse(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        out, _ = QFileDialog.getSaveFileName(self, "Export video with overlays", self.path.text(),
                                             "MP4 video (*.mp4);;Matroska (*.mkv);;QuickTime (*.mov)")
        if out:
            if Path(out).suffix.lower() not in VIDEO_SUFFIXES:
                out += ".mp4"
            self.path.setText(out)

    def _accept(self) -> None:
        problem = out_problem(self.path.text())
        if problem is not None:
            self.error.setText(problem)
            return
        self.accept()
