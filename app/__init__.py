"""Loupe: see what an exported vision model does, live.

A task plug-in needs one name from Loupe: ``from loupe import TaskSpec`` (docs/PLUGINS.md).
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str):
    # The plug-in API by a stable name, imported on first use (``import loupe`` stays light).
    if name == "TaskSpec":
        from loupe.base.registry import TaskSpec

        return TaskSpec
    raise AttributeError(f"module 'loupe' has no attribute {name!r}")
