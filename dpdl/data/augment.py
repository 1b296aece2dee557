"""Random augmentations of whole batches of images, each image drawn its own way (lab 6, self-supervision).

Self-supervised methods such as Barlow Twins learn what two random views of one image have in common,
so they augment every batch twice, every step. torchvision's transforms draw one set of random
parameters per call, i.e. per image when a ``DataLoader`` applies them one by one (slow on a CPU for
small images) or one for the whole batch when called on a batch. These functions take a float batch
``(B, C, H, W)`` and draw parameters per image, in a handful of tensor operations: geometric changes
are one ``affine_grid`` + ``grid_sample`` (bilinear), the others are masks and noise.

Every function takes ``generator`` (a ``torch.Generator`` on the CPU, or ``None`` for torch's global
one, so ``seed_everything`` makes runs repeatable); parameters are drawn on the CPU and moved to the
batch's device, so the same seed gives the same augmentation on a CPU and a GPU. Apply them to images
in ``[0, 1]`` before any normalisation: pixels moved in from outside the image are 0 (black), as is
MNIST's background.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "affine",
    "random_affine",
    "random_resized_crop",
    "gaussian_noise",
    "random_erasing",
    "compose",
]

Range = float | tuple[float, float]


def affine(X: Tensor, angle: Tensor, translate: Tensor, scale: Tensor) -> Tensor:
    """Rotate, scale and shift each image of ``X`` by its own amounts (no randomness: the tool for the rest).

    ``X`` is ``(B, C, H, W)`` float. ``angle`` ``(B,)`` in degrees, counter-clockwise as the image is
    displayed (row 0 at the top); ``translate`` ``(B, 2)`` as fractions of the width and height, positive
    to the right and down; ``scale`` ``(B,)``, above 1 to enlarge. The content is scaled and rotated about
    the image's centre, then shifted. Output pixels that come from outside the image are 0. Returns
    ``(B, C, H, W)``; with ``angle=0``, ``translate=0``, ``scale=1`` every pixel comes back exactly.
    """
    _check_images("affine", X)
    B = len(X)
    angle, translate, scale = (
        _per_image(name, t, B, shape, X)
        for name, t, shape in (("angle", angle, (B,)), ("translate", translate, (B, 2)), ("scale", scale, (B,)))
    )
    if bool((scale <= 0).any()):
        raise ValueError(f"affine: scale must be positive; got a minimum of {scale.min().item():.3g}")
    radians = torch.deg2rad(angle)
    cos, sin = torch.cos(radians), torch.sin(radians)
    # affine_grid maps each output position p (normalised to [-1, 1], x right, y down) to the input
    # position it reads: the inverse of "scale by s, rotate by a, shift by t", i.e. R(a)^T (p - t) / s.
    # Counter-clockwise as displayed is clockwise in (x right, y down) coordinates, so R(a) has +sin
    # above the diagonal there.
    inverse = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2) / scale[:, None, None]
    shift = 2 * translate  # a fraction f of the width is 2f in normalised coordinates
    theta = torch.cat([inverse, -(inverse @ shift[:, :, None])], dim=2)  # (B, 2, 3)
    return _resample(X, theta)


def random_affine(
    X: Tensor,
    degrees: float = 15.0,
    translate: float = 0.1,
    scale: Range = (0.9, 1.1),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Each image rotated by a uniform angle in ``[-degrees, degrees]``, shifted by up to ``translate`` of
    its width and height (uniform, each axis apart) and scaled by a uniform factor in ``scale``.

    ``X`` ``(B, C, H, W)`` float -> ``(B, C, H, W)``. For digits, ``degrees`` of 10-20 and shifts of
    10 % keep every digit readable; a 6 rotated by 180 degrees is a 9, so large angles teach the wrong
    invariance.
    """
    _check_images("random_affine", X)
    _check_nonnegative("random_affine", degrees=degrees, translate=translate)
    low, high = _range("random_affine", "scale", scale, minimum=0.0, open_minimum=True)
    B = len(X)
    angle = _uniform(B, -degrees, degrees, generator)
    shift = _uniform((B, 2), -translate, translate, generator)
    factor = _uniform(B, low, high, generator)
    return affine(X, angle.to(X.device), shift.to(X.device), factor.to(X.device))


def random_resized_crop(
    X: Tensor,
    scale: Range = (0.5, 1.0),
    ratio: Range = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Each image cropped to a random box and resized back to ``(H, W)``: the main augmentation of SimCLR
    and Barlow Twins.

    The box covers a uniform fraction ``scale`` of the image's area, has a width/height ratio drawn
    log-uniformly from ``ratio``, and lies inside the image (its sides are clipped to the image's when
    the ratio asks for more). Resizing is bilinear, reading only pixels of the box. ``X`` ``(B, C, H, W)`` float -> ``(B, C, H, W)``.
    """
    _check_images("random_resized_crop", X)
    area_low, area_high = _range("random_resized_crop", "scale", scale, minimum=0.0, open_minimum=True)
    if area_high > 1:
        raise ValueError(f"random_resized_crop: scale is a fraction of the image's area, at most 1; got {scale!r}")
    ratio_low, ratio_high = _range("random_resized_crop", "ratio", ratio, minimum=0.0, open_minimum=True)
    B = len(X)
    area = _uniform(B, area_low, area_high, generator)
    log_ratio = _uniform(B, math.log(ratio_low), math.log(ratio_high), generator)
    width = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)  # fractions of the image's width
    height = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    # the box's centre, in normalised coordinates, so that the box stays inside [-1, 1]
    centre = (2 * torch.rand(B, 2, generator=generator) - 1) * (1 - torch.stack([width, height], 1))
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = width, height
    theta[:, :, 2] = centre
    return _resample(X, theta.to(device=X.device, dtype=X.dtype), padding_mode="border")


def gaussian_noise(X: Tensor, std: float = 0.1, generator: torch.Generator | None = None) -> Tensor:
    """``X`` plus independent normal noise of standard deviation ``std`` on every pixel (not clipped).

    ``X`` ``(B, C, H, W)`` (any shape works) float -> same shape.
    """
    _check_float("gaussian_noise", X)
    _check_nonnegative("gaussian_noise", std=std)
    noise = torch.randn(X.shape, generator=generator)
    return X + std * noise.to(device=X.device, dtype=X.dtype)


def random_erasing(
    X: Tensor,
    p: float = 0.5,
    scale: Range = (0.02, 0.2),
    ratio: Range = (0.3, 3.3),
    value: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """With probability ``p``, each image gets one random rectangle set to ``value`` (Zhong et al., 2020).

    The rectangle covers a uniform fraction ``scale`` of the area, with a width/height ratio drawn
    log-uniformly from ``ratio`` (sides clipped to the image's), at a uniform position inside the image.
    ``X`` ``(B, C, H, W)`` float -> a new ``(B, C, H, W)`` tensor; the rectangle covers every channel.
    """
    _check_images("random_erasing", X)
    if not 0 <= p <= 1:
        raise ValueError(f"random_erasing: p is a probability, in [0, 1]; got {p!r}")
    area_low, area_high = _range("random_erasing", "scale", scale, minimum=0.0)
    if area_high > 1:
        raise ValueError(f"random_erasing: scale is a fraction of the image's area, at most 1; got {scale!r}")
    ratio_low, ratio_high = _range("random_erasing", "ratio", ratio, minimum=0.0, open_minimum=True)
    B, _, H, W = X.shape
    erase = torch.rand(B, generator=generator) < p
    area = _uniform(B, area_low, area_high, generator) * H * W
    log_ratio = _uniform(B, math.log(ratio_low), math.log(ratio_high), generator)
    width = torch.sqrt(area * torch.exp(log_ratio)).round().clamp(0, W)
    height = torch.sqrt(area / torch.exp(log_ratio)).round().clamp(0, H)
    left = torch.floor(torch.rand(B, generator=generator) * (W - width + 1)).clamp(max=W - width)
    top = torch.floor(torch.rand(B, generator=generator) * (H - height + 1)).clamp(max=H - height)
    columns, rows = torch.arange(W), torch.arange(H)
    inside_columns = (columns >= left[:, None]) & (columns < (left + width)[:, None])  # (B, W)
    inside_rows = (rows >= top[:, None]) & (rows < (top + height)[:, None])  # (B, H)
    mask = inside_rows[:, :, None] & inside_columns[:, None, :] & erase[:, None, None]  # (B, H, W)
    return X.masked_fill(mask[:, None].to(X.device), value)


def compose(*augmentations: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """One augmentation that applies ``augmentations`` in order (like torchvision's ``Compose``, for batches).

    Each is a function of a batch alone; fix other arguments with a ``lambda`` or ``functools.partial``:
    ``compose(lambda X: random_affine(X, degrees=10), gaussian_noise)``.
    """
    for index, augmentation in enumerate(augmentations):
        if not callable(augmentation):
            raise TypeError(
                f"compose: argument {index} is a {type(augmentation).__name__}, not a function of a batch; "
                "pass the function itself, e.g. gaussian_noise, not gaussian_noise(X)"
            )

    def composed(X: Tensor) -> Tensor:
        for augmentation in augmentations:
            X = augmentation(X)
        return X

    return composed


# --- helpers ------------------------------------------------------------------------------------


def _resample(X: Tensor, theta: Tensor, padding_mode: str = "zeros") -> Tensor:
    """Bilinear resampling of ``X`` at ``affine_grid(theta)`` (align_corners=False: the identity reads
    every pixel at its centre, so it returns the pixels exactly). Outside the image: zeros, or with
    ``padding_mode="border"`` the nearest edge pixel (what resizing a crop does between the crop's edge
    and its first pixel centre)."""
    grid = F.affine_grid(theta.to(dtype=X.dtype), list(X.shape), align_corners=False)
    return F.grid_sample(X, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def _uniform(shape: int | Sequence[int], low: float, high: float, generator: torch.Generator | None) -> Tensor:
    size = (shape,) if isinstance(shape, int) else tuple(shape)
    return low + (high - low) * torch.rand(size, generator=generator)


def _check_float(function: str, X: object) -> None:
    if not isinstance(X, Tensor):
        raise TypeError(f"{function}: X must be a torch.Tensor of images; got {type(X).__name__}")
    if not X.is_floating_point():
        raise TypeError(
            f"{function}: X must hold floats in [0, 1]; got {X.dtype} — scale uint8 images first: X.float() / 255"
        )


def _check_images(function: str, X: object) -> None:
    _check_float(function, X)
    if X.dim() != 4:
        hint = " — add the channel axis with X.unsqueeze(1)" if X.dim() == 3 else ""
        raise ValueError(f"{function}: X must be a batch of images (B, C, H, W); got shape {tuple(X.shape)}{hint}")


def _check_nonnegative(function: str, **values: float) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
            raise ValueError(f"{function}: {name} must be a number >= 0; got {value!r}")


def _range(function: str, name: str, value: Range, minimum: float, open_minimum: bool = False) -> tuple[float, float]:
    """``value`` as ``(low, high)``: a number ``v`` means ``(v, v)``."""
    pair = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{function}: {name} must be a number or a pair (low, high); got {value!r}")
    low, high = pair
    too_small = low <= minimum if open_minimum else low < minimum
    if not low <= high or too_small:
        bound = f"> {minimum:g}" if open_minimum else f">= {minimum:g}"
        raise ValueError(
            f"{function}: {name} must be a number or a pair (low, high) with low <= high and low {bound}; got {value!r}"
        )
    return float(low), float(high)


def _per_image(name: str, values: Tensor, batch_size: int, shape: tuple[int, ...], X: Tensor) -> Tensor:
    values = torch.as_tensor(values, dtype=X.dtype, device=X.device)
    if values.shape != shape:
        raise ValueError(f"affine: {name} must have shape {shape}, one entry per image; got {tuple(values.shape)}")
    return values
