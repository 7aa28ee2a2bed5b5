"""The status bar's words: the two rates a user can confuse (the clip's playback rate and the
model's inference rate) and File ▸ Demo models (each demo model with the clip it goes with)."""

from __future__ import annotations

from pathlib import Path

#: The clip each bundled demo model was made on (see resources/demo_*.md); a DICOM test file for CT.
DEMO_CLIPS = {
    "anomaly": "bikes.mp4",
    "codebook": "bikes.mp4",
    "ct": "CT_small.dcm",
    "density": "bikes.mp4",
    "detection": "bikes.mp4",
    "hnerv": "carphone_pristine.mp4",
    "segmentation": "bikes.mp4",
}


def rate_text(clip_fps: float | None, speed: float, playing: bool, model_fps: float, has_models: bool) -> str:
    """``play 25.0 fps · model 4.5 fps``: what the clip plays at (its nominal rate times the speed)
    and how many frames a second went through the models (or were shown, with no model), over the
    last frames; ``paused · model 9.5 fps`` while paused (the rate of the frames stepped through)."""
    measured = f"{'model' if has_models else 'shown'} {model_fps:.1f} fps" if model_fps > 0 else ""
    if not playing:
        play = "paused"
    else:
        play = f"play {clip_fps * speed:.1f} fps" if clip_fps else "play live"
    return f"{play} · {measured}" if measured else play


def demo_clip_path(stem: str) -> Path | None:
    """The clip that goes with the demo model ``demo_<stem>.onnx``; None when unknown or not installed."""
    name = DEMO_CLIPS.get(stem)
    if name is None:
        return None
    try:
        if name.endswith(".dcm"):
            from loupe.base.media import dicom_test_file

            return dicom_test_file(name)
        from loupe.base.media import clip_path

        return clip_path(name)
    except FileNotFoundError:
        return None


def add_demo_menu(win, parent_menu) -> None:
    """File ▸ Demo models: one submenu per bundled model, named with its clip, offering to load
    the model alone or to load it and open its clip."""
    from loupe.resources import demo_models

    demos = parent_menu.addMenu("&Demo models")
    for path in demo_models():
        stem = path.stem.replace("demo_", "")
        label = stem.replace("_", " ")
        clip = demo_clip_path(stem)
        sub = demos.addMenu(f"{label} — {clip.name}" if clip else label)
        sub.setToolTipsVisible(True)
        a = sub.addAction("Load the model")
        a.setToolTip(str(path))
        a.triggered.connect(lambda checked=False, p=str(path): win.add_model(p))
        if clip is not None:
            b = sub.addAction(f"Load the model and open {clip.name}")
            b.setToolTip(f"{path}\n{clip}")
            b.triggered.connect(lambda checked=False, p=str(path), c=str(clip): win.open_paths([p, c]))
    demos.setEnabled(bool(demos.actions()))
    win.demo_menu = demos
