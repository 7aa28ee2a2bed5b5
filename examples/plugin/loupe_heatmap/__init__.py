"""A Loupe plug-in: the ``heatmap`` task.

A heatmap model outputs one map per frame (saliency, edges, focus, "where is it"): N x 1 x h x w,
or N x h x w. The task reports the map's mean and maximum, where the maximum is (in frame pixels)
and the fraction of the frame above a threshold; the panel draws the map over the frame with a
fixed colour range, marks the peak, and plots the mean over time.

This module is what Loupe imports to learn that the task exists (the entry point
``heatmap = "loupe_heatmap:SPEC"``): it stays light. The task and the panel are named by
``"module:attribute"`` strings, imported only when a heatmap model is loaded (the panel only by
the window, so ``loupe analyze`` never imports Qt for it).
"""

from loupe import TaskSpec

__version__ = "0.1.0"

SPEC = TaskSpec(
    name="heatmap",
    task="loupe_heatmap.task:HeatmapTask",
    panel="loupe_heatmap.panel:make_panel",
    result="loupe_heatmap.task:HeatmapResult",
    check_io="loupe_heatmap.task:check_io",
    check_card="loupe_heatmap.task:check_card",
    history=0,  # each frame on its own
    overlap_safe=True,  # postprocess reads only its outputs, its context and settings fixed per frame
    summary="one map per frame: mean, max, peak position, area above a threshold",
)
