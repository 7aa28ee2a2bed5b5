"""The model card: what an exported model is and how to feed it (Qt-free).

A card lives in the ONNX ``metadata_props`` under ``loupe.*`` keys (written by ``loupe_models``
at export), or, for a model without one, in a sidecar JSON next to the model
(``model.onnx.loupe.json``) that the app writes after asking the user. Loading a card never
executes anything from the model file.

Keys. In ONNX metadata every value is a string (objects and lists JSON-encoded); in a sidecar a
value may be plain JSON (``"loupe.labels": ["road", "car"]``, what a person writes) or such a
JSON string (what the app writes): both read the same.

- ``loupe.task``: plain string, the name of a registered task (``loupe.base.registry``; ``loupe tasks``
  lists them).
- ``loupe.name``: plain string, a short display name.
- ``loupe.input``: ``{"color": "RGB"|"BGR"|"GRAY", "scale": float, "mean": [..], "std": [..],
  "size_multiple": int, "fixed_size": [h, w] | null, "raw_values": bool}``. Pixels are fed as
  ``(x * scale - mean) / std`` in NCHW float32. ``letterbox: true`` (with ``fixed_size``) fits the
  frame into the fixed size keeping its aspect ratio, padded centred with ``pad_value`` (default
  114, Ultralytics'); ``center_crop: true`` scales it to cover the fixed size and cuts out the
  centre (classifiers). ``interpolation``: how a stretched (``fixed_size``, no letterbox) frame is
  resized, ``area`` (default; averages when shrinking) or ``linear`` (bilinear, as Ultralytics'
  RT-DETR predictor does); letterboxing is always bilinear. ``raw_values`` asks for unwindowed values (e.g. HU);
  ``window: [center, width]`` states the window a greyscale/DICOM frame is mapped through for the
  model (instead of the file's own window); the display window never reaches the model.
- ``loupe.labels``: ``["road", ...]``; ``loupe.palette``: ``[[r, g, b], ...]`` (segmentation).
- ``loupe.output``: task-specific output meaning, e.g. ``{"stride": 8, "kind": "logits"}``.
- ``loupe.source``: ``{"architecture": .., "training_data": .., "demo": bool, ...}``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loupe.base.errors import LoupeError

logger = logging.getLogger(__name__)

PREFIX = "loupe."
SIDECAR_SUFFIX = ".loupe.json"


class CardError(LoupeError, ValueError):
    """A card is present but malformed; the message names the key."""


@dataclass(frozen=True)
class InputSpec:
    color: str = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    size_multiple: int = 1
    fixed_size: tuple[int, int] | None = None
    raw_values: bool = False
    window: tuple[float, float] | None = None
    letterbox: bool = False
    pad_value: float = 114.0
    center_crop: bool = False
    interpolation: str = "area"

    def __post_init__(self) -> None:
        if self.color not in ("RGB", "BGR", "GRAY"):
            raise CardError(f"loupe.input color must be RGB, BGR or GRAY, got {self.color!r}")
        if self.size_multiple < 1:
            raise CardError(f"loupe.input size_multiple must be >= 1, got {self.size_multiple}")
        n = 1 if self.color == "GRAY" else 3
        if len(self.mean) != n or len(self.std) != n:
            raise CardError(f"loupe.input mean/std need {n} values for {self.color}")
        if any(s == 0 for s in self.std):
            raise CardError("loupe.input std must not contain 0")
        if self.window is not None and self.window[1] <= 0:
            raise CardError(f"loupe.input window width must be > 0, got {self.window[1]}")
        if self.letterbox and not self.fixed_size:
            raise CardError("loupe.input letterbox needs fixed_size: [h, w] (the size the frame is fitted into)")
        if self.center_crop and not self.fixed_size:
            raise CardError("loupe.input center_crop needs fixed_size: [h, w] (the size cut out of the frame)")
        if self.interpolation not in ("area", "linear"):
            raise CardError(f"loupe.input interpolation must be \"area\" or \"linear\", got {self.interpolation!r}")
        if self.center_crop and self.letterbox:
            raise CardError("loupe.input letterbox and center_crop exclude each other")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        """From ``loupe.input``'s object. Unknown keys are refused (a misspelt key would otherwise
        be fed with its default without a word); a value of the wrong type names its key."""
        fields = tuple(cls.__dataclass_fields__)
        unknown = sorted(k for k in d if k not in fields)
        if unknown:
            raise CardError(f"loupe.input has unknown key {unknown[0]!r} (known: {', '.join(fields)})")
        known = dict(d)
        if "interpolation" in known and not isinstance(known["interpolation"], str):
            raise CardError(f"loupe.input interpolation must be \"area\" or \"linear\", got {known['interpolation']!r}")
        if "color" in known and not isinstance(known["color"], str):
            raise CardError(f"loupe.input color must be \"RGB\", \"BGR\" or \"GRAY\", got {known['color']!r}")
        for key in ("mean", "std"):
            if key in known:
                known[key] = _numbers(known[key], f"loupe.input {key}")
        for key, n in (("fixed_size", 2), ("window", 2)):
            if known.get(key) is not None:
                vals = _numbers(known[key], f"loupe.input {key}")
                if len(vals) != n:
                    raise CardError(f"loupe.input {key} needs {n} numbers, got {known[key]!r}")
                known[key] = (int(vals[0]), int(vals[1])) if key == "fixed_size" else vals
        if "size_multiple" in known:
            known["size_multiple"] = int(_number(known["size_multiple"], "loupe.input size_multiple"))
        for key in ("scale", "pad_value"):
            if key in known:
                known[key] = _number(known[key], f"loupe.input {key}")
        for key in ("raw_values", "letterbox", "center_crop"):
            if key in known and not isinstance(known[key], bool):
                raise CardError(f"loupe.input {key} must be true or false, got {known[key]!r}")
        return cls(**known)

    @property
    def channels(self) -> int:
        return 1 if self.color == "GRAY" else 3


@dataclass(frozen=True)
class ModelCard:
    task: str
    name: str = ""
    input: InputSpec = field(default_factory=InputSpec)
    labels: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    output: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    origin: str = "metadata"  # "metadata" | "sidecar" | "inferred"

    def __post_init__(self) -> None:
        known = task_names()
        if self.task not in known:
            from loupe.base import registry

            broken = [f for f in registry.failures() if f.name == self.task]
            if broken:
                raise CardError(f"loupe.task {self.task!r} comes from a plug-in that failed to load "
                                f"({broken[0].origin}): {broken[0].error}")
            raise CardError(f"loupe.task must be one of {', '.join(known)}; got {self.task!r} (a plug-in may "
                            "add a task: `loupe tasks` lists the installed ones)")
        if self.palette and self.labels and len(self.palette) < len(self.labels):
            raise CardError(
                f"loupe.palette has {len(self.palette)} colours for {len(self.labels)} labels"
            )

    # --- (de)serialisation -----------------------------------------------------------
    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` entries for this card (string -> string)."""
        md = {
            PREFIX + "task": self.task,
            PREFIX + "input": json.dumps(asdict(self.input)),
        }
        if self.name:
            md[PREFIX + "name"] = self.name
        if self.labels:
            md[PREFIX + "labels"] = json.dumps(list(self.labels))
        if self.palette:
            md[PREFIX + "palette"] = json.dumps([list(c) for c in self.palette])
        if self.output:
            md[PREFIX + "output"] = json.dumps(self.output)
        if self.source:
            md[PREFIX + "source"] = json.dumps(self.source)
        return md

    @classmethod
    def from_metadata(cls, md: dict[str, Any], origin: str = "metadata") -> ModelCard:
        """A card from ``loupe.*`` entries: ONNX metadata (every value a string, objects and lists
        JSON-encoded) or a sidecar's object (values plain JSON or such strings). Anything
        malformed raises CardError naming the key."""

        def load(key: str, default: Any, kind: type, example: str) -> Any:
            raw = md.get(PREFIX + key)
            if raw is None:
                return default
            value = raw
            if isinstance(raw, str):  # JSON-encoded (ONNX metadata, or a sidecar the app wrote)
                try:
                    value = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise CardError(
                        f"{PREFIX}{key} must be {example} (plain, or as a JSON string), got "
                        f"{_json_type(raw)}, which is not valid JSON ({e.msg} at character {e.pos})"
                    ) from None
            if not isinstance(value, kind):
                raise CardError(f"{PREFIX}{key} must be {example}, got {_json_type(value)}")
            return value

        def text(key: str, default: str | None) -> str | None:
            raw = md.get(PREFIX + key, default)
            if raw is not None and not isinstance(raw, str):
                raise CardError(f"{PREFIX}{key} must be a string, got {_json_type(raw)}")
            return raw

        task = text("task", None)
        if task is None:
            raise CardError("the model has no loupe.task entry")
        name = text("name", "") or ""
        inp = load("input", {}, dict, 'an object like {"color": "RGB", "mean": [0, 0, 0]}')
        try:
            spec = InputSpec.from_dict(inp)
        except (TypeError, ValueError, OverflowError) as e:  # CardError is a ValueError: keep its text
            raise e if isinstance(e, CardError) else CardError(f"loupe.input holds a value of the wrong type ({e})") from None
        palette_raw = load("palette", [], list, "a list of [r, g, b] colours")
        palette: list[tuple[int, int, int]] = []
        for i, c in enumerate(palette_raw):
            rgb = _numbers(c, f"loupe.palette[{i}]")
            if len(rgb) < 3 or any(not 0 <= v <= 255 for v in rgb[:3]):
                raise CardError(f"loupe.palette[{i}] must be [r, g, b] with values 0-255, got {c!r}")
            palette.append((int(rgb[0]), int(rgb[1]), int(rgb[2])))
        labels_raw = load("labels", [], list, 'a list of names like ["road", "car"]')
        if any(isinstance(x, (dict, list)) for x in labels_raw):
            raise CardError("loupe.labels must be a list of names (strings)")
        labels = tuple(str(x) for x in labels_raw)
        output = load("output", {}, dict, 'an object like {"stride": 8}')
        _check_output(task, output)
        source = load("source", {}, dict, 'an object like {"architecture": "..."}')
        return cls(
            task=task,
            name=name,
            input=spec,
            labels=labels,
            palette=tuple(palette),
            output=output,
            source=source,
            origin=origin,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_metadata(), indent=2)

    @property
    def is_demo(self) -> bool:
        return bool(self.source.get("demo", False))


_SHORT_KEYS = ("task", "name", "input", "labels", "palette", "output", "source")


def _json_type(value: Any) -> str:
    """How a JSON value reads to the person who wrote it: 'a string ("x")', 'a list', ..."""
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if value is None:
        return "null"
    return "a list" if isinstance(value, list) else "an object"


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CardError(f"{what} must be a number, got {_json_type(value)}")
    return float(value)


def _numbers(value: Any, what: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)):
        raise CardError(f"{what} must be a list of numbers, got {_json_type(value)}")
    return tuple(_number(v, what) for v in value)


def task_names() -> tuple[str, ...]:
    """The tasks a card may name: every registered task (built-in and plug-in)."""
    from loupe.base import registry

    return registry.names()


def check_numbers(output: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Each of ``keys`` present in ``loupe.output`` is a number (CardError naming the key)."""
    for key in keys:
        if output.get(key) is not None:
            _number(output[key], f"loupe.output {key}")


# The built-in tasks' ``loupe.output`` checks (their registry entries' ``check_card``; the codebook
# and compression tasks check their own, richer entries when the model loads).
def check_choice(output: dict[str, Any], key: str, choices: tuple[str, ...]) -> None:
    """``loupe.output`` ``key``, when present, is one of ``choices`` (CardError naming them)."""
    value = output.get(key)
    if value is not None and value not in choices:
        raise CardError(f"loupe.output {key} must be one of {', '.join(choices)}; got {_json_type(value)}")


def check_segmentation_output(output: dict[str, Any]) -> None:
    check_numbers(output, ("stride", "threshold"))
    check_choice(output, "kind", ("logits", "probabilities", "probability", "class_map"))
    check_choice(output, "layout", ("NCHW", "NHWC"))
    if output.get("threshold") is not None and not 0.0 <= float(output["threshold"]) <= 1.0:
        raise CardError(f"loupe.output threshold is a probability in [0, 1], got {output['threshold']!r}")


def check_classification_output(output: dict[str, Any]) -> None:
    check_choice(output, "kind", ("logits", "probabilities"))
    top_k = output.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise CardError(f"loupe.output top_k must be a whole number >= 1, got {_json_type(top_k)}")


def check_density_output(output: dict[str, Any]) -> None:
    check_numbers(output, ("count_scale", "display_max", "stride"))


def check_depth_output(output: dict[str, Any]) -> None:
    """The depth keys (documented in ``loupe.tasks.depth``)."""
    check_choice(output, "kind", ("relative", "metric"))
    check_choice(output, "range_mode", ("fixed", "clip"))
    check_choice(output, "layout", ("NCHW", "NHWC"))
    if output.get("unit") is not None and not isinstance(output["unit"], str):
        raise CardError(f"loupe.output unit must be a string like \"m\", got {_json_type(output['unit'])}")
    if output.get("inverse") is not None and not isinstance(output["inverse"], bool):
        raise CardError(f"loupe.output inverse must be true or false, got {_json_type(output['inverse'])}")
    rng = output.get("range")
    if rng is not None:
        lo_hi = _numbers(rng, "loupe.output range")
        if len(lo_hi) != 2 or not lo_hi[0] < lo_hi[1]:
            raise CardError(f"loupe.output range needs 2 numbers [lo, hi] with lo < hi, got {rng!r}")
    if output.get("range_mode") == "fixed" and rng is None:
        raise CardError("loupe.output range_mode \"fixed\" needs a range [lo, hi]")


def check_detection_output(output: dict[str, Any]) -> None:
    """The detection keys (documented in ``loupe.tasks.detection``)."""
    for key, choices in (("format", ("yolov5", "yolov8", "end2end", "detr", "rtdetr", "boxes_scores_labels")),
                         ("activation", ("sigmoid", "softmax", "none")), ("box_format", ("xyxy", "cxcywh", "xywh"))):
        value = output.get(key)
        if value is not None and value not in choices:
            raise CardError(f"loupe.output {key} must be one of {', '.join(choices)}; got {_json_type(value)}")
    for key in ("score_threshold", "iou_threshold"):
        if output.get(key) is not None and not 0.0 <= _number(output[key], f"loupe.output {key}") <= 1.0:
            raise CardError(f"loupe.output {key} must be between 0 and 1, got {output[key]!r}")
    for key, low in (("max_detections", 1), ("label_offset", None)):
        value = output.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low)):
            raise CardError(f"loupe.output {key} must be a whole number{f' >= {low}' if low else ''}, got {_json_type(value)}")
    if output.get("normalized") is not None and not isinstance(output["normalized"], bool):
        raise CardError(f"loupe.output normalized must be true or false, got {_json_type(output['normalized'])}")
    roles = output.get("outputs")
    if roles is not None:
        if not isinstance(roles, dict):
            raise CardError(f"loupe.output outputs must be an object of role -> output name, got {_json_type(roles)}")
        for role, name in roles.items():
            if role not in ("predictions", "boxes", "scores", "labels", "count"):
                raise CardError(f"loupe.output outputs has unknown role {role!r} (known: predictions, boxes, "
                                "scores, labels, count)")
            if not isinstance(name, str):
                raise CardError(f"loupe.output outputs {role} must be an output's name, got {_json_type(name)}")


def check_keypoints_output(output: dict[str, Any]) -> None:
    """The keypoints keys (documented in ``loupe.tasks.keypoints``) and detection's own."""
    check_choice(output, "format", ("yolov8-pose", "heatmaps"))
    check_choice(output, "keypoint_activation", ("none", "sigmoid"))
    check_choice(output, "refine", ("taylor", "quarter", "none"))
    check_choice(output, "align", ("msra", "udp", "cells"))
    check_detection_output({k: v for k, v in output.items() if k != "format"})
    names = output.get("keypoints")
    if names is not None and (not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names)):
        raise CardError(f"loupe.output keypoints must be a list of keypoint names, got {_json_type(names)}")
    shape = output.get("kpt_shape")
    if shape is not None and (not isinstance(shape, list) or len(shape) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in shape)
                              or shape[0] < 1 or shape[1] not in (2, 3)):
        raise CardError(f"loupe.output kpt_shape must be [K, 2 or 3], got {shape!r}")
    skeleton = output.get("skeleton")
    if skeleton is not None and (not isinstance(skeleton, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in p)
            for p in skeleton)):
        raise CardError("loupe.output skeleton must be a list of [i, j] keypoint index pairs (from 0)")
    t = output.get("keypoint_threshold")
    if t is not None and not 0.0 <= _number(t, "loupe.output keypoint_threshold") <= 1.0:
        raise CardError(f"loupe.output keypoint_threshold must be between 0 and 1, got {t!r}")


def check_landmarks_output(output: dict[str, Any]) -> None:
    """The landmark keys (documented in ``loupe.tasks.landmarks``)."""
    for key, choices in (("format", ("points", "heatmaps")), ("refine", ("taylor", "quarter", "none")),
                         ("align", ("msra", "udp", "cells"))):
        check_choice(output, key, choices)
    if output.get("normalized") is not None and not isinstance(output["normalized"], bool):
        raise CardError(f"loupe.output normalized must be true or false, got {_json_type(output['normalized'])}")
    names = output.get("point_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise CardError("loupe.output point_names must be a list of strings, one per point")
    contours = output.get("contours")
    if contours is None:
        return
    if not isinstance(contours, list):
        raise CardError(f"loupe.output contours must be a list of {{\"name\", \"points\", \"closed\"}} objects, "
                        f"got {_json_type(contours)}")
    for k, c in enumerate(contours):
        what = f"loupe.output contours[{k}]"
        if not isinstance(c, dict):
            raise CardError(f"{what} must be an object with name, points (and closed), got {_json_type(c)}")
        unknown = sorted(set(c) - {"name", "points", "closed"})
        if unknown:
            raise CardError(f"{what} has unknown key {unknown[0]!r} (known: name, points, closed)")
        if not isinstance(c.get("name"), str) or not c["name"].strip():
            raise CardError(f"{what} name must be a non-empty string, got {_json_type(c.get('name'))}")
        pts = c.get("points")
        if not isinstance(pts, list) or not pts:
            raise CardError(f"{what} ({c['name']!r}) points must be a non-empty list of point indices")
        if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in pts):
            raise CardError(f"{what} ({c['name']!r}) points must be whole numbers >= 0 (indices into the points)")
        if c.get("closed") is not None and not isinstance(c["closed"], bool):
            raise CardError(f"{what} ({c['name']!r}) closed must be true or false, got {_json_type(c['closed'])}")


def check_anomaly_output(output: dict[str, Any]) -> None:
    check_numbers(output, ("past_frames", "threshold"))
    if output.get("output_range") is not None and len(_numbers(output["output_range"], "loupe.output output_range")) != 2:
        raise CardError("loupe.output output_range needs 2 numbers [low, high]")
    cal = output.get("calibration")
    if cal is not None:
        if not isinstance(cal, dict):
            raise CardError(f"loupe.output calibration must be an object, got {_json_type(cal)}")
        for key in ("psnr_min", "psnr_max"):
            if cal.get(key) is not None:
                _number(cal[key], f"loupe.output calibration {key}")


def _check_output(task: str, output: dict[str, Any]) -> None:
    """The card checks of the task's registry entry (none for a task nobody registered: the
    card is refused for that reason when it is made)."""
    from loupe.base import registry

    spec = registry.find(task)
    if spec is not None:
        try:
            spec.check_output(output)
        except registry.UnsupportedTask as e:  # a plug-in whose check does not import
            raise CardError(str(e)) from None


def has_card(metadata: dict[str, str]) -> bool:
    return (PREFIX + "task") in metadata


def sidecar_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def read_sidecar(model_path: str | Path) -> ModelCard | None:
    """The card in ``M.onnx.loupe.json`` next to the model, or None when there is none.

    Raises CardError naming the sidecar file and the key when it is malformed."""
    p = sidecar_path(model_path)
    if not p.is_file():
        return None
    try:
        md = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CardError(f"sidecar {p.name} cannot be read: it is not UTF-8 text") from None
    except OSError as e:
        raise CardError(f"sidecar {p.name} cannot be read: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise CardError(f"sidecar {p.name} cannot be read: it is not valid JSON ({e})") from None
    try:
        if not isinstance(md, dict):
            raise CardError(f'must hold one JSON object of "loupe.*" keys, got {_json_type(md)}')
        for key in md:
            if key in _SHORT_KEYS:
                raise CardError(f"key {key!r} needs the prefix: \"{PREFIX}{key}\"")
            if key.startswith(PREFIX) and key[len(PREFIX):] not in _SHORT_KEYS:
                raise CardError(f"unknown key {key!r} (known: {', '.join(PREFIX + k for k in _SHORT_KEYS)})")
        return ModelCard.from_metadata(md, origin="sidecar")
    except CardError as e:
        raise CardError(f"sidecar {p.name}: {e}") from None


def write_sidecar(model_path: str | Path, card: ModelCard) -> Path:
    """Store a card next to the model (the model file itself is never rewritten)."""
    p = sidecar_path(model_path)
    p.write_text(card.to_json(), encoding="utf-8")
    logger.info("wrote model card sidecar %s", p)
    return p


def embed_card(onnx_model: Any, card: ModelCard) -> None:
    """Write the card into an ``onnx.ModelProto``'s metadata_props (used by ``loupe_models``)."""
    md = card.to_metadata()
    keep = [p for p in onnx_model.metadata_props if not p.key.startswith(PREFIX)]
    del onnx_model.metadata_props[:]
    for p in keep:
        onnx_model.metadata_props.add(key=p.key, value=p.value)
    for k, v in md.items():
        onnx_model.metadata_props.add(key=k, value=v)


CITYSCAPES_LABELS = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
