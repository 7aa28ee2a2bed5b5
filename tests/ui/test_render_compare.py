"""``loupe render --compare`` and the window's export while comparing: two segmenters whose
disagreement is known by construction (A: the brightest channel; B: the same with red and green
swapped) on drawn frames. Left of the split the video shows model A's overlay alone, right of it
B's alone (each checked against a render of that model by itself, within H.264's loss); where
the two disagree the disagreement map is drawn over both, and nowhere else."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from loupe.cli import main
from loupe.run.render import CompareDraw
from loupe.ui import export_video
from loupe.ui.render_view import caption_height
from tests.helpers import decode, make_argmax_model, make_swapped_model
from tests.ui.test_main_window import collect, load

H, W = 120, 192
BLUE, RED = (0, 0, 255), (255, 0, 0)
RED_ROWS, RED_COLS = (50, 100), (30, 170)  # a red band across the split: A "red", B "green"
TOP = 30  # rows under the two names drawn by the line (and their box)
TOLERANCE = 3.0  # mean absolute difference, grey levels: H.264 at CRF 18 on these flat frames


@pytest.fixture
def frames(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        img = np.zeros((H, W, 3), np.uint8)
        img[:] = BLUE
        img[RED_ROWS[0]:RED_ROWS[1], RED_COLS[0] + 4 * i:RED_COLS[1]] = RED
        Image.fromarray(img).save(folder / f"f{i}.png")
    return folder


@pytest.fixture
def pair(tmp_path):
    return str(make_argmax_model(tmp_path / "argmax.onnx")), str(make_swapped_model(tmp_path / "swapped.onnx"))


def render(folder, out, models, *extra, width: int = W) -> list[np.ndarray]:
    args = ["render", str(folder), "--out", str(out), "--quiet", "--no-caption"]
    for m in models:
        args += ["--model", m]
    assert main(args + list(extra)) == 0
    video, _, size = decode(out)
    assert size == (width, H)
    return [v.astype(np.float64) for v in video]


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a - b)))


def test_left_of_the_split_model_a_alone_right_of_it_model_b_alone(frames, pair, tmp_path):
    a_model, b_model = pair
    both = render(frames, tmp_path / "compare.mp4", pair, "--compare", "--split", "0.5", "--no-disagreement")
    only_a = render(frames, tmp_path / "a.mp4", [a_model])
    only_b = render(frames, tmp_path / "b.mp4", [b_model])
    stacked = render(frames, tmp_path / "stacked.mp4", pair)
    mid = W // 2
    left, right = np.s_[TOP:, : mid - 3], np.s_[TOP:, mid + 3:]
    band = np.s_[RED_ROWS[0]:RED_ROWS[1], RED_COLS[0] + 8: mid - 3]  # A and B disagree here (left half)
    assert len(both) == 3
    for i in range(3):
        assert mad(both[i][left], only_a[i][left]) < TOLERANCE, i
        assert mad(both[i][right], only_b[i][right]) < TOLERANCE, i
        # A's red and B's green differ where the band is: each side really shows one model
        assert mad(only_a[i][band], only_b[i][band]) > 20
        # stacked (B over A), the left half is not A's alone: the split changed what is seen
        assert mad(stacked[i][band], only_a[i][band]) > 10
    # the line is drawn where the split says
    col = both[0][TOP:, mid - 1: mid + 1].mean(axis=(0, 1))
    assert col.min() > 150  # white-ish, over a blue and red frame


def test_side_by_side_model_a_on_the_left_copy_model_b_on_the_right(frames, pair, tmp_path):
    a_model, b_model = pair
    both = render(frames, tmp_path / "sbs.mp4", pair, "--compare", "--side-by-side", "--no-disagreement",
                  width=2 * W)
    only_a = render(frames, tmp_path / "a.mp4", [a_model])
    only_b = render(frames, tmp_path / "b.mp4", [b_model])
    whole = np.s_[TOP:, 3:-3]  # the whole frame, less the names' boxes and the edges next to the seam
    band = np.s_[RED_ROWS[0]:RED_ROWS[1], RED_COLS[0] + 8: RED_COLS[1]]
    assert len(both) == 3
    for i in range(3):
        left, right = both[i][:, :W], both[i][:, W:]
        assert mad(left[whole], only_a[i][whole]) < TOLERANCE, i
        assert mad(right[whole], only_b[i][whole]) < TOLERANCE, i
        assert mad(left[band], right[band]) > 20  # each copy shows its own model where they differ
    # with the disagreement map, both copies show it where they disagree, and agree elsewhere
    mapped = render(frames, tmp_path / "sbs_map.mp4", pair, "--compare", "--side-by-side", width=2 * W)
    agree = np.s_[TOP: RED_ROWS[0] - 4, 3:-3]
    inner = np.s_[RED_ROWS[0] + 3:RED_ROWS[1] - 3, RED_COLS[0] + 12: RED_COLS[1] - 3]
    for i in range(3):
        for half, alone in ((np.s_[:, :W], only_a[i]), (np.s_[:, W:], only_b[i])):
            assert mad(mapped[i][half][inner], alone[inner]) > 20
            assert mad(mapped[i][half][agree], alone[agree]) < TOLERANCE


def test_the_disagreement_map_is_drawn_where_they_disagree_only(frames, pair, tmp_path):
    plain = render(frames, tmp_path / "plain.mp4", pair, "--compare", "--no-disagreement")
    mapped = render(frames, tmp_path / "mapped.mp4", pair, "--compare")
    band = np.s_[RED_ROWS[0] + 3:RED_ROWS[1] - 3, RED_COLS[0] + 12: RED_COLS[1] - 3]
    agree = np.s_[TOP: RED_ROWS[0] - 4, :]  # blue: both say "blue"
    for i in range(3):
        assert mad(mapped[i][band], plain[i][band]) > 20, i
        assert mad(mapped[i][agree], plain[i][agree]) < TOLERANCE, i


def test_compare_options_are_refused_with_one_line(frames, pair, tmp_path, capsys):
    a_model, _ = pair
    out = str(tmp_path / "x.mp4")
    from loupe.resources import resource_path

    det = str(resource_path("demo_detection.onnx"))
    cases = [
        (["--model", a_model, "--compare"], "--compare needs exactly two --model, got 1"),
        (["--model", a_model, "--model", det, "--compare"], "--compare needs two models of the same task"),
        (["--model", a_model, "--model", a_model, "--compare", "--split", "1.5"], "--split is a fraction"),
        (["--model", a_model, "--split", "0.3"], "--split, --side-by-side and --no-disagreement go with --compare"),
        (["--model", a_model, "--side-by-side"], "--split, --side-by-side and --no-disagreement go with --compare"),
        (["--model", a_model, "--model", a_model, "--compare", "--side-by-side", "--split", "0.3"],
         "--side-by-side has none"),
    ]
    for extra, line in cases:
        capsys.readouterr()
        assert main(["render", str(frames), "--out", out, "--quiet", *extra]) == 2, extra
        text = capsys.readouterr().err
        assert line in text and len(text.strip().splitlines()) == 1, text
    with pytest.raises(ValueError, match="fraction"):
        CompareDraw(0, 1, lambda a, b: None, split=2.0)


@pytest.fixture
def ready(qtbot, win, frames, pair):
    """The window with both models loaded and the frames open, paused on the first."""
    load(qtbot, win, pair[0])
    load(qtbot, win, pair[1])
    shown = collect(win)
    win.open_source(str(frames), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=20000)
    return win


def test_the_window_exports_the_compare_view_while_comparing(qtbot, ready, frames, pair, tmp_path):
    """Compare on, the split moved to 0.3, the disagreement map off: the export draws the same
    as ``loupe render --compare --split 0.3 --no-disagreement``."""
    win = ready
    assert export_video.compare_draw(win) is None  # not comparing: models stacked
    win.compare.action.trigger()
    win.compare.split.line.setValue(0.3 * W)
    win.compare.widget.map_box.setChecked(False)
    draw = export_video.compare_draw(win)
    assert (draw.a, draw.b, draw.disagreement) == (0, 1, False) and draw.split == pytest.approx(0.3)
    out = tmp_path / "export.mp4"
    job = export_video.export_to(win, str(out))
    with qtbot.waitSignal(job.done, timeout=60000):
        pass
    exported, _, _ = decode(out)
    cli = render(frames, tmp_path / "cli.mp4", pair, "--compare", "--split", "0.3", "--no-disagreement")
    assert len(exported) == len(cli) == 3
    caption_top = H - caption_height(H, 3, W)  # the export's caption (frame, A, B, A vs B); the CLI run none
    for e, c in zip(exported, cli):
        assert mad(e[:caption_top].astype(np.float64), c[:caption_top]) < TOLERANCE


def test_the_window_exports_side_by_side_as_the_cli_renders_it(qtbot, ready, frames, pair, tmp_path):
    win = ready
    win.compare.action.trigger()
    win.compare.side_action.trigger()
    win.compare.widget.map_box.setChecked(False)
    draw = export_video.compare_draw(win)
    assert draw.side_by_side and not draw.disagreement
    assert export_video.open_file_facts(win)[0] == (2 * W, H)  # what the export dialog says it will write
    out = tmp_path / "export.mp4"
    job = export_video.export_to(win, str(out))
    with qtbot.waitSignal(job.done, timeout=60000):
        pass
    exported, _, size = decode(out)
    assert size == (2 * W, H)
    cli = render(frames, tmp_path / "cli.mp4", pair, "--compare", "--side-by-side", "--no-disagreement", width=2 * W)
    caption_top = H - caption_height(H, 3, 2 * W)
    for e, c in zip(exported, cli):
        assert mad(e[:caption_top].astype(np.float64), c[:caption_top]) < TOLERANCE


def test_the_caption_line_of_the_agreement():
    from loupe.run.render import agreement_text
    from loupe.tasks.agreement import Agreement

    assert agreement_text(Agreement(0.97412, "pixels", "97.4% of pixels agree")) == \
        "agreement 0.974 · 97.4% of pixels agree"
    assert agreement_text(Agreement(1.0, "top1")) == "agreement 1.000"
