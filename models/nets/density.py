"""M-SFANet and M-SegNet crowd-density networks (Thanasutives et al., "Encoder-Decoder Based
Convolutional Neural Networks with Multi-Scale-Aware Modules for Crowd Counting", ICPR 2020).

Re-implemented so that ``state_dict()`` has exactly the names, order and shapes of the official
models (Pongpisit-Thanasutives/Variations-of-SFANet-for-Crowd-Counting, ``models/M_SFANet.py``,
``M_SFANet_UCF_QNRF.py``, ``M_SegNet.py``, ``M_SegNet_UCF_QNRF.py``), so the official
checkpoints load without renaming. Nothing is downloaded: the official constructors fetch
ImageNet VGG weights, which every checkpoint overwrites anyway.

Two variants per architecture:

- ``"shanghaitech"``: VGG16-bn front end, dual-path decoder; ``forward`` returns
  ``(density, attention)`` with ``attention = sigmoid(bn(conv))`` and
  ``density = conv_out(attention * density_features)``. Every conv block carries a BatchNorm,
  including ``conv_out`` whose BatchNorm is never used (it is in the official checkpoints).
- ``"ucf-qnrf"``: VGG19 front end without BatchNorm, single density path plus a ``reg_layer``
  branch; ``forward`` returns ``abs(density)``.

All outputs are at output stride 2 (N x 1 x H/2 x W/2); the count is ``density.sum()``.
Input: RGB, ``/255``, ImageNet mean/std. M-SFANet needs H, W multiples of 16 (and multiples of
48 for ONNX export, see :mod:`loupe_models.exporters.density`); M-SegNet (ShanghaiTech) runs at any
size, M-SegNet (UCF-QNRF) needs multiples of 16.

M-SegNet's max-unpooling uses :func:`max_unpool2d_scatter`, numerically identical to
``F.max_unpool2d`` for the non-overlapping 2x2 pools used here, and exportable to ONNX
(``ScatterElements``) with dynamic H/W.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from loupe_models.checkpoint import CheckpointError, read_checkpoint, state_dict_problems

logger = logging.getLogger(__name__)

__all__ = [
    "ARCHITECTURES",
    "VARIANTS",
    "MSFANet",
    "MSegNet",
    "build_density_model",
    "load_density_checkpoint",
    "max_unpool2d_scatter",
    "unwrap_density_checkpoint",
]

VARIANTS = ("shanghaitech", "ucf-qnrf")
ARCHITECTURES = ("m-sfanet", "m-segnet")

# (channels, convs) per VGG stage
_VGG16 = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
_VGG19 = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


def _check_variant(variant: str) -> str:
    v = variant.lower().replace("_", "-")
    if v not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    return v


def _up(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Bilinear upsampling with ``align_corners=True`` (``nn.UpsamplingBilinear2d``)."""
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=True)


def _check_hw(x: torch.Tensor, multiple: int, arch: str) -> None:
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h % multiple or w % multiple:
        raise ValueError(f"{arch} needs H and W multiples of {multiple}, got {h}x{w}")


# --------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------
class ConvBlock(nn.Module):
    """``conv`` (k x k, 'same' padding, bias) -> optional ``bn`` -> optional activation.

    ``build_bn`` creates ``bn`` even when ``use_bn`` is False (the ShanghaiTech models store
    an unused ``conv_out.bn``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        *,
        activation: str | None = "relu",
        use_bn: bool = False,
        build_bn: bool | None = None,
    ) -> None:
        super().__init__()
        if activation not in (None, "relu", "sigmoid"):
            raise ValueError(f"unknown activation {activation!r}")
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, 1, kernel // 2)
        if build_bn is None:
            build_bn = use_bn
        if use_bn and not build_bn:
            raise ValueError("use_bn needs build_bn")
        self.use_bn = use_bn
        self.activation = activation
        if build_bn:
            self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.use_bn:
            x = self.bn(x)
        if self.activation == "relu":
            x = F.relu(x)
        elif self.activation == "sigmoid":
            x = torch.sigmoid(x)
        return x


class VGGFrontEnd(nn.Module):
    """VGG convolutions named ``conv<stage>_<index>`` (1-based), without the pools.

    ``stages`` is a sequence of ``(channels, convs)``; :meth:`stage` runs one stage.
    """

    def __init__(self, stages: Sequence[tuple[int, int]], *, bn: bool) -> None:
        super().__init__()
        self._names: list[list[str]] = []
        cin = 3
        for s, (cout, n) in enumerate(stages, start=1):
            names = []
            for j in range(1, n + 1):
                name = f"conv{s}_{j}"
                # ShanghaiTech BaseConv always builds .bn; UCF-QNRF builds none
                self.add_module(name, ConvBlock(cin, cout, 3, use_bn=bn))
                names.append(name)
                cin = cout
            self._names.append(names)

    @property
    def num_stages(self) -> int:
        return len(self._names)

    def stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Run stage ``index`` (1-based)."""
        for name in self._names[index - 1]:
            x = getattr(self, name)(x)
        return x


class _ASPPBranch(nn.Module):
    def __init__(self, inplanes: int, planes: int, kernel: int, dilation: int, bn: bool) -> None:
        super().__init__()
        padding = 0 if kernel == 1 else dilation
        self.atrous_conv = nn.Conv2d(
            inplanes, planes, kernel, stride=1, padding=padding, dilation=dilation, bias=False
        )
        self.bn = nn.BatchNorm2d(planes) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.atrous_conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: four dilated branches plus an image-pool branch, a 1x1
    fusion conv, ReLU and dropout. With ``bn`` every conv is followed by BatchNorm."""

    def __init__(
        self, inplanes: int = 512, dilations: Sequence[int] = (1, 6, 12, 18), *, bn: bool
    ) -> None:
        super().__init__()
        d = list(dilations)
        self.aspp1 = _ASPPBranch(inplanes, 256, 1, d[0], bn)
        self.aspp2 = _ASPPBranch(inplanes, 256, 3, d[1], bn)
        self.aspp3 = _ASPPBranch(inplanes, 256, 3, d[2], bn)
        self.aspp4 = _ASPPBranch(inplanes, 256, 3, d[3], bn)
        pool: list[nn.Module] = [
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(inplanes, 256, 1, bias=False),
        ]
        if bn:
            pool.append(nn.BatchNorm2d(256))
        pool.append(nn.ReLU())
        self.global_avg_pool = nn.Sequential(*pool)
        self.conv1 = nn.Conv2d(256 * 5, 256, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(256) if bn else None
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.aspp1(x)
        x2 = self.aspp2(x)
        x3 = self.aspp3(x)
        x4 = self.aspp4(x)
        x5 = self.global_avg_pool(x)
        x5 = F.interpolate(x5, size=x4.shape[2:], mode="bilinear", align_corners=True)
        x = self.conv1(torch.cat((x1, x2, x3, x4, x5), dim=1))
        if self.bn1 is not None:
            x = self.bn1(x)
        return self.dropout(F.relu(x))


class ContextualModule(nn.Module):
    """Context-aware module (CAN, Liu et al. 2019): adaptive average pools to 1/2/3/6 cells,
    1x1 convs, bilinear upsampling (``align_corners=False``), contrast-based sigmoid weights,
    weighted mean of the scales concatenated with the input, 1x1 bottleneck and ReLU."""

    def __init__(
        self, features: int = 512, out_features: int = 512, sizes: Sequence[int] = (1, 2, 3, 6)
    ) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d((s, s)), nn.Conv2d(features, features, 1, bias=False)
            )
            for s in sizes
        )
        self.bottleneck = nn.Conv2d(features * 2, out_features, kernel_size=1)
        self.weight_net = nn.Conv2d(features, features, kernel_size=1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h, w = feats.shape[2], feats.shape[3]
        scales = [
            F.interpolate(stage(feats), size=(h, w), mode="bilinear", align_corners=False)
            for stage in self.scales
        ]
        # Official: w_i = sigmoid(z_i), fused = sum_i(s_i * w_i) / sum_i(w_i) with
        # z_i = weight_net(feats - s_i). The same value is a softmax over the scales of
        # log(w_i) = -softplus(-z_i); written that way it stays accurate when every w_i is tiny
        # (ONNX Runtime's Sigmoid loses relative accuracy below about -10 and returns 0 below
        # -18, which turns the official ratio into noise or 0/0 after export).
        log_w = torch.stack([-F.softplus(-self.weight_net(feats - s)) for s in scales], dim=0)
        a = torch.softmax(log_w, dim=0)
        fused = scales[0] * a[0]
        for i in range(1, len(scales)):
            fused = fused + scales[i] * a[i]
        return F.relu(self.bottleneck(torch.cat([fused, feats], dim=1)))


def _reg_layer() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(512, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 128, kernel_size=3, padding=1),
        nn.ReLU(),
    )


class ScalePyramidModule(nn.Module):
    """CAN on the 1/8 feature and ASPP on the 1/16 feature. UCF-QNRF variant: the ASPP output
    and a ``reg_layer`` on the upsampled 1/16 feature are concatenated at 1/8 (256 + 128)."""

    def __init__(self, variant: str) -> None:
        super().__init__()
        self.variant = _check_variant(variant)
        if self.variant == "shanghaitech":
            self.assp = ASPP(512, (1, 6, 12, 18), bn=True)  # official name 'assp'
        else:
            self.assp = ASPP(512, (1, 12, 24, 36), bn=False)
        self.can = ContextualModule(512, 512)
        if self.variant == "ucf-qnrf":
            self.reg_layer = _reg_layer()

    def forward(
        self, c2: torch.Tensor, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        c4 = self.can(c4)
        if self.variant == "shanghaitech":
            c5 = self.assp(c5)
        else:
            c5 = torch.cat([_up(self.assp(c5), 2), self.reg_layer(_up(c5, 2))], dim=1)
        return c2, c3, c4, c5


class SFABackEnd(nn.Module):
    """M-SFANet decoder path (used twice in the ShanghaiTech model: attention and density).

    ``deep_at_16``: the deepest input is at 1/16 (ShanghaiTech) and is upsampled x2 before the
    first concat and x4 for the second; otherwise (UCF-QNRF) it is at 1/8, used as is and
    upsampled x2 for the second concat.
    """

    def __init__(self, deep_channels: int, *, bn: bool, deep_at_16: bool) -> None:
        super().__init__()
        self.deep_at_16 = deep_at_16
        c1 = deep_channels + 512
        c3 = 256 + 256 + deep_channels
        self.conv1 = ConvBlock(c1, 256, 1, use_bn=bn)
        self.conv2 = ConvBlock(256, 256, 3, use_bn=bn)
        self.conv3 = ConvBlock(c3, 128, 1, use_bn=bn)
        self.conv4 = ConvBlock(128, 128, 3, use_bn=bn)
        self.conv5 = ConvBlock(256, 64, 1, use_bn=bn)
        self.conv6 = ConvBlock(64, 64, 3, use_bn=bn)
        self.conv7 = ConvBlock(64, 32, 3, use_bn=bn)

    def forward(
        self, c2: torch.Tensor, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor
    ) -> torch.Tensor:
        if self.deep_at_16:
            x = _up(c5, 2)
            deep = _up(c5, 4)
        else:
            x = c5
            deep = _up(c5, 2)
        x = torch.cat([x, c4], dim=1)
        x = self.conv2(self.conv1(x))
        x = _up(x, 2)
        x = torch.cat([x, c3, deep], dim=1)
        x = self.conv4(self.conv3(x))
        x = _up(x, 2)
        x = torch.cat([x, c2], dim=1)
        return self.conv7(self.conv6(self.conv5(x)))


# --------------------------------------------------------------------------------------
# M-SFANet
# --------------------------------------------------------------------------------------
class MSFANet(nn.Module):
    """M-SFANet. ``variant="shanghaitech"`` (VGG16-bn, ASPP dilations 1/6/12/18 with BN, CAN,
    attention + density paths; returns ``(density, attention)``) or ``"ucf-qnrf"`` (M-SFANet*:
    VGG19 without BN, ASPP dilations 1/12/24/36, CAN, ``reg_layer``, density path only; returns
    ``abs(density)``). Input N x 3 x H x W with H, W multiples of 16; outputs N x 1 x H/2 x W/2.
    """

    def __init__(self, variant: str = "shanghaitech") -> None:
        super().__init__()
        self.variant = _check_variant(variant)
        sht = self.variant == "shanghaitech"
        self.vgg = VGGFrontEnd(_VGG16 if sht else _VGG19, bn=sht)
        self.spm = ScalePyramidModule(self.variant)
        if sht:
            self.amp = SFABackEnd(256, bn=True, deep_at_16=True)
            self.dmp = SFABackEnd(256, bn=True, deep_at_16=True)
            self.conv_att = ConvBlock(32, 1, 1, activation="sigmoid", use_bn=True)
            self.conv_out = ConvBlock(32, 1, 1, activation=None, use_bn=False, build_bn=True)
        else:
            self.dmp = SFABackEnd(384, bn=False, deep_at_16=False)
            self.conv_out = ConvBlock(32, 1, 1, activation=None)

    @property
    def outputs(self) -> tuple[str, ...]:
        return ("density", "attention") if self.variant == "shanghaitech" else ("density",)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """VGG features at 1/2, 1/4, 1/8 and 1/16 (outputs of stages 2..5)."""
        x = self.vgg.stage(1, x)
        feats = []
        for s in range(2, 6):
            x = self.vgg.stage(s, F.max_pool2d(x, 2, 2))
            feats.append(x)
        return tuple(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        _check_hw(x, 16, "M-SFANet")
        spm = self.spm(*self.features(x))
        if self.variant == "shanghaitech":
            att = self.conv_att(self.amp(*spm))
            density = self.conv_out(att * self.dmp(*spm))
            return density, att
        return torch.abs(self.conv_out(self.dmp(*spm)))


# --------------------------------------------------------------------------------------
# M-SegNet
# --------------------------------------------------------------------------------------
def max_unpool2d_scatter(
    x: torch.Tensor, indices: torch.Tensor, output_size: Sequence[int]
) -> torch.Tensor:
    """``F.max_unpool2d(x, indices, output_size=...)`` written as a scatter, so that it exports
    to ONNX (``ScatterElements``) with dynamic sizes.

    ``indices`` are ``max_pool2d(..., return_indices=True)`` indices (flat within each H x W
    plane of the pooled input); every value goes back to its index, all other positions are
    zero. With non-overlapping windows (kernel = stride) no index repeats, so the result equals
    ``F.max_unpool2d`` exactly.
    """
    n, c = x.shape[0], x.shape[1]
    h, w = output_size[-2], output_size[-1]
    out = x.new_zeros((n, c, h * w))
    out = out.scatter(2, indices.flatten(2), x.flatten(2))
    return out.view(n, c, h, w)


def _pool(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Size]:
    pooled, idx = F.max_pool2d(x, 2, 2, return_indices=True)
    return pooled, idx, x.shape


class SegBackEnd(nn.Module):
    """M-SegNet decoder path: three max-unpool steps (to 1/8, 1/4, 1/2), each concatenated
    with the pooled encoder feature of that scale. UCF-QNRF adds ``reg_layer`` on the x2
    upsampled deepest feature, concatenated first at 1/8."""

    def __init__(self, *, bn: bool, reg_layer: bool) -> None:
        super().__init__()
        c1 = 512 + 256 + (128 if reg_layer else 0)
        self.conv1 = ConvBlock(c1, 256, 1, use_bn=bn)
        self.conv2 = ConvBlock(256, 256, 3, use_bn=bn)
        self.conv3 = ConvBlock(384, 128, 1, use_bn=bn)
        self.conv4 = ConvBlock(128, 128, 3, use_bn=bn)
        self.conv5 = ConvBlock(192, 64, 1, use_bn=bn)
        self.conv6 = ConvBlock(64, 64, 3, use_bn=bn)
        self.conv7 = ConvBlock(64, 32, 3, use_bn=bn)
        if reg_layer:
            self.reg_layer = _reg_layer()

    def forward(
        self,
        pools: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Size]],
        deep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        (p1, _, _), (p2, i2, s2), (p3, i3, s3), (p4, i4, s4) = pools
        x = max_unpool2d_scatter(p4, i4, s4)
        if deep is not None:
            x = torch.cat([self.reg_layer(_up(deep, 2)), x, p3], dim=1)
        else:
            x = torch.cat([x, p3], dim=1)
        x = self.conv2(self.conv1(x))
        x = torch.cat([max_unpool2d_scatter(x, i3, s3), p2], dim=1)
        x = self.conv4(self.conv3(x))
        x = torch.cat([max_unpool2d_scatter(x, i2, s2), p1], dim=1)
        return self.conv7(self.conv6(self.conv5(x)))


class MSegNet(nn.Module):
    """M-SegNet. ``variant="shanghaitech"`` (first 10 convs of VGG16-bn, SegNet-style
    max-unpooling decoder, attention + density paths; returns ``(density, attention)``; any
    H, W) or ``"ucf-qnrf"`` (M-SegNet*: full VGG19 without BN, decoder with ``reg_layer``,
    density only; returns ``abs(density)``; H, W multiples of 16). Outputs at 1/2 resolution.
    """

    def __init__(self, variant: str = "shanghaitech") -> None:
        super().__init__()
        self.variant = _check_variant(variant)
        sht = self.variant == "shanghaitech"
        self.vgg = VGGFrontEnd(_VGG16[:4] if sht else _VGG19, bn=sht)
        if sht:
            self.amp = SegBackEnd(bn=True, reg_layer=False)
            self.dmp = SegBackEnd(bn=True, reg_layer=False)
            self.conv_att = ConvBlock(32, 1, 1, activation="sigmoid", use_bn=True)
            self.conv_out = ConvBlock(32, 1, 1, activation=None, use_bn=False, build_bn=True)
        else:
            self.dmp = SegBackEnd(bn=False, reg_layer=True)
            self.conv_out = ConvBlock(32, 1, 1, activation=None)

    @property
    def outputs(self) -> tuple[str, ...]:
        return ("density", "attention") if self.variant == "shanghaitech" else ("density",)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.variant == "ucf-qnrf":
            _check_hw(x, 16, "M-SegNet (UCF-QNRF)")
        pools = []
        for s in range(1, 5):
            x = self.vgg.stage(s, x)
            pooled, idx, size = _pool(x)
            pools.append((pooled, idx, size))
            x = pooled
        if self.variant == "shanghaitech":
            att = self.conv_att(self.amp(pools))
            density = self.conv_out(att * self.dmp(pools))
            return density, att
        deep = self.vgg.stage(5, x)
        return torch.abs(self.conv_out(self.dmp(pools, deep)))


# --------------------------------------------------------------------------------------
# factory and checkpoints
# --------------------------------------------------------------------------------------
_DISPLAY = {
    ("m-sfanet", "shanghaitech"): "M-SFANet (ShanghaiTech)",
    ("m-sfanet", "ucf-qnrf"): "M-SFANet* (UCF-QNRF)",
    ("m-segnet", "shanghaitech"): "M-SegNet (ShanghaiTech)",
    ("m-segnet", "ucf-qnrf"): "M-SegNet* (UCF-QNRF)",
}


def _check_arch(arch: str) -> str:
    a = arch.lower().replace("_", "-")
    if a not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; use one of {', '.join(ARCHITECTURES)}")
    return a


def display_name(arch: str, variant: str) -> str:
    return _DISPLAY[(_check_arch(arch), _check_variant(variant))]


def build_density_model(arch: str, variant: str) -> MSFANet | MSegNet:
    """``MSFANet(variant)`` for ``"m-sfanet"``, ``MSegNet(variant)`` for ``"m-segnet"``."""
    a = _check_arch(arch)
    return MSFANet(variant) if a == "m-sfanet" else MSegNet(variant)


def _expected_shapes(arch: str, variant: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = build_density_model(arch, variant)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _fits(sd: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]) -> bool:
    return set(sd) == set(expected) and all(tuple(sd[k].shape) == s for k, s in expected.items())


def unwrap_density_checkpoint(ckpt: object, arch: str, variant: str) -> dict[str, torch.Tensor]:
    """Map an official M-SFANet / M-SegNet checkpoint object onto the model's names.

    ShanghaiTech files hold the state dict under ``'model'`` (next to ``epoch``,
    ``optimizer``, ...); UCF-QNRF files are the state dict itself. Either layout is accepted
    for either variant (which one was found is logged). Keys and shapes are checked against
    ``build_density_model(arch, variant)``; a mismatch raises CheckpointError (a ValueError)
    that names missing / unexpected keys and, when the file fits another of the four models,
    says which one.
    """
    a, v = _check_arch(arch), _check_variant(variant)
    name = display_name(a, v)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(
            f"checkpoint holds a {type(ckpt).__name__}, expected a dict of tensors"
        )
    if "model" in ckpt and isinstance(ckpt["model"], Mapping):
        logger.info("checkpoint: state dict under 'model' (ShanghaiTech layout)")
        ckpt = ckpt["model"]
    else:
        logger.info("checkpoint: bare state dict (UCF-QNRF layout)")
    sd: dict[str, torch.Tensor] = {}
    for key, value in ckpt.items():
        if not isinstance(key, str):
            raise CheckpointError(f"checkpoint key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor"
            )
        sd[key] = value

    expected = _expected_shapes(a, v)
    if _fits(sd, expected):
        return {k: sd[k] for k in expected}

    hint = ""
    for oa in ARCHITECTURES:
        for ov in VARIANTS:
            if (oa, ov) != (a, v) and _fits(sd, _expected_shapes(oa, ov)):
                hint = f" (it fits {display_name(oa, ov)}: use {oa} --variant {ov})"
    problems = state_dict_problems(sd, expected)
    raise CheckpointError(f"checkpoint does not fit {name}{hint}: " + "; ".join(problems))


def load_density_checkpoint(path: str | Path, arch: str, variant: str) -> dict[str, torch.Tensor]:
    """Read an official checkpoint (``torch.load(map_location='cpu', weights_only=True)``) and
    return a state dict that loads strictly into ``build_density_model(arch, variant)``.

    Raises CheckpointError (a ValueError) when the file cannot be read or does not fit.
    """
    sd = unwrap_density_checkpoint(read_checkpoint(path), arch, variant)
    logger.info(
        "loaded %d %s entries from %s", len(sd), display_name(arch, variant), Path(path).name
    )
    return sd
