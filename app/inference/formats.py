"""Which detection output formats a model's output shapes fit (Qt-free, no numpy).

The shape knowledge shared by the guesser (``loupe.inference.guess``, which may not import
``loupe.tasks``) and the detection task. A format is chosen from the output shapes and the
exporter's metadata, never from the model's name. Shapes are ONNX shapes: each dimension an
int, or a string/None where the export left it dynamic.

=====================  =====================================================================
format                 outputs (batch first; ``C`` classes; ``A`` anchors; ``Q``/``K`` queries)
=====================  =====================================================================
``yolov5``             one ``1 x A x (5 + C)``: cx, cy, w, h, objectness, class scores
``yolov8``             one ``1 x (4 + C) x A``: cx, cy, w, h, class scores (YOLOv8, YOLO11,
                       YOLOv10 exported without its end-to-end head)
``end2end``            one ``1 x K x 6``: x1, y1, x2, y2, score, class (NMS already done)
``detr``               ``1 x Q x 4`` normalised cx, cy, w, h + ``1 x Q x (C + 1)`` class logits
                       whose last class is "no object" (softmax)
``rtdetr``             ``1 x Q x 4`` + ``1 x Q x C`` sigmoid class scores, or one ``1 x Q x (4 + C)``
``boxes_scores_labels``  ``[1 x] K x 4`` boxes + ``[1 x] K`` scores + ``[1 x] K`` labels, and
                       optionally a detection count (torchvision, TensorRT EfficientNMS)
=====================  =====================================================================

Telling them apart from shapes alone:

- Anchor grids are long: a YOLO head at stride 8/16/32 has ``A = sum (h/s) x (w/s)`` anchors (x 3
  for YOLOv5's anchor boxes): 8,400 (25,200) at 640 x 640, and at least 336 (1,008) at 128 x 128.
  When the input size is fixed, ``A`` must be such a sum (strides 8-32, 8-64 or 4-32).
- Query heads keep few: DETR 100, RT-DETR and end-to-end exports 300 (``QUERIES_MAX`` at most);
  a one-output RT-DETR ``1 x Q x (4 + C)`` with more columns than queries is only taken when the
  metadata's labels say ``C``.
- With the number of labels known (metadata), the class count must agree: ``5 + C`` is YOLOv5,
  ``4 + C`` YOLOv8 or RT-DETR, ``C + 1`` DETR.

Some shapes fit several formats (``1 x 300 x 6``: end2end, or RT-DETR with 2 classes); then every
one is returned and the caller asks (or the metadata decides, e.g. Ultralytics' ``end2end``).

``FormatMatch.outputs`` names the output of each role, as the card's ``loupe.output`` ``outputs``
object: ``{"predictions": name}`` for the one-output formats, ``{"boxes": .., "scores": ..}`` for
two-output DETR/RT-DETR (``scores``: the class logits or scores), ``{"boxes": .., "scores": ..,
"labels": ..[, "count": ..]}`` for ``boxes_scores_labels``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

DETECTION_FORMATS = ("yolov5", "yolov8", "end2end", "detr", "rtdetr", "boxes_scores_labels")
NEEDS_NMS = frozenset({"yolov5", "yolov8"})
QUERIES_MAX = 1000  # query heads (DETR 100, RT-DETR / end-to-end 300) keep at most this many boxes
STRIDE_SETS = ((8, 16, 32), (8, 16, 32, 64), (4, 8, 16, 32))  # P3-P5, P3-P6, P2-P5 heads


@dataclass(frozen=True)
class FormatMatch:
    """One detection format the outputs fit: its name, the classes the shapes imply (None when a
    dynamic or shared dimension leaves it open), the output of each role and a one-line reason."""

    format: str
    n_classes: int | None
    outputs: dict[str, str] = field(default_factory=dict)
    reason: str = ""


def dim(d: Any) -> int | None:
    """A dimension as an int, or None when it is dynamic (a name, None, or <= 0)."""
    return d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else None


def dims_text(shape: Sequence[Any]) -> str:
    """``1x84x8400``; a dynamic dimension shows its name (or ``?``)."""
    return "x".join(str(d) if d not in (None, "") else "?" for d in shape) or "scalar"


def anchor_counts(hw: tuple[int, int], per_cell: int = 1) -> set[int]:
    """Anchor counts a YOLO head could have for an input of ``hw`` (each stride set; feature maps
    of ceil(h / s) x ceil(w / s) cells, also floor for exports that crop)."""
    h, w = hw
    counts = set()
    for strides in STRIDE_SETS:
        for rnd in (math.ceil, math.floor):
            counts.add(per_cell * sum(int(rnd(h / s)) * int(rnd(w / s)) for s in strides))
    return counts


def _is_int(dtype: str) -> bool:
    return "int" in (dtype or "")


def _batch_ok(shape: Sequence[Any]) -> bool:
    b = dim(shape[0])
    return b is None or b == 1


def _anchors_fit(a: int | None, input_hw: tuple[int, int] | None, per_cell: int) -> bool:
    if a is None or input_hw is None:
        return True
    return a in anchor_counts(input_hw, per_cell)


def _single(out: Any, n_labels: int | None, input_hw: tuple[int, int] | None) -> list[FormatMatch]:
    shape = tuple(out.shape)
    if len(shape) != 3 or not _batch_ok(shape) or _is_int(getattr(out, "dtype", "")):
        return []
    a, b = dim(shape[1]), dim(shape[2])
    txt = f"one output {dims_text(shape)}"
    role = {"predictions": out.name}
    found: list[FormatMatch] = []
    few = a is not None and a <= QUERIES_MAX
    if b == 6 and (a is None or few):
        found.append(FormatMatch("end2end", n_labels, role, f"{txt}: K x (x1, y1, x2, y2, score, class), NMS done"))
    if a is not None and a >= 5 and (b is None or b > a) and _anchors_fit(b, input_hw, 1):
        c = a - 4
        if n_labels is None or c == n_labels:
            found.append(FormatMatch("yolov8", c, role, f"{txt}: (4 + {c} classes) x {b or 'A'} anchors"))
    if b is not None and b >= 6 and (a is None or a > b) and _anchors_fit(a, input_hw, 3):
        c = b - 5
        if (n_labels is None or c == n_labels) and (a is None or not few or input_hw is not None):
            found.append(FormatMatch("yolov5", c, role, f"{txt}: {a or 'A'} anchors x (5 + {c} classes)"))
    # more class columns than queries: only when the metadata's labels say so (else an anchor axis)
    if b is not None and b >= 5 and few and a > 1 and (b <= a or n_labels == b - 4):
        c = b - 4
        if n_labels is None or c == n_labels:
            found.append(FormatMatch("rtdetr", c, role, f"{txt}: {a} queries x (4 box + {c} class scores)"))
    return found


def _box_role(outs: Sequence[Any]) -> list[int]:
    """Indices of the outputs that can hold boxes: ``[1 x] K x 4`` floats."""
    idx = []
    for i, o in enumerate(outs):
        s = tuple(o.shape)
        if len(s) in (2, 3) and dim(s[-1]) == 4 and not _is_int(getattr(o, "dtype", "")) and (len(s) == 2 or _batch_ok(s)):
            idx.append(i)
    return idx


def _same(d1: Any, d2: Any) -> bool:
    """Two dimensions that can be the same count: equal ints, or both dynamic."""
    return (dim(d1) is None and dim(d2) is None) or (dim(d1) is not None and dim(d1) == dim(d2))


def _pair(outs: Sequence[Any], n_labels: int | None) -> list[FormatMatch]:
    """DETR / RT-DETR with two outputs: boxes ``1 x Q x 4`` and class scores ``1 x Q x K``."""
    boxes = _box_role(outs)
    if not boxes:
        return []
    if len(boxes) == 2:  # both end in 4 (4 classes): a name that says "box" decides, else the first
        named = [i for i in boxes if "box" in outs[i].name.lower()]
        boxes = named[:1] or boxes[:1]
    bi = boxes[0]
    si = 1 - bi
    b, s = tuple(outs[bi].shape), tuple(outs[si].shape)
    if len(b) != 3 or len(s) != 3 or not _batch_ok(s) or not _same(b[1], s[1]) or _is_int(outs[si].dtype):
        return []
    k = dim(s[2])
    if k is None:
        return []
    q = dim(b[1])
    if q is not None and q > QUERIES_MAX:
        return []
    roles = {"boxes": outs[bi].name, "scores": outs[si].name}
    txt = f"outputs {dims_text(b)} (boxes) + {dims_text(s)}"
    found = []
    if k >= 2 and (n_labels is None or k - 1 == n_labels):
        found.append(FormatMatch("detr", k - 1, roles, f"{txt}: {k - 1} class logits + no-object"))
    if n_labels is None or k == n_labels:
        found.append(FormatMatch("rtdetr", k, roles, f"{txt}: {k} sigmoid class scores"))
    return found


def _named(o: Any, words: tuple[str, ...]) -> bool:
    return any(w in o.name.lower() for w in words)


def _boxes_scores_labels(outs: Sequence[Any]) -> list[FormatMatch]:
    """Separate boxes, scores and labels (and maybe a count): torchvision, TensorRT EfficientNMS."""
    boxes = [i for i in _box_role(outs) if len(outs[i].shape) in (2, 3)]
    if len(boxes) != 1:
        return []
    bi = boxes[0]
    b = tuple(outs[bi].shape)
    lead = b[:-1]  # [1,] K
    per_box, count = [], []
    for i, o in enumerate(outs):
        if i == bi:
            continue
        s = tuple(o.shape)
        if len(s) == len(lead) and all(_same(x, y) for x, y in zip(s, lead)):
            per_box.append(i)
        elif len(s) <= 2 and (len(s) < 2 or dim(s[-1]) == 1):  # [N] or N x 1: boxes kept per image
            count.append(i)
        else:
            return []
    if len(per_box) != 2 or len(count) > 1:
        return []
    i, j = per_box
    oi, oj = outs[i], outs[j]
    if _is_int(oi.dtype) != _is_int(oj.dtype):
        si, li = (j, i) if _is_int(oi.dtype) else (i, j)
    elif _named(oi, ("score", "conf")) or _named(oj, ("label", "class", "cls")):
        si, li = i, j
    elif _named(oj, ("score", "conf")) or _named(oi, ("label", "class", "cls")):
        si, li = j, i
    else:
        return []  # two float outputs and no name to tell scores from labels
    roles = {"boxes": outs[bi].name, "scores": outs[si].name, "labels": outs[li].name}
    if count:
        roles["count"] = outs[count[0]].name
    reason = (f"outputs {dims_text(b)} boxes, {dims_text(outs[si].shape)} scores, "
              f"{dims_text(outs[li].shape)} labels" + (" and a detection count" if count else ""))
    return [FormatMatch("boxes_scores_labels", None, roles, reason)]


def detection_formats_for(outputs: Sequence[Any], n_labels: int | None = None,
                          input_hw: tuple[int, int] | None = None) -> list[FormatMatch]:
    """Every detection format the outputs fit, most likely first ([] when none does).

    ``outputs``: objects with ``.name``, ``.shape`` and ``.dtype`` (``TensorInfo``); ``n_labels``:
    the number of class names the metadata gives (the shapes must then agree); ``input_hw``: the
    model's fixed input size, when it has one (anchor counts are checked against it)."""
    outs = list(outputs)
    if not outs:
        return []
    if len(outs) == 1:
        return _single(outs[0], n_labels, input_hw)
    # old YOLOv5 exports: the decoded 1 x A x (5 + C) plus each level's raw 1 x 3 x h x w x (5 + C)
    rank3 = [o for o in outs if len(o.shape) == 3]
    if len(rank3) == 1 and all(len(o.shape) == 5 for o in outs if o is not rank3[0]):
        last = dim(rank3[0].shape[2])
        if last is not None and all(dim(o.shape[4]) == last for o in outs if o is not rank3[0]):
            return [m for m in _single(rank3[0], n_labels, input_hw) if m.format == "yolov5"]
    if len(outs) == 2:
        found = _pair(outs, n_labels)
        if found:
            return found
    if len(outs) in (3, 4):
        return _boxes_scores_labels(outs)
    return []


def pose_layout(outputs: Sequence[Any], n_labels: int | None, kpt_shape: Any) -> tuple[int, int] | None:
    """(K, values per keypoint) of a ``yolov8-pose`` export (Ultralytics pose: one output ``1 x
    (4 + C + K x d) x A``, d = 2 or 3) from its ``kpt_shape`` metadata (``[17, 3]``, as text or a
    list; absent: COCO's [17, 3]); None when the output does not fit it (with ``n_labels``: C)."""
    nums = [int(v) for v in re.findall(r"\d+", str(kpt_shape))] if kpt_shape not in (None, "") else [17, 3]
    if len(outputs) != 1 or len(nums) != 2 or nums[0] < 1 or nums[1] not in (2, 3):
        return None
    s = tuple(outputs[0].shape)
    if len(s) != 3 or not _batch_ok(s):
        return None
    values = [d for d in (dim(s[1]), dim(s[2])) if d is not None]
    extra = 4 + nums[0] * nums[1]
    if values and not any(v - extra >= 1 and (n_labels is None or v - extra == n_labels) for v in values):
        return None
    return nums[0], nums[1]


def segment_outputs(outputs: Sequence[Any], n_labels: int | None = None) -> dict[str, str] | None:
    """The roles of a ``yolov8-seg`` export's outputs (YOLOv8 / YOLO11 segment): predictions
    ``1 x (4 + C + M) x A`` (box, class scores, M mask coefficients) and prototypes
    ``1 x M x mh x mw``; None when they are not such a pair (with ``n_labels``: the C it says)."""
    outs = list(outputs)
    if len(outs) != 2:
        return None
    three = [o for o in outs if len(o.shape) == 3]
    four = [o for o in outs if len(o.shape) == 4]
    if len(three) != 1 or len(four) != 1 or not _batch_ok(three[0].shape) or not _batch_ok(four[0].shape):
        return None
    pred, protos = three[0], four[0]
    m, values = dim(protos.shape[1]), dim(pred.shape[1])
    if m is not None and values is not None and (values <= 4 + m or (n_labels is not None and values != 4 + n_labels + m)):
        return None
    return {"predictions": pred.name, "protos": protos.name}
