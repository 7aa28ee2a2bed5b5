"""bench/render.py: a tiny run prints render's and analyze's frames/s and the cost split for each
set of demo models (no timing is asserted: the figures are for people)."""

from __future__ import annotations

import re

from tests.helpers import bench_module


def test_benchmark_smoke(capsys):
    with bench_module("render") as bench:
        assert bench.main(["--frames", "8", "--uhd-frames", "2"]) == 0
    text = capsys.readouterr().out
    assert "loupe render vs loupe analyze" in text
    for name in ("segmentation", "detection", "both"):
        row = re.search(rf"^{name}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$",
                        text, re.M)
        assert row, f"no figures for {name}:\n{text}"
        analyze_fps, render_fps, ratio, _infer, _draw, _encode, size_mb = (float(v) for v in row.groups())
        assert analyze_fps > 0 and render_fps > 0 and size_mb > 0
        assert abs(ratio - render_fps / analyze_fps) < 0.01 + 0.01 * ratio  # the ratio column is what it says
    for preset in ("ultrafast", "veryfast", "fast"):
        row = re.search(rf"^{preset}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", text, re.M)
        assert row and all(float(v) > 0 for v in row.groups()), f"no 4K figures for {preset}:\n{text}"
