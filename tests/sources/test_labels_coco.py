"""COCO JSON and YOLO label readers, with labels known by construction; RLE against pycocotools."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loupe.sources.labels import LabelError, open_labels
from loupe.sources.labels_coco import rle_counts_from_string, rle_decode


def rle_string(counts: list[int]) -> str:
    """COCO's compressed RLE string written from its description (the inverse of the decoder)."""
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = not (((c & 0x10) == 0 and x == 0) or ((c & 0x10) != 0 and x == -1))
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def runs(mask: np.ndarray) -> list[int]:
    flat = mask.T.ravel().astype(np.int8)
    change = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))
    counts = np.diff(np.r_[0, change]).tolist()
    return counts if flat[0] == 0 else [0, *counts]


def test_rle_roundtrip_by_construction():
    rng = np.random.default_rng(1)
    m = rng.random((13, 17)) < 0.3
    m[:, 5:9] = True
    counts = runs(m)
    np.testing.assert_array_equal(rle_decode({"size": [13, 17], "counts": counts}), m)
    s = rle_string(counts)
    assert rle_counts_from_string(s) == counts
    np.testing.assert_array_equal(rle_decode({"size": [13, 17], "counts": s}), m)
    with pytest.raises(ValueError, match="add up"):
        rle_decode({"size": [13, 18], "counts": counts})


def test_rle_matches_pycocotools():
    mask_api = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(2)
    for h, w, p in ((50, 70, 0.5), (120, 90, 0.05), (33, 1000, 0.9), (8, 8, 0.0)):
        m = rng.random((h, w)) < p
        m[h // 3: h // 2, w // 4: w // 2] = True
        enc = mask_api.encode(np.asfortranarray(m.astype(np.uint8)))
        np.testing.assert_array_equal(rle_decode(enc), m)
        np.testing.assert_array_equal(mask_api.decode(enc).astype(bool), m)
        unc = {"size": [h, w], "counts": runs(m)}
        np.testing.assert_array_equal(mask_api.decode(mask_api.frPyObjects(unc, h, w)).astype(bool),
                                      rle_decode(unc))


def test_polygons_agree_with_pycocotools():
    mask_api = pytest.importorskip("pycocotools.mask")
    from loupe.sources.labels import fill_polygon
    rng = np.random.default_rng(3)
    for _ in range(5):
        ang = np.sort(rng.random(9)) * 2 * np.pi
        rad = 20 + 15 * rng.random(9)
        poly = np.stack([50 + rad * np.cos(ang), 40 + rad * np.sin(ang)], 1).ravel().tolist()
        ref = mask_api.decode(mask_api.frPyObjects([poly], 80, 100)).max(-1).astype(bool)
        mine = np.zeros((80, 100), np.uint8)
        fill_polygon(mine, poly, 1)
        iou = (ref & (mine == 1)).sum() / (ref | (mine == 1)).sum()
        assert iou > 0.97, iou
        assert abs(int(ref.sum()) - int((mine == 1).sum())) <= 0.03 * ref.sum()


def coco(tmp_path, images, annotations, categories=None, name="labels.json"):
    categories = categories or [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]
    p = tmp_path / name
    p.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return p


def test_coco_boxes_categories_by_name_and_unlabelled_vs_empty(tmp_path):
    images = [{"id": 7, "file_name": "a/cat.jpg", "width": 40, "height": 30},
              {"id": 8, "file_name": "empty.jpg", "width": 40, "height": 30}]
    anns = [{"id": 1, "image_id": 7, "category_id": 18, "bbox": [2, 3, 10, 5]},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [20, 10, 30, 30]},
            {"id": 3, "image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1}]
    labels = open_labels(coco(tmp_path, images, anns))
    assert labels.names == ("person", "car", "dog")
    got = labels.get(0, "cat", (30, 40))
    np.testing.assert_allclose(got.boxes, [[2, 3, 12, 8], [20, 10, 40, 30]])  # clipped to the frame
    assert list(got.classes) == [2, 1] and got.mask is None and got.image_class is None
    np.testing.assert_allclose(got.crowd_boxes, [[0, 0, 5, 5]])
    empty = labels.get(1, "empty", (30, 40))
    assert empty is not None and empty.boxes.shape == (0, 4) and empty.classes.shape == (0,)
    assert labels.get(2, "other", (30, 40)) is None
    assert list(labels.class_map(("dog", "person"))[:3]) == [1, -1, 0]
    assert labels.unknown_names(("dog", "person")) == ["car"]


def test_coco_masks_polygon_and_rle_in_label_order(tmp_path):
    rle = np.zeros((10, 12), bool)
    rle[6:9, 1:4] = True
    images = [{"id": 1, "file_name": "frame_000004.jpg", "width": 12, "height": 10}]
    anns = [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [4, 1, 4, 3], "area": 12,
             "segmentation": [[4, 1, 8, 1, 8, 4, 4, 4]]},
            {"id": 2, "image_id": 1, "category_id": 18, "bbox": [1, 6, 3, 3], "area": 9,
             "segmentation": {"size": [10, 12], "counts": rle_string(runs(rle))}}]
    labels = open_labels(coco(tmp_path, images, anns))
    assert labels.names == ("person", "car", "dog", "background") and labels.implicit_background == 3
    assert labels.unknown_names(("person", "car", "dog")) == []
    got = labels.get(4, None, (10, 12))  # frame index from the file name
    want = np.full((10, 12), 3, np.uint8)
    want[1:4, 4:8] = 1
    want[rle] = 2
    np.testing.assert_array_equal(got.mask, want)
    assert labels.get(4, None, (20, 24)).mask.shape == (20, 24)
    assert "10x12 -> 20x24" in labels.get(4, None, (20, 24)).note
    with pytest.raises(LabelError, match="frame_000004.jpg"):
        labels.get(4, None, (10, 10))
    cm = labels.class_map(("background", "car"))
    assert list(cm[:4]) == [-1, 1, -1, 0]


def test_coco_background_category_and_image_class(tmp_path):
    cats = [{"id": 0, "name": "background"}, {"id": 5, "name": "cat"}]
    images = [{"id": 1, "file_name": "x.png", "width": 4, "height": 4, "frame_index": 9},
              {"id": 2, "file_name": "y.png", "width": 4, "height": 4, "category_id": 5}]
    anns = [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [0, 0, 2, 2],
             "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]}]
    labels = open_labels(coco(tmp_path, images, anns, cats))
    assert labels.names == ("background", "cat") and labels.implicit_background is None
    got = labels.get(9, None, (4, 4))  # frame_index field
    assert got.image_class == 1 and got.mask.sum() == 4 and (got.mask[:2, :2] == 1).all()
    assert labels.get(0, "y", (4, 4)).image_class == 1
    assert (labels.get(0, "y", (4, 4)).mask == 0).all()


def test_coco_several_inputs_in_one_file(tmp_path):
    images = [{"id": 1, "file_name": "left/frame_000000.jpg", "width": 4, "height": 4},
              {"id": 2, "file_name": "right/frame_000000.jpg", "width": 4, "height": 4}]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]},
            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [0, 0, 2, 2]}]
    path = coco(tmp_path, images, anns)
    assert list(open_labels(path, "clips/right.mp4").get(0, None, (4, 4)).classes) == [1]
    assert list(open_labels(path, "left.mp4").get(0, None, (4, 4)).classes) == [0]
    (tmp_path / "per").mkdir()
    coco(tmp_path / "per", images[:1], anns[:1], name="left.json")
    assert list(open_labels(tmp_path / "per", "left.mp4").get(0, None, (4, 4)).classes) == [0]


def test_coco_refusals(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LabelError, match="bad.json"):
        open_labels(bad)
    bad.write_text(json.dumps({"annotations": []}))
    with pytest.raises(LabelError, match="not a COCO"):
        open_labels(bad)
    p = coco(tmp_path, [{"id": 1, "file_name": "a.jpg"}], [{"id": 4, "image_id": 1, "category_id": 99, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(LabelError, match="category_id 99"):
        open_labels(p)


def test_yolo_boxes_polygons_names_and_matching(tmp_path):
    (tmp_path / "000003.txt").write_text("1 0.5 0.5 0.5 0.25\n0 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n")
    (tmp_path / "000004.txt").write_text("")
    (tmp_path / "data.yaml").write_text("path: x\nnames:\n  0: person\n  1: car\nnc: 2\n")
    labels = open_labels(tmp_path)
    assert labels.names == ("person", "car", "background")
    got = labels.get(3, None, (20, 40))
    np.testing.assert_allclose(got.boxes, [[10, 7.5, 30, 12.5], [4, 2, 12, 8]], atol=1e-5)
    assert list(got.classes) == [1, 0]
    want = np.full((20, 40), 2, np.uint8)
    want[2:8, 4:12] = 0
    np.testing.assert_array_equal(got.mask, want)
    empty = labels.get(4, None, (20, 40))
    assert empty.boxes.shape == (0, 4) and (empty.mask == 2).all()
    assert labels.get(5, None, (20, 40)) is None


def test_yolo_boxes_only_and_names_list(tmp_path):
    (tmp_path / "cat.txt").write_text("2 0.5 0.5 1 1\n")
    (tmp_path / "data.yaml").write_text("names: ['a', 'b', 'c']\n")
    labels = open_labels(tmp_path)
    assert labels.names == ("a", "b", "c")
    got = labels.get(0, "cat", (10, 10))
    assert got.mask is None and list(got.classes) == [2]
    np.testing.assert_allclose(got.boxes, [[0, 0, 10, 10]])
    (tmp_path / "dog.txt").write_text("x 1 2\n")
    with pytest.raises(LabelError, match="dog.txt"):
        open_labels(tmp_path).get(0, "dog", (10, 10))


def test_yolo_names_block_list_and_no_names(tmp_path):
    (tmp_path / "0.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "data.yaml").write_text("names:\n  - person  # people\n  - bicycle\ntrain: a\n")
    assert open_labels(tmp_path).names == ("person", "bicycle")
    (tmp_path / "data.yaml").unlink()
    labels = open_labels(tmp_path)
    assert labels.names is None and labels.get(0, None, (5, 5)).mask is None


def test_coco_masks_drawn_only_for_the_frame_asked(tmp_path, monkeypatch):
    import loupe.sources.labels_coco as mod
    m = np.zeros((6, 6), bool)
    m[2:4, 2:4] = True
    images = [{"id": i, "file_name": f"frame_{i:06d}.jpg", "width": 6, "height": 6} for i in range(500)]
    anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": [2, 2, 2, 2],
             "segmentation": {"size": [6, 6], "counts": runs(m)}} for i in range(500)]
    calls = []
    real = mod.rle_decode
    monkeypatch.setattr(mod, "rle_decode", lambda rle: calls.append(1) or real(rle))
    labels = open_labels(coco(tmp_path, images, anns))
    assert calls == []
    got = labels.get(321, None, (6, 6))
    assert len(calls) == 1 and (got.mask == 0).sum() == 4 and got.mask[0, 0] == 3
