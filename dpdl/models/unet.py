"""A small U-Net that maps a noisy image and its noise level to an image-sized prediction (lab 8, diffusion).

A diffusion or flow-matching model needs a network whose output has the shape of its input (the noise,
or the velocity, at every pixel) and that knows how noisy its input is. A U-Net gives the first: it
downsamples to see the whole digit, upsamples back, and concatenates the fine features it skipped over.
A time embedding gives the second: each block adds a learned function of ``t`` to its feature maps.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dpdl.models.cnn import check_images

__all__ = ["SmallUNet", "time_embedding"]


def time_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of times ``t`` in [0, 1], shape ``(B,)`` -> ``(B, dim)``, as Transformer positions.

    ``t`` is scaled by 1000 so that the fastest frequency tells apart two times 1/1000 apart (the
    steps of a 1000-step DDPM) and the slowest varies smoothly over the whole range.
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"time_embedding needs an even dim >= 2; got {dim}")
    half = dim // 2
    frequencies = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000.0 * t.float()[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class SmallUNet(nn.Module):
    """``(x_t (B, C, H, W), t (B,)) -> (B, C, H, W)``: a U-Net with one residual block per level.

    ``channels=(16, 32, 32)`` means three levels: H x W with 16 channels, H/2 with 32, H/4 with 32 (for
    28x28 digits: 28, 14, 7). Going down, a stride-2 convolution halves the side; going up, nearest
    upsampling doubles it and the block at each level also reads the features saved on the way down
    (the skip connections, concatenated), so fine detail need not squeeze through the 7x7 bottleneck.
    Every block adds a per-channel shift computed from ``time_embedding(t)``: the same weights denoise
    a nearly clean image and pure noise differently. GroupNorm (not BatchNorm) keeps a sample's output
    independent of the other images in its batch, which a sampler needs. The last convolution starts
    at zero, so an untrained model predicts 0 everywhere. ``image_size`` must be divisible by
    ``2 ** (len(channels) - 1)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: tuple[int, ...] = (16, 32, 32),
        image_size: int = 28,
        time_dim: int = 64,
    ) -> None:
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"SmallUNet: in_channels must be a positive int; got {in_channels!r}")
        channels = tuple(channels)
        if len(channels) < 2 or not all(isinstance(c, int) and c >= 4 and c % 4 == 0 for c in channels):
            raise ValueError(
                f"SmallUNet: channels must list at least two levels, each a multiple of 4 (GroupNorm uses "
                f"4 groups); got {channels!r}"
            )
        factor = 2 ** (len(channels) - 1)
        if not isinstance(image_size, int) or image_size < factor or image_size % factor:
            raise ValueError(
                f"SmallUNet: with {len(channels)} levels the image side is halved {len(channels) - 1} times, so "
                f"image_size must be a multiple of {factor}; got {image_size!r} — pad or resize the images, "
                "or use fewer levels"
            )
        if time_dim < 2 or time_dim % 2:
            raise ValueError(f"SmallUNet: time_dim must be an even int >= 2; got {time_dim!r}")
        self.in_channels, self.channels, self.image_size, self.time_dim = in_channels, channels, image_size, time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        for level, width in enumerate(channels):
            previous = channels[max(level - 1, 0)]
            self.down_blocks.append(_ResBlock(previous, width, time_dim))
            if level < len(channels) - 1:
                self.downsamples.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        self.middle = _ResBlock(channels[-1], channels[-1], time_dim)
        self.up_blocks = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        for level in reversed(range(len(channels))):
            incoming = channels[-1] if level == len(channels) - 1 else channels[level + 1]
            if level < len(channels) - 1:
                self.upsamples.append(nn.Conv2d(incoming, incoming, 3, padding=1))
            self.up_blocks.append(_ResBlock(incoming + channels[level], channels[level], time_dim))
        self.head = nn.Sequential(
            nn.GroupNorm(4, channels[0]), nn.SiLU(), nn.Conv2d(channels[0], in_channels, 3, padding=1)
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Noisy images ``(B, C, H, W)`` and times ``(B,)`` in [0, 1] (or one number for all) -> ``(B, C, H, W)``."""
        check_images("SmallUNet", x, self.in_channels, (self.image_size, self.image_size))
        t = _check_times(t, len(x), x.device)
        emb = self.time_mlp(time_embedding(t, self.time_dim))
        h = self.stem(x)
        skips = []
        for level, block in enumerate(self.down_blocks):
            h = block(h, emb)
            skips.append(h)
            if level < len(self.downsamples):
                h = self.downsamples[level](h)
        h = self.middle(h, emb)
        for index, block in enumerate(self.up_blocks):
            if index > 0:
                h = self.upsamples[index - 1](F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.head(h)


class _ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, plus the time's shift, -> GroupNorm -> SiLU -> conv, added to the input."""

    def __init__(self, in_channels: int, out_channels: int, time_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(4, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(time_dim, out_channels)
        self.norm2 = nn.GroupNorm(4, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


def _check_times(t: Tensor | float, batch_size: int, device: torch.device) -> Tensor:
    if not isinstance(t, Tensor):
        t = torch.tensor(float(t))
    if t.dim() == 0:
        t = t.expand(batch_size)
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.shape != (batch_size,):
        raise ValueError(
            f"SmallUNet expects one time per image, shape ({batch_size},) or a single number; got shape "
            f"{tuple(t.shape)} — pass t as a (B,) tensor of values in [0, 1]"
        )
    if not t.is_floating_point():
        raise ValueError(
            f"SmallUNet expects times in [0, 1] as floats; got dtype {t.dtype} — for DDPM step indices "
            "pass t_index / num_steps"
        )
    return t.to(device)
