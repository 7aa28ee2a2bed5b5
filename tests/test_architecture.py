"""The Qt-free core stays Qt-free and torch-free (import-linter contract in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contract_holds():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is not installed (pip install -e '.[test]')"
    r = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "core is Qt-free and torch-free KEPT" in r.stdout


def test_core_imports_without_qt_or_torch():
    """Import every core module in a fresh interpreter with PySide6, pyqtgraph and torch blocked."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('PySide6', 'pyqtgraph', 'torch'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import loupe.sources.open, loupe.sources.video, loupe.sources.dicom, loupe.sources.images, loupe.sources.camera\n"
        "import loupe.inference.engine, loupe.tasks.segmentation, loupe.analyze, loupe.pipeline, loupe.player\n"
        "import loupe.quality, loupe.codecs, loupe.tasks.compression, loupe.compression_report\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
