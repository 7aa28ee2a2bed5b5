"""The keypoints panel, offscreen: keypoints drawn where they are in their keypoint's colour, those
below the threshold not drawn (nor their skeleton lines), skeleton lines in the class colour,
one item for every person's keypoints, the threshold slider changing the drawing only, and a
pose model in the window."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QColor

from loupe.inference.engine import default_palette
from loupe.tasks.keypoints import COCO_KEYPOINTS, COCO_SKELETON, KeypointsResult
from loupe.ui.panels.keypoints import KeypointsItem, KeypointsPanel, make_panel
from tests.ui.test_detection_panel import FakeHost, frame, is_colour, model_of, render

LABELS = ("person", "robot")
RED, BLUE = (255, 0, 0), (0, 0, 255)
PALETTE = np.array([RED, BLUE], np.uint8)
H, W = 120, 200
NAMES = ("a", "b", "c", "d")
SKELETON = ((0, 1), (1, 2), (2, 3))
#: two people: keypoints (x, y, score); person 0's "c" scores 0.3 (below 0.5), person 1's all high
KP = np.array([
    [[20, 20, 0.9], [60, 20, 0.8], [100, 20, 0.3], [140, 20, 0.95]],
    [[20, 90, 0.9], [60, 90, 0.9], [100, 90, 0.9], [140, 90, 0.9]],
], np.float32)
KP_COLOURS = [tuple(int(v) for v in c) for c in default_palette(4)]


def result(kp=KP, classes=(0, 1), hw=(H, W)) -> KeypointsResult:
    kp = np.asarray(kp, np.float32)
    n = len(kp)
    boxes = np.array([[max(0, p[:, 0].min() - 5), max(0, p[:, 1].min() - 5), p[:, 0].max() + 5, p[:, 1].max() + 5]
                      for p in kp], np.float32).reshape(-1, 4)
    classes = np.asarray(classes, np.int32)
    return KeypointsResult(boxes=boxes, scores=np.linspace(0.9, 0.5, n).astype(np.float32), classes=classes,
                           labels=LABELS, frame_hw=hw, counts=np.bincount(classes, minlength=2).astype(np.int64),
                           keypoints=kp, keypoint_names=NAMES, skeleton=SKELETON)


def item_with(kp=KP, classes=(0, 1), threshold=0.5) -> KeypointsItem:
    item = KeypointsItem(PALETTE, 4)
    item.set_keypoints(kp, np.asarray(classes), SKELETON, (H, W))
    item.set_threshold(threshold)
    return item


def near(img: np.ndarray, x: float, y: float, rgb, r: int = 1) -> bool:
    """Some pixel within ``r`` of (x, y) has colour ``rgb``."""
    patch = img[int(y) - r:int(y) + r + 1, int(x) - r:int(x) + r + 1]
    return bool(is_colour(patch, rgb).any())


def test_keypoints_are_drawn_where_they_are_in_their_colour(qtbot):
    img = render(item_with())
    for n in range(2):
        for k in range(4):
            x, y, s = KP[n, k]
            if s >= 0.5:
                assert near(img, x, y, KP_COLOURS[k]), (n, k)
    # nothing far from every keypoint and line
    assert (img[50:70] == 0).all()


def test_keypoints_below_the_threshold_and_their_lines_are_not_drawn(qtbot):
    img = render(item_with())
    x, y, _s = KP[0, 2]  # person 0's "c" (0.3)
    assert (img[int(y) - 6:int(y) + 7, int(x) - 6:int(x) + 7] == 0).all()
    # the lines b-c and c-d of person 0 are gone: their midpoints are black
    assert (img[18:23, 78:83] == 0).all() and (img[18:23, 118:123] == 0).all()
    item = item_with()
    assert item.drawn_points().tolist() == [[True, True, False, True], [True, True, True, True]]
    assert item.drawn_lines() == [(0, 0, 1), (1, 0, 1), (1, 1, 2), (1, 2, 3)]
    item.set_threshold(0.2)  # lower: drawn again
    img = render(item)
    assert near(img, 100, 20, KP_COLOURS[2]) and near(img, 80, 20, RED)


def test_skeleton_lines_join_the_pairs_in_the_class_colour(qtbot):
    img = render(item_with())
    assert near(img, 40, 20, RED)  # person 0 (class 0), a-b
    for x in (40, 80, 120):  # person 1 (class 1): every line
        assert near(img, x, 90, BLUE), x
    assert not is_colour(img, RED)[60:].any()  # no red line on person 1
    item = item_with()
    item.set_show_skeleton(False)
    img = render(item)
    assert not near(img, 40, 20, RED) and not near(img, 80, 90, BLUE)


def test_a_hidden_class_hides_its_peoples_keypoints(qtbot):
    item = item_with()
    item.set_visible_classes(np.array([True, False]))
    img = render(item)
    assert not img[60:].any()
    assert near(img, 20, 20, KP_COLOURS[0])


def test_one_item_draws_every_person_with_one_call_per_pen():
    """300 people with 17 keypoints: one item, the drawing batched (one call per class colour for
    the lines, one per keypoint index for the dots, plus the dark rings)."""
    rng = np.random.default_rng(1)
    kp = np.concatenate([rng.uniform(0, 190, (300, 17, 2)), rng.uniform(0, 1, (300, 17, 1))], 2).astype(np.float32)
    item = KeypointsItem(PALETTE, 17)
    item.set_keypoints(kp, rng.integers(0, 2, 300), COCO_SKELETON, (H, W))
    calls: list[str] = []

    class Painter:
        def __getattr__(self, name):
            if name.startswith("draw"):
                return lambda *a, **k: calls.append(name)
            return lambda *a, **k: None

    item.paint(Painter())
    assert calls.count("drawLines") == 2 and calls.count("drawPoints") == 17 + 1
    assert item.childItems() == []


# --- the panel --------------------------------------------------------------------------------
class FakeTask:
    labels, palette = LABELS, PALETTE
    keypoint_names, skeleton = NAMES, SKELETON
    score_threshold, iou_threshold, keypoint_threshold = 0.25, 0.7, 0.4
    needs_nms, format = True, "yolov8-pose"

    def set_score_threshold(self, v):
        self.score_threshold = v

    def set_iou_threshold(self, v):
        self.iou_threshold = v

    def set_keypoint_threshold(self, v):
        self.keypoint_threshold = v


@pytest.fixture
def host(tmp_path):
    return FakeHost(tmp_path)


def test_keypoint_threshold_starts_from_the_task_and_changes_the_drawing_only(qtbot, host):
    task = FakeTask()
    panel = make_panel(model_of(task), host)
    qtbot.addWidget(panel)
    assert panel.kp_slider.value() == 40 and panel.kp_item.threshold == pytest.approx(0.4)
    panel.show_result(result(), (H, W), 0)
    assert panel.kp_item.drawn_points()[0, 2] == False  # noqa: E712 (0.3 < 0.4)
    panel.kp_slider.setValue(25)
    assert task.keypoint_threshold == pytest.approx(0.25) and host.reruns == 0  # no re-run: drawing only
    assert panel.kp_item.drawn_points().all() and panel.kp_value.text() == "0.25"
    assert panel.last.keypoints.shape == (2, 4, 3)  # the result keeps them all either way


def test_panel_draws_both_items_and_scales_keypoints_to_the_frame_shown(qtbot, host):
    panel = KeypointsPanel(LABELS, PALETTE, "pose", keypoint_names=NAMES, skeleton=SKELETON)
    qtbot.addWidget(panel)
    panel.show_result(result(), (2 * H, 2 * W), 0)  # the result's frame was half the size shown
    np.testing.assert_allclose(panel.kp_item.keypoints[..., :2], 2 * KP[..., :2])
    np.testing.assert_allclose(panel.kp_item.keypoints[..., 2], KP[..., 2])
    np.testing.assert_allclose(panel.overlay.boxes, 2 * result().boxes)
    panel.set_class_visible(1, False)
    assert panel.kp_item.people().tolist() == [True, False]


def test_box_details_list_the_keypoints_above_the_threshold(qtbot, host):
    panel = KeypointsPanel(LABELS, PALETTE, "pose", keypoint_names=NAMES, skeleton=SKELETON)
    qtbot.addWidget(panel)
    panel.update_from(result(), frame(0), True)
    assert panel.pick(30.0, 20.0) == 0
    text = panel.details.text()
    assert "3 of 4 keypoints" in text and "a (20, 20) 0.90" in text and "c (" not in text


def test_attach_adds_one_keypoints_item_and_detach_removes_it(qtbot, win, host):
    vb = win.view.vb
    before = len(vb.addedItems)
    panel = KeypointsPanel(LABELS, PALETTE, "pose", keypoint_names=COCO_KEYPOINTS, skeleton=COCO_SKELETON)
    qtbot.addWidget(panel)
    panel.attach(vb)
    assert len(vb.addedItems) == before + 2 and panel.kp_item in vb.addedItems and panel.overlay in vb.addedItems
    panel.detach()
    assert len(vb.addedItems) == before


def test_a_pose_model_in_the_window_draws_its_keypoints(qtbot, win, tmp_path):
    from loupe.base.media import clip_path
    from tests.tasks.test_keypoints import FORMATS, keypoints_model

    model = keypoints_model(tmp_path / "pose.onnx", *FORMATS["pose"])
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(model))
    panel = win.panels[0]
    assert isinstance(panel, KeypointsPanel) and panel.kp_item in win.view.vb.addedItems
    assert not panel.track_box.isHidden()  # detection's wiring: the pose task can track
    win.open_source(str(clip_path("carphone_pristine.mp4")), playing=False)
    qtbot.waitUntil(lambda: panel.last is not None, timeout=30000)
    r = panel.last
    from tests.detection_models import expected_on_frame

    assert isinstance(r, KeypointsResult) and r.count == len(expected_on_frame(r.frame_hw)) >= 2
    np.testing.assert_allclose(panel.kp_item.keypoints, r.keypoints, atol=1e-4)  # shown at the model's frame size
    assert panel.kp_item.drawn_points().sum() == 3 * r.count  # 0.9, 0.6, 0.95 of each person pass 0.5


def test_colours_are_qcolors():
    item = KeypointsItem(PALETTE, 3)
    assert all(isinstance(c, QColor) for c in item._kp_colours)
