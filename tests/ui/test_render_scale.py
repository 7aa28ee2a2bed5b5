"""Renders of frames larger than a 1080p screen draw outlines, dots, tags and the caption larger,
so that they keep their size relative to the frame: a 4K render shrunk to 1080p looks like the
1080p render (before, a 4K render's 2-pixel outlines became 1-pixel half-tone lines and its tags
a quarter of their area once the video was watched on an ordinary screen)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from loupe.base.media import clip_path
from loupe.cli import main
from loupe.resources import resource_path
from loupe.tasks.landmarks import Contour
from loupe.ui.panels.boxes_item import BoxesItem
from loupe.ui.panels.compare import OnlyBoxesItem
from loupe.ui.panels.keypoints import KeypointsItem
from loupe.ui.panels.landmarks import ContoursItem
from loupe.ui.render_view import caption_height, overlay_scale
from tests.helpers import decode, draw_item

PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 128, 255]], np.uint8)


def boxes(k: int) -> BoxesItem:
    item = BoxesItem(PALETTE, ("person", "car"))
    item.set_boxes(np.array([[100, 100, 400, 300], [600, 200, 900, 700], [1200, 500, 1500, 560]]) * k,
                   np.array([0.9, 0.8, 0.7]), np.array([0, 1, 0]), (1080 * k, 1920 * k))
    return item


def keypoints(k: int) -> KeypointsItem:
    item = KeypointsItem(PALETTE, 3)
    kp = np.array([[[300, 200, 1], [500, 600, 1], [800, 300, 1]]], np.float32)
    kp[..., :2] *= k
    item.set_keypoints(kp, np.array([0]), ((0, 1), (1, 2)), (1080 * k, 1920 * k))
    return item


def contours(k: int) -> ContoursItem:
    item = ContoursItem((Contour("box", (0, 1, 2, 3)),), PALETTE)
    item.set_points(np.array([[200, 200], [800, 200], [800, 700], [200, 700]], np.float32) * k, (1080 * k, 1920 * k))
    return item


def only_boxes(k: int) -> OnlyBoxesItem:
    item = OnlyBoxesItem()
    item.set_only((1080 * k, 1920 * k), np.array([[100, 100, 400, 300]]) * k, np.array([[900, 400, 1300, 800]]) * k)
    return item


def shrunk_difference(small: np.ndarray, big: np.ndarray) -> float:
    """Mean absolute difference, where ``small`` draws, between ``small`` and ``big`` shrunk to its size."""
    shrunk = cv2.resize(big, small.shape[1::-1], interpolation=cv2.INTER_AREA)
    drawn = small.max(axis=-1) > 30
    assert drawn.sum() > 500
    return float(np.abs(shrunk.astype(int) - small)[drawn].mean())


def test_overlay_scale_is_the_shrink_that_fits_a_1080p_screen():
    assert overlay_scale(640, 272) == overlay_scale(1920, 1080) == 1.0
    assert overlay_scale(3840, 2160) == 2.0
    assert overlay_scale(4096, 2160) == pytest.approx(4096 / 1920)
    assert overlay_scale(1080, 1920) == pytest.approx(1920 / 1080)  # portrait: its height decides


@pytest.mark.parametrize("make", [boxes, keypoints, contours, only_boxes])
def test_a_4k_drawing_shrunk_to_1080p_is_the_1080p_drawing(qtbot, make):
    small = draw_item(make(1), 1920, 1080)
    big = make(2)
    unscaled = shrunk_difference(small, draw_item(big, 3840, 2160))
    big.set_screen_scale(overlay_scale(3840, 2160))
    scaled = shrunk_difference(small, draw_item(big, 3840, 2160))
    assert scaled < 4.0, (make.__name__, scaled)
    assert unscaled > 4 * scaled + 8, (make.__name__, unscaled, scaled)  # at scale 1 they look different


def test_a_screen_scale_must_be_positive(qtbot):
    with pytest.raises(ValueError, match="positive"):
        boxes(1).set_screen_scale(0)


def test_loupe_render_of_a_4k_frame_looks_like_its_1080p_render(tmp_path):
    """The demo detector's boxes and tags and the caption strip, on the same scene at 1920 x 816
    and 3840 x 1632: the bigger video, shrunk by 2, matches the smaller one where it draws."""
    from PIL import Image

    from loupe.sources.open import open_source
    from loupe_models.demos.detect import frame_scene

    with open_source(str(clip_path("bikes.mp4"))) as src:
        first = next(iter(src))
    scene = frame_scene(first.pixels, np.random.default_rng(11), count=4).image
    model = str(resource_path("demo_detection.onnx"))
    videos = {}
    for k in (3, 6):
        folder = tmp_path / f"x{k}"
        folder.mkdir()
        big = cv2.resize(scene, (scene.shape[1] * k, scene.shape[0] * k), interpolation=cv2.INTER_NEAREST)
        Image.fromarray(big).save(folder / "scene.png")
        out = tmp_path / f"x{k}.mp4"
        assert main(["render", str(folder), "--model", model, "--out", str(out), "--quiet"]) == 0
        frames, _, size = decode(out)
        assert size == (scene.shape[1] * k, scene.shape[0] * k)
        videos[k] = (frames[0], big)
    (small, bare_small), (large, bare_large) = videos[3], videos[6]
    h = small.shape[0]
    # the caption covers the same share of both frames
    assert abs(2 * caption_height(h, 1) - caption_height(2 * h, 1)) <= 2
    size = small.shape[1::-1]
    shrunk = cv2.resize(large, size, interpolation=cv2.INTER_AREA).astype(int)
    strip = caption_height(h, 1)
    # where each draws (outside the caption): the outlines and tags, as wide and as large
    drawn_small = np.abs(small.astype(int) - bare_small).max(axis=-1) > 40
    drawn_large = np.abs(shrunk - cv2.resize(bare_large, size, interpolation=cv2.INTER_AREA)).max(axis=-1) > 40
    drawn_small[h - strip:] = drawn_large[h - strip:] = False
    assert drawn_small.sum() > 2000, drawn_small.sum()
    near = np.ones((3, 3), np.uint8)  # the detector's boxes on the two sizes may differ by a pixel
    covered = float(cv2.dilate(drawn_large.astype(np.uint8), near)[drawn_small].mean())
    assert covered > 0.9, covered  # drawn at 4K's scale 1, a third of it is missing (0.69)
    ratio = drawn_large.sum() / drawn_small.sum()
    assert 0.8 < ratio < 1.5, ratio
    # and the caption strip is there, as tall a share of the frame
    assert abs(float(shrunk[h - strip:].mean()) - float(small[h - strip:].mean())) < 6.0
