"""The window's menus: File, Model, View and Help, with their shortcuts (the window calls
``install`` once, when it is built; each feature's own module adds its items through ``act``)."""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence

from loupe.ui import (
    analyze_job,
    compare_view,
    dialogs,
    export_video,
    fit_menu,
    model_menu,
    screenshot,
    status,
)
from loupe.ui.labels_view import install as install_labels
from loupe.ui.recent import RecentFiles


def install(win) -> None:
    m = win.menuBar().addMenu("&File")

    def act(menu, text, slot, shortcut=None):
        a = QAction(text, win)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        a.triggered.connect(slot)
        menu.addAction(a)
        return a

    act(m, "&Open file…", lambda: dialogs.open_file(win), "Ctrl+O")
    act(m, "Open &folder…", lambda: dialogs.open_folder(win), "Ctrl+Shift+O")
    act(m, "Open &model…", lambda: dialogs.open_model(win), "Ctrl+M")
    act(m, "Open &camera…", lambda: dialogs.open_camera(win), "Ctrl+K")
    install_labels(win, m)  # File ▸ Open labels…, dropped labels, the Ground truth dock
    status.add_demo_menu(win, m)
    win.recent_menu = m.addMenu("&Recent")
    win.recent = RecentFiles(win.settings, win.recent_menu, lambda p: win.open_paths([p]))
    m.addSeparator()
    win.analyze_action = act(m, "&Analyse to file…", lambda: analyze_job.analyze_dialog(win), "Ctrl+E")
    act(m, "Save &screenshot…", lambda: screenshot.save_dialog(win), "Ctrl+S")
    export_video.install(win, m, act)  # File ▸ Export video with overlays…
    m.addSeparator()
    act(m, "&Quit", win.close, "Ctrl+Q")
    fit_menu.add_fit_menu(win, act)
    mm = win.menuBar().addMenu("&Model")
    win.remove_model_action = act(mm, "&Remove", win.remove_current_model, "Ctrl+W")
    win.remove_model_action.setToolTip("Unload the model whose panel is shown")
    win.remove_model_action.setEnabled(False)
    model_menu.add_menu_items(win, mm)
    compare_view.install(win, mm, act)  # Model ▸ Compare two models
    v = win.menuBar().addMenu("&View")
    act(v, "Play / pause", win.toggle_play, "Space")
    act(v, "Next frame", win.step, "Right")
    act(v, "Previous frame", win.step_back, "Left")
    act(v, "First frame", lambda: win.seek_to(0), "Home")
    act(v, "&Fit to window", win.view.fit, "F").setShortcuts([QKeySequence("F"), QKeySequence("Ctrl+0")])
    act(v, "Toggle fill / contour", win._toggle_mode, "C")
    act(v, "Show / hide overlay", win._toggle_overlay, "O")
    v.addSeparator()
    v.addAction(win.panel_dock.toggleViewAction())
    v.addAction(win.info_dock.toggleViewAction())
    v.addAction(win.ground_truth.dock.toggleViewAction())
    v.addAction(win.compare.dock.toggleViewAction())
    h = win.menuBar().addMenu("&Help")
    act(h, "&About Loupe / system information", win._show_about, "F1")

