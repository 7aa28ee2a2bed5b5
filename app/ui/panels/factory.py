"""A loaded model's panel: made by its task's registry entry (``TaskSpec.panel``), or the table of
its ``analyze`` values. A plug-in's panel that fails is reported and replaced by that table."""

from __future__ import annotations

import logging

from loupe.base import registry
from loupe.run.pipeline import LoadedModel

logger = logging.getLogger(__name__)


def make_panel(lm: LoadedModel, host):
    """The model's panel for window ``host``; a task without a panel gets the table of its
    ``analyze`` values, and so does a plug-in whose panel fails (named in the banner): the model
    still runs."""
    from loupe.ui.panels.table import make_panel as table_panel

    spec = lm.spec
    if spec is None or not spec.has_panel:
        return table_panel(lm, host)
    try:
        return spec.make_panel(lm, host)
    except Exception as e:  # a plug-in's panel code: never lose the model over it
        if spec.builtin:
            raise
        logger.warning("panel of %s failed", lm.name, exc_info=True)
        host.show_error(f"{lm.name}: the {spec.name} panel ({spec.origin}) failed "
                        f"({type(e).__name__}: {e}); showing its values as a table")
        return table_panel(lm, host)


def broken_plugins() -> str:
    """The banner's line naming the task plug-ins that failed to load ("" when none did)."""
    failed = registry.failures()
    if not failed:
        return ""
    return "Task plug-ins not loaded (`loupe tasks` lists them): " + "; ".join(
        f"{f.name} ({f.origin}): {f.error}" for f in failed)
