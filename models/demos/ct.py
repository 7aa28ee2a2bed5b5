"""Train and export the demo CT model that ships with Loupe: tissue classes by HU range.

Recipe (about 6 minutes on a busy 2-core CPU, one torch thread)::

    python -m loupe_models.demo_ct --out resources/demo_ct.onnx

and a tiny smoke run (seconds, used by the tests)::

    python -m loupe_models.demo_ct --quick --out /tmp/demo_ct.onnx

What the model learns is a *smoothed Hounsfield-unit thresholding*, not anatomy: the labels are
a fixed function of the HU value of each pixel (:func:`label_hu`), so the network only has to
read absolute HU levels and clean up noise at its output stride. It is a demo of the DICOM and
``raw_values`` path of Loupe, not a clinical tool.

Steps:

1. Read the real CT slices that ship with pydicom and pydicom-data through
   :class:`loupe.sources.dicom.DicomSource` (float32 HU after rescale slope/intercept, as the
   app reads them). Never downloads anything: files are looked up with ``download=False``.
2. Label every pixel by its HU value (:data:`HU_CUTS`, see :data:`LABELS_PROCEDURE`).
3. Hold out: one whole file (:data:`HELDOUT_FILE`, an abdomen slice never seen in training)
   and, in every training slice, the right quarter of the columns (:data:`HELDOUT_STRIPE`)
   with a :data:`HELDOUT_GAP`-pixel gap; training crops are cut from the rest only.
4. Train a narrow DDRNet (:class:`loupe_models.nets.ddrnet.DualResNet`, planes 8, spp_planes 32,
   head_planes 16) behind three fixed CT display windows (:class:`HUWindows`: lung, soft
   tissue, bone; part of the exported graph) with Adam on random affine crops (rotation,
   scale 0.3-1.5, flip) of the training regions, half of them 2 x 2 mosaics of four smaller
   crops from random slices; beyond the training region a crop shows air (-1000 HU), so
   zoomed-out crops look like whole slices in a field of air, as 512 x 512 slices do. HU
   gain/offset augmentation and a Gaussian blur are applied *before* labelling (labels stay
   the exact HU function of the augmented crop), HU noise *after* labelling (the model learns
   to see through noise). Cross-entropy, mildly class-weighted, on logits upsampled bilinearly
   to the label size. (Without the mosaics and the air border the network tied classes to
   the kind of slice and to the image size: no fat predicted on a large abdomen slice.)
5. Evaluate per-class IoU on the held-out file and on the held-out stripes (full-image pass,
   only stripe pixels scored), at full resolution, as the app post-processes (bilinear
   upsampling of the stride-8 logits, argmax).
6. Export to ONNX with :func:`loupe_models.exporters.onnx.export_segmentation` (opset 17, dynamic
   batch/height/width, card embedded) and check ONNX Runtime against PyTorch on random input
   (:func:`loupe_models.exporters.onnx.verify_onnx`) and on the held-out slice.

The model input is what ``loupe.inference.preprocess.prepare`` makes of a DICOM frame for this
card (``color="RGB"``, ``raw_values=True``): HU repeated to three channels, times
:data:`HU_SCALE` (mean 0, std 1). :func:`to_input` does exactly that arithmetic.

Everything is seeded; with the same library versions and thread count the run is repeatable.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from loupe.inference.card import InputSpec, ModelCard
from loupe.sources.dicom import DicomSource
from loupe.tasks.segmentation import confusion_matrix, iou_from_confusion
from loupe_models.demos import recipe
from loupe_models.exporters.onnx import check_onnx, export_segmentation, verify_onnx

logger = logging.getLogger(__name__)

__all__ = [
    "HELDOUT_FILE",
    "HU_CUTS",
    "INPUT",
    "LABELS",
    "PALETTE",
    "TRAIN_FILES",
    "Config",
    "CtSlice",
    "Result",
    "build_model",
    "label_hu",
    "load_slices",
    "main",
    "make_card",
    "pad_to_multiple",
    "run",
    "to_input",
    "train_width",
]

# --- classes -----------------------------------------------------------------------------------
LABELS = ("air / lung", "fat", "soft tissue / fluid", "bone / calcification")
PALETTE = ((40, 48, 90), (245, 200, 40), (220, 60, 50), (245, 245, 245))
#: Class boundaries in HU: class k holds ``HU_CUTS[k-1] <= HU < HU_CUTS[k]``.
HU_CUTS = (-190.0, -30.0, 200.0)
LABELS_PROCEDURE = (
    "No hand labels: each pixel is classed by its own Hounsfield value (DICOM rescale "
    "slope/intercept applied). HU < -190: air / lung (air is about -1000 HU, aerated lung "
    "about -900 to -500; out-of-field padding such as -2000 or -3024 counts as air); "
    "-190 <= HU < -30: fat (the adipose-tissue range used in CT body-composition analysis, "
    "e.g. Mitsiopoulos et al. 1998, Mourtzakis et al. 2008); -30 <= HU < 200: soft tissue / "
    "fluid (water 0, CSF about 0-15, muscle -29 to +150 in the same protocols, brain 20-45, "
    "blood and enhanced organs up to about 200); HU >= 200: bone / calcification (cancellous "
    "bone about +200 to +400, cortical bone +500 to +1900, also dense contrast and metal). "
    "The -300..-190 band (partial-volume lung) is counted as air and contrast-filled vessels "
    "above 200 HU as bone: the classes are HU ranges, not organs."
)

#: The card's input: HU repeated to 3 channels, divided by 1000 (raw values, no window).
HU_SCALE = 1.0 / 1000.0
INPUT = InputSpec(color="RGB", scale=HU_SCALE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                  size_multiple=8, raw_values=True)

# --- data --------------------------------------------------------------------------------------
#: Training slices (pydicom / pydicom-data test files), all CT with HU after rescale. The lossy
#: 693_UNCI / 693_J2KI and the lossless 693_J2KR copy hold the same slice as 693_UNCR and are
#: not used; the 16x16 CT files of pydicom's DICOMDIR tests are too small to be useful.
TRAIN_FILES = (
    "CT_small.dcm",  # pydicom: thorax at the spine, 128x128, lung, fat, muscle, bone
    "693_UNCR.dcm",  # pydicom-data: head, 512x512, -3024 outside the field of view
    "bad_sequence.dcm",  # pydicom-data: lower thorax / spine, 512x512 (JPEG lossless)
    "eCT_Supplemental.dcm",  # pydicom-data: enhanced CT, 2 frames of a masked brain
    "J2K_pixelrep_mismatch.dcm",  # pydicom-data: head at the skull base (JPEG 2000)
)
#: Held-out file: never used in training (abdomen with bowel gas, fat, kidneys, spine, table).
HELDOUT_FILE = "explicit_VR-UN.dcm"
HELDOUT_STRIPE = 0.25  # right quarter of the columns of every training slice is held out ...
HELDOUT_GAP = 8  # ... with this many columns before it used for neither training nor scoring
PLANES, SPP_PLANES, HEAD_PLANES = 8, 32, 16
#: Fixed input windows (centre, width) in HU, one per input channel: lung W1500/L-600, soft
#: tissue W500/L0 (wider than the usual W400/L40 so that -190 lies inside), bone W1800/L400.
WINDOWS_HU = ((-600.0, 1500.0), (0.0, 500.0), (400.0, 1800.0))
AIR_HU = -1000.0  # what a crop shows beyond the training region (zoomed-out views)
SEED = 0
RECIPE = "python -m loupe_models.demo_ct"


@dataclass(frozen=True)
class Config:
    steps: int = 2000
    batch: int = 3
    crop: int = 320  # even: a mosaic is 2 x 2 crops of crop // 2
    scale: tuple[float, float] = (0.3, 1.5)  # output pixels per source pixel (log-uniform)
    hu_gain: tuple[float, float] = (0.92, 1.08)  # before labelling
    hu_offset: float = 40.0  # +- HU, before labelling
    hu_noise: float = 25.0  # max sigma of the HU noise added after labelling
    blur_p: float = 0.3  # chance of a Gaussian blur (sigma 0.5-1.2 px) before labelling
    body_p: float = 0.5  # chance that a crop is centred on a body pixel (HU > -500)
    mosaic_p: float = 0.5  # chance that a sample is a 2 x 2 mosaic of four smaller crops
    lr: float = 3e-3
    weight_decay: float = 1e-5
    class_weight_power: float = 0.5  # weights ~ frequency ** -power (normalised)
    # One thread: on the shared 2-core machine, with other jobs running, a training step took
    # 0.17 s with one torch thread and 13 s with two (oversubscription).
    threads: int = 1
    seed: int = SEED

    @classmethod
    def quick(cls) -> Config:
        return cls(steps=8, batch=2, crop=64)


@dataclass(frozen=True)
class CtSlice:
    name: str  # file name
    frame: int
    hu: np.ndarray  # float32 H x W, as DicomSource reads it


@dataclass
class Result:
    out: Path
    train_slices: list[str]
    heldout_file: str
    iou: dict[str, float]  # held-out file
    miou: float
    region_iou: dict[str, float]  # held-out stripes of the training slices
    region_miou: float
    train_iou: dict[str, float]  # training regions (fit), for comparison
    blur2_iou: dict[str, float]  # held-out file: thresholding a 2-px Gaussian-blurred slice
    onnx_max_abs_diff: float
    size_bytes: int
    seconds: dict[str, float] = field(default_factory=dict)


def label_hu(hu: np.ndarray) -> np.ndarray:
    """HU -> uint8 class ids (0 air / lung, 1 fat, 2 soft tissue / fluid, 3 bone)."""
    return np.digitize(np.asarray(hu, np.float32), np.asarray(HU_CUTS, np.float32)).astype(np.uint8)


def to_input(hu: np.ndarray, spec: InputSpec = INPUT) -> np.ndarray:
    """``[..., H, W]`` HU -> ``[..., 3, H, W]`` float32 model input.

    The same float32 arithmetic as ``loupe.inference.preprocess.prepare`` for a raw-values RGB
    card: ``x * (scale / std) - mean / std``, the grey plane repeated to three channels.
    """
    a = np.float32(spec.scale) / np.asarray(spec.std, np.float32)
    b = np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32)
    x = np.asarray(hu, np.float32)[..., None, :, :] * a[:, None, None]
    x -= b[:, None, None]
    return x


def testdata_path(name: str) -> Path:
    """A pydicom / pydicom-data test file, never downloaded."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(
            f"{name} is not installed locally (it ships with pydicom-data: pip install "
            "pydicom-data); this recipe never downloads"
        )
    return Path(str(path))


def load_slices(names: Sequence[str]) -> list[CtSlice]:
    """Every frame of the named test files, read by Loupe's DicomSource (HU, float32)."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            with DicomSource(testdata_path(name)) as src:
                if src.dataset.get("Modality") != "CT":
                    raise ValueError(f"{name} is not CT (Modality {src.dataset.get('Modality')})")
                for i in range(src.frame_count or 1):
                    px = src.frame_at(i).pixels
                    out.append(CtSlice(name, i, np.ascontiguousarray(px, np.float32)))
    return out


def train_width(width: int) -> int:
    """Columns ``[0, train_width)`` of a training slice may be used for training."""
    return round(width * (1.0 - HELDOUT_STRIPE)) - HELDOUT_GAP


def stripe_start(width: int) -> int:
    """Columns ``[stripe_start, width)`` are the held-out stripe."""
    return round(width * (1.0 - HELDOUT_STRIPE))


class CropSampler:
    """Random affine crops of the training regions; labels are computed after warping."""

    def __init__(self, regions: Sequence[tuple[str, np.ndarray]], cfg: Config) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.files = sorted({name for name, _ in regions})
        self.regions = {f: [r for n, r in regions if n == f] for f in self.files}
        self.body = {
            f: [np.argwhere(r > -500.0) for r in rs] for f, rs in self.regions.items()
        }

    def sample(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(HU input with noise, labels of the noise-free HU), both ``size x size``."""
        cfg, rng = self.cfg, self.rng
        f = self.files[int(rng.integers(len(self.files)))]
        k = int(rng.integers(len(self.regions[f])))
        src, body = self.regions[f][k], self.body[f][k]
        h, w = src.shape
        if len(body) and rng.random() < cfg.body_p:
            cy, cx = (float(v) for v in body[int(rng.integers(len(body)))])
        else:
            cy, cx = float(rng.uniform(0, h - 1)), float(rng.uniform(0, w - 1))
        s = math.exp(rng.uniform(math.log(cfg.scale[0]), math.log(cfg.scale[1])))
        angle = float(rng.uniform(-180.0, 180.0))
        m = cv2.getRotationMatrix2D((cx, cy), angle, s)
        m[0, 2] += (size - 1) / 2.0 - cx
        m[1, 2] += (size - 1) / 2.0 - cy
        hu = cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=AIR_HU)
        if rng.random() < 0.5:
            hu = hu[:, ::-1]
        if rng.random() < cfg.blur_p:
            hu = cv2.GaussianBlur(np.ascontiguousarray(hu), (0, 0), float(rng.uniform(0.5, 1.2)))
        hu = hu * np.float32(rng.uniform(*cfg.hu_gain)) + np.float32(
            rng.uniform(-cfg.hu_offset, cfg.hu_offset))
        lab = label_hu(hu)
        sigma = float(rng.uniform(0.0, cfg.hu_noise))
        noisy = hu + rng.normal(0.0, sigma, hu.shape).astype(np.float32)
        return np.ascontiguousarray(noisy, np.float32), np.ascontiguousarray(lab)

    def item(self) -> tuple[np.ndarray, np.ndarray]:
        """One crop, or (with ``mosaic_p``) a 2 x 2 mosaic of half-size crops of random slices.

        Labels are a pixel-wise function of HU, so a mosaic is as valid a sample as a crop; it
        stops the network from tying classes to the kind of slice around them (no fat in heads).
        """
        c = self.cfg.crop
        if self.rng.random() >= self.cfg.mosaic_p:
            return self.sample(c)
        h = c // 2
        parts = [self.sample(h) for _ in range(4)]
        hu = np.block([[parts[0][0], parts[1][0]], [parts[2][0], parts[3][0]]])
        lab = np.block([[parts[0][1], parts[1][1]], [parts[2][1], parts[3][1]]])
        return hu, lab

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self.item() for _ in range(self.cfg.batch)]
        x = torch.from_numpy(to_input(np.stack([p[0] for p in pairs])))
        y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
        return x, y


# --- model -------------------------------------------------------------------------------------
class HUWindows(nn.Module):
    """A network behind three fixed CT display windows (the first thing in the exported graph).

    The input is HU times :data:`HU_SCALE` in each of three (equal) channels, as the card
    prescribes; channel ``k`` is mapped through window ``WINDOWS_HU[k]`` (centre, width) to
    ``[-1, 1]`` (clamped). The windows are standard radiology ones, not the class cut-offs, and
    keep out-of-field padding (-2000, -3024 HU, ...) and metal from dominating the first
    layers. Exported as Mul/Add/Clip.
    """

    def __init__(self, net: nn.Module, windows: Sequence[tuple[float, float]]) -> None:
        super().__init__()
        self.net = net
        centre = torch.tensor([c for c, _ in windows], dtype=torch.float32)
        width = torch.tensor([w for _, w in windows], dtype=torch.float32)
        # x * gain + bias == 2 * (HU - (centre - width / 2)) / width - 1, with HU = x / HU_SCALE
        self.register_buffer("gain", (2.0 / (width * HU_SCALE)).view(1, -1, 1, 1))
        self.register_buffer("bias", (-2.0 * centre / width).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x * self.gain + self.bias).clamp(-1.0, 1.0))


def build_model(num_classes: int = len(LABELS)) -> HUWindows:
    return HUWindows(recipe.slim_ddrnet(num_classes, PLANES, SPP_PLANES, HEAD_PLANES), WINDOWS_HU)


def train(model: nn.Module, sampler: CropSampler, weights: torch.Tensor, cfg: Config) -> None:
    recipe.train_loop(model, lambda: recipe.segmentation_loss(model, *sampler.batch(), weights),
                      cfg.steps, cfg.lr, cfg.weight_decay, max_warmup=50, log_every=50, log=logger)


def pad_to_multiple(hu: np.ndarray, multiple: int = 8) -> np.ndarray:
    """Pad bottom/right by edge replication to a multiple of ``multiple``, as the app does."""
    h, w = hu.shape
    th, tw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    if (th, tw) == (h, w):
        return hu
    return cv2.copyMakeBorder(np.ascontiguousarray(hu), 0, th - h, 0, tw - w, cv2.BORDER_REPLICATE)


@torch.no_grad()
def predict(model: nn.Module, hu: np.ndarray) -> np.ndarray:
    """``H x W`` HU -> ``H x W`` uint8 class map: padding to a multiple of 8, stride-8 logits
    upsampled bilinearly over the padded input, argmax, crop. For sizes that are multiples of
    8 (every slice used here) this is exactly what the app computes."""
    model.eval()
    h, w = hu.shape
    x = torch.from_numpy(to_input(pad_to_multiple(hu, INPUT.size_multiple)[None]))
    logits = F.interpolate(model(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
    return logits[0, :, :h, :w].argmax(0).to(torch.uint8).numpy()


def _named(iou: np.ndarray) -> dict[str, float]:
    return {n: float(v) for n, v in zip(LABELS, iou, strict=True) if not np.isnan(v)}


# --- export ------------------------------------------------------------------------------------
def make_card(train_names: Sequence[str], iou: dict[str, float], miou: float,
              region_iou: dict[str, float], region_miou: float, steps: int) -> ModelCard:
    return recipe.segmentation_card(
        "Loupe demo CT tissue classes (HU ranges)", INPUT, LABELS, PALETTE,
        {
            "architecture": recipe.slim_ddrnet_text(PLANES, SPP_PLANES, HEAD_PLANES, "DualResNet "),
            "training_data": "CT slices shipped with pydicom / pydicom-data: "
                             + ", ".join(train_names)
                             + f" (left {1 - HELDOUT_STRIPE:.0%} of the columns of each); "
                             f"{steps} steps of random affine crops with HU augmentation",
            "demo": True,
            "labels_procedure": LABELS_PROCEDURE,
            "hu_thresholds": {"air / lung": f"< {HU_CUTS[0]:g}",
                              "fat": f"{HU_CUTS[0]:g} .. {HU_CUTS[1]:g}",
                              "soft tissue / fluid": f"{HU_CUTS[1]:g} .. {HU_CUTS[2]:g}",
                              "bone / calcification": f">= {HU_CUTS[2]:g}"},
            "heldout": f"heldout_iou: the whole file {HELDOUT_FILE} (never trained on); "
                       "heldout_region_iou: the right quarter of every training slice "
                       f"(columns never in a training crop, {HELDOUT_GAP}-px gap), scored on a "
                       "full-image pass",
            "heldout_iou": {k: round(v, 4) for k, v in iou.items()},
            "heldout_miou": round(miou, 4),
            "heldout_region_iou": {k: round(v, 4) for k, v in region_iou.items()},
            "heldout_region_miou": round(region_miou, 4),
            "recipe": RECIPE,
            "note": "learned HU thresholds, not anatomy: the labels are a fixed function of "
                    "each pixel's HU value; CT only (MR intensities are not calibrated)",
        },
    )


def verify_on_slice(model: nn.Module, path: Path, hu: np.ndarray) -> float:
    """Max |onnxruntime - float64 torch| logits on one real slice (CPU provider), checked by the
    exporters' one rule (``loupe_models.exporters.onnx.check_onnx``: tolerance plus the model's own
    float32 sensitivity at that slice)."""
    check = check_onnx(model.eval(), path, torch.from_numpy(to_input(hu[None])))
    if not check.ok:
        raise RuntimeError(f"onnxruntime and torch differ {check.summary()}")
    return check.max_abs_diff


def colourise(classes: np.ndarray) -> np.ndarray:
    return np.asarray(PALETTE, np.uint8)[classes]


def window_rgb(hu: np.ndarray, centre: float = 40.0, width: float = 400.0) -> np.ndarray:
    g = np.clip((hu - (centre - width / 2)) / width * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)


def save_preview(path: Path, model: nn.Module, slices: Sequence[CtSlice], size: int = 256) -> None:
    """One row per slice: CT (W400/L40) | HU labels | model classes over the CT (PNG)."""
    rows = []
    for s in slices:
        img, lab, pred = window_rgb(s.hu), colourise(label_hu(s.hu)), colourise(predict(model, s.hu))
        over = cv2.addWeighted(img, 0.5, pred, 0.5, 0.0)
        row = [cv2.resize(a, (size, size), interpolation=cv2.INTER_NEAREST) for a in (img, lab, over)]
        rows.append(np.concatenate(row, 1))
    recipe.write_png(path, np.concatenate(rows, 0))


# --- recipe ------------------------------------------------------------------------------------
def _run(out: Path, cfg: Config, preview: str | Path | None) -> Result:
    times = recipe.StageTimes()
    with times.stage("data"):
        train_slices = load_slices(TRAIN_FILES)
        held = load_slices([HELDOUT_FILE])
        regions = [(s.name, np.ascontiguousarray(s.hu[:, :train_width(s.hu.shape[1])]))
                   for s in train_slices]
    logger.info("read %d training slices (%s) and %d held-out in %.1f s", len(train_slices),
                ", ".join(f"{s.name}#{s.frame} {s.hu.shape[1]}x{s.hu.shape[0]}" for s in train_slices),
                len(held), times.seconds["data"])

    with times.stage("train"):
        model = build_model()
        weights = recipe.class_weights([label_hu(r) for _, r in regions], len(LABELS), cfg.class_weight_power)
        logger.info("class weights %s", np.round(weights.numpy(), 3).tolist())
        train(model, CropSampler(regions, cfg), weights, cfg)

    with times.stage("eval"):
        n = len(LABELS)
        conf_held = sum(confusion_matrix(predict(model, s.hu), label_hu(s.hu), n) for s in held)
        conf_stripe = np.zeros((n, n), np.int64)
        conf_train = np.zeros((n, n), np.int64)
        for s in train_slices:
            pred, lab = predict(model, s.hu), label_hu(s.hu)
            w = s.hu.shape[1]
            a, b = train_width(w), stripe_start(w)
            conf_train += confusion_matrix(pred[:, :a], lab[:, :a], n)
            conf_stripe += confusion_matrix(pred[:, b:], lab[:, b:], n)
        iou_held, iou_stripe = iou_from_confusion(conf_held), iou_from_confusion(conf_stripe)
        iou_train = iou_from_confusion(conf_train)
        conf_blur = sum(confusion_matrix(label_hu(cv2.GaussianBlur(s.hu, (0, 0), 2.0)), label_hu(s.hu), n)
                        for s in held)

    with times.stage("export"):
        names = list(dict.fromkeys(s.name for s in train_slices))
        card = make_card(names, _named(iou_held), float(np.nanmean(iou_held)), _named(iou_stripe),
                         float(np.nanmean(iou_stripe)), cfg.steps)
        export_segmentation(model, out, card, sample_hw=(cfg.crop, cfg.crop))
        check = verify_onnx(model, out, hw=(264, 520), card=card)
        if not check.ok:
            raise RuntimeError(f"onnxruntime and torch differ on random input {check.summary()}")
        diff = verify_on_slice(model, out, held[0].hu)  # 512x512, not a training size
    if preview is not None:
        save_preview(Path(preview), model, [train_slices[0], *held])
    return Result(out, [f"{s.name}#{s.frame}" for s in train_slices], HELDOUT_FILE,
                  _named(iou_held), float(np.nanmean(iou_held)), _named(iou_stripe),
                  float(np.nanmean(iou_stripe)), _named(iou_train),
                  _named(iou_from_confusion(conf_blur)), max(diff, check.max_abs_diff),
                  out.stat().st_size, times.total())


#: The whole recipe, ``run(out, cfg=None, preview=None) -> Result`` (:func:`recipe.runner`).
run = recipe.runner(_run, Config)


def _parser() -> argparse.ArgumentParser:
    return recipe.recipe_parser(RECIPE, __doc__.split("\n")[0], "resources/demo_ct.onnx",
                                "write a PNG: CT | HU labels | model, for CT_small and "
                                "the held-out slice",
                                threads_help="torch threads (default 1, see Config.threads)")


def _fmt(iou: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in iou.items())


def main(argv: Sequence[str] | None = None) -> int:
    # pydicom quiet: odd-but-harmless test-file headers
    r = recipe.cli_run(argv, _parser(), Config, run, quiet=("pydicom",))
    print(f"wrote {r.out} ({r.size_bytes / 1e6:.2f} MB); trained on {', '.join(r.train_slices)}")
    print(f"held-out file {r.heldout_file} IoU: {_fmt(r.iou)}; mean {r.miou:.3f}")
    print(f"held-out stripes IoU: {_fmt(r.region_iou)}; mean {r.region_miou:.3f}")
    print(f"training regions IoU (fit): {_fmt(r.train_iou)}")
    print(f"reference: thresholding the held-out slice blurred by a 2-px Gaussian: "
          f"{_fmt(r.blur2_iou)}")
    print(f"onnxruntime vs torch: max abs diff {r.onnx_max_abs_diff:.2e}")
    print(recipe.times_line(r.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
