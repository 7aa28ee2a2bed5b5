"""Bundled resources: demo models and icons (found with importlib.resources)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DEMO_SEGMENTATION = "demo_segmentation.onnx"
#: Sizes of the app icon PNGs in ``icons/`` (rendered from ``icons/loupe.svg``).
ICON_SIZES = (16, 32, 48, 64, 128, 256)


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


def icon_path(size: int | None = None) -> Path:
    """The app icon: ``icons/loupe-<size>.png`` (the nearest size at or above ``size``), or the SVG.

    Raises FileNotFoundError if the icon is missing from the installation.
    """
    if size is None:
        name = "icons/loupe.svg"
    else:
        best = next((s for s in ICON_SIZES if s >= size), ICON_SIZES[-1])
        name = f"icons/loupe-{best}.png"
    p = resource_path(name)
    if not p.is_file():
        raise FileNotFoundError(f"the app icon {name} is missing from loupe.resources")
    return p


def icon_paths() -> list[Path]:
    """All icon PNGs that are installed, smallest first (for a multi-size QIcon)."""
    return [p for p in (resource_path(f"icons/loupe-{s}.png") for s in ICON_SIZES) if p.is_file()]


def demo_models() -> list[Path]:
    """Every bundled demo model (``demo_*.onnx``), sorted by name."""
    root = Path(str(files(__name__)))
    return sorted(root.glob("demo_*.onnx"))
