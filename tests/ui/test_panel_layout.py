"""Every panel laid out in the window's dock at 900x600 and at 1600x1000: no button, label,
slider, combo box or table column narrower than it needs (unless a scroll area can scroll to it),
tabs that fit, a dock that takes the shown panel's width and leaves the frame view the room."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractScrollArea,
    QComboBox,
    QLabel,
    QSlider,
    QTableWidget,
    QWidget,
)

from loupe.base import registry
from loupe.ui.panel_dock import MAX_SHARE


def _segmentation():
    from loupe.ui.panels.segmentation import SegmentationPanel

    labels = ("background", "liver", "kidney", "spleen", "a class with a long name")
    palette = np.array([[0, 0, 0], [250, 250, 250], [200, 40, 40], [40, 200, 40], [40, 40, 200]], np.uint8)
    return SegmentationPanel(labels, palette, "segmentation model")


def _density():
    from loupe.ui.panels.density import DensityPanel

    return DensityPanel("density model", display_max=0.5)


def _anomaly():
    from loupe.ui.panels.anomaly import AnomalyPanel

    return AnomalyPanel("anomaly model")


def _codebook():
    from loupe.ui.panels.codebook import CodebookPanel

    return CodebookPanel([("top", 512, 1), ("bottom", 512, 1)], "codebook model", has_reconstruction=True)


def _compression():
    from loupe.ui.panels.compression import CompressionPanel

    p = CompressionPanel("compression model")
    p.live_label.setText("frame 120:  PSNR 32.47 dB   SSIM 0.9312   0.081 bpp   (RGB PSNR 31.50 dB)")
    return p


def _classification():
    from loupe.tasks.classification import ClassificationResult, softmax, top_indices
    from loupe.ui.panels.classification import ClassificationPanel

    labels = ("tabby cat", "German shepherd, German shepherd dog, Alsatian", "goldfinch", "koi", "owl")
    p = ClassificationPanel(labels, np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [0, 0, 0],
                                              [250, 250, 250]], np.uint8), "classification model")
    probs = softmax(np.array([1.0, 3.0, 0.5, 0.0, -1.0], np.float32))
    for i in range(30):
        p.show_result(ClassificationResult(probs, labels, top_indices(probs, 5)), (480, 640), i, i == 29)
    return p


def _detection():
    from loupe.tasks.detection import DetectionResult
    from loupe.ui.panels.detection import DetectionPanel

    labels = ("person", "bicycle", "a class with a long name", "traffic light")
    p = DetectionPanel(labels, np.array([[200, 40, 40], [40, 40, 200], [40, 200, 40], [250, 250, 250]], np.uint8),
                       "detection model")
    boxes = np.array([[10, 10, 200, 300], [50, 60, 90, 120], [300, 20, 620, 460]], np.float32)
    classes = np.array([0, 3, 2], np.int32)
    res = DetectionResult(boxes, np.array([0.9, 0.8, 0.4], np.float32), classes, labels, (480, 640),
                          np.bincount(classes, minlength=4).astype(np.int64))
    for i in range(30):
        p.show_result(res, (480, 640), i, i == 29)
    p.pick(70.0, 90.0)  # the box details shown
    return p


def _depth():
    from loupe.tasks.depth import DepthResult
    from loupe.ui.panels.depth import DepthPanel

    p = DepthPanel("depth model", unit="m", kind="metric", card_range=(0.0, 80.0), range_mode="fixed")
    d = np.linspace(2.0, 60.0, 480 * 640, dtype=np.float32).reshape(480, 640)
    for i in range(30):
        p.show_result(DepthResult(d, d[::8, ::8].copy(), 2.0, 31.0, 60.0, 2.5, 59.0, "m", (480, 640)), (480, 640), i, i == 29)
    return p


def _keypoints():
    from loupe.tasks.keypoints import COCO_KEYPOINTS, COCO_SKELETON, KeypointsResult
    from loupe.ui.panels.keypoints import KeypointsPanel

    labels = ("person", "a class with a long name")
    p = KeypointsPanel(labels, np.array([[200, 40, 40], [40, 40, 200]], np.uint8), "pose model",
                       keypoint_names=COCO_KEYPOINTS, skeleton=COCO_SKELETON)
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(50, 400, (2, 17, 2)), rng.uniform(0, 1, (2, 17, 1))], 2).astype(np.float32)
    res = KeypointsResult(boxes=np.array([[40, 40, 410, 410], [60, 50, 300, 400]], np.float32),
                          scores=np.array([0.9, 0.6], np.float32), classes=np.array([0, 1], np.int32), labels=labels,
                          frame_hw=(480, 640), counts=np.array([1, 1], np.int64), keypoints=kp,
                          keypoint_names=COCO_KEYPOINTS, skeleton=COCO_SKELETON)
    for i in range(30):
        p.show_result(res, (480, 640), i, i == 29)
    p.pick(100.0, 100.0)  # the box details, with its keypoints
    return p


def _landmarks():
    from loupe.tasks.landmarks import Contour, LandmarksResult
    from loupe.ui.panels.landmarks import LandmarksPanel

    contours = (Contour("right lung", tuple(range(44))), Contour("left lung", tuple(range(44, 94))),
                Contour("heart", tuple(range(94, 120))), Contour("a contour with a long name", (0, 50), closed=False))
    p = LandmarksPanel(contours, np.array([[255, 99, 71], [65, 105, 225], [255, 215, 0], [250, 250, 250]], np.uint8),
                       "landmark model")
    t = np.linspace(0, 2 * np.pi, 120)
    pts = np.stack([320 + 200 * np.cos(t), 240 + 150 * np.sin(t)], 1).astype(np.float32)
    area = np.array([123456.0, 234567.0, 34567.0, np.nan])
    p.show_result(LandmarksResult(pts, None, contours, area, (480, 640), area * 0.43), (480, 640))
    return p


def _instances():
    from loupe.tasks.instances import InstancesResult
    from loupe.ui.panels.instances import InstancesPanel

    labels = ("person", "a class with a long name")
    p = InstancesPanel(labels, np.array([[200, 40, 40], [40, 40, 200]], np.uint8), "segment model")
    ids = np.zeros((480, 640), np.uint16)
    ids[50:300, 40:200] = 1
    ids[100:400, 300:600] = 2
    res = InstancesResult(boxes=np.array([[40, 50, 200, 300], [300, 100, 600, 400]], np.float32),
                          scores=np.array([0.9, 0.6], np.float32), classes=np.array([0, 1], np.int32), labels=labels,
                          frame_hw=(480, 640), counts=np.array([1, 1], np.int64), masks=ids,
                          mask_areas=np.array([40000, 90000], np.int64))
    for i in range(30):
        p.show_result(res, (480, 640), i, i == 29)
    p.pick(100.0, 100.0)  # the box details, with its mask area
    return p


BUILDERS = {"segmentation": _segmentation, "density": _density, "anomaly": _anomaly,
            "codebook": _codebook, "compression": _compression, "classification": _classification,
            "detection": _detection, "keypoints": _keypoints, "depth": _depth, "landmarks": _landmarks,
            "instances": _instances}


def test_every_built_in_panel_is_laid_out_here():
    have = {s.name for s in registry.all_specs() if s.builtin and s.has_panel}
    assert have <= set(BUILDERS), f"add a builder for {sorted(have - set(BUILDERS))}"


def _scrolls_to(w: QWidget) -> bool:
    """``w`` sits in a scroll area that can scroll sideways (so its full width can be seen)."""
    p = w.parentWidget()
    while p is not None:
        if isinstance(p, QAbstractScrollArea) and not isinstance(p, QTableWidget) and p.horizontalScrollBar().maximum() > 0:
            return True
        p = p.parentWidget()
    return False


def clipped(panel: QWidget) -> list[str]:
    """The visible controls of ``panel`` narrower than their minimum size hint (and columns cut)."""
    bad = []
    for w in panel.findChildren(QWidget):
        if not w.isVisibleTo(panel.window()) or _scrolls_to(w):
            continue
        if isinstance(w, (QAbstractButton, QLabel, QSlider, QComboBox)):
            need = w.minimumSizeHint().width()
            if isinstance(w, QSlider):
                need = max(need, 60)  # a slider squeezed to a square cannot be dragged
            if w.width() < need:
                bad.append(f"{type(w).__name__} {getattr(w, 'text', lambda: '')()!r}: {w.width()} < {need}")
        if isinstance(w, QTableWidget):
            head = w.horizontalHeader()
            for c in range(w.columnCount()):
                if w.isColumnHidden(c):
                    continue
                label = w.horizontalHeaderItem(c).text() if w.horizontalHeaderItem(c) else str(c)
                need = max(w.sizeHintForColumn(c), head.sectionSizeHint(c))
                if head.sectionSize(c) < need:
                    bad.append(f"column {label!r}: {head.sectionSize(c)} < {need}")
                if head.sectionViewportPosition(c) + head.sectionSize(c) > w.viewport().width() + 1 \
                        and w.horizontalScrollBar().maximum() == 0:
                    bad.append(f"column {label!r} runs past the table")
    return bad


@pytest.mark.parametrize("size", [(900, 600), (1600, 1000)])
def test_every_panel_fits_the_window(qtbot, win, size):
    win.resize(*size)
    panels = {name: BUILDERS[name]() for name in BUILDERS}
    for name, p in panels.items():
        win.panel_tabs.addTab(p, f"{name} model")
    qtbot.wait(50)
    tabs = win.panel_tabs
    # the tab bar holds every model's tab (no scroll arrows)
    assert not tabs.usesScrollButtons() and tabs.tabBar().sizeHint().width() >= 0
    assert tabs.tabBar().width() <= tabs.width()
    widths = {}
    for name, p in panels.items():
        tabs.setCurrentWidget(p)
        qtbot.wait(60)
        assert tabs.currentWidget() is p
        assert clipped(p) == [], f"{name} at {size[0]}x{size[1]}"
        # and none needs to be scrolled sideways (up and down is fine)
        assert tabs.scroll_area(p).horizontalScrollBar().maximum() == 0, f"{name} scrolls sideways"
        # the dock never takes the frame view's room
        assert win.panel_dock.width() <= MAX_SHARE * win.width() + 2
        assert win.view.width() >= (1 - MAX_SHARE) * win.width() - 40
        widths[name] = win.panel_dock.width()
    assert tabs.indexOf(panels["density"]) == 1 and tabs.widget(1) is panels["density"]
    tabs.removeTab(1)
    assert tabs.count() == len(panels) - 1 and tabs.indexOf(panels["density"]) == -1
    if size[0] >= 1600:  # room to spare: the dock goes back to a narrow panel's own width (with
        # two models loaded; a dozen tabs side by side need the dock's full width for the tab bar)
        for name, p in panels.items():
            if name not in ("segmentation", "compression") and tabs.indexOf(p) >= 0:
                tabs.removeTab(tabs.indexOf(p))
        for name in ("segmentation", "compression"):
            tabs.setCurrentWidget(panels[name])
            qtbot.wait(60)
            widths[name] = win.panel_dock.width()
        assert widths["segmentation"] < widths["compression"]


def test_the_check_sees_a_cut_button_and_a_cut_column(qtbot):
    from PySide6.QtWidgets import QHBoxLayout, QPushButton, QTableWidgetItem

    w = QWidget()
    lay = QHBoxLayout(w)
    b = QPushButton("Export CSV…")
    b.setFixedWidth(30)
    t = QTableWidget(1, 2)
    t.setHorizontalHeaderLabels(["class", "area %"])
    t.setItem(0, 0, QTableWidgetItem("a class with a long name"))
    t.setColumnWidth(0, 20)
    lay.addWidget(b)
    lay.addWidget(t)
    qtbot.addWidget(w)
    w.show()
    qtbot.wait(20)
    bad = clipped(w)
    assert any("Export CSV" in s for s in bad) and any("'class'" in s for s in bad), bad
