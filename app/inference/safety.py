"""Checks a model file must pass before ONNX Runtime sees it, and the shape checks a model's
inputs and outputs must pass before a task uses it (Qt-free).

Loupe never executes anything from a file: it never unpickles (a pickle or a PyTorch checkpoint
renamed ``.onnx`` is named as such and refused), never evaluates strings from a card, and reads
ONNX external data only from inside the model's own folder (no absolute paths, no ``..``, no
symbolic link leading out), after checking that every external file holds the bytes the model
says it does. ONNX Runtime has its own external-data checks; these run first so the message
says what is wrong in the user's words.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loupe.inference.engine import ModelError
from loupe.sources.sniff import describe_content, looks_like_onnx, read_head

__all__ = ["check_anomaly", "check_classification", "check_density", "check_depth", "check_detection", "check_image_input", "check_io", "check_keypoints", "check_model_file", "check_segmentation", "class_axis"]

PICKLE_NOTE = "Loupe never loads pickles"


def _not_onnx(name: str, what: str | None) -> ModelError:
    if what == "a Python pickle":
        return ModelError(f"{name} is not an ONNX model (looks like a Python pickle; {PICKLE_NOTE})")
    if what and what.startswith("a PyTorch checkpoint"):
        return ModelError(
            f"{name} is not an ONNX model (looks like a PyTorch checkpoint: a ZIP archive holding a "
            f"Python pickle; {PICKLE_NOTE}). Export it to ONNX first (python -m loupe_models.export ...)"
        )
    if what:
        return ModelError(f"{name} is not an ONNX model (it is {what})")
    return ModelError(f"{name} is not an ONNX model (its bytes are not an ONNX protobuf)")


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of a graph that may carry data: initializers, sparse initializers and
    tensor attributes of nodes, including those of subgraphs (If/Loop/Scan bodies)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def _check_external(name: str, folder: Path, tensor: Any) -> None:
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    label = f"tensor '{tensor.name}'" if tensor.name else "a tensor"
    if not location:
        raise ModelError(f"{name}: {label} says its data is external but names no file")
    shown = location
    if os.path.isabs(location) or Path(location).drive or location.startswith(("/", "\\")):
        raise ModelError(
            f"{name}: the external data of {label} is at {shown}, outside the model's folder; Loupe "
            f"reads external data only from the model's own folder"
        )
    root = folder.resolve()
    target = (folder / location).resolve()
    if target != root and root not in target.parents:
        raise ModelError(
            f"{name}: the external data of {label} points outside the model's folder ({shown}); "
            f"Loupe reads external data only from the model's own folder"
        )
    if not target.is_file():
        raise ModelError(f"{name}: the external data file {shown} of {label} is missing next to the model")
    try:
        offset = int(info.get("offset", "0") or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError:
        raise ModelError(f"{name}: the external data of {label} has a malformed offset or length") from None
    size = target.stat().st_size
    if offset < 0 or offset > size or (length is not None and (length < 0 or offset + length > size)):
        want = f"{length} bytes at offset {offset}" if length is not None else f"data at offset {offset}"
        raise ModelError(
            f"{name}: the external data file {shown} holds {size} bytes but {label} needs {want} "
            f"(the file is truncated or does not belong to this model)"
        )


def check_model_file(path: str | Path) -> None:
    """Raise ModelError with the reason when ``path`` is not a model Loupe will hand to ONNX
    Runtime: empty, not ONNX (a pickle, a checkpoint, text...), truncated, or with external data
    that is missing, too short or outside the model's folder."""
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ModelError(f"Cannot read {name}: {e.strerror or e}") from None
    if size == 0:
        raise ModelError(f"{name} is empty (0 bytes): not an ONNX model")
    head = read_head(path)
    what = describe_content(path, head)
    if what is not None and what != "an ONNX model":
        raise _not_onnx(name, what)
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as e:
        if looks_like_onnx(head):
            raise ModelError(f"{name} is truncated or damaged: it does not parse as an ONNX model ({e})") from None
        raise _not_onnx(name, what) from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        if looks_like_onnx(head):
            raise ModelError(f"{name} is truncated or damaged: it holds no graph")
        raise _not_onnx(name, what)
    from onnx import TensorProto

    for tensor in _tensors(model.graph):
        if tensor.data_location == TensorProto.EXTERNAL:
            _check_external(name, path.parent, tensor)


# ----------------------------------------------------------------------------- inputs/outputs
# Each task's check is named by its registry entry (``TaskSpec.check_io``); ``check_io`` runs the
# one of the model's task and refuses a task the registry does not know.


def _dims(shape: tuple[Any, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def check_io(engine: Any) -> None:
    """Raise ModelError when the model's inputs/outputs cannot be what its task needs (the
    check its registry entry names), or UnsupportedTask when no registered task has its name."""
    from loupe.base import registry

    registry.get(engine.card.task).check_model(engine)


def check_image_input(engine: Any, channels: int | None = None, what: str | None = None) -> None:
    """One float32 N x C x H x W input whose channel count is ``channels`` (the card's colour's
    count by default; ``what`` says where a different count comes from), and some output. For
    plug-ins whose model takes one image, like the built-in image tasks."""
    card = engine.card
    task = card.task
    name = engine.path.name
    inputs = list(engine.inputs)
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ModelError(f"{name} needs {len(inputs)} inputs ({names}); Loupe feeds a {task} model one image")
    inp = inputs[0]
    if len(inp.shape) != 4:
        raise ModelError(
            f"{name}: its input '{inp.name}' has rank {len(inp.shape)} ({_dims(inp.shape)}); Loupe feeds "
            f"images as N x C x H x W (rank 4)"
        )
    if inp.dtype != "tensor(float)":
        raise ModelError(
            f"{name}: its input '{inp.name}' is {inp.dtype}; Loupe feeds float32 images (tensor(float))"
        )
    if channels is None:
        channels = card.input.channels
    c = inp.shape[1]
    if isinstance(c, int) and c != channels:
        if what is None:
            what = f"{card.input.color} ({card.input.channels} channel{'s' if card.input.channels > 1 else ''})"
        raise ModelError(
            f"{name}: its input '{inp.name}' takes {c} channel{'s' if c != 1 else ''} but the card says {what}"
        )
    if not list(engine.outputs):
        raise ModelError(f"{name} has no outputs")


def check_segmentation(engine: Any) -> None:
    check_image_input(engine)
    name, out = engine.path.name, next(iter(engine.outputs))
    output = engine.card.output
    nhwc = output.get("layout") == "NHWC"
    scores = "N x h x w x C" if nhwc else "N x C x h x w"
    if len(out.shape) not in (3, 4):
        raise ModelError(
            f"{name}: its output '{out.name}' has rank {len(out.shape)} ({_dims(out.shape)}); a segmentation "
            f"model outputs {scores} scores (or an N x h x w class map)"
        )
    c = out.shape[-1 if nhwc else 1] if len(out.shape) == 4 else None
    if output.get("kind") == "probability" and isinstance(c, int) and c != 1:
        raise ModelError(
            f"{name}: its output '{out.name}' has {c} channels ({_dims(out.shape)}); the card says kind "
            f"\"probability\": one foreground channel, {scores} with C = 1"
        )


CLASS_SHAPES = "N x C, C, N x C x 1 x 1 or N x 1 x 1 x C"


def class_axis(shape: tuple[Any, ...]) -> int | None:
    """The axis of an output shape that holds one score per class: C -> 0, N x C -> 1,
    N x C x 1 x 1 -> 1, N x 1 x 1 x C (a channels-last pooled map) -> 3; None when the shape is
    none of these (dynamic dimensions may be 1)."""
    def free(d: Any) -> bool:
        return not isinstance(d, int) or d == 1

    if len(shape) in (1, 2):
        return len(shape) - 1
    if len(shape) == 4:
        if shape[1] == 1 and shape[2] == 1 and shape[3] != 1:
            return 3
        if free(shape[2]) and free(shape[3]):
            return 1
    return None


def check_classification(engine: Any) -> None:
    """One image in; the first output is one score per class (``CLASS_SHAPES``)."""
    check_image_input(engine)
    name, out = engine.path.name, next(iter(engine.outputs))
    shape = tuple(out.shape)
    want = f"one score per class ({CLASS_SHAPES})"
    if len(shape) == 4 and all(isinstance(d, int) and d != 1 for d in shape[2:]):
        raise ModelError(
            f"{name}: its output '{out.name}' is a {shape[2]} x {shape[3]} map ({_dims(shape)}); a "
            f"classification model outputs {want}: a map per class is segmentation"
        )
    axis = class_axis(shape)
    if axis is None:
        raise ModelError(
            f"{name}: its output '{out.name}' has shape {_dims(shape)}; a classification model outputs {want}"
        )
    c = shape[axis]
    if isinstance(c, int) and c < 2:
        raise ModelError(
            f"{name}: its output '{out.name}' holds {c} score{'s' if c != 1 else ''} ({_dims(shape)}); a "
            f"classification model outputs {want}, at least 2 classes"
        )
    n = shape[0] if len(shape) in (2, 4) else None
    if isinstance(n, int) and n != 1:
        raise ModelError(
            f"{name}: its output '{out.name}' has a batch of {n} ({_dims(shape)}); Loupe feeds one image "
            f"and reads {want}"
        )


def check_density(engine: Any) -> None:
    check_image_input(engine)
    name, outputs = engine.path.name, list(engine.outputs)
    names = [o.name for o in outputs]
    out = outputs[names.index("density")] if "density" in names else outputs[0]
    if len(out.shape) not in (2, 3, 4):
        raise ModelError(
            f"{name}: its output '{out.name}' has rank {len(out.shape)} ({_dims(out.shape)}); a density "
            f"model outputs one map, N x 1 x h x w"
        )
    if len(out.shape) == 4 and isinstance(out.shape[1], int) and out.shape[1] != 1:
        raise ModelError(
            f"{name}: its output '{out.name}' has {out.shape[1]} channels ({_dims(out.shape)}); a density "
            f"model outputs one map with 1 channel, N x 1 x h x w"
        )


def check_keypoints(engine: Any) -> None:
    """One image in; the predictions (the card's ``outputs`` ``predictions``, else the one
    output) are rank 3 (yolov8-pose: 1 x (4 + C + 3K) x anchors) or rank 4 (heatmaps: 1 x K x h x w)."""
    check_image_input(engine)
    name, outputs, out_card = engine.path.name, list(engine.outputs), engine.card.output
    roles = out_card.get("outputs") if isinstance(out_card.get("outputs"), dict) else {}
    names = [o.name for o in outputs]
    if roles.get("predictions") in names:
        out = outputs[names.index(roles["predictions"])]
    elif len(outputs) == 1:
        out = outputs[0]
    else:
        raise ModelError(f"{name}: a keypoints model with {len(outputs)} outputs ({', '.join(names)}): name the "
                         "one holding the predictions in the card's loupe.output outputs {\"predictions\": name}")
    fmt = out_card.get("format")
    want = {"yolov8-pose": (3,), "heatmaps": (4,)}.get(fmt, (3, 4))
    if len(out.shape) not in want:
        raise ModelError(f"{name}: its output '{out.name}' is {_dims(out.shape)}; a keypoints model outputs "
                         "1 x (4 + C + 3K) x anchors (yolov8-pose) or 1 x K x h x w (heatmaps)")


def check_depth(engine: Any) -> None:
    """One image in; the map (the output called ``depth``, else the first) is one channel:
    N x 1 x h x w, N x h x w x 1, N x h x w or h x w."""
    check_image_input(engine)
    name, outputs = engine.path.name, list(engine.outputs)
    names = [o.name for o in outputs]
    out = outputs[names.index("depth")] if "depth" in names else outputs[0]
    s = tuple(out.shape)
    want = "one map, N x 1 x h x w, N x h x w x 1 or N x h x w"
    if len(s) not in (2, 3, 4):
        raise ModelError(f"{name}: its output '{out.name}' has rank {len(s)} ({_dims(s)}); a depth model outputs {want}")
    if len(s) == 4:
        layout = engine.card.output.get("layout")
        axes = {"NCHW": (1,), "NHWC": (3,)}.get(layout, (1, 3))
        if not any(not isinstance(s[a], int) or s[a] == 1 for a in axes):
            raise ModelError(f"{name}: its output '{out.name}' has {s[axes[0]]} channels ({_dims(s)}); a depth "
                             f"model outputs {want}")


def check_anomaly(engine: Any) -> None:
    card = engine.card
    past = card.output.get("past_frames", 4)
    channels = card.input.channels * int(past or 1)
    what = (f"{card.input.color} ({card.input.channels} channel{'s' if card.input.channels > 1 else ''})"
            f" x {past} past frames = {channels}")
    check_image_input(engine, channels, what)
    name, out = engine.path.name, next(iter(engine.outputs))
    if len(out.shape) not in (3, 4):
        raise ModelError(
            f"{name}: its output '{out.name}' has rank {len(out.shape)} ({_dims(out.shape)}); an anomaly "
            f"model predicts a frame, N x C x H x W"
        )


def check_detection(engine: Any) -> None:
    """One image in; outputs laid out as the card's ``format`` says (or, without one, fitting some
    detection format): the number of outputs that format reads, a rank-3 prediction for the
    one-output formats, 6 values per row for ``end2end``."""
    from loupe.inference.formats import DETECTION_FORMATS, detection_formats_for

    check_image_input(engine)
    name, outputs, card = engine.path.name, list(engine.outputs), engine.card
    fmt = card.output.get("format")
    shapes = ", ".join(f"'{o.name}' {_dims(o.shape)}" for o in outputs)
    if fmt is None:
        if not detection_formats_for(outputs, len(card.labels) or None):
            raise ModelError(
                f"{name}: its outputs ({shapes}) fit no detection format ({', '.join(DETECTION_FORMATS)}); "
                f"a card's loupe.output format and outputs say how to read them"
            )
        return
    if fmt not in DETECTION_FORMATS:
        raise ModelError(f"{name}: the card's loupe.output format must be one of {', '.join(DETECTION_FORMATS)}, got {fmt!r}")
    needs = {"detr": (2,), "rtdetr": (1, 2), "boxes_scores_labels": (3, 4)}.get(fmt)
    if needs is not None and len(outputs) not in needs:
        want = " or ".join(str(n) for n in needs)
        raise ModelError(f"{name}: a {fmt} model has {want} outputs; this one has {len(outputs)} ({shapes})")
    if fmt in ("yolov5", "yolov8", "end2end"):
        names = [o.name for o in outputs]
        role = (card.output.get("outputs") or {}).get("predictions") if isinstance(card.output.get("outputs"), dict) else None
        out = outputs[names.index(role)] if role in names else outputs[0]
        layout = {"yolov5": "1 x anchors x (5 + C)", "yolov8": "1 x (4 + C) x anchors",
                  "end2end": "1 x K x 6 (x1, y1, x2, y2, score, class)"}[fmt]
        if len(out.shape) != 3 or (fmt == "end2end" and isinstance(out.shape[2], int) and out.shape[2] != 6):
            raise ModelError(f"{name}: its output '{out.name}' is {_dims(out.shape)}; a {fmt} model outputs {layout}")


def check_landmarks(engine: Any) -> None:
    """One image in; the first output holds points (``format`` points: 1 x P x 2 or 3, P x 2,
    1 x 2P) or one heatmap per point (``format`` heatmaps: 1 x P x h x w)."""
    check_image_input(engine)
    name, out = engine.path.name, next(iter(engine.outputs))
    shape = tuple(out.shape)
    if engine.card.output.get("format") == "heatmaps":
        if len(shape) not in (3, 4):
            raise ModelError(f"{name}: its output '{out.name}' is {_dims(shape)}; a heatmap landmark model "
                             f"outputs 1 x P x h x w, one map per point")
        return
    last = shape[-1] if shape else None
    fits = ((len(shape) == 3 and (not isinstance(last, int) or last in (2, 3)))
            or len(shape) == 1 or (len(shape) == 2 and (not isinstance(last, int) or last in (2, 3) or shape[0] == 1)))
    if not fits:
        raise ModelError(f"{name}: its output '{out.name}' is {_dims(shape)}; a landmark model outputs its points "
                         f"as 1 x P x 2 (x, y), 1 x P x 3 (x, y, score) or 1 x 2P (or says format \"heatmaps\")")
