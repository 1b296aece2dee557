"""Small tables for first models: iris and digits (classification), diabetes (regression) (labs 1-3).

They ship inside scikit-learn, so nothing is downloaded; here they come back as tensors ready for
``nn.Linear``, optionally standardised.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dpdl.data.store import fetch

__all__ = ["sklearn_dataset", "SKLEARN_DATASETS"]

# name -> (loader in sklearn.datasets, task)
SKLEARN_DATASETS = {
    "iris": ("load_iris", "classification"),  # 150 x 4 flower measurements, 3 species
    "digits": ("load_digits", "classification"),  # 1797 x 64 pixels (8x8, values 0-16), digits 0-9
    "diabetes": ("load_diabetes", "regression"),  # 442 x 10 (already centred and scaled), disease progression
}


def sklearn_dataset(
    name: str, *, as_tensors: bool = True, dtype: torch.dtype = torch.float32, standardize: bool = False
) -> tuple[Tensor, Tensor] | tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of a scikit-learn toy dataset: ``X`` ``(N, D)`` in ``dtype``; ``y`` ``(N,)``.

    ``y`` is int64 class indices for iris and digits and ``dtype`` targets for diabetes.
    ``standardize=True`` rescales each feature to mean 0 and standard deviation 1 (constant features,
    such as the blank corner pixels of digits, are only centred). ``as_tensors=False`` gives NumPy arrays.
    For a fair test score, standardise with the training part's statistics instead.
    """
    if name not in SKLEARN_DATASETS:
        known = ", ".join(repr(n) for n in SKLEARN_DATASETS)
        raise ValueError(f"unknown scikit-learn dataset {name!r}; known: {known}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype such as torch.float32; got {dtype}")
    fetch(name)  # the registry entry: a clear error if scikit-learn is missing
    import sklearn.datasets

    loader, task = SKLEARN_DATASETS[name]
    X, y = getattr(sklearn.datasets, loader)(return_X_y=True)
    X, y = X.astype(np.float64), np.asarray(y)
    if standardize:
        std = X.std(axis=0)
        X = (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
    X_t = torch.from_numpy(X).to(dtype)
    y_t = torch.from_numpy(y).long() if task == "classification" else torch.from_numpy(y).to(dtype)
    if as_tensors:
        return X_t, y_t
    return X_t.numpy(), y_t.numpy()
