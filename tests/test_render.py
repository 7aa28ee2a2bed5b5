"""``loupe render``: sizes, frame rates, DICOM in playing order with its display window, errors
with exit 2 and one line, and an interrupted render that leaves a video that plays (exit 130).
The Qt-free part (the writer, the frame loop, the caption's figures) is tested without Qt."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from loupe.base.media import clip_path, dicom_test_file
from loupe.base.progress import CallbackProgress, Progress
from loupe.run.pipeline import Runner
from loupe.run.render import VideoWriter, key_figures, model_colour, pad_even, render_frames
from loupe.sources.base import Frame
from tests.helpers import _save, decode, make_argmax_model


def smooth(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth colour picture (H.264 keeps it within a few grey levels)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a, b = rng.uniform(0.02, 0.06, 2)
    return np.stack([128 + 100 * np.sin(a * x), 128 + 100 * np.cos(b * y), 128 + 60 * np.sin(a * (x + y))],
                    axis=2).astype(np.uint8)


# --- Qt-free ---------------------------------------------------------------------------------
def test_writer_pads_odd_sizes_and_keeps_the_picture(tmp_path):
    pics = [smooth(143, 175, s) for s in range(3)]
    with VideoWriter(tmp_path / "v.mp4", 175, 143, 12.0) as w:
        for p in pics:
            w.write(p)
    frames, rate, size = decode(tmp_path / "v.mp4")
    assert size == (176, 144) and rate == pytest.approx(12.0) and len(frames) == 3
    for p, f in zip(pics, frames):
        assert np.abs(f[:143, :175].astype(float) - p).mean() < 2.5  # CRF 18 and 4:2:0: close to the input
    assert pad_even(pics[0]).shape == (144, 176, 3)
    np.testing.assert_array_equal(pad_even(pics[0])[143, :175], pics[0][142])  # the edge row repeated


def test_frame_loop_cancel_finalises_the_file(tmp_path):
    frames = (Frame(smooth(64, 80, i), i, i / 10) for i in range(40))
    progress = CallbackProgress(lambda f, info: info.get("frames", 0) < 4)  # cancel after 4 frames
    out = tmp_path / "c.mp4"
    summary, writer = render_frames(frames, Runner([]), lambda fr: fr.frame.pixels,
                                    lambda w, h: VideoWriter(out, w, h, 10.0), 40, progress)
    assert summary.cancelled and summary.frames == 4 and writer.frames == 4
    assert len(decode(out)[0]) == 4  # it plays, with the 4 frames


def test_key_figures_from_each_tasks_row():
    class Seg:
        def row(self, r):
            return {"area_bright_sky": 0.41, "area_road": 0.5, "area_car": 0.09, "area_mm2_road": 3.0}

    class Res:
        labels = ("bright sky", "road", "car")

    assert key_figures(Seg(), Res()) == "road 50% · bright sky 41% · car 9%"

    class Det:
        def row(self, r):
            return {"count": 3, "count_person": 2, "count_car": 1, "count_dog": 0, "detections": [{}]}

    assert key_figures(Det(), object()) == "count 3 (person 2, car 1)"

    class Cls:
        def row(self, r):
            return {"top1": "cat", "top1_score": 0.875, "topk": []}

    assert key_figures(Cls(), object()) == "cat 0.88"

    class Broken:
        def row(self, r):
            raise RuntimeError("plug-in bug")

    assert key_figures(Broken(), object()) == ""


def test_model_colour_only_for_one_colour_models():
    class One:
        labels, palette = ("thing",), np.array([[10, 20, 30]])

    class Many:
        labels, palette = ("a", "b"), np.array([[1, 2, 3], [4, 5, 6]])

    class Binary(Many):
        binary = True

    assert model_colour(One()) == (10, 20, 30) and model_colour(Many()) is None
    assert model_colour(Binary()) == (4, 5, 6)


# --- the command (draws with Qt, offscreen) ---------------------------------------------------
@pytest.fixture
def render(capsys):
    pytest.importorskip("PySide6")
    from loupe.cli import main

    def run(*args: str) -> tuple[int, list[str]]:
        rc = main(["render", *args])
        return rc, [line for line in capsys.readouterr().err.splitlines() if line.startswith("loupe:")]

    return run


def test_odd_sized_image_and_folder_at_the_still_rate(render, tmp_path, argmax_model):
    Image.fromarray(smooth(143, 175, 1)).save(tmp_path / "odd.png")
    out = tmp_path / "odd.mp4"
    rc, _ = render(str(tmp_path / "odd.png"), "--model", str(argmax_model), "--out", str(out), "--quiet")
    frames, rate, size = decode(out)
    assert rc == 0 and size == (176, 144) and rate == pytest.approx(5.0) and len(frames) == 1
    folder = tmp_path / "three"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(smooth(143, 175, i)).save(folder / f"f{i}.png")
    out = tmp_path / "three.mkv"
    rc, lines = render(str(folder), "--model", str(argmax_model), "--out", str(out), "--fps", "12", "--quiet")
    frames, rate, size = decode(out)
    assert rc == 0 and size == (176, 144) and rate == pytest.approx(12.0) and len(frames) == 3
    assert "3 frames" in lines[-1] and "176x144, 12 fps" in lines[-1]


def test_video_keeps_its_rate_and_max_frames(render, tmp_path, argmax_model):
    out = tmp_path / "clip.mov"
    rc, _ = render(str(clip_path("carphone_pristine.mp4")), "--model", str(argmax_model), "--out", str(out),
                   "--max-frames", "6", "--quiet")
    frames, rate, size = decode(out)
    assert rc == 0 and len(frames) == 6 and size == (176, 144)
    import av

    with av.open(str(clip_path("carphone_pristine.mp4"))) as c:
        assert rate == pytest.approx(float(c.streams.video[0].average_rate))


def test_dicom_in_playing_order_with_its_display_window(render, tmp_path, argmax_model):
    try:
        path = dicom_test_file("emri_small.dcm")  # 10 MR frames
    except FileNotFoundError:
        pytest.skip("pydicom-data's emri_small.dcm is not installed")

    from loupe.inference.preprocess import window_levels
    from loupe.sources.open import open_source
    from loupe.ui import settings as keys

    keys.settings().setValue(keys.SEGMENTATION_OPACITY, 0.0)  # the overlay fully transparent: the frame only
    out = tmp_path / "mr.mp4"
    rc, _ = render(str(path), "--model", str(argmax_model), "--out", str(out), "--no-caption", "--quiet")
    assert rc == 0
    frames, rate, _ = decode(out)
    with open_source(str(path)) as src:
        expected = []
        for f in src:
            lo, hi = window_levels(f)  # what the FrameView shows: the file's window
            g = np.clip((f.pixels.astype(np.float64) - lo) / (hi - lo) * 255, 0, 255)
            expected.append(g)
    assert len(frames) == len(expected) == 10 and rate == pytest.approx(5.0)
    for k, f in enumerate(frames):
        grey = f[:, :, 1].astype(np.float64)
        errs = [np.abs(grey - e).mean() for e in expected]
        assert errs[k] < 3.0, f"slice {k}: {errs[k]:.2f} grey levels from the windowed slice"
        assert int(np.argmin(errs)) == k  # in playing order


def test_errors_exit_2_with_one_line(render, tmp_path, argmax_model):
    m = str(argmax_model)
    clip = str(clip_path("carphone_pristine.mp4"))
    rc, lines = render(str(tmp_path / "missing.mp4"), "--model", m, "--out", str(tmp_path / "a.mp4"))
    assert rc == 2 and len(lines) == 1 and "No such file" in lines[0]
    (tmp_path / "notes.mp4").write_text("not a video\n")
    rc, lines = render(str(tmp_path / "notes.mp4"), "--model", m, "--out", str(tmp_path / "b.mp4"))
    assert rc == 2 and len(lines) == 1 and "notes.mp4" in lines[0]
    rc, lines = render(clip, "--model", m, "--out", str(tmp_path / "c.avi"))
    assert rc == 2 and lines == [f"loupe: --out must end in .mp4, .mkv, .mov, got {tmp_path / 'c.avi'}"]
    rc, lines = render(clip, "--model", m, "--out", str(tmp_path / "nowhere" / "c.mp4"))
    assert rc == 2 and len(lines) == 1 and "there is no folder" in lines[0]
    for opt, value in (("--fps", "0"), ("--max-frames", "0")):
        rc, lines = render(clip, "--model", m, "--out", str(tmp_path / "d.mp4"), opt, value)
        assert rc == 2 and len(lines) == 1 and opt in lines[0]
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    rc, lines = render(clip, "--model", str(tmp_path / "bad.onnx"), "--out", str(tmp_path / "e.mp4"))
    assert rc == 2 and len(lines) == 1 and "bad.onnx" in lines[0]
    assert not any((tmp_path / n).exists() for n in ("a.mp4", "b.mp4", "c.avi", "d.mp4", "e.mp4"))


def test_a_model_whose_shapes_do_not_fit_the_frames(render, tmp_path):
    """A segmenter that only takes 64x64 inputs, on 176x144 frames: exit 2, no video left."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 64, 64])
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 3, 64, 64])
    graph = helper.make_graph([helper.make_node("Reshape", ["image", "shape"], ["logits"])], "fixed", [x], [y],
                              initializer=[shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    card_src = onnx.load(str(make_argmax_model(tmp_path / "argmax.onnx")))
    model.metadata_props.extend(card_src.metadata_props)
    path = _save(model, tmp_path / "fixed64.onnx")
    out = tmp_path / "f.mp4"
    rc, lines = render(str(clip_path("carphone_pristine.mp4")), "--model", str(path), "--out", str(out), "--quiet")
    assert rc == 2 and len(lines) == 1 and "carphone_pristine.mp4" in lines[0]
    assert not out.exists()


class _StopAfter(Progress):
    """Cancels (or raises KeyboardInterrupt, as Ctrl-C does) once ``k`` frames were written."""

    def __init__(self, k: int, interrupt: bool) -> None:
        super().__init__()
        self.k, self.interrupt = k, interrupt

    def show(self, fraction, status, info) -> None:
        if info.get("frames", 0) >= self.k:
            if self.interrupt:
                raise KeyboardInterrupt
            self.cancel()

    def input_failed(self) -> None:
        pass

    def finish(self) -> None:
        pass


@pytest.mark.parametrize("interrupt", [False, True])
def test_interrupted_render_leaves_a_video_that_plays(render, tmp_path, argmax_model, monkeypatch, interrupt):
    import loupe.commands.render as cmd

    monkeypatch.setattr(cmd, "make_progress", lambda *a, **k: _StopAfter(5, interrupt))
    out = tmp_path / "part.mp4"
    rc, lines = render(str(clip_path("carphone_pristine.mp4")), "--model", str(argmax_model), "--out", str(out))
    assert rc == 130 and lines == [f"loupe: interrupted; 5 frames written to {out}"]
    frames, _, size = decode(out)
    assert len(frames) == 5 and size == (176, 144)


def test_scale_draws_each_pixel_as_a_block(render, tmp_path, argmax_model):
    """--scale 4: each frame pixel a 4x4 block, the picture and the overlay alike (nearest
    neighbour): the drawing equals the one at the source's size blown up; the video is 4x the size;
    too large or out of range: exit 2 with one line."""
    from loupe.run.pipeline import load_model
    from loupe.ui.render_view import OverlayRenderer

    rng = np.random.default_rng(5)
    pic = rng.integers(0, 256, (30, 48, 3), dtype=np.uint8)  # noise: any smoothing would show
    models = [load_model(str(argmax_model), display_max_side=None)]
    fr = Runner(models).process(Frame(pic, 0, 0.0, {}))
    drawn = {}
    for s in (1, 4):
        r = OverlayRenderer(models, caption=False, scale=s)
        try:
            drawn[s] = r.draw(fr)
        finally:
            r.close()
    assert drawn[1].shape == (30, 48, 3) and drawn[4].shape == (120, 192, 3)
    assert np.abs(drawn[1].astype(int) - pic).max() > 30  # the overlay is drawn
    np.testing.assert_array_equal(drawn[4], np.kron(drawn[1], np.ones((4, 4, 1), np.uint8)))

    Image.fromarray(pic).save(tmp_path / "small.png")
    common = ("--model", str(argmax_model), "--quiet")
    assert render(str(tmp_path / "small.png"), "--out", str(tmp_path / "four.mp4"), "--scale", "4", *common)[0] == 0
    assert decode(tmp_path / "four.mp4")[2] == (192, 120)
    rc, lines = render(str(tmp_path / "small.png"), "--out", str(tmp_path / "x.mp4"), "--scale", "9", *common)
    assert rc == 2 and lines == ["loupe: --scale must be 1 to 8, got 9"]
    Image.fromarray(pic[:, :1]).resize((600, 30)).save(tmp_path / "wide.png")
    rc, lines = render(str(tmp_path / "wide.png"), "--out", str(tmp_path / "y.mp4"), "--scale", "8", *common)
    assert rc == 2 and len(lines) == 1 and "4800x240: at most 4096 pixels a side" in lines[0]


def x264_options(path) -> dict[str, str]:
    """The settings libx264 wrote into the stream (its SEI text: "x264 - core ... options: a=1 b=2")."""
    import re

    with open(path, "rb") as f:
        text = f.read()
    m = re.search(rb"options: ([^\x00]*)", text)
    assert m, "no x264 settings in the file"
    return dict(kv.split("=", 1) for kv in m.group(1).decode("ascii", "replace").split() if "=" in kv)


def test_preset_sets_the_encoders_speed(render, tmp_path, argmax_model, capsys):
    clip = str(clip_path("carphone_pristine.mp4"))
    sizes = {}
    for preset, subme in (("ultrafast", "0"), (None, "6"), ("slow", "8")):  # subme: x264's documented values
        out = tmp_path / f"{preset}.mp4"
        extra = ("--preset", preset) if preset else ()
        rc, _ = render(clip, "--model", str(argmax_model), "--out", str(out), "--max-frames", "8", "--quiet", *extra)
        assert rc == 0 and x264_options(out)["subme"] == subme
        assert len(decode(out)[0]) == 8
        sizes[preset] = out.stat().st_size
    assert sizes["ultrafast"] > sizes[None]  # the fastest preset: a bigger file at the same CRF
    from loupe.cli import main

    assert main(["render", clip, "--model", str(argmax_model), "--out", str(tmp_path / "x.mp4"), "--preset", "warp"]) == 2
    assert "invalid choice: 'warp'" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()


def test_start_renders_from_that_frame_numbered_as_the_window_does(render, tmp_path, argmax_model):
    clip = str(clip_path("carphone_pristine.mp4"))
    m = str(argmax_model)
    rc, _ = render(clip, "--model", m, "--out", str(tmp_path / "all.mp4"), "--max-frames", "8", "--quiet",
                   "--no-caption")
    assert rc == 0
    rc, lines = render(clip, "--model", m, "--out", str(tmp_path / "later.mp4"), "--start", "5", "--max-frames", "3",
                       "--no-caption")
    assert rc == 0 and "3 frames" in lines[-1]
    first, _, _ = decode(tmp_path / "all.mp4")
    later, _, _ = decode(tmp_path / "later.mp4")
    assert len(later) == 3
    for k in range(3):  # frames 5, 6, 7 (indices 4 to 6): each nearest its own frame of the first render
        diffs = [float(np.abs(later[k].astype(float) - f).mean()) for f in first]
        assert int(np.argmin(diffs)) == 4 + k and diffs[4 + k] < 6.0, (k, diffs)  # (another place in the GOP)
    import av

    with av.open(clip) as c:
        count = c.streams.video[0].frames
    rc, _ = render(clip, "--model", m, "--out", str(tmp_path / "end.mp4"), "--start", str(count), "--quiet")
    assert rc == 0 and len(decode(tmp_path / "end.mp4")[0]) == 1  # the last frame alone
    for start, says in (("0", "--start is a frame number from 1, got 0"),
                        (str(count + 1), f"cannot start at frame {count + 1}: carphone_pristine.mp4 has {count}")):
        rc, lines = render(clip, "--model", m, "--out", str(tmp_path / "bad.mp4"), "--start", start, "--quiet")
        assert rc == 2 and len(lines) == 1 and says in lines[0], lines
    assert not (tmp_path / "bad.mp4").exists()


def test_the_caption_numbers_frames_of_the_whole_input():
    from types import SimpleNamespace

    from loupe.run.render import frame_label

    frame = SimpleNamespace(index=100, timestamp=4.0, metadata={})
    assert frame_label(frame, 250) == "frame 101/250 · 4.00 s"
