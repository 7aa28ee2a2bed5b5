"""Frame -> model input, following the card (Qt-free).

Greyscale and DICOM frames feed an RGB model as their display window mapped to 0-255 and
repeated to three channels, unless the card asks for raw values (e.g. HU). Sizes are padded
(bottom/right, edge-replicated) to the card's size multiple, resized to its fixed size, or, with
``letterbox``, scaled to fit the fixed size keeping the aspect ratio and padded centred with
``pad_value`` (as Ultralytics' predictor does: bilinear resize, the odd pixel of padding at the
bottom/right), or, with ``center_crop``, scaled to cover it and its centre cut out (classifiers);
``Geometry`` maps model outputs back onto the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from loupe.inference.card import InputSpec
from loupe.sources.base import Frame


@dataclass(frozen=True)
class Geometry:
    """How a frame was placed in the model input."""

    frame_hw: tuple[int, int]
    input_hw: tuple[int, int]
    #: "pad" (content at top-left, unscaled), "resize" (stretched), "letterbox" or "center_crop"
    mode: str
    #: letterbox and center_crop: the frame was scaled by ``gain`` to ``content_hw`` and placed
    #: at ``offset`` (top, left) of the input (negative when cropped); other modes leave them
    #: at their defaults
    gain: float = 1.0
    offset: tuple[int, int] = (0, 0)
    content_hw: tuple[int, int] | None = None

    def content_fraction(self) -> tuple[float, float]:
        """Fraction of the model input (rows, cols) that holds the frame."""
        if self.mode == "resize":
            return 1.0, 1.0
        h, w = self.content_hw or self.frame_hw
        return h / self.input_hw[0], w / self.input_hw[1]

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """Points or boxes in model-input pixels (``[..., 2k]``: x, y, x, y, ...) -> the same in
        frame pixels (float32, not clipped)."""
        a = np.asarray(xy, np.float32)
        h, w = self.frame_hw
        ih, iw = self.input_hw
        if self.mode in ("letterbox", "center_crop"):
            # per axis from the rounded content size: the exact inverse of the resize (cw input
            # pixels hold the frame's w), as Ultralytics maps boxes back
            ch, cw = self.content_hw or self.frame_hw
            sx, sy = np.float32(w / cw), np.float32(h / ch)
            ox, oy = np.float32(self.offset[1]), np.float32(self.offset[0])
        elif self.mode == "resize":
            sx, sy = np.float32(w / iw), np.float32(h / ih)
            ox = oy = np.float32(0.0)
        else:  # pad: the frame sits unscaled at the top-left
            sx = sy = np.float32(1.0)
            ox = oy = np.float32(0.0)
        out = np.empty(a.shape, np.float32)
        out[..., 0::2] = (a[..., 0::2] - ox) * sx
        out[..., 1::2] = (a[..., 1::2] - oy) * sy
        return out

    def crop_map(self, arr: np.ndarray) -> np.ndarray:
        """The part of a dense output map (its last two axes cover the model input) that covers
        the frame: the top-left part in pad mode, the centred content in letterbox mode, all of it
        when the frame was stretched. A view, no copy."""
        oh, ow = arr.shape[-2:]
        if self.mode == "pad":
            rh, rw = self.crop_output((oh, ow))
            return arr[..., :rh, :rw]
        if self.mode in ("letterbox", "center_crop"):
            ih, iw = self.input_hw
            ch, cw = self.content_hw or self.frame_hw
            top, left = self.offset
            r0 = max(0, int(np.floor(top * oh / ih + 1e-6)))
            c0 = max(0, int(np.floor(left * ow / iw + 1e-6)))
            r1 = max(r0 + 1, min(oh, int(np.ceil((top + ch) * oh / ih - 1e-6))))
            c1 = max(c0 + 1, min(ow, int(np.ceil((left + cw) * ow / iw - 1e-6))))
            return arr[..., r0:r1, c0:c1]
        return arr

    def crop_output(self, out_hw: tuple[int, int]) -> tuple[int, int]:
        """Rows/cols of an output map of size out_hw that cover the frame (pad mode)."""
        fh, fw = self.content_fraction()
        return max(1, int(np.ceil(out_hw[0] * fh - 1e-6))), max(1, int(np.ceil(out_hw[1] * fw - 1e-6)))


def window_levels(frame: Frame) -> tuple[float, float]:
    """(low, high) display levels of a frame: the DICOM window when present, else its dtype range."""
    md = frame.metadata
    c, w = md.get("window_center"), md.get("window_width")
    if c is not None and w is not None and float(w) > 0:
        return float(c) - float(w) / 2.0, float(c) + float(w) / 2.0
    p = frame.pixels
    if p.dtype == np.uint8:
        return 0.0, 255.0
    if p.dtype == np.uint16:
        return 0.0, 65535.0
    lo, hi = float(np.min(p)), float(np.max(p))
    return lo, hi if hi > lo else lo + 1.0


def to_uint8_window(pixels: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] to 0-255 (clipped), as uint8."""
    if pixels.dtype == np.uint8 and low == 0.0 and high == 255.0:
        return pixels
    scale = np.float32(255.0 / max(high - low, 1e-12))
    f = pixels.astype(np.float32)
    f -= np.float32(low)
    f *= scale
    np.clip(f, 0.0, 255.0, out=f)
    return (f + 0.5).astype(np.uint8)


def display_rgb(frame: Frame, window: tuple[float, float] | None = None) -> np.ndarray:
    """The frame as an RGB uint8 image: greyscale mapped through ``window`` (center, width),
    by default the frame's own (file) window, and repeated to three channels."""
    p = frame.pixels
    if window is not None:
        lo, hi = window[0] - window[1] / 2.0, window[0] + window[1] / 2.0
    else:
        lo, hi = window_levels(frame)
    if p.ndim == 3 and p.shape[2] >= 3:
        rgb = p[:, :, :3]
        if rgb.dtype != np.uint8:
            rgb = to_uint8_window(rgb, lo, hi)
        return rgb
    g = p[:, :, 0] if p.ndim == 3 else p
    g8 = to_uint8_window(g, lo, hi)
    return cv2.cvtColor(g8, cv2.COLOR_GRAY2RGB)


def _target_hw(h: int, w: int, spec: InputSpec) -> tuple[tuple[int, int], str]:
    if spec.fixed_size:
        mode = "letterbox" if spec.letterbox else "center_crop" if spec.center_crop else "resize"
        return (int(spec.fixed_size[0]), int(spec.fixed_size[1])), mode
    m = max(1, spec.size_multiple)
    return (-(-h // m) * m, -(-w // m) * m), "pad"


def prepare(frame: Frame, spec: InputSpec, pad: str = "edge") -> tuple[np.ndarray, Geometry]:
    """NCHW float32 model input for one frame, and the geometry to map outputs back.

    ``pad``: how the bottom/right margin up to the size multiple is filled: ``edge`` (replicated,
    so a segmenter sees no black border) or ``zero`` (black: adds nothing a density model would
    count)."""
    p = frame.pixels
    if spec.raw_values:
        img = p.astype(np.float32, copy=False)
        if img.ndim == 2:
            img = img[:, :, None]
        if spec.channels == 3 and img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        elif spec.channels == 1 and img.shape[2] >= 3:
            img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_RGB2GRAY)[:, :, None]
    elif spec.channels == 1:
        if p.ndim == 3 and p.shape[2] >= 3:
            img = cv2.cvtColor(display_rgb(frame, spec.window), cv2.COLOR_RGB2GRAY)[:, :, None]
        else:
            img = display_rgb(frame, spec.window)[:, :, :1]
    else:
        img = display_rgb(frame, spec.window)
        if spec.color == "BGR":
            img = img[:, :, ::-1]
    h, w = img.shape[:2]
    (th, tw), mode = _target_hw(h, w, spec)
    extra: dict = {}
    if mode == "letterbox":
        img, extra = letterbox(img, (th, tw), spec.pad_value)
    elif mode == "center_crop":
        img, extra = center_crop(img, (th, tw))
    elif mode == "resize" and (th, tw) != (h, w):
        interp = cv2.INTER_LINEAR if spec.interpolation == "linear" else cv2.INTER_AREA
        img = cv2.resize(np.ascontiguousarray(img), (tw, th), interpolation=interp)
        if img.ndim == 2:
            img = img[:, :, None]
    elif mode == "pad" and (th, tw) != (h, w):
        border = cv2.BORDER_CONSTANT if pad == "zero" else cv2.BORDER_REPLICATE
        img = cv2.copyMakeBorder(np.ascontiguousarray(img), 0, th - h, 0, tw - w, border, value=0)
        if img.ndim == 2:
            img = img[:, :, None]
    c = img.shape[2]
    a = (np.float32(spec.scale) / np.asarray(spec.std, np.float32))[:c]
    b = (np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32))[:c]
    x = np.empty((1, c, th, tw), np.float32)
    planes = cv2.split(img) if c > 1 else [np.ascontiguousarray(img[:, :, 0])]
    for ch, plane in enumerate(planes):  # per channel: one SIMD pass a * p - b into the NCHW plane
        cv2.addWeighted(plane, float(a[ch]), plane, 0.0, float(-b[ch]), dst=x[0, ch], dtype=cv2.CV_32F)
    return x, Geometry(frame_hw=(h, w), input_hw=(th, tw), mode=mode, **extra)


def letterbox(img: np.ndarray, out_hw: tuple[int, int], pad_value: float = 114.0) -> tuple[np.ndarray, dict]:
    """``img`` (H x W x C) scaled by ``min(out_h / H, out_w / W)`` (bilinear) and padded centred
    to ``out_hw`` with ``pad_value``; the odd pixel of padding goes to the bottom/right. Returns the
    image and the ``Geometry`` fields ``gain``, ``offset`` and ``content_hw``."""
    h, w = img.shape[:2]
    th, tw = out_hw
    gain = min(th / h, tw / w)
    ch, cw = min(th, max(1, int(round(h * gain)))), min(tw, max(1, int(round(w * gain))))  # noqa: RUF046 (numpy scalars)
    top, left = (th - ch) // 2, (tw - cw) // 2
    if (ch, cw) != (h, w):
        img = cv2.resize(np.ascontiguousarray(img), (cw, ch), interpolation=cv2.INTER_LINEAR)
        if img.ndim == 2:
            img = img[:, :, None]
    if (ch, cw) != (th, tw):
        c = img.shape[2]
        img = cv2.copyMakeBorder(np.ascontiguousarray(img), top, th - ch - top, left, tw - cw - left,
                                 cv2.BORDER_CONSTANT, value=[float(pad_value)] * max(c, 1))
        if img.ndim == 2:
            img = img[:, :, None]
    return img, {"gain": gain, "offset": (top, left), "content_hw": (ch, cw)}


def center_crop(img: np.ndarray, out_hw: tuple[int, int]) -> tuple[np.ndarray, dict]:
    """``img`` scaled by ``max(out_h / H, out_w / W)`` (area-averaged when shrinking, bilinear
    when enlarging) so it covers ``out_hw``, then its centre cut out (as classifier pipelines
    resize the short side and centre-crop). Returns the image and the ``Geometry`` fields."""
    h, w = img.shape[:2]
    th, tw = out_hw
    gain = max(th / h, tw / w)
    ch, cw = max(th, int(round(h * gain))), max(tw, int(round(w * gain)))  # noqa: RUF046 (numpy scalars)
    if (ch, cw) != (h, w):
        interp = cv2.INTER_AREA if gain < 1 else cv2.INTER_LINEAR
        img = cv2.resize(np.ascontiguousarray(img), (cw, ch), interpolation=interp)
        if img.ndim == 2:
            img = img[:, :, None]
    top, left = (ch - th) // 2, (cw - tw) // 2
    img = img[top:top + th, left:left + tw]
    return img, {"gain": gain, "offset": (-top, -left), "content_hw": (ch, cw)}


def display_size(frame_hw: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """(h, w) at which overlays are computed: the frame size, capped to max_side."""
    h, w = frame_hw
    if not max_side or max(h, w) <= max_side:
        return h, w
    s = max_side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))
