"""bench/compression_rd.py: the verdict wording and a tiny run of the whole benchmark."""

from __future__ import annotations

import json

import pytest

from tests.helpers import bench_module


@pytest.fixture(scope="module")
def bench():
    with bench_module("compression_rd") as mod:
        yield mod


def _row(size, codec, psnr, ssim, bpp=0.5):
    return {"size": size, "codec": codec, "psnr_pooled": psnr, "ssim": ssim, "bpp": bpp}


def test_verdict_names_the_winner_per_size(bench):
    rows = [_row("0.1M", "HNeRV", 30.0, 0.90), _row("0.1M", "H.264", 29.0, 0.92),
            _row("0.1M", "H.265", 29.5, 0.91),
            _row("0.3M", "HNeRV", 31.0, 0.93), _row("0.3M", "H.264", 33.0, 0.95),
            _row("0.3M", "H.265", 34.0, 0.94)]
    v = bench.verdict(rows)
    assert "0.1M (0.500 bpp): HNeRV wins on PSNR by 0.50 dB against H.265" in v
    assert "loses on SSIM by 0.0200 against H.264" in v
    assert "0.3M (0.500 bpp): HNeRV loses on PSNR by 3.00 dB against H.265" in v
    assert v.endswith("Overall HNeRV wins on PSNR at 1 of 2 sizes.")
    rows[0]["seconds"], rows[1]["seconds"], rows[3]["seconds"] = 300.0, 2.0, 400.0
    assert "fitting it took 300-400 s per size" in bench.verdict(rows)


@pytest.mark.slow
def test_tiny_run_prints_table_and_verdict(bench, tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "rd.json"
    rc = bench.main(["--sizes", "0.1M", "--epochs", "1", "--frames", "3", "--threads", "1",
                     "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "cores, load average" in text and "Verdict: 0.1M" in text
    rows = json.loads(out.read_text())
    assert [r["codec"] for r in rows] == ["HNeRV", "H.264", "H.265"]
    hn = rows[0]
    for r in rows[1:]:  # matched bits: within 5 % of the HNeRV file, or said plainly
        # (3 frames hold fewer bytes, even losslessly, than a 0.1M decoder: not matchable)
        matched = abs(r["bytes"] - hn["bytes"]) <= 0.05 * hn["bytes"]
        assert matched != ("NOT within 5 %" in r["note"])
        assert r["psnr_pooled"] > 30
    assert all(0 < r["ssim"] <= 1 for r in rows)
