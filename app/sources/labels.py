"""Ground-truth labels read beside a source, for scoring a model (Qt-free).

``open_labels(path, input_spec)`` gives a :class:`LabelSet`; ``LabelSet.get(index, stem, frame_hw)``
gives one frame's :class:`FrameLabels`, or ``None`` when that frame has no label (unlabelled, which
is not the same as labelled empty). Files are read when a frame is asked for, so the labels of a
10,000-frame video are never all in memory (a COCO JSON is one file: it is indexed once by image and
its masks are drawn per frame on demand).

Formats
- A folder of mask PNGs: one class index per pixel, 255 = ignore. A palette PNG is read as its
  indices, not as colours (OpenCV expands palettes to colours, so the colours are mapped back through
  the file's own PLTE chunk; where a palette repeats a colour, an 8-bit palette PNG is decoded
  here instead, and otherwise the lowest index wins). An RGB mask
  whose three channels are equal is read as one channel; any other colour mask is refused. Class
  names: from ``classes.txt`` in the folder when present, else the indices are the model's.
- A COCO JSON (``labels_coco.py``): boxes, polygons and RLE masks (both the counts list and the
  compressed string).
- A folder of YOLO ``.txt`` files: ``class cx cy w h`` (normalised) or ``class x1 y1 x2 y2 ...``
  (a normalised polygon; its bounds give the box). Lines of 5 + 3k numbers with an even count (pose)
  keep their box. Names from ``classes.txt`` or ``data.yaml``'s ``names`` (a list or an
  ``index: name`` mapping, read without a YAML library), else the indices are the model's.

Matching a frame: a file named by the image's stem (``cat.png`` for ``cat.jpg``), else by the 0-based
frame index in its name (``12.png``, ``000012.png``, ``frame_000012.png``) when the folder is named
that way. The caller passes the image's stem for image inputs and ``None`` for video frames.

Masks made from polygons (COCO, YOLO): pixels outside every polygon are *background*. When the
label's names have a class called "background" that class is used; otherwise one is appended to
``names`` (``LabelSet.implicit_background`` is its id) so that ``class_map`` maps it by name to the
model's "background" class when the model has one, and to -1 (not scored: ignore) when it has not.
Without names (YOLO with no classes file) the outside pixels are 255 (ignore). Crowd regions
(COCO ``iscrowd``) are 255 in the mask and are not among the boxes (they are in ``crowd_boxes``).

Size: a label whose size differs from the frame's is resized (nearest neighbour; boxes scaled) when
the aspect ratios agree within a pixel, with a note in ``FrameLabels.note``; otherwise
:class:`LabelError` names the file and both sizes.

With several inputs, ``path`` is a COCO file covering them all (images under a folder named by the
input's stem are picked), or a folder with one sub-folder or file per input stem.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from loupe.base.errors import LoupeError

IGNORE = 255
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
NAME_FILES = ("classes.txt", "labels.txt", "data.yaml", "dataset.yaml", "data.yml")


class LabelError(LoupeError, ValueError):
    """A label file cannot be read or does not fit its frame; the message is meant for the user."""


def _no_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


def _no_classes() -> np.ndarray:
    return np.zeros(0, np.int32)


@dataclass(frozen=True)
class FrameLabels:
    """One frame's ground truth, at the frame's size.

    mask: (H, W) uint8 class index per pixel in the label's class order, 255 = ignore; None when
        the labels have no masks. boxes: (N, 4) float32 x1, y1, x2, y2 in frame pixels; classes:
        (N,) int32 label class ids (index into ``LabelSet.names``). image_class: the image's one
        class for classification, when the labels say so. crowd_boxes: COCO crowd regions (not
        objects to find; a scorer may ignore detections on them). note: e.g. a resize.
    """

    index: int
    frame_hw: tuple[int, int]
    mask: np.ndarray | None = None
    boxes: np.ndarray = field(default_factory=_no_boxes)
    classes: np.ndarray = field(default_factory=_no_classes)
    image_class: int | None = None
    note: str = ""
    crowd_boxes: np.ndarray = field(default_factory=_no_boxes)


def norm_name(name: str) -> str:
    """A class name compared loosely: case, spaces, ``_`` and ``-`` do not matter."""
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()


class LabelSet(ABC):
    """Labels for one input. ``names``: the class names the labels give (None: the label's class ids
    are the model's own). ``source``: the path, for messages."""

    names: tuple[str, ...] | None = None
    implicit_background: int | None = None
    source: str = ""

    @abstractmethod
    def get(self, index: int, stem: str | None, frame_hw: tuple[int, int]) -> FrameLabels | None:
        """Frame ``index`` (0-based; ``stem`` = the image's file stem for image inputs, None for
        video), at ``frame_hw``; None when the frame has no label. Reads its file now."""

    def unknown_names(self, model_labels) -> list[str]:
        """The label's class names the model does not have (the appended background excluded)."""
        if self.names is None:
            return []
        have = {norm_name(n) for n in model_labels}
        return [n for i, n in enumerate(self.names)
                if i != self.implicit_background and norm_name(n) not in have]

    def class_map(self, model_labels) -> np.ndarray:
        """Label class id -> model class id (-1: not in the model), by name; the identity when
        ``names`` is None. At least 256 long so ``class_map[mask]`` works (255, ignore, -> -1)."""
        model_labels = tuple(model_labels)
        n = max(256, len(self.names or ()))
        out = np.full(n, -1, np.int64)
        if self.names is None:
            k = min(len(model_labels), IGNORE)
            out[:k] = np.arange(k)
            return out
        where = {}
        for j, name in enumerate(model_labels):
            where.setdefault(norm_name(name), j)
        for i, name in enumerate(self.names):
            out[i] = where.get(norm_name(name), -1)
        return out


# ---- size -----------------------------------------------------------------------------------------

def fit_size(label_hw: tuple[int, int], frame_hw: tuple[int, int], what: str) -> tuple[float, float, str]:
    """(scale_y, scale_x, note) to bring a label of ``label_hw`` to ``frame_hw``; LabelError when the
    aspect ratios differ by more than a pixel."""
    lh, lw = int(label_hw[0]), int(label_hw[1])
    fh, fw = int(frame_hw[0]), int(frame_hw[1])
    if (lh, lw) == (fh, fw):
        return 1.0, 1.0, ""
    if lh <= 0 or lw <= 0 or abs(lh * fw - fh * lw) > max(lw, fw):
        raise LabelError(f"{what}: the label is {lh}x{lw} (HxW) but the frame is {fh}x{fw}, "
                         f"a different aspect ratio; labels must match the frames they describe")
    return fh / lh, fw / lw, f"{what}: resized {lh}x{lw} -> {fh}x{fw} (nearest)"


def resize_mask(mask: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    h, w = int(frame_hw[0]), int(frame_hw[1])
    if mask.shape == (h, w):
        return mask
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)


# ---- polygons -------------------------------------------------------------------------------------

def fill_polygon(mask: np.ndarray, xy, value: int) -> None:
    """Set the pixels of ``mask`` whose centres lie inside the polygon ``xy`` (flat x, y, x, y ...
    in pixel coordinates, pixel (c, r) spanning [c, c+1) x [r, r+1)) to ``value``, even-odd rule.
    A rectangle polygon (0,0)-(4,3) fills exactly 4 x 3 pixels, as COCO's area counts it."""
    p = np.asarray(xy, np.float64).reshape(-1, 2)
    if len(p) < 3:
        return
    h, w = mask.shape
    x0, y0 = p[:, 0], p[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    # rows r whose centre y = r + .5 is in [lo, hi)
    r0 = np.clip(np.ceil(lo - 0.5), 0, h).astype(np.int64)
    r1 = np.clip(np.ceil(hi - 0.5), 0, h).astype(np.int64)
    n = np.maximum(r1 - r0, 0)
    if n.sum() == 0:
        return
    e = np.repeat(np.arange(len(p)), n)
    rows = np.concatenate([np.arange(a, b) for a, b in zip(r0, r1) if b > a])
    yc = rows + 0.5
    t = (yc - y0[e]) / (y1[e] - y0[e])
    xs = x0[e] + t * (x1[e] - x0[e])
    order = np.lexsort((xs, rows))
    rows, xs = rows[order], xs[order]
    # crossings pair up within a row (even-odd); fill columns whose centre is in [xa, xb)
    ra, xa, xb = rows[0::2], xs[0::2], xs[1::2]
    c0 = np.clip(np.ceil(xa - 0.5), 0, w).astype(np.int64)
    c1 = np.clip(np.ceil(xb - 0.5), 0, w).astype(np.int64)
    # only the polygon's bounding window is touched
    top, left = int(ra.min()), int(c0.min())
    bottom, right = int(ra.max()) + 1, int(c1.max())
    if right <= left:
        return
    diff = np.zeros((bottom - top, right - left + 1), np.int32)
    np.add.at(diff, (ra - top, c0 - left), 1)
    np.add.at(diff, (ra - top, c1 - left), -1)
    inside = np.cumsum(diff, axis=1)[:, : right - left] % 2 == 1
    mask[top:bottom, left:right][inside] = value


# ---- matching files to frames ---------------------------------------------------------------------

_INDEX_NAME = re.compile(r"^(\D*?)[_\-. ]?(\d+)$")


def frame_index_of(name: str) -> int | None:
    """The frame index a file stem gives (``12``, ``000012``, ``frame_000012``), else None."""
    m = _INDEX_NAME.match(name)
    return int(m.group(2)) if m else None


class FileIndex:
    """Files of one folder by stem, and by frame index when every stem is one."""

    def __init__(self, paths):
        self.by_stem: dict[str, Path] = {}
        self.by_index: dict[int, Path] = {}
        for p in sorted(paths):
            self.by_stem.setdefault(p.stem, p)
        prefixes = set()
        for stem, p in self.by_stem.items():
            m = _INDEX_NAME.match(stem)
            if m is None:
                self.by_index.clear()
                break
            prefixes.add(m.group(1))
            self.by_index.setdefault(int(m.group(2)), p)
        if len(prefixes) > 1:
            self.by_index.clear()

    def __len__(self) -> int:
        return len(self.by_stem)

    def find(self, index: int, stem: str | None) -> Path | None:
        if stem is not None and stem in self.by_stem:
            return self.by_stem[stem]
        return self.by_index.get(int(index))


# ---- names ----------------------------------------------------------------------------------------

def _yaml_names(text: str) -> tuple[str, ...] | None:
    """``names`` from a YOLO data.yaml without a YAML library: ``names: [a, b]``, or a block of
    ``- a`` items or ``0: a`` entries under ``names:``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^names\s*:\s*(.*?)\s*(#.*)?$", line)
        if not m:
            continue
        rest = m.group(1)
        if rest.startswith("["):
            body = rest.strip("[]")
            try:
                return tuple(str(v) for v in json.loads("[" + body + "]"))
            except ValueError:
                return tuple(v.strip().strip("'\"") for v in body.split(",") if v.strip())
        if rest.startswith("{"):
            items = [v.split(":", 1) for v in rest.strip("{}").split(",") if ":" in v]
            got = {int(k.strip()): v.strip().strip("'\"") for k, v in items}
            return tuple(got[k] for k in sorted(got))
        got: dict[int, str] = {}
        seq: list[str] = []
        for item in lines[i + 1:]:
            if not item.strip() or item.lstrip().startswith("#"):
                continue
            if not item[:1].isspace():
                break
            s = re.sub(r"\s+#.*$", "", item).strip()
            if s.startswith("- "):
                seq.append(s[2:].strip().strip("'\""))
            elif ":" in s:
                k, v = s.split(":", 1)
                if k.strip().isdigit():
                    got[int(k)] = v.strip().strip("'\"")
        if seq:
            return tuple(seq)
        if got:
            return tuple(got.get(k, str(k)) for k in range(max(got) + 1))
    return None


def read_names(folder: Path) -> tuple[str, ...] | None:
    """Class names from ``classes.txt`` / ``labels.txt`` (one a line) or ``data.yaml``, or None."""
    for name in NAME_FILES:
        p = folder / name
        if not p.is_file():
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        if p.suffix == ".txt":
            return tuple(line.strip() for line in text.splitlines() if line.strip())
        names = _yaml_names(text)
        if names:
            return names
    return None


def with_background(names: tuple[str, ...] | None) -> tuple[tuple[str, ...] | None, int | None, int]:
    """(names, implicit background id or None, the id outside polygons get) for polygon masks."""
    if names is None:
        return None, None, IGNORE
    for i, n in enumerate(names):
        if norm_name(n) == "background":
            return names, None, i
    return (*names, "background"), len(names), len(names)


# ---- mask PNGs ------------------------------------------------------------------------------------

def _png_palette(path: Path) -> np.ndarray | None:
    """The PLTE chunk of a palette PNG as (N, 3) uint8 RGB, or None for any other image."""
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            return None
        colour_type = None
        while True:
            head = f.read(8)
            if len(head) < 8:
                return None
            size, kind = struct.unpack(">I4s", head)
            data = f.read(size)
            f.read(4)
            if kind == b"IHDR":
                colour_type = data[9]
                if colour_type != 3:
                    return None
            elif kind == b"PLTE":
                return np.frombuffer(data, np.uint8).reshape(-1, 3)
            elif kind in (b"IDAT", b"IEND"):
                return None


def _png_indices(path: Path) -> np.ndarray | None:
    """The indices of an 8-bit, non-interlaced palette PNG decoded here (zlib and the five row
    filters of the PNG spec), for palettes that repeat a colour; None for other PNGs."""
    data = path.read_bytes()
    pos, idat, head = 8, [], None
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + size]
        pos += 12 + size
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if head is None or head[2] != 8 or head[3] != 3 or head[6] != 0:
        return None
    w, h = head[0], head[1]
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)[: h * (w + 1)].reshape(h, w + 1)
    except (zlib.error, ValueError):
        return None
    out = np.zeros((h, w), np.uint8)
    prev = np.zeros(w, np.int64)
    for r in range(h):
        f, row = int(raw[r, 0]), raw[r, 1:].astype(np.int64)
        if f == 1:
            row = np.cumsum(row) % 256
        elif f == 2:
            row = (row + prev) % 256
        elif f in (3, 4):
            vals, up, left = row.tolist(), prev.tolist(), 0
            for i in range(w):
                ul = up[i - 1] if i else 0
                if f == 3:
                    pred = (left + up[i]) // 2
                else:
                    p = left + up[i] - ul
                    pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - ul)
                    pred = left if pa <= pb and pa <= pc else (up[i] if pb <= pc else ul)
                left = vals[i] = (vals[i] + pred) & 255
            row = np.asarray(vals, np.int64)
        elif f != 0:
            return None
        out[r] = row
        prev = row
    return out


def read_mask(path: Path) -> np.ndarray:
    """A mask file as (H, W) uint8 class indices (palette PNGs: their indices)."""
    palette = _png_palette(path) if path.suffix.lower() == ".png" else None
    if palette is not None and len(np.unique(palette, axis=0)) < len(palette):
        idx = _png_indices(path)
        if idx is not None:
            return idx
    flag = cv2.IMREAD_COLOR if palette is not None else cv2.IMREAD_UNCHANGED
    img = cv2.imread(str(path), flag)
    if img is None:
        raise LabelError(f"{path}: cannot read this label mask (not an image, or damaged)")
    if palette is not None:
        rgb = img[..., ::-1].astype(np.int64)
        key = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        pk = (palette[:, 0].astype(np.int64) << 16) | (palette[:, 1].astype(np.int64) << 8) | palette[:, 2]
        lut: dict[int, int] = {}
        for i in range(len(pk) - 1, -1, -1):
            lut[int(pk[i])] = i
        uniq, inv = np.unique(key, return_inverse=True)
        idx = np.array([lut.get(int(u), -1) for u in uniq], np.int64)
        if (idx < 0).any():
            raise LabelError(f"{path}: a palette mask with colours outside its palette")
        return idx[inv].reshape(key.shape).astype(np.uint8)
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[..., :3]
        if (img == img[..., :1]).all():
            img = img[..., 0]
        else:
            raise LabelError(f"{path}: a colour mask; label masks must hold one class index per pixel "
                             f"(greyscale or palette PNG, 255 = ignore)")
    if img.dtype != np.uint8:
        if img.size and (img.min() < 0 or img.max() > 255):
            raise LabelError(f"{path}: mask values {img.min()}..{img.max()} do not fit class indices 0..255")
        img = img.astype(np.uint8)
    return img


class MaskFolderLabels(LabelSet):
    """A folder of mask images, one per frame."""

    def __init__(self, folder: Path, files=None):
        self.source = str(folder)
        self.names = read_names(folder)
        files = files if files is not None else [p for p in folder.iterdir()
                                                 if p.suffix.lower() in MASK_SUFFIXES]
        self.files = FileIndex(files)

    def get(self, index, stem, frame_hw):
        path = self.files.find(index, stem)
        if path is None:
            return None
        mask = read_mask(path)
        _, _, note = fit_size(mask.shape[:2], frame_hw, path.name)
        return FrameLabels(index=int(index), frame_hw=(int(frame_hw[0]), int(frame_hw[1])),
                           mask=resize_mask(mask, frame_hw), note=note)


# ---- YOLO .txt ------------------------------------------------------------------------------------

def _yolo_rows(path: Path) -> list[list[float]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            vals = [float(v) for v in parts]
        except ValueError:
            raise LabelError(f"{path}: line {n} is not numbers: {line.strip()[:60]!r}") from None
        if len(vals) < 5 or vals[0] != int(vals[0]) or vals[0] < 0:
            raise LabelError(f"{path}: line {n} is not 'class cx cy w h' or 'class x1 y1 x2 y2 ...'")
        rows.append(vals)
    return rows


def _is_polygon(vals: list[float]) -> bool:
    return len(vals) > 5 and len(vals) % 2 == 1


class YoloLabels(LabelSet):
    """A folder of YOLO .txt files, one per frame, coordinates normalised to [0, 1]."""

    def __init__(self, folder: Path, files=None):
        self.source = str(folder)
        files = files if files is not None else [p for p in folder.iterdir() if p.suffix.lower() == ".txt"
                                                 and p.name not in NAME_FILES]
        self.files = FileIndex(files)
        # polygons somewhere (a look at the first files): every frame gets a mask
        self.has_masks = False
        for p in list(self.files.by_stem.values())[:50]:
            rows = _yolo_rows(p)
            if rows:
                self.has_masks = any(_is_polygon(r) for r in rows)
                break
        names = read_names(folder)
        self.names, self.implicit_background, self.outside = (
            with_background(names) if self.has_masks else (names, None, IGNORE))

    def get(self, index, stem, frame_hw):
        path = self.files.find(index, stem)
        if path is None:
            return None
        h, w = int(frame_hw[0]), int(frame_hw[1])
        rows = _yolo_rows(path)
        boxes, classes = [], []
        mask = np.full((h, w), self.outside, np.uint8) if self.has_masks else None
        for vals in rows:
            c = int(vals[0])
            if _is_polygon(vals):
                xy = np.asarray(vals[1:], np.float64).reshape(-1, 2) * (w, h)
                box = [xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()]
                if mask is not None:
                    fill_polygon(mask, xy.ravel(), min(c, IGNORE))
            else:
                cx, cy, bw, bh = vals[1:5]
                box = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
            boxes.append(box)
            classes.append(c)
        b = np.clip(np.asarray(boxes, np.float32).reshape(-1, 4), 0, [w, h, w, h]).astype(np.float32)
        return FrameLabels(index=int(index), frame_hw=(h, w), mask=mask, boxes=b,
                           classes=np.asarray(classes, np.int32))


# ---- opening --------------------------------------------------------------------------------------

def _input_stem(input_spec: str | None) -> str | None:
    if not input_spec:
        return None
    name = Path(str(input_spec).rstrip("/\\")).name
    return Path(name).stem or name


def open_labels(path, input_spec: str | None = None) -> LabelSet:
    """The labels at ``path`` (mask folder, COCO JSON, YOLO folder) for the input ``input_spec``
    (its path, used to pick a sub-folder or file named by its stem when there are several)."""
    path = Path(path)
    if not path.exists():
        raise LabelError(f"{path}: no such label file or folder")
    stem = _input_stem(input_spec)
    if path.is_file():
        if path.suffix.lower() == ".json":
            from loupe.sources.labels_coco import CocoLabels
            return CocoLabels(path, stem)
        raise LabelError(f"{path}: not a label file Loupe reads (a COCO .json, or a folder of mask "
                         f"images or YOLO .txt files)")
    if stem is not None:
        for cand in (path / stem, path / f"{stem}.json"):
            if cand.exists() and cand != path:
                return open_labels(cand)
    entries = list(path.iterdir())
    masks = [p for p in entries if p.is_file() and p.suffix.lower() in MASK_SUFFIXES]
    texts = [p for p in entries if p.is_file() and p.suffix.lower() == ".txt"
             and p.name not in NAME_FILES]
    jsons = [p for p in entries if p.is_file() and p.suffix.lower() == ".json"]
    if masks and len(masks) >= len(texts):
        return MaskFolderLabels(path, masks)
    if texts:
        return YoloLabels(path, texts)
    if len(jsons) == 1:
        from loupe.sources.labels_coco import CocoLabels
        return CocoLabels(jsons[0], stem)
    subs = sorted(p.name for p in entries if p.is_dir())
    if subs:
        raise LabelError(f"{path}: no labels for input {stem!r}: this folder has one sub-folder per "
                         f"input ({', '.join(subs[:5])}{', ...' if len(subs) > 5 else ''})")
    raise LabelError(f"{path}: no label files (mask images, YOLO .txt or a COCO .json) in this folder")
