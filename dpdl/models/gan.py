"""The two players of a small DCGAN for 28x28 digits: a generator and a discriminator (lab 8).

The generator upsamples noise with transposed convolutions (7 -> 14 -> 28), the discriminator downsamples
with strided convolutions (28 -> 14 -> 7), as in Radford et al. (2016), kept small enough to train on a CPU.
The adversarial training itself is :mod:`dpdl.gan`.
"""

from __future__ import annotations

from torch import Tensor, nn

from dpdl._checks import check_sizes
from dpdl.models.cnn import check_images

__all__ = ["DCGANDiscriminator", "DCGANGenerator"]


class DCGANGenerator(nn.Module):
    """Noise ``(B, noise_dim)`` -> images ``(B, 1, 28, 28)`` in ``[-1, 1]`` (``tanh``: pair with data scaled to ``[-1, 1]``).

    ``Linear -> BatchNorm1d -> ReLU`` projects the noise to ``width`` maps of 7x7, then
    ``ConvTranspose2d(kernel 4, stride 2, padding 1)`` twice doubles the side: 7 -> 14 -> 28. Call
    ``eval()`` before sampling so that batch norm uses its running statistics and a sample does not depend
    on the others in its batch.
    """

    def __init__(self, noise_dim: int = 32, width: int = 32) -> None:
        super().__init__()
        check_sizes("DCGANGenerator", noise_dim=noise_dim, width=width)
        if width % 2:
            raise ValueError(f"DCGANGenerator: width must be even (the second layer has width // 2 maps); got {width}")
        self.noise_dim = noise_dim
        self.width = width
        self.project = nn.Sequential(nn.Linear(noise_dim, width * 7 * 7), nn.BatchNorm1d(width * 7 * 7), nn.ReLU())
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1),  # (B, width, 7, 7) -> (B, width/2, 14, 14)
            nn.BatchNorm2d(width // 2),
            nn.ReLU(),
            nn.ConvTranspose2d(width // 2, 1, 4, stride=2, padding=1),  # -> (B, 1, 28, 28)
            nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        """``z`` ``(B, noise_dim)`` -> images ``(B, 1, 28, 28)`` in ``[-1, 1]``."""
        if z.dim() != 2 or z.shape[1] != self.noise_dim:
            raise ValueError(
                f"DCGANGenerator expects noise of shape (B, noise_dim={self.noise_dim}); got shape {tuple(z.shape)}"
                + (" — add the batch dimension with z.unsqueeze(0)" if z.dim() == 1 else "")
            )
        return self.upsample(self.project(z).view(-1, self.width, 7, 7))


class DCGANDiscriminator(nn.Module):
    """Images ``(B, 1, 28, 28)`` in ``[-1, 1]`` -> one logit per image ``(B,)``: large means "real".

    Two strided convolutions (28 -> 14 -> 7) with LeakyReLU, so that fakes the discriminator rejects still
    pass a gradient back to the generator, and batch norm on the second.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        check_sizes("DCGANDiscriminator", width=width)
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1),  # (B, 1, 28, 28) -> (B, width, 14, 14)
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),  # -> (B, 2 width, 7, 7)
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, 1),
        )

    def forward(self, X: Tensor) -> Tensor:
        """``X`` ``(B, 1, 28, 28)`` -> logits ``(B,)``."""
        check_images("DCGANDiscriminator", X, 1, (28, 28))
        return self.net(X).squeeze(1)
