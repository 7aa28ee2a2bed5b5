"""Loupe's main window: the frame view, a panel per model, transport controls, status bar."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QSlider,
    QSpinBox,
    QStyle,
    QTabWidget,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from loupe.inference.card import task_names, write_sidecar
from loupe.inference.engine import Engine, ModelError
from loupe.run.pipeline import FrameResult, LatestSlot, LoadedModel, RateMeter, Runner
from loupe.run.player import Player
from loupe.sources.open import classify_path, open_source
from loupe.tasks import UnsupportedTask, make_task
from loupe.ui.analyze_job import analysis_job, describe, progress_dialog
from loupe.ui.job import Job, JobQueue
from loupe.ui.panels.anomaly import AnomalyPanel
from loupe.ui.panels.segmentation import SegmentationPanel
from loupe.ui.viewer import WINDOW_PRESETS, FrameView
from loupe.ui.worker import InferenceWorker

logger = logging.getLogger(__name__)

MAX_RECENT = 10
CAMERA_RESOLUTIONS = ["default", "640x480", "1280x720", "1920x1080"]


def settings() -> QSettings:
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "Loupe", "Loupe")


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
        self.hide()

    def show_message(self, text: str, level: str = "error") -> None:
        colors = {"error": ("#5c1d1d", "#ffd7d7"), "info": ("#1d3b5c", "#d7e9ff")}
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


class MainWindow(QMainWindow):
    frameShown = Signal(object)  # FrameResult, after the view and panels were updated
    errorShown = Signal(str)
    sourceOpened = Signal(str)
    modelLoaded = Signal(str)
    # the player's reader thread reports through these (queued to the UI thread)
    _playerError = Signal(str)
    _playerEnded = Signal()
    _playerStatus = Signal(str)
    _playerRecovered = Signal(str)

    def __init__(self, providers: str = "auto", ask_task: bool = True, lockstep: bool = False) -> None:
        super().__init__()
        self.setWindowTitle("Loupe")
        self.setAcceptDrops(True)
        self.providers = providers
        self.ask_task = ask_task
        self.lockstep = lockstep  # every frame shown, none dropped (screenshot mode)
        self.settings = settings()
        self._apply_limit_settings()
        self.slot = LatestSlot()
        self.runner = Runner()
        self.models: list[LoadedModel] = []
        self.panels: list[SegmentationPanel | None] = []
        self.player: Player | None = None
        self.source_name = ""
        self.source_spec = ""
        self.frame_count: int | None = None
        self.meter = RateMeter()
        self.shown = 0
        self.last_result: FrameResult | None = None
        self._legend_t = 0.0
        self._slow_stale = False
        self._source_gen = 0
        self._accept_after = 0.0
        self._loading = JobQueue()  # models and sources load one after the other, off the UI thread
        self._window_restored = False
        self.analyze_job: Job | None = None
        self.fit_job: Job | None = None
        queued = Qt.ConnectionType.QueuedConnection
        self._playerError.connect(self.show_error, queued)
        self._playerEnded.connect(self._on_end, queued)
        self._playerStatus.connect(lambda msg: self.statusBar().showMessage(msg, 10000), queued)
        self._playerRecovered.connect(self._on_recovered, queued)

        self.view = FrameView()
        self.view.windowChanged.connect(self._on_window_changed)
        self.banner = Banner()
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.banner)
        lay.addWidget(self.view, 1)
        lay.addWidget(self._make_transport())
        self.setCentralWidget(central)

        self.panel_tabs = QTabWidget()
        self.panel_tabs.setTabsClosable(True)  # the close button removes that tab's model
        self.panel_tabs.tabCloseRequested.connect(self._close_panel_tab)
        self.panel_dock = QDockWidget("Panels", self)
        self.panel_dock.setObjectName("panels")
        self.panel_dock.setWidget(self.panel_tabs)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.panel_dock)
        self.info = QTextBrowser()
        self.info_dock = QDockWidget("Model", self)
        self.info_dock.setObjectName("model-info")
        self.info_dock.setWidget(self.info)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.info_dock)
        self._update_info()

        self._make_menus()
        self._make_status()
        self._report_broken_plugins()

        self.worker = InferenceWorker(self.slot, self.runner, self)
        self.worker.resultReady.connect(self._on_result, Qt.ConnectionType.QueuedConnection)
        self.worker.failed.connect(self.show_error, Qt.ConnectionType.QueuedConnection)
        self.worker.start()
        self._status_timer = QTimer(self)
        self._status_timer.timeout.connect(self._update_status)
        self._status_timer.start(250)
        self.resize(1400, 800)
        self.resizeDocks([self.panel_dock, self.info_dock], [560, 200], Qt.Orientation.Vertical)
        geo = self.settings.value("window/geometry")
        if geo is not None:
            self.restoreGeometry(geo)

    # --- construction ---------------------------------------------------------------------
    def _make_transport(self) -> QWidget:
        bar = QWidget()
        lay = QHBoxLayout(bar)
        lay.setContentsMargins(6, 2, 6, 2)
        self.play_btn = QToolButton()
        self.play_btn.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.play_btn.setToolTip("Play / pause (Space)")
        self.play_btn.clicked.connect(self.toggle_play)
        self.step_btn = QToolButton()
        self.step_btn.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaSkipForward))
        self.step_btn.setToolTip("Next frame (Right)")
        self.step_btn.clicked.connect(self.step)
        self.seek = QSlider(Qt.Orientation.Horizontal)
        self.seek.setEnabled(False)
        self.seek.setToolTip("Seek")
        self.seek.sliderReleased.connect(lambda: self.seek_to(self.seek.value()))
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
        self.window_box.textActivated.connect(self._on_window_preset)
        self.window_box.setVisible(False)
        self.cam_btn = QToolButton()
        self.cam_btn.setText("Camera")
        self.cam_btn.setCheckable(True)
        self.cam_btn.setToolTip("Start / stop the camera (Ctrl+K)")
        self.cam_btn.clicked.connect(self._on_camera_button)
        for w in (self.play_btn, self.step_btn):
            lay.addWidget(w)
        lay.addWidget(self.seek, 1)
        lay.addWidget(self.pos_label)
        lay.addWidget(self.series_box)
        lay.addWidget(self.window_box)
        lay.addWidget(self.cam_btn)
        return bar

    def _make_menus(self) -> None:
        m = self.menuBar().addMenu("&File")

        def act(menu, text, slot, shortcut=None):
            a = QAction(text, self)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            a.triggered.connect(slot)
            menu.addAction(a)
            return a

        act(m, "&Open file…", self._open_file_dialog, "Ctrl+O")
        act(m, "Open &folder…", self._open_folder_dialog, "Ctrl+Shift+O")
        act(m, "Open &model…", self._open_model_dialog, "Ctrl+M")
        act(m, "Open &camera…", self._open_camera_dialog, "Ctrl+K")
        demos = m.addMenu("&Demo models")
        from loupe.resources import demo_models

        for path in demo_models():
            a = demos.addAction(path.stem.replace("demo_", "").replace("_", " "))
            a.setToolTip(str(path))
            a.triggered.connect(lambda checked=False, p=str(path): self.add_model(p))
        demos.setEnabled(bool(demos.actions()))
        self.recent_menu = m.addMenu("&Recent")
        self._rebuild_recent()
        m.addSeparator()
        self.analyze_action = act(m, "&Analyse to file…", self._analyze_dialog, "Ctrl+E")
        act(m, "Save &screenshot…", self._save_screenshot_dialog, "Ctrl+S")
        m.addSeparator()
        act(m, "&Quit", self.close, "Ctrl+Q")
        fit = self.menuBar().addMenu("F&it")
        self.learn_action = act(fit, "&Learn normal from this clip…", self._learn_normal, "Ctrl+L")
        self.hnerv_action = act(fit, "Fit &HNeRV on this clip…", self._fit_hnerv, "Ctrl+H")
        self.codebook_action = act(fit, "Fit a &codebook on this clip…", self._fit_codebook, "Ctrl+Shift+L")
        mm = self.menuBar().addMenu("&Model")
        self.remove_model_action = act(mm, "&Remove", self.remove_current_model, "Ctrl+W")
        self.remove_model_action.setToolTip("Unload the model whose panel is shown")
        self.remove_model_action.setEnabled(False)
        v = self.menuBar().addMenu("&View")
        act(v, "Play / pause", self.toggle_play, "Space")
        act(v, "Next frame", self.step, "Right")
        act(v, "Previous frame", self.step_back, "Left")
        act(v, "First frame", lambda: self.seek_to(0), "Home")
        act(v, "Toggle fill / contour", self._toggle_mode, "C")
        act(v, "Show / hide overlay", self._toggle_overlay, "O")
        v.addSeparator()
        v.addAction(self.panel_dock.toggleViewAction())
        v.addAction(self.info_dock.toggleViewAction())
        h = self.menuBar().addMenu("&Help")
        act(h, "&About Loupe / system information", self._show_about, "F1")

    def _make_status(self) -> None:
        sb = self.statusBar()
        self.st_provider = QLabel("no model")
        self.st_fps = QLabel("")
        self.st_latency = QLabel("")
        self.st_dropped = QLabel("")
        for w in (self.st_provider, self.st_fps, self.st_latency, self.st_dropped):
            w.setContentsMargins(8, 0, 8, 0)
            sb.addPermanentWidget(w)

    # --- opening things ---------------------------------------------------------------------
    def open_paths(self, paths: list[str]) -> None:
        """Models first, then the last media path becomes the source."""
        media = []
        for p in paths:
            if classify_path(p) == "model":
                self.add_model(p)
            else:
                media.append(p)
        if media:
            self.open_source(media[-1])

    def open_source(self, spec: str, playing: bool = True, **camera_kw) -> None:
        """Open a file, folder or camera off the UI thread; ``sourceOpened`` or ``errorShown`` follows."""
        self.banner.hide()
        self._source_gen += 1
        gen = self._source_gen

        def work():
            if camera_kw:
                from loupe.sources.camera import CameraSource

                return CameraSource(int(spec.split(":")[-1]), **camera_kw)
            return open_source(spec)

        def done(source) -> None:
            if gen != self._source_gen:  # a newer open superseded this one
                source.close()
                return
            self._start_source(spec, source, playing)

        self._in_background(work, done)

    def _start_source(self, spec: str, source, playing: bool) -> None:
        self._stop_player()
        self._accept_after = time.monotonic()  # results of the old source still in flight are dropped
        self.slot.clear()
        self.slot.reset_dropped()  # under the slot's lock: the reader thread counts there
        self.worker.reset_skipped()
        self.meter.reset()
        self.shown = 0
        self.source_name = source.name
        self.source_spec = spec
        self.frame_count = source.frame_count
        self.view.window_override = None
        self._window_restored = False
        self.window_box.setCurrentText("From file")
        self.seek.setEnabled(bool(self.frame_count) and not source.live)
        self.seek.setRange(0, max(0, (self.frame_count or 1) - 1))
        self.seek.setValue(0)
        self.step_btn.setEnabled(not source.live)
        self.cam_btn.setChecked(source.live)
        self.player = Player(
            source, self.slot,
            on_error=self._playerError.emit,
            on_end=self._playerEnded.emit,
            realtime=not self.lockstep, lockstep=self.lockstep,
            on_status=self._playerStatus.emit,
            on_recovered=self._playerRecovered.emit,
        )
        for p in self.panels:
            if p is not None:
                p.reset_series()
        self._update_series_box(source)
        self.player.start(playing=playing)
        self._update_play_button()
        self.setWindowTitle(f"Loupe — {source.name}")
        if not source.live:
            self._add_recent(spec)
        self.sourceOpened.emit(source.name)

    def add_model(self, path: str) -> None:
        """Load a model off the UI thread; ``modelLoaded`` or ``errorShown`` follows."""
        providers = self.providers
        self.statusBar().showMessage(f"loading {Path(path).name}…")
        self._in_background(lambda: Engine(path, providers=providers), lambda eng: self._attach_model(path, eng))

    def _attach_model(self, path: str, engine: Engine) -> None:
        self.statusBar().clearMessage()
        if engine.needs_task and not self._confirm_task(engine):
            return
        try:
            task = make_task(engine)
        except (UnsupportedTask, ModelError) as e:
            self.show_error(str(e))
            return
        lm = LoadedModel(engine, task)
        self.models.append(lm)
        panel = self._make_panel(lm)
        if panel is not None:
            panel.attach(self.view.vb)
            panel.overlay.setZValue(10 + len(self.models))
            self.panel_tabs.addTab(panel, lm.name)
            self.panel_tabs.setTabToolTip(self.panel_tabs.indexOf(panel), f"{lm.name} ({lm.task.name}): "
                                          "the close button unloads the model")
            self.panel_tabs.setCurrentWidget(panel)
        self.panels.append(panel)
        self.remove_model_action.setEnabled(True)
        self.runner.set_models(self.models)
        self._accept_after = time.monotonic()  # results computed with the old model list are dropped
        self._slow_stale = False  # the last result belongs to the old list: no catch-up with it
        self._update_info()
        self._update_status()  # the provider at once, not at the next status tick
        self._add_recent(path)
        if self.player is not None and not self.player.playing and self.last_result is not None:
            self.slot.put(self.last_result.frame)  # re-run the paused frame with the new model
        self.modelLoaded.emit(lm.name)

    def _in_background(self, work, done, name: str = "loading") -> Job | None:
        """Run ``work()`` in a Job, after the loading started before it; ``done(result)`` or an
        error banner (a LoupeError's message; else the type and message, logged) on the UI thread."""
        if getattr(self, "_closing", False):  # e.g. a fit that finished while the window closed
            logger.info("window closing: not starting background work")
            return None
        QApplication.setOverrideCursor(Qt.CursorShape.BusyCursor)
        job = Job(lambda _progress: work(), name, self)

        def finished(result) -> None:
            QApplication.restoreOverrideCursor()
            done(result)

        def failed(msg: str) -> None:
            QApplication.restoreOverrideCursor()
            self.show_error(msg)

        job.finishedWith.connect(finished)
        job.failedWith.connect(failed)
        job.wasCancelled.connect(QApplication.restoreOverrideCursor)  # the window closed first
        job.done.connect(job.deleteLater)
        return job.start(self._loading)

    def _make_panel(self, lm: LoadedModel):
        """The model's panel, made by its task's registry entry (``TaskSpec.panel``); a task
        without one gets the table of its ``analyze`` values. A plug-in's panel that fails is
        reported and replaced by that table: the model still runs."""
        from loupe.ui.panels.table import make_panel as table_panel

        spec = lm.spec
        if spec is None or not spec.has_panel:
            return table_panel(lm, self)
        try:
            return spec.make_panel(lm, self)
        except Exception as e:  # a plug-in's panel code: never lose the model over it
            if spec.builtin:
                raise
            logger.warning("panel of %s failed", lm.name, exc_info=True)
            self.show_error(f"{lm.name}: the {spec.name} panel ({spec.origin}) failed "
                            f"({type(e).__name__}: {e}); showing its values as a table")
            return table_panel(lm, self)

    def _report_broken_plugins(self) -> None:
        """A task plug-in that failed to load is named in the banner; the app runs on without it."""
        from loupe.base import registry

        failed = registry.failures()
        if failed:
            self.show_error("Task plug-ins not loaded (`loupe tasks` lists them): " + "; ".join(
                f"{f.name} ({f.origin}): {f.error}" for f in failed), "info")

    def remove_current_model(self) -> None:
        """Model ▸ Remove: unload the model whose panel is the current tab."""
        panel = self.panel_tabs.currentWidget()
        if panel is not None and panel in self.panels:
            self.remove_model(self.panels.index(panel))

    def _close_panel_tab(self, tab: int) -> None:
        panel = self.panel_tabs.widget(tab)
        if panel is not None and panel in self.panels:
            self.remove_model(self.panels.index(panel))

    def remove_model(self, index: int) -> None:
        """Unload model ``index`` (its panel and overlay go too); the others keep running."""
        if not 0 <= index < len(self.models):
            return
        models = self.models[:index] + self.models[index + 1:]
        self.runner.set_models(models)
        self._accept_after = time.monotonic()  # results computed with the old model list are dropped
        self._slow_stale = False
        panel = self.panels.pop(index)
        self.models[:] = models
        if panel is not None:
            panel.detach()
            panel.shutdown()
            tab = self.panel_tabs.indexOf(panel)
            if tab >= 0:
                self.panel_tabs.removeTab(tab)
            panel.deleteLater()
        self.remove_model_action.setEnabled(bool(self.models))
        self._update_info()
        self._update_status()
        if self.player is not None and not self.player.playing and self.last_result is not None:
            self.slot.put(self.last_result.frame)  # re-run the paused frame without it

    def remove_models(self) -> None:
        self.runner.set_models([])
        self._accept_after = time.monotonic()  # results computed with the old model list are dropped
        self._slow_stale = False
        for p in self.panels:
            if p is not None:
                p.detach()
                p.shutdown()
        self.models.clear()
        self.panels.clear()
        self.panel_tabs.clear()
        self.remove_model_action.setEnabled(False)
        self._update_info()
        self._update_status()

    def _confirm_task(self, engine: Engine) -> bool:
        guess = engine.card.task
        if not self.ask_task:
            self.show_error(
                f"{engine.path.name} has no model card; treating it as {guess}.", level="info"
            )
            return True
        task, ok = QInputDialog.getItem(
            self, "Model without a card",
            f"{engine.path.name} carries no Loupe model card.\nWhat does it do? (the answer is saved "
            f"next to the model as {engine.path.name}.loupe.json; the model file is not changed)",
            list(task_names()), task_names().index(guess), False,
        )
        if not ok:
            return False
        from dataclasses import replace

        card = replace(engine.card, task=task, origin="sidecar")
        try:
            write_sidecar(engine.path, card)
        except OSError as e:
            self.show_error(f"could not save the card next to the model ({e}); using it for this session", "info")
        engine.card = card
        return True

    # --- transport ------------------------------------------------------------------------
    def toggle_play(self) -> None:
        if self.player is None:
            return
        if self.player.playing:
            self.player.pause()
        else:
            if self.frame_count and self.last_result and self.last_result.frame.index >= self.frame_count - 1:
                self.player.seek(0)
            self.player.play()
        self._update_play_button()

    def step(self) -> None:
        if self.player is not None:
            self.player.step()
            self._update_play_button()

    def step_back(self) -> None:
        if self.player is not None and self.last_result is not None:
            self.player.pause()
            self.player.seek(max(0, self.last_result.frame.index - 1))
            self._update_play_button()

    def seek_to(self, index: int) -> None:
        if self.player is not None:
            self.player.seek(index)

    def _on_seek_action(self, action: int) -> None:
        if not self.seek.isSliderDown():  # page/arrow clicks on the slider
            QTimer.singleShot(0, self, lambda: self.seek_to(self.seek.sliderPosition()))

    def _on_recovered(self, msg: str) -> None:
        """A live source came back after failing: say so (info), keep going."""
        self.show_error(msg, "info")
        self.statusBar().clearMessage()
        self._update_play_button()

    def _on_end(self) -> None:
        self._update_play_button()
        self.statusBar().showMessage("end of file", 3000)

    def _update_play_button(self) -> None:
        playing = self.player is not None and self.player.playing
        icon = QStyle.StandardPixmap.SP_MediaPause if playing else QStyle.StandardPixmap.SP_MediaPlay
        self.play_btn.setIcon(self.style().standardIcon(icon))

    def _on_camera_button(self, checked: bool) -> None:
        if checked:
            self.cam_btn.setChecked(False)
            self._open_camera_dialog()
        else:
            self._stop_player()
            self.statusBar().showMessage("camera stopped", 3000)

    def _stop_player(self) -> None:
        if self.player is not None:
            self.player.stop()
            self.player = None
        self.cam_btn.setChecked(False)
        self._update_play_button()

    # --- results ----------------------------------------------------------------------------
    def _on_result(self, fr: FrameResult) -> None:
        self.worker.result_shown()
        if self.player is None or fr.received_at < self._accept_after:
            return
        if len(fr.results) != len(self.panels):  # a model list that changed while it ran
            return
        self.last_result = fr
        frame = fr.frame
        self.view.show_frame(frame)
        if self.view.is_greyscale != self.window_box.isVisible():
            self.window_box.setVisible(self.view.is_greyscale)
        if self.view.is_greyscale and not self._window_restored:
            self._window_restored = True
            saved = str(self.settings.value("display/window_preset", "From file"))
            if saved in WINDOW_PRESETS and (not saved.startswith("CT") or frame.metadata.get("modality") == "CT"):
                self.window_box.setCurrentText(saved)
                self.view.apply_preset(saved)
        now = time.monotonic()
        update_legend = now - self._legend_t > 0.2  # legends and plots at display rate
        if update_legend:
            self._legend_t = now
        self._slow_stale = not update_legend
        for panel, mr in zip(self.panels, fr.results):
            if panel is not None:
                panel.update_from(mr.result, frame, update_legend)
        lat = (fr.done_at - fr.received_at) * 1e3
        cap = frame.metadata.get("capture_time")
        if cap is not None:
            lat = (time.monotonic() - cap) * 1e3
        self.meter.add(fr.done_at, lat)
        self.shown += 1
        self._update_position(frame)
        self.frameShown.emit(fr)

    def _update_position(self, frame) -> None:
        if self.frame_count:
            if not self.seek.isSliderDown():
                self.seek.blockSignals(True)
                self.seek.setValue(frame.index)
                self.seek.blockSignals(False)
            self.pos_label.setText(f"frame {frame.index + 1} / {self.frame_count}   {frame.timestamp:7.2f} s")
        else:
            self.pos_label.setText(f"frame {frame.index + 1}   {frame.timestamp:7.2f} s")
        md = frame.metadata
        if md.get("modality"):
            parts = [str(md["modality"])]
            if md.get("series_description"):
                parts.append(str(md["series_description"]))
            if self.view.is_greyscale:
                c, w = self.view.current_window()
                parts.append(f"W {w:.0f} / L {c:.0f}")
            if md.get("pixel_spacing"):
                ps = md["pixel_spacing"]
                parts.append(f"{float(ps[0]):.3g}×{float(ps[1]):.3g} mm")
            if md.get("slice_position_mm") is not None:
                parts.append(f"z {float(md['slice_position_mm']):.1f} mm")
            self.view.set_caption("  ".join(parts))
        else:
            self.view.set_caption("")

    def _update_series_box(self, source) -> None:
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

    def _on_series_picked(self, i: int) -> None:
        spec = self.series_box.itemData(i)
        if spec and spec != self.source_spec:
            self.open_source(spec, playing=False)

    def _on_window_preset(self, name: str) -> None:
        if name in WINDOW_PRESETS:
            self.view.apply_preset(name)
            self.settings.setValue("display/window_preset", name)

    def _on_window_changed(self, center: float, width: float, how: str) -> None:
        if how == "drag":
            self.window_box.setCurrentText("Custom")
        if self.last_result is not None:
            self._update_position(self.last_result.frame)

    def _update_status(self) -> None:
        if self._slow_stale and self.last_result is not None:  # legends/plots catch up with the last frame
            self._slow_stale = False
            for panel, mr in zip(self.panels, self.last_result.results):
                if panel is not None:
                    panel.refresh_slow(mr.result, self.last_result.frame)
        if self.models:
            provs = sorted({m.engine.provider for m in self.models})
            self.st_provider.setText("on " + ", ".join(provs))
            self.st_provider.setToolTip("\n".join(f"{m.name}: {m.engine.provider_note}" for m in self.models))
        else:
            self.st_provider.setText("no model (drop an .onnx)")
        if self.player is None:
            self.st_fps.setText("")
            self.st_latency.setText("")
            self.st_dropped.setText("")
            return
        self.st_fps.setText(f"{self.meter.fps:5.1f} fps")
        self.st_latency.setText(f"latency p50 {self.meter.latency(50):.0f} ms  p95 {self.meter.latency(95):.0f} ms")
        self.st_dropped.setText(f"dropped {self.slot.dropped + self.worker.skipped}")

    def _update_info(self) -> None:
        if not self.models:
            self.info.setPlainText("No model loaded.\n\nDrop an .onnx file on the window or use File ▸ Open model.")
            return
        self.info.setPlainText("\n\n".join(m.engine.describe() for m in self.models))

    def _apply_limit_settings(self) -> None:
        """``[limits]`` in the settings file (max_megapixels, max_dicom_frames, max_memory_mb)
        override the environment and defaults of ``loupe.base.limits``; a bad value is reported."""
        from loupe.base.limits import ENV, LimitError, configure

        values = {}
        for name in ENV:
            raw = self.settings.value(f"limits/{name}")
            if raw in (None, ""):
                continue
            try:
                values[name] = float(raw)
            except (TypeError, ValueError):
                logger.warning("settings: limits/%s=%r is not a number; ignored", name, raw)
        try:
            configure(**values)
        except LimitError as e:
            logger.warning("settings: %s; limits left as they were", e)

    # --- errors -----------------------------------------------------------------------------
    def show_error(self, text: str, level: str = "error") -> None:
        logger.warning("%s", text)
        self.banner.show_message(text, level)
        self._update_play_button()
        if level == "error":
            self.errorShown.emit(text)

    # --- drag and drop ----------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    # --- dialogs, recent files, settings ----------------------------------------------------
    def _last_dir(self) -> str:
        return str(self.settings.value("paths/last_dir", str(Path.home())))

    def _open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open video, image or DICOM", self._last_dir(),
            "Media (*.mp4 *.mkv *.avi *.mov *.webm *.m4v *.mpg *.ts *.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp *.dcm);;All files (*)",
        )
        if path:
            self.settings.setValue("paths/last_dir", str(Path(path).parent))
            self.open_source(path)

    def _open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open folder of images or DICOM", self._last_dir())
        if path:
            self.settings.setValue("paths/last_dir", path)
            self.open_source(path)

    def _open_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open ONNX model", self._last_dir(), "ONNX models (*.onnx)")
        if path:
            self.settings.setValue("paths/last_dir", str(Path(path).parent))
            self.add_model(path)

    def _open_camera_dialog(self) -> None:
        dlg = CameraDialog(
            self, int(self.settings.value("camera/device", 0)), str(self.settings.value("camera/resolution", "default"))
        )
        if dlg.exec() != QDialog.DialogCode.Accepted:
            return
        res = dlg.resolution.currentText()
        self.settings.setValue("camera/device", dlg.device.value())
        self.settings.setValue("camera/resolution", res)
        self.open_camera(dlg.device.value(), res)

    def open_camera(self, device: int, resolution: str | None = None) -> None:
        try:
            w, h = parse_resolution(resolution)
        except ValueError as e:
            self.show_error(str(e))
            return
        self.open_source(f"camera:{device}", width=w, height=h)

    def _learn_normal(self) -> None:
        from loupe.ui.fit_job import can_fit
        from loupe.ui.learn_normal import ask_span, models_dir

        if not can_fit(self, "Open a video file first: the predictor learns from a span of it.",
                       no_torch="Learning needs PyTorch: install Loupe with pip install 'loupe[fit]' "
                                "(the app bundle views and runs models only)."):
            return
        duration = None
        if self.frame_count and self.last_result is not None and self.last_result.frame.index > 0:
            f = self.last_result.frame
            duration = f.timestamp / f.index * self.frame_count
        marked = None
        for p in self.panels:
            if isinstance(p, AnomalyPanel) and p.calib.isVisible() and self.last_result is not None:
                lo, hi = p.calib.getRegion()  # frames -> seconds at the nominal rate
                fps = (self.last_result.frame.index / self.last_result.frame.timestamp
                       if self.last_result.frame.timestamp > 0 else 25.0)
                marked = (max(0.0, lo / fps), hi / fps)
        try:
            answer = ask_span(self, duration, marked)
        except ValueError as e:
            self.show_error(str(e))
            return
        if answer is None:
            return
        start, end, minutes = answer
        out = models_dir() / f"{Path(self.source_spec).stem}_normal_{time.strftime('%Y%m%d_%H%M%S')}.onnx"
        self.learn(self.source_spec, start, end, minutes, out)

    def _fit_hnerv(self) -> None:
        from loupe.ui.fit_hnerv import ask_and_fit

        ask_and_fit(self)

    def _fit_codebook(self) -> None:
        from loupe.ui.fit_codebook import ask_and_fit

        ask_and_fit(self)

    def learn(self, clip: str, start: float, end: float | None, minutes: float, out: Path):
        """Fit a predictor on [start, end) s of ``clip`` on a worker thread; load it when done."""
        from loupe.ui.fit_job import run_fit
        from loupe.ui.learn_normal import make_fit

        def message(res) -> str:
            verdict = "better" if res.heldout_psnr > res.baseline_psnr else "NOT better"
            return (f"Learned normal from {res.frames} frames in {res.seconds:.0f} s: held-out prediction PSNR "
                    f"{res.heldout_psnr:.2f} dB vs {res.baseline_psnr:.2f} dB for copying the last frame "
                    f"({verdict}). Saved {res.path} and loaded it.")

        job, _dlg = run_fit(self, self.learn_action, "Learn normal from this clip",
                            make_fit(clip, start, end, minutes, out), message, "Learning failed")
        return job

    def _show_about(self) -> None:
        from loupe.ui.about import show_about

        show_about(self)

    def _analyze_dialog(self) -> None:
        if not self.models or not self.source_spec or self.source_spec.startswith("camera:"):
            self.show_error("Open a file and load a model first: analysis runs every frame of a file.", "info")
            return
        default = str(Path(self._last_dir()) / (Path(self.source_spec).stem + "_loupe.csv"))
        out, _ = QFileDialog.getSaveFileName(self, "Analyse to file", default, "CSV (*.csv);;JSON lines (*.jsonl)")
        if out:
            self.analyze_to(out)

    def analyze_to(self, out: str) -> Job:
        """Every frame of the open file through every model, in order, rows to ``out``."""
        if self.player is not None:
            self.player.pause()
            self._update_play_button()
        job = analysis_job([self.source_spec], self.models, out, self)  # tasks of its own (see analyze_job)
        dlg = progress_dialog(self, job)

        def ended() -> None:
            self.analyze_job = None
            dlg.close()
            dlg.deleteLater()
            self.analyze_action.setEnabled(True)
            job.deleteLater()

        job.finishedWith.connect(lambda s: self.show_error(describe(s, out), "error" if s.failed else "info"))
        job.failedWith.connect(lambda msg: self.show_error(f"Analysis failed: {msg}"))
        job.done.connect(ended)
        self.analyze_action.setEnabled(False)
        self.analyze_job = job
        job.start()
        return job

    def _save_screenshot_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", str(Path(self._last_dir()) / "loupe.png"), "PNG (*.png)")
        if path:
            self.grab().save(path)

    def _add_recent(self, path: str) -> None:
        path = str(Path(path).resolve()) if not path.startswith("camera:") else path
        recent = [p for p in self._recent() if p != path]
        recent.insert(0, path)
        self.settings.setValue("recent", recent[:MAX_RECENT])
        self._rebuild_recent()

    def _recent(self) -> list[str]:
        v = self.settings.value("recent", [])
        if isinstance(v, str):
            v = [v]
        return [str(x) for x in (v or [])]

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        for p in self._recent():
            a = self.recent_menu.addAction(p)
            a.triggered.connect(lambda checked=False, p=p: self.open_paths([p]))
        self.recent_menu.setEnabled(bool(self._recent()))

    def _toggle_mode(self) -> None:
        for p in self.panels:
            if isinstance(p, SegmentationPanel):
                p.toggle_mode()

    def _toggle_overlay(self) -> None:  # every panel's overlay
        for p in self.panels:
            if p is not None:
                p.overlay.setVisible(not p.overlay.isVisible())

    def closeEvent(self, event) -> None:
        self._closing = True  # a job finishing while we wait must not start new work (see _in_background)
        # threads first: nothing below may keep a running QThread alive past the window
        fit, self.fit_job = self.fit_job, None
        if fit is not None:
            fit.cancel()
            fit.wait(30000)
        job, self.analyze_job = self.analyze_job, None
        if job is not None:
            job.cancel()
            job.wait(10000)
        for p in self.panels:  # panels that run their own worker (compression report)
            if p is not None:
                p.shutdown()
        self._source_gen += 1  # anything still opening is dropped when it lands
        self._stop_player()
        self.worker.stop()
        self._loading.close()  # what has not started loading never will; the one loading ends
        self._status_timer.stop()
        self.settings.setValue("window/geometry", self.saveGeometry())
        super().closeEvent(event)

