"""Landmark contours: models whose points are known exactly land on the frame pixels letterboxing
puts them at (worked out by hand, for a landscape, a portrait and a DICOM frame), and each closed
contour's area is the hand-computed polygon area in px² and mm²."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loupe.base.media import dicom_test_file
from loupe.cli import main
from loupe.inference.card import CardError, check_landmarks_output
from loupe.inference.engine import ModelError
from loupe.run.pipeline import Runner, load_model
from loupe.sources import open_source
from loupe.sources.base import Frame
from loupe.tasks.landmarks import LandmarksResult, LandmarksTask, shoelace_area
from tests.landmark_models import CONTOURS, POINT_NAMES, POINTS, gaussian_maps, make_landmark_model

# A 200 x 200 letterboxed input holds a 300 x 600 frame scaled by 1/3 in rows 50-150, and a
# 500 x 250 frame scaled by 0.4 in columns 50-150: frame x = (x - left) / gain, y = (y - top) / gain.
LANDSCAPE = (300, 600)
PORTRAIT = (500, 250)
EXPECTED = {
    LANDSCAPE: [[180, 30], [420, 30], [420, 270], [180, 270], [300, 90], [480, 90], [300, 210], [60, 150], [540, 150]],
    # the triangle's second point and both ends of the line fall outside the frame: not clipped
    PORTRAIT: [[25, 150], [225, 150], [225, 350], [25, 350], [125, 200], [275, 200], [125, 300], [-75, 250], [325, 250]],
}
# square: side 240 (landscape) / 200 (portrait); right triangle: legs 180 x 120 / 150 x 100
AREAS = {LANDSCAPE: (57600.0, 10800.0), PORTRAIT: (40000.0, 7500.0)}

CARD = {"contours": CONTOURS, "point_names": POINT_NAMES}
FORMATS = {
    "points px": (POINTS[None], {**CARD, "format": "points"}),
    "points normalized": (POINTS[None] / 200.0, {**CARD, "format": "points", "normalized": True}),
    "points flat": (POINTS.reshape(1, -1), CARD),
    "points with scores": (np.concatenate([POINTS, np.linspace(0.1, 0.9, 9)[:, None]], 1)[None], CARD),
    "heatmaps": (gaussian_maps(POINTS), {**CARD, "format": "heatmaps"}),
}


def run(model, frame_hw):
    h, w = frame_hw
    (mr,) = Runner([model]).process(Frame(np.full((h, w, 3), 90, np.uint8), 0, 0.0)).results
    assert mr.task == "landmarks"
    return mr.result


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("landmarks")
    return {name: load_model(str(make_landmark_model(d / f"{k}.onnx", value, out)))
            for k, (name, (value, out)) in enumerate(FORMATS.items())}


@pytest.mark.parametrize("frame_hw", [LANDSCAPE, PORTRAIT], ids=["landscape", "portrait"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_points_land_where_letterboxing_put_the_frame(models, fmt, frame_hw):
    r = run(models[fmt], frame_hw)
    assert isinstance(r, LandmarksResult) and r.frame_hw == frame_hw and r.count == 9
    # heatmaps: Gaussians at sub-cell centres, which the Taylor step recovers to 1e-4 cell (4
    # input px per cell, 3 frame px per input px at most): within 0.0012 frame px (measured 0)
    tol = 1.2e-3
    np.testing.assert_allclose(r.points, EXPECTED[frame_hw], atol=tol)
    sq, tri = AREAS[frame_hw]
    np.testing.assert_allclose(r.area_px[:2], [sq, tri], rtol=1e-6)
    assert np.isnan(r.area_px[2])  # the open line has no area
    assert r.area_mm2 is None  # a PNG-like frame has no pixel spacing
    if fmt == "points with scores":
        np.testing.assert_allclose(r.scores, np.linspace(0.1, 0.9, 9), atol=1e-6)
    elif fmt == "heatmaps":
        np.testing.assert_allclose(r.scores, 1.0, atol=0.1)  # peak cell of a unit Gaussian
    else:
        assert r.scores is None


def test_rows_and_columns(models):
    task = models["points px"].task
    assert task.columns() == ["area_px_square", "area_px_right_triangle"]
    assert task.physical_columns() == ["area_mm2_square", "area_mm2_right_triangle"]
    row = task.row(run(models["points px"], LANDSCAPE))
    assert row["area_px_square"] == 57600.0 and row["area_px_right_triangle"] == 10800.0
    assert row["points"] == EXPECTED[LANDSCAPE] and "point_scores" not in row
    assert "area_px_mid_line" not in row
    r = run(models["heatmaps"], PORTRAIT)
    assert len(models["heatmaps"].task.row(r)["point_scores"]) == 9
    assert r.point_label(0) == "sq tl" and r.labels == ("Square", "right triangle")


def test_a_dicom_frame_gets_mm2_from_its_pixel_spacing(tmp_path):
    # CT_small: 128 x 128, pixel spacing 0.661468 mm (rows, columns); a 200 x 200 letterbox
    # scales it by 200 / 128 = 1.5625 with no padding, so input (50, 50)-(150, 150) is frame
    # (32, 32)-(96, 96): a 64 x 64 square, 4096 px², 4096 x 0.661468² mm²
    pts = np.array([[[50, 50], [150, 50], [150, 150], [50, 150]]], np.float32)
    card = {"contours": [{"name": "organ", "points": [0, 1, 2, 3]}]}
    model = load_model(str(make_landmark_model(tmp_path / "ct.onnx", pts, card, gray=True, palette=None)))
    frame = next(iter(open_source(str(dicom_test_file("CT_small.dcm")))))
    assert frame.pixels.shape[:2] == (128, 128)
    (mr,) = Runner([model]).process(frame).results
    r = mr.result
    np.testing.assert_allclose(r.points, [[32, 32], [96, 32], [96, 96], [32, 96]], atol=1e-4)
    assert r.area_px[0] == pytest.approx(4096.0)
    assert r.area_mm2[0] == pytest.approx(4096 * 0.661468 * 0.661468, rel=1e-6)
    np.testing.assert_allclose(r.class_area_mm2, r.area_mm2)
    assert model.task.palette.shape == (1, 3)  # default palette: one colour per contour


def test_analyze_writes_area_columns_and_points(tmp_path):
    pts = np.array([[[50, 50], [150, 50], [150, 150], [50, 150]]], np.float32)
    card = {"contours": [{"name": "organ", "points": [0, 1, 2, 3]}]}
    path = make_landmark_model(tmp_path / "ct.onnx", pts, card, gray=True, palette=None)
    ct = str(dicom_test_file("CT_small.dcm"))
    assert main(["analyze", ct, "--model", str(path), "--out", str(tmp_path / "r.csv"), "--quiet"]) == 0
    header, row = (tmp_path / "r.csv").read_text().splitlines()[:2]
    cols = header.split(",")
    assert "area_px_organ" in cols and "area_mm2_organ" in cols and "points" not in cols
    cells = dict(zip(cols, row.split(",")))
    assert float(cells["area_px_organ"]) == pytest.approx(4096.0)
    assert float(cells["area_mm2_organ"]) == pytest.approx(1792.1635, abs=1e-3)
    assert main(["analyze", ct, "--model", str(path), "--out", str(tmp_path / "r.jsonl"), "--quiet"]) == 0
    (rec,) = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert rec["task"] == "landmarks" and rec["points"] == [[32, 32], [96, 32], [96, 96], [32, 96]]
    assert rec["area_mm2_organ"] == pytest.approx(1792.1635, abs=1e-3)


def test_shoelace_area():
    assert shoelace_area([[0, 0], [4, 0], [4, 3]]) == 6.0
    assert shoelace_area([[0, 0], [0, 3], [4, 3], [4, 0]]) == 12.0  # clockwise: same area
    assert shoelace_area([[0, 0], [1, 1]]) == 0.0
    # an L-shape (6 vertices): 3 x 3 square less a 2 x 2 corner = 5
    assert shoelace_area([[0, 0], [3, 0], [3, 1], [1, 1], [1, 3], [0, 3]]) == pytest.approx(5.0, abs=1e-12)
    # far from the origin: centring first keeps float64's precision
    assert shoelace_area(np.array([[0, 0], [4, 0], [4, 3]]) + 1e7) == pytest.approx(6.0, abs=1e-6)
    assert np.isnan(shoelace_area([[0, 0], [4, np.nan], [4, 3]]))


@pytest.mark.parametrize("output, message", [
    ({"contours": {"name": "a"}}, "contours must be a list"),
    ({"contours": [{"name": "a", "points": [0, -1]}]}, "whole numbers >= 0"),
    ({"contours": [{"name": "a", "points": []}]}, "non-empty list"),
    ({"contours": [{"name": "a", "points": [0, 1], "closed": "yes"}]}, "closed must be true or false"),
    ({"contours": [{"name": "a", "points": [0], "colour": 1}]}, "unknown key 'colour'"),
    ({"format": "graph"}, "format must be one of points, heatmaps"),
    ({"normalized": 1}, "normalized must be true or false"),
    ({"point_names": ["a", 2]}, "point_names must be a list of strings"),
])
def test_card_check_names_the_bad_key(output, message):
    with pytest.raises(CardError, match=message):
        check_landmarks_output(output)


def test_model_errors_name_the_problem(tmp_path):
    bad = {"contours": [{"name": "a", "points": [0, 1, 9]}]}
    with pytest.raises(ModelError, match="names point 9, but the model outputs 9 points"):
        load_model(str(make_landmark_model(tmp_path / "a.onnx", POINTS[None], bad, palette=None)))
    dup = {"contours": [{"name": "Left lung", "points": [0, 1, 2]}, {"name": "left-lung", "points": [3, 4, 5]}]}
    with pytest.raises(ModelError, match="distinct names"):
        load_model(str(make_landmark_model(tmp_path / "b.onnx", POINTS[None], dup, palette=None)))
    few = {"contours": CONTOURS}
    with pytest.raises(ModelError, match="palette has 1 colours for 3 contours"):
        load_model(str(make_landmark_model(tmp_path / "c.onnx", POINTS[None], few, palette=[[1, 2, 3]])))
    names = {"point_names": ["one"]}
    with pytest.raises(ModelError, match="names 1 points, the model outputs 9"):
        load_model(str(make_landmark_model(tmp_path / "d.onnx", POINTS[None], names)))
    with pytest.raises(ModelError, match="landmark model outputs its points"):
        load_model(str(make_landmark_model(tmp_path / "e.onnx", np.zeros((1, 9, 5)), {})))


def test_no_contours_draws_points_alone(tmp_path):
    model = load_model(str(make_landmark_model(tmp_path / "p.onnx", POINTS[None], {}, palette=None)))
    assert isinstance(model.task, LandmarksTask) and model.task.columns() == []
    r = run(model, LANDSCAPE)
    assert r.contours == () and r.area_px.shape == (0,)
    assert model.task.row(r)["points"] == EXPECTED[LANDSCAPE]


def test_the_hybridgnet_sidecar_in_the_docs_reads_120_points_into_three_contours(tmp_path):
    import re
    from pathlib import Path

    from loupe.inference.card import ModelCard

    text = (Path(__file__).resolve().parents[2] / "docs" / "MODEL_CARD.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```json\n(.*?)```", text, re.S) if '"landmarks"' in b]
    card = ModelCard.from_metadata(json.loads(block), origin="sidecar")
    # 120 points on three circles, as fractions of the 1024 x 1024 input
    t = [np.linspace(0, 2 * np.pi, n, endpoint=False) for n in (44, 50, 26)]
    circles = [(0.3, 0.5, 0.15), (0.7, 0.5, 0.15), (0.55, 0.65, 0.1)]
    pts = np.concatenate([np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1) for a, (cx, cy, r) in zip(t, circles)])
    path = make_landmark_model(tmp_path / "hybridgnet_like.onnx", pts[None], card.output, gray=True,
                               palette=[list(c) for c in card.palette], input_hw=(1024, 1024))
    model = load_model(str(path))
    assert model.engine.card.input == card.input  # the test model is fed as the sidecar says
    assert model.task.columns() == ["area_px_right_lung", "area_px_left_lung", "area_px_heart"]
    # a 2048 x 1024 (portrait) radiograph: letterboxed at gain 0.5, 256 input columns of padding left
    r = run(model, (2048, 1024))
    want = [0.5 * n * np.sin(2 * np.pi / n) * (r0 * 1024 / 0.5) ** 2 for n, (_x, _y, r0) in zip((44, 50, 26), circles)]
    np.testing.assert_allclose(r.area_px, want, rtol=1e-4)  # regular n-gon areas, in frame pixels
    np.testing.assert_allclose(r.points[0], [(0.45 * 1024 - 256) / 0.5, 0.5 * 1024 / 0.5], atol=0.05)


def test_heatmap_card_keys_choose_refinement_and_alignment(tmp_path):
    # one point: a single hot cell (row 10, column 20) of a 50 x 50 map of the 200 x 200 input
    maps = np.zeros((1, 1, 50, 50), np.float32)
    maps[0, 0, 10, 20] = 1.0
    maps[0, 0, 10, 21] = 0.5  # a right neighbour: "quarter" moves x by +0.25 cell
    frame_hw = (200, 200)  # the input's own size: frame pixels are input pixels
    got = {}
    for refine, align in (("none", "cells"), ("none", "msra"), ("quarter", "msra")):
        out = {"format": "heatmaps", "refine": refine, "align": align}
        model = load_model(str(make_landmark_model(tmp_path / f"{refine}_{align}.onnx", maps, out, palette=None)))
        got[refine, align] = run(model, frame_hw).points[0].tolist()
    assert got["none", "cells"] == [(20 + 0.5) * 4, (10 + 0.5) * 4]  # the centre of the 4 x 4 block
    assert got["none", "msra"] == [20 * 4 + 0.5, 10 * 4 + 0.5]  # cell index x stride, a pixel centre
    assert got["quarter", "msra"] == [20.25 * 4 + 0.5, 10 * 4 + 0.5]
