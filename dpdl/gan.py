"""Adversarial training of the DCGAN of lab 8: the two losses, a reference recipe, and sampling.

A generator learns to turn noise into digits only through a discriminator's opinion of them (Goodfellow
et al., 2014). ``build`` and ``train`` are the recipe that any notebook can train cold through
``dpdl.train.checkpoint.load_or_train("lab8-gan", build=gan.build, train=gan.train, recipe=gan.RECIPE)``;
lab 8's judging notebook compares its samples with the VAE's and the diffusion model's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dpdl.models.gan import DCGANDiscriminator, DCGANGenerator
from dpdl.train.modes import eval_mode

__all__ = ["RECIPE", "build", "discriminator_loss", "generator_loss", "sample", "train"]

# The reference recipe: every setting that changes the trained weights, so that the cached file's name
# (a hash of this dict) changes with it. Bump "version" when the training code changes.
RECIPE: dict[str, Any] = {
    "version": 1,
    "noise_dim": 32,
    "generator_width": 32,
    "discriminator_width": 16,
    "num_train": 20_000,  # the first MNIST training digits of a fixed shuffle
    "epochs": 2,
    "batch_size": 64,
    "lr": 5e-4,
    "betas": [0.5, 0.999],  # DCGAN's Adam: less momentum keeps the two players from overshooting
    "seed": 0,
}


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``(B,)`` logits on real and on generated images -> scalar: BCE with real = 1 plus BCE with fake = 0."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: Tensor) -> Tensor:
    """``(B,)`` logits on generated images -> scalar: the non-saturating loss ``-log D(G(z))``.

    Minimising ``log(1 - D(G(z)))`` instead (the minimax game) gives the generator almost no gradient
    early on, when the discriminator rejects every fake.
    """
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def build(recipe: Mapping[str, Any] = RECIPE) -> DCGANGenerator:
    """A fresh generator for ``recipe`` (what ``load_or_train`` caches; the discriminator is only scaffolding).

    Its initial weights depend on ``recipe["seed"]`` only, not on the global random state, which is left alone.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe["seed"])
        return DCGANGenerator(noise_dim=recipe["noise_dim"], width=recipe["generator_width"])


def train(model: DCGANGenerator, recipe: Mapping[str, Any] = RECIPE) -> list[float]:
    """Train the generator ``model`` in place against a fresh discriminator on MNIST; returns D's accuracy per step.

    Each step updates the discriminator on a real and a (detached) fake batch, then the generator through
    the discriminator, with the non-saturating loss. Images are scaled to ``[-1, 1]`` to match ``tanh``.
    Runs on the model's device; seeded by ``recipe["seed"]``, so the same recipe gives the same weights
    on the same machine, and the global random state is left as it was.
    """
    _check_recipe(recipe)
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(recipe["seed"])
        return _train(model, recipe, device)


@torch.no_grad()
def sample(model: nn.Module, n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """``n`` images ``(n, 1, 28, 28)`` in ``[0, 1]`` on ``model``'s device, decoded from noise ``z ~ N(0, I)``.

    ``model`` is the trained :class:`~dpdl.models.gan.DCGANGenerator`; ``generator`` is a CPU
    ``torch.Generator`` for the noise (as in ``dpdl.vae.sample`` and ``dpdl.diffusion.sample``), so a seed
    gives the same samples on every device. The network runs in eval mode (batch norm's running
    statistics: a sample does not depend on its batch) and is left in the mode it was in.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"sample: n must be a positive int; got {n!r}")
    device = next(model.parameters()).device
    z = torch.randn(n, model.noise_dim, generator=generator)
    with eval_mode(model):
        images = torch.cat([model(chunk.to(device)) for chunk in z.split(1000)])
    return (images + 1) / 2


def _check_recipe(recipe: Mapping[str, Any]) -> None:
    missing = sorted(set(RECIPE) - set(recipe))
    if missing:
        raise ValueError(f"gan.train: the recipe lacks {missing}; start from a copy of dpdl.gan.RECIPE")


def _train(model: DCGANGenerator, recipe: Mapping[str, Any], device: torch.device) -> list[float]:
    from dpdl.data import (  # the data package loads torchvision: only when training
        TensorLoader,
        mnist_tensors,
    )

    discriminator = DCGANDiscriminator(width=recipe["discriminator_width"]).to(device)
    X_all, y_all = mnist_tensors("train")
    subset = torch.randperm(len(X_all), generator=torch.Generator().manual_seed(recipe["seed"]))[: recipe["num_train"]]
    train_loader = TensorLoader(
        X_all[subset],
        y_all[subset],
        batch_size=recipe["batch_size"],
        shuffle=True,
        drop_last=True,
        normalize=(0.5, 0.5),
        device=device,
        generator=recipe["seed"],
    )
    betas = tuple(recipe["betas"])
    optimizer_G = torch.optim.Adam(model.parameters(), lr=recipe["lr"], betas=betas)
    optimizer_D = torch.optim.Adam(discriminator.parameters(), lr=recipe["lr"], betas=betas)
    model.train()
    discriminator.train()
    accuracies = []
    for _ in range(recipe["epochs"]):
        for X, _ in train_loader:
            fake = model(torch.randn(len(X), model.noise_dim, device=device))
            real_logits, fake_logits = discriminator(X), discriminator(fake.detach())
            loss_D = discriminator_loss(real_logits, fake_logits)
            optimizer_D.zero_grad()
            loss_D.backward()
            optimizer_D.step()
            loss_G = generator_loss(discriminator(fake))
            optimizer_G.zero_grad()
            loss_G.backward()
            optimizer_G.step()
            accuracy = ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean()) / 2
            accuracies.append(accuracy.item())
    model.eval()
    return accuracies
