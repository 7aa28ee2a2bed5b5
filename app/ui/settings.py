"""The window's settings file and every key it holds, in one place.

The key strings are what users' settings files already contain: renaming one loses that setting
for every user, so a new name gets a new constant and the old strings stay as they are.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSettings

GEOMETRY = "window/geometry"  # the main window's saved geometry
LAST_DIR = "paths/last_dir"  # where the file dialogs open
CAMERA_DEVICE = "camera/device"
CAMERA_RESOLUTION = "camera/resolution"  # "default" or "1280x720"
RECENT = "recent"  # list of paths, newest first
WINDOW_PRESET = "display/window_preset"  # greyscale / DICOM display window
SEGMENTATION_OPACITY = "segmentation/opacity"  # 0..1
SEGMENTATION_MODE = "segmentation/mode"  # "fill" or "contour"
MODEL_ADD_MODE = "models/add_mode"  # a model loaded beside others: "ask", "add" or "replace"
EXPORT_CAPTION = "export/caption"  # File ▸ Export video: the caption strip, "true"/"false"
EXPORT_SCALE = "export/scale"  # ... image pixels per frame pixel, 1..8
EXPORT_CRF = "export/crf"  # ... H.264 CRF, 0..51
EXPORT_PRESET = "export/preset"  # ... libx264 preset
logger = logging.getLogger(__name__)

LIMITS_GROUP = "limits"  # [limits] max_megapixels, max_dicom_frames, max_memory_mb


def settings() -> QSettings:
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "Loupe", "Loupe")


def limit_key(name: str) -> str:
    """The key of one ``loupe.base.limits`` limit in the ``[limits]`` group."""
    return f"{LIMITS_GROUP}/{name}"


def last_dir(store: QSettings) -> str:
    return str(store.value(LAST_DIR, str(Path.home())))


def apply_limits(store: QSettings) -> None:
    """``[limits]`` in the settings file (max_megapixels, max_dicom_frames, max_memory_mb)
    override the environment and defaults of ``loupe.base.limits``; a bad value is logged and
    ignored."""
    from loupe.base.limits import ENV, LimitError, configure

    values = {}
    for name in ENV:
        raw = store.value(limit_key(name))
        if raw in (None, ""):
            continue
        try:
            values[name] = float(raw)
        except (TypeError, ValueError):
            logger.warning("settings: %s=%r is not a number; ignored", limit_key(name), raw)
    try:
        configure(**values)
    except LimitError as e:
        logger.warning("settings: %s; limits left as they were", e)
