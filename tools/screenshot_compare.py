"""Make docs/screenshot_compare.png: Model ▸ Compare two models on bikes.mp4, with the demo
segmentation model twice: as shipped (fed the 640x272 frame) and a copy of the same weights whose
card feeds it the frame at half size (320x136, ``fixed_size``), so the picture shows what input
resolution alone changes. The window plays ``--frames`` frames in lockstep with compare on,
pauses, shows frame ``--show`` (1-based) and saves a grab.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/screenshot_compare.py --out docs/screenshot_compare.png
    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/screenshot_compare.py --side-by-side --no-map \
        --out docs/screenshot_compare_side.png
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path


def half_size_copy(model: Path, folder: Path) -> Path:
    """The same ONNX graph and weights, its card's input ``fixed_size`` half the clip's size."""
    import onnx

    from loupe.inference.card import ModelCard, embed_card

    proto = onnx.load(str(model))
    card = ModelCard.from_metadata({p.key: p.value for p in proto.metadata_props})
    half = dataclasses.replace(card, name=f"{card.name}, half-size input",
                               input=dataclasses.replace(card.input, fixed_size=(136, 320)))
    embed_card(proto, half)  # (it replaces every loupe.* entry)
    out = folder / "demo_segmentation_half.onnx"
    onnx.save(proto, str(out))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/screenshot_compare.png")
    ap.add_argument("--frames", type=int, default=150, help="frames to play first")
    ap.add_argument("--show", type=int, default=20, help="the frame on screen in the picture (1-based)")
    ap.add_argument("--split", type=float, default=0.5, help="the split line, a fraction of the width")
    ap.add_argument("--size", default="1400x820")
    ap.add_argument("--side-by-side", action="store_true", help="the side-by-side view instead of the split")
    ap.add_argument("--no-map", action="store_true", help="without the disagreement map")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from loupe.base.media import clip_path
    from loupe.resources import demo_models
    from loupe.ui import screenshot
    from loupe.ui.compare_view import SPLIT_KEY
    from loupe.ui.main_window import MainWindow

    demo = next(p for p in demo_models() if p.stem == "demo_segmentation")
    half = half_size_copy(demo, Path(tempfile.mkdtemp(prefix="loupe-")))
    app = QApplication(sys.argv[:1])
    win = MainWindow(ask_task=False, lockstep=True)
    screenshot.prepare(win, screenshot.parse_size(args.size))
    win.settings.setValue(SPLIT_KEY, args.split)
    win.show()
    cmp = win.compare
    state = {"phase": "load"}  # until both models are loaded

    def loaded(_name: str) -> None:
        if len(win.models) == 1:
            win.add_model(str(half))
        elif state["phase"] == "load":
            state["phase"] = "play"
            assert cmp.set_on(True)
            cmp.widget.side_box.setChecked(args.side_by_side)
            cmp.widget.map_box.setChecked(not args.no_map)
            win.resizeDocks([cmp.dock], [290], Qt.Orientation.Vertical)
            win.open_source(str(clip_path("bikes.mp4")))

    def grab() -> None:
        win._update_status()
        win.grab().save(args.out)
        mean = sum(cmp.values.values()) / max(len(cmp.values), 1)
        print(f"saved {args.out}: {len(cmp.values)} frames compared, mean agreement {mean:.3f}, "
              f"frame {args.show}: {cmp.last.detail if cmp.last else '-'}, last frame {cmp.cost_ms:.1f} ms")
        win.close()
        app.quit()

    win.modelLoaded.connect(loaded)
    screenshot.play_then_show(win, args.frames, args.show, grab)
    win.add_model(str(demo))
    QTimer.singleShot(240_000, grab)
    app.exec()
    return 0


if __name__ == "__main__":
    sys.exit(main())
