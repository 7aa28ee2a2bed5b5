"""COCO JSON labels: boxes, polygons and RLE masks, read lazily per frame (Qt-free).

The file is parsed and indexed once (images by the stem of ``file_name``'s basename and by frame
index, annotations by image); a frame's mask is drawn when that frame is asked for.

- Images: matched by the stem of ``file_name``'s basename; video frames by a ``frame_index`` field
  (0-based; else ``frame_id``, as mmtracking's CocoVID writes it) or the frame number in the file name (``frame_000012.jpg``), as CVAT and others export
  video. With several inputs in one file, the images under a folder named by the input's stem
  (``bikes/frame_000012.jpg`` for ``bikes.mp4``) are that input's.
- Categories: in id order (COCO's ids have gaps); ``names`` are their names and the label class ids
  are positions in that order.
- Masks (only when some annotation has a ``segmentation``): polygons are filled at pixel centres;
  RLE is decoded here, both the uncompressed ``counts`` list and the compressed string (COCO's
  6-bit character encoding with differences from the count two back, as pycocotools' maskApi.c
  describes it). Larger annotations are drawn first so small objects stay visible. Outside every
  annotation: the "background" category, or an appended one (see ``loupe.sources.labels``).
  Crowd annotations are 255 (ignore) in the mask and go to ``crowd_boxes``, not ``boxes``.
- ``image_class``: an image's ``category_id`` field, else the one category of all its annotations.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from loupe.sources.labels import (
    IGNORE,
    FrameLabels,
    LabelError,
    LabelSet,
    fill_polygon,
    fit_size,
    frame_index_of,
    resize_mask,
    with_background,
)


def rle_counts_from_string(s: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string: each number is 5-bit groups (low first) in
    characters offset by 48, bit 0x20 = more groups follow, bit 0x10 of the last group = negative;
    from the third number on, each is stored as its difference from the number two before."""
    counts: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x = k = 0
        more = True
        while more:
            if p >= n:
                raise ValueError("truncated RLE string")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_decode(rle: dict) -> np.ndarray:
    """A COCO RLE (``{"size": [h, w], "counts": list | str}``) as an (h, w) bool array. Runs
    alternate 0s and 1s starting with 0s, in column-major order."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = rle_counts_from_string(counts)
    counts = np.asarray(counts, np.int64)
    if (counts < 0).any() or counts.sum() != h * w:
        raise ValueError(f"RLE runs add up to {int(counts.sum())}, not {h}x{w} = {h * w}")
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    return flat.reshape(w, h).T


class CocoLabels(LabelSet):
    """Labels from one COCO JSON file (optionally only the images of one input)."""

    def __init__(self, path: Path, input_stem: str | None = None):
        self.source = str(path)
        self.path = Path(path)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise LabelError(f"{path}: cannot read this COCO JSON ({e})") from None
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise LabelError(f"{path}: not a COCO JSON (no 'images' list)")
        cats = sorted(data.get("categories") or [], key=lambda c: c["id"])
        self.cat_index = {c["id"]: i for i, c in enumerate(cats)}
        names = tuple(str(c.get("name", c["id"])) for c in cats)
        anns = data.get("annotations") or []
        self.has_masks = any(a.get("segmentation") for a in anns)
        if self.has_masks:
            self.names, self.implicit_background, self.outside = with_background(names)
        else:
            self.names, self.implicit_background, self.outside = names, None, IGNORE
        images = [im for im in data["images"] if isinstance(im, dict) and "id" in im]
        if input_stem is not None:
            mine = [im for im in images
                    if input_stem in Path(str(im.get("file_name", ""))).parts[:-1]]
            if mine:
                images = mine
        self.images = {im["id"]: im for im in images}
        self.by_stem: dict[str, dict] = {}
        self.by_index: dict[int, dict] = {}
        for im in images:
            stem = Path(str(im.get("file_name", "")).replace("\\", "/")).stem
            self.by_stem.setdefault(stem, im)
            fi = im.get("frame_index", im.get("frame_id"))
            if fi is None:
                fi = frame_index_of(stem)
            if fi is not None:
                self.by_index.setdefault(int(fi), im)
        self.anns: dict = {}
        for a in anns:
            if a.get("image_id") in self.images:
                if a.get("category_id") not in self.cat_index:
                    raise LabelError(f"{path}: annotation {a.get('id')} has category_id "
                                     f"{a.get('category_id')}, which is not among the categories")
                self.anns.setdefault(a["image_id"], []).append(a)

    def find(self, index: int, stem: str | None) -> dict | None:
        if stem is not None and stem in self.by_stem:
            return self.by_stem[stem]
        return self.by_index.get(int(index))

    def get(self, index, stem, frame_hw):
        im = self.find(index, stem)
        if im is None:
            return None
        fh, fw = int(frame_hw[0]), int(frame_hw[1])
        ih, iw = int(im.get("height") or fh), int(im.get("width") or fw)
        what = f"{self.path.name} image {im.get('file_name', im['id'])!r}"
        sy, sx, note = fit_size((ih, iw), (fh, fw), what)
        anns = self.anns.get(im["id"], [])
        boxes, classes, crowd = [], [], []
        for a in anns:
            bb = a.get("bbox")
            if bb is None or len(bb) != 4:
                continue
            x, y, w, h = (float(v) for v in bb)
            (crowd if a.get("iscrowd") else boxes).append([x * sx, y * sy, (x + w) * sx, (y + h) * sy])
            if not a.get("iscrowd"):
                classes.append(self.cat_index[a["category_id"]])
        mask = self._mask(anns, (ih, iw), what) if self.has_masks else None
        if mask is not None:
            mask = resize_mask(mask, (fh, fw))
        image_class = None
        if im.get("category_id") in self.cat_index:
            image_class = self.cat_index[im["category_id"]]
        else:
            kinds = {a["category_id"] for a in anns}
            if len(kinds) == 1:
                image_class = self.cat_index[kinds.pop()]
        lim = np.array([fw, fh, fw, fh], np.float32)
        return FrameLabels(
            index=int(index), frame_hw=(fh, fw), mask=mask,
            boxes=np.clip(np.asarray(boxes, np.float32).reshape(-1, 4), 0, lim),
            classes=np.asarray(classes, np.int32), image_class=image_class, note=note,
            crowd_boxes=np.clip(np.asarray(crowd, np.float32).reshape(-1, 4), 0, lim))

    def _mask(self, anns: list, hw: tuple[int, int], what: str) -> np.ndarray:
        mask = np.full(hw, self.outside, np.uint8)
        order = sorted(anns, key=lambda a: -float(a.get("area") or 0))
        for a in order:
            seg = a.get("segmentation")
            if not seg:
                continue
            value = IGNORE if a.get("iscrowd") else min(self.cat_index[a["category_id"]], IGNORE - 1)
            try:
                if isinstance(seg, list):  # an object's polygon parts: their union, drawn in place
                    for poly in seg:
                        if len(poly) >= 6:
                            fill_polygon(mask, poly, value)
                    continue
                m = rle_decode(seg)
            except (ValueError, TypeError, KeyError) as e:
                raise LabelError(f"{what}: annotation {a.get('id')}: bad segmentation ({e})") from None
            if m.shape != hw:
                raise LabelError(f"{what}: annotation {a.get('id')}: its mask is {m.shape[0]}x"
                                 f"{m.shape[1]} but the image is {hw[0]}x{hw[1]}")
            mask[m] = value
        return mask
