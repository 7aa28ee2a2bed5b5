"""VQ-VAE-2 (Razavi et al. 2019), laid out as rosinality/vq-vae-2-pytorch ``VQVAE()``.

Two levels of vector quantisation: a bottom encoder (stride 4) feeds a top encoder
(stride 2 more, 8 in all); the top latent is quantised with codebook ``quantize_t``, decoded
back to stride 4 and concatenated with the bottom features, which are projected and
quantised with ``quantize_b``. The decoder takes the upsampled top codes and the bottom codes.

Codebooks are EMA codebooks stored as buffers, transposed against ``nn.Embedding``:
``embed`` [dim, n_embed], ``cluster_size`` [n_embed], ``embed_avg`` [dim, n_embed]; only
``embed`` is read at inference. The state dict equals the official layout
(``tests/data/reference/vqvae2_ffhq.json``: 64 entries, 1,388,867 parameters) so the
official FFHQ checkpoint ``vqvae_560.pt`` (a plain state dict) loads strictly with
:func:`load_vqvae2_checkpoint` (``torch.load(weights_only=True)``).

Input: RGB, ``x/255`` then normalised with mean/std 0.5 to [-1, 1]; H and W multiples of 8.
Output: reconstruction in the same [-1, 1] space (no output activation).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from loupe_models.checkpoint import CheckpointError, read_checkpoint, state_dict_problems

logger = logging.getLogger(__name__)

__all__ = ["VQVAE", "Quantize", "load_vqvae2_checkpoint", "vqvae2_ffhq"]


class Quantize(nn.Module):
    """Nearest-neighbour vector quantiser with an EMA (k-means style) codebook.

    ``forward(z)`` takes channels-last latents ``[..., dim]`` and returns
    ``(quantised with a straight-through gradient, commitment loss, code indices)``; the
    loss is the mean squared distance between the latents and their (detached) codes.
    In training mode the codebook follows the assigned latents by exponential moving
    averages with Laplace smoothing of the cluster sizes.
    """

    def __init__(self, dim: int, n_embed: int, decay: float = 0.99, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim = int(dim)
        self.n_embed = int(n_embed)
        self.decay = float(decay)
        self.eps = float(eps)
        embed = torch.randn(self.dim, self.n_embed)
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.zeros(self.n_embed))
        self.register_buffer("embed_avg", embed.clone())

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared Euclidean distance) for each ``[..., dim]``."""
        flat = z.reshape(-1, self.dim)
        dist = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ self.embed
            + self.embed.pow(2).sum(0, keepdim=True)
        )
        return (-dist).argmax(1).view(*z.shape[:-1])

    def embed_code(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[..., dim]`` for integer indices ``ids``."""
        return F.embedding(ids, self.embed.transpose(0, 1))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = self.codes(z)
        quant = self.embed_code(ids)
        if self.training:
            self._ema_update(z.detach().reshape(-1, self.dim), ids.reshape(-1))
        diff = (quant.detach() - z).pow(2).mean()
        quant = z + (quant - z).detach()
        return quant, diff, ids

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, ids: torch.Tensor) -> None:
        onehot = F.one_hot(ids, self.n_embed).type(flat.dtype)
        count = onehot.sum(0)
        summed = flat.transpose(0, 1) @ onehot  # [dim, n_embed]
        self.cluster_size.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(summed, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.n_embed * self.eps) * n
        self.embed.copy_(self.embed_avg / smoothed.unsqueeze(0))


class ResBlock(nn.Module):
    """``x + conv1x1(relu(conv3x3(relu(x))))`` (``conv`` indices 1 and 3 hold weights)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class Encoder(nn.Module):
    """Strided 4x4 convolutions (stride 4 or 2 in all), a 3x3 conv, residual blocks, ReLU."""

    def __init__(self, in_ch: int, ch: int, n_res: int, res_ch: int, stride: int) -> None:
        super().__init__()
        if stride == 4:
            layers: list[nn.Module] = [
                nn.Conv2d(in_ch, ch // 2, 4, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(ch // 2, ch, 4, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(ch, ch, 3, padding=1),
            ]
        elif stride == 2:
            layers = [
                nn.Conv2d(in_ch, ch // 2, 4, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(ch // 2, ch, 3, padding=1),
            ]
        else:
            raise ValueError(f"encoder stride must be 2 or 4, got {stride}")
        layers += [ResBlock(ch, res_ch) for _ in range(n_res)]
        layers.append(nn.ReLU())
        self.blocks = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class Decoder(nn.Module):
    """A 3x3 conv, residual blocks, ReLU, then 4x4 transposed convolutions (stride 2 or 4)."""

    def __init__(
        self, in_ch: int, out_ch: int, ch: int, n_res: int, res_ch: int, stride: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ch, 3, padding=1)]
        layers += [ResBlock(ch, res_ch) for _ in range(n_res)]
        layers.append(nn.ReLU())
        if stride == 4:
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, stride=2, padding=1),
                nn.ReLU(),
                nn.ConvTranspose2d(ch // 2, out_ch, 4, stride=2, padding=1),
            ]
        elif stride == 2:
            layers.append(nn.ConvTranspose2d(ch, out_ch, 4, stride=2, padding=1))
        else:
            raise ValueError(f"decoder stride must be 2 or 4, got {stride}")
        self.blocks = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class VQVAE(nn.Module):
    """Two-level VQ-VAE-2; defaults are the official ``VQVAE()`` (FFHQ checkpoint).

    ``forward(x) -> (recon, latent_loss)``; ``encode(x) -> (quant_t, quant_b, diff, id_t,
    id_b)``; ``decode(quant_t, quant_b)``; ``decode_code(id_t, id_b)``.
    """

    #: input pixels per code position of each level
    STRIDES: ClassVar[dict[str, int]] = {"top": 8, "bottom": 4}

    def __init__(
        self,
        in_channel: int = 3,
        channel: int = 128,
        n_res_block: int = 2,
        n_res_channel: int = 32,
        embed_dim: int = 64,
        n_embed: int = 512,
        decay: float = 0.99,
    ) -> None:
        super().__init__()
        self.n_embed = int(n_embed)
        self.enc_b = Encoder(in_channel, channel, n_res_block, n_res_channel, stride=4)
        self.enc_t = Encoder(channel, channel, n_res_block, n_res_channel, stride=2)
        self.quantize_conv_t = nn.Conv2d(channel, embed_dim, 1)
        self.quantize_t = Quantize(embed_dim, n_embed, decay)
        self.dec_t = Decoder(embed_dim, embed_dim, channel, n_res_block, n_res_channel, stride=2)
        self.quantize_conv_b = nn.Conv2d(embed_dim + channel, embed_dim, 1)
        self.quantize_b = Quantize(embed_dim, n_embed, decay)
        self.upsample_t = nn.ConvTranspose2d(embed_dim, embed_dim, 4, stride=2, padding=1)
        self.dec = Decoder(
            embed_dim + embed_dim, in_channel, channel, n_res_block, n_res_channel, stride=4
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        quant_t, quant_b, diff, _, _ = self.encode(x)
        return self.decode(quant_t, quant_b), diff

    def encode(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        enc_b = self.enc_b(x)
        enc_t = self.enc_t(enc_b)
        zt = self.quantize_conv_t(enc_t).permute(0, 2, 3, 1)
        quant_t, diff_t, id_t = self.quantize_t(zt)
        quant_t = quant_t.permute(0, 3, 1, 2)
        dec_t = self.dec_t(quant_t)
        zb = self.quantize_conv_b(torch.cat([dec_t, enc_b], 1)).permute(0, 2, 3, 1)
        quant_b, diff_b, id_b = self.quantize_b(zb)
        quant_b = quant_b.permute(0, 3, 1, 2)
        return quant_t, quant_b, diff_t.unsqueeze(0) + diff_b.unsqueeze(0), id_t, id_b

    def decode(self, quant_t: torch.Tensor, quant_b: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.cat([self.upsample_t(quant_t), quant_b], 1))

    def decode_code(self, code_t: torch.Tensor, code_b: torch.Tensor) -> torch.Tensor:
        quant_t = self.quantize_t.embed_code(code_t).permute(0, 3, 1, 2)
        quant_b = self.quantize_b.embed_code(code_b).permute(0, 3, 1, 2)
        return self.decode(quant_t, quant_b)


def vqvae2_ffhq() -> VQVAE:
    """The official ``VQVAE()`` configuration (FFHQ 256x256 checkpoint ``vqvae_560.pt``)."""
    return VQVAE()


def load_vqvae2_checkpoint(path: str | Path, model: VQVAE | None = None) -> dict[str, torch.Tensor]:
    """Read an official VQ-VAE-2 checkpoint (the file is the state dict itself, no prefix)
    with ``torch.load(weights_only=True)`` and return a state dict that loads strictly into
    ``model`` (default :func:`vqvae2_ffhq`). A ``module.`` prefix (a DataParallel save) is
    removed. Raises CheckpointError naming missing/unexpected keys or shape mismatches."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint holds a {type(ckpt).__name__}, expected a dict of tensors")
    out: dict[str, torch.Tensor] = {}
    for key, value in ckpt.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"checkpoint entry {key!r} is not a named tensor")
        out[key.removeprefix("module.")] = value
    expected = (model or vqvae2_ffhq()).state_dict()
    problems = state_dict_problems(out, {k: tuple(v.shape) for k, v in expected.items()})
    if problems:
        raise CheckpointError("checkpoint does not fit VQ-VAE-2 (VQVAE()): " + "; ".join(problems))
    logger.info("loaded %d VQ-VAE-2 entries from %s", len(out), Path(path).name)
    return {k: out[k].float() for k in expected}
