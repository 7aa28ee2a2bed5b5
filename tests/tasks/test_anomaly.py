import numpy as np
import pytest

from loupe.inference.engine import Engine
from loupe.sources.base import Frame
from loupe.tasks.anomaly import AnomalyTask, anomaly_score, per_video_scores, psnr
from tests.helpers import make_copy_last_model


def test_psnr_and_score_definitions():
    a = np.zeros((4, 4))
    b = np.full((4, 4), 0.1)
    assert psnr(a, b, 1.0) == pytest.approx(20.0)
    assert psnr(a, a, 1.0) == np.inf  # as the official psnr_error (tests/test_anomaly_score.py)
    assert anomaly_score(30.0, 20.0, 40.0) == pytest.approx(0.5)
    assert anomaly_score(45.0, 20.0, 40.0) == 0.0 and anomaly_score(10.0, 20.0, 40.0) == 1.0
    np.testing.assert_allclose(per_video_scores(np.array([20.0, 30.0, 40.0])), [1.0, 0.5, 0.0])


def test_copy_last_predictor_scores_frame_differences(tmp_path):
    task = AnomalyTask(Engine(make_copy_last_model(tmp_path / "a.onnx", past=2, calibration=(10.0, 30.0))))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (16, 24, 3), dtype=np.uint8) for _ in range(4)]
    frames[3] = frames[2].copy()
    frames[3][:8] = np.clip(frames[3][:8].astype(int) + 40, 0, 255).astype(np.uint8)  # change the top half
    results = []
    for i, f in enumerate(frames):
        feeds, ctx = task.prepare(Frame(f, i, i / 25))
        results.append(task.postprocess(None if feeds is None else task.engine.run(feeds), ctx))
    assert results[0].psnr is None and results[1].psnr is None  # history of 2 past frames filling
    # frame t is predicted as frame t-1
    expect = psnr(frames[1], frames[2])
    assert results[2].psnr == pytest.approx(expect, abs=1e-3)
    r = results[3]
    assert r.psnr == pytest.approx(psnr(frames[2], frames[3]), abs=1e-3)
    assert r.score == pytest.approx(anomaly_score(r.psnr, 10.0, 30.0))
    assert r.flagged == (r.score >= 0.5)
    # the error map shows where the frame changed: top half only
    assert r.error.shape == (16, 24) and r.error[:8].min() > 0 and r.error[8:].max() == 0
    np.testing.assert_array_equal(r.predicted, frames[2])
    assert task.row(r)["flagged"] in (0, 1)


def test_a_seek_restarts_the_history(tmp_path):
    task = AnomalyTask(Engine(make_copy_last_model(tmp_path / "a.onnx", past=2)))
    f = np.zeros((8, 8, 3), np.uint8)
    for i in (0, 1, 2):
        task.prepare(Frame(f, i, 0.0))
    feeds, ctx = task.prepare(Frame(f, 50, 0.0))  # jump: history cleared
    assert feeds is None and not ctx.ready
