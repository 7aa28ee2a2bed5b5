"""View controls: fit to window (menu, key, double-click, a new source), zoom bounds, the timeline
(a click jumps there, dragging shows frames), the readout under the cursor, the caption box."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QKeySequence, QMouseEvent
from PySide6.QtWidgets import QApplication, QStyle, QStyleOptionSlider

from loupe.base.media import clip_path, dicom_test_file
from loupe.ui.main_window import MainWindow
from loupe.ui.viewer import FIT_MARGIN, MAX_ZOOM
from tests.helpers import expected_argmax_map

CLIP = "carphone_pristine.mp4"  # 176 x 144, 120 frames (not rate-limited)


@pytest.fixture
def win(qtbot):
    w = MainWindow(ask_task=False, providers="cpu", lockstep=True)
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()


def open_paused(qtbot, win, spec) -> list:
    shown: list = []
    win.frameShown.connect(shown.append)
    win.open_source(str(spec), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=15000)
    return shown


def is_fitted(view, w: int, h: int) -> bool:
    """The whole frame is in view and touches the view on one axis (no margin there)."""
    (x0, x1), (y0, y1) = view.vb.viewRange()
    inside = x0 <= 0.01 and x1 >= w - 0.01 and y0 <= 0.01 and y1 >= h - 0.01
    return inside and (abs((x1 - x0) - w) < 0.5 or abs((y1 - y0) - h) < 0.5)


def fit_action(win):
    return next(a for m in win.menuBar().actions() for a in m.menu().actions() if "Fit to window" in a.text())


def test_fit_zoom_bounds_and_fit_on_a_new_source(qtbot, win):
    open_paused(qtbot, win, clip_path(CLIP))
    view = win.view
    assert is_fitted(view, 176, 144)
    # zooming in stops at MAX_ZOOM screen pixels per frame pixel
    for _ in range(40):
        view.vb.scaleBy((0.5, 0.5))
    assert MAX_ZOOM * 0.9 <= view.zoom() <= MAX_ZOOM * 1.01
    assert not is_fitted(view, 176, 144)
    # View ▸ Fit to window (F, Ctrl+0) brings the whole frame back
    action = fit_action(win)
    assert {s.toString() for s in action.shortcuts()} >= {"F", QKeySequence("Ctrl+0").toString()}
    action.trigger()
    assert is_fitted(view, 176, 144)
    fit_zoom = view.zoom()
    # zooming out stops with the whole frame and a margin in view
    for _ in range(40):
        view.vb.scaleBy((2.0, 2.0))
    assert fit_zoom / FIT_MARGIN * 0.99 <= view.zoom() < fit_zoom
    # a double-click on the view fits too
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.viewport().rect().center())
    assert is_fitted(view, 176, 144)
    # reopening a file does not keep the zoom
    for _ in range(5):
        view.vb.scaleBy((0.5, 0.5))
    assert not is_fitted(view, 176, 144)
    open_paused(qtbot, win, clip_path(CLIP))
    assert is_fitted(view, 176, 144)


def test_caption_box_only_with_a_caption(qtbot, win):
    open_paused(qtbot, win, clip_path(CLIP))
    assert not win.view.text.isVisible()  # a video has no caption: no dark box over the frame
    open_paused(qtbot, win, dicom_test_file("CT_small.dcm"))
    qtbot.waitUntil(lambda: win.view.text.isVisible(), timeout=10000)
    assert "CT" in win.view.text.textItem.toPlainText()


def slider_x(slider, value: int) -> int:
    """The x of ``value`` on the slider's track (the handle's centre there)."""
    opt = QStyleOptionSlider()
    slider.initStyleOption(opt)
    style = slider.style()
    groove = style.subControlRect(QStyle.ComplexControl.CC_Slider, opt, QStyle.SubControl.SC_SliderGroove, slider)
    handle = style.subControlRect(QStyle.ComplexControl.CC_Slider, opt, QStyle.SubControl.SC_SliderHandle, slider)
    span = groove.width() - handle.width()
    return groove.x() + handle.width() // 2 + QStyle.sliderPositionFromValue(
        slider.minimum(), slider.maximum(), value, span)


def test_timeline_click_jumps_to_the_frame_clicked(qtbot, win):
    shown = open_paused(qtbot, win, clip_path(CLIP))
    seek = win.seek
    y = seek.height() // 2
    qtbot.mouseClick(seek, Qt.MouseButton.LeftButton, pos=QPoint(slider_x(seek, 90), y))
    qtbot.waitUntil(lambda: shown[-1].frame.index > 10, timeout=10000)  # not one page step (10)
    assert abs(shown[-1].frame.index - 90) <= 2
    assert seek.value() == shown[-1].frame.index
    assert win.pos_label.text().startswith(f"frame {shown[-1].frame.index + 1} / 120")
    assert not win.player.playing


def test_dragging_the_handle_shows_frames_as_it_moves(qtbot, win):
    shown = open_paused(qtbot, win, clip_path(CLIP))
    seek = win.seek
    y = seek.height() // 2
    qtbot.mousePress(seek, Qt.MouseButton.LeftButton, pos=QPoint(slider_x(seek, 0), y))
    assert seek.isSliderDown()
    seen_while_held = set()
    for v in (30, 60):
        qtbot.mouseMove(seek, QPoint(slider_x(seek, v), y))
        qtbot.waitUntil(lambda v=v: abs(shown[-1].frame.index - v) <= 2, timeout=10000)
        assert seek.isSliderDown()  # still held: the picture follows the handle before release
        seen_while_held.add(shown[-1].frame.index)
    assert len(seen_while_held) == 2
    qtbot.mouseRelease(seek, Qt.MouseButton.LeftButton, pos=QPoint(slider_x(seek, 60), y))


def mouse_over(qtbot, view, x: float, y: float) -> None:
    """Move the mouse over frame pixel (x, y) of the view (a move event sent to the viewport, as
    Qt delivers one)."""
    vp = view.viewport()
    pos = QPointF(view.mapFromScene(view.vb.mapViewToScene(QPointF(x, y))))
    ev = QMouseEvent(QEvent.Type.MouseMove, pos, QPointF(vp.mapToGlobal(pos.toPoint())), Qt.MouseButton.NoButton,
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(vp, ev)


def test_readout_under_the_cursor_shows_pixel_and_class(qtbot, win, argmax_model):
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(argmax_model))
    shown = open_paused(qtbot, win, clip_path(CLIP))
    qtbot.waitUntil(lambda: win.panels[0].last is not None, timeout=10000)
    frame = shown[-1].frame
    labels = win.models[0].task.labels
    expected = expected_argmax_map(frame.pixels)
    # two pixels of different classes, so the class named is the one under the cursor
    (r0, c0), (r1, c1) = ((r, c) for r, c in ((20, 30), (100, 140)))
    if expected[r0, c0] == expected[r1, c1]:
        r1, c1 = map(int, np.argwhere(expected != expected[r0, c0])[0])
    for r, c in ((r0, c0), (r1, c1)):
        mouse_over(qtbot, win.view, c + 0.5, r + 0.5)
        text = win.readout.text()
        rgb = " ".join(str(int(v)) for v in frame.pixels[r, c])
        assert f"x {c}  y {r}" in text and f"RGB {rgb}" in text
        assert text.endswith(labels[int(expected[r, c])])
    # off the frame: nothing
    mouse_over(qtbot, win.view, -50, -50)
    assert win.readout.text() == ""


def test_readout_on_ct_says_hu_and_mm(qtbot, win):
    shown = open_paused(qtbot, win, dicom_test_file("CT_small.dcm"))
    frame = shown[-1].frame
    ps = frame.metadata["pixel_spacing"]
    mouse_over(qtbot, win.view, 40.5, 30.5)
    text = win.readout.text()
    hu = float(frame.pixels[30, 40])
    assert f"{hu:.0f} HU" in text
    assert f"({40.5 * float(ps[1]):.1f}, {30.5 * float(ps[0]):.1f} mm)" in text


def test_plots_and_lists_in_panels_count_frames_from_1(qtbot):
    from loupe.tasks.anomaly import AnomalyResult
    from loupe.ui.panels.anomaly import AnomalyPanel
    from loupe.ui.panels.density import DensityPanel

    for panel in (DensityPanel("d", display_max=1.0), AnomalyPanel("a", threshold=0.5)):
        qtbot.addWidget(panel)
        axis = panel.plot.getAxis("bottom")
        # the data stay frame indices; the labels are the frame numbers the player shows
        ticks = axis.tickValues(0, 119, 400)
        positions = [v for _sp, vals in ticks for v in vals]
        labels = axis.tickStrings(positions, 1, ticks[0][0])
        assert "1" not in labels or positions[labels.index("1")] == 0
        assert all(int(lab) == round(pos) + 1 for pos, lab in zip(positions, labels))
        assert any(int(lab) % 10 == 0 for lab in labels)  # round numbers in the labels
    # a flagged span is named by the frames the player shows
    rgb = np.zeros((8, 8, 3), np.uint8)
    err = np.zeros((8, 8), np.float32)
    for i, score in enumerate([0.1, 0.9, 0.9, 0.1]):
        panel.show_result(AnomalyResult(30.0, score, score >= 0.5, err, rgb, 0.5), rgb, i)
    assert panel.spans.item(0).text() == "frames 2–3" and panel.spans.item(0).data(256) == 1


def test_the_second_copy_follows_the_frame_and_its_display_window(qtbot):
    """The compare view's side by side: the copy right of the frame shows the same pixels in the
    same display window, also after a window drag; Fit shows both."""
    from loupe.sources.base import Frame
    from loupe.ui.viewer import FrameView

    view = FrameView()
    qtbot.addWidget(view)
    view.resize(800, 400)
    view.show()
    qtbot.waitExposed(view)
    ct = np.linspace(-1000, 1000, 60 * 80, dtype=np.float32).reshape(60, 80)
    view.show_frame(Frame(ct, 0, 0.0, {"window_center": 40.0, "window_width": 400.0}))
    view.show_twin(True)
    assert view.twin_x() == 84 and view.twin.pos().x() == 84  # 80 wide and a 4-pixel gap
    np.testing.assert_array_equal(view.twin.image, view.image.image)
    assert list(view.twin.levels) == list(view.image.levels) == [-160.0, 240.0]
    (x0, x1), _ = view.vb.viewRange()
    assert x0 <= 0.5 and x1 >= 84 + 80 - 0.5
    view.set_window(100.0, 50.0, source="drag")
    assert list(view.twin.levels) == list(view.image.levels) == [75.0, 125.0]
    view.show_frame(Frame(ct[::-1].copy(), 1, 0.04, {"window_center": 40.0, "window_width": 400.0}))
    np.testing.assert_array_equal(view.twin.image, view.image.image)
    view.show_twin(False)
    assert view.twin is None and view.twin_x() == 0.0
    (x0, x1), _ = view.vb.viewRange()
    assert x1 - x0 < 84 + 80 - 10  # the frame alone (with the view's aspect), not both copies
