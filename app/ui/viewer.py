"""The frame view: the frame and one overlay item per model, in a pyqtgraph ViewBox.

Greyscale and DICOM frames are shown with fixed levels from a display window (the file's, a
preset, or one set by right-dragging: horizontal = width, vertical = level). The display window
is kept while scrolling and never reaches the model (the card decides what the model sees).
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal

from loupe.inference.preprocess import window_levels
from loupe.sources.base import Frame

MAX_ZOOM = 32.0  # screen pixels per frame pixel at the closest zoom
FIT_MARGIN = 1.5  # the farthest zoom shows the whole frame with this much room around it
TWIN_GAP = 0.02  # side by side (``show_twin``): the gap between the two copies, a share of the width

# name -> (center, width); None = the file's own window; "full" = the frame's min..max
WINDOW_PRESETS: dict[str, tuple[float, float] | str | None] = {
    "From file": None,
    "CT abdomen 350/40": (40.0, 350.0),
    "CT bone 1000/400": (400.0, 1000.0),
    "CT brain 100/50": (50.0, 100.0),
    "CT lung 1400/-500": (-500.0, 1400.0),
    "Full range": "full",
}


class _ViewBox(pg.ViewBox):
    """A ViewBox whose right-button drag adjusts the display window of greyscale frames."""

    def __init__(self, view: FrameView, **kw) -> None:
        super().__init__(**kw)
        self._view = view
        self._start: tuple[float, float] | None = None

    def mouseDragEvent(self, ev, axis=None) -> None:
        if ev.button() == Qt.MouseButton.RightButton and self._view.is_greyscale:
            ev.accept()
            if ev.isStart():
                self._start = self._view.current_window()
            if self._start is None:
                return
            c0, w0 = self._start
            d = ev.screenPos() - ev.buttonDownScreenPos()
            width = max(1e-3, w0 * math.exp(d.x() / 200.0))
            center = c0 - d.y() * w0 / 256.0
            self._view.set_window(center, width, source="drag")
            if ev.isFinish():
                self._start = None
            return
        super().mouseDragEvent(ev, axis)


class FrameView(pg.GraphicsLayoutWidget):
    """Shows frames; overlays are ImageItems added above the frame (one per panel)."""

    windowChanged = Signal(float, float, str)  # center, width, how ("preset", "drag", "file")
    pointerMoved = Signal(float, float)  # the mouse over the view, in frame pixel coordinates
    pointerLeft = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setBackground("#202124")
        self.vb = _ViewBox(self, lockAspect=True, invertY=True, enableMenu=False)
        self.addItem(self.vb)
        self.vb.setDefaultPadding(0.0)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.vb.addItem(self.image)
        self.text = pg.TextItem("", color="#e8eaed", anchor=(0, 0), fill=pg.mkBrush(0, 0, 0, 140))
        self.text.setZValue(100)
        self.text.setVisible(False)  # an empty caption would still draw its dark box
        self.vb.addItem(self.text, ignoreBounds=True)
        self._shape: tuple[int, ...] | None = None
        self.window_override: tuple[float, float] | None = None
        self.is_greyscale = False
        self._last: Frame | None = None
        self.twin: pg.ImageItem | None = None  # a second copy of the frame, right of it (show_twin)
        self.placeholder: pg.TextItem | None = pg.TextItem(
            "Drop a video, image, folder, DICOM file or .onnx model here", color="#9aa0a6", anchor=(0.5, 0.5)
        )
        self.vb.addItem(self.placeholder)
        self.placeholder.setPos(320, 136)
        self.vb.setRange(QRectF(0, 0, 640, 272), padding=0)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setMouseTracking(True)

    # --- zoom ------------------------------------------------------------------------------
    def fit(self) -> None:
        """Show the whole frame (both copies, side by side), as large as the view allows (View ▸
        Fit to window)."""
        if self._shape is not None:
            h, w = self._shape
            self.vb.setRange(QRectF(0, 0, w + self.twin_x(), h), padding=0)

    def twin_x(self) -> float:
        """Where the second copy of the frame starts, in frame pixels (0: no second copy)."""
        if self.twin is None or self._shape is None:
            return 0.0
        w = self._shape[1]
        return float(w + max(4, round(w * TWIN_GAP)))

    def show_twin(self, on: bool) -> None:
        """A second copy of the frame right of it (the compare view's side by side), kept in step
        with ``show_frame``, the view fitted to both; off: the copy removed, the frame fitted."""
        if on and self.twin is None:
            self.twin = pg.ImageItem(axisOrder="row-major")
            self.twin.setZValue(self.image.zValue())
            self.vb.addItem(self.twin)
            if self._last is not None:
                self._show_twin_image()
        elif not on and self.twin is not None:
            self.vb.removeItem(self.twin)
            self.twin = None
        self.fit()
        self._update_limits()

    def _show_twin_image(self) -> None:
        img = self.image.image
        if self.twin is None or img is None:
            return
        self.twin.setImage(img, autoLevels=False, levels=self.image.levels)
        self.twin.setPos(self.twin_x(), 0)

    def new_source(self) -> None:
        """A new source: its first frame is fitted to the window, whatever the zoom was."""
        self._shape = None

    def zoom(self) -> float:
        """Screen pixels per frame pixel now."""
        (x0, x1), _ = self.vb.viewRange()
        return self.vb.width() / max(x1 - x0, 1e-9)

    def _update_limits(self) -> None:
        """Wheel zoom between the whole frame with a margin and MAX_ZOOM screen px per frame px."""
        if getattr(self, "_shape", None) is None:  # (also: a resize during construction)
            return
        if getattr(self, "closed", False):  # GraphicsView.close() resizes after deleting the scene
            return
        h, w = self._shape
        w += self.twin_x()
        vw, vh = max(self.vb.width(), 1.0), max(self.vb.height(), 1.0)
        fit_w = max(w, h * vw / vh)  # the x range that shows the whole frame at this aspect
        self.vb.setLimits(minXRange=vw / MAX_ZOOM, maxXRange=fit_w * FIT_MARGIN,
                          minYRange=vh / MAX_ZOOM, maxYRange=fit_w * FIT_MARGIN * vh / vw)

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self._update_limits()

    def mouseDoubleClickEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.fit()
            return
        super().mouseDoubleClickEvent(ev)

    def mouseMoveEvent(self, ev) -> None:
        super().mouseMoveEvent(ev)
        # every move (the scene's sigMouseMoved skips some: the readout would lag the cursor)
        scene_pos = self.mapToScene(ev.position().toPoint())
        if self._shape is None or not self.vb.sceneBoundingRect().contains(scene_pos):
            self.pointerLeft.emit()
            return
        p = self.vb.mapSceneToView(QPointF(scene_pos))
        x, twin = p.x(), self.twin_x()
        if twin and x >= twin:  # over the second copy: the same frame point
            x -= twin
        self.pointerMoved.emit(x, p.y())

    def leaveEvent(self, ev) -> None:
        super().leaveEvent(ev)
        self.pointerLeft.emit()

    # --- display window ------------------------------------------------------------------
    def current_window(self) -> tuple[float, float]:
        """(center, width) in use for greyscale frames."""
        if self.window_override is not None:
            return self.window_override
        if self._last is not None:
            lo, hi = window_levels(self._last)
            return (lo + hi) / 2.0, hi - lo
        return 127.5, 255.0

    def set_window(self, center: float, width: float, source: str = "preset") -> None:
        self.window_override = (float(center), max(float(width), 1e-3))
        self._apply_levels()
        self.windowChanged.emit(self.window_override[0], self.window_override[1], source)

    def apply_preset(self, name: str) -> None:
        preset = WINDOW_PRESETS[name]
        if preset is None:
            self.window_override = None
            self._apply_levels()
            c, w = self.current_window()
            self.windowChanged.emit(c, w, "file")
        elif preset == "full":
            if self._last is not None:
                p = self._last.pixels
                lo, hi = float(np.min(p)), float(np.max(p))
                self.set_window((lo + hi) / 2.0, max(hi - lo, 1.0), "preset")
        else:
            self.set_window(preset[0], preset[1], "preset")

    def _levels(self, frame: Frame) -> tuple[float, float]:
        if self.window_override is not None:
            c, w = self.window_override
            return c - w / 2.0, c + w / 2.0
        return window_levels(frame)

    def _apply_levels(self) -> None:
        if self._last is not None and self.is_greyscale:
            levels = self._levels(self._last)
            self.image.setLevels(levels)
            if self.twin is not None:  # the second copy in the same window
                self.twin.setLevels(levels)

    # --- frames ----------------------------------------------------------------------------
    def show_frame(self, frame: Frame) -> None:
        p = frame.pixels
        if p.ndim == 3 and p.shape[2] == 4:
            p = p[:, :, :3]
        if p.ndim == 3 and p.shape[2] == 1:
            p = p[:, :, 0]
        self._last = frame
        self.is_greyscale = p.ndim == 2
        if p.dtype == np.uint8 and p.ndim == 3:
            # no levels: pyqtgraph hands the RGB bytes to Qt as they are (levels (0, 255) would
            # rescale every pixel on the UI thread, ~1-3 ms a frame)
            levels: tuple[float, float] | None = None
        else:  # greyscale, DICOM (float32 HU): fixed window levels, no per-frame sampling
            levels = self._levels(frame)
            if p.dtype not in (np.uint8, np.uint16, np.float32):
                p = p.astype(np.float32)
        if self.placeholder is not None:
            self.vb.removeItem(self.placeholder)
            self.placeholder = None
        if levels is None:
            self.image.setLevels(None, update=False)
            self.image.setImage(p, autoLevels=False)
        else:
            self.image.setImage(p, autoLevels=False, levels=levels)
        new_shape = self._shape != p.shape[:2]
        self._shape = p.shape[:2]
        if self.twin is not None:
            self._show_twin_image()
        if new_shape:
            self.vb.setLimits(minXRange=None, maxXRange=None, minYRange=None, maxYRange=None)
            self.fit()
            self._update_limits()

    def set_caption(self, text: str) -> None:
        self.text.setText(text)
        self.text.setPos(0, 0)
        self.text.setVisible(bool(text))

    def caption_from(self, md: dict) -> None:
        """A DICOM frame's caption: modality, series, the window in use, pixel spacing, slice
        position (nothing for other frames)."""
        self.set_caption("  ".join(self.caption_parts(md)))

    def caption_parts(self, md: dict) -> list[str]:
        """The parts of a DICOM frame's caption (none for other frames)."""
        if not md.get("modality"):
            return []
        parts = [str(md["modality"])]
        if md.get("series_description"):
            parts.append(str(md["series_description"]))
        if self.is_greyscale:
            c, w = self.current_window()
            parts.append(f"W {w:.0f} / L {c:.0f}")
        if md.get("pixel_spacing"):
            ps = md["pixel_spacing"]
            parts.append(f"{float(ps[0]):.3g}×{float(ps[1]):.3g} mm")
        if md.get("slice_position_mm") is not None:
            parts.append(f"z {float(md['slice_position_mm']):.1f} mm")
        return parts
