"""Model ▸ Compare two models (placeholder until the compare view lands)."""

from __future__ import annotations


def install(win, menu, act) -> None:
    """Add the Model menu's compare item (``act(menu, text, slot, shortcut)`` makes an action)."""
