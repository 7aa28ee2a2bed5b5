"""Before the window starts (``make run``): the system libraries Qt's xcb platform plugin needs.

A minimal Debian lacks some of them (libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1, ...) and Qt
then names only the first one it misses. This runs ``ldd`` on PySide6's ``libqxcb.so`` and the
``libQt6XcbQpa`` it loads, maps every ``not found`` library to its Debian package and installs
them all where it can (root, or sudo without a password prompt it cannot answer: ``sudo`` may ask
on a terminal), as ``.ci/run`` does for ffmpeg; otherwise it exits 1 with the one exact
``apt-get install ...`` line. Nothing to do when Qt will not use xcb (``QT_QPA_PLATFORM`` set to
offscreen, wayland, ...) or off Linux. Uses no Qt itself, so it runs where Qt cannot start.

Usage: python packaging/check_display_libs.py [--check-only]
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

#: Shared library → Debian / Ubuntu package, for everything the xcb plugin links (see ``ldd``).
DEBIAN_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libEGL.so.1": "libegl1",
    "libOpenGL.so.0": "libopengl0",
    "libGLdispatch.so.0": "libglvnd0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libpng16.so.16": "libpng16-16",
    "libexpat.so.1": "libexpat1",
    "libbsd.so.0": "libbsd0",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
    "libpcre2-8.so.0": "libpcre2-8-0",
    "libbrotlidec.so.1": "libbrotli1",
    "libbrotlicommon.so.1": "libbrotli1",
    "libstdc++.so.6": "libstdc++6",
}

_NOT_FOUND = re.compile(r"^\s*(\S+)\s*=>\s*not found\s*$")


def missing_libraries(ldd_output: str) -> list[str]:
    """The libraries ``ldd`` printed as ``NAME => not found``, once each, in order."""
    found = [m.group(1) for line in ldd_output.splitlines() if (m := _NOT_FOUND.match(line))]
    return list(dict.fromkeys(found))


def packages_for(libraries: list[str]) -> tuple[list[str], list[str]]:
    """(Debian packages to install, sorted and once each; libraries with no known package)."""
    packages = sorted({DEBIAN_PACKAGES[lib] for lib in libraries if lib in DEBIAN_PACKAGES})
    unknown = [lib for lib in libraries if lib not in DEBIAN_PACKAGES]
    return packages, unknown


def install_line(packages: list[str]) -> str:
    return "sudo apt-get install " + " ".join(packages)


def uses_xcb(env: dict[str, str], platform: str = sys.platform) -> bool:
    """Whether Qt is going to load its xcb plugin: on Linux, unless QT_QPA_PLATFORM names another
    platform first (offscreen, wayland, vnc, ...)."""
    if not platform.startswith("linux"):
        return False
    first = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    return first in ("", "xcb")


def plugin_files() -> list[Path]:
    """PySide6's xcb plugin and the Qt library behind it (without importing PySide6)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return []
    qt = Path(next(iter(spec.submodule_search_locations))) / "Qt"
    files = [qt / "plugins" / "platforms" / "libqxcb.so", *sorted((qt / "lib").glob("libQt6XcbQpa.so*"))[:1]]
    return [f for f in files if f.is_file()]


def ldd_missing(files: list[Path]) -> list[str]:
    out = []
    for f in files:
        r = subprocess.run(["ldd", str(f)], capture_output=True, text=True)
        out.append(r.stdout)
    return missing_libraries("\n".join(out))


def _try_install(packages: list[str]) -> bool:
    if not shutil.which("apt-get"):
        return False
    sudo: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            return False
        if not sys.stdin.isatty() and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
            return False  # sudo would ask for a password nobody can type here
        sudo = ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"loupe: installing the libraries Qt needs to open a window: {' '.join(packages)}", file=sys.stderr)
    ok = subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env).returncode == 0
    return ok and subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *packages], env=env).returncode == 0


def main(argv: list[str]) -> int:
    if not uses_xcb(dict(os.environ)):
        return 0
    files = plugin_files()
    if not files or not shutil.which("ldd"):
        return 0  # no PySide6 xcb plugin to check (Qt says what is wrong, if anything)
    missing = ldd_missing(files)
    if not missing:
        return 0
    packages, unknown = packages_for(missing)
    if packages and "--check-only" not in argv and _try_install(packages):
        missing = ldd_missing(files)
        if not missing:
            return 0
        packages, unknown = packages_for(missing)
    print("loupe: Qt cannot open a window: these system libraries are missing: " + ", ".join(missing), file=sys.stderr)
    if packages:
        print("install them with:\n  " + install_line(packages), file=sys.stderr)
    if unknown:
        print("(no known Debian package for: " + ", ".join(unknown) + "; your distribution's package search finds them)",
              file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
