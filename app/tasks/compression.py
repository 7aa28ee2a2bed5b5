"""Neural video compression models (HNeRV and kin): frame index in, decoded frame out (Qt-free).

Card (see CONTRACTS): the ONNX input is ``frame_index`` (int64, shape [1]); the output ``frame``
is float32 1 x 3 x H x W, RGB in [0, 1]. ``loupe.output`` gives ``frames``, ``size`` [H, W],
optional ``crop`` [top, left, height, width] in source pixels, ``source_size``, ``fps``, ``bits``
(the entropy-coded representation, decoder included) and ``bpp`` = bits / (frames H W).

For frame t of the clip:

- the model is fed ``[t]`` (frames at or past the card's ``frames`` get a per-frame message, no run);
- the reconstruction is the output rounded to 8-bit RGB (what the decoded video holds);
- the target is the source frame cropped per the card and, where the crop's size differs from
  ``size``, resized to it with ``cv2.INTER_AREA``;
- ``psnr`` and ``ssim`` are FFmpeg's psnr "all" and ssim "All" on the YUV 4:2:0 planes of both
  (``loupe.base.quality``), ``psnr_rgb`` the 8-bit RGB PSNR; ``bpp``/``bits`` come from the card.
  Identical frames have ``psnr`` = inf (``analyze`` writes an empty cell / ``null``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from loupe.base.quality import (
    Planes,
    json_number,
    rgb_frame_metrics,
    rgb_to_yuv420,
)
from loupe.inference.card import ModelCard
from loupe.inference.engine import Engine, ModelError
from loupe.inference.preprocess import display_rgb
from loupe.sources.base import Frame
from loupe.tasks.base import ModelTask

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompressionSpec:
    """The card's ``loupe.output`` for a compression model, checked."""

    frames: int
    size: tuple[int, int]  # H, W of the output
    crop: tuple[int, int, int, int] | None  # top, left, height, width in source pixels
    source_size: tuple[int, int] | None
    fps: float | None
    bits: int | None
    bpp: float | None
    clip: str | None
    representation: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_card(cls, card: ModelCard, name: str = "model") -> CompressionSpec:
        out = card.output or {}
        try:
            frames = int(out["frames"])
            size = (int(out["size"][0]), int(out["size"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            raise ModelError(f"{name}: a compression model's loupe.output needs 'frames' and 'size' [H, W]") from None
        if frames < 1 or size[0] < 1 or size[1] < 1:
            raise ModelError(f"{name}: loupe.output frames/size must be positive, got {frames} / {list(size)}")
        crop = None
        if out.get("crop") is not None:
            try:
                crop = tuple(int(v) for v in out["crop"])
            except (TypeError, ValueError):
                crop = ()
            if len(crop) != 4 or crop[2] < 1 or crop[3] < 1 or crop[0] < 0 or crop[1] < 0:
                raise ModelError(f"{name}: loupe.output crop must be [top, left, height, width], got {out['crop']}")
        src = out.get("source_size")
        bits = out.get("bits")
        bpp = out.get("bpp")
        if bpp is None and bits is not None:
            bpp = float(bits) / (frames * size[0] * size[1])
        return cls(
            frames=frames, size=size, crop=crop,  # type: ignore[arg-type]
            source_size=(int(src[0]), int(src[1])) if src else None,
            fps=float(out["fps"]) if out.get("fps") else None,
            bits=int(bits) if bits is not None else None,
            bpp=float(bpp) if bpp is not None else None,
            clip=str(out["clip"]) if out.get("clip") else None,
            representation=dict(out.get("representation") or {}),
        )

    def target(self, rgb: np.ndarray) -> np.ndarray:
        """The frame the model's output is compared with: crop, then INTER_AREA to ``size``.
        Raises ValueError (a message for the user) when the frame cannot hold the crop."""
        if rgb.ndim != 3 or rgb.shape[2] < 3:
            raise ValueError(f"a compression model needs colour frames, got shape {rgb.shape}")
        rgb = rgb[:, :, :3]
        h, w = rgb.shape[:2]
        if self.crop is not None:
            t, left, ch, cw = self.crop
            if t + ch > h or left + cw > w:
                want = f"{self.source_size[1]}x{self.source_size[0]}" if self.source_size else f"at least {left + cw}x{t + ch}"
                raise ValueError(f"the frame is {w}x{h} but the model's crop needs {want}: is this the clip it was fitted on?")
            rgb = rgb[t: t + ch, left: left + cw]
        if rgb.shape[:2] != self.size:
            rgb = cv2.resize(rgb, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(rgb, dtype=np.uint8)


def output_to_rgb(out: np.ndarray, size: tuple[int, int], name: str = "model") -> np.ndarray:
    """The model's 1 x 3 x H x W float output in [0, 1] -> H x W x 3 uint8 RGB (rounded, clipped).
    Raises ModelError when the shape is not the card's size."""
    a = np.asarray(out)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3 or a.shape[0] != 3 or tuple(a.shape[1:]) != tuple(size):
        raise ModelError(
            f"{name}: output frame has shape {tuple(np.shape(out))}, the card says 1 x 3 x {size[0]} x {size[1]}"
        )
    rgb = np.clip(np.rint(a.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb.transpose(1, 2, 0))


def frame_quality(target: np.ndarray, recon: np.ndarray, target_yuv: Planes | None = None) -> dict[str, float]:
    """psnr (YUV 'all'), psnr_y/u/v, mse_all, ssim (YUV 'All'), ssim_y/u/v, psnr_rgb, mse_rgb of
    an RGB reconstruction against its RGB target."""
    ty = target_yuv if target_yuv is not None else rgb_to_yuv420(target)
    m = rgb_frame_metrics(target, recon, ty, rgb_to_yuv420(recon))
    return {
        "psnr": m["psnr_all"], "psnr_y": m["psnr_y"], "psnr_u": m["psnr_u"], "psnr_v": m["psnr_v"],
        "mse_all": m["mse_all"], "ssim": m["ssim_all"], "ssim_y": m["ssim_y"], "ssim_u": m["ssim_u"],
        "ssim_v": m["ssim_v"], "psnr_rgb": m["psnr_rgb"], "mse_rgb": m["mse_rgb"],
    }


def error_map(target: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """H x W float32: the absolute error of ``recon`` against ``target``, averaged over R, G, B."""
    return np.mean(np.abs(target.astype(np.int16) - recon.astype(np.int16)), axis=2).astype(np.float32)


@dataclass(frozen=True)
class CompressionResult:
    """One frame. recon/target: H x W x 3 uint8 RGB at the model's size (recon None when the frame
    was not run; target then the frame's crop for display, made by a display task only, where the
    frame holds the crop); error: ``error_map`` of the two (display tasks only); psnr/ssim: YUV 4:2:0 as FFmpeg ('all' / 'All'); psnr_rgb: 8-bit RGB PSNR; bpp/bits:
    the representation's, from the card; message: why the frame has no figures."""

    index: int
    recon: np.ndarray | None
    target: np.ndarray | None
    psnr: float | None
    ssim: float | None
    psnr_rgb: float | None
    bpp: float | None
    bits: int | None
    metrics: dict[str, float] = field(default_factory=dict)  # frame_quality() in full
    message: str | None = None
    error: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("recon", "target"):
            a = getattr(self, name)
            if a is not None and (a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3):
                raise ValueError(f"{name} must be H x W x 3 uint8, got {a.dtype} {a.shape}")


@dataclass(frozen=True)
class CompressionContext:
    index: int
    target: np.ndarray | None
    message: str | None


class CompressionTask(ModelTask):
    name = "compression"
    # The decoder is fed frame t's index and nothing else: frame t's result needs no earlier
    # frame, so a resumed run starts at the first missing frame and Ray splits the input like
    # any other (frames keep their index after a frame-exact seek).
    history = 0

    def __init__(self, engine: Engine, display_max_side: int | None = 1280) -> None:
        super().__init__(engine, display_max_side)  # frames are kept at the model's size
        mname = engine.path.name
        self.spec = CompressionSpec.from_card(self.card, mname)
        if len(engine.inputs) != 1:
            raise ModelError(f"{mname}: a compression model has one input (frame_index), this one has {len(engine.inputs)}")
        inp = engine.inputs[0]
        if "int64" not in inp.dtype:
            raise ModelError(f"{mname}: the compression model's input {inp.name} must be int64 (a frame index), got {inp.dtype}")
        self.input_name = inp.name
        names = [o.name for o in engine.outputs]
        self.output_index = names.index("frame") if "frame" in names else 0
        self._warned = False

    def reset(self) -> None:
        self._warned = False  # log "past the frames this model encodes" once per input

    def prepare(self, frame: Frame) -> tuple[dict[str, np.ndarray] | None, CompressionContext]:
        i = int(frame.index)
        if i < 0 or i >= self.spec.frames:
            clip = f" of {self.spec.clip}" if self.spec.clip else ""
            msg = f"frame {i} is past the {self.spec.frames} frames{clip} this model encodes"
            if not self._warned:
                logger.warning("%s: %s", self.model_name, msg)
                self._warned = True
            return None, CompressionContext(i, self._display_target(frame), msg)
        try:
            target = self.spec.target(np.asarray(frame.pixels))
        except ValueError as e:
            return None, CompressionContext(i, None, str(e))
        return {self.input_name: np.array([i], dtype=np.int64)}, CompressionContext(i, target, None)

    def _display_target(self, frame: Frame) -> np.ndarray | None:
        """A frame the model does not cover, as the live view still shows it (display tasks only)."""
        if self.display_max_side is None:
            return None
        try:
            return self.spec.target(display_rgb(frame))
        except ValueError:
            return None

    def postprocess(self, outputs: list[np.ndarray] | None, ctx: CompressionContext) -> CompressionResult:
        if outputs is None or ctx.message is not None or ctx.target is None:
            return CompressionResult(ctx.index, None, ctx.target, None, None, None, self.spec.bpp, self.spec.bits,
                                     message=ctx.message or "not run")
        recon = output_to_rgb(outputs[self.output_index], self.spec.size, self.model_name)
        m = frame_quality(ctx.target, recon)
        # the live view's error overlay, made here on the inference thread (analysis has no use for it)
        err = error_map(ctx.target, recon) if self.display_max_side is not None else None
        return CompressionResult(ctx.index, recon, ctx.target, m["psnr"], m["ssim"], m["psnr_rgb"],
                                 self.spec.bpp, self.spec.bits, m, error=err)

    def columns(self) -> list[str]:
        return ["psnr", "ssim", "psnr_rgb", "bpp"]

    def row(self, result: CompressionResult) -> dict[str, Any]:
        return {
            "psnr": json_number(result.psnr, 4),
            "ssim": json_number(result.ssim, 6),
            "psnr_rgb": json_number(result.psnr_rgb, 4),
            "bpp": json_number(result.bpp, 6),
        }
