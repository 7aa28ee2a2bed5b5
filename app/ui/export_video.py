"""File ▸ Export video with overlays…: the open file, every frame in order, with the loaded models'
overlays drawn as the view draws them, to an H.264 video (what ``loupe render`` writes).

Decoding, inference and encoding run in a background ``Job`` (``loupe.ui.job``) with a progress
dialog and Cancel; the drawing needs Qt graphics items, so each frame is handed to the UI thread
(a queued signal) and the job waits for it with a wait that gives up on cancel: closing the
window (``MainWindow.closeEvent`` cancels and waits, with ``stop``) never waits on a UI
thread that is itself waiting. A cancelled export keeps a video that plays, with the frames so
far. As in ``analyze_job``, the job runs fresh tasks on the same engines, at full resolution, so
the live view keeps its own state.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

from loupe.base.progress import Cancelled, Progress
from loupe.run.pipeline import FrameResult, LoadedModel, Runner
from loupe.run.render import (
    CompareDraw,
    RenderSummary,
    VideoWriter,
    even,
    output_fps,
    render_frames,
    select_frames,
)
from loupe.sources.open import open_source
from loupe.ui.export_dialog import ExportDialog, ExportOptions, save_options, saved_options
from loupe.ui.job import Job, start_with_dialog

logger = logging.getLogger(__name__)

WAIT_STEP_S = 0.05  # how often a waiting draw looks at the cancel flag


def install(win, menu, act) -> None:
    """Add the File menu's export item (``act(menu, text, slot, shortcut)`` makes an action)."""
    win.export_job = None
    win.export_video_action = act(menu, "Export &video with overlays…", lambda: export_dialog(win), "Ctrl+Shift+E")
    win.export_video_action.setToolTip("Every frame of the open file with the overlays, to an H.264 video")


def stop(win, wait_ms: int = 10000) -> None:
    """Cancel the window's export, if one runs, and wait for it to end (the file is finalised);
    ``MainWindow.closeEvent`` calls it with its other jobs."""
    job, win.export_job = getattr(win, "export_job", None), None
    if job is not None:
        job.cancel()
        if job.wait(wait_ms):
            job.drawer.close()  # its done signal may never be delivered (the window goes)


@dataclass(frozen=True)
class Exported:
    """What an export wrote: the summary, the file, its size and frame rate."""

    summary: RenderSummary
    out: str
    width: int
    height: int
    fps: float

    def describe(self) -> str:
        s = self.summary
        if s.frames == 0:
            return f"Export to {self.out}: no frame was written"
        text = (f"{s.frames} frames written to {self.out} ({self.width}x{self.height}, {self.fps:g} fps, "
                f"{s.fps:.1f} frames/s)")
        if s.cancelled:
            text += " (cancelled: the video plays, with the frames so far)"
        return text


class _Request:
    """One frame to draw on the UI thread, and its answer."""

    def __init__(self, fr: FrameResult) -> None:
        self.fr = fr
        self.image: Any = None
        self.error: BaseException | None = None
        self.abandoned = False
        self.ready = threading.Event()


class UiDrawer(QObject):
    """Draws frames with an ``OverlayRenderer`` on the UI thread for a worker thread:
    ``draw(fr, progress)`` (worker) queues the frame and waits for the picture, giving up with
    ``Cancelled`` once ``progress`` is cancelled."""

    _request = Signal(object)

    def __init__(self, renderer: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.renderer = renderer
        self._request.connect(self._draw, Qt.ConnectionType.QueuedConnection)

    def draw(self, fr: FrameResult, progress: Progress) -> Any:
        req = _Request(fr)
        self._request.emit(req)
        while not req.ready.wait(WAIT_STEP_S):
            if progress.cancelled:
                req.abandoned = True
                raise Cancelled()
        if req.error is not None:
            raise req.error
        return req.image

    def _draw(self, req: _Request) -> None:  # on the UI thread
        try:
            if not req.abandoned and self.renderer is not None:
                req.image = self.renderer.draw(req.fr)
        except Exception as e:  # handed to the job, which reports it
            req.error = e
        finally:
            req.ready.set()

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None


def export_job(win, out: str, options: ExportOptions | None = None) -> Job:
    """A Job (not started) writing the window's open file with its models' overlays to ``out``
    as ``options`` say; it finishes with an :class:`Exported` (also when cancelled, with the
    frames so far)."""
    from loupe.ui.render_view import OverlayRenderer

    opts = options or ExportOptions()
    spec = win.source_spec
    mine = [LoadedModel(m.engine, m.task.fresh(display_max_side=None)) for m in win.models]
    renderer = OverlayRenderer(mine, source_spec=spec, window=win.view.window_override, total=win.frame_count,
                               settings=win.settings, compare=compare_draw(win), caption=opts.caption,
                               scale=opts.scale)
    renderer.follow(win.panels)  # classes hidden, opacity, fill/contour as the view shows them now
    drawer = UiDrawer(renderer, win)

    def work(progress: Progress) -> Exported:
        source = open_source(spec)
        try:
            fps = output_fps(source, None)
            frames, total = select_frames(source, opts.start, opts.max_frames)

            def open_writer(width: int, height: int) -> VideoWriter:
                return VideoWriter(out, width, height, fps, crf=opts.crf, preset=opts.preset)

            summary, writer = render_frames(frames, Runner(mine), lambda fr: drawer.draw(fr, progress),
                                            open_writer, total, progress, status=Path(spec).name)
        finally:
            source.close()
        w, h = (even(writer.width), even(writer.height)) if writer is not None else (0, 0)
        return Exported(summary, out, w, h, fps)

    job = Job(work, "export", win)
    job.drawer = drawer
    job.done.connect(drawer.close)
    job.done.connect(drawer.deleteLater)
    return job


def compare_draw(win) -> CompareDraw | None:
    """Model ▸ Compare two models on: the export draws the pair as the view does (the split where
    it is now, or side by side; the disagreement as toggled in the Compare dock); None otherwise."""
    cmp = getattr(win, "compare", None)
    idx = None if cmp is None or cmp.pair is None else cmp.indices()
    if idx is None:
        return None
    return CompareDraw(idx[0], idx[1], cmp.comparer, cmp.split.fraction(), cmp.widget.map_box.isChecked(),
                       cmp.side_by_side)


def export_dialog(win) -> None:
    """File ▸ Export video with overlays…: ask where and how (``ExportDialog``), then
    :func:`export_to`; the options are kept for the next export."""
    from PySide6.QtWidgets import QDialog

    from loupe.ui.settings import last_dir

    if not win.models or not win.source_spec or win.source_spec.startswith("camera:"):
        win.show_error("Open a file and load a model first: the export draws every frame of a file.", "info")
        return
    if getattr(win, "export_job", None) is not None:
        win.show_error("An export is running: wait for it or cancel it first.", "info")
        return
    default = str(Path(last_dir(win.settings)) / (Path(win.source_spec).stem + "_overlay.mp4"))
    dlg = ExportDialog(default, saved_options(win.settings), *open_file_facts(win), parent=win)
    win.export_dialog = dlg  # tests and screenshots reach it while it is open
    try:
        if dlg.exec() != QDialog.DialogCode.Accepted:
            return
        opts = dlg.options()
        save_options(win.settings, opts)
        export_to(win, dlg.out(), opts)
    finally:
        win.export_dialog = None
        dlg.deleteLater()


def open_file_facts(win) -> tuple[tuple[int, int] | None, float | None, int | None, int | None]:
    """(width, height) of what is drawn (the frame, twice as wide side by side), the file's frame
    rate and frame count, and the frame shown, numbered from 1 (None: unknown)."""
    last = win.last_result
    size = (last.frame.width, last.frame.height) if last is not None else None
    draw = compare_draw(win)
    if size is not None and draw is not None and draw.side_by_side:
        size = (2 * size[0], size[1])  # the frame twice
    source = getattr(win.player, "source", None)
    return (size, (output_fps(source, None) if source is not None else None), win.frame_count,
            None if last is None else last.frame.index + 1)


def export_to(win, out: str, options: ExportOptions | None = None) -> Job:
    """Every frame of the window's open file with the overlays, to ``out``, as ``options`` say
    (default: every frame, ``ExportOptions()``); the player pauses, a progress dialog shows, the
    result or failure lands in the banner."""
    if win.player is not None:
        win.player.pause()
        win._update_play_button()
    job = export_job(win, out, options)
    return start_with_dialog(win, job, "export_job", win.export_video_action, "Export video with overlays",
                             "Exporting video…",
                             lambda info: (f"Exporting {info.get('status', '')}: {info['frames']} frames…"
                                           if info.get("frames") else None),
                             lambda r: win.show_error(r.describe(), "info"), "Export failed")
