"""File ▸ Recent: the last files, folders and models opened, newest first, kept in the settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMenu

from loupe.ui.settings import RECENT

MAX_RECENT = 10


class RecentFiles:
    """The settings' list of recent paths and the menu that opens them (``open_path(path)``)."""

    def __init__(self, store: QSettings, menu: QMenu, open_path: Callable[[str], None]) -> None:
        self.store = store
        self.menu = menu
        self.open_path = open_path
        self.rebuild()

    def paths(self) -> list[str]:
        v = self.store.value(RECENT, [])
        if isinstance(v, str):  # an INI list of one comes back as a string
            v = [v]
        return [str(x) for x in (v or [])]

    def add(self, path: str) -> None:
        path = str(Path(path).resolve()) if not path.startswith("camera:") else path
        recent = [p for p in self.paths() if p != path]
        recent.insert(0, path)
        self.store.setValue(RECENT, recent[:MAX_RECENT])
        self.rebuild()

    def rebuild(self) -> None:
        self.menu.clear()
        paths = self.paths()
        for p in paths:
            a = self.menu.addAction(p)
            a.triggered.connect(lambda checked=False, p=p: self.open_path(p))
        self.menu.setEnabled(bool(paths))
