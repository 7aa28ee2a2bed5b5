import numpy as np
import pytest

from loupe.inference.engine import Engine
from loupe.sources.base import Frame
from loupe.tasks.density import DensityResult, DensityTask, polygon_mask
from tests.helpers import make_density_model


@pytest.fixture
def task(tmp_path):
    return DensityTask(Engine(make_density_model(tmp_path / "d.onnx")))


def run(task, rgb):
    feeds, ctx = task.prepare(Frame(rgb, 0, 0.0))
    return task.postprocess(task.engine.run(feeds), ctx)


def test_count_is_the_density_sum_at_model_resolution(task):
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[4:10, 6:16, 0] = 255  # 60 red pixels
    rgb[30:33, 50:52, 0] = 255  # 6 more
    res = run(task, rgb)
    assert res.count == pytest.approx(66.0, abs=1e-4)
    # the map shown is upsampled for display only
    assert res.density.shape == (40, 60) and res.density.dtype == np.float32
    assert res.display_max == 0.5 and res.roi_count is None
    assert task.row(res) == {"count": pytest.approx(66.0, abs=1e-3), "roi_count": None}


def test_padding_does_not_add_to_the_count(task):
    rgb = np.zeros((41, 61, 3), np.uint8)  # odd: padded to 42 x 62 with black
    rgb[-1, :, 0] = 255  # the last row is red: 61 pixels
    res = run(task, rgb)
    assert res.count == pytest.approx(61.0, abs=1e-3)  # a replicated margin would count them twice


def test_roi_count(task):
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :30, 0] = 255  # left half red: 1200 pixels
    rgb[:, 30:, 0] = 255 // 5 * 0  # right half dark
    task.set_roi(np.array([[0, 0], [20, 0], [20, 40], [0, 40]], float))  # x < 20
    res = run(task, rgb)
    assert res.count == pytest.approx(1200.0, abs=1e-3)
    assert res.roi_count == pytest.approx(800.0, abs=1e-3)
    task.set_roi(None)
    assert run(task, rgb).roi_count is None


def test_polygon_mask_uses_cell_centres():
    m = polygon_mask(np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float), (8, 8), (4, 4))
    assert m.sum() == 4 and m[:2, :2].all()
    tri = polygon_mask(np.array([[0, 0], [8, 0], [0, 8]], float), (8, 8), (8, 8))
    assert tri[0, 0] and not tri[7, 7] and tri.sum() == 28


def test_result_validates():
    with pytest.raises(ValueError, match="float32"):
        DensityResult(np.zeros((2, 2)), 1.0, None, 1.0)
    with pytest.raises(ValueError, match="finite"):
        DensityResult(np.zeros((2, 2), np.float32), float("nan"), None, 1.0)
