"""ImageSource on files written with OpenCV into a temporary folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from loupe.sources.base import SourceError
from loupe.sources.images import ImageSource, natural_key, read_image


def write_bgr(path: Path, bgr: tuple[int, int, int], shape: tuple[int, int] = (12, 16)) -> None:
    image = np.zeros((*shape, 3), np.uint8)
    image[:] = bgr
    assert cv2.imwrite(str(path), image)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_bgr(tmp_path / "img10.png", (0, 0, 10))
    write_bgr(tmp_path / "img2.png", (0, 0, 2))
    write_bgr(tmp_path / "img1.png", (0, 0, 1))
    (tmp_path / "notes.txt").write_text("not an image")
    write_bgr(tmp_path / ".hidden.png", (0, 0, 99))
    return tmp_path


def test_natural_order(folder: Path) -> None:
    source = ImageSource(folder)
    assert [p.name for p in source.files] == ["img1.png", "img2.png", "img10.png"]
    frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2]
    assert [int(f.pixels[0, 0, 0]) for f in frames] == [1, 2, 10]  # red channel (RGB)
    assert [f.timestamp for f in frames] == [0.0, 1.0, 2.0]
    assert frames[2].metadata["path"] == str(folder / "img10.png")
    assert frames[2].metadata["file_name"] == "img10.png"
    assert source.frame_count == 3
    assert source.fps is None
    assert source.live is False
    assert source.name == folder.name


def test_natural_key() -> None:
    names = ["img10.png", "IMG1.png", "img2.png", "img2b.png", "a.png"]
    assert sorted(names, key=natural_key) == [
        "a.png",
        "IMG1.png",
        "img2.png",
        "img2b.png",
        "img10.png",
    ]


def test_seek_and_position(folder: Path) -> None:
    with ImageSource(folder) as source:
        source.seek(2)
        frame = source.read()
        assert frame is not None and frame.index == 2
        assert source.read() is None
        source.seek(1)
        assert [f.index for f in source] == [1, 2]
        with pytest.raises(SourceError):
            source.seek(4)
        source.seek(3)  # the end
        assert list(source) == []


def test_single_file(tmp_path: Path) -> None:
    path = tmp_path / "one.jpg"
    write_bgr(path, (255, 0, 0))
    source = ImageSource(path)
    assert source.frame_count == 1
    frame = source.read()
    assert frame is not None
    assert frame.pixels.shape == (12, 16, 3)
    assert frame.pixels[0, 0, 2] > 240 and frame.pixels[0, 0, 0] < 15  # blue, as RGB
    assert source.read() is None


def test_greyscale_kept(tmp_path: Path) -> None:
    grey8 = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    grey16 = (np.arange(12 * 16, dtype=np.uint16) * 300).reshape(12, 16)
    cv2.imwrite(str(tmp_path / "g8.png"), grey8)
    cv2.imwrite(str(tmp_path / "g16.png"), grey16)
    cv2.imwrite(str(tmp_path / "g16.tif"), grey16)
    a = read_image(tmp_path / "g8.png")
    b = read_image(tmp_path / "g16.png")
    c = read_image(tmp_path / "g16.tif")
    assert a.shape == (12, 16) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, grey8)
    assert b.dtype == np.uint16
    np.testing.assert_array_equal(b, grey16)
    np.testing.assert_array_equal(c, grey16)


def test_alpha_dropped_and_16bit_colour_to_8bit(tmp_path: Path) -> None:
    bgra = np.zeros((12, 16, 4), np.uint8)
    bgra[:] = (10, 20, 30, 128)
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    rgb = read_image(tmp_path / "rgba.png")
    assert rgb.shape == (12, 16, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (30, 20, 10)
    bgr16 = np.zeros((12, 16, 3), np.uint16)
    bgr16[:] = (0, 32896, 65535)
    cv2.imwrite(str(tmp_path / "c16.png"), bgr16)
    rgb16 = read_image(tmp_path / "c16.png")
    assert rgb16.dtype == np.uint8
    assert tuple(rgb16[0, 0]) == (255, 128, 0)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"])
def test_supported_formats(tmp_path: Path, suffix: str) -> None:
    write_bgr(tmp_path / f"x{suffix}", (40, 80, 160))
    source = ImageSource(tmp_path)
    frame = source.read()
    assert frame is not None and frame.pixels.shape == (12, 16, 3)
    assert abs(int(frame.pixels[5, 5, 0]) - 160) <= 8


def test_non_ascii_file_name(tmp_path: Path) -> None:
    write_bgr(tmp_path / "bild_ä_東京.png", (1, 2, 3))
    frame = ImageSource(tmp_path).read()
    assert frame is not None and tuple(frame.pixels[0, 0]) == (3, 2, 1)


def test_broken_file_is_named_and_playback_can_continue(tmp_path: Path) -> None:
    write_bgr(tmp_path / "img1.png", (0, 0, 1))
    (tmp_path / "img2.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    write_bgr(tmp_path / "img3.png", (0, 0, 3))
    source = ImageSource(tmp_path)
    it = iter(source)
    assert next(it).index == 0
    with pytest.raises(SourceError, match=r"img2\.png") as info:
        next(it)
    assert "Image 2 of 3" in str(info.value)
    frame = next(it)  # the caller decides: here it goes on
    assert frame.index == 2 and frame.pixels[0, 0, 0] == 3


def test_empty_folder_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="No images in folder"):
        ImageSource(tmp_path)
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(SourceError, match="No images in folder"):
        ImageSource(tmp_path)
    with pytest.raises(SourceError, match="No such file"):
        ImageSource(tmp_path / "missing.png")


def test_unreadable_single_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    source = ImageSource(path)
    with pytest.raises(SourceError, match=r"empty\.png"):
        source.read()


def test_list_of_files(tmp_path: Path) -> None:
    write_bgr(tmp_path / "b.png", (0, 0, 2))
    write_bgr(tmp_path / "a.png", (0, 0, 1))
    source = ImageSource([tmp_path / "b.png", tmp_path / "a.png"])  # order kept
    assert [int(f.pixels[0, 0, 0]) for f in source] == [2, 1]
    with pytest.raises(SourceError):
        ImageSource([])
