"""Whole-file analysis with read-ahead: the same rows, in the same order, as one thread; errors
arrive where they happened; stopping early joins the reader threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from loupe.base.media import clip_path
from loupe.run.analyze import RowWriter, analyze
from loupe.run.pipeline import Runner, load_model, run_stream
from loupe.sources.base import Frame, SourceError
from tests.helpers import make_copy_last_model, make_density_model


def _rows(models, read_ahead: int, **kw) -> list[str]:
    import io

    buf = io.StringIO()
    summ = analyze([str(clip_path("carphone_pristine.mp4"))], models, RowWriter(buf, "jsonl", []),
                   read_ahead=read_ahead, **kw)
    assert not summ.failed
    # latency differs run to run; everything else must be identical
    import json

    out = []
    for line in buf.getvalue().splitlines():
        row = json.loads(line)
        row.pop("latency_ms")
        out.append(json.dumps(row, sort_keys=True))
    return out


def test_read_ahead_gives_the_same_rows_in_order(tmp_path, argmax_model):
    models = [
        load_model(str(argmax_model), providers="cpu"),
        load_model(str(make_density_model(tmp_path / "d.onnx")), providers="cpu"),
        load_model(str(make_copy_last_model(tmp_path / "a.onnx", past=2)), providers="cpu"),  # anomaly: history in prepare
    ]
    assert Runner(models).overlap_safe
    ahead = _rows(models, read_ahead=2, max_frames=40)
    plain = _rows(models, read_ahead=0, max_frames=40)
    assert len(ahead) == 3 * 40
    assert ahead == plain
    frames = [int(r.split('"frame": ')[1].split(",")[0]) for r in ahead[::3]]
    assert frames == list(range(40))


class _Flaky:
    """Frames 0..n-1, then a SourceError; counts what was read."""

    def __init__(self, n: int, fail: bool = True) -> None:
        self.n, self.fail, self.read = n, fail, 0

    def __iter__(self):
        for i in range(self.n):
            self.read += 1
            yield Frame(np.full((8, 8, 3), i, np.uint8), i, i / 10)
        if self.fail:
            raise SourceError(f"damaged at frame {self.n}")


def test_an_error_arrives_after_the_frames_before_it(argmax_model):
    runner = Runner([load_model(str(argmax_model), providers="cpu")])
    got = []
    with pytest.raises(SourceError, match="damaged at frame 5"):
        for fr in run_stream(_Flaky(5), runner, read_ahead=3):
            got.append(fr.frame.index)
    assert got == [0, 1, 2, 3, 4]


def test_closing_early_stops_and_joins_the_threads(argmax_model):
    runner = Runner([load_model(str(argmax_model), providers="cpu")])
    src = _Flaky(10_000, fail=False)
    before = {t.name for t in threading.enumerate()}
    stream = run_stream(src, runner, read_ahead=2)
    first = [next(stream).frame.index for _ in range(3)]
    stream.close()
    assert first == [0, 1, 2]
    left = {t.name for t in threading.enumerate()} - before
    assert not {n for n in left if n.startswith("loupe-")}, left
    assert src.read < 20  # bounded read-ahead: the reader did not run through the source


def test_a_task_that_is_not_overlap_safe_runs_prepare_and_postprocess_in_turn(argmax_model):
    lm = load_model(str(argmax_model), providers="cpu")
    order: list[str] = []

    class Recording:
        name = "segmentation"  # no overlap_safe attribute: not declared safe

        def prepare(self, frame):
            order.append(f"prepare {frame.index}")
            return lm.task.prepare(frame)

        def postprocess(self, outputs, ctx):
            order.append("post")
            return lm.task.postprocess(outputs, ctx)

    from loupe.run.pipeline import LoadedModel

    runner = Runner([LoadedModel(lm.engine, Recording())])
    assert not runner.overlap_safe
    list(run_stream(_Flaky(4, fail=False), runner, read_ahead=2))
    assert order == ["prepare 0", "post", "prepare 1", "post", "prepare 2", "post", "prepare 3", "post"]
