"""Load a model a notebook trained before, or train it now: ``load_or_train``.

Several notebooks need a model that takes longer to train than a cell should (lab 5's CNN, lab 8's
generators, the classifier that judges them). Each trains it once and caches the weights in the
per-user data cache, so a second run, or a later notebook, loads them in a second. The file name holds
a hash of the training recipe, so changing the recipe retrains instead of loading stale weights.

``model, how = load_or_train("lab5-better-cnn", build=BetterCNN, train=train_fn, recipe={"lr": 3e-3})``
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dpdl.device import device as _default_device

__all__ = ["load_or_train", "weights_path"]


def load_or_train(
    name: str,
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], Any],
    *,
    recipe: Mapping[str, Any] | None = None,
    device: torch.device | str | None = None,
) -> tuple[nn.Module, str]:
    """``(model, how)``: ``build()``'s model with the cached weights (``how == "loaded"``), or trained now.

    ``build()`` returns a fresh, untrained model; ``train(model)`` trains it in place (its return value is
    ignored). The weights live at :func:`weights_path` ``(name, recipe)``, written atomically so another
    process never reads half a file. A file that is damaged, or whose tensors do not fit ``build()``'s
    model, is trained again with a printed reason. The model comes back on ``device`` (default
    :func:`dpdl.device`) in eval mode.
    """
    path = weights_path(name, recipe)
    target = torch.device(device) if device is not None else _default_device()
    model = _built(build, name)
    how = "loaded" if _load_into(model, path) else "trained"
    if how == "trained":
        model.to(target).train()
        train(model)
        _save(model, path)
    return model.to(target).eval(), how


def weights_path(name: str, recipe: Mapping[str, Any] | None = None) -> Path:
    """Where ``name``'s weights for ``recipe`` are cached: ``<data cache>/weights/<name>-<recipe hash>.pt``.

    The data cache is ``DPDL_DATA_DIR`` or the per-user cache directory, never a shared ``/tmp`` folder that
    a second user could not write or could fill with other weights.
    """
    from dpdl.data.store import cache_dir  # the data package loads torchvision: only when weights are needed

    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"load_or_train: name must be letters, digits, '-', '_' or '.', got {name!r}")
    return cache_dir() / "weights" / f"{name}-{_recipe_hash(recipe)}.pt"


def _recipe_hash(recipe: Mapping[str, Any] | None) -> str:
    if recipe is not None and not isinstance(recipe, Mapping):
        raise TypeError(f"load_or_train: recipe must be a dict of settings, got {type(recipe).__name__}")
    try:
        text = json.dumps(dict(recipe or {}), sort_keys=True)
    except TypeError as error:
        raise TypeError(f"load_or_train: recipe values must be numbers, strings, lists or dicts ({error})") from None
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _built(build: Callable[[], nn.Module], name: str) -> nn.Module:
    model = build()
    if not isinstance(model, nn.Module):
        raise TypeError(f"load_or_train({name!r}): build() must return an nn.Module, got {type(model).__name__}")
    return model


def _load_into(model: nn.Module, path: Path) -> bool:
    if not path.exists():
        return False
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        TypeError,
        pickle.UnpicklingError,
    ) as error:  # damaged, or other code's
        print(f"could not load {path.name} ({type(error).__name__}); training again")
        return False
    return True


def _save(model: nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(model.state_dict(), partial)
        os.replace(partial, path)  # readers never see half a file
    finally:
        partial.unlink(missing_ok=True)
