"""A card for a model that carries none: exporter metadata first, then output shapes (Qt-free).

A model with a ``loupe.*`` card or a sidecar ``M.onnx.loupe.json`` is never guessed. For the
others, ``guess_card`` reads what other exporters write and the output shapes, and returns the
candidate tasks (each with a card and a one-line reason) and a note. Nothing from the model file
is executed: metadata values are parsed as JSON or Python literals (``ast.literal_eval``, never
``eval``), and the model's file name plays no part.

Decision table (first row that applies):

====================================================  =============================================
what the model carries                                card
====================================================  =============================================
Ultralytics metadata, ``task: detect``                detection, no question (origin ``ultralytics``):
                                                      ``end2end`` when ``end2end`` (or ``nms``) is
                                                      true and the output is 1 x K x 6 (or with no
                                                      flag, when only that fits); ``yolov8`` for
                                                      1 x (4 + C) x A; letterbox to ``imgsz`` padded
                                                      with 114. An RT-DETR (``head: RTDETRDecoder``)
                                                      is stretched to ``imgsz``, not letterboxed:
                                                      ``rtdetr`` for 1 x Q x (4 + C), or, as
                                                      Ultralytics 8.4 exports it (top-k in the
                                                      graph), ``end2end`` of normalised cx, cy, w, h,
                                                      score, class. Labels from ``names``; RGB / 255;
                                                      score 0.25, IoU 0.7, at most 300
Ultralytics metadata, ``task: classify``              classification of probabilities (the export
                                                      ends in a softmax), ``imgsz`` centre crop
Ultralytics metadata, ``task: segment``               instances, format ``yolov8-seg`` (predictions
                                                      with mask coefficients + prototypes), letterboxed
Ultralytics metadata, ``task: pose``                  keypoints, format ``yolov8-pose`` (``kpt_shape``
                                                      keypoints after the class scores), letterboxed
Ultralytics ``obb``, other                            refused with one line (not supported yet)
a ``character`` entry (Paddle), ``names``,            labels; the task is then guessed from the
``labels``, ``classes`` or ``class_names``            shapes below, and every candidate must have
(JSON or Python literal list / {index: name})         that many classes
one output N x C x h x w, C >= 2 (h x w not 1 x 1)    segmentation of logits (``probabilities`` when
                                                      the graph ends in a Softmax); N x h x w x C
                                                      (``layout`` NHWC) when the middle axes are the
                                                      dynamic ones, or the ones that scale to the input
one output N x 1 x h x w                              ambiguous: density, a segmentation
                                                      ``probability`` map (a text or lesion detector's
                                                      sigmoid map: first after a Sigmoid) or depth
                                                      (relative); asked, never taken silently.
                                                      N x h x w x 1 (NHWC): depth (and segmentation
                                                      after a Sigmoid)
one float output N x h x w at the input's scale       ambiguous: density or depth (relative)
one output N x C, C, N x C x 1 x 1 or N x 1 x 1 x C  classification (``probabilities`` when the
                                                      graph ends in a Softmax, else ``logits``)
outputs of a detection format                         detection (``loupe.inference.formats``); a
(``loupe.inference.formats``)                         shape several formats fit is ambiguous
anything else (e.g. a raw head's per-level outputs)   refused with one line: what was found, and
                                                      how to describe it (a sidecar, a card, a
                                                      plug-in)
====================================================  =============================================

The anomaly, codebook and compression tasks are never guessed: their models need their cards.
A guessed card (origin ``inferred``) is confirmed by the user: the window asks, listing the
candidates first, and saves the answer as a sidecar; ``loupe analyze`` runs a single candidate
with a one-line note, and exits 2 naming the candidates when there are several (``--task NAME``
picks one). Images are assumed RGB scaled to [0, 1], at the input's fixed size when it has one,
else padded to a multiple of 32.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loupe.base.errors import LoupeError
from loupe.inference.card import InputSpec, ModelCard, sidecar_path
from loupe.inference.formats import (
    NEEDS_NMS,
    FormatMatch,
    detection_formats_for,
    dim,
    dims_text,
    pose_layout,
    segment_outputs,
)

logger = logging.getLogger(__name__)

ULTRALYTICS_DETECTION = {"score_threshold": 0.25, "iou_threshold": 0.7, "max_detections": 300}
LABEL_KEYS = ("names", "labels", "classes", "class_names")
MAX_LITERAL = 2_000_000  # characters of a metadata value parsed as a literal
MAX_LABELS = 100_000
NEVER_GUESSED = ("anomaly", "codebook", "compression")


class GuessError(LoupeError):
    """No task fits the model; the message is one line for the user (``ModelError`` in the engine)."""


@dataclass(frozen=True)
class Candidate:
    """One task the model may do: ``key`` is what ``--task`` takes (the task's name, or
    ``task:format`` when several detection formats fit), ``reason`` one line, ``card`` the card."""

    key: str
    reason: str
    card: ModelCard

    @property
    def task(self) -> str:
        return self.card.task


@dataclass(frozen=True)
class Guess:
    """What was guessed for a model without a card: its candidates, best first, and a one-line
    note saying what was read or guessed (for stderr, or the window's banner)."""

    candidates: tuple[Candidate, ...]
    note: str
    source: str  # "ultralytics" | "shapes"

    @property
    def card(self) -> ModelCard:
        return self.candidates[0].card

    @property
    def ambiguous(self) -> bool:
        return len(self.candidates) > 1

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.candidates)

    def pick(self, key: str, filename: str = "the model") -> Guess:
        """This guess with the candidate ``key`` (a task name, or ``task:format``) alone;
        GuessError naming the candidates when it is not one."""
        hits = [c for c in self.candidates if key in (c.key, c.task)]
        if len(hits) > 1:
            hits = [c for c in hits if c.key == key] or hits
        if len(hits) > 1:
            raise GuessError(f"{filename}: --task {key} fits its outputs in several ways; name one: "
                             + ", ".join(f"{c.key} ({c.reason})" for c in hits))
        if not hits:
            which = "; ".join(f"{c.key} ({c.reason})" for c in self.candidates)
            raise GuessError(f"{filename}: --task {key} does not fit its outputs; candidates: {which}")
        c = hits[0]
        if self.source != "shapes":  # the exporter's metadata said it: keep saying so
            return Guess((c,), self.note, self.source)
        return Guess((c,), f"{filename} has no model card; treated as {c.key} as asked ({c.reason})", self.source)


# ----------------------------------------------------------------------------- metadata values
def parse_literal(text: Any, key: str) -> Any:
    """A metadata value read as JSON, else as a Python literal (``ast.literal_eval``: numbers,
    strings, lists, dicts... never a call). ValueError naming ``key`` when it is neither."""
    if not isinstance(text, str):
        return text
    if len(text) > MAX_LITERAL:
        raise ValueError(f"metadata {key!r} is too long to read ({len(text):,} characters)")
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(f"metadata {key!r} is not a plain list or {{index: name}} literal: "
                         f"{text[:60]!r}") from None


def labels_from(value: Any, key: str) -> tuple[str, ...]:
    """Class names from a parsed metadata value: a list of names, or {index: name} (indices from
    0; a missing index becomes ``class i``). ValueError naming ``key`` otherwise."""
    if isinstance(value, dict):
        try:
            items = {int(k): v for k, v in value.items()}
        except (TypeError, ValueError):
            raise ValueError(f"metadata {key!r} must map class indices to names") from None
        if not items or min(items) < 0 or max(items) >= MAX_LABELS:
            raise ValueError(f"metadata {key!r} has class indices outside 0..{MAX_LABELS - 1}")
        names = [items.get(i, f"class {i}") for i in range(max(items) + 1)]
    elif isinstance(value, (list, tuple)):
        names = list(value)
    else:
        raise ValueError(f"metadata {key!r} must be a list of names or {{index: name}}")
    if len(names) > MAX_LABELS or any(isinstance(n, (dict, list, tuple, set)) for n in names):
        raise ValueError(f"metadata {key!r} must be a list of names or {{index: name}}")
    return tuple(str(n) for n in names)


def character_labels(text: str) -> tuple[str, ...]:
    """PaddleOCR's ``character`` entry: the dictionary file's text, one character per line (a
    JSON or literal list is read too)."""
    stripped = text.strip()
    if stripped[:1] == "[":
        try:
            return labels_from(parse_literal(stripped, "character"), "character")
        except ValueError:
            pass
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return tuple(line.rstrip("\r") for line in lines)


def metadata_labels(md: dict[str, str]) -> tuple[tuple[str, ...], str | None, str | None]:
    """(labels, the key they came from, a note when a label entry was present but unreadable)."""
    if md.get("character"):
        return character_labels(md["character"]), "character", None
    for key in LABEL_KEYS:
        if md.get(key):
            try:
                return labels_from(parse_literal(md[key], key), key), key, None
            except ValueError as e:
                return (), None, f"{e}; ignored"
    return (), None, None


def _version(md: dict[str, str]) -> tuple[int, ...]:
    """The exporter's ``version`` as numbers (``8.4.190`` -> (8, 4, 190)); () when absent."""
    parts = []
    for p in str(md.get("version", "")).strip().split("."):
        if not p.isdigit():
            break
        parts.append(int(p))
    return tuple(parts)


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _size(value: Any, key: str) -> tuple[int, int] | None:
    if value in (None, ""):
        return None
    v = parse_literal(value, key)
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return v, v
    if (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                               and x > 0 for x in v)):
        return int(v[0]), int(v[1])
    raise ValueError(f"metadata {key!r} must be a size like [640, 640], got {str(value)[:40]!r}")


# ----------------------------------------------------------------------------- shapes
def _input(inputs: Sequence[Any], filename: str) -> tuple[Any, str, tuple[int, int] | None]:
    """The one image input, its colour (from its channels) and its fixed (h, w) or None."""
    if len(inputs) != 1:
        names = ", ".join(f"{i.name} {dims_text(i.shape)}" for i in inputs)
        raise GuessError(f"{filename} has no model card and {len(inputs)} inputs ({names}); Loupe feeds one "
                         f"image: {_how(filename)}")
    inp = inputs[0]
    s = tuple(inp.shape)
    c = dim(s[1]) if len(s) == 4 else None
    if len(s) != 4:
        raise GuessError(f"{filename} has no model card and its input '{inp.name}' has rank {len(s)} "
                         f"({dims_text(s)}); Loupe feeds images as N x C x H x W (rank 4): {_how(filename)}")
    if c is not None and c not in (1, 3):
        raise GuessError(f"{filename} has no model card and its input '{inp.name}' ({dims_text(s)}) has {c} "
                         f"channels, not an image's 1 or 3: {_how(filename)}")
    batch = dim(s[0])
    if batch is not None and batch > 1:
        raise GuessError(f"{filename} takes a batch of {batch} images ({dims_text(s)}); Loupe feeds one "
                         "frame: export it with batch 1 (or a dynamic batch)")
    h, w = dim(s[2]), dim(s[3])
    return inp, "GRAY" if c == 1 else "RGB", (h, w) if h and w else None


def _how(filename: str) -> str:
    return (f"describe it in a sidecar {sidecar_path(filename).name} (see docs/MODEL_CARD.md), give it a "
            "Loupe card, or install a task plug-in")


GUESSED_MULTIPLE = 32  # a dynamic input is padded to this: what nets downsampling 5 times need


def _spec(color: str, fixed: tuple[int, int] | None, **kw: Any) -> InputSpec:
    """RGB (or GRAY) / 255 at the fixed size; a dynamic input padded to a multiple of 32 (the
    padding is cropped off the outputs again)."""
    n = 1 if color == "GRAY" else 3
    multiple = 1 if fixed else GUESSED_MULTIPLE
    return InputSpec(color=color, scale=1 / 255, mean=(0.0,) * n, std=(1.0,) * n, fixed_size=fixed,
                     size_multiple=multiple, **kw)


def _found(outputs: Sequence[Any]) -> str:
    """The outputs, shortened: ``8 outputs: 1x64x80x80, 1x80x80x80, ... (3 more)``."""
    shown = [dims_text(o.shape) for o in outputs[:4]]
    more = f", ... ({len(outputs) - 4} more)" if len(outputs) > 4 else ""
    return f"{len(outputs)} output{'s' if len(outputs) != 1 else ''}: {', '.join(shown)}{more}"


def _palette(n: int) -> tuple[tuple[int, int, int], ...]:
    from loupe.inference.engine import default_palette  # the engine imports this module

    return default_palette(n)


def _card(task: str, name: str, spec: InputSpec, labels: Sequence[str], output: dict[str, Any],
          origin: str = "inferred", source: dict[str, Any] | None = None,
          palette: bool = False) -> ModelCard:
    labels = tuple(labels)
    return ModelCard(task=task, name=name, input=spec, labels=labels,
                     palette=_palette(len(labels)) if palette and labels else (),
                     output=output, source=source or {}, origin=origin)


def _registered() -> set[str]:
    from loupe.base import registry

    return set(registry.names())


def shape_candidates(inputs: Sequence[Any], outputs: Sequence[Any], name: str, labels: tuple[str, ...] = (),
                     final_ops: dict[str, str] | None = None, filename: str | None = None,
                     source: dict[str, Any] | None = None) -> list[Candidate]:
    """Every task the output shapes fit, best first (labels from metadata, when given, must fit
    the class count). GuessError when the input is not one image."""
    filename = filename or name
    _, color, fixed = _input(inputs, filename)
    ops = final_ops or {}
    n_lab = len(labels) or None
    tasks = _registered()
    out: list[Candidate] = []

    def names_for(n: int) -> tuple[str, ...]:
        return labels if len(labels) == n else tuple(f"class {i}" for i in range(n))

    def classification(c: int, txt: str, op: str | None) -> None:
        if "classification" in tasks and c >= 2 and (n_lab is None or n_lab == c):
            kind = "probabilities" if op == "Softmax" else "logits"
            out.append(Candidate("classification", f"{txt}: {c} class {kind}", _card(
                "classification", name, _spec(color, fixed), names_for(c), {"kind": kind}, source=source)))

    if len(outputs) == 1:
        o = outputs[0]
        s, txt, op = tuple(o.shape), f"one output {dims_text(o.shape)}", ops.get(o.name)
        last = len(s) == 4 and channels_last(fixed, s)
        c = (dim(s[3]) if last else dim(s[1])) if len(s) == 4 else None
        layout = {"layout": "NHWC"} if last else {}
        if len(s) == 4 and dim(s[2]) == 1 and (dim(s[3]) == 1 or dim(s[1]) == 1):  # N x C x 1 x 1, N x 1 x 1 x C
            classification(dim(s[1]) if dim(s[3]) == 1 else dim(s[3]) or 0, txt, op)
        elif len(s) == 4 and c and c >= 2 and "segmentation" in tasks:
            if n_lab is None or n_lab == c:
                kind = "probabilities" if op == "Softmax" else "logits"
                out.append(Candidate("segmentation", f"{txt}: {c} class {kind} per pixel" + (" (channels last)" if last else ""),
                                     _card("segmentation", name, _spec(color, fixed), names_for(c),
                                           {"kind": kind, **layout}, source=source, palette=True)))
        elif len(s) == 4 and c == 1:
            seg = None
            if "segmentation" in tasks and n_lab in (None, 1, 2) and (op == "Sigmoid" or not last):
                fg = labels if labels else ("background", "foreground")
                seg = Candidate("segmentation", f"{txt}: a foreground probability map (kind probability)", _card(
                    "segmentation", name, _spec(color, fixed), fg, {"kind": "probability", "threshold": 0.5, **layout},
                    source=source, palette=True))
            dens = None
            if "density" in tasks and not last:  # the density task reads N x 1 x h x w only
                dens = Candidate("density", f"{txt}: a density map whose sum is a count", _card(
                    "density", name, _spec(color, fixed), (), {}, source=source))
            pair = [seg, dens] if op == "Sigmoid" else [dens, seg]
            out += [cand for cand in pair if cand is not None]
            out += _one_value("depth", txt, name, color, fixed, layout, source)
        elif len(s) == 2 and (dim(s[0]) in (None, 1)) and dim(s[1]):
            classification(dim(s[1]), txt, op)
        elif len(s) == 1 and dim(s[0]):
            classification(dim(s[0]), txt, op)
        elif _flat_map(o, fixed):  # N x h x w floats: a density or a depth map, asked
            out += (_one_value("density", txt, name, color, fixed, {}, source)
                    + _one_value("depth", txt, name, color, fixed, {}, source))
    if len(outputs) == 1 and _is_map(outputs[0], fixed):
        return out  # N x h x w at the input's scale: a map (or class ids) with no channel axis, no detections
    if not out and "detection" in tasks:
        matches = detection_formats_for(outputs, n_lab, fixed)
        for m in matches:
            key = "detection" if len(matches) == 1 else f"detection:{m.format}"
            out.append(Candidate(key, m.reason, _detection_card(name, color, fixed, m, labels, source=source)))
    return out


def _one_value(task: str, txt: str, name: str, color: str, fixed: tuple[int, int] | None,
               layout: dict[str, str], source: dict[str, Any] | None) -> list[Candidate]:
    """The density or (relative) depth reading of a one-value map, when that task is registered."""
    if task not in _registered():
        return []
    output, why = (({"kind": "relative", **layout}, "a depth (or other one-value) map") if task == "depth"
                   else ({}, "a density map whose sum is a count"))
    return [Candidate(task, f"{txt}: {why}", _card(task, name, _spec(color, fixed), (), output, source=source))]


def _flat_map(out: Any, fixed: tuple[int, int] | None) -> bool:
    """A float 1 x h x w output at the input's scale (or both axes dynamic): a map, no channel axis."""
    s = tuple(out.shape)
    return (len(s) == 3 and dim(s[0]) in (None, 1) and "float" in str(getattr(out, "dtype", ""))
            and (_is_map(out, fixed) or (fixed is None and dim(s[1]) is None and dim(s[2]) is None)))


def _is_map(out: Any, fixed: tuple[int, int] | None) -> bool:
    """A rank-3 output whose last two axes scale to the fixed input: a map, not a list of boxes."""
    s = tuple(out.shape)
    return len(s) == 3 and fixed is not None and _proportional(fixed, (s[1], s[2]))


def _proportional(hw: tuple[int, int], out_hw: tuple[Any, Any]) -> bool:
    """An output map of ``out_hw`` can cover an input of ``hw``: one stride (1/8 to 64) both ways."""
    a, b = dim(out_hw[0]), dim(out_hw[1])
    if not a or not b:
        return False
    sh, sw = hw[0] / a, hw[1] / b
    return 1 / 8 <= sh <= 64 and abs(sh - sw) <= 0.1 * max(sh, sw)


def channels_last(fixed: tuple[int, int] | None, shape: Sequence[Any]) -> bool:
    """True when a rank-4 map reads as N x h x w x C rather than N x C x h x w: its middle axes
    are the dynamic ones and its last is fixed, or (fixed input) only h x w in the middle scale to
    the input's size."""
    s = tuple(shape)
    d1, d2, d3 = dim(s[1]), dim(s[2]), dim(s[3])
    if d1 is None and d2 is None and d3 is not None:
        return True
    if d1 is not None and d2 is None and d3 is None:
        return False
    if fixed is None or None in (d1, d2, d3):
        return False
    return _proportional(fixed, (d1, d2)) and not _proportional(fixed, (d2, d3))


def _detection_card(name: str, color: str, fixed: tuple[int, int] | None, m: FormatMatch,
                    labels: tuple[str, ...], origin: str = "inferred", source: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> ModelCard:
    # Ultralytics' predictor letterboxes YOLO inputs (pad 114) and stretches RT-DETR's; DETR-style
    # and torchvision-style models take the image resized
    letterbox = bool(fixed) and m.format in NEEDS_NMS | {"end2end"}
    spec = _spec(color, fixed, letterbox=letterbox)
    n = m.n_classes
    labs = labels if labels and (n is None or len(labels) == n) else tuple(f"class {i}" for i in range(n or 0))
    output: dict[str, Any] = {"format": m.format, **(extra or {}), "outputs": dict(m.outputs)}
    return _card("detection", name, spec, labs, output, origin=origin, source=source)


# ----------------------------------------------------------------------------- Ultralytics
def is_ultralytics(md: dict[str, str]) -> bool:
    """Metadata written by Ultralytics' exporter (``author``, or its ``task``/``names``/``imgsz`` trio)."""
    return str(md.get("author", "")).startswith("Ultralytics") or {"task", "names", "imgsz"} <= md.keys()


def _ultralytics(inputs: Sequence[Any], outputs: Sequence[Any], md: dict[str, str], name: str,
                 filename: str) -> Guess:
    task = str(md.get("task", "")).strip()
    where = f"{filename} is an Ultralytics {task or 'export'}"
    if task == "obb":
        raise GuessError(f"{where} model: {task} outputs are not supported yet in this Loupe (Ultralytics "
                         "detect, segment, pose and classify exports are)")
    if task not in ("detect", "classify", "segment", "pose"):
        raise GuessError(f"{where} model ({task!r}), a task this Loupe does not read from Ultralytics metadata "
                         f"(it reads detect and classify): {_how(filename)}")
    try:
        labels = labels_from(parse_literal(md.get("names", ""), "names"), "names")
        imgsz = _size(md.get("imgsz"), "imgsz")
    except ValueError as e:
        raise GuessError(f"{filename}: its Ultralytics metadata cannot be read: {e}") from None
    try:  # the export's arguments: only nms and max_det are read, and neither is needed
        args = parse_literal(md["args"], "args") if md.get("args") else {}
    except ValueError:
        args = {}
    _, color, fixed = _input(inputs, filename)
    if str(md.get("channels", "3")).strip() == "1":
        color = "GRAY"
    size = imgsz or fixed
    if size is None:
        raise GuessError(f"{filename}: its Ultralytics metadata has no imgsz and its input has no fixed size")
    version = str(md.get("version", "")).strip()
    source = {"exporter": f"Ultralytics {version}".strip(), "metadata": "ultralytics"}
    if md.get("description"):
        source["description"] = str(md["description"])
    if task == "classify":
        if len(outputs) != 1 or len(outputs[0].shape) != 2 or dim(outputs[0].shape[1]) not in (None, len(labels)):
            raise GuessError(f"{where} model but its outputs ({_found(outputs)}) are not 1 x {len(labels)} class "
                             f"probabilities: {_how(filename)}")
        card = _card("classification", name, _spec(color, size, center_crop=True), labels,
                     {"kind": "probabilities", "top_k": 5}, origin="ultralytics", source=source)
        reason = f"{len(labels)} class probabilities, centre crop {size[0]}x{size[1]}"
        return Guess((Candidate("classification", reason, card),),
                     f"{filename} has no model card; read its Ultralytics metadata as the card: classification ({reason})",
                     "ultralytics")
    end2end = _flag(md.get("end2end")) or (isinstance(args, dict) and _flag(args.get("nms")))
    if task == "segment":  # YOLOv8 / YOLO11 segment: predictions with mask coefficients + prototypes
        roles = None if end2end else segment_outputs(outputs, len(labels))
        if roles is None:
            raise GuessError(f"{where} model but its outputs ({_found(outputs)}) are not 1 x (4 + {len(labels)} + M) x A "
                             f"predictions and 1 x M x h x w mask prototypes{' (end2end)' if end2end else ''}: "
                             f"{_how(filename)}")
        card = _card("instances", name, _spec(color, size, letterbox=True), labels,
                     {"format": "yolov8-seg", **ULTRALYTICS_DETECTION, "outputs": roles}, "ultralytics", source)
        reason = f"format yolov8-seg, {len(labels)} labels, letterboxed to {size[0]}x{size[1]}"
        return Guess((Candidate("instances", reason, card),), f"{filename} has no model card; read its Ultralytics "
                     f"metadata as the card: instance segmentation ({reason})", "ultralytics")
    if task == "pose":  # YOLOv8 / YOLO11 pose: 1 x (4 + C + K x 3) x A, letterboxed as detect is
        kpt = None if end2end else pose_layout(outputs, len(labels), md.get("kpt_shape"))
        if kpt is None:
            raise GuessError(f"{where} model but its outputs ({_found(outputs)}) are not 1 x (4 + {len(labels)} + "
                             f"keypoints) x A for kpt_shape {md.get('kpt_shape', '[17, 3]')}: {_how(filename)}")
        card = _card("keypoints", name, _spec(color, size, letterbox=True), labels, {"format": "yolov8-pose", "kpt_shape":
                     list(kpt), **ULTRALYTICS_DETECTION, "outputs": {"predictions": outputs[0].name}}, "ultralytics", source)
        reason = f"format yolov8-pose, {len(labels)} labels, {kpt[0]} keypoints, letterboxed to {size[0]}x{size[1]}"
        return Guess((Candidate("keypoints", reason, card),), f"{filename} has no model card; read its Ultralytics "
                     f"metadata as the card: keypoints ({reason})", "ultralytics")
    matches = detection_formats_for(outputs, len(labels), fixed)
    head = str(md.get("head", ""))
    rtdetr = "RTDETR" in head
    if end2end:
        want = ["end2end"]
    elif rtdetr:  # Ultralytics 8.4 exports the decoder's top-k: K x (cx, cy, w, h, score, class)
        want = ["end2end", "rtdetr"] if _version(md) >= (8, 4) else ["rtdetr", "end2end"]
    else:  # end2end last: forks that write no end2end flag (THU's YOLOv10) with a K x 6 output
        want = ["yolov8", "rtdetr", "end2end"]
    chosen = next((m for f in want for m in matches if m.format == f), None)
    if chosen is None:
        raise GuessError(f"{where} model ({len(labels)} names{', end2end' if end2end else ''}) but its outputs "
                         f"({_found(outputs)}) fit no detection format it could have: {_how(filename)}")
    extra = dict(ULTRALYTICS_DETECTION)
    if chosen.format == "end2end" and isinstance(args, dict) and isinstance(args.get("max_det"), int):
        extra["max_detections"] = args["max_det"]
    if rtdetr and chosen.format == "end2end":  # normalised centre boxes, not corner pixels
        extra.update(box_format="cxcywh", normalized=True)
    card = _detection_card(name, color, size, chosen, labels, origin="ultralytics", source=source, extra=extra)
    if rtdetr or chosen.format == "rtdetr":  # Ultralytics' RT-DETR predictor stretches the image to imgsz
        card = _card("detection", name, _spec(color, size, interpolation="linear"), card.labels, card.output,
                     "ultralytics", source)
    how = "letterboxed" if card.input.letterbox else "stretched"
    kind = " (RT-DETR, normalised cx, cy, w, h)" if rtdetr and chosen.format == "end2end" else ""
    reason = f"format {chosen.format}{kind}, {len(labels)} labels, {how} to {size[0]}x{size[1]}"
    return Guess((Candidate("detection", reason, card),),
                 f"{filename} has no model card; read its Ultralytics metadata as the card: detection ({reason})", "ultralytics")


# ----------------------------------------------------------------------------- entry point
def guess_card(inputs: Sequence[Any], outputs: Sequence[Any], metadata: dict[str, str], name: str,
               *, filename: str | None = None, final_ops: dict[str, str] | None = None) -> Guess:
    """The candidates for a model without a Loupe card (see the table above), best first.

    ``inputs``/``outputs``: ``TensorInfo``s; ``metadata``: the ONNX custom metadata; ``name``:
    the card's display name; ``filename`` names the model in messages; ``final_ops``: the op
    type that produces each output (``output_ops``). GuessError (one line) when nothing fits."""
    filename = filename or name
    if not inputs or not outputs:
        raise GuessError(f"{filename} has no inputs or no outputs")
    md = {str(k): v for k, v in (metadata or {}).items()}
    if is_ultralytics(md):
        return _ultralytics(inputs, outputs, md, name, filename)
    labels, key, problem = metadata_labels(md)
    source = {"labels_from": key} if key else None
    cands = shape_candidates(inputs, outputs, name, labels, final_ops, filename, source)
    if not cands:
        with_labels = f" with the {len(labels)} labels of its metadata {key!r}" if labels else ""
        raise GuessError(f"{filename} has no model card and its outputs fit no task Loupe can guess{with_labels} "
                         f"({_found(outputs)}): {_how(filename)}")
    extra = f"; labels from its metadata {key!r}" if key else ""
    if problem:
        extra += f"; {problem}"
    if len(cands) == 1:
        c = cands[0]
        spec = c.card.input
        size = (f"at {spec.fixed_size[0]}x{spec.fixed_size[1]}" if spec.fixed_size
                else f"padded to a multiple of {spec.size_multiple}")
        note = (f"{filename} has no model card; guessed from its outputs: {c.key} ({c.reason}; input assumed "
                f"{spec.color} scaled to [0, 1], {size}{extra})")
    else:
        which = " or ".join(f"{c.key} ({c.reason})" for c in cands)
        note = (f"{filename} has no model card and its outputs fit several tasks: {which}; choose one with "
                f"--task NAME, or describe it in {sidecar_path(filename).name} (docs/MODEL_CARD.md){extra}")
    return Guess(tuple(cands), note, "shapes")


PASS_THROUGH = frozenset({"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Cast"})


def output_ops(path: str | Path) -> dict[str, str]:
    """For each graph output, the op type of the node that computes it, looking through
    reshapes, transposes, casts and identities (``{}`` when the graph cannot be read)."""
    try:
        import onnx

        graph = onnx.load_model(str(path), load_external_data=False).graph
    except Exception:  # the engine reports unreadable models; this is only a hint
        logger.debug("cannot read the graph of %s", path, exc_info=True)
        return {}
    producer = {o: n for n in graph.node for o in n.output}
    ops = {}
    for out in graph.output:
        node, seen = producer.get(out.name), 0
        while node is not None and node.op_type in PASS_THROUGH and node.input and seen < 16:
            node, seen = producer.get(node.input[0]), seen + 1
        if node is not None:
            ops[out.name] = node.op_type
    return ops
