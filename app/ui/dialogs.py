"""The window's small widgets and dialogs: the message banner, File ▸ Open file/folder/model and
the camera dialog. The dialogs remember their folder and camera choices in the settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QSpinBox,
    QStyle,
    QToolButton,
    QWidget,
)

from loupe.inference.card import task_names, write_sidecar
from loupe.ui import settings as keys

CAMERA_RESOLUTIONS = ["default", "640x480", "1280x720", "1920x1080"]
MEDIA_FILTER = ("Media (*.mp4 *.mkv *.avi *.mov *.webm *.m4v *.mpg *.ts *.png *.jpg *.jpeg *.bmp *.tif *.tiff "
                "*.webp *.dcm);;All files (*)")


class Banner(QWidget):
    """A dismissible message strip above the view (errors and notices)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 4, 4)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.label, 1)
        close = QToolButton()
        close.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_TitleBarCloseButton))
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        lay.addWidget(close)
        self.setAutoFillBackground(True)
        self.level: str | None = None
        self.hide()

    def clear_errors(self) -> None:
        """Hide an error once a later action succeeded; a notice (info) stays until dismissed."""
        if self.level == "error":
            self.hide()
            self.level = None

    def show_message(self, text: str, level: str = "error") -> None:
        colors = {"error": ("#5c1d1d", "#ffd7d7"), "warning": ("#5c4a12", "#fff1c7"), "info": ("#1d3b5c", "#d7e9ff")}
        bg, fg = colors.get(level, colors["info"])
        self.setStyleSheet(f"background:{bg}; color:{fg};")
        self.label.setText(text)
        self.level = level
        self.show()


class CameraDialog(QDialog):
    def __init__(self, parent=None, device: int = 0, resolution: str = "default") -> None:
        super().__init__(parent)
        self.setWindowTitle("Open camera")
        form = QFormLayout(self)
        self.device = QSpinBox()
        self.device.setRange(0, 63)
        self.device.setValue(device)
        form.addRow("Device index", self.device)
        self.resolution = QComboBox()
        self.resolution.addItems(CAMERA_RESOLUTIONS)
        self.resolution.setEditable(True)
        self.resolution.setCurrentText(resolution)
        form.addRow("Resolution", self.resolution)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        form.addRow(bb)


def parse_resolution(text: str | None) -> tuple[int | None, int | None]:
    if not text or text == "default":
        return None, None
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise ValueError(f"resolution must look like 1280x720, got {text!r}") from None


def open_file(win) -> None:
    path, _ = QFileDialog.getOpenFileName(win, "Open video, image or DICOM", keys.last_dir(win.settings), MEDIA_FILTER)
    if path:
        win.settings.setValue(keys.LAST_DIR, str(Path(path).parent))
        win.open_source(path)


def open_folder(win) -> None:
    path = QFileDialog.getExistingDirectory(win, "Open folder of images or DICOM", keys.last_dir(win.settings))
    if path:
        win.settings.setValue(keys.LAST_DIR, path)
        win.open_source(path)


def open_model(win) -> None:
    path, _ = QFileDialog.getOpenFileName(win, "Open ONNX model", keys.last_dir(win.settings), "ONNX models (*.onnx)")
    if path:
        win.settings.setValue(keys.LAST_DIR, str(Path(path).parent))
        win.add_model(path)


def open_camera(win) -> None:
    store = win.settings
    dlg = CameraDialog(win, int(store.value(keys.CAMERA_DEVICE, 0)), str(store.value(keys.CAMERA_RESOLUTION, "default")))
    if dlg.exec() != QDialog.DialogCode.Accepted:
        return
    res = dlg.resolution.currentText()
    store.setValue(keys.CAMERA_DEVICE, dlg.device.value())
    store.setValue(keys.CAMERA_RESOLUTION, res)
    win.open_camera(dlg.device.value(), res)


def task_choices(engine) -> tuple[list[str], str]:
    """What the task question lists: the guessed candidates first (a task name, or
    ``detection:FORMAT`` when several formats fit), then the other tasks a model may be given by
    hand (not the ones that need their own card: anomaly, codebook, compression); and the text
    that says what was guessed."""
    from loupe.inference.guess import NEVER_GUESSED

    guess = engine.guess
    cands = list(guess.candidates) if guess is not None else []
    keys = [c.key for c in cands]
    rest = [t for t in task_names() if t not in NEVER_GUESSED and t not in {c.task for c in cands}]
    if not cands:
        return keys + rest, ""
    if len(cands) == 1:
        said = f"Its outputs look like {cands[0].key}: {cands[0].reason}."
    else:
        said = "Its outputs fit several tasks:\n" + "\n".join(f"  • {c.key}: {c.reason}" for c in cands)
    return keys + rest, said


def card_for_choice(engine, key: str):
    """The card for the task the user chose: the guessed candidate's, or for another task the
    guessed input spec with that task and no task-specific entries (its own defaults apply)."""
    guess = engine.guess
    for c in guess.candidates if guess is not None else ():
        if key == c.key:
            return replace(c.card, origin="sidecar")
    return replace(engine.card, task=key, labels=(), palette=(), output={}, origin="sidecar")


def confirm_task(win, engine) -> bool:
    """A model without a card: ask what it does, the guessed candidates listed first (or, in
    screenshot mode, say what is assumed) and save the answer next to it as a sidecar card.
    False when the user cancels."""
    items, said = task_choices(engine)
    first = engine.guess.candidates[0] if engine.guess is not None else None
    if not win.ask_task:
        what = f"{first.key} ({first.reason})" if first is not None else engine.card.task
        others = ""
        if engine.guess is not None and engine.guess.ambiguous:
            others = "; it could also be " + ", ".join(c.key for c in engine.guess.candidates[1:])
        win.show_error(f"{engine.path.name} has no model card; treating it as {what}{others}.", level="info")
        return True
    key, ok = QInputDialog.getItem(
        win, "Model without a card",
        f"{engine.path.name} carries no Loupe model card. {said}\nWhat does it do? (the answer is saved "
        f"next to the model as {engine.path.name}.loupe.json; the model file is not changed)",
        items, 0, False,
    )
    if not ok:
        return False
    card = card_for_choice(engine, key)
    try:
        write_sidecar(engine.path, card)
    except OSError as e:
        win.show_error(f"could not save the card next to the model ({e}); using it for this session", "info")
    engine.card = card
    return True
