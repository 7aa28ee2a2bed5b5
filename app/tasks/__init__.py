"""Qt-free tasks: preprocess a frame into model inputs, postprocess outputs into a result record.

Each task module defines a frozen result dataclass and a task class with ``prepare(frame)``,
``postprocess(outputs, ctx)``, ``columns()`` and ``row(result)`` (the ``analyze`` columns); the
registry (``loupe.base.registry``) says which tasks exist and what each provides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loupe.base.registry import UnsupportedTask

if TYPE_CHECKING:
    from loupe.inference.engine import Engine
    from loupe.tasks.base import Task

__all__ = ["UnsupportedTask", "make_task"]


def make_task(engine: Engine, display_max_side: int | None = 1280) -> Task:
    """The task object for a loaded engine, chosen by its card's ``loupe.task`` in the registry:
    its input/output checks first (a ModelError that says why not), then its task class.
    UnsupportedTask when no registered task has that name or its plug-in cannot be loaded."""
    from loupe.base import registry

    return registry.get(engine.card.task).make(engine, display_max_side=display_max_side)
