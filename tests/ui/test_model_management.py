"""Model management in the window: add or replace (asked once, remembered on request), the
warning when a card does not fit the input, and the Model dock following the selected tab."""

from __future__ import annotations

import pytest

from loupe.base.media import clip_path, dicom_test_file
from loupe.ui import model_menu
from loupe.ui import settings as keys
from loupe.ui.main_window import MainWindow
from tests.helpers import make_argmax_model


@pytest.fixture
def asking(qtbot):
    w = MainWindow(ask_task=True)  # a window that asks the user, as the app does
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def load(qtbot, win, path) -> None:
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(path))


def answer(monkeypatch, reply):
    asked: list = []

    def fake(win, name, loaded):
        asked.append((name, list(loaded)))
        return reply

    monkeypatch.setattr(model_menu, "ask_add_or_replace", fake)
    return asked


def test_add_or_replace_is_asked_and_remembered(qtbot, asking, tmp_path, monkeypatch):
    a, b, c = (make_argmax_model(tmp_path / f"{n}.onnx") for n in "abc")
    asked = answer(monkeypatch, None)
    load(qtbot, asking, a)
    assert asked == []  # nothing loaded yet: nothing to ask
    asking.add_model(str(b))  # cancelled: b is not loaded
    qtbot.waitUntil(lambda: asked != [], timeout=10000)
    assert asked == [("b", ["a"])] and [m.name for m in asking.models] == ["a"]

    asked = answer(monkeypatch, (model_menu.REPLACE, False))
    load(qtbot, asking, b)
    assert [m.name for m in asking.models] == ["b"] and asking.panel_tabs.count() == 1
    assert asking.ask_again_action.isChecked()

    asked = answer(monkeypatch, (model_menu.ADD, True))
    load(qtbot, asking, c)
    assert [m.name for m in asking.models] == ["b", "c"] and asking.panel_tabs.count() == 2
    assert asking.settings.value(keys.MODEL_ADD_MODE) == "add"
    assert not asking.ask_again_action.isChecked()

    asked = answer(monkeypatch, (model_menu.REPLACE, False))
    load(qtbot, asking, a)  # remembered: added without a question
    assert asked == [] and [m.name for m in asking.models] == ["b", "c", "a"]

    asking.ask_again_action.trigger()  # Model ▸ Ask again when adding a model
    assert asking.ask_again_action.isChecked() and asking.settings.value(keys.MODEL_ADD_MODE) == "ask"
    load(qtbot, asking, b)
    assert len(asked) == 1 and [m.name for m in asking.models] == ["b"]


def test_a_video_model_on_a_ct_slice_shows_a_warning_and_keeps_running(qtbot, asking, argmax_model):
    load(qtbot, asking, argmax_model)
    shown: list = []
    asking.frameShown.connect(shown.append)
    asking.open_source(str(dicom_test_file("CT_small.dcm")))
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=10000)
    assert asking.banner.isVisible() and asking.banner.level == "warning"
    text = asking.banner.label.text()
    assert "expects 8-bit colour images (RGB)" in text and "a CT slice (HU values)" in text
    assert shown[-1].results[0].result.class_map.shape == (128, 128)  # it still ran
    assert len(asking.models) == 1

    asking.banner.hide()
    n = len(shown)
    asking.open_source(str(clip_path("carphone_pristine.mp4")))  # a video fits the video model
    qtbot.waitUntil(lambda: len(shown) >= n + 3, timeout=20000)
    assert not asking.banner.isVisible()


def test_the_model_dock_shows_the_selected_tabs_card_in_words(qtbot, asking, tmp_path, monkeypatch):
    assert "No model loaded" in asking.info.toPlainText()
    answer(monkeypatch, (model_menu.ADD, False))
    first, second = make_argmax_model(tmp_path / "first.onnx"), make_argmax_model(tmp_path / "second.onnx", stride=2)
    load(qtbot, asking, first)
    load(qtbot, asking, second)
    assert asking.panel_tabs.currentIndex() == 1
    text = asking.info.toPlainText()
    assert "second.onnx" in text and "first.onnx" not in text
    assert "one value per 2×2 pixels" in text and "padded to a multiple of 2" in text
    assert "{'" not in text and "'}" not in text
    assert "red" in text and "brightest channel" in text  # labels and the card's name
    asking.panel_tabs.setCurrentIndex(0)
    text = asking.info.toPlainText()
    assert "first.onnx" in text and "second.onnx" not in text and "one value per pixel" in text
    assert asking.info.shown is asking.models[0]
    asking.remove_model(0)
    assert "second.onnx" in asking.info.toPlainText()
    asking.remove_model(0)
    assert "No model loaded" in asking.info.toPlainText()
