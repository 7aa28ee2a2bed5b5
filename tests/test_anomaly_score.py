"""The one anomaly score (loupe.tasks.anomaly), used by the app, ``loupe analyze`` and
loupe_models: each edge case decided once, as the module's comment says."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from loupe.base.quality import psnr
from loupe.inference.engine import Engine, ModelError
from loupe.run.analyze import RowWriter
from loupe.sources.base import Frame
from loupe.tasks.anomaly import (
    AnomalyTask,
    anomaly_score,
    minmax_normalise,
    per_video_scores,
    regularity,
)
from tests.helpers import make_copy_last_model


def test_identical_frames_have_infinite_psnr_and_score_0():
    a = np.full((3, 8, 8), 0.25)
    assert psnr(a, a, 1.0) == math.inf  # as the official psnr_error (10 log10(1 / 0))
    assert anomaly_score(math.inf, 20.0, 40.0) == 0.0
    assert regularity(math.inf, 20.0, 40.0) == math.inf
    np.testing.assert_array_equal(per_video_scores([20.0, math.inf, 30.0]), [1.0, 0.0, 0.0])


def test_a_nan_psnr_scores_1_and_is_flagged():
    assert anomaly_score(math.nan, 20.0, 40.0) == 1.0
    np.testing.assert_array_equal(anomaly_score(np.array([math.nan, 40.0]), 20.0, 40.0), [1.0, 0.0])
    np.testing.assert_array_equal(per_video_scores([math.nan, 20.0, 30.0]), [1.0, 1.0, 0.0])


@pytest.mark.parametrize(("p_min", "p_max"), [(30.0, 30.0), (40.0, 20.0), (math.nan, 40.0), (20.0, math.inf)])
def test_a_calibration_without_p_max_above_p_min_is_an_error(p_min, p_max):
    with pytest.raises(ValueError, match="must exceed psnr_min"):
        anomaly_score(25.0, p_min, p_max)


def test_per_video_scores_of_a_constant_video_are_all_0():
    np.testing.assert_array_equal(per_video_scores([31.0, 31.0, 31.0]), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(minmax_normalise([31.0, 31.0]), [1.0, 1.0])


def test_a_card_whose_calibration_is_not_a_range_is_refused_at_load(tmp_path):
    with pytest.raises(ModelError, match=r"a\.onnx: loupe.output calibration psnr_max \(30.0\) must exceed psnr_min \(30.0\)"):
        AnomalyTask(Engine(make_copy_last_model(tmp_path / "a.onnx", past=1, calibration=(30.0, 30.0))))
    task = AnomalyTask(Engine(make_copy_last_model(tmp_path / "b.onnx", past=1, calibration=(10.0, 30.0))))
    with pytest.raises(ValueError, match="must exceed"):
        task.set_calibration(35.0, 35.0)
    assert (task.psnr_min, task.psnr_max) == (10.0, 30.0)  # unchanged


def _scored(task: AnomalyTask, frames: list[np.ndarray], outputs=None):
    results = []
    for i, f in enumerate(frames):
        feeds, ctx = task.prepare(Frame(f, i, i / 25))
        out = None if feeds is None else (outputs(feeds) if outputs else task.engine.run(feeds))
        results.append(task.postprocess(out, ctx))
    return results


def test_the_task_scores_a_perfect_prediction_0_and_writes_its_psnr_as_empty(tmp_path):
    task = AnomalyTask(Engine(make_copy_last_model(tmp_path / "a.onnx", past=1, calibration=(10.0, 30.0))))
    still = np.full((8, 8, 3), 77, np.uint8)
    r = _scored(task, [still, still])[1]
    assert r.psnr == math.inf and r.score == 0.0 and not r.flagged
    row = task.row(r)
    assert row == {"psnr": None, "score": 0.0, "flagged": 0}
    assert json.loads(json.dumps(row, allow_nan=False))["psnr"] is None  # JSON null, valid JSON
    buf = io.StringIO()
    RowWriter(buf, "csv", ["psnr", "score", "flagged"]).write(row)
    assert next(csv.DictReader(buf.getvalue().splitlines()))["psnr"] == ""  # an empty CSV cell


def test_the_task_flags_a_prediction_with_nans(tmp_path):
    task = AnomalyTask(Engine(make_copy_last_model(tmp_path / "a.onnx", past=1, calibration=(10.0, 30.0))))
    frames = [np.full((8, 8, 3), v, np.uint8) for v in (10, 20)]

    def nan_model(feeds):
        x = next(iter(feeds.values()))
        return [np.full((1, 3, *x.shape[2:]), np.nan, np.float32)]

    r = _scored(task, frames, nan_model)[1]
    assert math.isnan(r.psnr) and r.score == 1.0 and r.flagged
    assert task.row(r) == {"psnr": None, "score": 1.0, "flagged": 1}


def test_loupe_models_scores_with_the_same_functions():
    anomaly = pytest.importorskip("loupe_models.exporters.anomaly")
    import loupe.base.quality
    import loupe.tasks.anomaly

    assert anomaly.psnr is loupe.base.quality.psnr
    for name in ("anomaly_score", "regularity", "minmax_normalise"):
        assert getattr(anomaly, name) is getattr(loupe.tasks.anomaly, name)
    # the official per-frame PSNR (frames in [-1, 1]) is the same PSNR at data range 2
    pred = np.stack([np.zeros((3, 4, 4)), np.full((3, 4, 4), 0.5)])
    real = np.zeros_like(pred)
    np.testing.assert_allclose(anomaly.psnr_frames(pred, real), [math.inf, 10 * math.log10(1 / 0.0625)])
