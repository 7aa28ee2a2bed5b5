"""File ▸ Export video with overlays… (placeholder until the render job lands)."""

from __future__ import annotations


def install(win, menu, act) -> None:
    """Add the File menu's export item (``act(menu, text, slot, shortcut)`` makes an action)."""
