"""bench/anomaly_auc.py: its AUC against known values, and a tiny run of the whole benchmark."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.helpers import bench_module, make_copy_last_model


@pytest.fixture(scope="module")
def bench():
    with bench_module("anomaly_auc") as mod:
        yield mod


def test_auc_known_values(bench):
    y = [0, 0, 0, 1, 1]
    assert bench.roc_auc(y, [0.1, 0.2, 0.3, 0.8, 0.9]) == 1.0  # perfect separation
    assert bench.roc_auc(y, [0.9, 0.8, 0.7, 0.2, 0.1]) == 0.0  # reversed
    assert bench.roc_auc(y, [0.5] * 5) == 0.5  # all tied
    # one positive above all negatives, one tied with one negative: (3 + 2.5) / 6
    assert bench.roc_auc(y, [0.1, 0.2, 0.6, 0.6, 0.9]) == pytest.approx(5.5 / 6)
    # one positive above two negatives and below one: (2 + 3) / 6
    assert bench.roc_auc([0, 1, 0, 0, 1], [0.1, 0.5, 0.4, 0.7, 0.9]) == pytest.approx(5 / 6)
    assert math.isnan(bench.roc_auc([1, 1], [0.1, 0.2]))  # one class only
    assert bench.midranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_auc_matches_pairwise_count(bench):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.integers(0, 10, 200).astype(float)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert bench.roc_auc(y, s) == pytest.approx(pairs / (len(pos) * len(neg)))


def test_benchmark_smoke(bench, tmp_path, capsys):
    model = make_copy_last_model(tmp_path / "copy_last.onnx")
    out_json = tmp_path / "results.json"
    assert bench.main(["--frames", "40", "--model", str(model), "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "cores:" in text and "provider:" in text
    auc_rows = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in bench.KINDS and "|" in parts:  # the AUC table
            auc_rows[parts[0]] = [float(v) for v in parts[1:4] + parts[5:7]]
    assert set(auc_rows) == set(bench.KINDS)
    for kind, values in auc_rows.items():
        assert all(0.0 <= v <= 1.0 for v in values), (kind, values)
    results = {r["kind"]: r for r in json.loads(out_json.read_text())}
    assert set(results) == set(bench.KINDS)
    # copy-last predicts a freeze perfectly: one-sided the span is the MOST normal, two-sided
    # it stands out
    assert results["frozen"]["auc_card"] == 0.0
    assert results["frozen"]["auc_model_two_sided"] == 1.0
    assert results["frozen"]["flags"]["card"]["in_span"] == 0
