"""Figures the labs draw again and again: training curves, image grids, loss landscapes with optimiser
paths (lab 3) and pictures of a 2-D latent space (lab 8).

Every function returns the matplotlib ``Figure`` and never calls ``plt.show()``, so scripts and tests can
``fig.savefig(...)`` and everything runs under ``Agg``. In a notebook write ``_ = image_grid(...)``: the
inline backend shows the figure (as PNG) at the end of the cell, and a figure left as the cell's last
expression would be shown twice.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor
from torchvision.utils import make_grid

__all__ = [
    "plot_history",
    "image_grid",
    "contour_with_paths",
    "latent_grid",
    "decode_latent_grid",
    "scatter_latent",
]

# Prefixes that name the split a metric was measured on; the rest of the key is the metric family.
_SPLIT_PREFIXES = ("train_", "val_", "valid_", "validation_", "test_", "running_")
# Bookkeeping entries of a history (torchbearer adds the step counts) that are not curves.
_NOT_METRICS = {"epoch", "epochs"}


def plot_history(history: Any, metrics: str | Sequence[str] | None = None) -> Figure:
    """Training curves, one axis per metric family: ``loss`` and ``val_loss`` share one, ``acc`` and ``val_acc`` another.

    ``history`` is a dict of per-epoch lists (``{"loss": [...], "val_loss": [...]}``), a list of
    per-epoch dicts (what torchbearer's ``trial.run()`` returns), or anything with ``.to_dict()``
    (``dpdl.train.History``). A key's family is its name without a ``train_``/``val_``/``test_``/
    ``running_`` prefix. ``metrics`` picks families (``"loss"`` or ``["loss", "acc"]``; ``"val_loss"``
    means its family, ``loss``); by default all. ``epoch`` and step counters (``*_steps``) are bookkeeping, never curves; x is the ``epoch``
    column when there is one, else 1, 2, 3...
    """
    series = _history_series(history)
    families: dict[str, list[str]] = {}
    for key in series:
        if key not in _NOT_METRICS and not key.endswith("_steps"):
            families.setdefault(_metric_family(key), []).append(key)
    if metrics is None:
        chosen = list(families)
    else:
        chosen = [metrics] if isinstance(metrics, str) else list(metrics)
        chosen = list(dict.fromkeys(_metric_family(m) if m not in families else m for m in chosen))  # val_loss -> loss
        unknown = [m for m in chosen if m not in families]
        if unknown:
            raise ValueError(
                f"plot_history: no metric family {unknown} in the history; it has {sorted(families)} "
                "(families are keys without a train_/val_/test_ prefix)"
            )
    if not chosen:
        raise ValueError(f"plot_history: nothing to plot — the history has only {sorted(series)} (no metrics)")
    fig, axes = plt.subplots(1, len(chosen), figsize=(4.5 * len(chosen), 3.5), squeeze=False)
    for ax, family in zip(axes[0], chosen):
        for key in families[family]:
            values = series[key]
            epochs = series.get("epoch", np.array([]))
            if len(epochs) != len(values):  # no (matching) epoch column: count from 1
                epochs = np.arange(1, len(values) + 1)
            ax.plot(epochs, values, marker="o" if len(values) <= 30 else None, markersize=3, label=key)
        ax.set_title(family)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(family)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def image_grid(
    images: Tensor | np.ndarray | Sequence[Tensor],
    labels: Sequence[Any] | Tensor | None = None,
    nrow: int = 8,
    title: str | None = None,
    cmap: str = "gray",
) -> Figure:
    """A batch of images on one figure: ``(B, C, H, W)`` with 1 or 3 channels, or ``(B, H, W)``.

    Without ``labels`` the images are tiled by ``torchvision.utils.make_grid`` into one picture,
    ``nrow`` per row; with ``labels`` (one per image: class ids, names, ``"pred 3 / true 5"``...) each
    image gets its own small axis titled by its label. Values in [0, 1] (``ToTensor``) or ``uint8`` are
    shown as they are; anything else (normalised inputs, logits) is rescaled to [0, 1] over the batch.
    """
    batch = _as_image_batch(images)
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"image_grid: nrow must be a positive int; got {nrow!r}")
    num_images = batch.shape[0]
    if labels is None:
        grid = make_grid(batch, nrow=nrow, padding=2, pad_value=0.5)  # (3, H', W'); gray is repeated 3 times
        width = min(max(1.2 * min(nrow, num_images), 2.5), 12)
        fig, ax = plt.subplots(figsize=(width, width * grid.shape[1] / grid.shape[2]))
        _show_image(ax, grid if batch.shape[1] == 3 else grid[:1], cmap)
    else:
        labels = _as_label_list(labels)
        if len(labels) != num_images:
            raise ValueError(f"image_grid: got {num_images} images but {len(labels)} labels; pass one label per image")
        columns = min(nrow, num_images)
        rows = math.ceil(num_images / columns)
        fig = plt.figure(figsize=(1.5 * columns, 1.7 * rows))
        for index, (image, label) in enumerate(zip(batch, labels)):
            ax = fig.add_subplot(rows, columns, index + 1)
            _show_image(ax, image, cmap)
            ax.set_title(str(label), fontsize=9)
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def contour_with_paths(
    f: Callable[[Any, Any], Any],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    paths: Mapping[str, Any] | None = None,
    levels: int | Sequence[float] = 30,
    log_scale: bool = False,
    resolution: int = 200,
    *,
    ax: Axes | None = None,
) -> Figure:
    """Contours of ``f(x, y)`` over ``xlim x ylim`` with optimiser paths on top (lab 3: quadratic, Himmelblau, Rastrigin).

    ``f`` is called once on two ``(resolution, resolution)`` float tensors and must work elementwise
    (``torch`` ops or operators; numpy functions accept tensors too). ``paths`` maps a name to the
    visited points, an ``(N, 2)`` array or tensor or a list of ``(2,)`` tensors; each becomes one line
    with markers, its start ringed. ``log_scale=True`` spaces the levels geometrically, which shows the
    floor of a steep valley (``f`` must then be ``>= 0``). Pass ``ax`` to draw into an existing axis.
    """
    x_low, x_high = _check_limits("xlim", xlim)
    y_low, y_high = _check_limits("ylim", ylim)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"contour_with_paths: resolution must be an int >= 2; got {resolution!r}")
    xs = torch.linspace(x_low, x_high, resolution)
    ys = torch.linspace(y_low, y_high, resolution)
    grid_x, grid_y = torch.meshgrid(xs, ys, indexing="xy")  # (resolution, resolution), rows follow y
    with warnings.catch_warnings():  # numpy ufuncs on tensors work, but torch warns about numpy 2's __array_wrap__
        warnings.filterwarnings("ignore", message=".*__array_wrap__", category=DeprecationWarning)
        values = _to_numpy(f(grid_x, grid_y))
    if values.shape != tuple(grid_x.shape):
        raise ValueError(
            f"contour_with_paths: f(x, y) must return one value per grid point, shape {tuple(grid_x.shape)}; "
            f"got {values.shape} — write f with elementwise tensor operations (no sum over the inputs)"
        )
    named_paths = {name: _check_path(name, path) for name, path in (paths or {}).items()}
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 5))
    else:
        fig = ax.figure
    norm = None
    if log_scale:
        finite = values[np.isfinite(values)]
        if finite.size == 0 or finite.min() < 0:
            raise ValueError(
                "contour_with_paths: log_scale=True needs f >= 0 over the window; got a minimum of "
                f"{finite.min() if finite.size else 'nan'} — shift f or use log_scale=False"
            )
        positive = finite[finite > 0]
        if isinstance(levels, int) and positive.size:
            levels = np.geomspace(positive.min(), max(positive.max(), positive.min() * 1.0001), levels)
        norm = LogNorm()
    contours = ax.contour(xs.numpy(), ys.numpy(), values, levels=levels, cmap="viridis", norm=norm)
    fig.colorbar(contours, ax=ax, format="%.3g")
    for name, points in named_paths.items():
        (line,) = ax.plot(points[:, 0], points[:, 1], marker="o", markersize=3, linewidth=1.5, label=name)
        ax.scatter(points[:1, 0], points[:1, 1], s=60, facecolors="none", edgecolors=line.get_color())
    if named_paths:
        ax.legend()
    ax.set_xlim(x_low, x_high)
    ax.set_ylim(y_low, y_high)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    return fig


def latent_grid(
    decode: Callable[[Tensor], Tensor],
    latent_range: tuple[float, float] = (-4.0, 4.0),
    n: int = 21,
    image_shape: tuple[int, int] = (28, 28),
    *,
    sigmoid: bool = False,
    ax: Axes | None = None,
) -> Figure:
    """The images a decoder makes from a regular ``n x n`` grid over ``latent_range``² of a 2-D latent space.

    The book's picture is ``n=21`` points per side over ``[-4, 4]²``. Tiles are laid out like a scatter
    plot of ``z`` (``z[0]`` grows to the right, ``z[1]`` upwards) and the axes are labelled in latent
    units, so ``scatter_latent`` codes can be compared with it. ``sigmoid=True`` turns logits (the
    decoders of ``dpdl.models``) into pixel values. See ``decode_latent_grid`` for the tensor itself.
    """
    low, high = _check_limits("latent_range", latent_range)
    picture = decode_latent_grid(decode, latent_range, n, image_shape, sigmoid=sigmoid)
    half_step = (high - low) / (n - 1) / 2 if n > 1 else (high - low) / 2
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 7))
    else:
        fig = ax.figure
    in_unit_range = bool(picture.min() >= 0 and picture.max() <= 1)  # pixel values: keep 0 black, 1 white
    ax.imshow(
        picture.numpy(),
        cmap="gray",
        vmin=0 if in_unit_range else None,
        vmax=1 if in_unit_range else None,
        extent=(low - half_step, high + half_step, low - half_step, high + half_step),
    )
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    return fig


def decode_latent_grid(
    decode: Callable[[Tensor], Tensor],
    latent_range: tuple[float, float] = (-4.0, 4.0),
    n: int = 21,
    image_shape: tuple[int, int] = (28, 28),
    *,
    sigmoid: bool = False,
    device: torch.device | str | None = None,
) -> Tensor:
    """Decode an ``n x n`` latent grid into one ``(n * H, n * W)`` CPU tensor, ``(H, W) = image_shape``.

    Tile ``(i, j)`` (row ``i`` from the top, column ``j`` from the left) holds ``decode(z)`` for
    ``z = (v[j], v[n - 1 - i])`` with ``v = linspace(low, high, n)``: the top row is the largest
    ``z[1]``, as on a plot. ``decode`` gets all ``n * n`` points at once, ``(n * n, 2)``, and may return
    ``(n * n, H * W)``, ``(n * n, H, W)`` or ``(n * n, 1, H, W)``. It runs under ``torch.no_grad()`` on
    ``device`` (default: the device of the module ``decode`` belongs to, else the CPU).
    """
    low, high = _check_limits("latent_range", latent_range)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"decode_latent_grid: n must be a positive int (the book uses 21); got {n!r}")
    if (
        not isinstance(image_shape, (tuple, list))
        or len(image_shape) != 2
        or not all(isinstance(s, int) and s > 0 for s in image_shape)
    ):
        raise ValueError(f"decode_latent_grid: image_shape must be (H, W), e.g. (28, 28); got {image_shape!r}")
    height, width = image_shape
    values = torch.linspace(low, high, n)
    z1, z0 = torch.meshgrid(values.flip(0), values, indexing="ij")  # row i: z[1] = v[n-1-i]; column j: z[0] = v[j]
    z = torch.stack([z0.reshape(-1), z1.reshape(-1)], dim=1)  # (n*n, 2), row-major over tiles
    with torch.no_grad():
        decoded = decode(z.to(device if device is not None else _module_device(decode)))
    if not isinstance(decoded, Tensor):
        raise TypeError(f"decode_latent_grid: decode must return a tensor; got {type(decoded).__name__}")
    if decoded.shape[0] != n * n or decoded[0].numel() != height * width:
        raise ValueError(
            f"decode_latent_grid: decode returned shape {tuple(decoded.shape)} for {n * n} latent points; "
            f"expected ({n * n}, {height * width}) or ({n * n}, 1, {height}, {width}) — pass image_shape=(H, W)"
        )
    tiles = decoded.detach().float().cpu().reshape(n, n, height, width)
    if sigmoid:
        tiles = torch.sigmoid(tiles)
    return tiles.permute(0, 2, 1, 3).reshape(n * height, n * width)  # (row, y, column, x) -> picture


def scatter_latent(
    z: Tensor | np.ndarray,
    y: Tensor | np.ndarray | Sequence[int] | None = None,
    title: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """2-D latent codes ``z`` ``(N, 2)`` as points, one colour per class ``y`` ``(N,)`` (legend by class).

    Shows whether an encoder keeps classes apart and how much of ``[-4, 4]²`` a VAE's codes fill.
    ``class_names[k]`` labels class ``k`` (e.g. FashionMNIST's names); codes with more dimensions must
    be reduced first (PCA, t-SNE).
    """
    codes = _to_numpy(z)
    if codes.ndim != 2 or codes.shape[1] != 2:
        raise ValueError(
            f"scatter_latent: z must have shape (N, 2); got {codes.shape} — encode with latent_dim=2 or reduce "
            "the codes to 2-D first (sklearn.decomposition.PCA, sklearn.manifold.TSNE)"
        )
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 5))
    else:
        fig = ax.figure
    if y is None:
        ax.scatter(codes[:, 0], codes[:, 1], s=4, alpha=0.6)
    else:
        classes = np.asarray(y.detach().cpu() if isinstance(y, Tensor) else y).reshape(-1)
        if classes.shape[0] != codes.shape[0]:
            raise ValueError(
                f"scatter_latent: got {codes.shape[0]} codes but {classes.shape[0]} labels y; pass one per code"
            )
        if class_names is not None and not all(0 <= int(c) < len(class_names) for c in np.unique(classes)):
            raise ValueError(
                f"scatter_latent: class_names has {len(class_names)} names but y holds classes "
                f"{np.unique(classes).tolist()}; pass one name per class id 0..K-1"
            )
        colours = plt.get_cmap("tab10" if len(np.unique(classes)) <= 10 else "tab20")
        for index, label in enumerate(np.unique(classes)):
            name = str(label) if class_names is None else class_names[int(label)]
            chosen = classes == label
            ax.scatter(codes[chosen, 0], codes[chosen, 1], s=4, alpha=0.6, color=colours(index % colours.N), label=name)
        ax.legend(markerscale=3, fontsize=8, loc="best")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    if title is not None:
        ax.set_title(title)
    return fig


def _history_series(history: Any) -> dict[str, np.ndarray]:
    """Any supported history -> ``{key: float array over epochs}``."""
    if hasattr(history, "to_dict") and not isinstance(history, Mapping):
        history = history.to_dict()
    if isinstance(history, Sequence) and not isinstance(history, (str, bytes)):
        if not all(isinstance(epoch, Mapping) for epoch in history):
            raise TypeError("plot_history: a list history must hold one dict of metrics per epoch (torchbearer style)")
        keys: dict[str, None] = {}
        for epoch in history:
            keys.update(dict.fromkeys(epoch))
        history = {key: [epoch.get(key) for epoch in history] for key in keys}
    if not isinstance(history, Mapping):
        raise TypeError(
            "plot_history expects a dict of per-epoch lists, a list of per-epoch dicts or an object with "
            f".to_dict(); got {type(history).__name__}"
        )
    if not history:
        raise ValueError("plot_history: the history is empty — train for at least one epoch first")
    series = {}
    for key, values in history.items():
        if isinstance(values, Mapping):  # e.g. pandas' DataFrame.to_dict(): {column: {row: value}}
            values = list(values.values())
        if isinstance(values, (Tensor, np.ndarray)):
            values = values.tolist()
        if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
            raise TypeError(
                f"plot_history: history[{key!r}] must be a list of per-epoch numbers; got {type(values).__name__}"
            )
        try:
            series[str(key)] = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
        except (TypeError, ValueError) as err:
            raise TypeError(f"plot_history: history[{key!r}] must hold numbers; {err}") from None
    return series


def _metric_family(key: str) -> str:
    for prefix in _SPLIT_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            return key[len(prefix) :]
    return key


def _as_image_batch(images: Any) -> Tensor:
    """``(B, C, H, W)`` / ``(B, H, W)`` / list of ``(C, H, W)`` -> float CPU ``(B, C, H, W)`` in [0, 1]."""
    if isinstance(images, (list, tuple)) and images and all(isinstance(i, Tensor) for i in images):
        images = torch.stack(list(images))
    batch = torch.as_tensor(images).detach().cpu()
    if batch.dim() == 3:
        batch = batch.unsqueeze(1)
    if batch.dim() != 4:
        hint = " — reshape flat images, e.g. X.view(-1, 1, 28, 28)" if batch.dim() == 2 else ""
        raise ValueError(
            f"image_grid expects images of shape (B, C, H, W) or (B, H, W); got {tuple(batch.shape)}{hint}"
        )
    if batch.shape[0] == 0:
        raise ValueError("image_grid: got an empty batch (B = 0)")
    if batch.shape[1] not in (1, 3):
        hint = " — channels last? use images.permute(0, 3, 1, 2)" if batch.shape[3] in (1, 3) else ""
        raise ValueError(
            f"image_grid shows 1- or 3-channel images (B, C, H, W); got {batch.shape[1]} channels in "
            f"shape {tuple(batch.shape)}{hint}"
        )
    if batch.dtype == torch.uint8:
        return batch.float() / 255
    batch = batch.float()
    low, high = batch.min(), batch.max()
    if low < 0 or high > 1:
        batch = (batch - low) / (high - low).clamp_min(1e-12)
    return batch


def _show_image(ax: Axes, image: Tensor, cmap: str) -> None:
    """One ``(C, H, W)`` image in [0, 1] on ``ax``, without ticks."""
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap=cmap, vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0).numpy())
    ax.axis("off")


def _as_label_list(labels: Any) -> list[Any]:
    if isinstance(labels, Tensor):
        return labels.detach().cpu().reshape(-1).tolist()
    if isinstance(labels, np.ndarray):
        return labels.reshape(-1).tolist()
    return list(labels)


def _check_limits(name: str, limits: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in limits)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high) of numbers; got {limits!r}") from None
    if not low < high:
        raise ValueError(f"{name} must satisfy low < high; got {limits!r}")
    return low, high


def _check_path(name: str, path: Any) -> np.ndarray:
    if isinstance(path, (list, tuple)) and path and all(isinstance(p, Tensor) for p in path):
        path = torch.stack([p.detach().reshape(-1) for p in path])
    points = _to_numpy(path)
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] == 0:
        raise ValueError(
            f"contour_with_paths: path {name!r} must be an (N, 2) array of visited (x, y) points with N >= 1; "
            f"got shape {points.shape} — stack the points, e.g. torch.stack(points)"
        )
    return points


def _to_numpy(values: Any) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values, dtype=float)


def _module_device(decode: Callable[[Tensor], Tensor]) -> torch.device:
    """The device of the module a bound method (``model.decode``) or module belongs to; else the CPU."""
    owner = getattr(decode, "__self__", decode)
    if isinstance(owner, torch.nn.Module):
        parameter = next(owner.parameters(), None)
        if parameter is not None:
            return parameter.device
    return torch.device("cpu")
