"""Qt-free tasks: preprocess a frame into model inputs, postprocess outputs into a result record.

Each task module defines a frozen result dataclass and a task class with ``prepare(frame)``,
``postprocess(outputs, ctx)``, ``columns()`` and ``row(result)`` (the ``analyze`` columns).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loupe.inference.engine import Engine
    from loupe.tasks.base import Task


class UnsupportedTask(Exception):
    """The model's task has no panel yet; the message is meant for the user."""


def make_task(engine: Engine, display_max_side: int | None = 1280) -> Task:
    """The task object for a loaded engine, chosen by its card."""
    from loupe.inference.safety import check_io

    check_io(engine)  # inputs/outputs the task can use, or a ModelError that says why not
    task = engine.card.task
    if task == "segmentation":
        from loupe.tasks.segmentation import SegmentationTask

        return SegmentationTask(engine, display_max_side=display_max_side)
    if task == "density":
        from loupe.tasks.density import DensityTask

        return DensityTask(engine, display_max_side=display_max_side)
    if task == "anomaly":
        from loupe.tasks.anomaly import AnomalyTask

        return AnomalyTask(engine, display_max_side=display_max_side)
    if task == "compression":
        from loupe.tasks.compression import CompressionTask

        return CompressionTask(engine, display_max_side=display_max_side)
    if task == "codebook":
        from loupe.tasks.codebook import CodebookTask

        return CodebookTask(engine, display_max_side=display_max_side)
    raise UnsupportedTask(
        f"{engine.path.name} is a {task!r} model; this version of Loupe has panels for segmentation, "
        "density, anomaly, codebook and compression"
    )
