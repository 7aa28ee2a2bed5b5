"""Tiny instance segmentation ONNX models (``yolov8-seg``) whose outputs are known exactly.

Prototypes are +8 inside a rectangle of the model input and -8 outside, at a quarter of the
input's resolution (80 x 80 for 320 x 320), each rectangle's edges on prototype cell boundaries
(multiples of 4 input pixels); a detection's coefficients pick one prototype (one-hot). Bilinear
upsampling of +8 / -8 crosses 0 exactly on the cell boundary, so each mask is its rectangle
(where only straight edges cross its box: no corner of a rectangle lies within 4 pixels of
its box) cut to its box. Mapped to a frame, a pixel is in a mask when its centre, taken back to
input pixels, lies inside the rectangle and inside the frame box (``expected_masks``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx

from loupe.inference.card import InputSpec, ModelCard, embed_card
from tests.detection_models import (
    INPUT_HW,
    LABELS,
    expected_on_frame,
    make_constant_model,
    xyxy_to_cxcywh,
)

M = 7  # prototypes: one per instance (its rectangle) + one all-negative (an empty mask)
EMPTY = 6
#: box (input pixels), class, score, prototype rectangle x1, y1, x2, y2 (input pixels, or None)
INSTANCES = (
    ((140.0, 150.0, 180.0, 170.0), 1, 0.9, (120, 100, 172, 220)),  # its right part: x 140-172
    ((150.0, 160.0, 230.0, 200.0), 0, 0.8, (160, 100, 212, 300)),   # x 160-212, under the first
    ((100.0, 60.0, 140.0, 100.0), 2, 0.6, (80, 40, 160, 120)),      # the whole box (landscape: clipped)
    ((0.0, 0.0, 30.0, 30.0), 0, 0.7, (0, 0, 32, 32)),               # in the padding: dropped
    ((200.0, 200.0, 240.0, 240.0), 2, 0.5, None),                   # an empty mask: dropped
    ((60.0, 200.0, 100.0, 240.0), 1, 0.25, (60, 200, 100, 240)),    # at the threshold: dropped
)


def protos(input_hw=INPUT_HW) -> np.ndarray:
    h, w = input_hw[0] // 4, input_hw[1] // 4
    p = np.full((1, M, h, w), -8.0, np.float32)
    for k, (_b, _c, _s, rect) in enumerate(INSTANCES):
        if rect is None:
            continue
        x1, y1, x2, y2 = (v // 4 for v in rect)
        p[0, k, y1:y2, x1:x2] = 8.0
    return p


def predictions(n_classes: int = 3, anchors: int = 16, low: float = 0.01) -> np.ndarray:
    """``1 x (4 + C + M) x A``: each instance one anchor (its coefficients one-hot on its
    prototype, the empty prototype for the one without a rectangle)."""
    out = np.full((1, 4 + n_classes + M, anchors), low, np.float32)
    out[0, :4] = 10.0
    out[0, 4 + n_classes:] = 0.0
    for a, (box, c, s, rect) in enumerate(INSTANCES):
        a = a + 3  # not the first anchors: the coefficients must follow the anchor index
        out[0, :4, a] = xyxy_to_cxcywh(box)
        out[0, 4 + c, a] = s
        out[0, 4 + n_classes + (EMPTY if rect is None else a - 3), a] = 1.0
    return out


def make_instances_model(path: Path, output: dict | None = None, *, transposed: bool = False,
                         card: bool = True, protos_first: bool = False) -> Path:
    pred = predictions()
    if transposed:
        pred = pred.transpose(0, 2, 1).copy()
    outs = {"output0": pred, "output1": protos()}
    if protos_first:
        outs = {"output1": protos(), "output0": pred}
    make_constant_model(path, outs, None, card=False)
    if card:
        model = onnx.load(str(path))
        embed_card(model, ModelCard(
            task="instances", name="constant segmenter",
            input=InputSpec(color="RGB", scale=1 / 255, fixed_size=INPUT_HW, letterbox=True),
            labels=LABELS, output=dict(output if output is not None else {"format": "yolov8-seg"}),
            source={"architecture": "test model: constant outputs", "demo": False},
        ))
        onnx.save(model, str(path))
    return path


def expected_boxes(frame_hw):
    """The kept instances on the frame (detection's hand-worked letterbox mapping), best first,
    as (frame box, class, score, rectangle), without the empty-mask one."""
    dets = [(b, c, s) for b, c, s, rect in INSTANCES if rect is not None]
    rects = {(b, c, s): rect for b, c, s, rect in INSTANCES}
    out = []
    for fb, c, s in expected_on_frame(frame_hw, dets):
        src = next(d for d in dets if d[1] == c and d[2] == s)
        out.append((fb, c, s, rects[src]))
    return out


def expected_masks(frame_hw, input_hw=INPUT_HW) -> list[np.ndarray]:
    """Each kept instance's full-frame bool mask, worked out independently of Loupe's code: at
    the input's resolution, the input pixels whose centres lie inside the rectangle (exact: the
    upsampled +8 / -8 prototype crosses 0 on the rectangle's edges) and inside the box (columns
    ``x1 <= col < x2``); then, as Ultralytics maps masks to the frame, the letterbox content
    cropped, resized bilinearly to the frame with cv2 (half-pixel centres) and above 0.5."""
    h, w = frame_hw
    ih, iw = input_hw
    gain = min(ih / h, iw / w)
    ch, cw = round(h * gain), round(w * gain)
    top, left = (ih - ch) // 2, (iw - cw) // 2
    yc = np.arange(ih)[:, None]
    xc = np.arange(iw)[None, :]
    masks = []
    kept = [(b, c, s, r) for b, c, s, r in INSTANCES if r is not None]
    for _fb, c, s, (rx1, ry1, rx2, ry2) in expected_boxes(frame_hw):
        (bx1, by1, bx2, by2), *_ = next(d for d in kept if d[1] == c and d[2] == s)
        at_input = ((rx1 < xc + 0.5) & (xc + 0.5 < rx2) & (ry1 < yc + 0.5) & (yc + 0.5 < ry2)
                    & (bx1 <= xc) & (xc < bx2) & (by1 <= yc) & (yc < by2))
        content = at_input[top:top + ch, left:left + cw].astype(np.float32)
        masks.append(cv2.resize(content, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5)
    return masks


def expected_id_map(frame_hw) -> np.ndarray:
    """0 nowhere, i + 1 for instance i; the better instance on top."""
    ids = np.zeros(frame_hw, np.uint16)
    for i, mk in reversed(list(enumerate(expected_masks(frame_hw)))):
        ids[mk] = i + 1
    return ids
