"""Tiny ONNX models with known outputs, built with onnx.helper (no torch needed)."""

from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from loupe.inference.card import InputSpec, ModelCard, embed_card

RGB_LABELS = ("red", "green", "blue")
RGB_PALETTE = ((255, 0, 0), (0, 255, 0), (0, 0, 255))


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 10  # onnxruntime 1.31 reads IR <= 13; onnx 1.23 writes 14
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_argmax_model(path: Path, card: bool = True, stride: int = 1, labels: tuple[str, ...] = RGB_LABELS) -> Path:
    """logits = the input scaled to [0, 1] (optionally average-pooled by ``stride``): argmax over
    the logits is the brightest channel of each pixel (block); ``labels`` name the channels."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3, "h2", "w2"])
    if stride == 1:
        nodes = [helper.make_node("Identity", ["image"], ["logits"])]
    else:
        nodes = [helper.make_node("AveragePool", ["image"], ["logits"], kernel_shape=[stride, stride], strides=[stride, stride])]
    graph = helper.make_graph(nodes, "argmax", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if card:
        embed_card(
            model,
            ModelCard(
                task="segmentation",
                name="brightest channel",
                input=InputSpec(color="RGB", scale=1 / 255, size_multiple=stride),
                labels=labels,
                palette=RGB_PALETTE,
                output={"stride": stride, "kind": "logits"},
                source={"architecture": "test model: identity", "demo": False},
            ),
        )
    return _save(model, path)


def make_swapped_model(path: Path) -> Path:
    """The argmax model with its red and green logits swapped (a 1x1 convolution): it calls red
    pixels green and green ones red."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3, "h", "w"])
    perm = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], np.float32).reshape(3, 3, 1, 1)
    graph = helper.make_graph([helper.make_node("Conv", ["image", "w"], ["logits"])], "swapped", [x], [y],
                              [numpy_helper.from_array(perm, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    embed_card(model, ModelCard(task="segmentation", name="red and green swapped",
                                input=InputSpec(color="RGB", scale=1 / 255), labels=RGB_LABELS,
                                palette=RGB_PALETTE, output={"stride": 1, "kind": "logits"},
                                source={"architecture": "test model: 1x1 conv", "demo": False}))
    return _save(model, path)


def make_fixed_size_model(path: Path, hw: tuple[int, int] = (32, 48)) -> Path:
    """A card-less model with a fixed input size and 4 output channels (Conv 1x1)."""
    h, w = hw
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, h, w])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, h, w])
    wts = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 1, 1], np.eye(4, 3, dtype=np.float32).ravel().tolist())
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["out"])], "fixed", [x], [y], [wts])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def expected_argmax_map(rgb: np.ndarray) -> np.ndarray:
    """What the argmax model should give for an RGB uint8 frame (first max wins on ties)."""
    return rgb.astype(np.float32).argmax(axis=2).astype(np.uint8)


def make_density_model(path: Path, count_scale: float = 4.0, display_max: float = 0.5) -> Path:
    """density = 2x2 average of the red channel in [0, 1] (stride 2): with count_scale 4 the count
    is the sum of red / 255 over the frame, e.g. the number of pure-red pixels."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("density", TensorProto.FLOAT, ["n", 1, "h2", "w2"])
    starts = helper.make_tensor("starts", TensorProto.INT64, [1], [0])
    ends = helper.make_tensor("ends", TensorProto.INT64, [1], [1])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Slice", ["image", "starts", "ends", "axes"], ["red"]),
        helper.make_node("AveragePool", ["red"], ["density"], kernel_shape=[2, 2], strides=[2, 2]),
    ]
    graph = helper.make_graph(nodes, "density", [x], [y], [starts, ends, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    embed_card(model, ModelCard(
        task="density", name="red counter",
        input=InputSpec(color="RGB", scale=1 / 255, size_multiple=2),
        output={"stride": 2, "count_scale": count_scale, "display_max": display_max},
        source={"architecture": "test model: average pool", "demo": False},
    ))
    return _save(model, path)


def make_copy_last_model(path: Path, past: int = 4, calibration=(20.0, 40.0), threshold: float = 0.5) -> Path:
    """An anomaly 'predictor' that predicts the last past frame (the copy-last-frame baseline)."""
    x = helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["n", 3 * past, "h", "w"])
    y = helper.make_tensor_value_info("pred", TensorProto.FLOAT, ["n", 3, "h", "w"])
    starts = helper.make_tensor("starts", TensorProto.INT64, [1], [3 * (past - 1)])
    ends = helper.make_tensor("ends", TensorProto.INT64, [1], [3 * past])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph([helper.make_node("Slice", ["frames", "starts", "ends", "axes"], ["pred"])],
                              "copylast", [x], [y], [starts, ends, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    embed_card(model, ModelCard(
        task="anomaly", name="copy last frame",
        input=InputSpec(color="RGB", scale=1 / 127.5, mean=(1.0, 1.0, 1.0), std=(1.0, 1.0, 1.0)),
        output={"past_frames": past, "output_range": [-1, 1], "color": "RGB",
                "calibration": {"psnr_min": calibration[0], "psnr_max": calibration[1]}, "threshold": threshold},
        source={"architecture": "test model: copy the last frame", "demo": False},
    ))
    return _save(model, path)


def make_codebook_model(path: Path, k: int = 1, recon: bool = True, codebook_size: int = 256,
                        float_codes: bool = False, output: dict | None = None) -> Path:
    """A 'VQ encoder' whose codes are known functions of the colour (input fed as raw 0-255):
    level ``top`` (stride 8): code = floor(mean red of the 8x8 block); level ``bottom`` (stride 4):
    code = floor(mean green of the 4x4 block). With ``k=2`` one level ``pair`` (stride 4) holds
    [red code, green code] per position. ``recon``: output ``recon`` = the input in [-1, 1]
    (card scale 0.5, offset 0.5). ``codebook_size`` below 256 makes codes fall outside the book;
    ``float_codes`` exports the codes as float; ``output`` replaces the card's loupe.output."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])
    code_type = TensorProto.FLOAT if float_codes else TensorProto.INT64
    inits = [
        helper.make_tensor("c0", TensorProto.INT64, [1], [0]),
        helper.make_tensor("c1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("c2", TensorProto.INT64, [1], [2]),
        helper.make_tensor("two_255", TensorProto.FLOAT, [], [2.0 / 255.0]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
    ]
    nodes = []
    outputs = []

    def codes(src: str, stride: int, out: str, perm: list[int] | None) -> None:
        nodes.append(helper.make_node("AveragePool", [src], [out + "_p"], kernel_shape=[stride, stride], strides=[stride, stride]))
        nodes.append(helper.make_node("Floor", [out + "_p"], [out + "_f"]))
        if perm is None:
            nodes.append(helper.make_node("Squeeze", [out + "_f", "c1"], [out + "_s"]))
        else:
            nodes.append(helper.make_node("Transpose", [out + "_f"], [out + "_s"], perm=perm))
        nodes.append(helper.make_node("Cast", [out + "_s"], [out], to=code_type))

    if k == 1:
        nodes.append(helper.make_node("Slice", ["image", "c0", "c1", "c1"], ["red"]))
        nodes.append(helper.make_node("Slice", ["image", "c1", "c2", "c1"], ["green"]))
        codes("red", 8, "codes_top", None)
        codes("green", 4, "codes_bottom", None)
        outputs += [helper.make_tensor_value_info("codes_top", code_type, ["n", "h8", "w8"]),
                    helper.make_tensor_value_info("codes_bottom", code_type, ["n", "h4", "w4"])]
        levels = [{"name": "top", "output": "codes_top", "codebook_size": codebook_size, "stride": 8, "k": 1},
                  {"name": "bottom", "output": "codes_bottom", "codebook_size": codebook_size, "stride": 4, "k": 1}]
    else:
        nodes.append(helper.make_node("Slice", ["image", "c0", "c2", "c1"], ["rg"]))
        codes("rg", 4, "codes_pair", [0, 2, 3, 1])
        outputs.append(helper.make_tensor_value_info("codes_pair", code_type, ["n", "h4", "w4", 2]))
        levels = [{"name": "pair", "output": "codes_pair", "codebook_size": codebook_size, "stride": 4, "k": 2}]
    rec = None
    if recon:
        nodes.append(helper.make_node("Mul", ["image", "two_255"], ["scaled"]))
        nodes.append(helper.make_node("Sub", ["scaled", "one"], ["recon"]))
        outputs.append(helper.make_tensor_value_info("recon", TensorProto.FLOAT, ["n", 3, "h", "w"]))
        rec = {"output": "recon", "scale": 0.5, "offset": 0.5}
    graph = helper.make_graph(nodes, "codebook", [x], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    embed_card(model, ModelCard(
        task="codebook", name="colour codes",
        input=InputSpec(color="RGB", scale=1.0, size_multiple=8),
        output=output if output is not None else {"levels": levels, "reconstruction": rec},
        source={"architecture": "test model: colour quantiser", "demo": False},
    ))
    return _save(model, path)


@contextmanager
def bench_module(name: str):
    """``bench/<name>.py`` imported as module ``bench_<name>`` (registered in ``sys.modules``, where
    dataclasses look their module up; ``bench/`` on ``sys.path`` for its ``import common``), both
    undone on leaving: a benchmark's smoke test runs the real script."""
    folder = Path(__file__).resolve().parents[1] / "bench"
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", folder / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)
        sys.path.remove(str(folder))


class FakeHost:
    """What a panel factory may use of the window (``loupe.ui.panels.base.PanelHost``), for panel
    tests: settings in an INI file under ``tmp_path`` (None without one), the seeks and re-runs
    asked for; an error raises (a panel test expects none)."""

    def __init__(self, tmp_path: Path | None = None) -> None:
        self.settings = None
        if tmp_path is not None:
            from PySide6.QtCore import QSettings

            self.settings = QSettings(str(Path(tmp_path) / "settings.ini"), QSettings.Format.IniFormat)
        self.source_spec = ""
        self.seeks: list[int] = []
        self.reruns = 0

    def seek_to(self, index: int) -> None:
        self.seeks.append(index)

    def show_error(self, text: str, level: str = "error") -> None:
        raise AssertionError(text)

    def rerun_frame(self) -> None:
        self.reruns += 1


def draw_item(item, width: int, height: int) -> np.ndarray:
    """A graphics item alone over black, one image pixel per scene unit over (0, 0, ``width``,
    ``height``): an H x W x 3 RGB array (the item is taken out of the scene again)."""
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QColor, QImage, QPainter
    from PySide6.QtWidgets import QGraphicsScene

    from loupe.ui.render_view import qimage_rgb

    scene = QGraphicsScene()
    scene.addItem(item)
    img = QImage(width, height, QImage.Format.Format_RGB32)
    img.fill(QColor(0, 0, 0))
    p = QPainter(img)
    scene.render(p, QRectF(0, 0, width, height), QRectF(0, 0, width, height))
    p.end()
    scene.removeItem(item)
    return qimage_rgb(img)


def run_panel_preview(module: str):
    """``python -m loupe.ui.panels.<module> --quit`` offscreen (a panel's preview); it must exit 0
    with no error on stderr. Returns the finished process (its stdout for further checks)."""
    import os
    import subprocess

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run([sys.executable, "-m", f"loupe.ui.panels.{module}", "--quit"], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert "Error" not in r.stderr and "Exception" not in r.stderr
    return r


def decode(path) -> tuple[list[np.ndarray], float, tuple[int, int]]:
    """Every frame of a video as RGB, its frame rate and its (width, height)."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        return frames, float(s.average_rate), (s.width, s.height)


def read_csv(path) -> list[dict[str, str]]:
    """The rows of a CSV file (``loupe analyze``'s output) as dicts."""
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))
