"""Fast loaders for small datasets that fit in memory: the whole split is one tensor on the device.

A ``DataLoader`` over a torchvision dataset opens a PIL image per example; for MNIST that costs more
than the model. Here batches are cut from one uint8 tensor and scaled on the fly (labs 4, 5, 8).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

__all__ = ["TensorLoader", "mnist_loaders"]

Stat = float | Sequence[float] | Tensor


class TensorLoader:
    """Iterate ``(X_batch, y_batch)`` over in-memory tensors, like a ``DataLoader`` but without workers.

    ``X`` is ``(N, ...)``: uint8 images stay uint8 (4x less memory) and each batch is scaled to [0, 1]
    in ``dtype``; float ``X`` is used as it is. Then, if ``normalize=(mean, std)`` is given, the batch
    becomes ``(X - mean) / std`` (numbers, or one per channel, i.e. per entry of dim 1 of the batch).
    ``X`` of shape ``(N, H, W)`` gives batches ``(B, 1, H, W)`` for a CNN; ``flatten=True`` gives
    ``(B, H*W)`` for an MLP. ``y`` is ``(N, ...)`` and is sliced alongside. Both live on ``device``
    (default: where ``X`` already is). With ``shuffle=True`` each pass draws a new order from
    ``generator`` (a ``torch.Generator`` or an int seed; default: torch's global RNG, so
    ``seed_everything`` makes runs repeatable).

    ``len(loader)`` is the number of batches per epoch; ``loader.dataset_size`` the number of examples.
    """

    def __init__(
        self,
        X: Tensor,
        y: Tensor,
        batch_size: int = 128,
        shuffle: bool = False,
        drop_last: bool = False,
        device: torch.device | str | None = None,
        normalize: tuple[Stat, Stat] | None = None,
        flatten: bool = False,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | int | None = None,
    ) -> None:
        _check_data(X, y)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        if drop_last and batch_size > len(X):
            raise ValueError(
                f"batch_size={batch_size} is larger than the {len(X)} examples and drop_last=True, so the "
                "loader would yield no batch at all; use a smaller batch_size or drop_last=False"
            )
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype such as torch.float32; got {dtype}")
        self.device = torch.device(device) if device is not None else X.device
        self.X = X.to(self.device)
        self.y = y.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.flatten = flatten
        self.dtype = dtype
        self.generator = torch.Generator().manual_seed(generator) if isinstance(generator, int) else generator
        self._add_channel = X.dim() == 3  # (N, H, W): greyscale images without a channel axis
        self._scale, self._shift = self._affine(normalize)

    @property
    def dataset_size(self) -> int:
        """The number of examples ``N``."""
        return len(self.X)

    def __len__(self) -> int:
        n, b = len(self.X), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n, b = len(self.X), self.batch_size
        stop = n - n % b if self.drop_last else n
        order = None
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.device)
        for start in range(0, stop, b):
            if order is None:  # slices are views of the data: never change them in place
                X_batch, y_batch, fresh = self.X[start : start + b], self.y[start : start + b].clone(), False
            else:  # index_select copies, and is several times faster than X[index] on CPUs
                index = order[start : start + b]
                X_batch, y_batch, fresh = self.X.index_select(0, index), self.y.index_select(0, index), True
            yield self._convert(X_batch, fresh), y_batch

    def __repr__(self) -> str:
        return (
            f"TensorLoader({self.dataset_size} examples, batch_size={self.batch_size}, {len(self)} batches, "
            f"shuffle={self.shuffle}, device={self.device})"
        )

    def _convert(self, X_batch: Tensor, fresh: bool) -> Tensor:
        """Scale and normalise a batch as ``X * scale + shift``, in place when ``X_batch`` is our own copy."""
        if X_batch.dtype != self.dtype:
            X_batch, fresh = X_batch.to(self.dtype), True
        if self._add_channel:
            X_batch = X_batch.unsqueeze(1)
        if self._scale is not None:
            X_batch = X_batch.mul_(self._scale) if fresh else X_batch * self._scale
            if self._shift is not None:
                X_batch.add_(self._shift)
        elif not fresh:
            X_batch = X_batch.clone()
        if self.flatten:
            X_batch = X_batch.reshape(len(X_batch), -1)
        return X_batch

    def _affine(self, normalize) -> tuple[Tensor | None, Tensor | None]:
        """``scale`` and ``shift`` such that ``X * scale + shift`` is the scaled, normalised batch."""
        scale = 1 / 255 if self.X.dtype == torch.uint8 else 1.0
        if normalize is None:
            if scale == 1.0:
                return None, None
            return torch.tensor(scale, dtype=self.dtype, device=self.device), None
        if not (isinstance(normalize, (tuple, list)) and len(normalize) == 2):
            raise ValueError(f"normalize must be a pair (mean, std) or None; got {normalize!r}")
        ndim = self.X.dim() + (1 if self._add_channel else 0)  # dims of a batch before flattening
        mean, std = (self._stat(value, name, ndim) for value, name in zip(normalize, ("mean", "std")))
        if (std <= 0).any():
            raise ValueError(f"normalize: std must be positive; got {normalize[1]!r}")
        return scale / std, -mean / std

    def _stat(self, value: Stat, name: str, ndim: int) -> Tensor:
        stat = torch.as_tensor(value, dtype=self.dtype, device=self.device)
        if stat.dim() == 0:
            return stat
        if stat.dim() != 1 or ndim < 2:
            raise ValueError(f"normalize: {name} must be a number or a 1-D sequence (one per channel); got {value!r}")
        channels = self.X.shape[1] if not self._add_channel else 1
        if len(stat) != channels:
            raise ValueError(
                f"normalize: {name} has {len(stat)} values but the batches have {channels} channel(s) "
                f"(dim 1 of a batch of shape {(self.batch_size, *([1] if self._add_channel else []), *self.X.shape[1:])})"
            )
        return stat.view(-1, *([1] * (ndim - 2)))


def mnist_loaders(
    batch_size: int = 128,
    device: torch.device | str | None = None,
    val_size: int = 0,
    seed: int = 0,
    dataset: str = "mnist",
    flatten: bool = False,
    normalize: bool = True,
) -> tuple[TensorLoader, ...]:
    """``(train_loader, test_loader)``, or ``(train_loader, val_loader, test_loader)`` when ``val_size > 0``.

    MNIST (``dataset="mnist"``) or Fashion-MNIST (``"fashion_mnist"``) as :class:`TensorLoader` s on
    ``device`` (default: ``dpdl.device()``). Batches are ``(B, 1, 28, 28)`` floats (``(B, 784)`` with
    ``flatten=True``), normalised with the training set's mean and std unless ``normalize=False``, and
    int64 labels ``(B,)``. ``val_size`` examples, drawn at random with ``seed``, are held out of the
    60,000 training images; the training loader reshuffles every epoch from a generator seeded with
    ``seed``, so two runs with the same seed see the same batches.
    """
    from dpdl.data import vision
    from dpdl.device import device as default_device

    readers = {
        "mnist": (vision.mnist_tensors, vision.MNIST_MEAN, vision.MNIST_STD),
        "fashion_mnist": (vision.fashion_mnist_tensors, vision.FASHION_MNIST_MEAN, vision.FASHION_MNIST_STD),
    }
    if dataset not in readers:
        raise ValueError(f"dataset must be 'mnist' or 'fashion_mnist'; got {dataset!r}")
    read, mean, std = readers[dataset]
    X_train, y_train = read("train")
    X_test, y_test = read("test")
    if not isinstance(val_size, int) or isinstance(val_size, bool) or not 0 <= val_size < len(X_train):
        raise ValueError(
            f"val_size must be an int from 0 to {len(X_train) - 1} (examples held out of the "
            f"{len(X_train)} training images); got {val_size!r}"
        )
    device = torch.device(device) if device is not None else default_device()
    options = dict(batch_size=batch_size, device=device, flatten=flatten, normalize=(mean, std) if normalize else None)
    order = torch.randperm(len(X_train), generator=torch.Generator().manual_seed(seed))
    val_index, train_index = order[:val_size], order[val_size:]
    if val_size:  # keep the remaining training images in their original order; the loader shuffles
        train_index = train_index.sort().values
        X_val, y_val = X_train[val_index], y_train[val_index]
        X_train, y_train = X_train[train_index], y_train[train_index]
    train_loader = TensorLoader(X_train, y_train, shuffle=True, generator=seed, **options)
    test_loader = TensorLoader(X_test, y_test, **options)
    if not val_size:
        return train_loader, test_loader
    return train_loader, TensorLoader(X_val, y_val, **options), test_loader


def _check_data(X, y) -> None:
    for name, value in (("X", X), ("y", y)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__} (use torch.as_tensor)")
        if value.dim() == 0:
            raise ValueError(f"{name} must have a first (example) dimension; got a 0-d tensor")
    if len(X) != len(y):
        raise ValueError(f"X and y must hold the same number of examples; got len(X)={len(X)} and len(y)={len(y)}")
    if len(X) == 0:
        raise ValueError("X and y are empty; a loader needs at least one example")
    if X.dtype != torch.uint8 and not X.is_floating_point():
        raise TypeError(
            f"X must be uint8 (pixels 0-255, scaled to [0, 1] per batch) or floating point; got {X.dtype}. "
            "Convert it first, e.g. X.float()"
        )
