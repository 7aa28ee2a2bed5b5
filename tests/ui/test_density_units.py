"""The density panel speaks in counts: a map whose card has count_scale 0.01 (M-SegNet-style
maps, the demo density model) must not show 100x the people on its colour bar or readout."""

from __future__ import annotations

import numpy as np

from loupe.tasks.density import DensityResult
from loupe.ui.panels.density import DensityPanel


def test_colour_bar_range_box_and_readout_are_in_counts_per_output_cell(qtbot):
    panel = DensityPanel("m", display_max=6.8, count_scale=0.01, stride=2)
    qtbot.addWidget(panel)
    raw = np.zeros((40, 60), np.float32)
    raw[10:20, 20:30] = 2.0  # raw model values; 100 cells x 2.0 x 0.01 = 2.0 people
    panel.show_result(DensityResult(raw, float(raw.sum()) * 0.01, None, 6.8), (40, 60), 0)
    assert panel.colour_bar.unit == "count per 2×2 px"
    lo, hi = panel.colour_bar.lo, panel.colour_bar.hi
    assert lo == 0.0 and np.isclose(hi, panel.levels_max * 0.01)  # the bar in counts, not raw
    assert np.isclose(panel.range_box.value(), hi)
    text = panel.value_at(25.0, 15.0)
    assert text is not None and text.startswith("density 0.02 ")  # 2.0 raw x 0.01
    panel.range_box.setValue(0.05)  # typed in counts: 5 raw units at the top of the range
    assert np.isclose(panel.levels_max, 5.0) and np.isclose(panel.colour_bar.hi, 0.05)


def test_unscaled_maps_keep_count_per_pixel(qtbot):
    panel = DensityPanel("m", display_max=1.0)
    qtbot.addWidget(panel)
    assert panel.colour_bar.unit == "count/px"
