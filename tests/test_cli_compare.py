"""``loupe compare REFERENCE DISTORTED [--out FILE.json]``."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from loupe.base import quality as q
from loupe.base.media import clip_path
from loupe.cli import main
from loupe.run.codecs import _video_frames

REF = clip_path("carphone_pristine.mp4")
DIST = clip_path("carphone_distorted.mp4")


def _write_mp4(path, frames, fps):
    import av

    h, w = frames[0][0].shape
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"preset": "ultrafast", "crf": "18"}
        for vf in _video_frames(frames, w, h):
            vf.pts = None
            out.mux(st.encode(vf))
        out.mux(st.encode(None))


@pytest.fixture(scope="module")
def first_frames():
    out = []
    for _, planes in q.read_yuv420(REF):
        out.append(planes)
        if len(out) == 30:
            break
    return out


def test_compare_prints_and_writes_json(tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main(["compare", str(REF), str(DIST), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["frame", "pts_s", "psnr_y"]
    assert len([ln for ln in lines if ln[:5].strip().isdigit()]) == 120  # one line per frame
    assert "PSNR pooled" in text and "26.4038" in text  # FFmpeg prints average:26.403764
    doc = json.loads(out.read_text())
    assert doc["psnr_pooled"] == pytest.approx(26.403764, abs=1e-5)
    assert doc["ssim_mean"] == pytest.approx(0.793978, abs=1e-5)  # FFmpeg's (C path) SSIM All
    assert doc["psnr_mean"] != pytest.approx(doc["psnr_pooled"], abs=1e-3)
    assert len(doc["frames"]) == 120
    f0 = doc["frames"][0]
    assert f0["index"] == 0 and f0["pts"] == 0.0
    assert {"psnr_y", "psnr_u", "psnr_v", "psnr_all", "ssim_y", "ssim_u", "ssim_v", "ssim_all"} <= set(f0)


def test_frame_count_mismatch_exits_2_with_one_line(tmp_path, capsys, first_frames):
    short = tmp_path / "short.mp4"
    _write_mp4(short, first_frames[:20], 29.97)
    ref = tmp_path / "ref30.mp4"
    _write_mp4(ref, first_frames, 29.97)
    assert main(["compare", str(ref), str(short), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "frame counts differ" in err[0] and "30" in err[0] and "20" in err[0]


def test_timestamp_mismatch_exits_2(tmp_path, capsys, first_frames):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    _write_mp4(a, first_frames, 30)
    _write_mp4(b, first_frames, 15)
    assert main(["compare", str(a), str(b), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "timestamps differ" in err and "\n" not in err
    # the same pair at the same rate aligns, and near-lossless x264 scores high
    assert main(["compare", str(a), str(a), "--quiet"]) == 0
    assert "PSNR pooled (mean MSE, FFmpeg 'average'): inf" in capsys.readouterr().out


def test_unreadable_input_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    assert main(["compare", str(REF), str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("loupe: cannot compare") and "\n" not in err
    assert main(["compare", str(REF), str(tmp_path / "missing.mp4"), "--quiet"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_check_aligned_tolerates_half_a_frame():
    q.check_aligned([0.0, 0.04, 0.08], [1.0, 1.05, 1.09], fps=25)  # offsets from each start: fine
    with pytest.raises(q.AlignmentError, match="frame 2"):
        q.check_aligned([0.0, 0.04, 0.08], [0.0, 0.04, 0.101], fps=25)
