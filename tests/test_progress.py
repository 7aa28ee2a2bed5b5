"""One Progress protocol, one Cancelled, one LoupeError (loupe.base.progress, loupe.base.errors).

The protocol itself (monotone fraction, a cancel that reaches every stage), then the long
functions of the core stopping promptly when cancelled with the one exception, and the error
hierarchy as the CLI shows it."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest

from loupe.base import quality as q
from loupe.base.errors import LoupeError, user_message
from loupe.base.limits import LimitError
from loupe.base.media import clip_path
from loupe.base.progress import CallbackProgress, Cancelled, Progress, as_progress
from loupe.base.quality import AlignmentError, VideoReadError, compare_videos
from loupe.inference.card import CardError
from loupe.inference.engine import Engine, ModelError
from loupe.run.analyze import RowWriter, analyze, columns_for
from loupe.run.codecs import CodecError, encode_matched_yuv
from loupe.run.compression_report import build_report
from loupe.run.pipeline import LoadedModel
from loupe.run.resume import ResumeError
from loupe.sources.base import SourceError
from loupe.tasks import UnsupportedTask, make_task
from tests.compression_model import make_compression_model

ROOT = Path(__file__).resolve().parents[1]
CLIP = str(clip_path("carphone_pristine.mp4"))  # 120 frames


class Recorder(Progress):
    """Records every update; cancels itself after ``cancel_after`` updates (None: never)."""

    def __init__(self, cancel_after: int | None = None) -> None:
        super().__init__()
        self.updates: list[tuple[float, str, dict]] = []
        self.cancel_after = cancel_after
        self.at_cancel: int | None = None

    def show(self, fraction, status, info) -> None:
        self.updates.append((fraction, status, dict(info)))
        if self.cancel_after is not None and len(self.updates) == self.cancel_after:
            self.at_cancel = len(self.updates)
            self.cancel()


# --- the protocol ------------------------------------------------------------------------
def test_fraction_is_monotone_and_clamped():
    p = Recorder()
    for f in (0.2, 0.1, 0.5, float("nan"), 7.0, 0.9):
        p.update(f)
    assert [u[0] for u in p.updates] == [0.2, 0.2, 0.5, 0.5, 1.0, 1.0]
    assert p.done_fraction == 1.0


def test_status_and_figures_reach_show():
    p = Recorder()
    p.update(0.1, "decoding", loss=0.5, eta_s=3.0)
    assert p.updates == [(0.1, "decoding", {"loss": 0.5, "eta_s": 3.0})]


def test_check_raises_cancelled_once_cancelled_from_another_thread():
    p = Progress()
    p.check()  # not cancelled: nothing happens
    t = threading.Thread(target=p.cancel)
    t.start()
    t.join()
    assert p.cancelled
    with pytest.raises(Cancelled):
        p.check()
    assert not isinstance(Cancelled(), LoupeError)  # a cancel is not an error


def test_a_part_maps_its_span_and_shares_the_cancel():
    whole = Recorder()
    part = whole.part(0.5, 0.75, describe=lambda s, info: f"{s} ({info['n']})")
    part.update(0.0, "encoding", n=1)
    part.update(1.0, "encoding", n=2)
    assert [(u[0], u[1]) for u in whole.updates] == [(0.5, "encoding (1)"), (0.75, "encoding (2)")]
    part.cancel()
    assert whole.cancelled
    with pytest.raises(Cancelled):
        whole.part(0, 1).check()


def test_callback_adapter_false_or_cancelled_callable_stops():
    seen = []
    p = CallbackProgress(lambda f, info: seen.append((f, info)) or len(seen) < 2)
    p.update(0.1, "a", loss=1.0)
    assert not p.cancelled
    p.update(0.2)
    assert seen == [(0.1, {"status": "a", "loss": 1.0}), (0.2, {})]
    assert p.cancelled
    flag = []
    asked = CallbackProgress(cancelled=lambda: bool(flag))
    asked.check()
    flag.append(1)
    with pytest.raises(Cancelled):
        asked.check()
    assert isinstance(as_progress(None), Progress) and as_progress(p) is p


# --- the core's long functions ---------------------------------------------------------------
def test_cancel_stops_analyze_at_the_next_frame_and_keeps_the_rows(tmp_path, argmax_model):
    engine = Engine(str(argmax_model), providers="cpu")
    models = [LoadedModel(engine, make_task(engine))]
    out = tmp_path / "rows.csv"
    p = Recorder(cancel_after=11)  # the input's status line, then 10 frames
    errors = []
    with open(out, "w", newline="") as f:
        summary = analyze([CLIP], models, RowWriter(f, "csv", columns_for(models, False)), progress=p,
                          on_error=lambda spec, why: errors.append(why))
    assert summary.cancelled and not summary.failed and not errors  # a cancel is not an input error
    assert summary.frames == 10 == len(out.read_text().splitlines()) - 1
    assert len(p.updates) == p.at_cancel  # nothing reported after the cancel
    fractions = [u[0] for u in p.updates]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(10 / 120)
    assert p.updates[0][1] == "carphone_pristine.mp4 (1/1)"


def test_uncancelled_analyze_ends_at_one(argmax_model):
    engine = Engine(str(argmax_model), providers="cpu")
    p = Recorder()
    summary = analyze([CLIP], [LoadedModel(engine, make_task(engine))], max_frames=5, progress=p)
    assert summary.frames == 5 and not summary.cancelled and p.updates[-1][0] == 1.0


@pytest.fixture(scope="module")
def compression_model(tmp_path_factory):
    return make_compression_model(tmp_path_factory.mktemp("prog") / "table.onnx", frames=12)[0]


def test_cancel_stops_the_compression_report_promptly(compression_model):
    p = Recorder(cancel_after=3)  # while the neural model runs over the frames
    with pytest.raises(Cancelled):
        build_report(compression_model, "carphone_pristine.mp4", max_frames=12, providers="cpu", progress=p)
    assert len(p.updates) == 3  # stopped before the next frame


def test_cancel_during_the_codec_search_stops_it(compression_model):
    """A cancel while H.264 searches its size stops the search before the next trial encode."""
    p = Recorder()
    hits = []

    def show(fraction, status, info):
        Recorder.show(p, fraction, status, info)
        if status.startswith("H.264") or hits:
            hits.append(fraction)
            p.cancel()

    p.show = show
    with pytest.raises(Cancelled):
        build_report(compression_model, "carphone_pristine.mp4", max_frames=12, providers="cpu",
                     sizes=(1.0,), progress=p)
    assert len(hits) == 1  # no trial encode reported after the cancel


def test_encoder_and_compare_check_the_cancel():
    frames = [planes for _, (_, planes) in zip(range(4), q.read_yuv420(clip_path("carphone_pristine.mp4")))]
    p = Progress()
    p.cancel()
    with pytest.raises(Cancelled):
        encode_matched_yuv(frames, 25.0, "h264", 2000, progress=p)
    seen = []
    stop = CallbackProgress(lambda f, info: seen.append(f) or len(seen) < 3)
    with pytest.raises(Cancelled):
        compare_videos(CLIP, CLIP, progress=stop)
    assert len(seen) == 3


# --- LoupeError ------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [SourceError, ModelError, CardError, UnsupportedTask, LimitError, AlignmentError,
                                 VideoReadError, CodecError, ResumeError])
def test_user_errors_share_one_base(cls):
    assert issubclass(cls, LoupeError)
    assert user_message(cls("the clip has no frames")) == "the clip has no frames"


def test_user_errors_keep_their_builtin_base():
    assert issubclass(CardError, ValueError) and issubclass(AlignmentError, ValueError)
    assert issubclass(CodecError, RuntimeError)


def test_an_unexpected_error_is_shown_with_its_type():
    assert user_message(KeyError("x")) == "KeyError: 'x'"
    assert user_message(RuntimeError()) == "RuntimeError"


def test_cli_shows_a_loupe_error_as_its_message(monkeypatch, capsys):
    import loupe.cli as cli

    def boom(argv):
        raise SourceError("No such file: nowhere.mp4")

    monkeypatch.setattr(cli, "_dispatch", boom)
    assert cli.main(["info", "x"]) == 2
    assert capsys.readouterr().err == "loupe: No such file: nowhere.mp4\n"

    def unexpected(argv):
        raise KeyError("x")

    monkeypatch.setattr(cli, "_dispatch", unexpected)
    assert cli.main(["info", "x"]) == 2
    assert "unexpected error: KeyError: 'x'" in capsys.readouterr().err


def test_the_fitters_raise_the_one_cancelled():
    pytest.importorskip("torch")
    from loupe_models.fitters.codebook import CodebookFitConfig, fit_codebook_frames

    frames = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    p = Recorder(cancel_after=1)
    cfg = CodebookFitConfig(steps=1000, codebook_size=16, dim=8, width=8, batch=2, crop=32, threads=1,
                            time_budget_s=60.0)
    with pytest.raises(Cancelled):
        fit_codebook_frames(frames, cfg, progress=p)
    assert len(p.updates) == 1 and "loss" in p.updates[0][2]  # stopped after the step that saw it


# --- nothing routes errors by text --------------------------------------------------------
ROUTING = [
    re.compile(r"""str\(\w+\)\.startswith\("""),  # str(e).startswith("cannot")
    re.compile(r"""type\(\w+\)\.__name__\s*(==|in\b)"""),
    re.compile(r"""__class__\.__name__"""),
    re.compile(r"""\bname in \("\w+Error"""),
    re.compile(r"""\b(FitCancelled|ReportCancelled|EncodeCancelled)\b"""),
    re.compile(r"""msg == "cancelled\""""),
]


def test_no_error_is_routed_by_its_text_or_class_name():
    found = []
    for folder in ("app", "models"):
        for path in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if any(r.search(line) for r in ROUTING):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
