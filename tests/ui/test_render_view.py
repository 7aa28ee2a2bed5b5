"""``loupe render`` draws what the window draws: the window plays N frames with a model, each shown
frame's view is rasterised at the frame's size, and the rendered video's frames match them frame by
frame within H.264's loss, outside the caption strip (which the window does not have).

"Within H.264's loss": the window's image is first taken through the video's own pixel format
(RGB -> yuv420p -> RGB, as PyAV converts both ways), so the 4:2:0 chroma of a thin coloured box
outline is not counted; what is left is the encoder's quantisation at CRF 18, held to the tolerance
below. Where the window draws, the video differs from the bare frame far more than that (checked too)."""

from __future__ import annotations

import numpy as np
import pytest

from loupe.base.media import clip_path
from loupe.cli import main
from loupe.resources import resource_path
from loupe.ui.main_window import MainWindow
from loupe.ui.render_view import OverlayRenderer, caption_height, rasterise
from tests.helpers import decode

#: H.264 at CRF 18 against the window's own drawing, over the frame area: the stated tolerance
MAX_MEAN_ABS = 2.5  # grey levels, mean over the pixels and channels of a frame
MIN_PSNR_DB = 35.0
#: a pixel the overlay changes by more than this (any channel) is "where the model draws"
DRAWN = 30


def as_yuv420(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` after the video's pixel format: to yuv420p (even sizes) and back, as PyAV does."""
    import av

    from loupe.run.render import pad_even

    h, w = rgb.shape[:2]
    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(pad_even(rgb)), format="rgb24").reformat(format="yuv420p")
    return vf.to_ndarray(format="rgb24")[:h, :w]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def window_frames(qtbot, model: str, source: str, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Play ``source`` in a lockstep window with ``model``; for each of its first ``n`` frames:
    (the raw frame, the window's view rasterised at the frame's size), taken when it was shown."""
    win = MainWindow(ask_task=False, lockstep=True)
    qtbot.addWidget(win)
    win.show()
    got: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def grab(fr) -> None:
        f = fr.frame
        if f.index < n and f.index not in got:
            got[f.index] = (f.pixels.copy(), rasterise(win.view, f.width, f.height))
        if len(got) >= n and win.player is not None:
            win.player.pause()

    try:
        with qtbot.waitSignal(win.modelLoaded, timeout=30000):
            win.add_model(model)
        win.frameShown.connect(grab)
        win.open_source(source)
        qtbot.waitUntil(lambda: len(got) >= n, timeout=60000)
    finally:
        win.close()
    return [got[i] for i in range(n)]


def check_against_window(shots, video: list[np.ndarray], strip: int, min_drawn: float) -> None:
    """Each video frame equals the window's within the tolerance above its caption strip; the
    overlay is really there (the window draws on at least ``min_drawn`` of the frame, and there
    the video differs from the raw frame as much); the caption strip covers the bottom."""
    assert len(video) == len(shots)
    for i, ((raw, shown), got) in enumerate(zip(shots, video)):
        h, w = raw.shape[:2]
        area = slice(0, h - strip)
        ours, theirs = got[:h, :w][area].astype(np.float64), as_yuv420(shown)[area].astype(np.float64)
        bare = as_yuv420(raw)[area].astype(np.float64)
        mad = float(np.mean(np.abs(ours - theirs)))
        print(f"frame {i}: mean |render - window| {mad:.2f}, PSNR {psnr(ours, theirs):.1f} dB")  # pytest -s
        assert mad < MAX_MEAN_ABS, f"frame {i}: mean |render - window| {mad:.2f}"
        assert psnr(ours, theirs) > MIN_PSNR_DB, f"frame {i}: PSNR {psnr(ours, theirs):.1f} dB"
        drawn = np.abs(shown[area].astype(np.float64) - raw[area]).max(axis=2) > DRAWN
        assert drawn.mean() > min_drawn, f"frame {i}: the window's overlay covers {100 * drawn.mean():.1f}% only"
        assert float(np.mean(np.abs(ours - bare).max(axis=2)[drawn])) > DRAWN  # the video has it there too
        # the caption strip is drawn over the bottom of the frame
        assert float(np.mean(np.abs(got[h - strip:h, :w].astype(np.float64) - shown[h - strip:]))) > 10


def test_render_of_bikes_with_segmentation_matches_the_window_frame_by_frame(qtbot, tmp_path):
    n = 8
    clip = str(clip_path("bikes.mp4"))
    model = str(resource_path("demo_segmentation.onnx"))
    shots = window_frames(qtbot, model, clip, n)
    out = tmp_path / "bikes.mp4"
    assert main(["render", clip, "--model", model, "--out", str(out), "--max-frames", str(n), "--quiet"]) == 0
    video, rate, (w, h) = decode(out)
    assert (w, h) == (640, 272) and rate == pytest.approx(25.0)  # the source's size and rate
    check_against_window(shots, video, caption_height(272, 1), min_drawn=0.2)


def test_render_of_detections_matches_the_window(qtbot, tmp_path):
    """Boxes and label tags (drawn at a constant screen size) on the demo detector's own scenes."""
    from PIL import Image

    from loupe.sources.open import open_source
    from loupe_models.demos.detect import frame_scene

    folder = tmp_path / "scenes"
    folder.mkdir()
    with open_source(str(clip_path("bikes.mp4"))) as src:
        for i, f in zip(range(3), src):
            scene = frame_scene(f.pixels, np.random.default_rng(10 + i), count=4)
            Image.fromarray(scene.image).save(folder / f"scene_{i}.png")
    model = str(resource_path("demo_detection.onnx"))
    shots = window_frames(qtbot, model, str(folder), 3)
    out = tmp_path / "scenes.mp4"
    assert main(["render", str(folder), "--model", model, "--out", str(out), "--quiet"]) == 0
    video, rate, _ = decode(out)
    assert rate == pytest.approx(5.0)  # a folder of images: the default rate
    check_against_window(shots, video, caption_height(272, 1), min_drawn=0.01)


def test_two_models_stack_as_in_the_window(qtbot, tmp_path):
    """The later model's overlay is drawn above the earlier one's, as the window stacks them."""
    from loupe.run.pipeline import Runner, load_model
    from loupe.sources.open import open_source

    seg = load_model(str(resource_path("demo_segmentation.onnx")), display_max_side=None)
    det = load_model(str(resource_path("demo_detection.onnx")), display_max_side=None)
    r = OverlayRenderer([seg, det], caption=False)
    try:
        z = [p.overlay.zValue() for p in r.panels]
        assert z == sorted(z) and z[0] == 11  # MainWindow._attach_model: 10 + its place from 1
        with open_source(str(clip_path("bikes.mp4"))) as src:
            fr = Runner([seg, det]).process(next(iter(src)))
        img = r.draw(fr)
        assert img.shape == (272, 640, 3) and img.dtype == np.uint8
        assert r.caption_rows(272) == 0
    finally:
        r.close()


def test_dicom_uses_the_display_window_the_view_uses(tmp_path):
    """A DICOM slice is drawn with the file's window (the FrameView's levels), or with the
    window's preset/drag when given; the caption names the modality and the window in use."""
    from loupe.base.media import dicom_test_file
    from loupe.inference.preprocess import window_levels
    from loupe.run.pipeline import FrameResult
    from loupe.sources.open import open_source

    with open_source(str(dicom_test_file("CT_small.dcm"))) as src:
        frame = next(iter(src))
    fr = FrameResult(frame, (), 0.0, 0.0)
    lo, hi = window_levels(frame)
    expect = np.clip((frame.pixels.astype(np.float64) - lo) / (hi - lo) * 255, 0, 255)
    plain = OverlayRenderer([], caption=False)
    bone = OverlayRenderer([], caption=False, window=(400.0, 1000.0))
    try:
        a, b = plain.draw(fr), bone.draw(fr)
        assert np.abs(a[:, :, 0].astype(np.float64) - expect).mean() < 1.0  # the file's window
        assert np.abs(b[:, :, 0].astype(np.float64) - expect).mean() > 10  # another window, another picture
        assert plain._header(frame).startswith("CT") and "W " in plain._header(frame)
    finally:
        plain.close()
        bone.close()
