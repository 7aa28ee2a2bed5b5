"""Loupe's main window: the frame view, a panel per model, transport controls, status bar."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QLabel,
    QMainWindow,
    QVBoxLayout,
    QWidget,
)

from loupe.inference.engine import Engine, ModelError
from loupe.run.pipeline import FrameResult, LatestSlot, LoadedModel, RateMeter, Runner
from loupe.run.player import Player
from loupe.sources.open import classify_path, open_source
from loupe.tasks import UnsupportedTask, make_task
from loupe.ui import (
    analyze_job,
    dialogs,
    export_video,
    fit_menu,
    menus,
    model_menu,
    readout,
    status,
)
from loupe.ui import settings as keys
from loupe.ui.dialogs import Banner, parse_resolution
from loupe.ui.job import Job, JobQueue
from loupe.ui.model_info import ModelInfo
from loupe.ui.panel_dock import panel_dock
from loupe.ui.panels.factory import broken_plugins, make_panel
from loupe.ui.panels.segmentation import SegmentationPanel
from loupe.ui.settings import settings
from loupe.ui.transport import TransportBar
from loupe.ui.viewer import WINDOW_PRESETS, FrameView
from loupe.ui.worker import InferenceWorker

logger = logging.getLogger(__name__)

__all__ = ["MainWindow", "settings"]


class MainWindow(QMainWindow):
    frameShown = Signal(object)  # FrameResult, after the view and panels were updated
    errorShown = Signal(str)
    sourceOpened = Signal(str)
    modelLoaded = Signal(str)
    modelRemoved = Signal(str)  # a model was unloaded (its name; "" when all were), its panel gone
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
        keys.apply_limits(self.settings)
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
        self.transport = TransportBar()
        lay.addWidget(self.transport)
        t = self.transport  # the window's names for its widgets (tests and plug-ins use them)
        self.play_btn, self.step_btn, self.seek, self.pos_label = t.play_btn, t.step_btn, t.seek, t.pos_label
        self.series_box, self.window_box, self.cam_btn = t.series_box, t.window_box, t.cam_btn
        t.playClicked.connect(self.toggle_play)
        t.stepClicked.connect(self.step)
        t.seekRequested.connect(self.seek_to)
        t.seriesPicked.connect(self._on_series_picked)
        t.windowPreset.connect(self._on_window_preset)
        t.cameraClicked.connect(self._on_camera_button)
        self.setCentralWidget(central)

        self.panel_dock, self.panel_tabs = panel_dock(self)  # panels scroll; the dock fits the shown one
        self.panel_tabs.setTabsClosable(True)  # the close button removes that tab's model
        self.panel_tabs.tabCloseRequested.connect(self._close_panel_tab)
        self.info = ModelInfo()  # the card of the selected tab's model
        self.panel_tabs.currentChanged.connect(self._update_info)
        self.info_dock = QDockWidget("Model", self)
        self.info_dock.setObjectName("model-info")
        self.info_dock.setWidget(self.info)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.info_dock)
        self._update_info()

        self._make_menus()
        self._make_status()
        if broken := broken_plugins():
            self.show_error(broken, "info")

        self.worker = InferenceWorker(self.slot, self.runner, self)
        self.worker.resultReady.connect(self._on_result, Qt.ConnectionType.QueuedConnection)
        self.worker.failed.connect(self.show_error, Qt.ConnectionType.QueuedConnection)
        self.worker.start()
        self._status_timer = QTimer(self)
        self._status_timer.timeout.connect(self._update_status)
        self._status_timer.start(250)
        self.resize(1400, 800)
        self.resizeDocks([self.panel_dock, self.info_dock], [560, 200], Qt.Orientation.Vertical)
        geo = self.settings.value(keys.GEOMETRY)
        if geo is not None:
            self.restoreGeometry(geo)

    # --- construction ---------------------------------------------------------------------
    def _make_menus(self) -> None:
        menus.install(self)  # File, Model, View, Help (loupe.ui.menus)

    def _make_status(self) -> None:
        sb = self.statusBar()
        self.readout = readout.install(self)  # under the cursor: position, value, each panel's value
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
        self.banner.clear_errors()  # e.g. a model that failed while this opened
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
        self.view.new_source()  # its first frame is fitted to the window, whatever the old zoom
        self._window_restored = False
        self.transport.set_source(source)
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
        self.player.start(playing=playing)
        self._update_play_button()
        self.setWindowTitle(f"Loupe — {source.name}")
        if not source.live:
            self.recent.add(spec)
        self.sourceOpened.emit(source.name)

    def add_model(self, path: str) -> None:
        """Load a model off the UI thread; ``modelLoaded`` or ``errorShown`` follows."""
        providers = self.providers
        self.statusBar().showMessage(f"loading {Path(path).name}…")
        self._in_background(lambda: Engine(path, providers=providers), lambda eng: self._attach_model(path, eng))

    def _attach_model(self, path: str, engine: Engine) -> None:
        self.statusBar().clearMessage()
        self.banner.clear_errors()  # an old failure is stale once a model loads
        if engine.needs_task and not dialogs.confirm_task(self, engine):
            return
        try:
            task = make_task(engine)
        except (UnsupportedTask, ModelError) as e:
            self.show_error(str(e))
            return
        if not model_menu.add_or_replace(self, engine.path.stem):  # asks when others are loaded
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
        self.recent.add(path)
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
            if self.statusBar().currentMessage().startswith("loading "):  # not "loading …" forever
                self.statusBar().clearMessage()
            self.show_error(msg)

        job.finishedWith.connect(finished)
        job.failedWith.connect(failed)
        job.wasCancelled.connect(QApplication.restoreOverrideCursor)  # the window closed first
        job.done.connect(job.deleteLater)
        return job.start(self._loading)

    def _make_panel(self, lm: LoadedModel):
        return make_panel(lm, self)

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
        name = self.models[index].name
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
        self.modelRemoved.emit(name)
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
        self.modelRemoved.emit("")

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

    def rerun_frame(self) -> None:
        """A task setting changed (a threshold): while paused, run the frame on screen again."""
        if self.player is not None and not self.player.playing and self.last_result is not None:
            self.slot.put(self.last_result.frame)

    def _on_recovered(self, msg: str) -> None:
        """A live source came back after failing: say so (info), keep going."""
        self.show_error(msg, "info")
        self.statusBar().clearMessage()
        self._update_play_button()

    def _on_end(self) -> None:
        self._update_play_button()
        self.statusBar().showMessage("end of file", 3000)

    def _update_play_button(self) -> None:
        self.transport.set_playing(self.player is not None and self.player.playing)

    def _on_camera_button(self, checked: bool) -> None:
        if checked:
            self.cam_btn.setChecked(False)
            dialogs.open_camera(self)
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
            saved = str(self.settings.value(keys.WINDOW_PRESET, "From file"))
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
        model_menu.check_fit(self, frame)  # a warning when a card does not fit the frames
        self.frameShown.emit(fr)

    def _update_position(self, frame) -> None:
        self.transport.show_position(frame, self.frame_count)
        self.view.caption_from(frame.metadata)

    def _on_series_picked(self, spec: str) -> None:
        if spec != self.source_spec:
            self.open_source(spec, playing=False)

    def _on_window_preset(self, name: str) -> None:
        if name in WINDOW_PRESETS:
            self.view.apply_preset(name)
            self.settings.setValue(keys.WINDOW_PRESET, name)

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
        p = self.player
        self.st_fps.setText(status.rate_text(p.source.fps, p.speed, p.playing, self.meter.fps, bool(self.models)))
        self.st_fps.setToolTip("play: the clip's own rate times the speed; model: frames a second through "
                               "the models (shown: on screen, with no model), over the last 120 frames")
        self.st_latency.setText(f"latency p50 {self.meter.latency(50):.0f} ms  p95 {self.meter.latency(95):.0f} ms")
        self.st_dropped.setText(f"dropped {self.slot.dropped + self.worker.skipped}")

    def _update_info(self, *_) -> None:
        self.info.follow(self)

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
            self.open_paths(self.ground_truth.take_dropped(paths))  # labels: the Ground truth dock

    # --- what the menus start (each in its own module) -------------------------------------------
    def open_camera(self, device: int, resolution: str | None = None) -> None:
        try:
            w, h = parse_resolution(resolution)
        except ValueError as e:
            self.show_error(str(e))
            return
        self.open_source(f"camera:{device}", width=w, height=h)

    def learn(self, clip: str, start: float, end: float | None, minutes: float, out: Path):
        """Fit a predictor on [start, end) s of ``clip`` on a worker thread; load it when done."""
        return fit_menu.learn(self, clip, start, end, minutes, out)

    def analyze_to(self, out: str) -> Job:
        """Every frame of the open file through every model, in order, rows to ``out``."""
        return analyze_job.analyze_to(self, out)

    def _recent(self) -> list[str]:
        return self.recent.paths()

    def _show_about(self) -> None:
        from loupe.ui.about import show_about

        show_about(self)

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
        export_video.stop(self)  # its drawing waits give up on cancel: no deadlock with this thread
        for p in self.panels:  # panels that run their own worker (compression report)
            if p is not None:
                p.shutdown()
        self._source_gen += 1  # anything still opening is dropped when it lands
        self._stop_player()
        self.worker.stop()
        self._loading.close()  # what has not started loading never will; the one loading ends
        self._status_timer.stop()
        self.settings.setValue(keys.GEOMETRY, self.saveGeometry())
        super().closeEvent(event)

