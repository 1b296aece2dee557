"""Diffusion models for digits: flow matching (what lab 8 trains) and DDPM (what it is measured against).

Both destroy an image by mixing it with Gaussian noise, ``x_t = alpha_t x_0 + sigma_t eps``, and train a
network to undo a little of that at any noise level ``t``; sampling starts from pure noise and applies
the network step by step. Flow matching mixes along a straight line and learns the velocity
``eps - x_0``; DDPM mixes along a variance-preserving path and learns the noise ``eps``. Lab 8
(``labs/lab8/lab8_diffusion.ipynb``) has students write the pieces; these are the references they are
checked against, and the recipe (``build``, ``train``, ``RECIPE``) that ``load_or_train("lab8-diffusion",
...)`` caches for the notebooks that judge the samples.

Conventions: images in [-1, 1], shape ``(B, 1, 28, 28)``; time ``t`` in [0, 1] with ``t = 0`` the data
and ``t = 1`` pure noise (DDPM's step ``i`` of ``T`` is ``t = i / T``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dpdl.train.modes import eval_mode, kept_modes

__all__ = [
    "RECIPE",
    "add_noise",
    "alpha_sigma",
    "build",
    "ddpm_add_noise",
    "ddpm_alpha_bars",
    "ddpm_loss",
    "ddpm_sample",
    "euler_sample",
    "flow_matching_loss",
    "sample",
    "signal_to_noise",
    "to_model_range",
    "to_unit_range",
    "train",
    "velocity_target",
]

# The reference recipe ``load_or_train("lab8-diffusion", build=build, train=train, recipe=RECIPE)`` caches:
# a change here changes the recipe's hash, so every notebook retrains once instead of loading stale weights.
RECIPE: dict[str, Any] = {
    "method": "flow matching",
    "channels": (16, 32, 32),
    "num_train": 60_000,
    "num_steps": 600,
    "batch_size": 64,
    "lr": 2e-3,
    "ema_decay": 0.99,  # the average over the last ~100 steps
    "seed": 0,
}
DEFAULT_SAMPLE_STEPS = 20


# Flow matching ---------------------------------------------------------------------------------------


def alpha_sigma(t: Tensor) -> tuple[Tensor, Tensor]:
    """Flow matching's schedule: ``x_t = alpha_t x_0 + sigma_t eps`` with ``alpha_t = 1 - t``, ``sigma_t = t``.

    The straight line from the image (``t = 0``) to the noise (``t = 1``). Returns ``(alpha_t, sigma_t)``,
    each the shape of ``t``.
    """
    t = _check_unit_times(t, "alpha_sigma")
    return 1 - t, t


def signal_to_noise(t: Tensor) -> Tensor:
    """``SNR(t) = alpha_t**2 / sigma_t**2 = (1 - t)**2 / t**2``: infinite at ``t = 0``, zero at ``t = 1``."""
    alpha, sigma = alpha_sigma(t)
    return alpha**2 / sigma**2


def add_noise(x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """The forward noising ``x_t = (1 - t) x_0 + t eps``: images ``(B, C, H, W)``, times ``(B,)``, noise like ``x0``."""
    _check_batch(x0, t, noise, "add_noise")
    alpha, sigma = alpha_sigma(t)
    return _per_image(alpha, x0) * x0 + _per_image(sigma, x0) * noise


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    """``d x_t / d t = eps - x_0``: the same at every ``t`` on a straight path, which is what the network learns."""
    if x0.shape != noise.shape:
        raise ValueError(f"velocity_target: x0 {tuple(x0.shape)} and noise {tuple(noise.shape)} must have one shape")
    return noise - x0


def flow_matching_loss(model: nn.Module, x0: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Mean squared error between ``model(x_t, t)`` and the velocity ``eps - x_0``, with ``t ~ U(0, 1)`` per image.

    One Monte-Carlo draw of ``t`` and ``eps`` per image; averaged over pixels and images (a scalar).
    ``generator`` (on ``x0``'s device) makes the draw repeatable.
    """
    t = torch.rand(len(x0), generator=generator, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device)
    return F.mse_loss(model(add_noise(x0, t, noise), t), velocity_target(x0, noise))


@torch.no_grad()
def euler_sample(model: nn.Module, noise: Tensor, steps: int = DEFAULT_SAMPLE_STEPS, *, trajectory: bool = False):
    """Integrate ``dx/dt = model(x, t)`` from ``t = 1`` (``noise``) back to ``t = 0`` in ``steps`` Euler steps.

    Each step is ``x <- x - (1 / steps) * model(x, t)``. Returns the images ``(B, C, H, W)`` (not clipped),
    or with ``trajectory=True`` the list of the ``steps + 1`` states from the noise to the images.
    """
    _check_steps(steps, "euler_sample")
    x = noise
    states = [x]
    for k in range(steps, 0, -1):
        t = torch.full((len(x),), k / steps, device=x.device)
        x = x - model(x, t) / steps
        states.append(x)
    return states if trajectory else x


# DDPM (Ho et al., 2020), the baseline flow matching was measured against ------------------------------


def ddpm_alpha_bars(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """DDPM's linear schedule: ``beta_i`` from ``beta_start`` to ``beta_end``; returns ``alpha_bar_i = prod (1 - beta)``.

    ``x_i = sqrt(alpha_bar_i) x_0 + sqrt(1 - alpha_bar_i) eps``, ``i = 1 .. num_steps`` (index 0 holds step 1);
    its SNR is ``alpha_bar / (1 - alpha_bar)``.
    """
    _check_steps(num_steps, "ddpm_alpha_bars")
    return torch.cumprod(1 - torch.linspace(beta_start, beta_end, num_steps), dim=0)


def ddpm_add_noise(x0: Tensor, index: Tensor, noise: Tensor, alpha_bars: Tensor) -> Tensor:
    """DDPM's forward noising at step indices ``index`` ``(B,)`` (0-based into ``alpha_bars``)."""
    alpha_bar = alpha_bars.to(x0.device)[index]
    return _per_image(alpha_bar.sqrt(), x0) * x0 + _per_image((1 - alpha_bar).sqrt(), x0) * noise


def ddpm_loss(model: nn.Module, x0: Tensor, alpha_bars: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """DDPM's simple loss: mean squared error between ``model(x_i, i / T)`` and the noise ``eps``."""
    num_steps = len(alpha_bars)
    index = torch.randint(0, num_steps, (len(x0),), generator=generator, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device)
    return F.mse_loss(model(ddpm_add_noise(x0, index, noise, alpha_bars), (index + 1) / num_steps), noise)


@torch.no_grad()
def ddpm_sample(
    model: nn.Module,
    noise: Tensor,
    alpha_bars: Tensor,
    steps: int | None = None,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Ancestral sampling: from ``x_T = noise`` down to ``x_0``, on ``steps`` evenly spaced steps of the schedule.

    With ``steps = len(alpha_bars)`` (the default) this is DDPM's sampler, one network call per step of
    the schedule. Fewer steps skip along it (``beta`` recomputed between the kept steps, Nichol &
    Dhariwal 2021): each step predicts ``eps``, takes the posterior mean and adds its noise.
    """
    num_steps = len(alpha_bars)
    steps = num_steps if steps is None else steps
    _check_steps(steps, "ddpm_sample")
    alpha_bars = alpha_bars.to(noise.device)
    kept = torch.linspace(num_steps - 1, 0, steps, device=noise.device).round().long().tolist()
    x = noise
    for position, index in enumerate(kept):
        alpha_bar = alpha_bars[index]
        previous = alpha_bars[kept[position + 1]] if position + 1 < len(kept) else torch.ones((), device=x.device)
        beta = 1 - alpha_bar / previous
        eps = model(x, torch.full((len(x),), (index + 1) / num_steps, device=x.device))
        x = (x - beta / (1 - alpha_bar).sqrt() * eps) / (1 - beta).sqrt()
        if position + 1 < len(kept):
            variance = beta * (1 - previous) / (1 - alpha_bar)
            x = x + variance.sqrt() * torch.randn(x.shape, generator=generator, device=x.device)
    return x


# The reference recipe ---------------------------------------------------------------------------------


def build(recipe: dict[str, Any] | None = None) -> nn.Module:
    """A fresh, untrained ``SmallUNet`` of the recipe's width (``load_or_train``'s ``build``)."""
    from dpdl.models.unet import SmallUNet

    recipe = RECIPE if recipe is None else recipe
    return SmallUNet(in_channels=1, channels=tuple(recipe["channels"]), image_size=28)


def train(
    model: nn.Module,
    recipe: dict[str, Any] | None = None,
    *,
    loss_fn: Callable[[nn.Module, Tensor], Tensor] | None = None,
    callback: Callable[[int, nn.Module], None] | None = None,
    callback_every: int = 100,
) -> list[float]:
    """Train ``model`` in place on MNIST by flow matching, then load its exponential moving average.

    ``recipe`` defaults to ``RECIPE``: Adam, ``num_steps`` batches of ``batch_size`` digits drawn from the
    first ``num_train`` training images (scaled to [-1, 1]). The average of the weights over the last
    ~1 / (1 - ema_decay) steps samples cleaner digits than the last weights; it replaces them at the end
    (``ema_decay = 0`` keeps the last weights). ``loss_fn(model, x0)`` replaces ``flow_matching_loss``
    (the lab passes the student's); ``callback(step, model)`` runs every ``callback_every`` steps and
    after step 0, with the averaged weights loaded (and restored afterwards). Returns the loss per step.
    """
    from dpdl.data import mnist_tensors
    from dpdl.repro import seed_everything

    recipe = RECIPE if recipe is None else recipe
    loss_fn = flow_matching_loss if loss_fn is None else loss_fn
    seed_everything(recipe["seed"])
    device = next(model.parameters()).device
    images = mnist_tensors("train")[0][: recipe["num_train"]].to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    # cosine decay to zero: big steps while the digits take shape, small ones to settle the strokes
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=recipe["num_steps"])
    ema = _EMA(model, recipe["ema_decay"])
    model.train()
    losses: list[float] = []
    if callback is not None:
        ema.call_with_average(callback, 0)
    batch_size = recipe["batch_size"]
    order = torch.randperm(len(images), device=device)
    position = 0
    for step in range(1, recipe["num_steps"] + 1):
        if position + batch_size > len(order):
            order, position = torch.randperm(len(images), device=device), 0
        x0 = to_model_range(images[order[position : position + batch_size]])
        position += batch_size
        loss = loss_fn(model, x0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        ema.update()
        losses.append(loss.item())
        if callback is not None and step % callback_every == 0:
            ema.call_with_average(callback, step)
    ema.copy_to_model()
    model.eval()
    return losses


@torch.no_grad()
def sample(
    model: nn.Module,
    n: int,
    *,
    generator: torch.Generator | None = None,
    steps: int = DEFAULT_SAMPLE_STEPS,
    batch_size: int = 500,
) -> Tensor:
    """``n`` digits ``(n, 1, 28, 28)`` in [0, 1] from a flow-matching model, ``steps`` Euler steps each.

    The noise is drawn on the CPU from ``generator`` (so a seed gives the same digits on every device)
    and moved to the model's device; images are made ``batch_size`` at a time and returned on that device.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"sample: n must be a positive int; got {n!r}")
    device = next(model.parameters()).device
    noise = torch.randn(n, 1, 28, 28, generator=generator)
    with eval_mode(model):
        images = [euler_sample(model, chunk.to(device), steps) for chunk in noise.split(batch_size)]
    return to_unit_range(torch.cat(images))


def to_model_range(images: Tensor) -> Tensor:
    """uint8 ``(B, 28, 28)`` or [0, 1] floats -> floats in [-1, 1] with a channel: ``(B, 1, 28, 28)``."""
    x = images.float().div(255) if images.dtype == torch.uint8 else images.float()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    return x * 2 - 1


def to_unit_range(x: Tensor) -> Tensor:
    """Model outputs in [-1, 1] (any overshoot clipped) -> images in [0, 1] for plotting and judging."""
    return ((x + 1) / 2).clamp(0, 1)


class _EMA:
    """An exponential moving average of a model's parameters (buffers are copied as they are)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1); got {decay!r}")
        self.model, self.decay = model, decay
        self.average = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self) -> None:
        for average, p in zip(self.average, self.model.parameters()):
            average.lerp_(p.detach(), 1 - self.decay)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for average, p in zip(self.average, self.model.parameters()):
            p.copy_(average)

    def call_with_average(self, function: Callable[[int, nn.Module], None], step: int) -> None:
        current = [p.detach().clone() for p in self.model.parameters()]
        self.copy_to_model()
        with kept_modes(self.model):
            try:
                function(step, self.model)
            finally:
                with torch.no_grad():
                    for saved, p in zip(current, self.model.parameters()):
                        p.copy_(saved)


def _per_image(values: Tensor, like: Tensor) -> Tensor:
    return values.to(like.device, like.dtype).view(-1, *([1] * (like.dim() - 1)))


def _check_unit_times(t: Tensor, name: str) -> Tensor:
    if not isinstance(t, Tensor):
        t = torch.as_tensor(t, dtype=torch.float32)
    if not t.is_floating_point():
        raise ValueError(
            f"{name}: t must hold floats in [0, 1]; got dtype {t.dtype} — divide step indices by their count"
        )
    if t.numel() and (t.min() < 0 or t.max() > 1):
        raise ValueError(
            f"{name}: t must lie in [0, 1] (0 = data, 1 = noise); got values in [{t.min():.3g}, {t.max():.3g}]"
        )
    return t


def _check_batch(x0: Tensor, t: Tensor, noise: Tensor, name: str) -> None:
    if x0.shape != noise.shape:
        raise ValueError(f"{name}: x0 {tuple(x0.shape)} and noise {tuple(noise.shape)} must have one shape")
    if t.dim() != 1 or len(t) != len(x0):
        raise ValueError(f"{name}: t must hold one time per image, shape ({len(x0)},); got shape {tuple(t.shape)}")


def _check_steps(steps: int, name: str) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"{name}: the number of steps must be a positive int; got {steps!r}")
