"""Small text rules shared by the app, ``loupe analyze`` and ``loupe_models`` (Qt-free):
natural file-name order and ``START:END`` spans in seconds."""

from __future__ import annotations

import math
import re
from pathlib import Path

__all__ = ["natural_key", "parse_span"]

_DIGITS = re.compile(r"(\d+)")


def natural_key(path: str | Path) -> tuple[tuple[tuple[int, int | str], ...], str]:
    """Sort key of a file name (the last part of ``path``) that puts ``img2`` before ``img10``.

    Case is ignored (``A1`` and ``a1`` sort together) and digit runs compare as numbers (any
    Unicode decimal digits; superscripts such as ``²`` are text). Names equal under those rules
    (``a01``/``a1``, ``A1``/``a1``) are ordered by the name itself, so the order never depends
    on the order a folder lists its files in."""
    name = Path(path).name
    # re.split with a group alternates text (even positions) and digit runs (odd positions)
    parts = _DIGITS.split(name.casefold())
    key = tuple((0, int(p)) if i % 2 else (1, p) for i, p in enumerate(parts) if p)
    return key, name


def parse_span(text: str) -> tuple[float, float | None]:
    """``"START:END"`` in seconds -> (start, end), either side may be empty: ``":4"`` is
    (0.0, 4.0), ``"2:"`` is (2.0, None) (to the end), ``":"`` the whole clip.

    Raises ValueError with a one-line message for anything else: not two numbers, a number that
    is not finite, a negative start, or an end not after the start."""
    parts = str(text).strip().split(":")
    usage = f"a span is START:END in seconds (either may be empty, e.g. 2:10 or :5), got {text!r}"
    if len(parts) != 2:
        raise ValueError(usage)
    try:
        start = float(parts[0]) if parts[0].strip() else 0.0
        end = float(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise ValueError(usage) from None
    if not math.isfinite(start) or (end is not None and not math.isfinite(end)):
        raise ValueError(f"span {text!r}: START and END must be finite numbers of seconds")
    if start < 0 or (end is not None and end <= start):
        raise ValueError(f"span {text!r}: need 0 <= START < END")
    return start, end
