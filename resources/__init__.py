"""Bundled resources: demo models and icons (found with importlib.resources)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DEMO_SEGMENTATION = "demo_segmentation.onnx"


def resource_path(name: str) -> Path:
    """Path of a bundled resource file (inside the installed package or the app bundle)."""
    return Path(str(files(__name__) / name))


def demo_model() -> Path:
    p = resource_path(DEMO_SEGMENTATION)
    if not p.is_file():
        raise FileNotFoundError(
            f"the demo model {DEMO_SEGMENTATION} is missing from loupe.resources; "
            "rebuild it with `python -m loupe_models.demo_seg --out resources/demo_segmentation.onnx`"
        )
    return p
