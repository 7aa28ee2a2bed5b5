"""The Qt-free core stays Qt-free and torch-free (import-linter contracts in pyproject.toml).

The core is every module of ``loupe`` except the UI (``loupe.ui``), the CLI, the entry point and
the system report (which imports PySide6 inside a function to print the Qt version). Both checks
below find the core's modules themselves, so a module added later is checked without being named.
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Not core: allowed to import Qt (lazily, in the CLI and the system report) and loupe_models.
NOT_CORE = ("loupe.ui", "loupe.cli", "loupe.__main__")
#: What no core module may load when it is imported.
BLOCKED = ("PySide6", "shiboken6", "pyqtgraph", "torch", "loupe_models")
CONTRACTS = (
    "core is Qt-free and torch-free",
    "the CLI, entry point and system report are not imported by the core",
    "no loupe module imports torch (fitting goes through loupe_models)",
    "layers: cli > commands | ui > run > tasks > inference > sources > base",
)


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is not installed (pip install -e '.[test]')"
    return subprocess.run([exe, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=cwd,
                          capture_output=True, text=True, env=env)


def _is_core(name: str) -> bool:
    return not any(name == n or name.startswith(n + ".") for n in NOT_CORE)


def core_modules() -> list[str]:
    """Every module of ``loupe`` found on disk (not by importing it), less the UI, the CLI and
    the entry point; ``loupe.resources`` is mapped from ``resources/`` by pyproject.toml."""
    found: list[str] = []

    def walk(pkg: str) -> None:
        spec = importlib.util.find_spec(pkg)
        assert spec is not None and spec.submodule_search_locations, pkg
        found.append(pkg)
        for info in pkgutil.iter_modules(list(spec.submodule_search_locations), pkg + "."):
            if not _is_core(info.name):
                continue
            if info.ispkg:
                walk(info.name)
            else:
                found.append(info.name)

    walk("loupe")
    if "loupe.resources" not in found:
        walk("loupe.resources")
    return sorted(found)


def test_import_linter_contracts_hold():
    r = _lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in CONTRACTS:
        assert f"{name} KEPT" in r.stdout, r.stdout


def test_a_new_core_module_is_checked_without_being_named(tmp_path):
    """A copy of the package with new modules that import Qt, loupe_models, torch or the CLI: each
    breaks a contract, though no contract names the module."""
    shutil.copytree(ROOT / "app", tmp_path / "loupe", ignore=shutil.ignore_patterns("__pycache__"))
    new = {
        "loupe.tasks.newtask": "from PySide6.QtCore import QObject\n",
        "loupe.fresh": "def f():\n    import pyqtgraph\n",  # a lazy import counts as well
        "loupe.sources.newsource": "import loupe_models.nets.anomaly\n",
        "loupe.inference.newengine": "import torch\n",
        "loupe.newhelper": "from loupe.cli import main\n",  # Qt through the CLI
        "loupe.base.upward": "from loupe.run.analyze import analyze\n",  # a layer importing upwards
        "loupe.sources.reaches_up": "def f():\n    from loupe.tasks import make_task\n",
    }
    for name, code in new.items():
        (tmp_path / (name.replace(".", "/") + ".py")).write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = _lint_imports(tmp_path, env)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "loupe.tasks.newtask -> PySide6" in r.stdout, r.stdout
    assert "loupe.fresh -> pyqtgraph" in r.stdout, r.stdout
    assert "loupe.sources.newsource -> loupe_models" in r.stdout, r.stdout
    assert "loupe.inference.newengine -> torch" in r.stdout, r.stdout
    assert "loupe.newhelper -> loupe.cli" in r.stdout, r.stdout
    assert "loupe.base.upward -> loupe.run.analyze" in r.stdout, r.stdout
    assert "loupe.sources.reaches_up -> loupe.tasks" in r.stdout, r.stdout


def test_the_core_module_list_is_found_not_written():
    mods = core_modules()
    # the modules the hand-written list of the old test left out are there, the UI is not
    for name in ("loupe.tasks.anomaly", "loupe.tasks.density", "loupe.tasks.codebook", "loupe.run.cluster",
                 "loupe.run.resume", "loupe.base.quality", "loupe.base.text", "loupe.resources", "loupe.sysinfo"):
        assert name in mods
    assert not [m for m in mods if not _is_core(m)]
    on_disk = {p.stem for p in (ROOT / "app" / "tasks").glob("*.py") if p.stem != "__init__"}
    assert {m.rsplit(".", 1)[1] for m in mods if m.startswith("loupe.tasks.")} == on_disk


def test_core_imports_without_qt_or_torch():
    """Import every core module in a fresh interpreter with PySide6, pyqtgraph, torch and
    loupe_models blocked; none may fail or load them."""
    code = (
        "import importlib, sys, traceback\n"
        f"BLOCKED = {BLOCKED!r}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "bad = []\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as e:\n"
        "        bad.append(f'{name}: {type(e).__name__}: {e}')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED)\n"
        "print('\\n'.join(bad) or 'ok', loaded)\n"
    )
    mods = core_modules()
    r = subprocess.run([sys.executable, "-c", code, *mods], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "ok []", r.stdout + r.stderr


def test_no_module_in_app_is_over_600_lines():
    """A standing rule since the layout issue: a module that grows past 600 lines is split."""
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "app").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, long


def test_top_of_app_holds_at_most_four_modules_besides_the_cli():
    top = sorted(p.name for p in (ROOT / "app").glob("*.py") if p.name != "cli.py")
    assert len(top) <= 4, top
