"""The landmarks panel, offscreen: every contour drawn by one item, in its colour, joined where
the points are (closed contours back to their first point, open ones not), hidden contours and
the point-size and line toggles, the legend's areas (mm² only with a spacing), the point named
under the cursor, settings kept; and the window running a landmark model on a DICOM frame."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from PySide6.QtGui import QColor, QImage, QPainter

from loupe.base.media import dicom_test_file
from loupe.tasks.landmarks import Contour, LandmarksResult
from loupe.ui.panels.landmarks import LINES_KEY, POINT_KEY, ContoursItem, LandmarksPanel, make_panel
from tests.helpers import FakeHost, draw_item

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
PALETTE = np.array([RED, GREEN, BLUE], np.uint8)
H, W = 120, 200
CONTOURS = (Contour("box", (0, 1, 2, 3)), Contour("tri", (4, 5, 6)), Contour("line", (7, 8), closed=False))
POINTS = np.array([[20, 20], [80, 20], [80, 80], [20, 80], [120, 30], [180, 30], [120, 90], [10, 105], [190, 105],
                   [100, 60]], np.float32)  # point 9: in no contour


def result(points=POINTS, mm2=None) -> LandmarksResult:
    area = np.array([3600.0, 1800.0, np.nan])
    return LandmarksResult(points, None, CONTOURS, area, (H, W), None if mm2 is None else area * mm2,
                           tuple(f"p{i}" for i in range(len(points))))


def render(item: ContoursItem) -> np.ndarray:
    """The item alone over black, one screen pixel per frame pixel: an RGB array."""
    return draw_item(item, W, H)


def near(img, rgb, tol=60) -> np.ndarray:
    return np.all(np.abs(img.astype(int) - np.array(rgb)) <= tol, axis=-1)


def item_with(points=POINTS) -> ContoursItem:
    item = ContoursItem(CONTOURS, PALETTE)
    item.set_points(points, (H, W))
    return item


def test_one_item_draws_every_contour_in_its_colour_where_the_points_are(qtbot):
    img = render(item_with())
    red, green, blue = near(img, RED), near(img, GREEN), near(img, BLUE)
    # the box's four sides (closed: the last side, left, joins point 3 back to point 0)
    assert red[20, 50] and red[50, 80] and red[80, 50] and red[50, 20]
    assert not red[50, 50]  # an outline, not filled
    # the triangle: its edges, including the hypotenuse from point 6 back to point 4
    assert green[30, 150] and green[60, 120] and green[60, 150]
    # the open line: drawn from point 7 to 8, never closed (a closed 2-point contour is the same
    # segment, so check the colour sits only along y = 105)
    assert blue[105, 100] and not blue[:100].any()
    # each colour stays near its own contour
    assert not red[:, 100:].any() and not green[:, :100].any()
    # point 9 (no contour): a light grey dot
    assert near(img, (220, 220, 220), tol=40)[60, 100]


def test_hidden_contours_point_size_and_lines(qtbot):
    item = item_with()
    item.set_visible_contours(np.array([False, True, True]))
    img = render(item)
    assert not near(img, RED).any() and near(img, GREEN).any()
    item.set_visible_contours(np.ones(3, bool))
    item.set_show_lines(False)
    img = render(item)
    red = near(img, RED)
    assert red[20, 20] and red[80, 80] and not red[20, 50]  # dots only, no sides
    item.set_point_px(0)
    img = render(item)
    assert not near(img, RED).any() and not near(img, GREEN).any()


def test_an_item_with_no_result_yet_draws_nothing(qtbot):
    # the window paints it before the first result; a direct call raises what paint would raise
    img = QImage(W, H, QImage.Format.Format_RGB32)
    img.fill(QColor(0, 0, 0))
    p = QPainter(img)
    ContoursItem(CONTOURS, PALETTE).paint(p)
    p.end()
    assert img.pixelColor(10, 10) == QColor(0, 0, 0)


def test_points_outside_the_frame_widen_the_bounds_and_nan_points_are_skipped():
    pts = POINTS.copy()
    pts[8] = [260, 105]
    pts[5] = np.nan
    item = item_with(pts)
    assert item.boundingRect().right() >= 260
    render(item)  # no error on a NaN point


def model_of() -> SimpleNamespace:
    task = SimpleNamespace(contours=CONTOURS, palette=PALETTE, point_names=tuple(f"p{i}" for i in range(10)))
    return SimpleNamespace(task=task, name="lm", engine=SimpleNamespace(card=SimpleNamespace(name="my landmarks")))


def test_legend_areas_mm2_and_value_at(qtbot, tmp_path):
    panel = make_panel(model_of(), FakeHost(tmp_path))
    qtbot.addWidget(panel)
    panel.show_result(result(), (H, W))
    t = panel.table
    assert [t.item(k, 0).text() for k in range(3)] == ["box", "tri", "line"]
    assert [t.item(k, 1).text() for k in range(3)] == ["3,600", "1,800", "open"]
    assert t.isColumnHidden(2)
    panel.show_result(result(mm2=0.25), (H, W))
    assert not t.isColumnHidden(2) and t.item(0, 2).text() == "900.0"
    assert "10 points, 3 contours" in panel.summary.text()
    # the nearest point within 3 % of the longer side (6 px here)
    assert panel.value_at(81, 22) == "p1 (point 1), box at (80.0, 20.0)"
    assert panel.value_at(100, 63) == "p9 (point 9) at (100.0, 60.0)"
    assert panel.value_at(50, 50) is None
    panel.set_contour_visible(0, False)  # a hidden contour's points are not named
    assert panel.value_at(81, 22) is None and not panel.overlay.visible[0]


def test_settings_are_saved_and_restored(qtbot, tmp_path):
    host = FakeHost(tmp_path)
    panel = make_panel(model_of(), host)
    qtbot.addWidget(panel)
    panel.set_point_px(9)
    panel.set_show_lines(False)
    assert int(host.settings.value(POINT_KEY)) == 9 and str(host.settings.value(LINES_KEY)).lower() == "false"
    again = make_panel(model_of(), host)
    qtbot.addWidget(again)
    assert again.overlay.point_px == 9 and not again.overlay.show_lines


def test_window_runs_a_landmark_model_on_a_dicom_frame(qtbot, win, tmp_path):
    from tests.landmark_models import make_landmark_model

    pts = np.array([[[50, 50], [150, 50], [150, 150], [50, 150]]], np.float32)
    card = {"contours": [{"name": "organ", "points": [0, 1, 2, 3]}]}
    path = make_landmark_model(tmp_path / "ct.onnx", pts, card, gray=True, palette=[[255, 0, 0]])
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(path))
    shown: list = []
    win.frameShown.connect(shown.append)
    win.open_source(str(dicom_test_file("CT_small.dcm")), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=10000)
    panel = win.panels[0]
    assert isinstance(panel, LandmarksPanel)
    qtbot.waitUntil(lambda: panel.last is not None, timeout=10000)
    # one item in the view box for all contours, holding the points in frame pixels
    items = [i for i in win.view.vb.childGroup.childItems() if isinstance(i, ContoursItem)]
    assert items == [panel.overlay]
    np.testing.assert_allclose(panel.overlay.points, [[32, 32], [96, 32], [96, 96], [32, 96]], atol=1e-4)
    panel.refresh_slow(panel.last, shown[-1].frame)
    assert panel.table.item(0, 1).text() == "4,096" and panel.table.item(0, 2).text() == "1,792.2"
    assert panel.value_at(33, 95).startswith("point 3, organ at (32.0, 96.0)")


def test_the_model_dock_names_the_contours_not_their_indices():
    from loupe.ui.model_info import output_words

    text = output_words("landmarks", {"format": "points", "contours": [
        {"name": "right lung", "points": list(range(44))}, {"name": "spine", "points": [0, 1, 2], "closed": False}],
        "point_names": ["a"] * 44})
    assert text == "format points, contours right lung (44 points); spine (3 points, open), 44 point names"
