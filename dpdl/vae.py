"""A reference VAE for MNIST that any notebook can train cold: its recipe, training and prior sampling (lab 8).

``dpdl.models.VAE`` is the network and ``dpdl.losses.vae_loss`` the negative ELBO; this module is the
recipe that ties them to MNIST, used through
``dpdl.train.checkpoint.load_or_train("lab8-vae", build=vae.build, train=vae.train, recipe=vae.RECIPE)``.
Lab 8's judging notebook compares its samples with the GAN's and the diffusion model's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from dpdl.losses import vae_loss
from dpdl.models.autoencoder import VAE
from dpdl.relax import sample_normal

__all__ = ["RECIPE", "build", "sample", "train"]

# Every setting that changes the trained weights (the cached file's name is a hash of this dict). A
# 16-d code, unlike lab 8's 2-d one that exists to be drawn, leaves room for sharper digits.
RECIPE: dict[str, Any] = {
    "version": 1,
    "latent_dim": 16,
    "hidden": 400,
    "num_train": 20_000,  # the first MNIST training digits of a fixed shuffle
    "epochs": 5,
    "batch_size": 128,
    "lr": 1e-3,
    "seed": 0,
}


def build(recipe: Mapping[str, Any] = RECIPE) -> VAE:
    """A fresh :class:`~dpdl.models.VAE` for ``recipe``, initialised from ``recipe["seed"]`` (the global random state is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe["seed"])
        return VAE(hidden=recipe["hidden"], latent_dim=recipe["latent_dim"])


def train(model: VAE, recipe: Mapping[str, Any] = RECIPE) -> list[float]:
    """Train ``model`` in place on MNIST in ``[0, 1]`` with the negative ELBO; returns the mean loss per epoch.

    One reparameterised sample of ``z`` per image and step, the closed-form KL, Adam. Runs on the model's
    device; seeded by ``recipe["seed"]`` (the global random state is left as it was).
    """
    missing = sorted(set(RECIPE) - set(recipe))
    if missing:
        raise ValueError(f"vae.train: the recipe lacks {missing}; start from a copy of dpdl.vae.RECIPE")
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(recipe["seed"])
        return _train(model, recipe, device)


@torch.no_grad()
def sample(model: VAE, n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """``n`` images ``(n, 1, 28, 28)`` in ``[0, 1]``: the decoder's mean ``sigmoid(logits)`` at ``z ~ N(0, I)``.

    The mean image, not Bernoulli coin flips per pixel, as is usual for pictures (and for lab 8's FID).
    ``generator`` is a CPU ``torch.Generator`` for ``z``, so a seed gives the same samples on every device.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"sample: n must be a positive int; got {n!r}")
    device = next(model.parameters()).device
    z = torch.randn(n, model.latent_dim, generator=generator)
    return torch.cat([torch.sigmoid(model.decode(chunk.to(device))) for chunk in z.split(1000)])


def _train(model: VAE, recipe: Mapping[str, Any], device: torch.device) -> list[float]:
    from dpdl.data import (  # the data package loads torchvision: only when training
        TensorLoader,
        mnist_tensors,
    )

    X_all, y_all = mnist_tensors("train")
    subset = torch.randperm(len(X_all), generator=torch.Generator().manual_seed(recipe["seed"]))[: recipe["num_train"]]
    train_loader = TensorLoader(
        X_all[subset],
        y_all[subset],
        batch_size=recipe["batch_size"],
        shuffle=True,
        device=device,
        generator=recipe["seed"],
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    model.train()
    losses = []
    for _ in range(recipe["epochs"]):
        total = 0.0
        for X, _ in train_loader:
            mu, log_var = model.encode(X)
            x_hat_logits = model.decode(sample_normal(mu, log_var)).reshape(X.shape)
            loss = vae_loss(x_hat_logits, X, mu, log_var)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(X)
        losses.append(total / train_loader.dataset_size)
    model.eval()
    return losses
