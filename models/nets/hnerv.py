"""HNeRV: hybrid neural representation for videos (Chen et al., CVPR 2023).

Re-implementation of the model in haochen-rye/HNeRV ``model_all.py`` @ 4872129 with the same
state-dict names and shapes (``tests/data/reference/hnerv_bunny_1.5m*.json``):

- **encoder**: a small ConvNeXt. Stage ``i`` is a patchify conv with kernel = stride =
  ``enc_strides[i]`` (stem: conv then channels-first LayerNorm; later stages: LayerNorm then
  conv) followed by ``enc_blocks`` ConvNeXt blocks (7x7 depthwise conv, LayerNorm, Linear 4x,
  GELU, Linear, layer scale ``gamma``, residual). Widths ``enc_dim`` except the last stage,
  which has ``embed_dim`` channels: its output is the frame's content-adaptive embedding,
  ``embed_dim x H/P x W/P`` with ``P = prod(enc_strides)`` (16 x 2 x 4 for bunny 640x1280).
- **decoder** (``decoder.*``): ``decoder[0]`` is a 1x1 conv from ``embed_dim`` to
  ``fc_dim * fc_h * fc_w`` channels + GELU (then a depth-to-space by ``fc_h x fc_w``, a no-op
  when encoder and decoder strides are equal); ``decoder[1..]`` are HNeRV blocks
  ``conv(k_i) -> PixelShuffle(s_i) -> GELU`` with ``k_i = min(ks_dec1 + 2 i, ks_dec2)`` and
  widths ``w_{i+1} = int(max(round(w_i / reduce), lower_width))`` starting at ``fc_dim``.
- **head** (``head_layer``): 3x3 conv to RGB; output ``tanh(x) * 0.5 + 0.5`` in [0, 1].

GELU is the exact (erf) form everywhere, as in the official code.

Public API (used by ``fit_hnerv``, ``hnerv_codec`` and the exporters)::

    cfg = bunny_1p5m_config()                      # the README bunny 1.5M model
    cfg = config_for((144, 176), 0.3e6)            # strides/widths from clip size + budget
    model = HNeRV(cfg); recon, emb = model(img)    # img N x 3 x H x W in [0, 1]
    emb = model.encode(img)                        # N x embed_dim x h x w
    dec = HNeRVDecoder(cfg) or HNeRVDecoder.from_model(model)  # shares the modules
    frame = dec(emb)                               # N x 3 x H x W in [0, 1]

Checkpoint import (``torch.load(weights_only=True)``) lives further down:
:func:`load_training_checkpoint`, :func:`load_quant_vid`. The compression export (one
card-carrying ONNX) is :func:`loupe_models.exporters.hnerv.export_compression`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import reduce as _fold
from pathlib import Path
from typing import Any

import torch
from torch import nn

from loupe_models.checkpoint import CheckpointError, _listing, read_checkpoint

logger = logging.getLogger(__name__)

__all__ = [
    "HNeRV",
    "HNeRVConfig",
    "HNeRVDecoder",
    "LoadReport",
    "QuantVid",
    "bunny_1p5m_config",
    "centre_crop_for",
    "choose_strides",
    "config_for",
    "decoder_param_count",
    "dequantize",
    "load_quant_vid",
    "load_training_checkpoint",
    "unwrap_training_checkpoint",
]


def _prod(xs: Sequence[int]) -> int:
    return int(_fold(lambda a, b: a * b, xs, 1))


# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HNeRVConfig:
    """Hyper-parameters of one HNeRV model (names follow the official ``args``).

    ``out_size`` is the decoded frame size (H, W); it must equal
    ``embed_hw * prod(enc_strides)``. ``ks = (ks_enc, ks_dec1, ks_dec2)`` as the official
    ``--ks 0_1_5``; decoder stage ``i`` uses kernel ``min(ks_dec1 + 2 i, ks_dec2)``.
    ``reduce = -1`` means ``sqrt(stride)`` per stage (official convention).
    """

    out_size: tuple[int, int]
    enc_strides: tuple[int, ...]
    dec_strides: tuple[int, ...]
    fc_dim: int
    enc_dim: int = 64
    embed_dim: int = 16
    reduce: float = 1.2
    lower_width: int = 12
    ks: tuple[int, int, int] = (0, 1, 5)
    enc_blocks: int = 1
    dec_blocks: int = 1
    out_bias: str = "tanh"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_size", (int(self.out_size[0]), int(self.out_size[1])))
        object.__setattr__(self, "enc_strides", tuple(int(s) for s in self.enc_strides))
        object.__setattr__(self, "dec_strides", tuple(int(s) for s in self.dec_strides))
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))
        h, w = self.out_size
        pe, pd = _prod(self.enc_strides), _prod(self.dec_strides)
        problems = []
        if not self.enc_strides or not self.dec_strides:
            problems.append("enc_strides and dec_strides must not be empty")
        if any(s < 1 for s in (*self.enc_strides, *self.dec_strides)):
            problems.append("strides must be >= 1")
        if self.fc_dim < 1 or self.embed_dim < 1 or self.enc_dim < 1 or self.lower_width < 1:
            problems.append("fc_dim, embed_dim, enc_dim and lower_width must be >= 1")
        if len(self.ks) != 3:
            problems.append("ks must be (ks_enc, ks_dec1, ks_dec2)")
        if self.out_bias not in ("tanh", "sigmoid"):
            problems.append(f"out_bias must be 'tanh' or 'sigmoid', got {self.out_bias!r}")
        if not problems:
            if h % pe or w % pe:
                problems.append(
                    f"frame size {h}x{w} is not a multiple of the encoder stride product {pe}"
                )
            elif pe % pd:
                problems.append(
                    f"encoder stride product {pe} is not a multiple of the decoder's {pd}"
                )
            elif (pe // pd) * pd != pe or pe // pd < 1:
                problems.append("encoder/decoder strides do not fit")
        if problems:
            raise ValueError("bad HNeRV configuration: " + "; ".join(problems))

    # --- derived sizes -----------------------------------------------------------------
    @property
    def embed_hw(self) -> tuple[int, int]:
        """Spatial size of one frame embedding (h, w)."""
        pe = _prod(self.enc_strides)
        return self.out_size[0] // pe, self.out_size[1] // pe

    @property
    def embed_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one frame embedding."""
        return (self.embed_dim, *self.embed_hw)

    @property
    def embed_values(self) -> int:
        """Values stored per frame."""
        c, h, w = self.embed_shape
        return c * h * w

    @property
    def fc_hw(self) -> int:
        """Depth-to-space factor after ``decoder[0]`` (official ``fc_h = fc_w``)."""
        return _prod(self.enc_strides) // _prod(self.dec_strides)

    @property
    def dec_kernels(self) -> tuple[int, ...]:
        _, k1, k2 = self.ks
        return tuple(min(k1 + 2 * i, k2) for i in range(len(self.dec_strides)))

    @property
    def dec_widths(self) -> tuple[int, ...]:
        """Output channels of each decoder stage (after PixelShuffle), official rule."""
        widths = []
        ngf = self.fc_dim
        for s in self.dec_strides:
            r = math.sqrt(s) if self.reduce == -1 else self.reduce
            ngf = int(max(round(ngf / r), self.lower_width))
            widths.append(ngf)
        return tuple(widths)

    @property
    def enc_dims(self) -> tuple[int, ...]:
        dims = [self.enc_dim] * len(self.enc_strides)
        dims[-1] = self.embed_dim
        return tuple(dims)

    def decoder_params(self) -> int:
        """Parameters of the decoder-only model (``decoder.*`` + ``head_layer.*``)."""
        return decoder_param_count(self)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_size"] = list(self.out_size)
        d["enc_strides"] = list(self.enc_strides)
        d["dec_strides"] = list(self.dec_strides)
        d["ks"] = list(self.ks)
        if not d["extra"]:
            d.pop("extra")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HNeRVConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for key in ("out_size", "enc_strides", "dec_strides", "ks"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


def decoder_param_count(cfg: HNeRVConfig) -> int:
    """Exact parameter count of ``HNeRVDecoder(cfg)`` without building it."""
    fc = cfg.fc_hw
    n = cfg.embed_dim * cfg.fc_dim * fc * fc + cfg.fc_dim * fc * fc  # decoder[0], 1x1 conv
    ngf = cfg.fc_dim
    for s, k, new in zip(cfg.dec_strides, cfg.dec_kernels, cfg.dec_widths, strict=True):
        for j in range(cfg.dec_blocks):
            st = 1 if j else s
            out = new * st * st
            n += ngf * out * k * k + out
            ngf = new
    n += ngf * 3 * 9 + 3  # head 3x3
    return n


def bunny_1p5m_config() -> HNeRVConfig:
    """The README bunny command (1.5M): 640x1280, strides 5,4,4,2,2, fc_dim 68."""
    return HNeRVConfig(
        out_size=(640, 1280),
        enc_strides=(5, 4, 4, 2, 2),
        dec_strides=(5, 4, 4, 2, 2),
        fc_dim=68,
        enc_dim=64,
        embed_dim=16,
        reduce=1.2,
        lower_width=12,
        ks=(0, 1, 5),
    )


# --------------------------------------------------------------------------------------
# strides and widths from the clip size and a parameter budget
# --------------------------------------------------------------------------------------
_STRIDE_CHOICES = (5, 4, 3, 2)


def _factorisations(p: int, max_len: int, largest: int = 5) -> list[tuple[int, ...]]:
    """Non-increasing tuples of factors in {2..5} whose product is ``p`` (length <= max_len)."""
    if p == 1:
        return [()]
    if max_len == 0:
        return []
    out = []
    for f in _STRIDE_CHOICES:
        if f <= largest and p % f == 0:
            for rest in _factorisations(p // f, max_len - 1, f):
                out.append((f, *rest))
    return out


def choose_strides(
    frame_hw: tuple[int, int], *, max_stages: int = 5, min_embed_side: int = 2
) -> tuple[int, ...]:
    """Stride list (encoder = decoder) for a frame size, following the official setups.

    The stride product ``P`` is the largest number that divides both H and W, leaves an
    embedding grid whose shorter side is at least ``min_embed_side`` cells, and splits into
    at most ``max_stages`` strides from {5, 4, 3, 2}; among the splits of ``P`` the one with
    the most stages is taken (more, gentler upsampling steps), largest stride first. This
    gives the official choices: 640x1280 -> 5,4,4,2,2 (2x4 grid), 960x1920 -> 5,4,4,3,2
    (2x4), and 144x176 -> 2,2,2,2 (9x11).
    """
    h, w = int(frame_hw[0]), int(frame_hw[1])
    if h < 2 or w < 2:
        raise ValueError(f"frame size {h}x{w} is too small for HNeRV")
    g = math.gcd(h, w)
    best: tuple[int, ...] | None = None
    for p in range(g, 1, -1):
        if g % p or min(h, w) // p < min_embed_side:
            continue
        splits = _factorisations(p, max_stages)
        if splits:
            best = max(splits, key=lambda t: (len(t), t))
            break
    if best is None:
        raise ValueError(
            f"frame size {h}x{w} has no common stride (H and W share no factor 2, 3 or 5 "
            "that leaves an embedding of at least 2 cells); crop it to even sizes first"
        )
    return best


def centre_crop_for(
    frame_hw: tuple[int, int], *, max_crop: float = 0.125, max_stages: int = 5
) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the centre crop that gives the smallest embedding grid.

    The official bunny setup crops 720x1280 to 640x1280 so that strides 5,4,4,2,2 leave a
    2x4 embedding (720x1280 itself only allows a 9x16 grid). This searches every crop that
    removes at most ``max_crop`` of each side for the fewest embedding cells under
    :func:`choose_strides`, preferring the larger crop on ties, and centres it as
    torchvision's ``center_crop`` does. 720x1280 -> (40, 0, 640, 1280). Optional: the
    fitting code may as well fit the whole frame (``config_for`` takes any size).
    """
    h, w = int(frame_hw[0]), int(frame_hw[1])
    best: tuple[int, int, int, int] | None = None
    best_key: tuple[int, int] | None = None
    for ch in range(h, max(2, math.ceil(h * (1 - max_crop))) - 1, -1):
        for cw in range(w, max(2, math.ceil(w * (1 - max_crop))) - 1, -1):
            if math.gcd(ch, cw) < 2:
                continue
            try:
                p = _prod(choose_strides((ch, cw), max_stages=max_stages))
            except ValueError:
                continue
            key = ((ch // p) * (cw // p), -(ch * cw))
            if best_key is None or key < best_key:
                best_key = key
                best = (round((h - ch) / 2.0), round((w - cw) / 2.0), ch, cw)
    if best is None:
        raise ValueError(f"no crop of {h}x{w} allows HNeRV strides")
    return best


def config_for(
    frame_hw: tuple[int, int],
    params: float,
    *,
    frames: int | None = None,
    embed_dim: int = 16,
    enc_dim: int = 64,
    reduce: float = 1.2,
    lower_width: int = 12,
    ks: tuple[int, int, int] = (0, 1, 5),
    strides: Sequence[int] | None = None,
    max_stages: int = 5,
) -> HNeRVConfig:
    """An HNeRV configuration for frames of ``frame_hw`` (H, W; already cropped) and a budget.

    Rule (the paper's / official ``train_nerv_all.py`` setup):

    - strides: :func:`choose_strides` (equal encoder and decoder strides, so ``fc_h = fc_w =
      1``); the embedding is ``embed_dim x H/P x W/P``;
    - widths: ``fc_dim`` for the first stage, then divided by ``reduce`` per stage with a
      floor of ``lower_width``; kernels ``min(1 + 2 i, 5)``;
    - budget: with ``frames=None`` ``params`` is the decoder's size (``decoder`` + ``head``,
      what gets stored besides the embeddings); with ``frames`` given it is the official
      ``--modelsize``: decoder + ``frames`` embeddings. ``fc_dim`` is the integer whose exact
      decoder parameter count is closest to that budget (the official code takes the root
      of a quadratic approximation of the same count; both give 68 for bunny).

    Raises ValueError with a one-line reason when the budget cannot be met.
    """
    h, w = int(frame_hw[0]), int(frame_hw[1])
    st = (
        tuple(int(s) for s in strides) if strides else choose_strides((h, w), max_stages=max_stages)
    )
    budget = float(params)
    base = dict(
        out_size=(h, w),
        enc_strides=st,
        dec_strides=st,
        enc_dim=enc_dim,
        embed_dim=embed_dim,
        reduce=reduce,
        lower_width=lower_width,
        ks=ks,
    )
    probe = HNeRVConfig(fc_dim=1, **base)
    if frames is not None:
        budget -= int(frames) * probe.embed_values
        if budget <= 0:
            raise ValueError(
                f"a budget of {params:,.0f} parameters does not even hold the {int(frames)} "
                f"frame embeddings ({int(frames) * probe.embed_values:,} values)"
            )
    if probe.decoder_params() > budget:
        raise ValueError(
            f"a decoder budget of {budget:,.0f} parameters is below the smallest decoder for "
            f"{h}x{w} ({probe.decoder_params():,} parameters)"
        )
    lo, hi = 1, 2
    while HNeRVConfig(fc_dim=hi, **base).decoder_params() < budget:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # largest fc_dim with count < budget is lo (monotone in fc_dim)
        mid = (lo + hi) // 2
        if HNeRVConfig(fc_dim=mid, **base).decoder_params() < budget:
            lo = mid
        else:
            hi = mid
    below = HNeRVConfig(fc_dim=lo, **base)
    above = HNeRVConfig(fc_dim=hi, **base)
    if abs(above.decoder_params() - budget) < abs(budget - below.decoder_params()):
        return above
    return below


# --------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------
class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over dim 1 of N x C x H x W (ConvNeXt ``data_format='channels_first'``)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        x = (x - mu) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    """depthwise 7x7 -> LayerNorm -> Linear(4C) -> GELU -> Linear(C) -> * gamma, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        # registered first so that it leads the block's state dict, as in the official one
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXtEncoder(nn.Module):
    """The HNeRV frame encoder: per stage a patchify conv (kernel = stride) and ConvNeXt blocks."""

    def __init__(self, strides: Sequence[int], dims: Sequence[int], blocks: int = 1) -> None:
        super().__init__()
        self.downsample_layers = nn.ModuleList()
        self.stages = nn.ModuleList()
        prev = 3
        for i, (s, d) in enumerate(zip(strides, dims, strict=True)):
            conv = nn.Conv2d(prev, d, kernel_size=s, stride=s)
            if i == 0:
                self.downsample_layers.append(nn.Sequential(conv, ChannelsFirstLayerNorm(d)))
            else:
                self.downsample_layers.append(nn.Sequential(ChannelsFirstLayerNorm(prev), conv))
            self.stages.append(nn.Sequential(*[ConvNeXtBlock(d) for _ in range(blocks)]))
            prev = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for down, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(down(x))
        return x


class _DownConv(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.downconv = nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downconv(x)


class _UpConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, ks: int) -> None:
        super().__init__()
        conv = nn.Conv2d(c_in, c_out * stride * stride, ks, 1, (ks - 1) // 2)
        shuffle: nn.Module = nn.PixelShuffle(stride) if stride != 1 else nn.Identity()
        self.upconv = nn.Sequential(conv, shuffle)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upconv(x)


class HNeRVBlock(nn.Module):
    """``conv -> (PixelShuffle) -> GELU`` (official ``NeRVBlock`` with norm 'none')."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


def _build_decoder(cfg: HNeRVConfig) -> tuple[nn.ModuleList, nn.Conv2d]:
    fc = cfg.fc_hw
    layers: list[nn.Module] = [HNeRVBlock(_DownConv(cfg.embed_dim, cfg.fc_dim * fc * fc))]
    ngf = cfg.fc_dim
    for s, k, new in zip(cfg.dec_strides, cfg.dec_kernels, cfg.dec_widths, strict=True):
        for j in range(cfg.dec_blocks):
            layers.append(HNeRVBlock(_UpConv(ngf, new, 1 if j else s, k)))
            ngf = new
    return nn.ModuleList(layers), nn.Conv2d(ngf, 3, 3, 1, 1)


def _out_img(x: torch.Tensor, out_bias: str) -> torch.Tensor:
    if out_bias == "sigmoid":
        return torch.sigmoid(x)
    return torch.tanh(x) * 0.5 + 0.5


def _decode(
    decoder: nn.ModuleList, head: nn.Module, fc: int, out_bias: str, emb: torch.Tensor
) -> torch.Tensor:
    x = decoder[0](emb)
    if fc != 1:  # depth-to-space by fc x fc, in the official channel order
        n, _, h, w = x.shape
        x = x.view(n, -1, fc, fc, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, -1, fc * h, fc * w)
    for layer in decoder[1:]:
        x = layer(x)
    return _out_img(head(x), out_bias)


class HNeRV(nn.Module):
    """Full HNeRV: ConvNeXt encoder + decoder + head.

    ``forward(img)`` returns ``(recon, embedding)`` (official ``img_out, embed_list[0]``);
    ``img`` is N x 3 x H x W RGB in [0, 1] with (H, W) = ``config.out_size``.
    """

    def __init__(self, config: HNeRVConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ConvNeXtEncoder(config.enc_strides, config.enc_dims, config.enc_blocks)
        self.decoder, self.head_layer = _build_decoder(config)

    def encode(self, img: torch.Tensor) -> torch.Tensor:
        """Frame embeddings N x embed_dim x h x w."""
        return self.encoder(img)

    def decode(self, embedding: torch.Tensor) -> torch.Tensor:
        """Frames N x 3 x H x W in [0, 1] from embeddings."""
        return _decode(
            self.decoder, self.head_layer, self.config.fc_hw, self.config.out_bias, embedding
        )

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.encode(img)
        return self.decode(emb), emb

    def decoder_model(self) -> HNeRVDecoder:
        """An :class:`HNeRVDecoder` sharing this model's decoder and head modules."""
        return HNeRVDecoder.from_model(self)


class HNeRVDecoder(nn.Module):
    """Decoder-only HNeRV (official ``HNeRVDecoder``): ``forward(embedding) -> frame``.

    State-dict keys ``decoder.*`` and ``head_layer.*`` equal the full model's.
    """

    def __init__(self, config: HNeRVConfig, *, _modules: tuple[nn.Module, nn.Module] | None = None):
        super().__init__()
        self.config = config
        if _modules is None:
            self.decoder, self.head_layer = _build_decoder(config)
        else:
            self.decoder, self.head_layer = _modules  # type: ignore[assignment]

    @classmethod
    def from_model(cls, model: HNeRV) -> HNeRVDecoder:
        """Wrap (not copy) the decoder and head of a full model."""
        return cls(model.config, _modules=(model.decoder, model.head_layer))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return _decode(
            self.decoder, self.head_layer, self.config.fc_hw, self.config.out_bias, embedding
        )


# --------------------------------------------------------------------------------------
# official checkpoints (torch.load(weights_only=True) only)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadReport:
    """What loading a checkpoint left out: keys the model has that the file lacks
    (``missing``) and keys of the file the model does not use (``unexpected``)."""

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.missing and not self.unexpected

    def summary(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing keys: {_listing(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected keys: {_listing(self.unexpected)}")
        return "; ".join(parts) if parts else "all keys matched"


def dequantize(entry: Any, name: str = "tensor") -> torch.Tensor:
    """A float32 tensor from a plain tensor or an official ``{'quant', 'min', 'scale'}`` dict.

    ``value = min + scale * quant`` computed in float32 exactly as the official
    ``efficient_nvloader.dequant_tensor`` does (``min``/``scale`` cast to float32 and
    broadcast against ``quant``); ``min`` and ``scale`` may be scalars, 0-d tensors or tensors
    of any shape that broadcasts to ``quant``'s (per-channel, per-row, ...).
    """
    if isinstance(entry, torch.Tensor):
        if not (entry.dtype.is_floating_point or entry.dtype in (torch.uint8, torch.int8)):
            raise CheckpointError(f"{name}: tensor of dtype {entry.dtype} is not a weight")
        return entry.detach().to(torch.float32)
    if not isinstance(entry, dict):
        raise CheckpointError(
            f"{name}: expected a tensor or a {{quant, min, scale}} dict, got {type(entry).__name__}"
        )
    missing = [k for k in ("quant", "min", "scale") if k not in entry]
    if missing:
        raise CheckpointError(f"{name}: quantised entry lacks {', '.join(missing)}")
    q = entry["quant"]
    if not isinstance(q, torch.Tensor):
        raise CheckpointError(f"{name}: 'quant' is a {type(q).__name__}, not a tensor")

    def as_tensor(v: Any, what: str) -> torch.Tensor:
        if isinstance(v, torch.Tensor):
            return v.detach().to(torch.float32)
        if isinstance(v, (int, float)):
            return torch.tensor(float(v), dtype=torch.float32)
        raise CheckpointError(f"{name}: '{what}' is a {type(v).__name__}, not a number or tensor")

    tmin, scale = as_tensor(entry["min"], "min"), as_tensor(entry["scale"], "scale")
    try:
        tmin = torch.broadcast_to(tmin, q.shape)
        scale = torch.broadcast_to(scale, q.shape)
    except RuntimeError:
        raise CheckpointError(
            f"{name}: min {list(tmin.shape)} / scale {list(scale.shape)} do not broadcast "
            f"against quant {list(q.shape)}"
        ) from None
    return tmin + scale * q.to(torch.float32)


def unwrap_training_checkpoint(ckpt: Any) -> dict[str, torch.Tensor]:
    """The state dict of an official training checkpoint (``train_nerv_all.py``).

    Takes ``ckpt['state_dict']`` (or the dict itself when it already maps names to tensors),
    removes the substring ``blocks.0.`` and a leading ``module.`` (DataParallel) as the
    official loader does. Non-tensor entries raise CheckpointError.
    """
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"checkpoint holds a {type(ckpt).__name__}, expected a dict with 'state_dict'"
        )
    sd = ckpt.get("state_dict", ckpt)
    if not isinstance(sd, dict):
        raise CheckpointError("checkpoint['state_dict'] is not a dict of tensors")
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if not isinstance(key, str):
            raise CheckpointError(f"checkpoint key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            if key in ("epoch", "optimizer"):
                continue
            raise CheckpointError(
                f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor"
            )
        name = key.replace("blocks.0.", "")
        name = name.removeprefix("module.")
        out[name] = value
    return out


def _fit_state_dict(
    model: nn.Module, sd: dict[str, torch.Tensor], strict: bool, what: str
) -> LoadReport:
    """Load ``sd`` into ``model``; raise CheckpointError on shape mismatches and, with
    ``strict``, on missing/unexpected keys. Returns what was left out."""
    expected = model.state_dict()
    report = LoadReport(
        missing=tuple(k for k in expected if k not in sd),
        unexpected=tuple(k for k in sd if k not in expected),
    )
    bad = [
        f"{k} {list(sd[k].shape)} != {list(v.shape)}"
        for k, v in expected.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if bad:
        raise CheckpointError(
            f"checkpoint does not fit {what}: {len(bad)} shape mismatches: {_listing(bad)}"
        )
    if strict and not report.complete:
        raise CheckpointError(f"checkpoint does not fit {what}: {report.summary()}")
    if len(report.missing) == len(expected):
        raise CheckpointError(f"checkpoint does not fit {what}: none of its keys match")
    model.load_state_dict({k: v for k, v in sd.items() if k in expected}, strict=False)
    return report


def _config_label(cfg: HNeRVConfig) -> str:
    h, w = cfg.out_size
    return f"HNeRV {h}x{w} (strides {','.join(map(str, cfg.dec_strides))}, fc_dim {cfg.fc_dim})"


def load_training_checkpoint(
    path: str | Path | dict, config: HNeRVConfig | None = None, *, strict: bool = True
) -> tuple[HNeRV, LoadReport]:
    """A full :class:`HNeRV` from an official training checkpoint (``hnerv-1.5m-e300.pth``).

    ``config`` defaults to :func:`bunny_1p5m_config`. The official loader uses
    ``strict=False``; here ``strict=True`` (default) raises CheckpointError naming missing
    and unexpected keys, ``strict=False`` loads the matching keys and returns them in the
    :class:`LoadReport` (also logged). Shape mismatches always raise.
    """
    cfg = config or bunny_1p5m_config()
    ckpt = path if isinstance(path, dict) else read_checkpoint(path)
    sd = unwrap_training_checkpoint(ckpt)
    model = HNeRV(cfg)
    report = _fit_state_dict(model, sd, strict, _config_label(cfg))
    if not report.complete:
        logger.warning("training checkpoint loaded partially: %s", report.summary())
    return model.eval(), report


@dataclass
class QuantVid:
    """A loaded ``quant_vid.pth``: the decoder with dequantised weights and the embeddings."""

    decoder: HNeRVDecoder
    embeddings: torch.Tensor  # N x C x h x w float32 (dequantised)
    quantised: bool  # True when the file held {quant, min, scale} entries
    path: Path | None = None
    file_bytes: int | None = None
    weight_bits: int = 32  # bits of the largest decoder 'quant' value (32: float weights)
    embed_bits: int = 32  # the same for the embeddings

    @property
    def decoder_params(self) -> int:
        return sum(int(p.numel()) for p in self.decoder.parameters())

    @property
    def embedding_values(self) -> int:
        return int(self.embeddings.numel())

    @property
    def frames(self) -> int:
        return int(self.embeddings.shape[0])


def load_quant_vid(path: str | Path | dict, config: HNeRVConfig | None = None) -> QuantVid:
    """Decoder + per-frame embeddings from an official ``checkpoints/quant_vid.pth``.

    The file is ``{'model': {decoder key: {'quant', 'min', 'scale'} or tensor}, 'embed':
    {'quant', 'min', 'scale'} or tensor [N, C, h, w]}``; every entry is dequantised with
    :func:`dequantize`. Decoder keys must equal ``HNeRVDecoder(config)``'s exactly (``module.``
    and ``blocks.0.`` are removed first, as for training checkpoints); ``config`` defaults to
    :func:`bunny_1p5m_config`. Problems raise CheckpointError with a one-line reason.
    """
    cfg = config or bunny_1p5m_config()
    p = None if isinstance(path, dict) else Path(path)
    obj = path if isinstance(path, dict) else read_checkpoint(path)
    name = p.name if p is not None else "quant_vid"
    if not isinstance(obj, dict) or "model" not in obj or "embed" not in obj:
        keys = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{name} is not a quant_vid file ('model' and 'embed' needed; has {keys})"
        )
    model_entries = obj["model"]
    if not isinstance(model_entries, dict):
        raise CheckpointError(f"{name}: 'model' is not a dict")
    quantised = isinstance(obj["embed"], dict)
    sd: dict[str, torch.Tensor] = {}
    weight_bits = 0
    for key, entry in model_entries.items():
        quantised = quantised or isinstance(entry, dict)
        weight_bits = max(weight_bits, _quant_bits(entry))
        clean = str(key).replace("blocks.0.", "").removeprefix("module.")
        sd[clean] = dequantize(entry, f"{name}: {key}")
    decoder = HNeRVDecoder(cfg)
    _fit_state_dict(decoder, sd, True, "the decoder of " + _config_label(cfg))
    emb = dequantize(obj["embed"], f"{name}: embed")
    want = cfg.embed_shape
    if emb.dim() == 3:
        emb = emb.unsqueeze(0)
    if emb.dim() != 4 or tuple(emb.shape[1:]) != want:
        raise CheckpointError(
            f"{name}: embeddings have shape {list(emb.shape)}, expected [frames, {want[0]}, "
            f"{want[1]}, {want[2]}]"
        )
    if emb.shape[0] < 1:
        raise CheckpointError(f"{name}: no frame embeddings")
    return QuantVid(
        decoder=decoder.eval(),
        embeddings=emb.contiguous(),
        quantised=quantised,
        path=p,
        file_bytes=p.stat().st_size if p is not None else None,
        weight_bits=weight_bits or 32,
        embed_bits=_quant_bits(obj["embed"]),
    )


def _quant_bits(entry: Any) -> int:
    """Bit depth of a quantised entry (bits of its largest integer), 32 for plain tensors."""
    if not isinstance(entry, dict) or not isinstance(entry.get("quant"), torch.Tensor):
        return 32
    q = entry["quant"]
    if q.numel() == 0:
        return 1
    return max(1, int(q.max().item()).bit_length())
