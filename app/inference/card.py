"""The model card: what an exported model is and how to feed it (Qt-free).

A card lives in the ONNX ``metadata_props`` under ``loupe.*`` keys (written by ``loupe_models``
at export), or, for a model without one, in a sidecar JSON next to the model
(``model.onnx.loupe.json``) that the app writes after asking the user. Loading a card never
executes anything from the model file.

Keys (values are JSON strings unless noted):

- ``loupe.task``: plain string, one of TASKS.
- ``loupe.name``: plain string, a short display name.
- ``loupe.input``: ``{"color": "RGB"|"BGR"|"GRAY", "scale": float, "mean": [..], "std": [..],
  "size_multiple": int, "fixed_size": [h, w] | null, "raw_values": bool}``. Pixels are fed as
  ``(x * scale - mean) / std`` in NCHW float32. ``raw_values`` asks for unwindowed values (e.g. HU);
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

logger = logging.getLogger(__name__)

TASKS = ("segmentation", "anomaly", "density", "codebook", "compression")
PREFIX = "loupe."
SIDECAR_SUFFIX = ".loupe.json"


class CardError(ValueError):
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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        known = {k: d[k] for k in ("color", "scale", "mean", "std", "size_multiple", "fixed_size", "raw_values", "window") if k in d}
        if "mean" in known:
            known["mean"] = tuple(float(v) for v in known["mean"])
        if "std" in known:
            known["std"] = tuple(float(v) for v in known["std"])
        if known.get("fixed_size") is not None:
            known["fixed_size"] = (int(known["fixed_size"][0]), int(known["fixed_size"][1]))
        if known.get("window") is not None:
            known["window"] = (float(known["window"][0]), float(known["window"][1]))
        if "size_multiple" in known:
            known["size_multiple"] = int(known["size_multiple"])
        if "scale" in known:
            known["scale"] = float(known["scale"])
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
        if self.task not in TASKS:
            raise CardError(f"loupe.task must be one of {', '.join(TASKS)}; got {self.task!r}")
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
    def from_metadata(cls, md: dict[str, str], origin: str = "metadata") -> ModelCard:
        def load(key: str, default: Any) -> Any:
            raw = md.get(PREFIX + key)
            if raw is None:
                return default
            try:
                return json.loads(raw)
            except json.JSONDecodeError as e:
                raise CardError(f"{PREFIX}{key} is not valid JSON: {e}") from None

        task = md.get(PREFIX + "task")
        if task is None:
            raise CardError("the model has no loupe.task entry")
        inp = load("input", {})
        if not isinstance(inp, dict):
            raise CardError("loupe.input must be a JSON object")
        key = "input"
        try:  # values of the wrong type (a string for a number, a number for a list) name their key
            spec = InputSpec.from_dict(inp)
            key = "palette"
            palette = tuple(tuple(int(v) for v in c[:3]) for c in load("palette", []))
            key = "labels"
            labels = tuple(str(x) for x in load("labels", []))
            key = "output"
            output = dict(load("output", {}))
            key = "source"
            source = dict(load("source", {}))
        except CardError:
            raise
        except (TypeError, ValueError, KeyError, IndexError) as e:
            raise CardError(f"{PREFIX}{key} holds a value of the wrong type ({e})") from None
        return cls(
            task=task,
            name=md.get(PREFIX + "name", ""),
            input=spec,
            labels=labels,
            palette=palette,  # type: ignore[arg-type]
            output=output,
            source=source,
            origin=origin,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_metadata(), indent=2)

    @property
    def is_demo(self) -> bool:
        return bool(self.source.get("demo", False))


def has_card(metadata: dict[str, str]) -> bool:
    return (PREFIX + "task") in metadata


def sidecar_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def read_sidecar(model_path: str | Path) -> ModelCard | None:
    p = sidecar_path(model_path)
    if not p.is_file():
        return None
    try:
        md = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CardError(f"sidecar {p.name} cannot be read: {e}") from None
    return ModelCard.from_metadata(md, origin="sidecar")


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
