"""What a panel is: the ``Panel`` protocol every task's panel follows, and ``PanelHost``, what the
window offers a panel factory.

A task's registry entry (``loupe.base.registry.TaskSpec.panel``) names a factory
``make_panel(model, host) -> Panel``: ``model`` is the ``LoadedModel`` (its ``task``, whose
settings the panel may change, and its ``engine``, whose ``card`` says how to draw), ``host`` the
window. The factory connects the panel's signals to the task and the host; the window then owns
the panel: it adds it as a tab, attaches its overlay to the frame view, feeds it every result and
removes it (``detach`` then ``shutdown``) when the model goes or the window closes.

Everything here runs on the UI thread. Results arrive there by a queued signal after the task's
``postprocess`` ran on the worker thread; they are frozen records a panel reads and never writes.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Panel(Protocol):
    """A ``QWidget`` (the window shows it as a tab) that also provides the following."""

    #: A pyqtgraph item drawn over the frame in frame pixel coordinates (an ``ImageItem`` the
    #: size of the frame, usually); the window stacks models' overlays and toggles them (``O``).
    overlay: Any

    def attach(self, view_box: Any) -> None:
        """Add ``overlay`` (and any other items drawn over the frame) to the frame's view box."""
        ...

    def detach(self) -> None:
        """Remove what ``attach`` added (the model is being removed)."""
        ...

    def update_from(self, result: Any, frame: Any, slow: bool) -> None:
        """Show one result (the task's result record) for ``frame`` (a ``loupe.sources.base.Frame``),
        every frame the window shows: keep it cheap. ``slow`` is True a few times a second: then
        legends, plots and tables may be brought up to date too."""
        ...

    def refresh_slow(self, result: Any, frame: Any) -> None:
        """Bring legends, plots and tables up to date with the last shown result (the window calls
        it when playback pauses after results that skipped the slow part)."""
        ...

    def reset_series(self) -> None:
        """A new source was opened: forget per-source history (plots over time, running totals)."""
        ...

    def shutdown(self) -> None:
        """Stop any background work the panel started (the window is closing or the model goes);
        return when it has stopped. A panel that starts none does nothing."""
        ...

    # Optional: ``value_at(x, y) -> str | None``, what the last shown result says at frame pixel
    # (x, y) (a class name, a density, a code), for the status bar's readout under the cursor;
    # None where it says nothing. The window calls it only on panels that have it.


class PanelHost(Protocol):
    """What a panel factory may use of the window (``MainWindow`` provides it)."""

    #: The app's ``QSettings`` (keep a panel's settings under ``<task>/...`` keys).
    settings: Any
    #: The path of the open source ("" when none; ``camera:N`` for a camera).
    source_spec: str

    def seek_to(self, index: int) -> None:
        """Show frame ``index`` of the open source (a click on a plot or list)."""
        ...

    def show_error(self, text: str, level: str = "error") -> None:
        """A message in the banner above the view (``level`` "error" or "info")."""
        ...

    def rerun_frame(self) -> None:
        """Run the models on the frame on screen again when paused (a panel changed a setting of
        its task, e.g. a threshold, and the result shown should follow); playing, the next frame
        does."""
        ...


# --- shared set-up of the built-in panels ------------------------------------------------------
def titled_layout(panel: Any, title: str) -> Any:
    """The panel's vertical layout, headed by its title in bold."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QLabel, QVBoxLayout

    lay = QVBoxLayout(panel)
    lay.setContentsMargins(6, 6, 6, 6)
    head = QLabel(f"<b>{title}</b>")
    head.setTextFormat(Qt.TextFormat.RichText)
    head.setWordWrap(True)  # a long model name wraps in a narrow dock
    lay.addWidget(head)
    return lay


def percent_slider(percent: int, on_value: Any, tip: str = "") -> Any:
    """A horizontal 0-100 slider at ``percent`` that calls ``on_value(v)`` as it moves."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QSlider

    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(0, 100)
    slider.setValue(percent)
    if tip:
        slider.setToolTip(tip)
    slider.valueChanged.connect(on_value)
    return slider


def opacity_slider(overlay: Any, percent: int, *also: Any) -> Any:
    """A 0-100 slider at ``percent`` that sets ``overlay``'s opacity, then calls each of ``also``."""
    slider = percent_slider(percent, lambda v: overlay.setOpacity(v / 100.0))
    for f in also:
        slider.valueChanged.connect(lambda _v, f=f: f())
    return slider


class OverlayOnly:
    """``attach``/``detach``/``shutdown`` of a panel that draws ``overlay`` (and any other
    ``frame_items``) over the frame and runs nothing in the background. A panel with an
    ``_on_frame_click(ev)`` method gets the frame view's mouse clicks while attached."""

    overlay: Any
    _view_box: Any = None
    _scene: Any = None

    def frame_items(self) -> tuple[tuple[Any, bool], ...]:
        """What ``attach`` adds to the frame's view box and ``detach`` removes: (item,
        ignore_bounds) pairs (True: the view's auto-range leaves the item out)."""
        return ((self.overlay, False),)

    def attach(self, view_box: Any) -> None:
        self._view_box = view_box
        for item, ignore_bounds in self.frame_items():
            view_box.addItem(item, ignoreBounds=ignore_bounds)
        click = getattr(self, "_on_frame_click", None)
        if click is not None:
            self._scene = view_box.scene()
            if self._scene is not None:
                self._scene.sigMouseClicked.connect(click)

    def detach(self) -> None:
        if self._scene is not None:
            import contextlib

            with contextlib.suppress(RuntimeError, TypeError):  # already gone with the scene
                self._scene.sigMouseClicked.disconnect(self._on_frame_click)
            self._scene = None
        if self._view_box is not None:
            for item, _ in self.frame_items():
                self._view_box.removeItem(item)

    def shutdown(self) -> None:
        """Nothing runs in the background here (see ``Panel.shutdown``)."""


def clicked_at(view_box: Any, ev: Any) -> tuple[float, float] | None:
    """Where a left click ``ev`` fell in ``view_box``'s own coordinates (frame pixels in the frame
    view; x a frame index in a plot over frames), None for another button or a click outside it."""
    from PySide6.QtCore import Qt

    if view_box is None or ev.button() != Qt.MouseButton.LeftButton:
        return None
    if not view_box.sceneBoundingRect().contains(ev.scenePos()):
        return None
    p = view_box.mapSceneToView(ev.scenePos())
    return p.x(), p.y()


def plot_frame(plot: Any, ev: Any, frames: Any) -> int | None:
    """The frame index a left click on ``plot`` (a plot over frame indices) asks for: its x,
    rounded, within 0 .. the last of ``frames``; None with no frames or for a click elsewhere."""
    at = clicked_at(plot.getPlotItem().vb, ev) if frames else None
    return None if at is None else round(min(max(at[0], 0.0), float(max(frames))))


def value_under(item: Any, arr: Any, x: float, y: float) -> Any:
    """The element of ``arr`` (a map the size of the image ``item`` shows, or another size covering
    the same area) under frame point (x, y), or None outside it or with nothing shown."""
    import math

    from PySide6.QtCore import QPointF

    if arr is None or item is None or getattr(item, "image", None) is None:
        return None
    p = item.mapFromParent(QPointF(x, y))  # parent: the view box's frame coordinates
    ih, iw = item.image.shape[:2]
    r, c = math.floor(p.y() / ih * arr.shape[0]), math.floor(p.x() / iw * arr.shape[1])
    if 0 <= r < arr.shape[0] and 0 <= c < arr.shape[1]:
        return arr[r, c]
    return None


def frame_axis(orientation: str = "bottom") -> Any:
    """A plot axis over 0-based frame indices labelled with frame numbers from 1, as the player
    shows them ("frame 7 / 120" is index 6); the data and clicks stay in indices."""
    import pyqtgraph as pg

    class FrameAxis(pg.AxisItem):
        def tickValues(self, minVal, maxVal, size):  # round numbers in the labels, not the indices
            return [(sp, [v - 1 for v in vals]) for sp, vals in super().tickValues(minVal + 1, maxVal + 1, size)]

        def tickStrings(self, values, scale, spacing):
            return super().tickStrings([v + 1 for v in values], scale, spacing)

    axis = FrameAxis(orientation)
    axis.enableAutoSIPrefix(False)  # frames are counted, never "frame (x0.001)" for one image
    return axis


def text_label(lay: Any, text: str = "") -> Any:
    """A word-wrapped rich-text label added to ``lay`` (legends, statistics, hints)."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QLabel

    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setWordWrap(True)
    lay.addWidget(label)
    return label


def big_label(lay: Any, text: str, px: int) -> Any:
    """A large figure (score, count) added under the title."""
    from PySide6.QtWidgets import QLabel

    label = QLabel(text)
    label.setStyleSheet(f"font-size: {px}px")
    lay.addWidget(label)
    return label


def swatch(rgb: Any, px: int = 14) -> Any:
    """A ``px``-square colour swatch with a mid-grey border, so a near-white or near-black class
    still shows on a white or dark legend."""
    from PySide6.QtGui import QColor, QPainter, QPen, QPixmap

    pm = QPixmap(px, px)
    pm.fill(QColor(*[int(v) for v in rgb[:3]]))
    p = QPainter(pm)
    p.setPen(QPen(QColor(110, 110, 110), 1))
    p.drawRect(0, 0, px - 1, px - 1)
    p.end()
    return pm


# --- the panel modules' ``__main__`` previews (fed synthetic results) -------------------------
def preview_app() -> Any:
    """The ``QApplication`` of a preview (the running one, if any)."""
    import sys

    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication(sys.argv)


def preview_view(panel: Any) -> Any:
    """A frame view (y down, square pixels) with ``panel`` attached to it."""
    import pyqtgraph as pg

    view = pg.GraphicsLayoutWidget()
    panel.attach(view.addViewBox(lockAspect=True, invertY=True))
    return view


def run_preview(app: Any, panel: Any, view: Any = None) -> None:
    """Show ``panel`` and its frame ``view``, then run ``app`` until closed; with ``--quit`` on
    the command line return at once (the tests' smoke run)."""
    import sys

    panel.show()
    if view is not None:
        view.show()
    if "--quit" not in sys.argv:
        app.exec()
