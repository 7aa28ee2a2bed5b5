"""Label readers: mask folders, sizes, frame matching, names (labels known by construction)."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from loupe.base.errors import LoupeError
from loupe.sources.labels import (
    FileIndex,
    FrameLabels,
    LabelError,
    fill_polygon,
    frame_index_of,
    open_labels,
    read_mask,
)


def paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def filtered_row(row: list[int], up: list[int], f: int) -> bytes:
    """One row under PNG filter ``f`` (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth), from the PNG spec."""
    out = []
    for i, x in enumerate(row):
        a = row[i - 1] if i else 0
        c = up[i - 1] if i else 0
        pred = [0, a, up[i], (a + up[i]) // 2, paeth(a, up[i], c)][f]
        out.append((x - pred) % 256)
    return bytes([f, *out])


def write_palette_png(path, idx: np.ndarray, palette: list[tuple[int, int, int]], filters=(0,)) -> None:
    """A colour-type-3 PNG written byte by byte (no imaging library), so the test knows its indices;
    row r uses filter ``filters[r % len(filters)]``."""
    h, w = idx.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = idx.astype(int).tolist()
    raw = b"".join(filtered_row(rows[r], rows[r - 1] if r else [0] * w, filters[r % len(filters)])
                   for r in range(h))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
           + chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).ravel())) + chunk(b"IDAT", zlib.compress(raw))
           + chunk(b"IEND", b""))
    path.write_bytes(png)


def test_palette_png_reads_as_indices_not_colours(tmp_path):
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 4, (6, 7)).astype(np.uint8)
    idx[0, 0] = 255
    palette = [(0, 0, 0), (200, 10, 10), (10, 200, 10), (10, 10, 200)] + [(0, 0, 0)] * 251 + [(224, 224, 192)]
    write_palette_png(tmp_path / "0.png", idx, palette)
    assert cv2.imread(str(tmp_path / "0.png"), cv2.IMREAD_UNCHANGED).ndim == 3  # why we map back
    np.testing.assert_array_equal(read_mask(tmp_path / "0.png"), idx)


def test_palette_png_with_repeated_colours_is_decoded_exactly(tmp_path):
    rng = np.random.default_rng(4)
    idx = rng.integers(0, 256, (9, 11)).astype(np.uint8)
    palette = [(0, 0, 0)] * 128 + [(5, 5, 5)] * 128  # every index shares its colour
    write_palette_png(tmp_path / "f.png", idx, palette, filters=(0, 1, 2, 3, 4))
    np.testing.assert_array_equal(read_mask(tmp_path / "f.png"), idx)
    image = pytest.importorskip("PIL.Image")
    im = image.fromarray(idx, "P")
    im.putpalette([0, 0, 0] * 256)
    im.save(tmp_path / "pil.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "pil.png"), np.asarray(image.open(tmp_path / "pil.png")))
    np.testing.assert_array_equal(read_mask(tmp_path / "pil.png"), idx)


def test_grey_mask_and_colour_mask(tmp_path):
    m = np.array([[0, 1, 2], [255, 1, 0]], np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), m)
    np.testing.assert_array_equal(read_mask(tmp_path / "a.png"), m)
    cv2.imwrite(str(tmp_path / "b.png"), np.stack([m, m, m], -1))
    np.testing.assert_array_equal(read_mask(tmp_path / "b.png"), m)
    c = np.zeros((2, 3, 3), np.uint8)
    c[0, 0] = (1, 2, 3)
    cv2.imwrite(str(tmp_path / "c.png"), c)
    with pytest.raises(LabelError, match="colour mask"):
        read_mask(tmp_path / "c.png")


@pytest.mark.parametrize("name", ["12", "000012", "frame_000012"])
def test_mask_folder_by_frame_index(tmp_path, name):
    m = np.zeros((4, 6), np.uint8)
    m[1:3, 2:5] = 3
    cv2.imwrite(str(tmp_path / f"{name}.png"), m)
    cv2.imwrite(str(tmp_path / f"{name.replace('12', '13')}.png"), m * 0)
    labels = open_labels(tmp_path)
    assert labels.names is None
    got = labels.get(12, None, (4, 6))
    assert isinstance(got, FrameLabels) and got.index == 12 and got.note == ""
    np.testing.assert_array_equal(got.mask, m)
    assert got.boxes.shape == (0, 4) and got.classes.shape == (0,)
    assert labels.get(11, None, (4, 6)) is None            # unlabelled, not empty
    assert (labels.get(13, None, (4, 6)).mask == 0).all()  # labelled: all class 0


def test_mask_folder_by_image_stem(tmp_path):
    cv2.imwrite(str(tmp_path / "cat.png"), np.full((3, 3), 1, np.uint8))
    cv2.imwrite(str(tmp_path / "dog.png"), np.full((3, 3), 2, np.uint8))
    labels = open_labels(tmp_path)
    assert labels.get(0, "dog", (3, 3)).mask[0, 0] == 2
    assert labels.get(1, "cat", (3, 3)).mask[0, 0] == 1
    assert labels.get(2, "bird", (3, 3)) is None
    assert labels.get(0, None, (3, 3)) is None  # stems are not frame indices


def test_frame_index_names():
    assert frame_index_of("000012") == 12
    assert frame_index_of("frame_000012") == 12
    assert frame_index_of("img-7") == 7
    assert frame_index_of("cat") is None
    from pathlib import Path
    mixed = FileIndex([Path("a_1.png"), Path("b_2.png")])  # two prefixes: not a frame sequence
    assert mixed.find(1, None) is None and mixed.find(0, "a_1") == Path("a_1.png")


def test_resize_when_aspect_agrees_refuse_when_not(tmp_path):
    m = np.zeros((480, 640), np.uint8)
    m[:240, :320] = 1
    cv2.imwrite(str(tmp_path / "0.png"), m)
    labels = open_labels(tmp_path)
    got = labels.get(0, None, (240, 320))
    assert got.mask.shape == (240, 320)
    assert got.mask[:120, :160].all() and not got.mask[120:, :].any() and not got.mask[:, 160:].any()
    assert "480x640 -> 240x320" in got.note and "nearest" in got.note
    with pytest.raises(LabelError) as e:
        labels.get(0, None, (480, 480))
    assert isinstance(e.value, LoupeError)
    assert "0.png" in str(e.value) and "480x640" in str(e.value) and "480x480" in str(e.value)


def test_names_and_class_map(tmp_path):
    cv2.imwrite(str(tmp_path / "0.png"), np.zeros((2, 2), np.uint8))
    (tmp_path / "classes.txt").write_text("background\nPerson\ntraffic_light\nzebra\n")
    labels = open_labels(tmp_path)
    assert labels.names == ("background", "Person", "traffic_light", "zebra")
    model = ("background", "car", "person", "traffic light")
    assert labels.unknown_names(model) == ["zebra"]
    cm = labels.class_map(model)
    assert list(cm[:4]) == [0, 2, 3, -1] and len(cm) >= 256 and cm[255] == -1


def test_class_map_identity_without_names(tmp_path):
    cv2.imwrite(str(tmp_path / "0.png"), np.zeros((2, 2), np.uint8))
    labels = open_labels(tmp_path)
    cm = labels.class_map(("a", "b", "c"))
    assert list(cm[:4]) == [0, 1, 2, -1] and cm[255] == -1
    assert labels.unknown_names(("a",)) == []


def test_one_sub_folder_per_input(tmp_path):
    for stem, v in (("left", 1), ("right", 2)):
        (tmp_path / stem).mkdir()
        cv2.imwrite(str(tmp_path / stem / "0.png"), np.full((2, 2), v, np.uint8))
    assert open_labels(tmp_path, "/data/right.mp4").get(0, None, (2, 2)).mask[0, 0] == 2
    assert open_labels(tmp_path, "left.mp4").get(0, None, (2, 2)).mask[0, 0] == 1
    with pytest.raises(LabelError, match="one sub-folder per input"):
        open_labels(tmp_path, "middle.mp4")
    with pytest.raises(LabelError, match="no such"):
        open_labels(tmp_path / "nope")


def test_fill_polygon_pixel_centres():
    m = np.zeros((6, 8), np.uint8)
    fill_polygon(m, [1, 1, 5, 1, 5, 4, 1, 4], 7)  # 4 x 3 rectangle
    want = np.zeros((6, 8), np.uint8)
    want[1:4, 1:5] = 7
    np.testing.assert_array_equal(m, want)
    t = np.zeros((10, 10), np.uint8)
    fill_polygon(t, [0, 0, 10, 0, 0, 10], 1)  # right triangle: centres with x + y < 10
    rr, cc = np.mgrid[:10, :10]
    np.testing.assert_array_equal(t == 1, (rr + 0.5) + (cc + 0.5) < 10)
    big = np.zeros((4, 4), np.uint8)
    fill_polygon(big, [-5, -5, 20, -5, 20, 20, -5, 20], 2)  # clipped to the frame
    assert (big == 2).all()


def test_mask_folder_reads_one_file_per_frame_asked(tmp_path, monkeypatch):
    import loupe.sources.labels as mod
    for i in range(300):  # stands for a long video: opening lists the folder, reads nothing
        (tmp_path / f"{i:06d}.png").write_bytes(b"")
    idx = np.array([[0, 1], [2, 255]], np.uint8)
    write_palette_png(tmp_path / "000123.png", idx, [(i, 255 - i, i // 2) for i in range(256)])
    reads = []
    real = mod.cv2.imread
    monkeypatch.setattr(mod.cv2, "imread", lambda p, *a: reads.append(p) or real(p, *a))
    labels = open_labels(tmp_path)
    assert reads == []
    np.testing.assert_array_equal(labels.get(123, None, (2, 2)).mask, idx)
    assert len(reads) == 1 and reads[0].endswith("000123.png")
    with pytest.raises(LabelError, match="000007.png"):  # an empty file is refused by name
        labels.get(7, None, (2, 2))
