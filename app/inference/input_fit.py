"""Does a frame fit what a model's card says it expects? (Qt-free)

A model runs on any frame (greyscale is repeated to three channels, a scan is windowed to 8 bits),
so a model fed the wrong kind of picture gives numbers that look like results: an RGB video model
on a CT slice reports "moving 39 %". ``input_mismatch`` says in one sentence what the model
expects and what it got, or None when the frame fits; the window shows it as a warning and the
model keeps running.

What the card expects: ``loupe.input`` color (RGB/BGR colour or GRAY), ``raw_values`` (unwindowed
scan values such as HU) or ``window`` (a scan mapped through a fixed window), and, where the
card's ``loupe.source`` names one, ``modality`` (``"CT"`` or a list such as ``["CT", "MR"]``).
What the frame is: a scan when its metadata names a modality or its pixels are floats (DICOM
frames after rescale), colour when it has three channels, else an 8/16-bit greyscale image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from loupe.inference.card import ModelCard
from loupe.sources.base import Frame


def _modalities(source: dict[str, Any]) -> tuple[str, ...]:
    value = source.get("modality") or source.get("modalities")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(str(v).upper() for v in value if str(v).strip())


def describe_frame(frame: Frame) -> str:
    """What the frame is, in a few words a user knows ("a CT slice (HU values)", "8-bit colour")."""
    modality = str(frame.metadata.get("modality") or "").upper()
    if modality:
        units = " (HU values)" if modality == "CT" else " (raw scanner values)"
        return f"a {modality} {'image' if frame.is_color else 'slice'}{units}"
    if np.issubdtype(frame.pixels.dtype, np.floating):
        return "a greyscale scan (raw values)"
    bits = frame.pixels.dtype.itemsize * 8
    return f"{bits}-bit {'colour' if frame.is_color else 'greyscale'} pixels"


def describe_expected(card: ModelCard) -> str:
    """What the card asks for, in the same words."""
    inp = card.input
    wanted = _modalities(card.source)
    if wanted:
        what = "/".join(wanted) + " slices"
    elif inp.raw_values:
        what = "scans in raw values (e.g. CT in HU, from DICOM)"
    elif inp.window is not None:
        what = f"greyscale scans seen through the window {inp.window[0]:g}/{inp.window[1]:g}"
    elif inp.color == "GRAY":
        what = "8-bit greyscale images"
    else:
        what = f"8-bit colour images ({inp.color})"
    return what


def input_mismatch(card: ModelCard, frame: Frame) -> str | None:
    """One sentence on how ``frame`` does not fit ``card``'s input, or None when it fits."""
    modality = str(frame.metadata.get("modality") or "").upper()
    is_scan = bool(modality) or np.issubdtype(frame.pixels.dtype, np.floating)
    wanted = _modalities(card.source)
    inp = card.input
    problem = None
    if wanted:
        if modality not in wanted:
            problem = "different"
    elif inp.raw_values or inp.window is not None:
        if not is_scan or frame.is_color:
            problem = "not a scan"
    elif is_scan and not frame.is_color:
        problem = "a scan"  # a photo/video model: the slice is windowed to 8 bits and guessed at
    elif inp.color == "GRAY" and frame.is_color:
        problem = "colour"
    if problem is None:
        return None
    name = card.name or card.task
    return (f"{name} expects {describe_expected(card)}; this frame is {describe_frame(frame)}. "
            "Its results here may mean nothing (it keeps running; Model ▸ Remove unloads it).")
