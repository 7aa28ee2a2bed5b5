"""A tiny anchor-free one-stage detector (the demo detector's network) and its training losses.

Layout (:class:`TinyDetector`): a plain conv backbone (3x3 conv + BN + SiLU, each stage opened by
a stride-2 conv) down to stride 32, a top-down neck (each level's features plus the coarser
level's, upsampled x2 after a 1x1 conv) and one head per level (strides 8, 16, 32, as YOLOv8) (a 3x3 conv, then 1x1 convs for the class
logits and for the four distances ``l, t, r, b`` from the cell centre to the box sides, in input
pixels: ``softplus(raw) * stride``). Every cell of every level is one candidate; cell (i, j) of a
level of stride s is centred at ``((j + 0.5) s, (i + 0.5) s)``.

Training (:func:`detection_losses`), in the manner of FCOS / GFL, written for this demo:

- **Assignment** (:func:`assign`): a cell is a positive of a ground-truth box when its centre lies
  inside the box *and* within ``CENTER_RADIUS`` strides of the box centre (centre sampling), and
  the box's longer side is in the level's size range (``LEVEL_RANGES``: the levels overlap so
  that mid-sized boxes train both). A cell claimed by several boxes takes the smallest.
- **Class loss**: quality focal loss (GFL): a sigmoid per class, trained towards the IoU of the
  cell's predicted box with its ground truth on the positives' class and towards 0 elsewhere,
  weighted by ``|target - p| ** 2``, summed and divided by the number of positives. The score is
  then an estimate of the box's IoU, which ranks boxes for NMS without a separate centre-ness.
- **Box loss**: GIoU loss of the positives' decoded boxes.

:class:`YoloV8Output` wraps a trained detector for export: one output ``(N, 4 + C, A)`` with
``cx, cy, w, h`` in input pixels and the sigmoid class scores, the layout of Ultralytics YOLOv8
exports (candidates of the stride-8 level first, then 16, then 32, row-major within a level; so
``A = sum over strides of ceil(H / s) * ceil(W / s)``, 2352 at 256 x 448), so
that Loupe decodes it with the same code as a real YOLOv8 model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CENTER_RADIUS",
    "LEVEL_RANGES",
    "STRIDES",
    "TinyDetector",
    "YoloV8Output",
    "anchor_points",
    "assign",
    "box_iou_pairs",
    "detection_losses",
    "distances_to_boxes",
]

STRIDES = (8, 16, 32)
#: The longer side (input pixels) of the boxes each level learns, per level in ``STRIDES``.
LEVEL_RANGES = ((0.0, 56.0), (40.0, 112.0), (88.0, 1e9))
#: Centre sampling radius, in strides of the level.
CENTER_RADIUS = 2.5
QFL_BETA = 2.0
BOX_WEIGHT = 2.0


class ConvBNAct(nn.Sequential):
    """``k x k`` conv (no bias) + BatchNorm + SiLU."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.SiLU(inplace=True))


def _stage(cin: int, cout: int, depth: int) -> nn.Sequential:
    """A stride-2 conv to ``cout`` channels, then ``depth`` 3x3 convs."""
    return nn.Sequential(ConvBNAct(cin, cout, 3, 2), *(ConvBNAct(cout, cout) for _ in range(depth)))


class _Head(nn.Module):
    def __init__(self, cin: int, width: int, num_classes: int, stride: int) -> None:
        super().__init__()
        self.stride = float(stride)
        self.conv = nn.Sequential(ConvBNAct(cin, width), ConvBNAct(width, width))
        self.cls = nn.Conv2d(width, num_classes, 1)
        self.box = nn.Conv2d(width, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.conv(x)
        return self.cls(f), F.softplus(self.box(f)) * self.stride


class TinyDetector(nn.Module):
    """The demo detector. ``forward(x)`` (``x``: N x 3 x H x W, H and W multiples of 32) returns
    ``(logits, distances)``: N x A x C class logits and N x A x 4 distances ``l, t, r, b`` (input
    pixels) for the A cells of the stride-8, 16 and 32 levels, row-major within a level."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (16, 32, 64, 96, 128),
                 depths: Sequence[int] = (0, 1, 2, 2, 1), head_width: int = 48) -> None:
        super().__init__()
        if len(widths) != 5 or len(depths) != 5:
            raise ValueError("TinyDetector needs 5 stage widths and depths (strides 2 to 32)")
        self.num_classes = int(num_classes)
        self.widths = tuple(int(w) for w in widths)
        self.depths = tuple(int(d) for d in depths)
        self.head_width = int(head_width)
        c1, c2, c3, c4, c5 = self.widths
        self.stem = _stage(3, c1, depths[0])
        self.stage2 = _stage(c1, c2, depths[1])
        self.stage3 = _stage(c2, c3, depths[2])
        self.stage4 = _stage(c3, c4, depths[3])
        self.stage5 = _stage(c4, c5, depths[4])
        self.lateral32 = nn.Conv2d(c5, c4, 1)
        self.fuse16 = ConvBNAct(c4, c4)
        self.lateral16 = nn.Conv2d(c4, c3, 1)
        self.fuse8 = ConvBNAct(c3, c3)
        self.head8 = _Head(c3, head_width, num_classes, STRIDES[0])
        self.head16 = _Head(c4, head_width, num_classes, STRIDES[1])
        self.head32 = _Head(c5, head_width, num_classes, STRIDES[2])
        prior = 0.01  # initial class probability (RetinaNet's prior): a calm start for focal losses
        for h in (self.head8, self.head16, self.head32):
            nn.init.constant_(h.cls.bias, -float(torch.log(torch.tensor((1 - prior) / prior))))

    def levels(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per level: ``(N x C x h x w logits, N x 4 x h x w distances)``. H and W must be
        multiples of 32 (the neck adds each level to the coarser one upsampled x2)."""
        s8 = self.stage3(self.stage2(self.stem(x)))
        s16 = self.stage4(s8)
        s32 = self.stage5(s16)
        p16 = self.fuse16(s16 + F.interpolate(self.lateral32(s32), scale_factor=2.0, mode="nearest"))
        p8 = self.fuse8(s8 + F.interpolate(self.lateral16(p16), scale_factor=2.0, mode="nearest"))
        return [self.head8(p8), self.head16(p16), self.head32(s32)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, dists = [], []
        for cls, box in self.levels(x):
            logits.append(cls.flatten(2))
            dists.append(box.flatten(2))
        return torch.cat(logits, 2).transpose(1, 2), torch.cat(dists, 2).transpose(1, 2)


def anchor_points(hw: tuple[int, int], strides: Sequence[int] = STRIDES,
                  dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(points A x 2 (x, y), strides A)`` of the cells of an ``hw`` input, in
    :class:`TinyDetector`'s order."""
    pts, st = [], []
    for s in strides:
        h, w = -(-int(hw[0]) // s), -(-int(hw[1]) // s)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype),
                                indexing="ij")
        pts.append(torch.stack([(xs.reshape(-1) + 0.5) * s, (ys.reshape(-1) + 0.5) * s], 1))
        st.append(torch.full((h * w,), float(s), dtype=dtype))
    return torch.cat(pts), torch.cat(st)


def distances_to_boxes(points: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """``x1, y1, x2, y2`` from cell centres (A x 2) and distances (... x A x 4: l, t, r, b)."""
    return torch.cat([points - dist[..., :2], points + dist[..., 2:]], -1)


def box_iou_pairs(a: torch.Tensor, b: torch.Tensor, giou: bool = False) -> torch.Tensor:
    """IoU (or GIoU) of matching rows of two ``... x 4`` xyxy box tensors."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-9)
    if not giou:
        return iou
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).prod(-1)
    return iou - (hull - union) / hull.clamp(min=1e-9)


def assign(points: torch.Tensor, strides: torch.Tensor, boxes: torch.Tensor,
           ranges: Sequence[tuple[float, float]] = LEVEL_RANGES,
           level_strides: Sequence[int] = STRIDES,
           radius: float = CENTER_RADIUS) -> torch.Tensor:
    """For one image: the index into ``boxes`` (M x 4 xyxy) of each cell's ground truth, -1 for
    background (see the module docstring)."""
    a = points.shape[0]
    if boxes.numel() == 0:
        return torch.full((a,), -1, dtype=torch.long)
    px, py = points[:, 0:1], points[:, 1:2]  # A x 1
    x1, y1, x2, y2 = (boxes[:, i][None] for i in range(4))  # 1 x M
    inside = (px > x1) & (px < x2) & (py > y1) & (py < y2)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    r = radius * strides[:, None]
    central = ((px - cx).abs() < r) & ((py - cy).abs() < r)
    side = torch.maximum(x2 - x1, y2 - y1)  # 1 x M
    lo = torch.zeros(a, 1, dtype=points.dtype)
    hi = torch.zeros(a, 1, dtype=points.dtype)
    for s, (low, high) in zip(level_strides, ranges, strict=True):
        at = strides == float(s)
        lo[at], hi[at] = low, high
    fits = (side >= lo) & (side <= hi)
    ok = inside & central & fits
    area = ((x2 - x1) * (y2 - y1)).expand(a, -1)
    area = torch.where(ok, area, torch.full_like(area, float("inf")))
    best_area, best = area.min(1)
    return torch.where(torch.isfinite(best_area), best, torch.full_like(best, -1))


def detection_losses(logits: torch.Tensor, dists: torch.Tensor, points: torch.Tensor,
                     strides: torch.Tensor, targets: Sequence[tuple[torch.Tensor, torch.Tensor]]
                     ) -> dict[str, torch.Tensor]:
    """The training losses of a batch: ``logits`` N x A x C, ``dists`` N x A x 4 (from
    :class:`TinyDetector`), ``targets`` per image ``(boxes M x 4 xyxy, classes M)``. Returns
    ``loss`` (= ``cls + BOX_WEIGHT * box``), ``cls``, ``box`` and ``positives`` (per image)."""
    n = logits.shape[0]
    pred_boxes = distances_to_boxes(points, dists)
    cls_target = torch.zeros_like(logits)
    box_losses, npos = [], 0
    for i, (boxes, classes) in enumerate(targets):
        idx = assign(points, strides, boxes)
        pos = idx >= 0
        if not pos.any():
            continue
        gt = boxes[idx[pos]]
        pb = pred_boxes[i, pos]
        with torch.no_grad():
            iou = box_iou_pairs(pb, gt).clamp(min=0.0)
        cls_target[i, pos, classes[idx[pos]]] = iou
        box_losses.append(1.0 - box_iou_pairs(pb, gt, giou=True))
        npos += int(pos.sum())
    p = logits.sigmoid()
    qfl = F.binary_cross_entropy_with_logits(logits, cls_target, reduction="none")
    qfl = (qfl * (cls_target - p).abs().pow(QFL_BETA)).sum()
    denom = max(npos, 1)
    cls_loss = qfl / denom
    box_loss = torch.cat(box_losses).sum() / denom if box_losses else dists.sum() * 0.0
    return {"loss": cls_loss + BOX_WEIGHT * box_loss, "cls": cls_loss, "box": box_loss,
            "positives": torch.tensor(npos / max(n, 1), dtype=torch.float32)}


class YoloV8Output(nn.Module):
    """A :class:`TinyDetector` at a fixed input size, as one YOLOv8-layout output:
    ``(N, 4 + C, A)`` rows ``cx, cy, w, h`` (input pixels) then the C sigmoid class scores."""

    def __init__(self, detector: TinyDetector, hw: tuple[int, int]) -> None:
        super().__init__()
        self.detector = detector
        self.hw = (int(hw[0]), int(hw[1]))
        points, _ = anchor_points(self.hw)
        self.register_buffer("points", points, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, dist = self.detector(x)
        pts = self.points.to(dist.dtype)
        centre = pts + (dist[..., 2:] - dist[..., :2]) / 2
        size = dist[..., :2] + dist[..., 2:]
        return torch.cat([centre, size, logits.sigmoid()], -1).transpose(1, 2)
