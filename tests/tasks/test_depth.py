"""The depth task on ramp models whose outputs are known exactly (tests/depth_models.py), on frames
of two aspect ratios, letterboxed into a fixed input and padded to a size multiple: statistics at
model resolution over the frame's part only, every layout alike, metric units, the per-clip range;
``loupe analyze`` rows; the card and model checks."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from loupe.cli import main
from loupe.inference.card import CardError, InputSpec, ModelCard
from loupe.inference.engine import Engine, ModelError
from loupe.sources.base import Frame
from loupe.tasks.depth import ClipRange, DepthResult, DepthTask, format_value, map_stats, single_map
from tests.depth_models import make_ramp_depth_model, ramp

LETTERBOX = InputSpec(color="RGB", scale=1 / 255, fixed_size=(320, 320), letterbox=True)
PADDED = InputSpec(color="RGB", scale=1 / 255, size_multiple=32)

# (input spec, frame (h, w), output rows, output cols covering the frame), worked out by hand for
# stride 2 (outputs 160 x 160 for the 320 x 320 letterbox, 32 x 32 for a 64 x 64 padded input):
# - 640 x 360 letterboxed: gain 0.5, content 180 x 320 at top 70 -> input rows 70-250 -> rows 35-124
# - 300 x 500 letterboxed: gain 0.64, content 320 x 192 at left 64 -> input cols 64-256 -> cols 32-127
# - 61 x 41 (w x h) padded to 64 x 64 at the top-left: input rows 0-40 -> rows 0-20 (row 20 half
#   frame), cols 0-60 -> cols 0-30; 41 x 61 the other way round
CASES = {
    "letterbox-landscape": (LETTERBOX, (360, 640), range(35, 125), range(0, 160)),
    "letterbox-portrait": (LETTERBOX, (500, 300), range(0, 160), range(32, 128)),
    "pad-landscape": (PADDED, (41, 61), range(0, 21), range(0, 31)),
    "pad-portrait": (PADDED, (61, 41), range(0, 31), range(0, 21)),
}


def run(task, hw, value=90):
    frame = Frame(np.full((*hw, 3), value, np.uint8), 0, 0.0)
    feeds, ctx = task.prepare(frame)
    return task.postprocess(task.engine.run(feeds), ctx)


@pytest.mark.parametrize("case", list(CASES))
def test_statistics_cover_the_frames_part_only(tmp_path, case):
    spec, hw, rows, cols = CASES[case]
    task = DepthTask(Engine(make_ramp_depth_model(tmp_path / "d.onnx", spec=spec, stride=2)))
    res = run(task, hw)
    want = ramp(rows, cols, stride=2)
    assert res.values.shape == want.shape
    np.testing.assert_allclose(res.values, want, rtol=0, atol=1e-5)
    # min and max are the ramp's corners over the frame's cells; the padding holds larger values
    assert res.depth_min == pytest.approx(1.0 + 0.1 * (2 * rows[0] + 0.5) + 0.01 * (2 * cols[0] + 0.5), abs=1e-5)
    assert res.depth_max == pytest.approx(1.0 + 0.1 * (2 * rows[-1] + 0.5) + 0.01 * (2 * cols[-1] + 0.5), abs=1e-5)
    assert res.depth_median == pytest.approx(float(np.median(want)), abs=1e-5)
    assert res.low == pytest.approx(float(np.percentile(want, 1)), abs=1e-4)
    assert res.high == pytest.approx(float(np.percentile(want, 99)), abs=1e-4)
    # drawn at the frame's size (capped at 1280), bilinear: within the values' range
    assert res.depth.shape == hw and res.depth.dtype == np.float32
    assert res.depth_min - 1e-4 <= res.depth.min() and res.depth.max() <= res.depth_max + 1e-4
    assert task.row(res) == {"depth_min": pytest.approx(res.depth_min), "depth_median": pytest.approx(res.depth_median),
                             "depth_max": pytest.approx(res.depth_max)}


def test_hand_worked_landscape_letterbox_figures(tmp_path):
    """The 640 x 360 frame in a 320 x 320 letterbox, stride 2: rows 35-124 of 160, all columns."""
    task = DepthTask(Engine(make_ramp_depth_model(tmp_path / "d.onnx", spec=LETTERBOX, stride=2)))
    res = run(task, (360, 640))
    assert res.depth_min == pytest.approx(1 + 0.1 * 70.5 + 0.01 * 0.5, abs=1e-5)    # 8.055
    assert res.depth_max == pytest.approx(1 + 0.1 * 248.5 + 0.01 * 318.5, abs=1e-5)  # 29.035
    # the median of rows 35-124 x columns 0-159 is the middle of the rows' and columns' ramps
    assert res.depth_median == pytest.approx(1 + 0.1 * 159.5 + 0.01 * 159.5, abs=1e-5)


@pytest.mark.parametrize("case", ["letterbox-landscape", "letterbox-portrait", "pad-portrait"])
def test_every_layout_reads_the_same(tmp_path, case):
    spec, hw, _, _ = CASES[case]
    results = {}
    for layout in ("NCHW", "NHWC", "NHW"):
        task = DepthTask(Engine(make_ramp_depth_model(tmp_path / f"{layout}.onnx", spec=spec, stride=2, layout=layout)))
        results[layout] = run(task, hw)
    for layout in ("NHWC", "NHW"):
        np.testing.assert_array_equal(results[layout].values, results["NCHW"].values)
        np.testing.assert_array_equal(results[layout].depth, results["NCHW"].depth)
        assert results[layout].depth_median == results["NCHW"].depth_median


def test_metric_units_in_the_result_rows_and_readout(tmp_path):
    model = make_ramp_depth_model(tmp_path / "m.onnx", spec=LETTERBOX, stride=2, base=0.5, a_row=0.01, a_col=0.0,
                                  output={"kind": "metric", "unit": "m"})
    task = DepthTask(Engine(model))
    assert (task.kind, task.unit, task.range_mode) == ("metric", "m", "clip")
    res = run(task, (360, 640))
    assert res.unit == "m"
    # frame pixel (100, 50): input row 70 + 50 * 0.5 = 95 -> output row 47 -> 0.5 + 0.01 * 94.5 m
    v = res.value_at(100, 50)
    assert v == pytest.approx(1.445, abs=1e-5)
    assert format_value(v, res.unit) == "1.45 m"
    assert res.value_at(-1, 50) is None and res.value_at(640, 10) is None
    assert task.row(res)["depth_min"] == pytest.approx(0.5 + 0.01 * 70.5, abs=1e-5)
    # a metric card without a unit is in metres; a relative one has none
    assert DepthTask(Engine(make_ramp_depth_model(tmp_path / "m2.onnx", output={"kind": "metric"}))).unit == "m"
    rel = DepthTask(Engine(make_ramp_depth_model(tmp_path / "r.onnx", output={"inverse": True})))
    assert (rel.kind, rel.unit, rel.inverse) == ("relative", "", True)
    assert format_value(0.41234, "") == "0.412"


def test_a_centre_crop_is_refused(tmp_path):
    spec = InputSpec(color="RGB", scale=1 / 255, fixed_size=(64, 64), center_crop=True)
    with pytest.raises(ModelError, match="center_crop cuts the frame's edges off"):
        DepthTask(Engine(make_ramp_depth_model(tmp_path / "c.onnx", spec=spec)))


def test_fixed_range_from_the_card(tmp_path):
    task = DepthTask(Engine(make_ramp_depth_model(tmp_path / "f.onnx", output={"range": [0, 10]})))
    assert task.range == (0.0, 10.0) and task.range_mode == "fixed"
    task = DepthTask(Engine(make_ramp_depth_model(tmp_path / "c.onnx", output={"range": [0, 10], "range_mode": "clip"})))
    assert task.range_mode == "clip"


def test_per_clip_range_grows_and_starts_again():
    clip = ClipRange()
    assert clip.range is None
    assert clip.add(2.0, 5.0) and clip.range == (2.0, 5.0)
    assert not clip.add(3.0, 4.0) and clip.range == (2.0, 5.0)  # never shrinks
    assert clip.add(1.0, 4.5) and clip.range == (1.0, 5.0)
    assert clip.add(3.0, 9.0) and clip.range == (1.0, 9.0)
    assert not clip.add(None, None) and not clip.add(float("nan"), 3.0)
    clip.reset()
    assert clip.range is None
    clip.add(4.0, 4.0)  # a flat map still gets a range to draw with
    lo, hi = clip.range
    assert lo < 4.0 < hi


def test_per_clip_range_follows_the_frames(tmp_path):
    """Frames of a clip whose maps reach further widen the range (the 1st-99th percentiles)."""
    task = DepthTask(Engine(make_ramp_depth_model(tmp_path / "d.onnx", spec=PADDED, stride=2)))
    clip = ClipRange()
    small, large = run(task, (41, 61)), run(task, (61, 41))
    clip.add(small.low, small.high)
    first = clip.range
    clip.add(large.low, large.high)
    assert clip.range[0] == first[0] == small.low and clip.range[1] == large.high > first[1]


def test_stats_skip_non_finite_values():
    v = np.array([[1.0, np.nan], [np.inf, 3.0]], np.float32)
    assert map_stats(v) == (1.0, pytest.approx(1.02), 2.0, pytest.approx(2.98), 3.0)
    assert map_stats(np.full((2, 2), np.nan, np.float32)) is None


def test_single_map_shapes():
    m = np.arange(6, dtype=np.float32).reshape(2, 3)
    for a, layout in ((m[None, None], None), (m[None, :, :, None], None), (m[None], None), (m, None),
                      (m[None, None], "NCHW"), (m[None, :, :, None], "NHWC")):
        np.testing.assert_array_equal(single_map(a, layout), m)
    with pytest.raises(ValueError, match="not one map"):
        single_map(np.zeros((1, 3, 4, 5)))
    with pytest.raises(ValueError, match="batch of 2"):
        single_map(np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="rank 5"):
        single_map(np.zeros((1, 1, 1, 4, 5)))


def test_result_validates():
    with pytest.raises(ValueError, match="float32"):
        DepthResult(np.zeros((2, 2)), np.zeros((2, 2), np.float32), 0, 0, 0, 0, 0, "", (2, 2))


def test_analyze_writes_the_depth_columns(tmp_path):
    d = tmp_path / "frames"
    d.mkdir()
    cv2.imwrite(str(d / "a_landscape.png"), np.full((360, 640, 3), 80, np.uint8))
    cv2.imwrite(str(d / "b_portrait.png"), np.full((500, 300, 3), 160, np.uint8))
    model = make_ramp_depth_model(tmp_path / "d.onnx", spec=LETTERBOX, stride=2, output={"kind": "metric"})
    out = tmp_path / "rows.csv"
    assert main(["analyze", str(d), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[-3:] == ["depth_min", "depth_median", "depth_max"]
    for r, (_, rows_, cols) in zip(rows, [(0, range(35, 125), range(0, 160)), (0, range(0, 160), range(32, 128))]):
        assert r["task"] == "depth"
        want = ramp(rows_, cols, stride=2)
        assert float(r["depth_min"]) == pytest.approx(want.min(), abs=1e-4)
        assert float(r["depth_median"]) == pytest.approx(float(np.median(want)), abs=1e-4)
        assert float(r["depth_max"]) == pytest.approx(want.max(), abs=1e-4)


@pytest.mark.parametrize("output, words", [
    ({"kind": "disparity"}, "kind must be one of relative, metric"),
    ({"range": [5, 1]}, "lo < hi"),
    ({"range": [1]}, "lo < hi"),
    ({"range_mode": "fixed"}, "needs a range"),
    ({"range_mode": "frame"}, "range_mode must be one of fixed, clip"),
    ({"unit": 3}, "unit must be a string"),
    ({"inverse": "yes"}, "inverse must be true or false"),
    ({"layout": "CHW"}, "layout must be one of NCHW, NHWC"),
])
def test_card_checks_name_the_key(output, words):
    md = {"loupe.task": "depth", "loupe.output": output}
    with pytest.raises(CardError, match=words):
        ModelCard.from_metadata(md, origin="sidecar")


def test_model_check_refuses_a_map_of_several_channels(tmp_path):
    from loupe.inference.card import write_sidecar
    from loupe.tasks import make_task
    from tests.detection_models import make_constant_model

    path = make_constant_model(tmp_path / "three.onnx", {"depth": np.zeros((1, 3, 8, 8), np.float32)}, None, card=False)
    write_sidecar(path, ModelCard(task="depth", input=InputSpec(fixed_size=(320, 320))))
    with pytest.raises(ModelError, match="'depth' has 3 channels"):
        make_task(Engine(path))
