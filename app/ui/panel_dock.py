"""The dock of panels: each panel in a scroll area (a small window scrolls a panel instead of
clipping its controls), tabs that shrink and elide rather than overflow into scroll arrows, and a
dock that takes the shown panel's own width when the tab changes, never more than ``MAX_SHARE``
of the window, so the frame view keeps the space.

``PanelTabs`` answers ``widget``/``currentWidget``/``indexOf``/``setCurrentWidget`` with the
panels themselves, not their scroll areas: the window and the tests keep talking to panels."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QFrame, QMainWindow, QScrollArea, QTabWidget, QWidget

MAX_SHARE = 0.4  # of the window's width, at most, for the dock
MIN_WIDTH = 240  # the dock's least width (px) while there is room
PANEL_WIDTH = 340  # a panel's width in the dock unless it asks for more (``dock_width`` property)


class PanelTabs(QTabWidget):
    """A tab per panel, each panel inside a ``QScrollArea`` (``widgetResizable``)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setElideMode(Qt.TextElideMode.ElideRight)
        self.setUsesScrollButtons(False)  # many models: narrower tabs with elided names
        self.setDocumentMode(True)

    @staticmethod
    def _inner(w: QWidget | None) -> QWidget | None:
        return w.widget() if isinstance(w, QScrollArea) else w

    def addTab(self, panel: QWidget, name: str) -> int:
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setFrameShape(QFrame.Shape.NoFrame)
        area.setWidget(panel)
        return super().addTab(area, name)

    def widget(self, index: int) -> QWidget | None:
        return self._inner(super().widget(index))

    def currentWidget(self) -> QWidget | None:
        return self._inner(super().currentWidget())

    def scroll_area(self, panel: QWidget) -> QScrollArea | None:
        for i in range(self.count()):
            area = super().widget(i)
            if self._inner(area) is panel:
                return area
        return None

    def indexOf(self, panel: QWidget) -> int:
        area = self.scroll_area(panel)
        return super().indexOf(area if area is not None else panel)

    def setCurrentWidget(self, panel: QWidget) -> None:
        area = self.scroll_area(panel)
        super().setCurrentWidget(area if area is not None else panel)

    def removeTab(self, index: int) -> None:
        area = super().widget(index)
        super().removeTab(index)
        if isinstance(area, QScrollArea):  # a removed tab's panel goes with its scroll area
            area.deleteLater()

    def clear(self) -> None:
        while self.count():
            self.removeTab(self.count() - 1)

    def wanted_width(self) -> int:
        """The shown panel's own width (its ``dock_width`` property, else ``PANEL_WIDTH``, never
        under its minimum), the scroll bar and the frames around it."""
        panel = self.currentWidget()
        if panel is None:
            return MIN_WIDTH
        area = super().currentWidget()
        bar = area.verticalScrollBar().sizeHint().width() if isinstance(area, QScrollArea) else 0
        own = int(panel.property("dock_width") or PANEL_WIDTH)
        return max(own, panel.minimumSizeHint().width(), panel.minimumWidth()) + bar + 4


class DockFitter(QObject):
    """Keeps ``dock`` within ``MAX_SHARE`` of ``window``'s width and gives it the current panel's
    width when the tab changes."""

    def __init__(self, window: QMainWindow, dock: QDockWidget, tabs: PanelTabs) -> None:
        super().__init__(window)
        self.window, self.dock, self.tabs = window, dock, tabs
        tabs.currentChanged.connect(lambda _i: QTimer.singleShot(0, self, self.fit))  # not after the window went
        window.installEventFilter(self)
        self._cap()

    def max_width(self) -> int:
        return max(MIN_WIDTH, int(self.window.width() * MAX_SHARE))

    def _cap(self) -> None:
        self.dock.setMaximumWidth(self.max_width())

    def fit(self) -> None:
        """The dock at the shown panel's width (within the cap)."""
        self._cap()
        if self.dock.isFloating() or not self.dock.isVisible():
            return
        want = min(self.tabs.wanted_width(), self.max_width())
        self.window.resizeDocks([self.dock], [want], Qt.Orientation.Horizontal)

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        if obj is self.window and ev.type() == QEvent.Type.Resize:
            self._cap()
        return False


def panel_dock(window: QMainWindow) -> tuple[QDockWidget, PanelTabs]:
    """The window's "Panels" dock (right) and its tabs, fitted as above."""
    tabs = PanelTabs()
    dock = QDockWidget("Panels", window)
    dock.setObjectName("panels")
    dock.setWidget(tabs)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    window.dock_fitter = DockFitter(window, dock, tabs)
    return dock, tabs
