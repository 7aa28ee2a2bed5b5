"""The interface every task follows (Qt-free)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from loupe.sources.base import Frame


class Task(Protocol):
    name: str

    def prepare(self, frame: Frame) -> tuple[dict[str, np.ndarray], Any]:
        """Model feeds for one frame, and a context postprocess needs (e.g. geometry)."""
        ...

    def postprocess(self, outputs: list[np.ndarray], ctx: Any) -> Any:
        """The task's frozen result record (display-ready arrays)."""
        ...

    def columns(self) -> list[str]:
        """The task's ``analyze`` columns, in order."""
        ...

    def row(self, result: Any) -> dict[str, Any]:
        """The task's ``analyze`` values for one result."""
        ...
