"""packaging/check_display_libs.py (``make run``): ldd's output → the Debian packages to install."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_display_libs", ROOT / "packaging" / "check_display_libs.py")
cdl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cdl)

# What ldd printed for libQt6XcbQpa on a minimal Debian 12 (three libraries missing, one twice).
LDD_MINIMAL = """\
\tlinux-vdso.so.1 (0x00007ffd5a1f2000)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f7d8a329000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f7d8a2c4000)
\tlibxcb-cursor.so.0 => not found
\t/lib64/ld-linux-x86-64.so.2 (0x00007f7d8a414000)
"""


def test_missing_libraries_are_read_from_ldd():
    assert cdl.missing_libraries(LDD_MINIMAL) == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert cdl.missing_libraries(LDD_MINIMAL.replace("not found", "/lib/x.so (0x1)")) == []


def test_packages_and_the_one_install_line():
    packages, unknown = cdl.packages_for([*cdl.missing_libraries(LDD_MINIMAL), "libweird.so.9"])
    assert packages == ["libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"]
    assert unknown == ["libweird.so.9"]
    assert cdl.install_line(packages) == "sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1"


def test_every_library_the_installed_plugin_links_has_a_package():
    """The plugin this venv ships links only libraries the table knows (so a fresh machine gets
    a complete apt-get line, not a partial one)."""
    import re
    import shutil
    import subprocess

    files = cdl.plugin_files()
    if not files or not shutil.which("ldd"):
        pytest.skip("no PySide6 xcb plugin or no ldd here")
    out = "\n".join(subprocess.run(["ldd", str(f)], capture_output=True, text=True).stdout for f in files)
    system = {m.group(1) for m in re.finditer(r"^\s*(\S+)\s*=>\s*(/(?:usr/)?lib\S*|not found)", out, re.M)
              if "site-packages" not in m.group(0)}
    core = {"libc.so.6", "libm.so.6", "libgcc_s.so.1", "libpthread.so.0", "libdl.so.2", "librt.so.1"}
    xish = {lib for lib in system if lib.startswith(("libxcb", "libX", "libxkb", "libGL", "libEGL"))}
    assert xish, out
    assert xish - core <= set(cdl.DEBIAN_PACKAGES), sorted(xish - set(cdl.DEBIAN_PACKAGES))


@pytest.mark.parametrize(("env", "platform", "expected"), [
    ({}, "linux", True),
    ({"QT_QPA_PLATFORM": "xcb"}, "linux", True),
    ({"QT_QPA_PLATFORM": "offscreen"}, "linux", False),
    ({"QT_QPA_PLATFORM": "wayland;xcb"}, "linux", False),
    ({}, "darwin", False),
])
def test_only_checked_when_qt_will_use_xcb(env, platform, expected):
    assert cdl.uses_xcb(env, platform) is expected


def test_missing_libraries_stop_with_the_exact_line(monkeypatch, capsys):
    monkeypatch.setattr(cdl, "uses_xcb", lambda env: True)
    monkeypatch.setattr(cdl, "plugin_files", lambda: [Path(sys.executable)])
    monkeypatch.setattr(cdl, "ldd_missing", lambda files: cdl.missing_libraries(LDD_MINIMAL))
    assert cdl.main(["--check-only"]) == 1
    err = capsys.readouterr().err
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1\n" in err
    assert "libxcb-keysyms.so.1" in err


def test_nothing_missing_here_passes(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    if not cdl.plugin_files():
        pytest.skip("no PySide6 xcb plugin here")
    missing = cdl.ldd_missing(cdl.plugin_files())
    assert cdl.main(["--check-only"]) == (1 if missing else 0)
