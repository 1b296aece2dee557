"""Autoencoders: squeeze an image through a small code ``z`` and rebuild it (lab 8, book ch. 9).

``MLPAutoencoder`` learns a deterministic code; ``VAE`` learns a Gaussian ``q(z | x)`` and samples it with
the reparameterisation trick, so that decoding points of a regular latent grid gives plausible images.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from dpdl._checks import check_sizes
from dpdl.models.mlp import flatten_batch
from dpdl.relax import sample_normal

__all__ = ["MLPAutoencoder", "VAE"]


class MLPAutoencoder(nn.Module):
    """``encode: in_features -> hidden -> latent_dim``, ``decode: latent_dim -> hidden -> in_features``.

    The decoder returns *logits*: train with ``nn.BCEWithLogitsLoss()(logits, X)`` on inputs in [0, 1]
    and view reconstructions with ``torch.sigmoid(logits)``. ``decode`` shapes its output as
    ``image_shape`` (default ``(1, 28, 28)`` when ``in_features == 784``, else ``(in_features,)``);
    ``forward`` returns logits shaped like its input.
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: int = 256,
        latent_dim: int = 64,
        image_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        check_sizes("MLPAutoencoder", in_features=in_features, hidden=hidden, latent_dim=latent_dim)
        self.in_features = in_features
        self.latent_dim = latent_dim
        self.image_shape = _check_image_shape("MLPAutoencoder", image_shape, in_features)
        self.encoder = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, in_features))

    def encode(self, x: Tensor) -> Tensor:
        """``(B, *)`` with ``in_features`` numbers per example -> codes ``z`` ``(B, latent_dim)``."""
        return self.encoder(flatten_batch("MLPAutoencoder", x, self.in_features))

    def decode(self, z: Tensor) -> Tensor:
        """Codes ``(B, latent_dim)`` -> logits ``(B, *image_shape)``, e.g. ``(B, 1, 28, 28)``."""
        z = _check_codes("MLPAutoencoder", z, self.latent_dim)
        return self.decoder(z).reshape(z.shape[0], *self.image_shape)

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction logits shaped like ``x``, e.g. ``(B, 1, 28, 28) -> (B, 1, 28, 28)``."""
        return self.decode(self.encode(x)).reshape(x.shape)


class VAE(nn.Module):
    """A variational autoencoder with an MLP encoder, Gaussian ``q(z | x) = N(mu, diag exp(log_var))``.

    ``encode(x) -> (mu, log_var)``, each ``(B, latent_dim)``; ``decode(z) -> logits (B, *image_shape)``;
    ``forward(x) -> (x_hat_logits, mu, log_var)`` with ``x_hat_logits`` shaped like ``x``. In training
    mode ``forward`` decodes a reparameterised sample ``z = mu + exp(0.5 * log_var) * eps`` (random,
    differentiable in ``mu`` and ``log_var``); in eval mode (``model.eval()``) it decodes ``mu``, so
    evaluation is deterministic. Outputs are logits: pair them with ``dpdl.losses.vae_loss`` (BCE with
    logits) and view images with ``torch.sigmoid``. ``latent_dim=2`` lets ``dpdl.plot.latent_grid`` draw the
    whole latent space.
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: int = 400,
        latent_dim: int = 2,
        image_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        check_sizes("VAE", in_features=in_features, hidden=hidden, latent_dim=latent_dim)
        self.in_features = in_features
        self.latent_dim = latent_dim
        self.image_shape = _check_image_shape("VAE", image_shape, in_features)
        self.encoder = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_log_var = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, in_features))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, *)`` with ``in_features`` numbers per example -> ``(mu, log_var)``, each ``(B, latent_dim)``."""
        h = self.encoder(flatten_batch("VAE", x, self.in_features))
        return self.fc_mu(h), self.fc_log_var(h)

    def decode(self, z: Tensor) -> Tensor:
        """Latent points ``(B, latent_dim)`` -> logits ``(B, *image_shape)``, e.g. ``(B, 1, 28, 28)``."""
        z = _check_codes("VAE", z, self.latent_dim)
        return self.decoder(z).reshape(z.shape[0], *self.image_shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x`` ``(B, *)`` -> ``(x_hat_logits shaped like x, mu, log_var)``; samples ``z`` only in training mode."""
        mu, log_var = self.encode(x)
        z = sample_normal(mu, log_var) if self.training else mu
        return self.decode(z).reshape(x.shape), mu, log_var


def _check_image_shape(model_name: str, image_shape: tuple[int, ...] | None, in_features: int) -> tuple[int, ...]:
    if image_shape is None:
        return (1, 28, 28) if in_features == 784 else (in_features,)
    shape = tuple(image_shape)
    if not shape or not all(isinstance(s, int) and s > 0 for s in shape) or math.prod(shape) != in_features:
        raise ValueError(
            f"{model_name}: image_shape must be positive ints whose product is in_features={in_features}; "
            f"got {image_shape!r}"
        )
    return shape


def _check_codes(model_name: str, z: Tensor, latent_dim: int) -> Tensor:
    if z.dim() == 1 and z.shape[0] == latent_dim:
        raise ValueError(
            f"{model_name}.decode expects a batch of codes (B, {latent_dim}); got shape {tuple(z.shape)} — "
            "add the batch dimension with z.unsqueeze(0)"
        )
    if z.dim() != 2 or z.shape[1] != latent_dim:
        raise ValueError(
            f"{model_name}.decode expects codes of shape (B, latent_dim={latent_dim}); got shape {tuple(z.shape)}"
        )
    return z
