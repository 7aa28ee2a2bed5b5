"""DDRNet-23-slim (Deep Dual-resolution Networks) for real-time semantic segmentation.

A PyTorch re-implementation of the architecture in ydhongHIT/DDRNet
``segmentation/DDRNet_23_slim.py`` (Hong et al., "Deep Dual-resolution Networks for Real-time
and Accurate Semantic Segmentation of Road Scenes", 2021). Module names, registration order
and shapes follow the official code so that its checkpoints load without renaming any key
(see ``loupe_models.checkpoint`` for unwrapping the HRNet-style checkpoint file).

Two branches run side by side: a low-resolution "context" branch (ResNet stages down to
1/32 and 1/64) and a high-resolution "detail" branch kept at 1/8. They exchange
information twice (bilateral fusion: strided 3x3 convs from high to low resolution, 1x1
compression + bilinear upsampling from low to high), then a Deep Aggregation Pyramid Pooling
Module (DAPPM) enlarges the context and the sum of both branches goes through a small
segmentation head. The output is class logits at H/8 x W/8; H and W must be multiples of 8.

All bilinear resizes use ``align_corners=False`` (the official default), as the official
weights were trained that way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DAPPM", "BasicBlock", "Bottleneck", "DualResNet", "SegHead", "ddrnet23_slim"]

BN_MOMENTUM = 0.1


def _resize(x: torch.Tensor, height, width) -> torch.Tensor:
    return F.interpolate(x, size=[height, width], mode="bilinear", align_corners=False)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)


class _Residual(nn.Module):
    """A residual block: ``branch(x) + shortcut(x)``, then ReLU unless ``no_relu``. Subclasses
    build their convs in :meth:`_build` (whose attribute names and order are the official
    state-dict layout) and give their ``expansion`` and ``no_relu`` default."""

    expansion = 1
    default_no_relu = False

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        no_relu: bool | None = None,
    ) -> None:
        super().__init__()
        self._build(inplanes, planes, stride)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.no_relu = self.default_no_relu if no_relu is None else no_relu

    def _build(self, inplanes: int, planes: int, stride: int) -> None:
        raise NotImplementedError

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self._branch(x) + shortcut
        return out if self.no_relu else self.relu(out)


class BasicBlock(_Residual):
    """Two 3x3 convs with an identity (or projected) shortcut; ReLU after the sum unless
    ``no_relu`` (the last block of a multi-block stage leaves it to the caller)."""

    def _build(self, inplanes: int, planes: int, stride: int) -> None:
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = _bn(planes)

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(_Residual):
    """1x1 reduce, 3x3, 1x1 expand (x2). By default no ReLU after the sum (official default)."""

    expansion = 2
    default_no_relu = True

    def _build(self, inplanes: int, planes: int, stride: int) -> None:
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = _bn(planes * self.expansion)

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


def _pre_act_branch(pool: nn.Module | None, inplanes: int, outplanes: int, kernel: int = 1):
    """[pool] -> BN -> ReLU -> conv (no bias), the DAPPM building brick."""
    mods: list[nn.Module] = [] if pool is None else [pool]
    mods += [
        _bn(inplanes),
        nn.ReLU(inplace=True),
        nn.Conv2d(inplanes, outplanes, kernel, padding=kernel // 2, bias=False),
    ]
    return nn.Sequential(*mods)


class DAPPM(nn.Module):
    """Deep Aggregation Pyramid Pooling Module.

    Pooled context at four scales (avg-pool 5/2, 9/4, 17/8 and global) is upsampled and
    added hierarchically (each scale refined by a 3x3 conv after adding the previous one),
    the five maps are concatenated, compressed by a 1x1 conv and added to a 1x1 shortcut.
    """

    def __init__(self, inplanes: int, branch_planes: int, outplanes: int) -> None:
        super().__init__()
        # Registration order (scale1..4, scale0, process1..4, compression, shortcut) is the
        # official one and fixes the state_dict order.
        self.scale1 = _pre_act_branch(nn.AvgPool2d(5, stride=2, padding=2), inplanes, branch_planes)
        self.scale2 = _pre_act_branch(nn.AvgPool2d(9, stride=4, padding=4), inplanes, branch_planes)
        self.scale3 = _pre_act_branch(
            nn.AvgPool2d(17, stride=8, padding=8), inplanes, branch_planes
        )
        self.scale4 = _pre_act_branch(nn.AdaptiveAvgPool2d((1, 1)), inplanes, branch_planes)
        self.scale0 = _pre_act_branch(None, inplanes, branch_planes)
        self.process1 = _pre_act_branch(None, branch_planes, branch_planes, kernel=3)
        self.process2 = _pre_act_branch(None, branch_planes, branch_planes, kernel=3)
        self.process3 = _pre_act_branch(None, branch_planes, branch_planes, kernel=3)
        self.process4 = _pre_act_branch(None, branch_planes, branch_planes, kernel=3)
        self.compression = _pre_act_branch(None, branch_planes * 5, outplanes)
        self.shortcut = _pre_act_branch(None, inplanes, outplanes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        y0 = self.scale0(x)
        y1 = self.process1(_resize(self.scale1(x), height, width) + y0)
        y2 = self.process2(_resize(self.scale2(x), height, width) + y1)
        y3 = self.process3(_resize(self.scale3(x), height, width) + y2)
        y4 = self.process4(_resize(self.scale4(x), height, width) + y3)
        return self.compression(torch.cat([y0, y1, y2, y3, y4], 1)) + self.shortcut(x)


class SegHead(nn.Module):
    """BN -> ReLU -> 3x3 conv -> BN -> ReLU -> 1x1 conv (with bias). Official name: ``segmenthead``."""

    def __init__(self, inplanes: int, interplanes: int, outplanes: int) -> None:
        super().__init__()
        self.bn1 = _bn(inplanes)
        self.conv1 = nn.Conv2d(inplanes, interplanes, 3, padding=1, bias=False)
        self.bn2 = _bn(interplanes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(interplanes, outplanes, 1, padding=0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.relu(self.bn1(x)))
        return self.conv2(self.relu(self.bn2(x)))


def _make_layer(
    block: type[_Residual],
    inplanes: int,
    planes: int,
    blocks: int,
    stride: int = 1,
) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
            _bn(planes * block.expansion),
        )
    # The first block keeps the block's default post-sum ReLU choice (BasicBlock: ReLU,
    # Bottleneck: none); of the following ones only the last skips it.
    layers: list[nn.Module] = [block(inplanes, planes, stride, downsample)]
    inplanes = planes * block.expansion
    for i in range(1, blocks):
        layers.append(block(inplanes, planes, stride=1, no_relu=(i == blocks - 1)))
    return nn.Sequential(*layers)


class DualResNet(nn.Module):
    """DDRNet with BasicBlock stages ``layers`` (DDRNet-23-slim: (2, 2, 2, 2), planes=32).

    ``forward(x)`` returns logits ``[N, num_classes, H/8, W/8]``; with ``augment=True`` it
    returns ``(main, aux)`` where ``aux`` comes from the training-time head ``seghead_extra``
    on the high-resolution branch after stage 3 (official order ``[main, aux]``).
    """

    def __init__(
        self,
        num_classes: int = 19,
        planes: int = 32,
        spp_planes: int = 128,
        head_planes: int = 64,
        augment: bool = False,
        layers: tuple[int, int, int, int] | list[int] = (2, 2, 2, 2),
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers needs 4 stage depths, got {list(layers)}")
        highres = planes * 2
        self.augment = augment
        self.num_classes = num_classes

        self.conv1 = nn.Sequential(
            nn.Conv2d(3, planes, 3, stride=2, padding=1),
            _bn(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, stride=2, padding=1),
            _bn(planes),
            nn.ReLU(inplace=True),
        )
        self.relu = nn.ReLU(inplace=False)
        self.layer1 = _make_layer(BasicBlock, planes, planes, layers[0])
        self.layer2 = _make_layer(BasicBlock, planes, planes * 2, layers[1], stride=2)
        self.layer3 = _make_layer(BasicBlock, planes * 2, planes * 4, layers[2], stride=2)
        self.layer4 = _make_layer(BasicBlock, planes * 4, planes * 8, layers[3], stride=2)

        # low -> high resolution (1x1 compression, then bilinear upsampling in forward)
        self.compression3 = nn.Sequential(
            nn.Conv2d(planes * 4, highres, 1, bias=False), _bn(highres)
        )
        self.compression4 = nn.Sequential(
            nn.Conv2d(planes * 8, highres, 1, bias=False), _bn(highres)
        )
        # high -> low resolution (strided 3x3 convs)
        self.down3 = nn.Sequential(
            nn.Conv2d(highres, planes * 4, 3, stride=2, padding=1, bias=False), _bn(planes * 4)
        )
        self.down4 = nn.Sequential(
            nn.Conv2d(highres, planes * 4, 3, stride=2, padding=1, bias=False),
            _bn(planes * 4),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes * 4, planes * 8, 3, stride=2, padding=1, bias=False),
            _bn(planes * 8),
        )

        self.layer3_ = _make_layer(BasicBlock, planes * 2, highres, 2)
        self.layer4_ = _make_layer(BasicBlock, highres, highres, 2)
        self.layer5_ = _make_layer(Bottleneck, highres, highres, 1)
        self.layer5 = _make_layer(Bottleneck, planes * 8, planes * 8, 1, stride=2)

        self.spp = DAPPM(planes * 16, spp_planes, planes * 4)
        if augment:
            self.seghead_extra = SegHead(highres, head_planes, num_classes)
        self.final_layer = SegHead(planes * 4, head_planes, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor):
        out_h, out_w = x.shape[-2] // 8, x.shape[-1] // 8

        x = self.layer1(self.conv1(x))  # 1/4
        l2 = self.layer2(self.relu(x))  # 1/8
        l3 = self.layer3(self.relu(l2))  # 1/16

        # stage 3 + first bilateral fusion
        hi = self.layer3_(self.relu(l2))  # 1/8 detail branch
        lo = l3 + self.down3(self.relu(hi))
        hi = hi + _resize(self.compression3(self.relu(l3)), out_h, out_w)
        aux_in = hi

        # stage 4 + second bilateral fusion
        l4 = self.layer4(self.relu(lo))  # 1/32
        hi = self.layer4_(self.relu(hi))
        lo = l4 + self.down4(self.relu(hi))
        hi = hi + _resize(self.compression4(self.relu(l4)), out_h, out_w)

        # stage 5 + DAPPM context, fused at 1/8
        hi = self.layer5_(self.relu(hi))
        lo = _resize(self.spp(self.layer5(self.relu(lo))), out_h, out_w)
        out = self.final_layer(lo + hi)

        if self.augment:
            return out, self.seghead_extra(aux_in)
        return out


def ddrnet23_slim(num_classes: int = 19, augment: bool = False) -> DualResNet:
    """DDRNet-23-slim as in the official Cityscapes configuration."""
    return DualResNet(
        num_classes=num_classes,
        planes=32,
        spp_planes=128,
        head_planes=64,
        augment=augment,
        layers=(2, 2, 2, 2),
    )
