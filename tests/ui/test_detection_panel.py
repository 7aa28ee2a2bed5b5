"""The detection panel, offscreen, fed hand-made DetectionResults: boxes and label tags drawn by
one item where the boxes are (in the class colour, text that keeps its size at any zoom), hidden
classes not drawn, counts, thresholds going to the task (and re-running the paused frame), the
IoU slider only where NMS is run, box details on a click, the count plot seeking, settings kept."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from pyqtgraph import functions as fn
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QGraphicsScene

from loupe.sources.base import Frame
from loupe.tasks.detection import DetectionResult
from loupe.ui.panels.boxes_item import BoxesItem, pick_box, place_tags, text_colour
from loupe.ui.panels.detection import OPACITY_KEY, SHOW_LABELS_KEY, DetectionPanel, make_panel
from tests.helpers import FakeHost

LABELS = ("person", "car", "dog")
RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)
PALETTE = np.array([RED, BLUE, GREEN], np.uint8)
H, W = 120, 200


def result(boxes, classes, scores=None, labels=LABELS, hw=(H, W)) -> DetectionResult:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    classes = np.asarray(classes, np.int32)
    if scores is None:
        scores = np.linspace(0.9, 0.5, len(boxes))
    counts = np.bincount(classes, minlength=len(labels)).astype(np.int64)
    return DetectionResult(boxes=boxes, scores=np.asarray(scores, np.float32), classes=classes,
                           labels=tuple(labels), frame_hw=hw, counts=counts)


def frame(index: int = 0, hw=(H, W)) -> Frame:
    return Frame(np.full((*hw, 3), 40, np.uint8), index, index / 25.0, {})


def render(item: BoxesItem, scale: float = 1.0, margin: float = 0.0) -> np.ndarray:
    """The item alone over black, the frame rect (plus ``margin`` frame pixels around it) drawn
    ``scale`` screen pixels per frame pixel: an RGB array."""
    scene = QGraphicsScene()
    scene.addItem(item)
    src = QRectF(-margin, -margin, W + 2 * margin, H + 2 * margin)
    img = QImage(round(src.width() * scale), round(src.height() * scale), QImage.Format.Format_RGB32)
    img.fill(QColor(0, 0, 0))
    p = QPainter(img)
    scene.render(p, QRectF(0, 0, img.width(), img.height()), src)
    p.end()
    scene.removeItem(item)
    rgba = img.convertToFormat(QImage.Format.Format_RGBA8888)
    return fn.ndarray_from_qimage(rgba).copy()[..., :3]


def is_colour(img: np.ndarray, rgb) -> np.ndarray:
    return np.all(img == np.array(rgb, np.uint8), axis=-1)


def band(shape, box, px: int = 2) -> np.ndarray:
    """Pixels within ``px`` of the outline of ``box`` (x1, y1, x2, y2)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    x1, y1, x2, y2 = box
    near_x = (np.abs(xx - x1) <= px) | (np.abs(xx - x2) <= px)
    near_y = (np.abs(yy - y1) <= px) | (np.abs(yy - y2) <= px)
    in_x = (xx >= x1 - px) & (xx <= x2 + px)
    in_y = (yy >= y1 - px) & (yy <= y2 + px)
    return (near_x & in_y) | (near_y & in_x)


def item_with(boxes, classes, labels_on=False) -> BoxesItem:
    item = BoxesItem(PALETTE, LABELS)
    item.set_boxes(np.asarray(boxes, np.float32), np.linspace(0.9, 0.5, len(boxes)), np.asarray(classes), (H, W))
    item.set_show_labels(labels_on)
    return item


A, B = (40, 50, 100, 100), (120, 20, 180, 110)


# --- the item ----------------------------------------------------------------------------------
def test_item_draws_each_box_outline_in_its_class_colour_and_nothing_else(qtbot):
    item = item_with([A, B], [0, 1])
    assert item.boundingRect() == QRectF(0, 0, W, H)
    img = render(item)
    red, blue = is_colour(img, RED), is_colour(img, BLUE)
    # every edge of each box is drawn, in its colour ...
    for (x1, y1, x2, y2), mask in ((A, red), (B, blue)):
        xm, ym = (x1 + x2) // 2, (y1 + y2) // 2
        assert mask[ym, x1 - 1:x1 + 2].any() and mask[ym, x2 - 1:x2 + 2].any()
        assert mask[y1 - 1:y1 + 2, xm].any() and mask[y2 - 1:y2 + 2, xm].any()
        assert not mask[ym, xm]  # an outline: the inside is not filled
    # ... and that colour nowhere but on its outline
    assert red.sum() > 0 and not (red & ~band(red.shape, A)).any()
    assert blue.sum() > 0 and not (blue & ~band(blue.shape, B)).any()
    assert not is_colour(img, GREEN).any()


def test_hidden_classes_are_not_drawn(qtbot):
    item = item_with([A, B], [0, 1], labels_on=True)
    item.set_visible_classes(np.array([True, False, True]))
    img = render(item)
    assert is_colour(img, RED).any() and not is_colour(img, BLUE).any()
    assert item.box_at(150, 60) is None and item.box_at(70, 70) == 0  # nor picked


def test_label_tags_sit_above_their_box_in_its_colour_with_readable_text(qtbot):
    item = item_with([A, B], [0, 1], labels_on=True)
    img = render(item)
    x1, y1 = A[0], A[1]
    tag = img[y1 - 12:y1, x1:x1 + 40]  # just above the box's top-left corner
    assert is_colour(tag, RED).mean() > 0.4  # filled in the class colour
    assert (tag.max(axis=-1) < 60).sum() > 10  # black text on red (light enough)
    btag = img[B[1] - 12:B[1], B[0]:B[0] + 40]
    assert is_colour(btag, BLUE).mean() > 0.4
    assert (btag.min(axis=-1) > 200).sum() > 10  # white text on dark blue
    assert text_colour(RED) == QColor(0, 0, 0) and text_colour((0, 0, 255)) == QColor(255, 255, 255)
    assert text_colour((255, 255, 0)) == QColor(0, 0, 0) and text_colour((20, 20, 20)) == QColor(255, 255, 255)
    assert item.label_text(0) == "person 0.90" and item.label_text(1) == "car 0.50"


def _tag_height(img: np.ndarray, x: int, y_top: int) -> int:
    """Rows of the red tag straight above screen row ``y_top`` in column ``x``."""
    col = is_colour(img[:y_top, x], RED)
    n = 0
    while n < len(col) and col[len(col) - 1 - n]:
        n += 1
    return n


def test_text_and_outlines_keep_their_screen_size_when_the_view_zooms(qtbot):
    item = item_with([A], [0], labels_on=True)
    small, big = render(item, 1.0), render(item, 3.0)
    x1, y1 = A[0], A[1]
    h1 = _tag_height(small, x1 + 1, y1 - 2)
    h3 = _tag_height(big, 3 * x1 + 1, 3 * y1 - 2)
    assert 10 <= h1 <= 24 and abs(h3 - h1) <= 2  # the tag is as tall at 3x zoom
    # the outline stays a couple of screen pixels wide (a cosmetic pen), not 3x
    ym = 3 * (A[1] + A[3]) // 2
    row = is_colour(big[ym, 3 * x1 - 6:3 * x1 + 7], RED)
    assert 1 <= row.sum() <= 3


def test_drawing_is_clipped_to_the_frame(qtbot):
    item = item_with([(150, 60, 260, 140)], [2], labels_on=True)  # a box past the frame's corner (unclipped)
    img = render(item, margin=30)
    green = is_colour(img, GREEN)
    assert green.any()
    frame_area = np.zeros_like(green)
    frame_area[30:30 + H, 30:30 + W] = True
    assert not (green & ~frame_area).any()


def test_a_tag_moves_off_a_better_boxs_tag_into_its_own_box():
    frame = (0.0, 0.0, 640.0, 480.0)
    # best first: a big box whose tag sits above it, then a box just inside it near the top
    spots = place_tags([100, 104], [100, 106], [400, 300], [80, 80], 16, frame)
    assert spots[0] == (100, 84)  # above its box
    assert spots[1] == (104, 106)  # above would cover the first tag: inside its own top
    # at the frame's top both go inside; the second steps down a tag height
    spots = place_tags([10, 12], [2, 8], [300, 200], [90, 90], 16, frame)
    assert spots == [(10, 2), (12, 24)]
    # nowhere free (above and the top inside taken, a box too short to step down in): above, as
    # usual, drawn under the better tags
    spots = place_tags([100, 100, 104], [100, 122, 106], [400, 400, 118], [80, 80, 80], 16, frame)
    assert spots == [(100, 84), (100, 106), (104, 90)]
    # kept inside the frame's sides
    assert place_tags([630], [100], [200], [80], 16, frame) == [(560, 84)]
    # far apart: both above their boxes
    assert place_tags([10, 300], [100, 100], [200, 200], [80, 80], 16, frame) == [(10, 84), (300, 84)]


def test_pick_box_takes_the_smallest_box_under_the_point():
    boxes = np.array([[0, 0, 100, 100], [20, 20, 40, 40], [10, 10, 60, 60]], np.float32)
    keep = np.ones(3, bool)
    assert pick_box(boxes, keep, 30, 30) == 1
    assert pick_box(boxes, keep, 50, 50) == 2
    assert pick_box(boxes, keep, 90, 90) == 0
    assert pick_box(boxes, keep, 150, 10) is None
    keep[1] = False
    assert pick_box(boxes, keep, 30, 30) == 2
    assert pick_box(np.zeros((0, 4), np.float32), np.zeros(0, bool), 1, 1) is None


# --- the panel with a fake host ----------------------------------------------------------------
class FakeTask:
    def __init__(self, needs_nms: bool = True) -> None:
        self.name = "detection"
        self.labels, self.palette, self.needs_nms = LABELS, PALETTE, needs_nms
        self.score_threshold, self.iou_threshold, self.max_detections = 0.4, 0.6, 300

    def set_score_threshold(self, v: float) -> None:
        self.score_threshold = v

    def set_iou_threshold(self, v: float) -> None:
        self.iou_threshold = v


def model_of(task) -> SimpleNamespace:
    return SimpleNamespace(task=task, name="det", engine=SimpleNamespace(card=SimpleNamespace(name="my detector")))


@pytest.fixture
def host(tmp_path):
    return FakeHost(tmp_path)


def test_thresholds_start_from_the_task_and_go_back_to_it_rerunning_the_frame(qtbot, host):
    task = FakeTask()
    panel = make_panel(model_of(task), host)
    qtbot.addWidget(panel)
    assert panel.score_slider.value() == 40 and panel.iou_slider.value() == 60
    assert panel.score_value.text() == "0.40" and host.reruns == 0  # set up without a re-run
    panel.score_slider.setValue(55)
    assert task.score_threshold == pytest.approx(0.55) and host.reruns == 1
    assert panel.score_value.text() == "0.55"
    panel.iou_slider.setValue(45)
    assert task.iou_threshold == pytest.approx(0.45) and host.reruns == 2
    assert not panel.iou_row.isHidden()


def test_no_iou_slider_for_formats_without_nms(qtbot, host):
    panel = make_panel(model_of(FakeTask(needs_nms=False)), host)
    qtbot.addWidget(panel)
    panel.show()
    assert not panel.iou_row.isVisible() and not panel.iou_label.isVisible()
    assert panel.score_slider.isVisible()


def test_counts_table_count_label_and_hiding_a_class(qtbot, host):
    panel = make_panel(model_of(FakeTask()), host)
    qtbot.addWidget(panel)
    r = result([A, B, (5, 5, 30, 30), (150, 70, 190, 100)], [0, 1, 0, 0])
    panel.update_from(r, frame(3), True)
    assert [panel.table.item(k, 1).text() for k in range(3)] == ["3", "1", "0"]
    assert [panel.table.item(k, 0).text() for k in range(3)] == list(LABELS)
    assert panel.count_label.text() == "count 4"
    panel.set_class_visible(0, False)
    assert panel.visible.tolist() == [False, True, True]
    assert panel.overlay.kept().tolist() == [False, True, False, False]
    assert panel.count_label.text() == "count 4  (1 shown)"
    assert panel.value_at(70, 70) is None and panel.value_at(150, 60) == "car 0.77"


def test_many_classes_list_those_seen_until_all_are_asked_for(qtbot, host):
    labels = tuple(f"class {k}" for k in range(80))
    panel = DetectionPanel(labels, np.zeros((80, 3), np.uint8), "m")
    qtbot.addWidget(panel)
    listed = lambda: [k for k in range(80) if not panel.table.isRowHidden(k)]  # noqa: E731
    assert listed() == [] and panel.list_all.isVisibleTo(panel)
    panel.show_result(result([A, B], [7, 42], labels=labels), (H, W), 0)
    assert listed() == [7, 42]
    panel.show_result(result([A], [7], labels=labels), (H, W), 1)
    assert listed() == [7, 42]  # seen in this source: stays listed
    panel.list_all.setChecked(True)
    assert listed() == list(range(80))
    panel.list_all.setChecked(False)
    panel.reset_series()
    assert listed() == []


def test_classes_learnt_from_the_first_output_rebuild_the_table(qtbot, host):
    panel = DetectionPanel((), np.zeros((0, 3), np.uint8), "dynamic")  # the task knew no labels yet
    qtbot.addWidget(panel)
    labels = ("class 0", "class 1")
    panel.show_result(result([A, B], [1, 1], labels=labels), (H, W), 0)
    assert panel.labels == labels and panel.overlay.labels == labels and panel.table.rowCount() == 2
    assert panel.table.item(1, 1).text() == "2" and panel.palette.shape == (2, 3)
    assert panel.value_at(70, 70) == "class 1 0.90"
    panel.set_class_visible(1, False)
    assert not panel.overlay.kept().any()


def test_count_over_time_keeps_history_across_seeks_and_resets(qtbot, host):
    panel = make_panel(model_of(FakeTask()), host)
    qtbot.addWidget(panel)
    for i, n in ((0, 1), (1, 2), (2, 3)):
        panel.update_from(result([A] * n, [0] * n), frame(i), True)
    panel.update_from(result([A] * 5, [0] * 5), frame(1), True)  # a seek back: frame 1 again
    xs, ys = panel.curve.getData()
    assert xs.tolist() == [0, 1, 2] and ys.tolist() == [1, 5, 3]
    panel.reset_series()
    xs, _ = panel.curve.getData()
    assert xs is None or len(xs) == 0


def test_boxes_of_a_result_for_another_frame_size_are_scaled_to_the_frame_shown(qtbot, host):
    panel = make_panel(model_of(FakeTask()), host)
    qtbot.addWidget(panel)
    r = result([(100, 50, 300, 150)], [1], hw=(240, 400))
    panel.update_from(r, frame(0), True)  # shown at 200 x 120: half
    np.testing.assert_allclose(panel.overlay.boxes, [[50, 25, 150, 75]])
    assert panel.overlay.boundingRect() == QRectF(0, 0, W, H)
    assert panel.value_at(100, 50) == "car 0.90" and panel.value_at(160, 50) is None  # shown pixels
    panel.pick(100, 50)  # details in the result's own pixels, saying so
    assert "x1 100, y1 50, x2 300, y2 150" in panel.details.text()
    assert "200 × 100 px (pixels of the 400×240 frame the model ran on)" in panel.details.text()


def test_opacity_and_labels_setting_are_saved_and_restored(qtbot, host):
    panel = make_panel(model_of(FakeTask()), host)
    qtbot.addWidget(panel)
    assert panel.overlay.opacity() == pytest.approx(1.0) and panel.overlay.show_labels
    panel.opacity.setValue(40)
    panel.labels_box.setChecked(False)
    assert float(host.settings.value(OPACITY_KEY)) == pytest.approx(0.4)
    assert str(host.settings.value(SHOW_LABELS_KEY)).lower() == "false"
    again = make_panel(model_of(FakeTask()), host)
    qtbot.addWidget(again)
    assert again.opacity.value() == 40 and again.overlay.opacity() == pytest.approx(0.4)
    assert not again.labels_box.isChecked() and not again.overlay.show_labels


# --- in the window -----------------------------------------------------------------------------
def in_window(qtbot, win, host, task=None, hw=(H, W)) -> DetectionPanel:
    panel = make_panel(model_of(task or FakeTask()), host)
    win.resize(1400, 820)
    win.panel_tabs.addTab(panel, "det")
    win.panel_tabs.setCurrentWidget(panel)
    panel.attach(win.view.vb)
    win.view.show_frame(frame(0, hw))
    qtbot.wait(30)
    return panel


def click_at(qtbot, widget, vb, x: float, y: float) -> None:
    """A left click at view coordinates (x, y) of a pyqtgraph view box inside ``widget``."""
    pt = widget.mapFromScene(vb.mapViewToScene(QPointF(x, y)))
    qtbot.mouseClick(widget.viewport(), Qt.MouseButton.LeftButton, pos=pt)


def test_click_a_box_on_the_frame_for_its_details_smallest_when_nested(qtbot, win, host):
    panel = in_window(qtbot, win, host)
    outer, inner = (20, 20, 180, 110), (60, 40, 100, 80)
    panel.update_from(result([outer, inner], [0, 2], scores=[0.91, 0.66]), frame(6), True)
    click_at(qtbot, win.view, win.view.vb, 80, 60)
    text = panel.details.text()
    assert "frame 7" in text and "dog 0.66" in text and "(class 2)" in text
    assert "x1 60, y1 40, x2 100, y2 80" in text and "40 × 40 px" in text
    assert panel.overlay.selected == 1
    click_at(qtbot, win.view, win.view.vb, 30, 100)
    assert "person 0.91" in panel.details.text() and "160 × 90 px" in panel.details.text()
    assert panel.overlay.selected == 0
    click_at(qtbot, win.view, win.view.vb, 190, 5)
    assert panel.overlay.selected is None and "No box there" in panel.details.text()
    # a threshold change re-runs the paused frame: the box at the clicked point is picked again
    click_at(qtbot, win.view, win.view.vb, 80, 60)
    panel.update_from(result([inner, outer], [2, 0], scores=[0.95, 0.9]), frame(6), True)
    assert panel.overlay.selected == 0 and "dog 0.95" in panel.details.text()
    panel.update_from(result([outer], [0]), frame(7), True)  # the next frame: no selection
    assert panel.overlay.selected is None


def test_a_click_on_the_count_plot_seeks(qtbot, win, host):
    panel = in_window(qtbot, win, host)
    for i in range(10):
        panel.update_from(result([A] * (i % 4 + 1), [0] * (i % 4 + 1)), frame(i), True)
    qtbot.wait(50)
    vb = panel.plot.getPlotItem().vb
    vb.autoRange()
    click_at(qtbot, panel.plot, vb, 5.2, 2.0)
    assert host.seeks == [5]


def test_three_hundred_boxes_are_one_item_in_the_view(qtbot, win, host):
    vb = win.view.vb
    win.view.show_frame(frame(0, (1080, 1920)))  # (the placeholder text goes with the first frame)
    before = len(vb.addedItems)
    scene_before = len(win.view.scene().items())
    panel = in_window(qtbot, win, host, hw=(1080, 1920))
    assert len(vb.addedItems) == before + 1 and panel.overlay in vb.addedItems
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1800, (300, 2)) * [1, 0.55]
    boxes = np.concatenate([xy, xy + rng.uniform(10, 100, (300, 2))], 1)
    r = result(boxes, rng.integers(0, 3, 300), scores=np.sort(rng.uniform(0.3, 1, 300))[::-1], hw=(1080, 1920))
    panel.update_from(r, frame(0, (1080, 1920)), True)
    win.view.viewport().repaint()
    assert len(vb.addedItems) == before + 1
    assert len(win.view.scene().items()) == scene_before + 1  # the item has no children either
    assert len(panel.overlay.boxes) == 300
    panel.detach()
    assert len(vb.addedItems) == before


# --- a real detection model in the window ------------------------------------------------------
@pytest.mark.parametrize("fmt", ["yolov8", "end2end"])
def test_a_detector_in_the_window_draws_its_boxes_and_the_score_slider_reruns_the_frame(qtbot, win, tmp_path, fmt):
    from loupe.base.media import clip_path
    from tests.detection_models import FORMATS, expected_on_frame, make_constant_model

    outputs, output = FORMATS[fmt]
    model = make_constant_model(tmp_path / f"{fmt}.onnx", outputs, output)
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(model))
    panel = win.panels[0]
    assert isinstance(panel, DetectionPanel) and panel.overlay in win.view.vb.addedItems
    assert panel.iou_row.isVisibleTo(panel) == (fmt == "yolov8")  # end2end: NMS done in the model
    win.open_source(str(clip_path("carphone_pristine.mp4")), playing=False)
    qtbot.waitUntil(lambda: panel.last is not None, timeout=30000)
    fr = panel.last
    hw = fr.frame_hw
    want = expected_on_frame(hw)
    assert fr.count == len(want) >= 2
    np.testing.assert_allclose(panel.overlay.boxes, [b for b, _c, _s in want], atol=1e-3)
    assert panel.overlay.classes.tolist() == [c for _b, c, _s in want]
    # the slider goes to the task, the paused frame runs again with it
    panel.score_slider.setValue(75)
    assert win.models[0].task.score_threshold == pytest.approx(0.75)
    strict = expected_on_frame(hw, score_threshold=0.75)
    qtbot.waitUntil(lambda: panel.last is not fr and panel.last.count == len(strict), timeout=30000)
    np.testing.assert_allclose(panel.overlay.boxes, [b for b, _c, _s in strict], atol=1e-3)
    # the count and table at display rate (the window's status tick catches up after a pause)
    qtbot.waitUntil(lambda: panel.count_label.text() == f"count {len(strict)}", timeout=10000)
