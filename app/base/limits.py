"""Limits that protect the machine from hostile or absurd inputs (Qt-free).

Every source checks what a file *claims* (image header, video stream, DICOM attributes) against
these limits before decoding anything, so a 100-byte file that claims 60000 x 60000 pixels, or a
DICOM file that claims a million frames, is refused with a message instead of exhausting memory:

- ``max_megapixels``: pixels per frame (default 100 MP; an 8K frame is 33 MP);
- ``max_dicom_frames``: frames in one DICOM file (default 10000);
- ``max_memory_mb``: decoded memory budget of one frame as the decoder produces it (default
  1024 MB; a 100 MP 8-bit RGB frame needs 300 MB, 16-bit RGBA twice as much per pixel).

Set them with environment variables (``LOUPE_MAX_MEGAPIXELS``, ``LOUPE_MAX_DICOM_FRAMES``,
``LOUPE_MAX_MEMORY_MB``), with ``loupe analyze --max-megapixels/--max-dicom-frames/--max-memory-mb``,
or in the app's settings file (``[limits]`` ``max_megapixels=...``); ``configure()`` sets them for
this process (explicit values win over the environment).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields, replace

from loupe.base.errors import LoupeError

logger = logging.getLogger(__name__)

__all__ = ["LimitError", "Limits", "configure", "current", "reset"]

ENV = {
    "max_megapixels": "LOUPE_MAX_MEGAPIXELS",
    "max_dicom_frames": "LOUPE_MAX_DICOM_FRAMES",
    "max_memory_mb": "LOUPE_MAX_MEMORY_MB",
}
CLI = {
    "max_megapixels": "--max-megapixels",
    "max_dicom_frames": "--max-dicom-frames",
    "max_memory_mb": "--max-memory-mb",
}


class LimitError(LoupeError, ValueError):
    """A limit was given a value that is not a positive number."""


@dataclass(frozen=True)
class Limits:
    max_megapixels: float = 100.0
    max_dicom_frames: int = 10_000
    max_memory_mb: float = 1024.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise LimitError(f"{f.name} must be a positive number, got {value!r}")

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)

    @staticmethod
    def how_to_raise(name: str) -> str:
        return f"set {ENV[name]} or {CLI[name]} to change it"

    # --- checks: None when within the limits, else the reason (without the file name) ----
    def frame_problem(self, width: int, height: int, bytes_per_pixel: float = 3.0) -> str | None:
        """Why a frame of ``width`` x ``height`` with ``bytes_per_pixel`` as decoded is refused."""
        width, height = int(width), int(height)
        if width <= 0 or height <= 0:
            return f"its header claims an empty frame ({width} x {height} pixels)"
        pixels = width * height
        if pixels > self.max_pixels:
            return (
                f"it is {width} x {height} pixels ({pixels / 1e6:.0f} megapixels); the limit is "
                f"{self.max_megapixels:g} megapixels per frame ({self.how_to_raise('max_megapixels')})"
            )
        need_mb = pixels * bytes_per_pixel / 1e6
        if need_mb > self.max_memory_mb:
            return (
                f"it is {width} x {height} pixels and would need {need_mb:.0f} MB decoded, over the "
                f"{self.max_memory_mb:g} MB memory budget per frame ({self.how_to_raise('max_memory_mb')})"
            )
        return None

    def frames_problem(self, frames: int) -> str | None:
        if frames > self.max_dicom_frames:
            return (
                f"it holds {frames} frames; the limit is {self.max_dicom_frames} frames per DICOM "
                f"file ({self.how_to_raise('max_dicom_frames')})"
            )
        return None


_overrides: dict[str, float] = {}


def _from_env() -> dict[str, float]:
    out: dict[str, float] = {}
    for name, var in ENV.items():
        raw = os.environ.get(var)
        if raw is None or not raw.strip():
            continue
        try:
            value = float(raw)
            if value <= 0:
                raise ValueError
        except ValueError:
            logger.warning("ignoring %s=%r: not a positive number", var, raw)
            continue
        out[name] = int(value) if name == "max_dicom_frames" else value
    return out


def current() -> Limits:
    """The limits in force: defaults, then the environment, then ``configure()``."""
    values = {**_from_env(), **_overrides}
    return replace(Limits(), **values) if values else Limits()


def configure(**values: float | None) -> Limits:
    """Set limits for this process (``None`` leaves one as it is); returns the limits in force.
    Raises LimitError for a value that is not positive."""
    unknown = set(values) - set(ENV)
    if unknown:
        raise TypeError(f"unknown limit(s): {', '.join(sorted(unknown))}")
    chosen = {k: v for k, v in values.items() if v is not None}
    replace(Limits(), **chosen)  # validate before storing
    _overrides.update(chosen)
    return current()


def reset() -> None:
    """Forget ``configure()`` (back to the environment and the defaults)."""
    _overrides.clear()
