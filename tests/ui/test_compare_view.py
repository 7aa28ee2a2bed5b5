"""Model ▸ Compare two models in the window: two segmenters whose disagreement is known by
construction (A: the brightest channel; B: the same with red and green swapped) on a folder of
drawn frames, two detectors where B misses one box, the split over the frame, labels scoring both,
and what happens without a comparable pair or when a model goes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPointF, QRectF

from loupe.ui.compare_view import SIDE_KEY, SPLIT_KEY
from loupe.ui.panels.compare import A_RGB, B_RGB, MAP_ALPHA, ClipRect, pair_colour, pair_rgba
from tests.helpers import make_argmax_model, make_swapped_model, read_csv, run_panel_preview
from tests.ui.test_main_window import collect, load

H, W = 40, 64
BLUE, RED, GREEN = (0, 0, 255), (255, 0, 0), (0, 255, 0)
# frame i: a blue background (both say "blue") with red regions (A "red", B "green") and green
# ones (A "green", B "red"): (rows, cols, colour) per region
REGIONS = {
    0: [],
    1: [((10, 20), (0, 48), RED)],  # 480 px across the middle of the frame
    2: [((10, 30), (0, 48), RED), ((32, 36), (50, 60), GREEN)],  # 960 + 40 px
    3: [((0, 5), (0, 8), RED)],  # 40 px
}
DIFFER = {i: sum((r[1] - r[0]) * (c[1] - c[0]) for r, c, _ in regs) for i, regs in REGIONS.items()}
AGREE = {i: 1.0 - n / (H * W) for i, n in DIFFER.items()}


def drawn_frame(i: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = BLUE
    for (r0, r1), (c0, c1), colour in REGIONS[i]:
        img[r0:r1, c0:c1] = colour
    return img


@pytest.fixture
def frames(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in REGIONS:
        Image.fromarray(drawn_frame(i)).save(folder / f"f{i:03d}.png")
    return folder


@pytest.fixture
def seg_pair(qtbot, win, tmp_path, frames):
    """The window with A (argmax) and B (swapped) loaded and the drawn frames open, paused at 0."""
    load(qtbot, win, make_argmax_model(tmp_path / "argmax.onnx"))
    load(qtbot, win, make_swapped_model(tmp_path / "swapped.onnx"))
    shown = collect(win)
    win.open_source(str(frames), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=20000)
    return win, shown


def show(qtbot, win, shown, i: int) -> None:
    win.seek_to(i)
    qtbot.waitUntil(lambda: shown[-1].frame.index == i, timeout=20000)


def test_segmenters_agreement_map_worst_frames_and_seeks(qtbot, seg_pair):
    win, shown = seg_pair
    cmp = win.compare
    assert cmp.action.isEnabled() and not cmp.on and cmp.dock.isHidden()
    cmp.action.trigger()  # Model ▸ Compare two models
    assert cmp.on and cmp.action.isChecked() and not cmp.dock.isHidden()
    assert (cmp.a.name, cmp.b.name) == ("argmax", "swapped")
    for i in (1, 2, 3, 2):  # frame 2 shown twice counts once
        show(qtbot, win, shown, i)
    assert sorted(cmp.values) == [0, 1, 2, 3]
    # where they differ over the frames played, each once: (480 + 960 + 40) and 40 of 4 x 2560 pixels
    assert cmp.widget.differ.text() == "differ most: A red / B green 14.5% of pixels, A green / B red 0.4%"
    for i, v in AGREE.items():
        assert cmp.values[i] == pytest.approx(v)
    xs, ys = cmp.widget.curve.getData()
    assert xs.tolist() == [0, 1, 2, 3] and ys == pytest.approx([AGREE[i] for i in range(4)])
    # the disagreement map: opaque exactly where the classes differ, one colour per pair
    img = cmp.map_item.image
    assert cmp.map_item.isVisible() and img.shape == (H, W, 4)
    want = np.zeros((H, W), bool)
    for (r0, r1), (c0, c1), _c in REGIONS[2]:
        want[r0:r1, c0:c1] = True
    np.testing.assert_array_equal(img[..., 3] > 0, want)
    assert tuple(img[15, 5]) == (*pair_colour(0, 1, 3), MAP_ALPHA)  # A red, B green
    assert tuple(img[33, 55]) == (*pair_colour(1, 0, 3), MAP_ALPHA)  # A green, B red
    assert pair_colour(0, 1, 3) != pair_colour(1, 0, 3)
    legend = cmp.widget.legend.text()
    assert "A red / B green 37.5%" in legend and "A green / B red 1.6%" in legend
    assert legend.index("A red / B green") < legend.index("A green / B red")  # most pixels first
    assert "of pixels agree" in cmp.widget.frame_text.text()
    assert cmp.widget.mean.text().startswith(f"mean agreement {np.mean(list(AGREE.values())):.3f} over 4 frames")
    # the worst list: least agreement first; a click seeks there
    worst = [cmp.widget.worst.item(k).text() for k in range(cmp.widget.worst.count())]
    assert [w.split()[1] for w in worst] == ["3", "2", "4", "1"]  # frames 2, 1, 3, 0, numbered from 1
    cmp.widget.worst.itemClicked.emit(cmp.widget.worst.item(1))
    qtbot.waitUntil(lambda: shown[-1].frame.index == 1, timeout=20000)
    # a frame where they agree: nothing drawn
    show(qtbot, win, shown, 0)
    assert int((cmp.map_item.image[..., 3] > 0).sum()) == 0
    assert "agree on every pixel" in cmp.widget.legend.text()
    cmp.widget.map_box.setChecked(False)
    assert not cmp.map_item.isVisible()
    cmp.widget.map_box.setChecked(True)
    assert cmp.map_item.isVisible()
    # a click on the plot seeks too
    vb = cmp.widget.plot.getPlotItem().vb
    vb.setXRange(0, 3, padding=0)
    seeks = []
    cmp.widget.seekRequested.connect(seeks.append)

    class Click:
        def __init__(self, pos):
            self._pos = pos

        def button(self):
            from PySide6.QtCore import Qt

            return Qt.MouseButton.LeftButton

        def scenePos(self):
            return self._pos

    cmp.widget._on_plot_click(Click(vb.mapViewToScene(QPointF(2.2, 0.5))))
    assert seeks == [2]
    qtbot.waitUntil(lambda: shown[-1].frame.index == 2, timeout=20000)


def frame_pixel(win, x: float, y: float, image) -> tuple[int, int, int]:
    """The colour the frame view shows at frame point (x, y) in ``image`` (a grab of the view)."""
    scene = win.view.vb.mapViewToScene(QPointF(x, y))
    p = win.view.mapFromScene(scene)
    c = image.pixelColor(p.x(), p.y())
    return c.red(), c.green(), c.blue()


def test_the_split_clips_a_left_and_b_right_and_leaving_restores_the_items(qtbot, seg_pair, frames):
    win, shown = seg_pair
    cmp = win.compare
    vb = win.view.vb
    pa, pb = win.panels
    before = {id(it): (it.parentItem(), it.zValue()) for p in (pa, pb) for it, _ in p.frame_items()}
    added = list(vb.addedItems)
    win.settings.setValue(SPLIT_KEY, 0.25)
    assert cmp.set_on(True)
    show(qtbot, win, shown, 1)
    left, right = cmp.split.clips
    assert pa.overlay.parentItem() is left and pb.overlay.parentItem() is right
    assert left.rect().getRect() == (0, 0, 16, H) and right.rect().getRect() == (16, 0, W - 16, H)
    assert cmp.split.line.value() == pytest.approx(16) and "argmax" in cmp.split.line.label.format
    cmp.split.line.setValue(32)  # dragged to the middle
    cmp.split.line.sigPositionChangeFinished.emit(cmp.split.line)
    assert left.rect().getRect() == (0, 0, 32, H) and right.rect().getRect() == (32, 0, 32, H)
    assert float(win.settings.value(SPLIT_KEY)) == pytest.approx(0.5)
    # what the view shows in the red band: A's red overlay left of the line, B's green right of it
    cmp.widget.map_box.setChecked(False)
    win.view.fit()
    qtbot.wait(50)
    grab = win.view.grab().toImage()
    left_px, right_px = frame_pixel(win, 10, 15, grab), frame_pixel(win, 45, 15, grab)
    assert left_px[0] > 200 and left_px[1] < 40  # frame red, A's "red" over it
    assert right_px[1] > 90 and right_px[0] < 170  # B's "green" at half opacity over red
    # leaving compare: every item back under its own parent with its own z, nothing of ours left
    cmp.action.trigger()
    assert not cmp.on and cmp.dock.isHidden()
    assert {id(it): (it.parentItem(), it.zValue()) for p in (pa, pb) for it, _ in p.frame_items()} == before
    assert list(vb.addedItems) == added
    assert not any(isinstance(it, ClipRect) for it in win.view.scene().items())
    assert cmp.split.line.scene() is None
    # a new source restores them too (and the next frame clips them again)
    cmp.set_on(True)
    assert pa.overlay.parentItem() is left
    win.open_source(str(frames), playing=False)
    qtbot.waitUntil(lambda: not cmp.split.engaged, timeout=20000)
    assert pa.overlay.parentItem() is before[id(pa.overlay)][0]
    qtbot.waitUntil(lambda: cmp.split.engaged, timeout=20000)
    assert cmp.split.line.value() == pytest.approx(32) and cmp.values == {0: 1.0}


def test_side_by_side_shows_the_frame_twice_a_on_the_left_copy_b_on_the_right(qtbot, seg_pair):
    win, shown = seg_pair
    cmp = win.compare
    pa, pb = win.panels
    home = win.view.vb.childGroup
    assert cmp.set_on(True)
    show(qtbot, win, shown, 1)
    cmp.widget.map_box.setChecked(False)
    cmp.side_action.trigger()  # Model ▸ Compare side by side (S)
    assert cmp.side_by_side and win.settings.value(SIDE_KEY) == "true"
    tx = win.view.twin_x()
    assert tx == W + 4  # the gap: 2% of the width, at least 4 pixels
    twin = win.view.twin
    assert twin is not None and twin.pos().x() == tx
    np.testing.assert_array_equal(twin.image, win.view.image.image)
    left, right = cmp.split.clips
    assert pa.overlay.parentItem() is left and pb.overlay.parentItem() is right and right.pos().x() == tx
    assert left.rect().getRect() == right.rect().getRect() == (0, 0, W, H)
    assert cmp.split.line.scene() is None  # no line to drag
    assert [item.toPlainText() for item in cmp.split.name_items] == ["A  argmax", "B  swapped"]
    (x0, x1), _ = win.view.vb.viewRange()
    assert x0 <= 0.5 and x1 >= tx + W - 0.5  # both copies in view
    qtbot.wait(50)
    grab = win.view.grab().toImage()
    for x in (10, 45):  # the whole red band: A's "red" on the left copy, B's "green" on the right one
        a_px, b_px = frame_pixel(win, x, 15, grab), frame_pixel(win, tx + x, 15, grab)
        assert a_px[0] > 200 and a_px[1] < 40, (x, a_px)
        assert b_px[1] > 90 and b_px[0] < 170, (x, b_px)
    # the pointer over the right copy reads the same frame point
    points = []
    win.view.pointerMoved.connect(lambda x, y: points.append((x, y)))
    screen = win.view.mapFromScene(win.view.vb.mapViewToScene(QPointF(tx + 10.5, 15.5)))
    qtbot.mouseMove(win.view.viewport(), screen)
    qtbot.waitUntil(lambda: bool(points), timeout=5000)
    assert points[-1][0] == pytest.approx(10.5, abs=1.0) and points[-1][1] == pytest.approx(15.5, abs=1.0)
    # the next frame: the copy follows
    show(qtbot, win, shown, 2)
    np.testing.assert_array_equal(win.view.twin.image, win.view.image.image)
    # swapping A and B keeps the zoom (and the second copy)
    win.view.vb.setRange(QRectF(20, 5, 40, 20), padding=0)
    zoomed = win.view.vb.viewRange()
    cmp.widget.swap_button.click()
    assert (cmp.a.name, cmp.b.name) == ("swapped", "argmax") and win.view.twin is twin
    assert win.view.vb.viewRange() == zoomed
    assert pb.overlay.parentItem() is cmp.split.clips[0] and pa.overlay.parentItem() is cmp.split.clips[1]
    cmp.widget.swap_button.click()
    # the disagreement over both copies
    cmp.widget.map_box.setChecked(True)
    twin_map = cmp.twin_disagreement.map_item
    assert twin_map.isVisible() and twin_map.pos().x() == tx
    np.testing.assert_array_equal(twin_map.image, cmp.map_item.image)
    # off: one frame and the split again
    cmp.side_action.trigger()
    assert win.view.twin is None and cmp.split.line.scene() is not None and right.pos().x() == 0
    assert not twin_map.isVisible() and pb.overlay.parentItem() is right
    # leaving compare while side by side: the copy goes, the items come home
    cmp.side_action.trigger()
    assert win.view.twin is not None
    cmp.action.trigger()
    assert win.view.twin is None and pa.overlay.parentItem() is home and pb.overlay.parentItem() is home
    assert all(item.scene() is None for item in cmp.split.name_items)
    assert cmp.side_by_side  # the choice is kept for the next time


def test_removing_a_compared_model_leaves_compare_cleanly(qtbot, seg_pair):
    win, shown = seg_pair
    cmp = win.compare
    cmp.set_on(True)
    pa = win.panels[0]
    home = win.view.vb.childGroup
    assert pa.overlay.parentItem() is cmp.split.clips[0]
    win.remove_model(1)
    assert not cmp.on and not cmp.action.isChecked() and cmp.dock.isHidden()
    assert pa.overlay.parentItem() is home and cmp.split.clips[0].scene() is None
    assert not cmp.action.isEnabled()  # one model left
    assert "Compare off" in win.statusBar().currentMessage()
    win.step()  # the window plays on with the one model
    qtbot.waitUntil(lambda: shown[-1].frame.index == 1, timeout=20000)
    assert cmp.values == {}


def test_the_dock_picks_the_pair_and_swaps_a_and_b(qtbot, seg_pair, tmp_path):
    win, shown = seg_pair
    cmp = win.compare
    load(qtbot, win, make_argmax_model(tmp_path / "third.onnx"))  # a third segmenter
    home = win.view.vb.childGroup
    pa, pb, pc = win.panels
    assert cmp.set_on(True)
    show(qtbot, win, shown, 1)
    combo_a, combo_b = cmp.widget.combo_a, cmp.widget.combo_b
    assert [combo_a.itemText(k) for k in range(combo_a.count())] == ["1. argmax", "2. swapped", "3. third"]
    assert (combo_a.currentIndex(), combo_b.currentIndex()) == (0, 1)
    assert "3 segmentation models loaded: comparing the first two" in cmp.widget.title.text()
    # swap: B's overlay left of the line, A's right of it; the values start again (from the frame shown)
    cmp.widget.swap_button.click()
    assert (cmp.a.name, cmp.b.name) == ("swapped", "argmax") and cmp.values == {1: pytest.approx(AGREE[1])}
    assert (combo_a.currentIndex(), combo_b.currentIndex()) == (1, 0)
    left, right = cmp.split.clips
    assert pb.overlay.parentItem() is left and pa.overlay.parentItem() is right
    assert "first two" not in cmp.widget.title.text() and "A swapped · B argmax" in cmp.widget.title.text()
    # pick the third as A: the argmax model's overlay goes back home, the third's is clipped
    combo_a.setCurrentIndex(2)
    combo_a.activated.emit(2)
    assert (cmp.a.name, cmp.b.name) == ("third", "argmax")
    show(qtbot, win, shown, 2)
    left, right = cmp.split.clips
    assert pc.overlay.parentItem() is left and pa.overlay.parentItem() is right
    assert pb.overlay.parentItem() is home
    assert cmp.values == {1: 1.0, 2: 1.0}  # the third is the argmax model again: they agree everywhere
    combo_b.setCurrentIndex(1)
    combo_b.activated.emit(1)
    show(qtbot, win, shown, 1)
    assert (cmp.a.name, cmp.b.name) == ("third", "swapped") and cmp.values[1] == pytest.approx(AGREE[1])
    # one model as both: refused, the pair kept
    combo_b.setCurrentIndex(2)
    combo_b.activated.emit(2)
    assert (cmp.a.name, cmp.b.name) == ("third", "swapped") and combo_b.currentIndex() == 1
    assert "two different models" in win.statusBar().currentMessage()
    # the choice holds off and on, and goes when one of its models goes
    cmp.action.trigger()
    cmp.action.trigger()
    assert (cmp.a.name, cmp.b.name) == ("third", "swapped")
    win.remove_model(2)
    assert cmp.on and (cmp.a.name, cmp.b.name) == ("argmax", "swapped") and combo_a.count() == 2


def test_without_a_comparable_pair_an_info_banner_says_what_is_needed(qtbot, win, tmp_path):
    from tests.detection_models import FORMATS, make_constant_model

    load(qtbot, win, make_argmax_model(tmp_path / "argmax.onnx"))
    outputs, output = FORMATS["end2end"]
    load(qtbot, win, make_constant_model(tmp_path / "det.onnx", outputs, output))
    errors = []
    win.errorShown.connect(errors.append)
    cmp = win.compare
    assert cmp.action.isEnabled()  # two models: the item is there, and tells why it cannot
    cmp.action.trigger()
    assert not cmp.on and not cmp.action.isChecked() and cmp.dock.isHidden()
    text = win.banner.label.text()
    assert win.banner.isVisible() and "Compare needs two loaded models of the same task" in text
    assert "argmax (segmentation)" in text and "det (detection)" in text
    assert errors == []  # an info, not an error


def test_detectors_one_box_only_a_found(qtbot, win, tmp_path):
    from loupe.base.media import clip_path
    from tests.detection_models import (
        DETECTIONS,
        end2end_output,
        expected_on_frame,
        make_constant_model,
    )

    out = {"format": "end2end"}
    load(qtbot, win, make_constant_model(tmp_path / "all.onnx", {"output0": end2end_output()}, out))
    load(qtbot, win, make_constant_model(tmp_path / "missing.onnx", {"output0": end2end_output(DETECTIONS[1:])}, out))
    load(qtbot, win, make_constant_model(tmp_path / "third.onnx", {"output0": end2end_output()}, out))
    shown = collect(win)
    win.open_source(str(clip_path("carphone_pristine.mp4")), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=20000)
    cmp = win.compare
    assert cmp.set_on(True)
    assert (cmp.a.name, cmp.b.name) == ("all", "missing")
    assert "3 detection models loaded: comparing the first two" in cmp.widget.title.text()
    hw = shown[-1].frame.pixels.shape[:2]
    want = expected_on_frame(hw)
    ag = cmp.last
    assert ag.kind == "boxes" and ag.matched == len(want) - 1 and len(ag.only_b) == 0
    item = cmp.boxes_item
    assert item.isVisible() and not cmp.map_item.isVisible()
    assert len(item.pred) == 1 and len(item.gt) == 0  # one A-only box drawn, no B-only box
    np.testing.assert_allclose(item.pred[0], want[0][0], atol=1e-3)  # the box B misses: DETECTIONS[0]
    assert cmp.values[0] == pytest.approx(2 * (len(want) - 1) / (2 * len(want) - 1))
    assert "only A (all): 1" in cmp.widget.legend.text()
    # the A-only box is drawn in A's colour over the frame
    win.view.vb.setRange(xRange=(0, hw[1]), yRange=(0, hw[0]), padding=0)
    qtbot.wait(50)
    grab = win.view.grab().toImage()
    x1, y1, x2, _y2 = want[0][0]
    edge = [frame_pixel(win, x1 + (x2 - x1) * t, y1, grab) for t in np.linspace(0.05, 0.95, 25)]
    assert any(abs(r - A_RGB[0]) < 40 and abs(g - A_RGB[1]) < 40 and b < 80 for r, g, b in edge)
    assert B_RGB != A_RGB


def test_with_labels_both_models_are_scored_and_the_strip_shows_the_better(qtbot, seg_pair, tmp_path):
    win, shown = seg_pair
    labels = tmp_path / "masks"
    labels.mkdir()
    for i in REGIONS:  # the labels are A's maps: A is right everywhere, B wrong where they differ
        Image.fromarray(drawn_frame(i).argmax(axis=2).astype(np.uint8), mode="L").save(labels / f"f{i:03d}.png")
    assert win.ground_truth.open(str(labels))
    cmp = win.compare
    cmp.set_on(True)
    assert win.tabifiedDockWidgets(cmp.dock) == [win.ground_truth.dock]  # one row of docks, compare on top
    for i in (1, 2, 3):
        show(qtbot, win, shown, i)
    sa, sb = cmp.scores
    assert sorted(sa) == sorted(sb) == [0, 1, 2, 3]
    assert all(sa[i] == pytest.approx(1.0) for i in sa)
    assert sb[0] == pytest.approx(sa[0]) and all(sb[i] < 1.0 for i in (1, 2, 3))
    xa, ya = cmp.widget.curve_a.getData()
    xb, yb = cmp.widget.curve_b.getData()
    assert xa.tolist() == xb.tolist() == [0, 1, 2, 3]
    assert ya == pytest.approx([1.0] * 4) and yb == pytest.approx([sb[i] for i in range(4)])
    winners = dict(cmp.widget.winners())
    assert winners[1] == winners[2] == winners[3] == A_RGB and winners[0] != A_RGB  # frame 0: a tie
    pooled = cmp.widget.pooled.text()
    assert "A argmax, 4 frames" in pooled and "B swapped, 4 frames" in pooled and "miou" in pooled
    show(qtbot, win, shown, 2)  # seen again: the pooled figures still count 4 frames
    assert cmp.scorers[0].frames == 4 and cmp.scorers[1].frames == 4
    assert "B score" in cmp.widget.frame_text.text()


def test_pair_rgba_is_one_lookup():
    pm = np.array([[-1, 0], [1, -1]], np.int32)
    out = pair_rgba(pm, ((2, 3, 1), (3, 2, 1)), 4)
    assert out[0, 0, 3] == 0 and out[1, 1, 3] == 0
    assert tuple(out[0, 1]) == (*pair_colour(2, 3, 4), MAP_ALPHA) and tuple(out[1, 0]) == (*pair_colour(3, 2, 4), MAP_ALPHA)
    # the pairs of a few classes all get colours apart from each other
    colours = np.array([pair_colour(a, b, 5) for a in range(5) for b in range(5) if a != b], float)
    gaps = np.linalg.norm(colours[:, None] - colours[None], axis=2) + np.eye(len(colours)) * 1e9
    assert len({tuple(c) for c in colours}) == 20 and gaps.min() > 20


def test_the_compare_preview_runs():
    run_panel_preview("compare")


def test_analyse_to_file_while_comparing_writes_the_agreement(qtbot, seg_pair, tmp_path):
    """File ▸ Analyse to file with Compare on: every frame's agreement of the compared pair on
    both models' rows (as ``loupe analyze --compare``), and the banner gives the mean."""
    win, _shown = seg_pair
    win.compare.action.trigger()
    assert win.compare.on
    out = tmp_path / "rows.csv"
    job = win.analyze_to(str(out))
    with qtbot.waitSignal(job.done, timeout=60000):
        pass
    rows = read_csv(out)
    assert len(rows) == 2 * len(REGIONS)
    for i, v in AGREE.items():
        got = [float(r["agreement"]) for r in rows if int(r["frame"]) == i]
        assert got == [pytest.approx(v, abs=1e-6)] * 2, i
    assert [r["model"] for r in rows[:2]] == ["argmax", "swapped"]
    mean = np.mean(list(AGREE.values()))
    assert f"agreement {mean:.3f} (mean), lowest {min(AGREE.values()):.3f} at frame 3" in win.banner.label.text()
    # Compare off: no agreement column
    win.compare.action.trigger()
    out2 = tmp_path / "rows2.csv"
    job = win.analyze_to(str(out2))
    with qtbot.waitSignal(job.done, timeout=60000):
        pass
    assert "agreement" not in out2.read_text(encoding="utf-8").splitlines()[0].split(",")
