"""Draw frames with their overlays as the window draws them, offscreen, for a video
(``loupe render``, File ▸ Export video with overlays…).

:class:`OverlayRenderer` builds the window's own pieces: a ``FrameView`` and each model's panel
(``make_panel``, with the app's settings: the opacity, fill/contour, labels as the user left
them), attaches each overlay to the view box stacked as the window stacks them, and feeds each
frame's results to the panels (``update_from``). :func:`rasterise` then renders exactly the
frame's rectangle of the view's scene into an image of the frame's own pixel size, so a frame
pixel is an image pixel whatever the view's zoom. What panels draw at a constant screen size
(box outlines, label tags) is drawn at that size in frame pixels up to a 1080p frame, and larger on
larger frames (:func:`overlay_scale`), as a window fitting the frame on a 1080p screen shows it
relative to the frame; the caption grows with the frame in the same way. The DICOM caption of the view is
left out; the video's caption strip (:func:`draw_caption`) says the model names, each frame's
key figures and its index and time instead.

Everything here runs on the UI thread (Qt graphics items are not thread-safe).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter

from loupe.run.pipeline import FrameResult, LoadedModel
from loupe.run.render import (
    MAX_SCALE,
    CompareDraw,
    RenderError,
    agreement_text,
    frame_label,
    key_figures,
    model_colour,
)

logger = logging.getLogger(__name__)

MAX_SCALED_SIDE = 4096  # ... and at most this many pixels a side
FIT_SCREEN = (1920, 1080)  # larger frames draw outlines and tags larger (``overlay_scale``)
NARROW = 480  # a caption narrower than this puts the frame and time on a line of their own
CAPTION_TEXT = QColor(232, 234, 237)  # the view's caption colour (#e8eaed)
CAPTION_FILL = QColor(0, 0, 0, 150)  # the view's caption box, a little darker


def ensure_app() -> Any:
    """The running ``QApplication``, or a new one, offscreen unless the environment names a
    platform (a command draws without a display)."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from PySide6.QtCore import qInstallMessageHandler

        qInstallMessageHandler(_qt_message)
        app = QApplication(sys.argv[:1])
    return app


def _qt_message(_mode: Any, _context: Any, message: str) -> None:
    """Qt's messages on stderr, less the offscreen platform's note about size hints (it says
    nothing to someone rendering a video)."""
    if "propagateSizeHints" not in message:
        sys.stderr.write(f"{message}\n")


def qimage_rgb(img: QImage) -> np.ndarray:
    """An RGB32/ARGB32 ``QImage`` as an H x W x 3 uint8 RGB array (a copy)."""
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    h, w = img.height(), img.width()
    buf = np.frombuffer(img.constBits(), np.uint8, count=img.bytesPerLine() * h).reshape(h, img.bytesPerLine())
    return buf[:, : 3 * w].reshape(h, w, 3).copy()


def rasterise_image(view: Any, width: int, height: int, scale: int = 1) -> QImage:
    """The frame rectangle (0, 0, ``width``, ``height``) of ``view`` (a ``FrameView``: the frame
    and every overlay attached to its view box) as a ``width`` x ``height`` image, one image pixel
    per frame pixel (``scale``: ``scale`` x ``scale`` image pixels per frame pixel, nearest
    neighbour), without the view's own caption."""
    vb = view.vb
    source = vb.mapViewToScene(QRectF(0, 0, width, height)).boundingRect()  # updates the view's matrix
    width, height = width * scale, height * scale
    img = QImage(width, height, QImage.Format.Format_RGB32)
    img.fill(QColor(0, 0, 0))
    caption_shown = view.text.isVisible()
    view.text.setVisible(False)
    p = QPainter(img)
    try:
        view.scene().render(p, QRectF(0, 0, width, height), source, Qt.AspectRatioMode.IgnoreAspectRatio)
    finally:
        p.end()
        view.text.setVisible(caption_shown)
    return img


def overlay_scale(width: int, height: int) -> float:
    """How much larger than in the window, at 100% zoom, outlines, dots and label tags are drawn
    on a ``width`` x ``height`` image: 1 up to 1920 x 1080; above it, the factor by which a window
    would shrink the image to fit a 1920 x 1080 screen (2 for 3840 x 2160), so that they keep the
    size relative to the frame they have there, and read when the video is watched on a screen."""
    return max(1.0, width / FIT_SCREEN[0], height / FIT_SCREEN[1])


def set_overlay_scale(view_box: Any, scale: float) -> None:
    """``scale`` for every item in ``view_box`` that draws in screen pixels (``ScreenPx``),
    however deep (the compare view's clipping parents hold overlay items)."""
    from loupe.ui.panels.screen_px import ScreenPx

    todo = list(view_box.addedItems)
    while todo:
        item = todo.pop()
        if isinstance(item, ScreenPx):
            item.set_screen_scale(scale)
        todo.extend(item.childItems())


def rasterise(view: Any, width: int, height: int) -> np.ndarray:
    """:func:`rasterise_image` as an H x W x 3 RGB uint8 array."""
    return qimage_rgb(rasterise_image(view, width, height))


# --- the caption strip ------------------------------------------------------------------------------
def caption_font_px(height: int) -> int:
    """The caption's text height: about 1/40 of the frame's height, 10 to 56 pixels (27 on a
    1080p frame, 54 on a 2160p one: the same share of the frame)."""
    return int(min(56, max(10, round(height / 40))))


def caption_height(height: int, lines: int, width: int | None = None) -> int:
    """Height in pixels of a caption strip of ``lines`` model lines at the bottom of a frame
    ``height`` high (and ``width`` wide: narrower than ``NARROW`` the frame and time take a line of
    their own above them)."""
    if lines <= 0:
        return 0
    if width is not None and width < NARROW:
        lines += 1
    px = caption_font_px(height)
    return min(height, int(np.ceil(lines * px * 1.35 + px * 0.5)))


def draw_caption(img: QImage, header: str, rows: list[tuple[str, tuple[int, int, int] | None, str]]) -> None:
    """A translucent strip at the bottom of ``img``: one line per model, its name (in its
    colour where it has one) then its figures; ``header`` (frame and time) right-aligned on the
    first line. Text too long for the width is elided."""
    w, h = img.width(), img.height()
    own_line = bool(header) and w < NARROW  # a narrow frame: the header on a line of its own, on top
    lines = max(1, len(rows))
    strip = caption_height(h, lines, w)
    px = caption_font_px(h)
    font = QFont()
    font.setPixelSize(px)
    bold = QFont(font)
    bold.setBold(True)
    fm, fmb = QFontMetricsF(font), QFontMetricsF(bold)
    pad = px * 0.5
    line_h = px * 1.35
    p = QPainter(img)
    try:
        p.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        p.fillRect(QRectF(0, h - strip, w, strip), CAPTION_FILL)
        y0 = h - strip + pad * 0.5
        header = fm.elidedText(header, Qt.TextElideMode.ElideLeft, w - 2 * pad if own_line else w * 0.6) \
            if header else ""
        head_w = fm.horizontalAdvance(header) + pad if header and not own_line else 0.0
        if own_line:
            p.setFont(font)
            p.setPen(CAPTION_TEXT)
            p.drawText(QPointF(pad, y0 + fm.ascent() + (line_h - fm.height()) / 2), header)
            y0 += line_h
        for i in range(lines):
            name, colour, figures = rows[i] if rows else ("", None, "")
            base = y0 + i * line_h + fm.ascent() + (line_h - fm.height()) / 2
            room = w - 2 * pad - (head_w if i == 0 else 0.0)
            x = pad
            if name:
                label = fmb.elidedText(name + ":", Qt.TextElideMode.ElideMiddle, max(room * 0.5, px * 3.0))
                p.setFont(bold)
                p.setPen(QColor(*colour) if colour is not None else CAPTION_TEXT)
                p.drawText(x, base, label)
                x += fmb.horizontalAdvance(label) + px * 0.4
            if figures:
                p.setFont(font)
                p.setPen(CAPTION_TEXT)
                p.drawText(x, base, fm.elidedText(figures, Qt.TextElideMode.ElideRight, max(0.0, pad + room - x)))
            if i == 0 and header and not own_line:
                p.setFont(font)
                p.setPen(CAPTION_TEXT)
                p.drawText(w - pad - fm.horizontalAdvance(header), base, header)
    finally:
        p.end()


def draw_split_names(img: QImage, x: float, name_a: str, name_b: str) -> None:
    """The two names by the split line at ``x``, "◀ A" left of it and "B ▶" right of it, on dark
    boxes at the top of ``img`` in the caption's size (the window's line label, drawn at the
    image's own scale)."""
    w, h = img.width(), img.height()
    px = caption_font_px(h)
    font = QFont()
    font.setPixelSize(px)
    fm = QFontMetricsF(font)
    pad = px * 0.4
    p = QPainter(img)
    try:
        p.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        p.setFont(font)
        for text, right in ((f"◀ {name_a}", False), (f"{name_b} ▶", True)):
            room = (w - x if right else x) - 3 * pad
            if room < px * 2:
                continue  # the line is at an edge: no room for that side's name
            text = fm.elidedText(text, Qt.TextElideMode.ElideMiddle, room)
            tw = fm.horizontalAdvance(text)
            left = x + 2 * pad if right else x - 2 * pad - tw
            box = QRectF(left - pad, pad, tw + 2 * pad, fm.height() + pad)
            p.fillRect(box, CAPTION_FILL)
            p.setPen(CAPTION_TEXT)
            p.drawText(QRectF(left, pad * 1.5, tw, fm.height()), int(Qt.AlignmentFlag.AlignLeft), text)
    finally:
        p.end()


# --- the renderer ------------------------------------------------------------------------------
class _Host:
    """What a panel factory may use of the window (``loupe.ui.panels.base.PanelHost``), for
    panels that only draw: the app's settings and the source; clicks and re-runs do nothing."""

    def __init__(self, settings: Any, source_spec: str) -> None:
        self.settings = settings
        self.source_spec = source_spec

    def seek_to(self, index: int) -> None:
        """No player to seek: a video is written in order."""

    def show_error(self, text: str, level: str = "error") -> None:
        logger.warning("%s", text)

    def rerun_frame(self) -> None:
        """Nothing paused to re-run."""


class OverlayRenderer:
    """Draws frame results as the window does, offscreen: ``draw(frame_result)`` returns the
    frame with every model's overlay (and the caption strip, unless ``caption`` is False) as an
    H x W x 3 RGB uint8 array at the frame's size. ``window`` (center, width) overrides the
    file's display window of greyscale/DICOM frames (the window's preset or drag). Call
    ``close()`` when done (on the UI thread)."""

    def __init__(self, models: list[LoadedModel], source_spec: str = "", caption: bool = True,
                 window: tuple[float, float] | None = None, total: int | None = None, settings: Any = None,
                 compare: CompareDraw | None = None, scale: int = 1) -> None:
        if not 1 <= int(scale) <= MAX_SCALE:
            raise ValueError(f"scale must be 1 to {MAX_SCALE}, got {scale}")
        if compare is not None and max(compare.a, compare.b) >= len(models):
            raise ValueError(f"compare: models {compare.a} and {compare.b} of {len(models)}")
        ensure_app()
        from loupe.ui.panels.factory import make_panel
        from loupe.ui.settings import settings as app_settings
        from loupe.ui.viewer import FrameView

        self.models = list(models)
        self.caption = caption
        self.total = total
        self.view = FrameView()
        self.view.resize(640, 480)
        self.view.window_override = window
        self.host = _Host(settings if settings is not None else app_settings(), source_spec)
        self.panels: list[Any] = []
        for i, lm in enumerate(self.models):
            panel = make_panel(lm, self.host)
            if panel is not None:
                panel.attach(self.view.vb)
                panel.overlay.setZValue(10 + i + 1)  # as MainWindow._attach_model: the later model on top
            self.panels.append(panel)
        self.colours = [model_colour(lm.task) for lm in self.models]
        self.scale = int(scale)
        self.compare = compare
        self.split = self.disagreement = None
        self._overlay_scale = 1.0
        if compare is not None:
            from loupe.ui.panels.compare import A_RGB, B_RGB, Disagreement, Split

            self.split = None if compare.side_by_side else Split(self.view.vb)
            self.disagreement = Disagreement(self.view.vb)
            self.colours[compare.a], self.colours[compare.b] = A_RGB, B_RGB  # the names in their sides' colours

    def follow(self, panels: list[Any]) -> None:
        """Draw as ``panels`` (the window's, model for model) draw now: each overlay's opacity and
        visibility (``O``), the classes shown and fill/contour, which the settings do not hold."""
        for src, dst in zip(panels, self.panels):
            if src is None or dst is None or type(src) is not type(dst):
                continue
            dst.overlay.setOpacity(src.overlay.opacity())
            dst.overlay.setVisible(src.overlay.isVisible())
            vis, mine = getattr(src, "visible", None), getattr(dst, "visible", None)
            if callable(getattr(dst, "set_class_visible", None)) and vis is not None and mine is not None \
                    and len(vis) == len(mine):
                for k, v in enumerate(np.asarray(vis, bool).tolist()):
                    if bool(mine[k]) != v:
                        dst.set_class_visible(k, v)
            if isinstance(getattr(src, "mode", None), str) and callable(getattr(dst, "set_mode", None)):
                dst.set_mode(src.mode)

    def draw_image(self, fr: FrameResult) -> QImage:
        """The frame, its overlays and the caption as a ``QImage`` of the frame's size."""
        frame = fr.frame
        self.view.show_frame(frame)
        for panel, mr in zip(self.panels, fr.results):
            if panel is not None:
                panel.update_from(mr.result, frame, True)
        agreement = self._compare(fr) if self.compare is not None else None
        s = self.scale
        if s > 1 and max(frame.width, frame.height) * s > MAX_SCALED_SIDE:
            raise RenderError(f"a {frame.width}x{frame.height} frame drawn {s} times its size would be "
                              f"{frame.width * s}x{frame.height * s}: at most {MAX_SCALED_SIDE} pixels a side")
        grow = overlay_scale(frame.width * s, frame.height * s)
        if grow != 1.0 or self._overlay_scale != 1.0:  # (items are made at 1: nothing to do up to 1080p)
            set_overlay_scale(self.view.vb, grow)  # every frame: a panel may have made new items
        if self.split is not None and grow != self._overlay_scale:
            from loupe.ui.panels.compare import SPLIT_PX

            self.split.line.setPen(self.split.line.pen.color(), width=SPLIT_PX * grow)
        self._overlay_scale = grow
        c = self.compare
        if c is not None and c.side_by_side:
            img = self._side_by_side(frame.width, frame.height)
            draw_split_names(img, float(frame.width * s), self.models[c.a].name, self.models[c.b].name)
        else:
            img = rasterise_image(self.view, frame.width, frame.height, s)
        if self.split is not None:
            draw_split_names(img, float(self.split.line.value()) * s, self.models[c.a].name, self.models[c.b].name)
        if self.caption:
            rows = [(lm.name, colour, key_figures(lm.task, mr.result))
                    for lm, colour, mr in zip(self.models, self.colours, fr.results)]
            if agreement is not None:
                rows.append(("A vs B", None, agreement_text(agreement)))
            draw_caption(img, self._header(frame), rows)
        return img

    def _side_by_side(self, width: int, height: int) -> QImage:
        """The frame twice, side by side: model A's overlay (and no B's) on the left copy, B's (and
        no A's) on the right one; the other models' overlays and the disagreement on both."""
        from loupe.ui.compare_view import panel_items

        c, s = self.compare, self.scale
        items_a, items_b = panel_items(self.panels[c.a]), panel_items(self.panels[c.b])
        shown = {id(it): (it, it.isVisible()) for it in items_a + items_b}
        halves = []
        try:
            for mine, other in ((items_a, items_b), (items_b, items_a)):
                for it in other:
                    it.setVisible(False)
                for it in mine:
                    it.setVisible(shown[id(it)][1])
                halves.append(rasterise_image(self.view, width, height, s))
        finally:
            for it, visible in shown.values():
                it.setVisible(visible)
        img = QImage(2 * width * s, height * s, QImage.Format.Format_RGB32)
        p = QPainter(img)
        try:
            p.drawImage(0, 0, halves[0])
            p.drawImage(width * s, 0, halves[1])
        finally:
            p.end()
        return img

    def _compare(self, fr: FrameResult) -> Any:
        """Model A's overlay left of the split, B's right of it, where they disagree over both
        (as the window's Compare view draws them); their ``Agreement``."""
        from loupe.ui.compare_view import panel_items

        c, frame = self.compare, fr.frame
        hw = (frame.height, frame.width)
        names = (self.models[c.a].name, self.models[c.b].name)
        if self.split is not None and not self.split.engaged:  # (side by side: no split, nothing clipped)
            self.split.engage(panel_items(self.panels[c.a]), panel_items(self.panels[c.b]), names, hw, c.split)
            self.split.line.label.setVisible(False)  # the names are drawn at the image's own scale instead
        elif self.split is not None and self.split.size != hw:
            self.split.fit(hw, c.split)
        ra, rb = fr.results[c.a].result, fr.results[c.b].result
        agreement = c.comparer(ra, rb)
        if c.disagreement:
            self.disagreement.show(agreement, ra, rb, hw, names)
        else:
            self.disagreement.hide()
        return agreement

    def _header(self, frame: Any) -> str:
        """Frame number and time; for DICOM the view's caption first (modality, series, the
        display window in use, spacing, slice position), as the window shows it over the frame."""
        label = frame_label(frame, self.total)
        if not frame.metadata.get("modality"):
            return label
        parts = self.view.caption_parts(frame.metadata)
        return "  ·  ".join([*parts, label])

    def draw(self, fr: FrameResult) -> np.ndarray:
        """:meth:`draw_image` as an H x W x 3 RGB uint8 array."""
        return qimage_rgb(self.draw_image(fr))

    def caption_rows(self, height: int, width: int | None = None) -> int:
        """Pixel rows at the bottom of a frame ``height`` high (and ``width`` wide), drawn ``scale``
        times its size, that the caption covers."""
        lines = max(1, len(self.models)) + (1 if self.compare is not None else 0)
        wide = None if width is None else width * self.scale * (2 if self.side_by_side else 1)
        return caption_height(height * self.scale, lines, wide) if self.caption else 0

    @property
    def side_by_side(self) -> bool:
        return self.compare is not None and self.compare.side_by_side

    def close(self) -> None:
        """Detach and shut the panels down, and let the view go."""
        if self.split is not None:
            self.split.release()
        for p in self.panels:
            if p is not None:
                p.detach()
                p.shutdown()
                p.deleteLater()
        self.panels.clear()
        self.view.close()
        self.view.deleteLater()
