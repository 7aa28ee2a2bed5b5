"""The instance segmentation panel, offscreen, fed hand-made InstancesResults: all masks drawn by
ONE image item (following the boxes item, just behind it) in the class colours with opaque
outlines, hidden classes hiding their masks, fill and outline settings, mask areas in the box
details, the instance under the cursor; and a segment model in the real window."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from PySide6.QtCore import QSettings

from loupe.sources.base import Frame
from loupe.tasks.instances import InstancesResult
from loupe.ui.panels.instances import (
    FILL_KEY,
    OUTLINE_KEY,
    InstancesPanel,
    boundaries,
    make_panel,
    mask_rgba,
)

LABELS = ("person", "car", "dog")
RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)
PALETTE = np.array([RED, BLUE, GREEN], np.uint8)
H, W = 60, 80


def result(hw=(H, W)) -> InstancesResult:
    """Instance 0 (person): a 20 x 20 square at rows 10-29, cols 10-29; instance 1 (car): rows
    20-39, cols 20-49, under instance 0 where they overlap; instance 2 (person): rows 45-54,
    cols 60-74. Masks at the frame's size."""
    ids = np.zeros(hw, np.uint16)
    ids[20:40, 20:50] = 2
    ids[10:30, 10:30] = 1
    ids[45:55, 60:75] = 3
    boxes = np.array([[10, 10, 30, 30], [20, 20, 50, 40], [60, 45, 75, 55]], np.float32)
    classes = np.array([0, 1, 0], np.int32)
    return InstancesResult(boxes=boxes, scores=np.array([0.9, 0.8, 0.7], np.float32), classes=classes,
                           labels=LABELS, frame_hw=hw, counts=np.bincount(classes, minlength=3).astype(np.int64),
                           masks=ids, mask_areas=np.array([400, 600, 150], np.int64))


def test_boundaries_are_the_pixels_next_to_another_instance():
    ids = np.zeros((6, 6), np.uint16)
    ids[1:5, 1:5] = 1
    edge = boundaries(ids)
    assert edge[1:5, 1:5].sum() == 12 and not edge[2:4, 2:4].any() and not edge[0].any()


def test_mask_rgba_fills_in_class_colours_and_outlines_opaque():
    r = result()
    rgba = mask_rgba(r.masks, r.classes, PALETTE, np.ones(3, bool), fill=0.4)
    assert rgba.shape == (H, W, 4) and rgba.dtype == np.uint8
    assert tuple(rgba[15, 15]) == (*RED, 102)  # inside instance 0: its class colour at 40 %
    assert tuple(rgba[35, 40]) == (*BLUE, 102)  # instance 1 (car)
    assert tuple(rgba[10, 15]) == (*RED, 255)  # instance 0's outline
    assert tuple(rgba[25, 30]) == (*BLUE, 255)  # where instance 1 meets instance 0: both outlined
    assert rgba[0, 0, 3] == 0 and rgba[5, 70, 3] == 0  # no instance: transparent
    plain = mask_rgba(r.masks, r.classes, PALETTE, np.ones(3, bool), fill=0.4, outlines=False)
    assert plain[10, 15, 3] == 102
    hidden = mask_rgba(r.masks, r.classes, PALETTE, np.array([False, True, True]), fill=0.4)
    assert hidden[15, 15, 3] == 0 and hidden[10, 15, 3] == 0 and hidden[50, 65, 3] == 0  # persons gone
    assert hidden[35, 40, 3] == 102


def _panel_in_view(qtbot, win):
    panel = InstancesPanel(LABELS, PALETTE, "seg")
    qtbot.addWidget(panel)
    vb = win.view.vb
    panel.attach(vb)
    return panel, vb, None


def test_one_image_item_draws_every_mask(qtbot, win):
    panel, vb, _view = _panel_in_view(qtbot, win)
    panel.show_result(result(), (H, W), 0)
    mine = [it for it in vb.addedItems if it is panel.masks_item or it is panel.overlay]
    assert len(mine) == 2 and not panel.overlay.childItems()  # one item for all three masks
    assert panel.masks_item.isVisible() and panel.masks_item.zValue() < panel.overlay.zValue()
    img = panel.masks_item.image
    assert img.shape == (H, W, 4)
    assert tuple(img[15, 15, :3]) == RED and tuple(img[35, 40, :3]) == BLUE and tuple(img[50, 65, :3]) == RED
    rect = panel.masks_item.mapRectToParent(panel.masks_item.boundingRect())
    assert (rect.width(), rect.height()) == (W, H)
    # a result for a frame shown at twice its size: the map is stretched over the frame shown
    panel.show_result(result(), (2 * H, 2 * W), 1)
    rect = panel.masks_item.mapRectToParent(panel.masks_item.boundingRect())
    assert (rect.width(), rect.height()) == (2 * W, 2 * H)
    # the window's overlay toggle, opacity and stacking reach the masks
    panel.overlay.setVisible(False)
    assert not panel.masks_item.isVisible()
    panel.overlay.setVisible(True)
    panel.overlay.setOpacity(0.5)
    panel.overlay.setZValue(12)
    assert panel.masks_item.isVisible() and panel.masks_item.opacity() == 0.5 and panel.masks_item.zValue() == 11.5
    panel.detach()
    assert panel.masks_item.scene() is None and panel.overlay.scene() is None


def test_hidden_classes_hide_their_masks_and_settings_redraw(qtbot, win):
    panel, _vb, _view = _panel_in_view(qtbot, win)
    panel.show_result(result(), (H, W), 0)
    panel.set_class_visible(0, False)
    img = panel.masks_item.image
    assert img[15, 15, 3] == 0 and img[50, 65, 3] == 0 and img[35, 40, 3] > 0
    panel.set_class_visible(0, True)
    assert panel.masks_item.image[15, 15, 3] > 0
    panel.set_fill(0.2)
    assert panel.masks_item.image[15, 15, 3] == 51
    panel.set_outlines(False)
    assert panel.masks_item.image[10, 15, 3] == 51


def test_details_and_readout_name_the_instance(qtbot, win):
    panel, _vb, _view = _panel_in_view(qtbot, win)
    panel.show_result(result(), (H, W), 0)
    assert panel.pick(40.0, 35.0) == 1
    assert "mask 600 px" in panel.details.text()
    assert panel.value_at(15.0, 15.0) == "person 0.90 (mask)"
    assert panel.value_at(45.0, 22.0).startswith("car")  # in car's box, outside its mask: the box


def test_make_panel_keeps_fill_and_outlines(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    settings.setValue(FILL_KEY, 0.3)
    settings.setValue(OUTLINE_KEY, False)
    task = SimpleNamespace(labels=LABELS, palette=PALETTE, score_threshold=0.25, iou_threshold=0.7, needs_nms=True,
                           set_score_threshold=lambda v: None, set_iou_threshold=lambda v: None)
    host = SimpleNamespace(settings=settings, rerun_frame=lambda: None, seek_to=lambda i: None)
    model = SimpleNamespace(task=task, engine=SimpleNamespace(card=SimpleNamespace(name="seg")), name="seg")
    panel = make_panel(model, host)
    qtbot.addWidget(panel)
    assert panel.fill == 0.3 and not panel.outlines
    panel.set_fill(0.6)
    assert float(settings.value(FILL_KEY)) == 0.6
    panel.update_from(result(), Frame(np.zeros((H, W, 3), np.uint8), 0, 0.0, {}), True)
    assert panel.masks_item.image[15, 15, 3] == 153


def test_a_segment_model_in_the_window_draws_its_masks(qtbot, win, tmp_path):
    from loupe.base.media import clip_path
    from tests.instances_models import make_instances_model

    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(make_instances_model(tmp_path / "seg.onnx")))
    panel = win.panels[0]
    assert isinstance(panel, InstancesPanel) and panel.masks_item in win.view.vb.addedItems
    win.open_source(str(clip_path("carphone_pristine.mp4")), playing=False)
    qtbot.waitUntil(lambda: panel.last is not None, timeout=30000)
    r = panel.last
    assert isinstance(r, InstancesResult) and r.count >= 2 and panel.masks_item.isVisible()
    img = panel.masks_item.image
    assert img.shape[:2] == r.masks.shape
    for i, c in enumerate(r.classes.tolist()):  # each instance's pixels in its class colour
        px = img[r.masks == i + 1]
        assert len(px) and (px[:, :3] == panel.palette[c]).all() and (px[:, 3] > 0).all()
