"""Overlay items sized in screen pixels.

Box outlines, skeleton lines, landmark dots and label tags are drawn with cosmetic pens and fonts
in screen pixels, so they keep their size at any zoom. In the window that is what one wants; in a
render (``loupe render``, File ▸ Export video), where one image pixel is one frame pixel, a 2-pixel
outline on a 4K frame all but disappears once the video is watched on an ordinary screen.
``screen_scale`` multiplies those sizes: 1 in the window, and in a render of a frame larger than a
1080p screen the factor by which a window would shrink that frame to fit such a screen
(``loupe.ui.render_view.overlay_scale``), so that outlines and tags keep the size, relative to the
frame, they have in the window."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPen


class ScreenPx:
    """Mixin for a ``QGraphicsItem`` that draws in screen pixels: :meth:`pen` makes its cosmetic
    pens, :meth:`px` scales its other sizes (tag fonts, paddings) by ``screen_scale``."""

    screen_scale = 1.0

    def set_screen_scale(self, scale: float) -> None:
        """Draw every screen-pixel size ``scale`` times as large (1: as in the window)."""
        scale = float(scale)
        if scale <= 0:
            raise ValueError(f"screen scale must be positive, got {scale}")
        if scale != self.screen_scale:
            self.screen_scale = scale
            self.screen_scale_changed()
            self.update()

    def screen_scale_changed(self) -> None:
        """Called when ``screen_scale`` changes (items with fonts lay their text out again)."""

    def px(self, size: float) -> float:
        return size * self.screen_scale

    def pen(self, colour: QColor, px: float, style: Qt.PenStyle = Qt.PenStyle.SolidLine,
            cap: Qt.PenCapStyle | None = None, join: Qt.PenJoinStyle | None = None) -> QPen:
        """A cosmetic pen ``px`` screen pixels wide (times ``screen_scale``)."""
        pen = QPen(colour, px * self.screen_scale)
        pen.setCosmetic(True)  # screen pixels at any zoom
        pen.setStyle(style)
        if cap is not None:
            pen.setCapStyle(cap)
        if join is not None:
            pen.setJoinStyle(join)
        return pen
