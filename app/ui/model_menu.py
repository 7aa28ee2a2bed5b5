"""Model management in the window: add beside the loaded models or replace them (asked once, the
answer remembered if the user says so), Model ▸ Ask again, and the warning when a model's card
does not fit the frames it is given."""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QCheckBox, QMessageBox

from loupe.inference.input_fit import input_mismatch
from loupe.ui import settings as keys

ADD, REPLACE, ASK = "add", "replace", "ask"


def ask_add_or_replace(win, name: str, loaded: list[str]) -> tuple[str, bool] | None:
    """The question: (ADD or REPLACE, remember) or None when cancelled."""
    box = QMessageBox(win)
    box.setWindowTitle("Add or replace?")
    box.setIcon(QMessageBox.Icon.Question)
    box.setText(f"Add {name} beside the loaded model{'s' if len(loaded) > 1 else ''} "
                f"({', '.join(loaded)}), or replace {'them' if len(loaded) > 1 else 'it'}?")
    add = box.addButton("Add", QMessageBox.ButtonRole.AcceptRole)
    replace = box.addButton("Replace", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(add)
    remember = QCheckBox("Remember my answer (Model ▸ Ask again when adding a model undoes it)")
    box.setCheckBox(remember)
    box.exec()
    clicked = box.clickedButton()
    if clicked is add:
        return ADD, remember.isChecked()
    if clicked is replace:
        return REPLACE, remember.isChecked()
    return None


def stored_mode(win) -> str:
    mode = str(win.settings.value(keys.MODEL_ADD_MODE, ASK))
    return mode if mode in (ADD, REPLACE) else ASK


def add_or_replace(win, name: str) -> bool:
    """Before model ``name`` joins ``win.models``: ask (or use the remembered answer) whether it
    goes beside the loaded ones or replaces them, and unload them for a replace. False: cancelled.
    Not asked without a question to the user (``ask_task`` off: screenshots, tests)."""
    if not win.models or not win.ask_task:
        return True
    mode = stored_mode(win)
    if mode == ASK:
        answer = ask_add_or_replace(win, name, [m.name for m in win.models])
        if answer is None:
            win.statusBar().showMessage(f"{name} not loaded", 5000)
            return False
        mode, remember = answer
        if remember:
            win.settings.setValue(keys.MODEL_ADD_MODE, mode)
            win.ask_again_action.setChecked(False)
    if mode == REPLACE:
        win.remove_models()
    return True


def add_menu_items(win, menu) -> None:
    """Model ▸ Ask again when adding a model (checked: ask; unchecking keeps adding beside)."""
    a = QAction("Ask again when adding a model", win)
    a.setCheckable(True)
    a.setChecked(stored_mode(win) == ASK)
    a.setToolTip("Ask whether a model goes beside the loaded ones or replaces them")

    def toggled(on: bool) -> None:
        if on:
            win.settings.setValue(keys.MODEL_ADD_MODE, ASK)
        elif stored_mode(win) == ASK:
            win.settings.setValue(keys.MODEL_ADD_MODE, ADD)

    a.toggled.connect(toggled)
    menu.addAction(a)
    win.ask_again_action = a


def check_fit(win, frame) -> None:
    """Once per model and source: a warning banner when the frame is not what the card expects."""
    checked = win.__dict__.setdefault("_fit_checked", set())
    messages = []
    for lm in win.models:
        key = (id(lm), win._source_gen)
        if key in checked:
            continue
        checked.add(key)
        if msg := input_mismatch(lm.engine.card, frame):
            messages.append(msg)
    if messages:
        win.show_error("\n".join(messages), "warning")


__all__ = ["add_menu_items", "add_or_replace", "ask_add_or_replace", "check_fit"]
