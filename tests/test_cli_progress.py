"""``loupe analyze`` progress: no ``\\r``-redrawn bar in a log (stderr not a terminal: CI, a pipe,
a file) but a short line per finished input; ``--progress`` forces the bar, ``--quiet`` silences
both; on a terminal the bar is the default."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from loupe.base.media import clip_path
from loupe.cli import main
from loupe.commands.output import LineProgress, TextProgress, make_progress

CLIP = str(clip_path("carphone_pristine.mp4"))


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "still.png"
    cv2.imwrite(str(path), np.full((24, 32, 3), 90, np.uint8))
    return str(path)


def test_log_gets_one_line_per_finished_input_and_no_bar(capsys, argmax_model, image):
    assert main(["analyze", CLIP, image, "--model", str(argmax_model), "--max-frames", "5"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "[###" not in err and "eta" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("loupe: carphone_pristine.mp4 (1/2): done in ")
    assert lines[1].startswith("loupe: still.png (2/2): done in ")


def test_failed_input_gets_its_error_line_not_a_done_line(capsys, argmax_model, image, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 10)
    assert main(["analyze", str(bad), image, "--model", str(argmax_model)]) == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines
    assert "broken.mp4" in lines[0] and "done" not in lines[0]
    assert lines[1].startswith("loupe: still.png (2/2): done in ")


def test_progress_forces_the_bar(capsys, argmax_model):
    assert main(["analyze", CLIP, "--model", str(argmax_model), "--max-frames", "5", "--progress"]) == 0
    err = capsys.readouterr().err
    assert "\r[" in err and "100.0%" in err and err.endswith("\n")


def test_quiet_silences_progress(capsys, argmax_model, image):
    assert main(["analyze", CLIP, image, "--model", str(argmax_model), "--max-frames", "5", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "carphone_pristine.mp4" in captured.out  # the summary still comes


def test_quiet_and_progress_together_are_refused(capsys, argmax_model):
    assert main(["analyze", CLIP, "--model", str(argmax_model), "--quiet", "--progress"]) == 2
    assert "not allowed with" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_bar_by_default():
    assert isinstance(make_progress(stream=_Terminal()), TextProgress)
    assert isinstance(make_progress(stream=io.StringIO()), LineProgress)
    assert isinstance(make_progress(force_bar=True, stream=io.StringIO()), TextProgress)
    assert make_progress(quiet=True, stream=_Terminal()) is None


def test_bar_ends_its_line_before_an_error_line():
    term = _Terminal()
    bar = TextProgress(term)
    bar.set_status("a.mp4 (1/2)")
    bar.set_progress(0.3)
    bar.input_failed()
    term.write("loupe: a.mp4: broken\n")
    bar.finish()
    assert term.getvalue().splitlines()[-1] == "loupe: a.mp4: broken"


def test_piped_stderr_of_a_real_process_has_no_carriage_return(argmax_model, tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run([sys.executable, "-m", "loupe", "analyze", CLIP, "--model", str(argmax_model),
                        "--max-frames", "8", "--out", str(tmp_path / "rows.csv")],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    assert "carphone_pristine.mp4 (1/1): done in" in r.stderr


def test_ray_parts_get_a_line_each_as_they_finish():
    log = io.StringIO()
    lines = make_progress(stream=log)
    lines.step_done("part 1/4 on host:11", 0.25)
    lines.step_done("part 2/4 on host:12", 0.5)
    assert log.getvalue().splitlines() == ["loupe: part 1/4 on host:11: done (25%)",
                                           "loupe: part 2/4 on host:12: done (50%)"]
    lines.finish()
    assert len(log.getvalue().splitlines()) == 2  # nothing pending to report at the end
    term = _Terminal()
    bar = make_progress(stream=term)
    bar.step_done("part 1/4 on host:11", 0.25)
    assert "\r[" in term.getvalue() and "part 1/4" in term.getvalue()
