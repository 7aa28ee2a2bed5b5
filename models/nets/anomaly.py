"""Future-frame predictors for video anomaly detection (architectures and checkpoint import).

Two predictors share one interface: input ``N x 3T x H x W`` (``T`` past frames, oldest first,
3 channels each, values ``x/127.5 - 1`` in [-1, 1]), output the predicted next frame
``N x 3 x H x W``, ``tanh``, in [-1, 1]. A frame is anomalous when it is badly predicted:
low PSNR between the prediction and the real frame (Liu et al., "Future Frame Prediction for
Anomaly Detection - A New Baseline", CVPR 2018).

- :class:`PredictionUNet` is the generator of feiyuhuahuo/Anomaly_Prediction
  (``models/unet.py``, ``UNet(input_channels=12, output_channel=3)``): its ``state_dict`` has
  the official names, order and shapes, so the official checkpoints (``ckpt['net_g']``)
  load strictly. BGR frames (cv2), resized to 256x256. Any H, W run (the up blocks pad).
- :class:`TemporalAttentionPredictor` is a small CT-D2GAN-style predictor (Feng et al.,
  "Convolutional Transformer based Dual Discriminator GAN for Video Anomaly Detection",
  ACM MM 2021, without the GAN): a convolutional encoder shared over the ``T`` past frames,
  multi-head self-attention across the ``T`` frame embeddings at every spatial position of
  the 1/8 map (with a learned temporal position embedding), and a convolutional decoder with
  skip connections from the last frame's encoder features (and their change since the
  frame before). Its output is ``tanh(atanh(warp(last frame, flow)) + residual)`` with the
  flow/residual head initialised to zero, so an untrained model copies the last frame and
  training only has to learn the change. H and W must be multiples of 8. Trained by
  :mod:`loupe_models.fitters.anomaly`.

The scores, the card and the ONNX export are in :mod:`loupe_models.exporters.anomaly`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PredictionUNet",
    "TemporalAttentionPredictor",
    "anomaly_unet",
    "load_anomaly_unet_checkpoint",
    "unwrap_anomaly_unet",
]

class _DoubleConv(nn.Module):
    """(conv3x3 no bias -> BN -> ReLU) x 2; the official ``double_conv`` (key ``conv.*``)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _InBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = _DoubleConv(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _DownBlock(nn.Module):
    """2x2 max-pool then a double conv (keys ``mpconv.1.conv.*``)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.mpconv = nn.Sequential(nn.MaxPool2d(2), _DoubleConv(in_ch, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mpconv(x)


class _UpBlock(nn.Module):
    """ConvTranspose2d(k=2, s=2) halving the channels, zero-pad (centred) to the skip size,
    concatenate ``[skip, upsampled]``, double conv."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, in_ch // 2, 2, stride=2)
        self.conv = _DoubleConv(in_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dy = skip.size(2) - x.size(2)
        dx = skip.size(3) - x.size(3)
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class PredictionUNet(nn.Module):
    """The future-frame generator of Liu et al. 2018 as in feiyuhuahuo/Anomaly_Prediction.

    ``input_channels`` = 3 x past frames (12 for the official 4), oldest first, BGR,
    ``x/127.5 - 1``; returns the predicted next frame ``tanh`` in [-1, 1] (BGR).
    Widths 64-128-256-512, three max-pool downsamplings, three transposed-conv upsamplings.
    """

    def __init__(self, input_channels: int = 12, output_channel: int = 3) -> None:
        super().__init__()
        if input_channels < 1 or output_channel < 1:
            raise ValueError("input_channels and output_channel must be >= 1")
        self.input_channels = int(input_channels)
        self.inc = _InBlock(input_channels, 64)
        self.down1 = _DownBlock(64, 128)
        self.down2 = _DownBlock(128, 256)
        self.down3 = _DownBlock(256, 512)
        self.up1 = _UpBlock(512, 256)
        self.up2 = _UpBlock(256, 128)
        self.up3 = _UpBlock(128, 64)
        self.outc = nn.Conv2d(64, output_channel, kernel_size=3, padding=1)

    @property
    def past_frames(self) -> int:
        return self.input_channels // 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        y = self.up1(x4, x3)
        y = self.up2(y, x2)
        y = self.up3(y, x1)
        return torch.tanh(self.outc(y))


def anomaly_unet(input_channels: int = 12, output_channel: int = 3) -> PredictionUNet:
    """The official configuration ``UNet(input_channels=12, output_channel=3)``."""
    return PredictionUNet(input_channels, output_channel)


def unwrap_anomaly_unet(ckpt: object) -> dict[str, torch.Tensor]:
    """The generator state dict of an official Anomaly_Prediction checkpoint object:
    ``ckpt['net_g']`` (train.py; the file also holds ``net_d`` and optimizer states), an
    older ``ckpt['net']``, or the state dict itself. Checked against the official layout;
    raises ``CheckpointError`` naming missing / unexpected / mis-shaped keys."""
    from loupe_models.checkpoint import CheckpointError

    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"checkpoint holds a {type(ckpt).__name__}, expected a dict")
    for key in ("net_g", "net"):
        if key in ckpt and isinstance(ckpt[key], Mapping):
            ckpt = ckpt[key]
            break
    sd = {str(k): v for k, v in ckpt.items() if isinstance(v, torch.Tensor)}
    want = anomaly_unet().state_dict()
    missing = [k for k in want if k not in sd]
    extra = [k for k in sd if k not in want]
    shape = [k for k in want if k in sd and tuple(sd[k].shape) != tuple(want[k].shape)]
    if missing or extra or shape:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys ({', '.join(missing[:5])})")
        if extra:
            parts.append(f"unexpected {len(extra)} keys ({', '.join(extra[:5])})")
        if shape:
            parts.append(f"{len(shape)} keys of another shape ({', '.join(shape[:5])})")
        raise CheckpointError("not an Anomaly_Prediction UNet(12, 3) generator: " + "; ".join(parts))
    return {k: sd[k] for k in want}


def load_anomaly_unet_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official ``.pth`` (``torch.load(weights_only=True)``) and return the
    generator's state dict, ready for ``anomaly_unet().load_state_dict(sd, strict=True)``."""
    from loupe_models.checkpoint import read_checkpoint

    return unwrap_anomaly_unet(read_checkpoint(path))


class _ConvAct(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1),
            nn.LeakyReLU(0.1, inplace=True),
        )


class _TemporalSelfAttention(nn.Module):
    """Pre-norm transformer block over the time axis of ``[B, T, D]`` token sequences:
    ``x + MHA(LN(x))`` then ``x + MLP(LN(x))``. Written with plain Linear/matmul/softmax so
    the legacy ONNX exporter sees ordinary ops (no fused attention kernels)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = max(1, round(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, T, head_dim]
        att = torch.softmax((q @ k.transpose(-2, -1)) * (self.head_dim**-0.5), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.mlp(self.norm2(x))


def _warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``img`` [N, C, H, W] by ``flow`` [N, 2, H, W] (x, y, in pixels):
    ``out(p) = img(p + flow(p))``, bilinear, border padding. The pixel grid is built with
    ``cumsum`` of ones so H and W stay dynamic in the ONNX graph."""
    ones = torch.ones_like(flow[:, :1])  # [N, 1, H, W]
    xs = torch.cumsum(ones, dim=3) - 0.5  # pixel centres 0.5 .. W-0.5
    ys = torch.cumsum(ones, dim=2) - 0.5
    w = xs[:, :, :, -1:] + 0.5
    h = ys[:, :, -1:, :] + 0.5
    gx = (xs + flow[:, :1]) * (2.0 / w) - 1.0  # align_corners=False normalisation
    gy = (ys + flow[:, 1:2]) * (2.0 / h) - 1.0
    grid = torch.cat([gx, gy], dim=1).permute(0, 2, 3, 1)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)


class TemporalAttentionPredictor(nn.Module):
    """Small CT-D2GAN-style next-frame predictor (no GAN).

    Input ``N x 3T x H x W`` (T past frames, oldest first, [-1, 1]); output ``N x 3 x H x W``
    in [-1, 1]. H, W multiples of 8.

    - encoder (shared over the T frames): conv3x3 at 1/1 (``width``), two convs at 1/2
      (``2*width``), 1/4 (``4*width``) and 1/8 (``embed_dim``, default ``4*width``), each
      stage starting with a stride-2 conv; LeakyReLU(0.1).
    - temporal attention: at every 1/8 position the T embeddings plus a learned temporal
      position embedding pass ``depth`` pre-norm transformer blocks (``heads`` heads)
      attending across time; a 1x1 conv fuses the T outputs into one map.
    - decoder: bilinear x2 upsampling, concatenation with the skip features of that scale,
      two convs; at 1/1 a 3x3 conv gives the head output. Skips: the last frame's encoder
      features, and with ``motion_skips`` also their change since the frame before
      (``f[T-1] - f[T-2]``), a local motion cue at every scale.
    - output, ``residual=True``: ``tanh(atanh(clamp(base, +-(1 - 1e-3))) + r)`` with ``r``
      the 3 residual channels of the head and ``base`` the last frame, or with ``flow``
      the last frame backward-warped (bilinear, border) by the 2 flow channels of the head
      (pixels). The head starts at zero, so the untrained model returns the last frame
      (the copy baseline) and training learns the change. ``residual=False``: ``tanh`` of
      the head output.

    Defaults are those of :mod:`loupe_models.fitters.anomaly` (width 8, 2 heads, flow and
    motion skips: about 0.1 M parameters).
    """

    LAST_CLAMP = 1.0 - 1e-3

    def __init__(
        self,
        past_frames: int = 4,
        width: int = 8,
        embed_dim: int | None = None,
        heads: int = 2,
        depth: int = 1,
        residual: bool = True,
        flow: bool = True,
        motion_skips: bool = True,
    ) -> None:
        super().__init__()
        if past_frames < 1:
            raise ValueError(f"past_frames must be >= 1, got {past_frames}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        c = int(width)
        d = int(embed_dim) if embed_dim is not None else 4 * c
        self.past = int(past_frames)
        self.width = c
        self.embed_dim = d
        self.residual = bool(residual)
        self.config = {
            "past_frames": self.past, "width": c, "embed_dim": d, "heads": int(heads),
            "depth": int(depth), "residual": self.residual, "flow": bool(flow),
            "motion_skips": bool(motion_skips),
        }  # fmt: skip
        self.motion_skips = bool(motion_skips) and self.past > 1
        k = 2 if self.motion_skips else 1
        self.flow = bool(flow) and self.residual
        # encoder (shared over frames)
        self.enc0 = _ConvAct(3, c)
        self.enc1 = nn.Sequential(_ConvAct(c, 2 * c, 2), _ConvAct(2 * c, 2 * c))
        self.enc2 = nn.Sequential(_ConvAct(2 * c, 4 * c, 2), _ConvAct(4 * c, 4 * c))
        self.enc3 = nn.Sequential(_ConvAct(4 * c, d, 2), _ConvAct(d, d))
        # temporal attention
        self.time_embed = nn.Parameter(torch.zeros(1, self.past, d))
        nn.init.trunc_normal_(self.time_embed, std=0.02)
        self.blocks = nn.ModuleList(_TemporalSelfAttention(d, heads) for _ in range(depth))
        self.fuse = nn.Sequential(nn.Conv2d(self.past * d, d, 1), nn.LeakyReLU(0.1, inplace=True))
        # decoder
        self.dec2 = nn.Sequential(_ConvAct(d + k * 4 * c, 4 * c), _ConvAct(4 * c, 4 * c))
        self.dec1 = nn.Sequential(_ConvAct(4 * c + k * 2 * c, 2 * c), _ConvAct(2 * c, 2 * c))
        self.dec0 = nn.Sequential(_ConvAct(2 * c + k * c, c), _ConvAct(c, c))
        self.head = nn.Conv2d(c, 5 if self.flow else 3, 3, padding=1)
        if self.residual:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    @property
    def past_frames(self) -> int:
        return self.past

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, ch, h, w = x.shape
        t = self.past
        if ch != 3 * t:
            raise ValueError(f"expected {3 * t} input channels ({t} frames), got {ch}")
        frames = x.reshape(n * t, 3, h, w)
        f0 = self.enc0(frames)
        f1 = self.enc1(f0)
        f2 = self.enc2(f1)
        f3 = self.enc3(f2)  # [N*T, D, h8, w8]
        d, h8, w8 = f3.shape[1], f3.shape[2], f3.shape[3]
        tokens = f3.reshape(n, t, d, h8 * w8).permute(0, 3, 1, 2).reshape(-1, t, d)
        tokens = tokens + self.time_embed
        for block in self.blocks:
            tokens = block(tokens)
        z = tokens.reshape(n, h8 * w8, t * d).permute(0, 2, 1).reshape(n, t * d, h8, w8)
        z = self.fuse(z)

        def last(f: torch.Tensor) -> torch.Tensor:  # the newest frame's features
            f = f.reshape(n, t, f.shape[1], f.shape[2], f.shape[3])
            if self.motion_skips:  # and how they changed since the frame before
                return torch.cat([f[:, -1], f[:, -1] - f[:, -2]], dim=1)
            return f[:, -1]

        y = F.interpolate(z, size=f2.shape[-2:], mode="bilinear", align_corners=False)
        y = self.dec2(torch.cat([y, last(f2)], dim=1))
        y = F.interpolate(y, size=f1.shape[-2:], mode="bilinear", align_corners=False)
        y = self.dec1(torch.cat([y, last(f1)], dim=1))
        y = F.interpolate(y, size=f0.shape[-2:], mode="bilinear", align_corners=False)
        y = self.dec0(torch.cat([y, last(f0)], dim=1))
        r = self.head(y)
        if not self.residual:
            return torch.tanh(r)
        base = x[:, 3 * (t - 1) :]
        if self.flow:
            base = _warp(base, r[:, 3:5])
            r = r[:, :3]
        base = base.clamp(-self.LAST_CLAMP, self.LAST_CLAMP)
        # atanh written out: the legacy ONNX exporter has no symbolic for aten::atanh
        return torch.tanh(0.5 * torch.log((1.0 + base) / (1.0 - base)) + r)
