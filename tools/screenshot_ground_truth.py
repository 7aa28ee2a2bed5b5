"""Make docs/screenshot_ground_truth.png: the demo segmentation model on bikes.mp4 scored live
against the demo's own training labels (``loupe_models.demos.labels_bikes.make_labels``, about
20 s), written as a folder of mask PNGs (``000000.png`` ..., class index per pixel) and opened as
File ▸ Open labels… opens it. The window plays ``--frames`` frames in lockstep, pauses, shows
frame ``--show`` (1-based, as the player counts) with the errors of ``--focus``, and saves a grab.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/screenshot_ground_truth.py \\
        --out docs/screenshot_ground_truth.png
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def write_masks(folder: Path) -> None:
    from loupe_models.demos.labels_bikes import make_labels

    for i, m in enumerate(make_labels().labels):
        Image.fromarray(m.astype(np.uint8), mode="L").save(folder / f"{i:06d}.png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/screenshot_ground_truth.png")
    ap.add_argument("--frames", type=int, default=150, help="frames to play first")
    ap.add_argument("--show", type=int, default=93, help="the frame on screen in the picture (1-based)")
    ap.add_argument("--focus", default="moving", help="the class whose errors are drawn ('' for all)")
    ap.add_argument("--size", default="1600x1000")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    masks = Path(tempfile.mkdtemp(prefix="loupe-")) / "bikes_labels"
    masks.mkdir()
    write_masks(masks)

    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from loupe.base.media import clip_path
    from loupe.resources import demo_models
    from loupe.ui import screenshot
    from loupe.ui.main_window import MainWindow

    app = QApplication(sys.argv[:1])
    win = MainWindow(ask_task=False, lockstep=True)
    screenshot.prepare(win, screenshot.parse_size(args.size))
    win.show()
    gt = win.ground_truth

    def opened(_name: str) -> None:
        gt.open(str(masks))
        win.panels[0].opacity.setValue(30)  # the prediction's fill lighter, so the errors read
        win.resizeDocks([gt.dock], [300], Qt.Orientation.Vertical)

    def grab() -> None:
        win._update_status()
        win.grab().save(args.out)
        print(f"saved {args.out}: {len(gt.scores)} frames scored, mIoU {gt.scorer.summary().get('miou')}")
        win.close()
        app.quit()

    def focus() -> None:
        if args.focus:
            gt.widget.focus.setCurrentText(f"errors of {args.focus}")

    win.modelLoaded.connect(lambda _n: win.open_source(str(clip_path("bikes.mp4"))))
    win.sourceOpened.connect(opened)
    screenshot.play_then_show(win, args.frames, args.show, grab, focus)
    win.add_model(str(next(p for p in demo_models() if p.stem == "demo_segmentation")))
    QTimer.singleShot(180_000, grab)
    app.exec()
    return 0


if __name__ == "__main__":
    sys.exit(main())
