"""Packaging: the wheel (contents, entry point, dependencies), the icons and the desktop entry.

The wheel is built once per run from a copy of the sources (``python -m build --wheel
--no-isolation``: about a second, no network; an isolated build downloads setuptools first).
"""

from __future__ import annotations

import configparser
import shutil
import struct
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
ICON_SIZES = (16, 32, 48, 64, 128, 256)
PYTHON_ONLY = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="pip install -e '.[test]' (the test extra brings `build`)")
    src = tmp_path_factory.mktemp("src")
    for folder in ("app", "models", "resources"):
        shutil.copytree(ROOT / folder, src / folder, ignore=PYTHON_ONLY)
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    # --skip-dependency-check: the build-system table also names `wheel`, which setuptools>=70.1
    # no longer needs (it builds wheels itself); we build with the environment's setuptools.
    cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check",
           "--outdir", str(out), str(src)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    wheels = list(out.glob("loupe-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def _dist_info(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as z:
        (path,) = [n for n in z.namelist() if n.endswith(f".dist-info/{name}")]
        return z.read(path).decode()


#: (sys_platform, platform_system) of the platforms users install on
PLATFORMS = {"linux": ("linux", "Linux"), "windows": ("win32", "Windows"), "macos": ("darwin", "Darwin")}


@pytest.fixture(scope="module")
def metadata(wheel):
    return Parser().parsestr(_dist_info(wheel, "METADATA"))


def needed(metadata, platform: str = "linux", extra: str = "") -> dict[str, Requirement]:
    """The wheel's Requires-Dist that pip installs on ``platform`` for ``loupe[extra]`` (""
    for plain ``loupe``), by normalised name, markers evaluated for that platform."""
    sys_platform, system = PLATFORMS[platform]
    out: dict[str, Requirement] = {}
    for line in metadata.get_all("Requires-Dist") or []:
        r = Requirement(line)
        env = {"sys_platform": sys_platform, "platform_system": system, "extra": ""}
        applies = r.marker is None or r.marker.evaluate(env) or (extra and r.marker.evaluate({**env, "extra": extra}))
        if applies:
            out[r.name.lower()] = r
    return out


@pytest.fixture(scope="module")
def requirements(metadata) -> list[tuple[Requirement, frozenset[str]]]:
    """Requires-Dist on Linux, each with the extras that pull it in (empty: a base dependency)."""
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert {"fit", "gpu", "test", "eval"} <= extras, extras
    base = needed(metadata)
    out = [(r, frozenset()) for r in base.values()]
    for line in metadata.get_all("Requires-Dist") or []:
        r = Requirement(line)
        if r.name.lower() in base and str(base[r.name.lower()]) == str(r):
            continue
        pulled = frozenset(e for e in extras if str(needed(metadata, "linux", e).get(r.name.lower())) == str(r))
        if pulled:
            out.append((r, pulled))
    return out


@pytest.mark.slow
def test_wheel_contains_the_app_models_and_resources(names):
    for must in ("loupe/__init__.py", "loupe/cli.py", "loupe/sysinfo.py", "loupe/ui/about.py",
                 "loupe/resources/__init__.py", "loupe/resources/icon.png", "loupe/resources/icons/loupe.svg",
                 "loupe/base/registry.py", "loupe/run/analyze.py", "loupe_models/nets/ddrnet.py",
                 "loupe_models/export_density.py"):
        assert must in names, must
    for n in ICON_SIZES:
        assert f"loupe/resources/icons/loupe-{n}.png" in names
    assert not any(n.startswith(("tests/", "bench/", "app/", "resources/")) for n in names)
    assert not any("__pycache__" in n for n in names)


@pytest.mark.slow
def test_wheel_carries_every_source_and_resource_file(names):
    """The package list and package-data globs in pyproject.toml miss nothing in the tree."""
    expected = []
    for folder, prefix in (("app", "loupe"), ("models", "loupe_models")):
        expected += [f"{prefix}/{p.relative_to(ROOT / folder).as_posix()}" for p in (ROOT / folder).rglob("*.py")
                     if "__pycache__" not in p.parts]
    expected += [f"loupe/resources/{p.relative_to(ROOT / 'resources').as_posix()}"
                 for p in (ROOT / "resources").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    missing = sorted(set(expected) - names)
    assert not missing, f"not in the wheel (fix [tool.setuptools] in pyproject.toml): {missing}"


@pytest.mark.slow
def test_wheel_entry_point(wheel):
    eps = configparser.ConfigParser()
    eps.read_string(_dist_info(wheel, "entry_points.txt"))
    assert eps["console_scripts"]["loupe"].strip() == "loupe.cli:main"


@pytest.mark.slow
def test_torch_only_in_the_fit_extra(requirements):
    torch = [(r, extras) for r, extras in requirements if r.name.lower() in ("torch", "torchvision")]
    assert torch, "the [fit] extra should bring torch"
    for r, extras in torch:
        assert extras == {"fit"}, str(r)


@pytest.mark.slow
@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize("extra", ["", "gpu", "fit"])
def test_one_onnxruntime_per_platform(metadata, platform, extra):
    """onnxruntime-gpu has no macOS wheel: plain onnxruntime there, the GPU build (which also
    runs on the CPU) elsewhere, and never both (they install the same `onnxruntime` package),
    with or without an extra. Read from the built wheel's Requires-Dist."""
    reqs = needed(metadata, platform, extra)
    runtimes = sorted(n for n in reqs if n in ("onnxruntime", "onnxruntime-gpu"))
    assert runtimes == (["onnxruntime"] if platform == "macos" else ["onnxruntime-gpu"]), (platform, extra, runtimes)
    if platform != "macos" and extra == "gpu":
        assert {"cuda", "cudnn"} <= reqs["onnxruntime-gpu"].extras, str(reqs["onnxruntime-gpu"])


@pytest.mark.slow
def test_onnxruntime_markers_are_written_as_the_issue_says(metadata):
    lines = [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]
    ort = {str(r.marker) for r in lines if r.name.lower() == "onnxruntime"}
    gpu = {str(r.marker) for r in lines if r.name.lower() == "onnxruntime-gpu"}
    assert ort == {'sys_platform == "darwin"'}, ort
    # the base one and the `gpu` extra's: both only off macOS
    assert gpu == {'sys_platform != "darwin"', 'sys_platform != "darwin" and extra == "gpu"'}, gpu


@pytest.mark.slow
def test_base_dependencies_cover_viewing_and_inference(requirements):
    base = {r.name.lower() for r, extras in requirements if not extras}
    assert {"pyside6-essentials", "pyqtgraph", "numpy", "opencv-python-headless", "av", "pydicom",
            "platformdirs", "onnxruntime-gpu"} <= base
    assert "build" not in base and "pytest" not in base


# --- icons and desktop entry (fast) ----------------------------------------------------------------


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


def test_icon_pngs_have_their_sizes():
    for n in ICON_SIZES:
        assert _png_size(ROOT / "resources" / "icons" / f"loupe-{n}.png") == (n, n)
    svg = (ROOT / "resources" / "icons" / "loupe.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and 'viewBox="0 0 256 256"' in svg


def test_icon_svg_renders_like_the_pngs(qapp):
    """The committed PNGs are up to date with the SVG (re-render: make icons)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(ROOT / "resources" / "icons" / "loupe.svg"))
    assert renderer.isValid()
    img = QImage(64, 64, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(Qt.GlobalColor.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(p)
    p.end()
    png = QImage(str(ROOT / "resources" / "icons" / "loupe-64.png")).convertToFormat(img.format())
    diff = sum(
        1 for y in range(0, 64, 2) for x in range(0, 64, 2)
        if abs(img.pixelColor(x, y).red() - png.pixelColor(x, y).red()) > 40
        or abs(img.pixelColor(x, y).alpha() - png.pixelColor(x, y).alpha()) > 40
    )
    assert diff < 20, f"{diff} pixels differ: re-render the PNGs (make icons)"


def test_resources_find_the_icons():
    from loupe.resources import ICON_SIZES as sizes
    from loupe.resources import icon_path, icon_paths

    assert tuple(sizes) == ICON_SIZES
    assert icon_path().name == "loupe.svg"
    assert icon_path(48).name == "loupe-48.png"
    assert icon_path(50).name == "loupe-64.png"
    assert icon_path(1000).name == "loupe-256.png"
    assert [p.name for p in icon_paths()] == [f"loupe-{n}.png" for n in ICON_SIZES]


def test_desktop_entry_mime_types():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(ROOT / "packaging" / "loupe.desktop")
    d = entry["Desktop Entry"]
    assert d["Type"] == "Application" and d["Icon"] == "loupe" and d["Exec"].startswith("loupe ")
    mime = set(filter(None, d["MimeType"].split(";")))
    want = {
        "video/mp4", "video/x-matroska", "video/webm", "video/x-msvideo", "video/quicktime",  # mp4 mkv webm avi mov
        "image/png", "image/jpeg", "image/tiff", "image/bmp", "application/dicom",
    }
    assert want <= mime, want - mime


def test_install_desktop_script_into_a_prefix(tmp_path):
    """The per-user installer, pointed at a temporary prefix instead of ~/.local/share."""
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no POSIX shell")
    fake = tmp_path / "bin" / "loupe"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    prefix = tmp_path / "share"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LOUPE_EXEC": str(fake)}
    script = str(ROOT / "packaging" / "install_desktop.sh")
    r = subprocess.run([sh, script, "--prefix", str(prefix)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    desktop = (prefix / "applications" / "loupe.desktop").read_text()
    assert f"Exec={fake} %F" in desktop
    for n in ICON_SIZES:
        assert _png_size(prefix / "icons" / "hicolor" / f"{n}x{n}" / "apps" / "loupe.png") == (n, n)
    assert (prefix / "icons" / "hicolor" / "scalable" / "apps" / "loupe.svg").is_file()
    r = subprocess.run([sh, script, "--prefix", str(prefix), "--uninstall"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not (prefix / "applications" / "loupe.desktop").exists()
    assert not list(prefix.rglob("loupe.png"))
