"""Self-supervised pre-training with Barlow Twins, and the linear probe that judges it (book ch. 20, lab 6).

Barlow Twins (Zbontar et al., 2021) feeds two random augmentations of each image through the same
network and pushes the cross-correlation matrix of the two batches of embeddings towards the identity:
each feature agrees across the two views (invariance) and carries something the others do not
(redundancy reduction). No labels are used; a linear classifier on the frozen features (a "probe")
then measures what was learnt, with few or many labels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = [
    "standardize",
    "cross_correlation",
    "barlow_twins_loss",
    "ConvEncoder",
    "BarlowTwins",
    "pretrain",
    "encode",
    "balanced_subset",
    "linear_probe",
]


def standardize(z: Tensor, eps: float = 1e-5) -> Tensor:
    """Each column of ``z`` ``(N, D)`` shifted to mean 0 and scaled to variance 1 over the batch.

    This is ``nn.BatchNorm1d(D, affine=False)`` in training mode, as in the authors' code: the variance
    is the biased one (divided by ``N``) and ``eps`` is added to it, so a constant column gives 0, not NaN.
    (The paper's pseudocode divides by ``z.std(0)``, the unbiased estimate: a factor ``sqrt((N-1)/N)``.)
    """
    _check_embeddings("standardize", z=z)
    mean = z.mean(dim=0)
    variance = z.var(dim=0, unbiased=False)
    return (z - mean) / torch.sqrt(variance + eps)


def cross_correlation(z1: Tensor, z2: Tensor, eps: float = 1e-5) -> Tensor:
    """The ``(D, D)`` cross-correlation matrix of two batches of embeddings ``(N, D)``, computed along the batch.

    ``C[i, j] = sum_b z1n[b, i] * z2n[b, j] / N`` with ``z1n, z2n`` the :func:`standardize`-d embeddings:
    entries lie in ``[-1, 1]`` (up to ``eps``), and ``C[i, i] = 1`` when feature ``i`` is the same, up to
    an increasing affine map, in both views.
    """
    _check_embeddings("cross_correlation", z1=z1, z2=z2)
    if z1.shape != z2.shape:
        raise ValueError(
            f"cross_correlation: z1 and z2 must have the same shape (N, D), the two views of the same N images; "
            f"got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    return standardize(z1, eps).T @ standardize(z2, eps) / len(z1)


def barlow_twins_loss(z1: Tensor, z2: Tensor, lambd: float = 5e-3, eps: float = 1e-5) -> Tensor:
    """Barlow Twins' loss: ``sum_i (1 - C_ii)^2 + lambd * sum_i sum_{j != i} C_ij^2`` for ``C = cross_correlation(z1, z2)``.

    The first term (invariance) makes each feature agree across the two views; the second (redundancy
    reduction) decorrelates different features, so that they do not all encode the same thing — which
    also rules out the collapsed solution where every image gets the same embedding. ``lambd`` weighs
    the ``D(D-1)`` off-diagonal terms against the ``D`` diagonal ones: the paper uses ``5e-3`` for
    ``D = 8192``. ``z1``, ``z2``: ``(N, D)`` embeddings of two views of the same ``N`` images, ``N >= 2``.
    Returns a scalar.
    """
    if not isinstance(lambd, (int, float)) or isinstance(lambd, bool) or not lambd >= 0:
        raise ValueError(f"barlow_twins_loss: lambd must be a number >= 0 (the paper uses 5e-3); got {lambd!r}")
    c = cross_correlation(z1, z2, eps)
    on_diagonal = (torch.diagonal(c) - 1).pow(2).sum()
    off_diagonal = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diagonal + lambd * off_diagonal


class ConvEncoder(nn.Module):
    """A small CNN for 28x28 greyscale images: the network whose features we pre-train and probe.

    Three blocks ``conv 3x3 (padding 1) -> BatchNorm -> ReLU``, with widths ``width, 2 width, 4 width``,
    the first two followed by a 2x2 max-pool (28 -> 14 -> 7), then the average over positions: input
    ``(B, 1, 28, 28)`` (any side works), output ``(B, 4 * width)`` features. BatchNorm keeps the training of
    a randomly initialised network stable with Adam, as ResNet's does in the paper.
    """

    def __init__(self, width: int = 16, in_channels: int = 1) -> None:
        super().__init__()
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"ConvEncoder: width must be a positive int; got {width!r}")
        self.feature_dim = 4 * width
        channels = [in_channels, width, 2 * width, 4 * width]
        layers: list[nn.Module] = []
        for index, (c_in, c_out) in enumerate(zip(channels, channels[1:])):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            if index < 2:
                layers.append(nn.MaxPool2d(2))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.layers = nn.Sequential(*layers)

    def forward(self, X: Tensor) -> Tensor:
        """Images ``(B, in_channels, H, W)`` -> features ``(B, 4 * width)``."""
        return self.layers(X)


class BarlowTwins(nn.Module):
    """An encoder followed by a projector: ``Linear -> BatchNorm -> ReLU`` twice, then ``Linear``, as in the paper.

    The loss is computed on the projector's output ``z`` ``(B, projector_dim)`` (the paper: 8192, three
    times the encoder's 2048 features); the features kept for later tasks are the encoder's, before the
    projector, which is thrown away after pre-training. A wide projector helps: more features to
    decorrelate.
    """

    def __init__(self, encoder: nn.Module, feature_dim: int, projector_dim: int = 256) -> None:
        super().__init__()
        for name, value in (("feature_dim", feature_dim), ("projector_dim", projector_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"BarlowTwins: {name} must be a positive int; got {value!r}")
        self.encoder = encoder
        self.projector = nn.Sequential(
            nn.Linear(feature_dim, projector_dim, bias=False),
            nn.BatchNorm1d(projector_dim),
            nn.ReLU(),
            nn.Linear(projector_dim, projector_dim, bias=False),
            nn.BatchNorm1d(projector_dim),
            nn.ReLU(),
            nn.Linear(projector_dim, projector_dim, bias=False),
        )

    def forward(self, X: Tensor) -> Tensor:
        """Images ``(B, ...)`` -> embeddings ``z`` ``(B, projector_dim)``."""
        return self.projector(self.encoder(X))


def pretrain(
    model: nn.Module,
    X: Tensor,
    augment: Callable[[Tensor], Tensor],
    loss_fn: Callable[[Tensor, Tensor], Tensor] = barlow_twins_loss,
    epochs: int = 1,
    batch_size: int = 256,
    lr: float = 1e-3,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Train ``model`` (e.g. :class:`BarlowTwins`) without labels: two ``augment``-ed views per image, ``loss_fn(z1, z2)``.

    ``X`` is the unlabelled images: uint8 ``(N, H, W)`` or ``(N, C, H, W)`` (scaled to ``[0, 1]``), or
    floats already in ``[0, 1]``. Each step cuts a batch, shuffled anew each epoch with ``generator``,
    augments it twice on ``X``'s device (augmentations draw from torch's global generator unless they
    hold their own), moves the views to ``device`` and takes one Adam step with ``lr``. The last,
    incomplete batch is dropped: batch statistics need a full batch. Returns the mean loss of each epoch.
    """
    if not isinstance(X, Tensor) or X.dim() not in (3, 4):
        raise ValueError(f"pretrain: X must be a tensor of images (N, H, W) or (N, C, H, W); got {_describe(X)}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 2 <= batch_size <= len(X):
        raise ValueError(
            f"pretrain: batch_size must be an int between 2 (batch statistics) and the {len(X)} images; got {batch_size!r}"
        )
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"pretrain: epochs must be a positive int; got {epochs!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    epoch_losses = []
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=generator).to(X.device)
        total, steps = 0.0, 0
        for start in range(0, len(X) - batch_size + 1, batch_size):
            images = _as_float_images(X[order[start : start + batch_size]])
            view1, view2 = augment(images).to(device), augment(images).to(device)
            loss = loss_fn(model(view1), model(view2))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        epoch_losses.append(total / steps)
    model.eval()
    return epoch_losses


def encode(encoder: nn.Module, X: Tensor, batch_size: int = 1024, device: torch.device | str | None = None) -> Tensor:
    """The features of every image of ``X`` (uint8 or ``[0, 1]`` floats), in eval mode without gradients: ``(N, D)`` on the CPU."""
    if not isinstance(X, Tensor) or X.dim() not in (3, 4):
        raise ValueError(f"encode: X must be a tensor of images (N, H, W) or (N, C, H, W); got {_describe(X)}")
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    encoder.eval()
    with torch.no_grad():
        return torch.cat([encoder(_as_float_images(part).to(device)).cpu() for part in X.split(batch_size)])


def balanced_subset(y: Tensor, per_class: int, generator: torch.Generator | None = None) -> Tensor:
    """Indices of ``per_class`` examples of each class in labels ``y`` ``(N,)``, drawn at random: ``(per_class * K,)``.

    The labelled set of a label-efficiency experiment ("10 labels" = one image of each digit). One shuffle
    of all ``N`` examples, then the first ``per_class`` of each class in that order, class by class.
    """
    if not isinstance(per_class, int) or isinstance(per_class, bool) or per_class < 1:
        raise ValueError(f"balanced_subset: per_class must be a positive int; got {per_class!r}")
    order = torch.randperm(len(y), generator=generator)
    shuffled = y[order]
    chosen = [order[shuffled == label][:per_class] for label in torch.unique(y)]
    short = [(label.item(), len(picked)) for label, picked in zip(torch.unique(y), chosen) if len(picked) < per_class]
    if short:
        label, count = short[0]
        raise ValueError(f"balanced_subset: class {label} has {count} examples, fewer than per_class={per_class}")
    return torch.cat(chosen)


def linear_probe(
    features_train: Tensor, y_train: Tensor, features_test: Tensor, y_test: Tensor, C: float = 1.0
) -> float:
    """Test accuracy of a logistic regression (scikit-learn, L2 strength ``1/C``) on frozen features ``(N, D)``.

    Features are standardised with the training set's mean and standard deviation first, so that one
    ``C`` suits features of any scale (raw pixels, a random network's, a trained one's).
    """
    from sklearn.linear_model import LogisticRegression  # here: importing dpdl.ssl stays light

    mean = features_train.mean(0)
    std = features_train.std(0, unbiased=False)
    std = torch.where(
        std > 1e-6, std, torch.ones_like(std)
    )  # a feature constant in training (a blank pixel) stays as it is
    classifier = LogisticRegression(C=C, max_iter=1000)
    classifier.fit(((features_train - mean) / std).numpy(), y_train.numpy())
    return float(classifier.score(((features_test - mean) / std).numpy(), y_test.numpy()))


# --- helpers ------------------------------------------------------------------------------------


def _as_float_images(X: Tensor) -> Tensor:
    """uint8 -> floats in [0, 1]; (N, H, W) -> (N, 1, H, W)."""
    X = X.float() / 255 if X.dtype == torch.uint8 else X.float()
    return X.unsqueeze(1) if X.dim() == 3 else X


def _check_embeddings(function: str, **tensors: Tensor) -> None:
    for name, z in tensors.items():
        if not isinstance(z, Tensor) or z.dim() != 2 or not z.is_floating_point():
            raise ValueError(f"{function}: {name} must be a float tensor of embeddings (N, D); got {_describe(z)}")
        if len(z) < 2:
            raise ValueError(
                f"{function}: {name} holds {len(z)} embedding; statistics over the batch need N >= 2 (use a larger batch)"
            )


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"a {type(x).__name__}"
