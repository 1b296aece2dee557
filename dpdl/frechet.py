"""The Fréchet distance between two sets of images, seen through a classifier's features ("FID on MNIST", lab 8).

Fit a Gaussian to each set's features and compare the Gaussians in closed form:
``d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)`` (Fréchet 1957; Dowson & Landau
1982; Heusel et al. 2017 use Inception-v3 features and call it FID). For MNIST the features are the
penultimate layer of a small CNN trained here, :func:`features`, so the numbers are comparable with each
other but not with published FIDs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dpdl.train.modes import eval_mode

__all__ = [
    "CLASSIFIER_RECIPE",
    "build_classifier",
    "feature_frechet_distance",
    "features",
    "frechet_distance",
    "gaussian_statistics",
    "train_classifier",
]


def gaussian_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """``(N, D)`` features -> ``(mean (D,), covariance (D, D))`` in float64 on the CPU.

    The covariance is the unbiased estimate (divided by ``N - 1``), as ``numpy.cov``. Float64 because the
    distance subtracts traces of similar size: in float32 their rounding alone can exceed a small distance.
    With ``N <= D`` the covariance is singular; :func:`frechet_distance` copes, but its estimate is poor.
    """
    features = _as_float64("gaussian_statistics", "features", features)
    if features.dim() != 2:
        raise ValueError(
            f"gaussian_statistics expects features of shape (N, D); got shape {tuple(features.shape)} — "
            "flatten each example's features to one row"
        )
    if features.shape[0] < 2:
        raise ValueError(
            f"gaussian_statistics needs at least 2 examples to estimate a covariance; got {features.shape[0]}"
        )
    mean = features.mean(0)
    centred = features - mean
    covariance = centred.T @ centred / (features.shape[0] - 1)
    return mean, covariance


def frechet_distance(mean_a: Tensor, cov_a: Tensor, mean_b: Tensor, cov_b: Tensor) -> float:
    """The *squared* Fréchet (2-Wasserstein) distance between ``N(mean_a, cov_a)`` and ``N(mean_b, cov_b)``.

    ``|mean_a - mean_b|^2 + tr(cov_a) + tr(cov_b) - 2 tr((cov_a^1/2 cov_b cov_a^1/2)^1/2)``, the number FID
    reports (it is the square, despite the name). Means ``(D,)``, covariances ``(D, D)``, symmetric
    positive semi-definite; computed in float64.

    Why this form: the textbook writes ``tr((cov_a cov_b)^1/2)``, and ``scipy.linalg.sqrtm`` of that
    product is what most FID code computes. The product is not symmetric, so rounding gives its square
    root small imaginary parts (which that code discards after checking they are small) and, for a singular
    covariance, a failed or inaccurate root (that code then adds ``eps * I``). But ``cov_a cov_b`` has the
    same eigenvalues as the symmetric ``M = cov_a^1/2 cov_b cov_a^1/2``, which are real and ``>= 0``, and
    the trace of a square root is the sum of the roots of the eigenvalues. So we take two symmetric
    eigen-decompositions (``torch.linalg.eigh``): one for ``cov_a^1/2``, one for ``M``. Rounding can still
    make an eigenvalue of a singular matrix slightly negative (``-1e-13``); it is set to 0, not rooted into
    a NaN. A result below 0 by rounding alone (equal Gaussians) is returned as 0.
    """
    mean_a = _as_float64("frechet_distance", "mean_a", mean_a)
    mean_b = _as_float64("frechet_distance", "mean_b", mean_b)
    cov_a = _as_float64("frechet_distance", "cov_a", cov_a)
    cov_b = _as_float64("frechet_distance", "cov_b", cov_b)
    _check_gaussian("a", mean_a, cov_a)
    _check_gaussian("b", mean_b, cov_b)
    if mean_a.shape != mean_b.shape:
        raise ValueError(
            f"frechet_distance: the two Gaussians live in different spaces, {mean_a.shape[0]}-d and "
            f"{mean_b.shape[0]}-d — compute both from the same feature extractor"
        )
    root_a = _symmetric_sqrt(cov_a)
    _check_semidefinite("b", torch.linalg.eigvalsh(cov_b))
    middle = root_a @ cov_b @ root_a
    trace_of_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_of_root
    return max(distance.item(), 0.0)


def feature_frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """:func:`frechet_distance` between the Gaussians fitted to two sets of features ``(N_a, D)``, ``(N_b, D)``.

    The estimate is biased upwards, more so for fewer examples: compare models only at the same ``N``.
    """
    return frechet_distance(*gaussian_statistics(features_a), *gaussian_statistics(features_b))


# The feature extractor: dpdl's BetterCNN trained on all 60k MNIST digits in [0, 1] (no normalisation, so
# that generators' outputs in [0, 1] go in as they are). Used through
# load_or_train("lab8-mnist-features", build=build_classifier, train=train_classifier, recipe=CLASSIFIER_RECIPE).
CLASSIFIER_RECIPE: dict[str, Any] = {
    "version": 1,
    "model": "BetterCNN",
    "epochs": 2,
    "batch_size": 128,
    "lr": 2e-3,
    "seed": 0,
}


def build_classifier(recipe: Mapping[str, Any] = CLASSIFIER_RECIPE) -> nn.Module:
    """A fresh MNIST classifier for ``recipe`` (``dpdl.models.BetterCNN``: 50 penultimate features).

    Its initial weights depend on ``recipe["seed"]`` only (the global random state is left alone).
    """
    from dpdl.models.cnn import BetterCNN

    if recipe["model"] != "BetterCNN":
        raise ValueError(f"build_classifier knows the model 'BetterCNN'; got {recipe['model']!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe["seed"])
        return BetterCNN()


def train_classifier(model: nn.Module, recipe: Mapping[str, Any] = CLASSIFIER_RECIPE) -> float:
    """Train ``model`` in place on the 60k MNIST training digits in ``[0, 1]``; returns its test accuracy.

    Adam with the learning rate halved after each epoch, cross-entropy; seeded by ``recipe["seed"]`` (the
    global random state is left as it was).
    """
    missing = sorted(set(CLASSIFIER_RECIPE) - set(recipe))
    if missing:
        raise ValueError(f"train_classifier: the recipe lacks {missing}; start from a copy of CLASSIFIER_RECIPE")
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(recipe["seed"])
        return _train_classifier(model, recipe, device)


@torch.no_grad()
def features(classifier: nn.Module, images: Tensor, *, batch_size: int = 1000) -> Tensor:
    """The classifier's penultimate layer for each image: ``(N, 1, 28, 28)`` in ``[0, 1]`` -> ``(N, D)`` on the CPU.

    The last layer before the logits describes *what kind of digit* an image is (stroke shapes, parts)
    rather than its exact pixels, which is why distances in it track what people see better than pixel
    distances. ``classifier`` is a ``dpdl.models`` CNN (``.features`` then a ``.classifier`` ending in the
    logits layer); it runs in eval mode (no dropout) and is left in the mode it was in. uint8 images
    ``(N, 28, 28)`` as ``mnist_tensors`` gives them are scaled to ``[0, 1]`` first.
    """
    if not (hasattr(classifier, "features") and isinstance(getattr(classifier, "classifier", None), nn.Sequential)):
        raise TypeError(
            "features needs a dpdl.models CNN with .features and a .classifier nn.Sequential (such as BetterCNN); "
            f"got {type(classifier).__name__}"
        )
    images = _as_images(images)
    device = next(classifier.parameters()).device
    penultimate = classifier.classifier[:-1]  # everything but the last Linear (the logits)
    with eval_mode(classifier):
        rows = [penultimate(classifier.features(batch.to(device))).cpu() for batch in images.split(batch_size)]
    return torch.cat(rows)


def _train_classifier(model: nn.Module, recipe: Mapping[str, Any], device: torch.device) -> float:
    from dpdl.data import (  # the data package loads torchvision: only when training
        TensorLoader,
        mnist_tensors,
    )

    train_loader = TensorLoader(
        *mnist_tensors("train"), batch_size=recipe["batch_size"], shuffle=True, device=device, generator=recipe["seed"]
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for _ in range(recipe["epochs"]):
        model.train()
        for X, y in train_loader:
            loss = F.cross_entropy(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    model.eval()
    X_test, y_test = mnist_tensors("test")
    with torch.no_grad():
        correct = sum(
            (model(X).argmax(1) == y).sum().item()
            for X, y in TensorLoader(X_test, y_test, batch_size=1000, device=device)
        )
    return correct / len(y_test)


def _as_images(images: Tensor) -> Tensor:
    if not isinstance(images, Tensor):
        raise TypeError(f"features expects a tensor of images; got {type(images).__name__}")
    if images.dtype == torch.uint8:
        images = images.float().div(255)
        if images.dim() == 3:
            images = images.unsqueeze(1)
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(
            f"features expects MNIST-shaped images (N, 1, 28, 28); got shape {tuple(images.shape)}"
            + (" — add the channel dimension with images.unsqueeze(1)" if images.dim() == 3 else "")
        )
    if not images.is_floating_point():
        raise TypeError(f"features expects float images in [0, 1] or uint8 in 0-255; got dtype {images.dtype}")
    low, high = images.min().item(), images.max().item()
    if low < -1e-3 or high > 1 + 1e-3:
        hint = " — a tanh generator's output in [-1, 1] maps to [0, 1] with (x + 1) / 2" if low < 0 else ""
        hint = hint or (" — logits? apply torch.sigmoid" if high > 1 else "")
        raise ValueError(
            f"features expects images in [0, 1], as the classifier was trained; got values in [{low:.3g}, {high:.3g}]{hint}"
        )
    return images


def _as_float64(function: str, name: str, value: Any) -> Tensor:
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(
            f"{function}: {name} must be a tensor or an array of numbers; got {type(value).__name__}"
        ) from error
    tensor = tensor.detach().cpu().to(torch.float64)  # to the CPU first: Apple MPS has no float64
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{function}: {name} contains NaN or infinite values — check the features (a diverged model?)")
    return tensor


def _check_gaussian(which: str, mean: Tensor, cov: Tensor) -> None:
    if mean.dim() != 1:
        raise ValueError(f"frechet_distance: mean_{which} must be a vector (D,); got shape {tuple(mean.shape)}")
    if cov.shape != (mean.shape[0], mean.shape[0]):
        raise ValueError(
            f"frechet_distance: cov_{which} must be ({mean.shape[0]}, {mean.shape[0]}) to match mean_{which}; "
            f"got shape {tuple(cov.shape)}"
        )
    scale = cov.abs().max().clamp(min=1e-300)
    if (cov - cov.T).abs().max() > 1e-8 * scale:
        raise ValueError(
            f"frechet_distance: cov_{which} is not symmetric — pass a covariance matrix (gaussian_statistics)"
        )


def _check_semidefinite(which: str, eigenvalues: Tensor) -> None:
    # Rounding leaves eigenvalues of a singular covariance around -1e-16 times the largest: those are zeros.
    # A clearly negative one means the matrix is no covariance, and clamping it would hide the mistake.
    if eigenvalues.min() < -1e-8 * eigenvalues.abs().max().clamp(min=1e-300):
        raise ValueError(
            f"frechet_distance: cov_{which} is not positive semi-definite (eigenvalue {eigenvalues.min().item():.3g}) "
            "— pass a covariance matrix (gaussian_statistics)"
        )


def _symmetric_sqrt(matrix: Tensor) -> Tensor:
    """The symmetric PSD square root ``V diag(sqrt(max(w, 0))) V^T`` of a symmetric PSD ``matrix``."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    _check_semidefinite("a", eigenvalues)
    return (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T
