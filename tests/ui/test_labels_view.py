"""Ground truth in the window: labels recognised on drop, errors coloured by construction, and a
mask folder for the first frames of bikes.mp4 scored live (plot, worst frames, pooled mIoU, seeks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from loupe.base.media import clip_path
from loupe.ui.labels_view import looks_like_labels
from loupe.ui.panels.ground_truth import (
    FN_RGBA,
    FP_RGBA,
    SWAP_RGBA,
    error_rgba,
    figure_text,
    match_boxes,
    outline_rgba,
)
from tests.ui.test_main_window import collect, drop

FRAMES = 5
HURT = 2  # the frame whose label is made wrong on purpose


def test_label_files_and_folders_are_recognised(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((4, 6), np.uint8), mode="L").save(masks / "000000.png")
    colour = tmp_path / "frames"
    colour.mkdir()
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(colour / "000000.png")
    yolo = tmp_path / "yolo"
    yolo.mkdir()
    (yolo / "classes.txt").write_text("car\n")
    (yolo / "frame_0001.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    coco = tmp_path / "instances.json"
    coco.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    other = tmp_path / "card.json"
    other.write_text(json.dumps({"loupe": {"task": "segmentation"}}))
    per_input = tmp_path / "per_input"
    (per_input / "bikes").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(per_input / "bikes" / "0.png")
    assert looks_like_labels(masks) and looks_like_labels(yolo) and looks_like_labels(coco)
    assert looks_like_labels(per_input)
    assert not looks_like_labels(colour) and not looks_like_labels(other)
    assert not looks_like_labels(clip_path("bikes.mp4"))


def test_error_pixels_by_construction():
    truth = np.array([[0, 0, 1, 1], [0, 2, 2, -1]], np.int32)
    pred = np.array([[0, 1, 0, 1], [2, 2, 1, 0]], np.uint8)
    out = error_rgba(pred, truth, background=0)
    assert out[0, 0, 3] == 0 and out[0, 3, 3] == 0 and out[1, 1, 3] == 0  # right
    assert tuple(out[0, 1]) == FP_RGBA and tuple(out[1, 0]) == FP_RGBA  # background labelled, class predicted
    assert tuple(out[0, 2]) == FN_RGBA  # class labelled, background predicted
    assert tuple(out[1, 2]) == SWAP_RGBA  # 2 labelled, 1 predicted
    assert out[1, 3, 3] == 0  # ignored
    one = error_rgba(pred, truth, background=0, focus=1)  # class 1's own errors
    assert tuple(one[0, 1]) == FP_RGBA and tuple(one[1, 2]) == FP_RGBA and tuple(one[0, 2]) == FN_RGBA
    assert one[1, 0, 3] == 0  # 2 predicted on background: not class 1's error
    no_bg = error_rgba(pred, truth, background=None)
    assert int((no_bg[..., 3] > 0).sum()) == 4 and tuple(no_bg[0, 1]) == SWAP_RGBA


def test_outline_is_the_boundary_of_labelled_regions():
    truth = np.zeros((8, 8), np.int32)
    truth[2:6, 2:6] = 1
    out = outline_rgba(truth, np.array([[0, 0, 0], [10, 20, 30]], np.uint8), background=0)
    assert out[2, 2].tolist() == [10, 20, 30, 255] and out[3, 3, 3] == 0 and out[0, 0, 3] == 0
    assert int((out[..., 3] > 0).sum()) == 12  # the 4x4 square's ring


def test_boxes_match_greedily_by_score_within_a_class():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], np.float32)
    gt_cls = np.array([0, 0, 1])
    pred = np.array([[1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60], [80, 80, 90, 90]], np.float32)
    scores = np.array([0.6, 0.9, 0.8, 0.7], np.float32)
    classes = np.array([0, 0, 0, 0])
    pm, gm = match_boxes(pred, scores, classes, gt, gt_cls)
    assert pm.tolist() == [False, True, False, False]  # the best box takes the label; 1 vs 0: wrong class
    assert gm.tolist() == [True, False, False]


def test_figures_text_puts_the_headline_first():
    text = figure_text({"frames": 3, "iou_car": 0.5, "miou": None, "confusion": {"labels": []}, "tp": 4})
    assert text.splitlines() == ["miou  —", "iou_car  0.500", "tp  4"]


@pytest.fixture
def seg_window(qtbot, win):
    from loupe.resources import demo_models

    model = next(p for p in demo_models() if p.stem == "demo_segmentation")
    with qtbot.waitSignal(win.modelLoaded, timeout=30000):
        win.add_model(str(model))
    return win


def test_a_mask_folder_scores_the_frames_played(qtbot, seg_window, tmp_path):
    win = seg_window
    shown = collect(win)
    win.open_source(str(clip_path("bikes.mp4")), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=20000)
    maps = {}
    for i in range(FRAMES):  # the model's own maps are the labels: perfect, except one frame
        if i:
            win.step()
            qtbot.waitUntil(lambda i=i: shown[-1].frame.index == i, timeout=20000)
        maps[i] = shown[-1].results[0].result.class_map.copy()
    labels = tmp_path / "masks"
    labels.mkdir()
    for i, m in maps.items():
        if i == HURT:
            m = m.copy()
            m[:, : m.shape[1] // 2] = (m[:, : m.shape[1] // 2] + 1) % 5  # the left half all wrong
        Image.fromarray(m, mode="L").save(labels / f"{i:06d}.png")
    gt = win.ground_truth
    assert gt.dock.isHidden()
    drop(win, [labels])  # recognised as labels, not opened as an image folder
    assert gt.labels is not None and not gt.dock.isHidden() and win.source_spec.endswith("bikes.mp4")
    qtbot.waitUntil(lambda: FRAMES - 1 in gt.scores, timeout=20000)  # the paused frame, run again
    win.seek_to(0)
    qtbot.waitUntil(lambda: shown[-1].frame.index == 0, timeout=20000)
    for i in range(1, FRAMES + 1):
        win.step()
        qtbot.waitUntil(lambda i=i: shown[-1].frame.index == i, timeout=20000)
    assert sorted(gt.scores) == list(range(FRAMES))
    assert gt.scores[0] == pytest.approx(1.0) and gt.scores[HURT] < 0.7
    assert FRAMES not in gt.scores  # no label: unlabelled, not scored
    assert "no label" in gt.widget.frame_text.text()
    xs, ys = gt.widget.curve.getData()
    assert xs.tolist() == list(range(FRAMES)) and ys[HURT] == pytest.approx(gt.scores[HURT])
    worst = gt.widget.worst.item(0)
    assert worst.text().startswith(f"frame {HURT + 1} ")
    pooled = gt.scorer.summary()
    assert gt.scorer.frames == FRAMES  # each frame counted once, though frame 4 was shown twice
    assert 0 < pooled["miou"] < 1 and "miou" in gt.widget.pooled.text()
    # the errors drawn for the hurt frame; none for a perfect one
    gt.widget.worst.itemClicked.emit(worst)
    qtbot.waitUntil(lambda: shown[-1].frame.index == HURT, timeout=20000)
    assert gt.errors.isVisible() and int((gt.errors.image[..., 3] > 0).sum()) > 0
    assert gt.errors.image.shape[:2] == maps[0].shape
    win.seek_to(1)
    qtbot.waitUntil(lambda: shown[-1].frame.index == 1, timeout=20000)
    assert int((gt.errors.image[..., 3] > 0).sum()) == 0 and gt.outline.isVisible()
    gt.widget.show_box.setChecked(False)
    assert not gt.errors.isVisible() and not gt.outline.isVisible()
    assert gt.scorer.frames == FRAMES


def test_a_click_on_the_plot_seeks(qtbot, seg_window, tmp_path):
    win = seg_window
    shown = collect(win)
    win.open_source(str(clip_path("bikes.mp4")), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=20000)
    labels = tmp_path / "masks"
    labels.mkdir()
    Image.fromarray(np.zeros((272, 640), np.uint8), mode="L").save(labels / "0.png")
    assert win.ground_truth.open(str(labels))
    plot = win.ground_truth.widget.plot
    vb = plot.getPlotItem().vb
    vb.setXRange(0, 20, padding=0)
    seeks = []
    win.ground_truth.widget.seekRequested.connect(seeks.append)

    class Click:
        def __init__(self, pos):
            self._pos = pos

        def scenePos(self):
            return self._pos

    win.ground_truth.widget._on_plot_click(Click(vb.mapViewToScene(pg_point(12.2, 0.5))))
    assert seeks == [12]
    qtbot.waitUntil(lambda: shown[-1].frame.index == 12, timeout=20000)


def pg_point(x, y):
    from PySide6.QtCore import QPointF

    return QPointF(x, y)


def test_labels_that_cannot_be_read_go_to_the_banner(qtbot, win, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    errors = []
    win.errorShown.connect(errors.append)
    assert not win.ground_truth.open(str(bad))
    assert errors and "bad.json" in errors[0] and win.ground_truth.labels is None


def iter_frames(path, start: int):
    import cv2

    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    ok, bgr = cap.read()
    cap.release()
    assert ok
    yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("fmt", ["yolo", "coco"])
def test_boxes_colour_matched_false_and_missed(qtbot, win, tmp_path, fmt):
    """The demo detector's own boxes as YOLO or COCO labels (dropped on the window), less one (a
    false positive) plus one far from any box (missed): one item shows them, and the scorer's row
    agrees."""
    from loupe.resources import demo_models

    model = next(p for p in demo_models() if p.stem == "demo_detection")
    with qtbot.waitSignal(win.modelLoaded, timeout=30000):
        win.add_model(str(model))
    from loupe_models.demos.detect import frame_scene

    bg = next(iter_frames(clip_path("bikes.mp4"), 10))
    scene = frame_scene(bg, np.random.default_rng(3), count=4)
    Image.fromarray(scene.image).save(tmp_path / "scene.png")
    shown = collect(win)
    win.open_source(str(tmp_path / "scene.png"), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=20000)
    res, frame = shown[-1].results[0].result, shown[-1].frame
    assert len(res.boxes) >= 2, "the demo detector should find the scene's objects"
    h, w = frame.pixels.shape[:2]
    far = np.array([0.0, 0.0, 4.0, 4.0])  # a tiny labelled box in a corner: missed
    assert (res.boxes[:, 0] > 8).all() or (res.boxes[:, 1] > 8).all()
    kept = [*zip(res.boxes[1:].tolist(), res.classes[1:].tolist()), (far.tolist(), 0)]  # the first box left out
    if fmt == "yolo":
        path = tmp_path / "yolo"
        path.mkdir()
        (path / "classes.txt").write_text("\n".join(res.labels) + "\n")
        rows = [f"{c} {(b[0] + b[2]) / 2 / w:.6f} {(b[1] + b[3]) / 2 / h:.6f} {(b[2] - b[0]) / w:.6f} "
                f"{(b[3] - b[1]) / h:.6f}" for b, c in kept]
        (path / "scene.txt").write_text("\n".join(rows) + "\n")
    else:
        path = tmp_path / "instances.json"
        cats = [{"id": 10 + 3 * k, "name": name} for k, name in enumerate(res.labels)]  # ids with gaps
        anns = [{"id": n + 1, "image_id": 7, "category_id": 10 + 3 * c, "iscrowd": 0,
                 "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])}
                for n, (b, c) in enumerate(kept)]
        path.write_text(json.dumps({"images": [{"id": 7, "file_name": "frames/scene.png", "width": w, "height": h}],
                                    "annotations": anns, "categories": cats}))
    gt = win.ground_truth
    drop(win, [path])
    assert gt.labels is not None and gt.path == str(path)
    qtbot.waitUntil(lambda: frame.index in gt.scores, timeout=20000)
    item = gt.boxes
    assert item.isVisible()
    assert item.pred_ok.tolist() == [False] + [True] * (len(res.boxes) - 1)
    assert item.gt_ok.tolist() == [True] * (len(res.boxes) - 1) + [False]
    np.testing.assert_allclose(item.gt[-1], far, atol=0.05)
    row = gt.rows[frame.index]
    assert (row["tp"], row["fp"], row["fn"]) == (len(res.boxes) - 1, 1, 1)
    assert "matched" in gt.widget.legend.text() and gt.widget.focus.isHidden()


def test_file_menu_offers_open_labels_and_a_label_of_the_wrong_size_is_told_once(qtbot, seg_window, tmp_path):
    win = seg_window
    file_menu = win.menuBar().actions()[0].menu()
    assert "Open &labels…" in [a.text() for a in file_menu.actions()]
    shown = collect(win)
    win.open_source(str(clip_path("bikes.mp4")), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=20000)
    labels = tmp_path / "masks"
    labels.mkdir()
    for i in range(3):  # square masks for a 640x272 clip: refused, not stretched
        Image.fromarray(np.zeros((100, 100), np.uint8), mode="L").save(labels / f"{i}.png")
    errors = []
    win.errorShown.connect(errors.append)
    assert win.ground_truth.open(str(labels))
    qtbot.waitUntil(lambda: bool(errors), timeout=20000)
    for i in (1, 2):
        win.step()
        qtbot.waitUntil(lambda i=i: shown[-1].frame.index == i, timeout=20000)
    assert len(errors) == 1 and "Cannot score frame 1" in errors[0]
    assert "not scored" in win.ground_truth.widget.frame_text.text() and not win.ground_truth.scores


def test_a_folder_is_told_apart_by_png_headers_alone(tmp_path):
    """Grey and palette PNGs are labels, colour ones an image folder; a 60000 x 60000 header (a
    decompression bomb) or a truncated file is read as 26 bytes, never decoded, and is no label."""
    import struct
    import zlib

    import cv2

    def folder(name: str, data: bytes) -> str:
        d = tmp_path / name
        d.mkdir()
        (d / "0.png").write_bytes(data)
        return str(d)

    ok, grey = cv2.imencode(".png", np.zeros((4, 4), np.uint8))
    ok2, colour = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    assert ok and ok2
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    assert looks_like_labels(folder("grey", grey.tobytes()))
    assert not looks_like_labels(folder("colour", colour.tobytes()))
    assert not looks_like_labels(folder("bomb", bomb))
    assert not looks_like_labels(folder("cut", grey.tobytes()[:20]))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.png").write_bytes(grey.tobytes())
    (mixed / "b.png").write_bytes(colour.tobytes())
    assert not looks_like_labels(str(mixed))  # a colour image among them: images, not masks
