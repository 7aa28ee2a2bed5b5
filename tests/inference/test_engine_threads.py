"""ONNX Runtime thread settings: one intra-op thread per physical core by default, one inter-op
thread, overridable by the caller or $LOUPE_ORT_THREADS, and reported."""

from __future__ import annotations

from loupe.inference.engine import THREADS_ENV, Engine, default_threads, physical_cores


def _applied(eng: Engine) -> tuple[int, int]:
    so = eng.session.get_session_options()
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"  # idle threads sleep
    return so.intra_op_num_threads, so.inter_op_num_threads


def test_default_is_one_thread_per_physical_core(argmax_model, monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    eng = Engine(argmax_model, providers="cpu")
    assert eng.threads == physical_cores() >= 1
    assert _applied(eng) == (physical_cores(), 1)
    assert f"threads: {physical_cores()} intra-op (physical cores), 1 inter-op, no spinning" in eng.describe()


def test_asked_threads_win(argmax_model, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "5")
    eng = Engine(argmax_model, providers="cpu", threads=3)
    assert _applied(eng) == (3, 1) and eng.threads_from == "asked"


def test_environment_variable_sets_the_default(argmax_model, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    eng = Engine(argmax_model, providers="cpu")
    assert _applied(eng) == (1, 1)
    assert "threads: 1 intra-op ($LOUPE_ORT_THREADS)" in eng.describe()


def test_a_bad_environment_value_falls_back(monkeypatch, caplog):
    for bad in ("many", "0", "-2"):
        monkeypatch.setenv(THREADS_ENV, bad)
        assert default_threads() == (physical_cores(), "physical cores")
    assert THREADS_ENV in caplog.text
