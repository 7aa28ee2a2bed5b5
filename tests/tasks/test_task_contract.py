"""What every task declares: ``history`` (the past frames a result needs; resume and Ray read it,
nothing probes attributes) and ``fresh`` (a task for a whole-file analysis beside the live view:
same engine, the user's settings as they are now, none of the live task's state)."""

from __future__ import annotations

import numpy as np
import pytest

from loupe.run.pipeline import LoadedModel, load_model
from loupe.run.resume import first_missing, history_of
from loupe.sources.base import Frame
from tests.compression_model import make_compression_model
from tests.helpers import (
    make_argmax_model,
    make_codebook_model,
    make_copy_last_model,
    make_density_model,
)


@pytest.fixture
def models(tmp_path) -> dict[str, LoadedModel]:
    return {
        "segmentation": load_model(str(make_argmax_model(tmp_path / "seg.onnx"))),
        "density": load_model(str(make_density_model(tmp_path / "density.onnx"))),
        "anomaly": load_model(str(make_copy_last_model(tmp_path / "anomaly.onnx", past=3))),
        "codebook": load_model(str(make_codebook_model(tmp_path / "codebook.onnx"))),
        "compression": load_model(str(make_compression_model(tmp_path / "codec.onnx", frames=6)[0])),
    }


def frame(i: int, h: int = 32, w: int = 48) -> Frame:
    rng = np.random.default_rng(i)
    return Frame(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), i, i / 25.0)


def test_every_task_declares_its_history(models):
    declared = {name: m.task.history for name, m in models.items()}
    # compression: the decoder is fed the frame's index, never earlier frames
    assert declared == {"segmentation": 0, "density": 0, "anomaly": 3, "codebook": 0, "compression": 0}
    assert history_of(list(models.values())) == 3
    assert history_of([models["compression"], models["segmentation"]]) == 0


def test_resume_starts_history_frames_before_the_first_missing_row(models):
    done = {("v.mp4", i, n) for i in range(10) for n in ("a", "b")} | {("v.mp4", 10, "a")}

    class Named:
        def __init__(self, name, task):
            self.name, self.task = name, task

    codec = [Named("a", models["compression"].task), Named("b", models["segmentation"].task)]
    assert first_missing("v.mp4", codec, done, is_dicom=False) == 10
    with_anomaly = [Named("a", models["compression"].task), Named("b", models["anomaly"].task)]
    assert first_missing("v.mp4", with_anomaly, done, is_dicom=False) == 10 - 3
    assert first_missing("v.mp4", codec, done, is_dicom=True) == 0  # running volumes: from the start


def test_fresh_anomaly_task_has_the_users_settings_and_no_history(models):
    live = models["anomaly"].task
    for i in range(5):  # the live view has filled its history
        live.prepare(frame(i))
    live.threshold = 0.2
    live.set_calibration(25.0, 31.0)
    job = live.fresh()
    assert job.engine is live.engine and job.display_max_side is None
    assert (job.threshold, job.psnr_min, job.psnr_max) == (0.2, 25.0, 31.0)
    feeds, ctx = job.prepare(frame(5))
    assert feeds is None and not ctx.ready  # starts filling its own history
    live.threshold = 0.9  # moved after the job started: the job's rows keep 0.2
    live.set_calibration(10.0, 12.0)
    live.reset()
    assert (job.threshold, job.psnr_min, job.psnr_max) == (0.2, 25.0, 31.0)
    for i in range(6, 9):
        job.prepare(frame(i))
    assert job.prepare(frame(9))[1].ready  # the live reset did not touch the job's history


def test_fresh_density_task_copies_the_region_of_interest_at_start(models):
    live = models["density"].task
    roi = np.array([[0, 0], [20, 0], [20, 20], [0, 20]], np.float64)
    live.set_roi(roi)
    job = live.fresh()
    live.set_roi(np.array([[0, 0], [5, 0], [5, 5]], np.float64))
    np.testing.assert_array_equal(job.roi, roi)
    live.set_roi(None)
    assert job.roi is not None


@pytest.mark.parametrize("name", ["segmentation", "codebook", "compression"])
def test_fresh_task_works_at_full_resolution_on_the_same_engine(models, name):
    live = models[name].task
    job = live.fresh()
    assert type(job) is type(live) and job.engine is live.engine
    assert job.display_max_side is None and live.display_max_side == 1280
    assert job.history == live.history
