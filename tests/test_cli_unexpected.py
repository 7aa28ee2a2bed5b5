"""An exception no code foresaw, from a library opening or decoding a file (e.g. PyAV 19's
``av.open()`` refusing an argument it used to take), ends ``loupe analyze`` with one line that
names the file and exit 2, never a raw traceback; the traceback goes to the log, and ``-v``
shows it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from loupe.base.media import clip_path
from loupe.cli import main

CLIP = str(clip_path("carphone_pristine.mp4"))


def _patched_run(argmax_model, *extra: str) -> subprocess.CompletedProcess:
    """``loupe analyze CLIP`` in a fresh process whose av.open raises as PyAV 19's did."""
    code = textwrap.dedent(f"""
        import sys, av
        def broken_open(*args, **kwargs):
            raise TypeError("open() got an unexpected keyword argument 'metadata_errors'")
        av.open = broken_open
        from loupe.cli import main
        sys.exit(main(["analyze", {CLIP!r}, "--model", {str(argmax_model)!r}, *{list(extra)!r}]))
    """)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("LOUPE_LOG", None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)


def test_library_error_opening_is_one_line_naming_the_file(argmax_model):
    r = _patched_run(argmax_model)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("loupe: ") and "carphone_pristine.mp4" in lines[0]
    assert "TypeError" in lines[0] and "metadata_errors" in lines[0]


def test_verbose_shows_the_traceback(argmax_model):
    r = _patched_run(argmax_model, "-v")
    assert r.returncode == 2
    assert "Traceback" in r.stderr and "broken_open" in r.stderr
    assert "carphone_pristine.mp4" in r.stderr


def test_library_error_while_decoding_is_one_line_naming_file_and_frame(argmax_model, capsys, monkeypatch):
    import av

    real_open = av.open

    class FailsAtFrame2:
        def __init__(self, c):
            self._c = c

        def __getattr__(self, name):
            return getattr(self._c, name)

        def decode(self, *a, **k):
            for i, f in enumerate(self._c.decode(*a, **k)):
                if i == 2:
                    raise AttributeError("'VideoFrame' object has no attribute 'planes_v2'")
                yield f

    monkeypatch.setattr(av, "open", lambda *a, **k: FailsAtFrame2(real_open(*a, **k)))
    assert main(["analyze", CLIP, "--model", str(argmax_model), "--quiet"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "carphone_pristine.mp4" in lines[0] and "frame 2" in lines[0] and "AttributeError" in lines[0]


def test_model_that_fails_unforeseen_is_one_line_naming_the_model(argmax_model, capsys, monkeypatch):
    import loupe.run.pipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(loupe.run.pipeline, "make_task", broken)
    assert main(["analyze", CLIP, "--model", str(argmax_model), "--quiet"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "argmax.onnx" in lines[0] and "ZeroDivisionError" in lines[0]


def test_last_resort_is_one_line_and_exit_2(capsys, monkeypatch):
    import loupe.sysinfo

    def broken(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loupe.sysinfo, "format_system_info", broken)
    assert main(["sysinfo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "-v" in err
