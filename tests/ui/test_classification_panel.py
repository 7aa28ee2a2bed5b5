"""The classification panel: top-k bars in order, the top label on the frame (on a dark fill), the
strip of the top label over time (click seeks, a new source clears it), the status readout, and
the panel in the window fed by a real classifier; and the segmentation panel of a one-channel
probability model (foreground shown, background hidden at first)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, QSettings, Qt

from loupe.base.media import clip_path
from loupe.inference.card import InputSpec
from loupe.run.pipeline import load_model
from loupe.sources.base import Frame
from loupe.tasks.classification import ClassificationResult, softmax, top_indices
from loupe.ui.panels.classification import ClassificationPanel, make_panel
from loupe.ui.panels.segmentation import make_panel as segmentation_panel
from tests.helpers import FakeHost as Host
from tests.tasks.test_classification import RGB, mean_colour_classifier
from tests.tasks.test_segmentation_kinds import constant_model

LABELS = ("cat", "dog", "bird", "fish", "horse", "cow", "owl")


def result(logits, k: int = 5, labels=LABELS) -> ClassificationResult:
    probs = softmax(np.asarray(logits, np.float32))
    return ClassificationResult(probs, labels, top_indices(probs, k))


@pytest.fixture
def panel(qtbot):
    p = ClassificationPanel(LABELS, np.array([[30 * i, 200 - 20 * i, 90] for i in range(7)], np.uint8), "clf", top_k=5)
    qtbot.addWidget(p)
    p.resize(360, 420)
    p.show()
    return p


def test_bars_show_the_top_labels_best_first(panel):
    r = result([0.0, 3.0, 1.0, 2.0, -1.0, 0.5, -2.0])
    panel.show_result(r, (60, 80), 0)
    rows = panel.bars.rows()
    assert [lab for lab, _ in rows] == ["dog", "fish", "bird", "cow", "cat"]
    np.testing.assert_allclose([p for _, p in rows], r.probs[[1, 3, 2, 5, 0]], rtol=1e-6)
    assert panel.top_label.text() == f"dog  {100 * r.probs[1]:.1f}%"
    # the bars widget paints (no exception) and is as tall as its five rows
    img = panel.bars.grab().toImage()
    assert img.height() >= 5 * panel.bars.fontMetrics().height()


def test_top_label_on_the_frame_sits_on_a_dark_fill(panel):
    r = result([0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0])
    panel.show_result(r, (60, 80), 0)
    assert panel.overlay.textItem.toPlainText() == f"bird  {100 * r.top1_score:.1f}%"
    fill = panel.overlay.fill.color()
    assert fill.alpha() >= 150 and max(fill.red(), fill.green(), fill.blue()) < 60
    assert panel.overlay.color.lightness() > 200  # light text
    assert (panel.overlay.pos().x(), panel.overlay.pos().y()) == (0.0, 0.0)  # the frame's corner


def test_per_frame_updates_skip_the_bars_until_a_slow_one(panel):
    panel.show_result(result([5, 0, 0, 0, 0, 0, 0]), (60, 80), 0, slow=True)
    panel.show_result(result([0, 0, 0, 0, 0, 0, 5]), (60, 80), 1, slow=False)
    assert panel.bars.rows()[0][0] == "cat"  # not redrawn on a fast update
    assert panel.overlay.textItem.toPlainText().startswith("owl")  # the frame's text is
    assert panel.top_of(1) == 6
    panel.refresh_slow(panel.last, None)
    assert panel.bars.rows()[0][0] == "owl"


def test_value_at_is_the_top_label_on_the_frame(panel):
    assert panel.value_at(5, 5) is None  # nothing shown yet
    r = result([0, 4, 0, 0, 0, 0, 0])
    panel.show_result(r, (60, 80), 0)
    assert panel.value_at(79.5, 10) == f"dog {100 * r.top1_score:.1f}%"
    assert panel.value_at(80, 10) is None and panel.value_at(-1, 10) is None


def test_strip_colours_each_frame_by_its_top_class_and_a_new_source_clears_it(panel):
    tops = [0, 0, 1, 1, 1, 2, 2, 0, 3, 3]
    for i, k in enumerate(tops):
        logits = np.zeros(7)
        logits[k] = 4
        panel.show_result(result(logits), (60, 80), i, slow=(i == len(tops) - 1))
    img = panel.strip.image
    assert img.shape == (1, 10, 4)
    for i, k in enumerate(tops):
        assert img[0, i, :3].tolist() == panel.palette[k].tolist() and img[0, i, 3] == 255
    hint = panel.strip_hint.text()  # the legend: most frequent top labels first (ties in class order)
    where = [hint.index(f"{lab} ({n})") for lab, n in (("cat", 3), ("dog", 3), ("bird", 2), ("fish", 2))]
    assert hint.startswith("10 frames shown") and where == sorted(where)
    panel.reset_series()
    assert panel.top_of(3) is None and panel.strip.image is None


def test_strip_click_seeks_the_window(qtbot, panel):
    host = Host()
    panel.seekRequested.connect(host.seek_to)
    for i in range(0, 20, 2):  # frames 0, 2, ..., 18 shown
        panel.show_result(result(np.eye(7)[i % 7] * 3), (60, 80), i, slow=(i == 18))
    qtbot.wait(50)
    vb = panel.strip_plot.getPlotItem().vb
    for target, want in ((12.0, 12), (13.2, 14), (40.0, 18)):
        scene = vb.mapViewToScene(QPointF(target, 0.5))
        view_pt = panel.strip_plot.mapFromScene(scene)
        qtbot.mouseClick(panel.strip_plot.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(int(view_pt.x()), int(view_pt.y())))
        qtbot.waitUntil(lambda want=want: host.seeks and host.seeks[-1] == want, timeout=10000)
    assert host.seeks[-3:] == [12, 14, 18]


def test_make_panel_from_a_loaded_classifier_seeks_through_the_host(qtbot, tmp_path):
    lm = load_model(str(mean_colour_classifier(tmp_path / "colours.onnx", {"kind": "logits", "top_k": 2})))
    host = Host()
    panel = make_panel(lm, host)
    qtbot.addWidget(panel)
    assert panel.bars.minimumSizeHint().height() == 2 * panel.bars._row_h()
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 2] = 255
    frame = Frame(rgb, 3, 0.1)
    feeds, ctx = lm.task.prepare(frame)
    panel.update_from(lm.task.postprocess(lm.task.engine.run(feeds), ctx), frame, True)
    assert [lab for lab, _ in panel.bars.rows()] == ["blue", "red"]
    panel.seek_strip(3.4)
    assert host.seeks == [3]


def test_window_shows_a_classifier(qtbot, win, tmp_path):
    model = mean_colour_classifier(tmp_path / "colours.onnx", {"kind": "logits"})
    with qtbot.waitSignal(win.modelLoaded, timeout=10000):
        win.add_model(str(model))
    panel = win.panels[-1]
    assert isinstance(panel, ClassificationPanel)
    shown: list = []
    win.frameShown.connect(shown.append)
    win.open_source(str(clip_path("carphone_pristine.mp4")), playing=False)
    qtbot.waitUntil(lambda: len(shown) >= 1 and panel.last is not None, timeout=20000)
    want = shown[-1].results[0].result
    assert panel.overlay.textItem.toPlainText().startswith(want.top1_label)
    assert want.labels == RGB and panel.top_of(0) == want.top1
    qtbot.waitUntil(lambda: bool(panel.bars.rows()), timeout=10000)
    assert panel.bars.rows()[0][0] == want.top1_label
    win.seek_to(10)
    qtbot.waitUntil(lambda: panel.top_of(10) is not None, timeout=10000)


def test_segmentation_panel_of_a_probability_model_shows_the_foreground_only(qtbot, tmp_path):
    """(The segmentation panel, for the one-channel probability kind added with classification.)"""
    m = np.full((1, 1, 4, 4), 0.9, np.float32)
    lm = load_model(str(constant_model(tmp_path / "text.onnx", m, {"kind": "probability"}, labels=("text",),
                                       spec=InputSpec(fixed_size=(4, 4)))))
    host = Host()
    host.settings = QSettings()
    panel = segmentation_panel(lm, host)
    qtbot.addWidget(panel)
    assert panel.labels == ("background", "text")
    assert panel.visible.tolist() == [False, True] and panel.lut[0, 3] == 0 and panel.lut[1, 3] == 255
