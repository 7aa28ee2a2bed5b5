"""Render resources/icons/loupe.svg to the PNG sizes the app and the desktop entry use.

    .venv/bin/python packaging/render_icons.py        # writes resources/icons/loupe-<N>.png

The PNGs are committed; rerun this only after editing the SVG. It uses Qt's SVG renderer
(QtSvg ships with pyside6-essentials) and runs without a display.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ICONS = ROOT / "resources" / "icons"
SIZES = (16, 32, 48, 64, 128, 256)

logger = logging.getLogger("render_icons")


def render(svg: Path, out_dir: Path, sizes: tuple[int, ...] = SIZES) -> list[Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # image plugins need an app
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"render_icons: {svg} is not a valid SVG for Qt")
    written = []
    for n in sizes:
        img = QImage(n, n, QImage.Format.Format_ARGB32_Premultiplied)
        img.fill(Qt.GlobalColor.transparent)
        painter = QPainter(img)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(painter)
        painter.end()
        path = out_dir / f"loupe-{n}.png"
        if not img.convertToFormat(QImage.Format.Format_ARGB32).save(str(path), "PNG"):
            raise SystemExit(f"render_icons: could not write {path}")
        written.append(path)
        logger.info("wrote %s", path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--svg", type=Path, default=ICONS / "loupe.svg")
    ap.add_argument("--out", type=Path, default=ICONS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    render(args.svg, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
