"""Tracking in the detection panel, offscreen: the "Track IDs" box switches the task's tracker
(re-running a paused frame) and is kept in the settings; tags read "#12 person 0.87"; trails
follow each track's centres (drawn in its class colour by the boxes item), cleared on a seek
and when tracking goes off; a detector in the window tracks a real clip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from loupe.ui.panels.boxes_item import BoxesItem
from loupe.ui.panels.detection import TRACK_KEY, TRAIL_LEN, DetectionPanel, make_panel
from tests.ui.test_detection_panel import (
    BLUE,
    LABELS,
    PALETTE,
    RED,
    FakeHost,
    FakeTask,
    frame,
    is_colour,
    model_of,
    render,
    result,
)


class TrackingTask(FakeTask):
    def __init__(self) -> None:
        super().__init__()
        self.tracking = False

    def set_tracking(self, on: bool) -> None:
        self.tracking = bool(on)


@pytest.fixture
def host(tmp_path):
    return FakeHost(tmp_path)


def tinted(img: np.ndarray, rgb) -> np.ndarray:
    """Pixels of ``rgb``'s hue, at any strength (trails are antialiased): the channels at 0 in
    ``rgb`` stay dark, the others bright."""
    on = np.array(rgb) > 0
    return np.all(img[..., on] > 100, axis=-1) & np.all(img[..., ~on] < 60, axis=-1)


def tracked(boxes, classes, ids, scores=None):
    return dataclasses.replace(result(boxes, classes, scores), track_ids=np.asarray(ids, np.int64))


def test_the_track_box_switches_the_task_and_is_kept(qtbot, host):
    task = TrackingTask()
    panel = make_panel(model_of(task), host)
    qtbot.addWidget(panel)
    assert not panel.track_box.isChecked() and not task.tracking and host.reruns == 0
    panel.track_box.setChecked(True)
    assert task.tracking and host.reruns == 1  # a paused frame shows its IDs at once
    assert str(host.settings.value(TRACK_KEY)).lower() == "true"
    again_task = TrackingTask()
    again = make_panel(model_of(again_task), host)
    qtbot.addWidget(again)
    assert again.track_box.isChecked() and again_task.tracking and host.reruns == 1  # restored, no re-run
    again.track_box.setChecked(False)
    assert not again_task.tracking and str(host.settings.value(TRACK_KEY)).lower() == "false"


def test_a_task_without_tracking_has_no_track_box(qtbot, host):
    panel = make_panel(model_of(FakeTask()), host)
    qtbot.addWidget(panel)
    panel.show()
    assert not panel.track_box.isVisible()
    bare = DetectionPanel(LABELS, PALETTE)  # a subclass's panel not wired by connect_panel
    qtbot.addWidget(bare)
    bare.show()
    assert not bare.track_box.isVisible()
    wired = make_panel(model_of(TrackingTask()), host)
    qtbot.addWidget(wired)
    wired.show()
    assert wired.track_box.isVisible()


def test_tags_start_with_the_track_id(qtbot, host):
    panel = make_panel(model_of(TrackingTask()), host)
    qtbot.addWidget(panel)
    panel.update_from(tracked([(40, 50, 100, 100), (120, 20, 180, 110)], [0, 1], [12, 0], [0.87, 0.5]), frame(0), True)
    assert panel.overlay.label_text(0) == "#12 person 0.87"
    assert panel.overlay.label_text(1) == "car 0.50"  # 0: not tracked
    assert panel.value_at(50, 60) == "#12 person 0.87"
    panel.pick(50, 60)
    assert "#12 person 0.87" in panel.details.text()
    panel.update_from(result([(40, 50, 100, 100)], [0], [0.87]), frame(1), True)  # tracking off
    assert panel.overlay.label_text(0) == "person 0.87"


def test_tag_pixels_widen_with_the_id(qtbot):
    def tag_width(ids):
        item = BoxesItem(PALETTE, LABELS)
        item.set_boxes(np.array([(40, 60, 100, 100)], np.float32), np.array([0.9], np.float32), np.array([0]),
                       (120, 200), ids)
        img = render(item, scale=2.0)
        cols = np.flatnonzero(is_colour(img[100:118], RED).any(axis=0))  # the tag's rows, above the box
        return cols.max() - cols.min()

    assert tag_width(np.array([123], np.int64)) > tag_width(None) + 10


def test_trails_follow_centres_and_are_drawn_in_the_class_colour(qtbot, host):
    panel = make_panel(model_of(TrackingTask()), host)
    qtbot.addWidget(panel)
    for i in range(5):
        panel.update_from(tracked([(10 + 20 * i, 10, 30 + 20 * i, 30), (150, 60 + 5 * i, 170, 80 + 5 * i)],
                                  [0, 1], [1, 2]), frame(i), True)
    assert panel.trails() == {1: [(20.0 + 20 * i, 20.0) for i in range(5)],
                              2: [(160.0, 70.0 + 5 * i) for i in range(5)]}
    panel.overlay.set_show_labels(False)
    panel.overlay.set_boxes(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0), (120, 200))
    img = render(panel.overlay)  # the trails alone
    assert tinted(img[18:23, 22:98], RED).any(axis=0).all()  # along y = 20, x 20..100
    assert tinted(img[72:88, 157:164], BLUE).any(axis=1).all()  # along x = 160, y 70..90
    assert not tinted(img[:16], RED).any() and not tinted(img[25:], RED).any()
    panel.set_class_visible(0, False)  # a hidden class's trails go too
    img = render(panel.overlay)
    assert not tinted(img, RED).any() and tinted(img, BLUE).any()


def test_trails_keep_their_last_points_and_go_on_a_seek(qtbot, host):
    panel = make_panel(model_of(TrackingTask()), host)
    qtbot.addWidget(panel)
    for i in range(TRAIL_LEN + 10):
        panel.update_from(tracked([(i, 10, i + 20, 30)], [0], [1]), frame(i), False)
    pts = panel.trails()[1]
    assert len(pts) == TRAIL_LEN and pts[-1] == (TRAIL_LEN + 9 + 10.0, 20.0)
    # the same frame again (a threshold moved): its point moves, no point is added
    panel.update_from(tracked([(100, 50, 120, 70)], [0], [1]), frame(TRAIL_LEN + 9), False)
    assert len(panel.trails()[1]) == TRAIL_LEN and panel.trails()[1][-1] == (110.0, 60.0)
    # a track not seen for TRAIL_LEN frames loses its trail; a seek backwards clears them all
    panel.update_from(tracked([(0, 0, 20, 20)], [0], [2]), frame(2 * TRAIL_LEN + 10), False)
    assert set(panel.trails()) == {2}
    panel.update_from(tracked([(0, 0, 20, 20)], [0], [1]), frame(3), False)
    assert panel.trails() == {1: [(10.0, 10.0)]}
    panel.track_box.setChecked(True)
    panel.track_box.setChecked(False)  # off: the trails go
    assert panel.trails() == {}
    panel.update_from(tracked([(0, 0, 20, 20)], [0], [1]), frame(4), False)
    panel.reset_series()  # a new source
    assert panel.trails() == {}


def test_a_detector_in_the_window_tracks_a_clip(qtbot, win, tmp_path):
    from loupe.base.media import clip_path
    from tests.detection_models import FORMATS, make_constant_model

    outputs, output = FORMATS["yolov8"]
    model = make_constant_model(tmp_path / "v8.onnx", outputs, output)
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(model))
    panel = win.panels[0]
    assert isinstance(panel, DetectionPanel)
    panel.track_box.setChecked(True)
    win.open_source(str(clip_path("carphone_pristine.mp4")), playing=False)
    qtbot.waitUntil(lambda: panel.last is not None and panel.last.track_ids is not None, timeout=30000)
    assert panel.last.track_ids.tolist() == [1, 2, 3, 4]
    assert panel.overlay.label_text(0).startswith("#1 ")
    panel.track_box.setChecked(False)
    qtbot.waitUntil(lambda: panel.last.track_ids is None, timeout=30000)  # the paused frame re-run
