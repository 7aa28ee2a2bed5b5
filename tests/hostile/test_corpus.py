"""Every hostile input of the corpus (``tests/hostile/corpus.py``): ``loupe analyze`` exits 2 (3 for
the mixed folder) with one line that names the file and says the specific reason, never a
traceback; the window shows the same reason and keeps working."""

from __future__ import annotations

import atexit
import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from loupe.base.limits import reset as reset_limits
from loupe.cli import main
from tests.hostile.corpus import Case, build_corpus, good_files

ROOT = Path(tempfile.mkdtemp(prefix="loupe-hostile-"))
atexit.register(shutil.rmtree, ROOT, True)
CASES: list[Case] = build_corpus(ROOT)
BY_NAME = {c.name: c for c in CASES}
GOOD_IMAGE, GOOD_MODEL = good_files(ROOT)


@pytest.fixture(autouse=True)
def _fresh_limits():
    reset_limits()  # --max-* options of one case must not leak into the next
    yield
    reset_limits()


def _missing(case: Case, text: str) -> list[str]:
    """The expected words that the text lacks once the file's path and name are taken out of it
    (a word of the file name, "empty" in ``empty.png``, is not a reason)."""
    low = text.replace(str(case.path), " ").replace(case.shown_name, " ").lower()
    return [w for w in case.expect if w.lower() not in low]


def test_corpus_covers_every_kind_of_bad_input():
    assert len(CASES) >= 40
    names = " | ".join(c.name for c in CASES).lower()
    for kind in ("zero-byte video", "truncated video", "corrupt middle", "named .png", "text named .mp4",
                 "60000x60000", "png bomb", "dicom without pixel data", "unsupported transfer syntax",
                 "over raw pixels", "frame count far beyond", "series mixing", "truncated onnx",
                 "not onnx", "pickle renamed", "outside the model's folder", "not valid json",
                 "unknown task", "wrong rank", "wrong dtype", "classifier's output", "mixing good and bad"):
        assert kind in names, kind
    assert len({c.path for c in CASES}) == len(CASES)


def _argv(case: Case, out: Path | None = None) -> list[str]:
    if case.kind == "model":
        argv = ["analyze", str(GOOD_IMAGE), "--model", str(case.path)]
    else:
        argv = ["analyze", str(case.path), "--model", str(GOOD_MODEL)]
    if out is not None:
        argv += ["--out", str(out)]
    return [*argv, "--quiet", *case.extra_args]


@pytest.mark.parametrize("name", [c.name for c in CASES if c.kind != "mixed"])
def test_analyze_names_the_file_and_the_reason(name, capsys):
    case = BY_NAME[name]
    rc = main(_argv(case))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == case.exit_code, err
    assert len(lines) == 1, err  # one line, nothing else (no traceback, no library noise)
    line = lines[0]
    assert line.startswith("loupe: ") and case.shown_name in line, line
    assert not _missing(case, line), f"missing {_missing(case, line)} in: {line}"


def test_mixed_folder_analyses_the_good_files_and_names_each_bad_one(tmp_path, capsys):
    case = next(c for c in CASES if c.kind == "mixed")
    out = tmp_path / "rows.csv"
    rc = main(_argv(case, out))
    err = capsys.readouterr().err
    assert rc == 3, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert all(line.startswith("loupe: ") for line in lines), err
    assert len(lines) == len(case.bad_files) + 1, err  # + the summary line
    for bad in case.bad_files:
        assert sum(bad in line for line in lines) == 1, (bad, err)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == case.good_frames
    assert {Path(r["input"]).name for r in rows} == {"good0.png", "good1.png", "good2.png", "good_clip.mp4"}


def test_the_app_never_unpickles_or_evaluates():
    """No code path of the app (package ``loupe``) can unpickle or evaluate what a file holds."""
    import re

    app = Path(__file__).resolve().parents[2] / "app"
    banned = re.compile(r"\bimport pickle\b|\bpickle\.loads?\(|\bdill\b|\bjoblib\b|allow_pickle\s*=\s*True|"
                        r"(?<![.\w])eval\(|(?<![.\w])exec\(|torch\.load\(|yaml\.load\(|marshal\.loads?\(")
    hits = [f"{p.relative_to(app)}:{n}: {line.strip()}" for p in sorted(app.rglob("*.py"))
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if banned.search(line)]
    assert hits == []


def test_a_png_named_jpg_is_not_refused(tmp_path, capsys):
    """Images go by content among image formats: only real contradictions are refused."""
    misnamed = tmp_path / "really_a.jpg"
    misnamed.write_bytes(GOOD_IMAGE.read_bytes())
    assert main(["analyze", str(misnamed), "--model", str(GOOD_MODEL), "--quiet"]) == 0


def test_limits_are_settable_from_the_environment(monkeypatch, capsys):
    bomb = next(c for c in CASES if c.name.startswith("PNG bomb")).path
    monkeypatch.setenv("LOUPE_MAX_MEGAPIXELS", "50")
    small = BY_NAME["PNG header claiming 60000x60000"].path
    assert main(["analyze", str(small), "--model", str(GOOD_MODEL), "--quiet"]) == 2
    assert "the limit is 50 megapixels" in capsys.readouterr().err
    assert main(["analyze", str(bomb), "--model", str(GOOD_MODEL), "--quiet", "--max-megapixels", "0"]) == 2
    assert "must be a positive number" in capsys.readouterr().err


def test_no_traceback_in_a_real_process():
    """The same corpus through the installed entry point in a child process: one line per bad
    input (or model), exit 2, nothing else on stderr."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    media = [c for c in CASES if c.kind == "media"]
    extra = ["--max-memory-mb", "100", "--max-dicom-frames", "1000"]
    proc = subprocess.run(
        [sys.executable, "-m", "loupe", "analyze", *[str(c.path) for c in media], "--model", str(GOOD_MODEL),
         "--quiet", *extra], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert all(line.startswith("loupe: ") for line in lines), proc.stderr
    assert len(lines) == len(media), proc.stderr
    for case in media:
        (line,) = [ln for ln in lines if ln.startswith(f"loupe: {case.path}:") or ln.startswith(f"loupe: {case.path}#")]
        assert not _missing(case, line), line
    models = [c for c in CASES if c.kind == "model"]
    argv = [sys.executable, "-m", "loupe", "analyze", str(GOOD_IMAGE), "--quiet"]
    for c in models:
        argv += ["--model", str(c.path)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "pwned" not in proc.stdout + proc.stderr  # the pickle's payload never ran
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert all(line.startswith("loupe: ") for line in lines), proc.stderr
    for case in models:
        mine = [line for line in lines if case.path.name in line]
        assert mine and not _missing(case, mine[0]), (case.name, mine)


# ----------------------------------------------------------------------------- the window


@pytest.fixture(scope="module")
def window(qapp):
    from loupe.ui.main_window import MainWindow

    w = MainWindow(ask_task=False)
    w.show()
    loaded: list = []
    w.modelLoaded.connect(loaded.append)
    w.add_model(str(GOOD_MODEL))
    import time

    deadline = time.monotonic() + 120  # generous: a loaded 2-core machine is slow, not broken
    while not loaded and time.monotonic() < deadline:
        qapp.processEvents()
        time.sleep(0.02)
    assert loaded, "the good model did not load"
    yield w
    w.close()
    w.deleteLater()
    qapp.processEvents()


def _wait_for_error(qtbot, win, errors: list[str], name: str) -> str:
    qtbot.waitUntil(lambda: any(name in e for e in errors), timeout=15000)
    return next(e for e in errors if name in e)


def _shows_a_good_frame(qtbot, win) -> None:
    shown: list = []
    win.frameShown.connect(shown.append)
    try:
        win.open_source(str(GOOD_IMAGE))
        # frames of the source before may still land first: wait for the good image's own
        qtbot.waitUntil(lambda: any(fr.frame.metadata.get("path") == str(GOOD_IMAGE) for fr in shown), timeout=15000)
    finally:
        win.frameShown.disconnect(shown.append)
    good = next(fr for fr in shown if fr.frame.metadata.get("path") == str(GOOD_IMAGE))
    assert good.results and good.frame.pixels.shape[:2] == (24, 32)


@pytest.mark.parametrize("name", [c.name for c in CASES if c.kind != "mixed"])
def test_window_shows_the_reason_and_keeps_working(name, qtbot, window):
    from loupe.base.limits import configure
    from tests.ui.test_main_window import drop

    case = BY_NAME[name]
    args = dict(zip(case.extra_args[::2], case.extra_args[1::2]))
    if args:  # the app's settings would carry these; the CLI options stand in for them here
        configure(**{k.lstrip("-").replace("-", "_"): float(v) for k, v in args.items()})
    errors: list[str] = []
    window.errorShown.connect(errors.append)
    try:
        drop(window, [case.path])
        text = _wait_for_error(qtbot, window, errors, case.shown_name)
    finally:
        window.errorShown.disconnect(errors.append)
    assert not _missing(case, text), f"missing {_missing(case, text)} in: {text}"
    assert window.banner.isVisible() and case.shown_name in window.banner.label.text()
    assert len(window.models) == 1  # a bad model is not added; the good one stays
    _shows_a_good_frame(qtbot, window)


def test_window_plays_the_good_files_of_the_mixed_folder_and_then_a_clip(qtbot, window):
    from loupe.base.media import clip_path
    from tests.ui.test_main_window import drop

    case = next(c for c in CASES if c.kind == "mixed")
    errors: list[str] = []
    shown: list = []
    window.errorShown.connect(errors.append)
    window.frameShown.connect(shown.append)
    try:
        drop(window, [case.path])  # the images of the folder: two bad ones first, then good0..2
        for _ in range(6):
            qtbot.waitUntil(lambda: bool(errors) or bool(shown), timeout=15000)
            if len(shown) >= 3:
                break
            qtbot.wait(100)
            if window.player is not None and not window.player.playing:
                window.toggle_play()  # an unreadable image pauses playback; play on past it
            qtbot.waitUntil(lambda: len(shown) >= 3 or len(errors) >= 2, timeout=15000)
        qtbot.waitUntil(lambda: len(shown) >= 3, timeout=15000)
        assert {Path(fr.frame.metadata["path"]).name for fr in shown} == {"good0.png", "good1.png", "good2.png"}
        assert any("bad_bomb.png" in e and "60000 x 60000" in e for e in errors)
        assert any("bad_text.png" in e and "text file" in e for e in errors)
        shown.clear()
        window.open_source(str(clip_path("carphone_pristine.mp4")))
        qtbot.waitUntil(lambda: len(shown) >= 5, timeout=30000)
    finally:
        window.errorShown.disconnect(errors.append)
        window.frameShown.disconnect(shown.append)
    assert shown[-1].frame.pixels.shape[:2] == (144, 176)


def test_window_takes_its_limits_from_the_settings_file(qtbot):
    from loupe.ui.main_window import MainWindow, settings

    s = settings()
    s.setValue("limits/max_megapixels", 0.0005)  # 500 pixels: the 32 x 24 good image is over it
    s.sync()
    try:
        w = MainWindow(ask_task=False)
        qtbot.addWidget(w)
        with qtbot.waitSignal(w.errorShown, timeout=15000) as blocker:
            w.open_source(str(GOOD_IMAGE))
        assert "32 x 24 pixels" in blocker.args[0] and "limit is 0.0005 megapixels" in blocker.args[0]
        w.close()
    finally:
        s.remove("limits/max_megapixels")
