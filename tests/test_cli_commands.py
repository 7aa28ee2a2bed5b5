"""``loupe WORD``: a word that is neither a file nor a command exits 2 at once with the list of
commands (it used to open a window on nothing and wait for ever); cameras and DICOM series
specs, which are not files, still reach the window."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from loupe.base.media import clip_path
from loupe.cli import COMMANDS, _openable, main


@pytest.mark.parametrize("word", ["anaylze", "compre", "missing.mp4", "some/folder/that/is/not/there"])
def test_unknown_word_exits_2_with_the_commands(word, capsys, monkeypatch):
    import loupe.ui.app

    monkeypatch.setattr(loupe.ui.app, "run_gui", lambda args: pytest.fail("a window was opened"))
    assert main([word]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "no such file or command" in lines[0] and repr(word) in lines[0]
    for command in ("analyze", "compare", "fit", "info", "sysinfo"):
        assert command in lines[0]


def test_unknown_word_in_a_real_process_does_not_wait(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run([sys.executable, "-m", "loupe", "anlyze", "clip.mp4"], capture_output=True, text=True,
                       timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 2
    assert "no such file or command: 'anlyze'" in r.stderr and "Traceback" not in r.stderr


def test_commands_listed_are_the_commands_main_knows(capsys):
    for command in COMMANDS:
        rc = main([command, "--help"]) if command != "fit" else main([command])
        assert rc in (0, 2)
        assert "no such file or command" not in capsys.readouterr().err


def test_what_is_not_a_file_but_can_be_opened(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    assert _openable("0") and _openable("camera:1") and _openable("cam:2")
    assert _openable(f"{study}#1.2.840.113619.2.55.3") and _openable(str(study))
    assert _openable(str(clip_path("carphone_pristine.mp4")))
    assert not _openable("camera:x") and not _openable(f"{tmp_path / 'nope'}#1.2.3")
    assert not _openable("analyse")


@pytest.mark.parametrize("spec", ["0", "camera:1", "SERIES"])
def test_camera_and_series_still_reach_the_window(spec, tmp_path, monkeypatch):
    import loupe.ui.app

    study = tmp_path / "study"
    study.mkdir()
    spec = f"{study}#1.2.3" if spec == "SERIES" else spec
    seen = []
    monkeypatch.setattr(loupe.ui.app, "run_gui", lambda args: seen.append(list(args.paths)) or 0)
    assert main([spec, "--no-demo"]) == 0
    assert seen == [[spec]]
