"""Loading official checkpoints into ``loupe_models`` re-implementations (tensors only).

Checkpoint files are read with ``torch.load(..., weights_only=True)``: only tensors and
plain containers are accepted, never arbitrary pickled objects.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from loupe.base.errors import LoupeError
from loupe_models.nets.ddrnet import ddrnet23_slim

logger = logging.getLogger(__name__)

__all__ = ["CheckpointError", "load_ddrnet_checkpoint", "read_checkpoint", "unwrap_ddrnet"]

_MAX_LISTED = 5


class CheckpointError(LoupeError, ValueError):
    """The checkpoint cannot be read or does not fit the model; the message says why."""


def read_checkpoint(path: str | Path) -> object:
    """``torch.load`` on CPU with ``weights_only=True``; any failure becomes CheckpointError."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt zip, truncated file, refused pickle global, ...
        raise CheckpointError(f"cannot read checkpoint {p.name}: {_why(e)}") from e


def _why(e: Exception) -> str:
    """A short reason for a torch.load failure (without torch's advice to drop weights_only)."""
    text = str(e).strip()
    if isinstance(e, EOFError) or not text:
        return f"{type(e).__name__}: the file is empty or truncated"
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = " ".join(text.split(marker, 1)[1].split())
        detail = detail.split(". ", 1)[0].split(" Check the documentation", 1)[0]
        return (
            "not a tensors-only PyTorch checkpoint (only tensors and plain containers are "
            f"read, weights_only=True): {detail[:200]}"
        )
    first = text.splitlines()[0]
    first = first.split(". ", 1)[0]
    return f"{type(e).__name__}: {first[:300]}"


def _listing(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return shown + more


def state_dict_problems(sd: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]) -> list[str]:
    """What keeps ``sd`` from loading strictly where ``expected`` (name -> shape) is wanted:
    missing and unexpected keys or, when the names agree, the shape mismatches; [] when it fits."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    problems: list[str] = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if not problems:
        bad = [f"{k} {list(sd[k].shape)} != {list(s)}" for k, s in expected.items() if tuple(sd[k].shape) != tuple(s)]
        if bad:
            problems.append(f"{len(bad)} shape mismatches: {_listing(bad)}")
    return problems


def unwrap_ddrnet(
    ckpt: object, augment: bool = False, model: torch.nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """Map an official DDRNet checkpoint object onto the ``DualResNet`` state-dict names.

    Optional outer ``['state_dict']``; the HRNet-codebase ``FullModel`` prefix ``model.`` is
    stripped, ``loss.*`` dropped, and with ``augment=False`` the training-only aux head
    ``seghead_extra.*`` is dropped too. Checks the result against the model's names and
    shapes and raises CheckpointError (a ValueError) naming missing / unexpected keys.
    ``model`` (default: ``ddrnet23_slim(augment=augment)``) gives the expected names and
    shapes, e.g. a ``DualResNet`` of another width.
    """
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(
            f"checkpoint holds a {type(ckpt).__name__}, expected a dict of tensors"
        )
    if "state_dict" in ckpt and isinstance(ckpt["state_dict"], Mapping):
        ckpt = ckpt["state_dict"]
    out: dict[str, torch.Tensor] = {}
    for key, value in ckpt.items():
        if not isinstance(key, str):
            raise CheckpointError(f"checkpoint key {key!r} is not a string")
        name = key.removeprefix("model.")
        if name.startswith("loss."):
            continue
        if not augment and name.startswith("seghead_extra."):
            continue
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor"
            )
        out[name] = value

    model_is_default = model is None
    if model is None:
        model = ddrnet23_slim(augment=augment)
    expected = model.state_dict()
    variant = "augment=True" if augment else "augment=False"
    arch = "DDRNet-23-slim" if model_is_default else type(model).__name__
    problems = state_dict_problems(out, {k: tuple(v.shape) for k, v in expected.items()})
    if problems:
        raise CheckpointError(f"checkpoint does not fit {arch} ({variant}): " + "; ".join(problems))
    # keep the model's order (handy when comparing or re-saving)
    return {k: out[k] for k in expected}


def load_ddrnet_checkpoint(path: str | Path, augment: bool = False) -> dict[str, torch.Tensor]:
    """Read an official DDRNet-23-slim Cityscapes checkpoint and return a state dict that
    loads strictly into ``ddrnet23_slim(augment=augment)``.

    Raises CheckpointError (a ValueError) when the file cannot be read or its keys/shapes
    do not fit.
    """
    sd = unwrap_ddrnet(read_checkpoint(path), augment=augment)
    logger.info("loaded %d DDRNet entries from %s", len(sd), Path(path).name)
    return sd
