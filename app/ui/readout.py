"""The readout under the cursor, in the status bar: the frame pixel's position (pixels, and mm
where the frame has a pixel spacing), its value (HU for CT, the stored value for other DICOM and
greyscale frames, RGB for video and images) and what each panel's last result says there (a
panel's optional ``value_at(x, y)``, see ``loupe.ui.panels.base.Panel``).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
from PySide6.QtWidgets import QLabel


def pixel_text(frame: Any, x: float, y: float) -> str | None:
    """Position and value of ``frame`` at (x, y) in frame pixel coordinates; None outside it."""
    p = frame.pixels
    c, r = math.floor(x), math.floor(y)
    if not (0 <= r < p.shape[0] and 0 <= c < p.shape[1]):
        return None
    md = frame.metadata or {}
    parts = [f"x {c}  y {r}"]
    ps = md.get("pixel_spacing")
    if ps:  # DICOM order: (row spacing, column spacing)
        with contextlib.suppress(TypeError, ValueError, IndexError):  # a malformed spacing: no mm
            parts.append(f"({(c + 0.5) * float(ps[1]):.1f}, {(r + 0.5) * float(ps[0]):.1f} mm)")
    v = p[r, c]
    if p.ndim == 3 and p.shape[2] >= 3:
        parts.append("RGB " + " ".join(str(int(t)) for t in v[:3]))
    else:
        v = float(np.asarray(v).ravel()[0])
        num = f"{v:.0f}" if v == int(v) else f"{v:.4g}"
        modality = str(md.get("modality") or "")
        parts.append(f"{num} HU" if modality == "CT" else (f"{modality} value {num}" if modality else f"value {num}"))
    return "  ".join(parts)


def readout_text(frame: Any, panels: list[Any], x: float, y: float) -> str:
    """The whole readout: the pixel, then each panel's value there ("" off the frame)."""
    if frame is None:
        return ""
    head = pixel_text(frame, x, y)
    if head is None:
        return ""
    parts = [head]
    for panel in panels:
        value_at = getattr(panel, "value_at", None)
        if value_at is None:
            continue
        try:
            v = value_at(x, y)
        except (ValueError, IndexError, TypeError, AttributeError):  # a plug-in's panel: no readout
            v = None
        if v:
            parts.append(str(v))
    return "   |   ".join(parts)


class Readout(QLabel):
    """A status-bar label that follows the cursor over the frame view of ``window``."""

    def __init__(self, window: Any) -> None:
        super().__init__("")
        self.window = window
        self.setContentsMargins(8, 0, 8, 0)
        self.setToolTip("Under the cursor: position (pixels, mm), the frame's value, each model's value")
        self._pos: tuple[float, float] | None = None
        window.view.pointerMoved.connect(self.track)
        window.view.pointerLeft.connect(self.clear_pos)
        window.frameShown.connect(lambda _fr: self.refresh())  # the value under a still cursor changes

    def track(self, x: float, y: float) -> None:
        self._pos = (x, y)
        self.refresh()

    def clear_pos(self) -> None:
        self._pos = None
        self.setText("")

    def refresh(self) -> None:
        if self._pos is None:
            return
        fr = self.window.last_result
        self.setText(readout_text(None if fr is None else fr.frame, self.window.panels, *self._pos))


def install(window: Any) -> Readout:
    """Add the readout to ``window``'s status bar (left of the permanent figures)."""
    r = Readout(window)
    window.statusBar().addWidget(r, 1)
    return r
