"""examples/plugin, installed as a user would install it (pip, into a folder of its own that is put
on the path: its dist-info carries the ``loupe.tasks`` entry point that importlib.metadata finds),
then its README's shell block run line by line, each on its own, from a copy of examples/plugin/:
``loupe tasks`` lists the plug-in and ``loupe analyze`` writes its columns."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "plugin"


def readme_lines() -> list[str]:
    text = (PLUGIN / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) == 1, "the README has one sh block"
    lines = [ln.strip() for ln in blocks[0].splitlines() if ln.strip() and not ln.strip().startswith("#")]
    for ln in lines:  # each line runs on its own: nothing carried from one line to the next
        assert not ln.endswith("\\") and not ln.startswith(("cd ", "export ")) and "$" not in ln, ln
    return lines


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """pip install of a copy of the example into a target folder; the env that puts it on the path."""
    src = tmp_path_factory.mktemp("src") / "plugin"
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    target = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                        "--no-index", "--quiet", "--target", str(target), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert list(target.glob("loupe_heatmap-0.1.0.dist-info")), sorted(p.name for p in target.iterdir())
    bin_dir = str(Path(sys.executable).parent)  # this venv's python and loupe come first
    env = {**os.environ, "PYTHONPATH": str(target), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "QT_QPA_PLATFORM": "offscreen"}
    return {"env": env, "src": src}


def test_loupe_tasks_lists_the_builtins_and_the_installed_plugin(installed):
    r = subprocess.run([sys.executable, "-m", "loupe", "tasks"], capture_output=True, text=True,
                       timeout=120, env=installed["env"])
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    from loupe.base.registry import _BUILTINS

    builtins = [spec.name for spec in _BUILTINS]
    assert [ln.split()[0] for ln in lines] == [*builtins, "heatmap"]  # built-ins first, then plug-ins
    assert re.match(r"heatmap +loupe-heatmap 0\.1\.0 +panel +one map per frame", lines[-1]), lines[-1]
    for ln in lines[:-1]:
        assert re.match(r"[a-z_-]+ +built-in +panel ", ln), ln


def test_the_readme_runs_and_writes_the_plugins_columns(installed, tmp_path):
    work = tmp_path / "plugin"  # "from examples/plugin/": a copy, so nothing is written into the repo
    shutil.copytree(installed["src"], work)
    lines = readme_lines()
    assert lines[-1].startswith("loupe analyze ")
    for line in lines:
        r = subprocess.run(line, shell=True, cwd=work, capture_output=True, text=True, timeout=300,
                           env=installed["env"])
        assert r.returncode == 0, f"{line}\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
        if line.startswith("loupe tasks"):
            assert re.search(r"^heatmap +loupe-heatmap 0\.1\.0 +panel", r.stdout, flags=re.M), r.stdout
    out = re.search(r"--out (\S+)", lines[-1]).group(1)
    with open(work / out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24 and {r["task"] for r in rows} == {"heatmap"}
    assert list(rows[0])[-5:] == ["heat_mean", "heat_max", "heat_peak_x", "heat_peak_y", "heat_above"]
    # the clip's square moves 4 pixels right a frame: the edge map's peak moves with it
    xs = [float(r["heat_peak_x"]) for r in rows]
    steps = [b - a for a, b in zip(xs, xs[1:])]
    assert sorted(steps)[len(steps) // 2] == pytest.approx(4.0), xs
    assert {float(r["heat_peak_y"]) for r in rows} <= {31.5, 32.5, 63.5, 64.5}  # the square's top or bottom edge
    for r in rows:  # a 220-on-30 step: |Laplacian| at a corner is 2 x 190/255
        assert float(r["heat_max"]) == pytest.approx(2 * 190 / 255, abs=0.08)
        assert 0.0 < float(r["heat_mean"]) < 0.1 and 0.0 < float(r["heat_above"]) < 0.1


def test_the_plugin_panel_shows_in_the_window_and_closes(installed, tmp_path):
    """The window finds the plug-in's panel through the entry point (a fresh interpreter with the
    plug-in on its path): it shows the map and the peak, and the tab's close button unloads it."""
    work = tmp_path / "plugin"
    shutil.copytree(installed["src"], work)
    env = installed["env"]
    for line in readme_lines()[:2]:  # the model and the clip
        subprocess.run(line, shell=True, cwd=work, check=True, capture_output=True, timeout=300, env=env)
    script = r"""
import sys
from PySide6.QtWidgets import QApplication
from loupe.ui.main_window import MainWindow
from loupe_heatmap.panel import HeatmapPanel

app = QApplication([])
win = MainWindow(ask_task=False)
win.show()
shown = []
win.frameShown.connect(shown.append)
win.add_model("edges.onnx")
win.open_source("square.mp4", playing=False)
deadline = __import__("time").monotonic() + 60
while (not win.models or not shown) and __import__("time").monotonic() < deadline:
    app.processEvents()
    if win.models and not shown and win.player is not None:
        win.step()
        __import__("time").sleep(0.05)
panel = win.panels[0]
assert isinstance(panel, HeatmapPanel), type(panel)
assert panel.overlay.image is not None and panel.peak_item.data["x"][0] > 0
print("tab", win.panel_tabs.tabText(0), win.panel_tabs.tabsClosable())
win.panel_tabs.tabCloseRequested.emit(0)
print("after close", len(win.models), win.panel_tabs.count())
win.close()
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=work, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "tab edges True" in r.stdout and "after close 0 0" in r.stdout
