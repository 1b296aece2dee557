"""torchbearer on today's torch: a device-aware, CI-quiet ``Trial`` that refuses the callbacks that would crash.

torchbearer 0.5.5 (lab 4's training framework) predates later changes to torch's schedulers and
torchvision's ``make_grid``. Four of its callbacks therefore fail in the middle of ``trial.run()``, after
minutes of training; :func:`make_trial` refuses them when the trial is built, saying what to use instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torchbearer
from torch import Tensor, nn
from torchbearer.callbacks import imaging as _tb_imaging
from torchbearer.callbacks import tensor_board as _tb_tensor_board

from dpdl.device import device as _default_device
from dpdl.progress import progress_enabled

__all__ = ["make_trial"]

# What to do instead of each broken callback; make_grid's message serves MakeGrid and ImagingCallback.make_grid().
_GRID_FIX = (
    "it calls torchvision.utils.make_grid(range=...), an argument torchvision no longer has. Collect the images with a callback "
    "of your own (e.g. @torchbearer.callbacks.on_step_training keeping state[torchbearer.X][:8]) and draw them with "
    "torchvision.utils.make_grid(images, normalize=True, value_range=(low, high)) or dpdl.plot.image_grid(images)"
)
_PLATEAU_FIX = (
    "it passes verbose= to torch's ReduceLROnPlateau, which no longer takes it. Step torch's scheduler from "
    "a callback instead: plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer), then "
    "@torchbearer.callbacks.on_end_epoch def step_plateau(state): plateau.step(state[torchbearer.METRICS]['val_loss'])"
)


def make_trial(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    *,
    metrics: Sequence[str] = ("loss", "acc"),
    callbacks: Sequence[torchbearer.Callback] = (),
    device: torch.device | str | None = None,
    verbose: int | None = None,
) -> torchbearer.Trial:
    """A ``torchbearer.Trial`` on ``device`` (default :func:`dpdl.device`), quiet under CI.

    ``verbose`` defaults to 1 (one progress bar per epoch), or 0 when progress bars are off (``CI``,
    ``DPDL_PROGRESS=0``) so that notebook outputs stay stable. Add data and run it as usual:
    ``make_trial(...).with_generators(train_loader, val_loader).run(epochs)``.

    torchbearer callbacks that crash with this torch or torchvision in the middle of ``run()`` are refused
    here with a ``TypeError`` that says what to do instead: ``ReduceLROnPlateau``, ``imaging.MakeGrid``,
    ``TensorBoardImages`` and any imaging callback after ``.make_grid()``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    callbacks = [callbacks] if isinstance(callbacks, torchbearer.Callback) else list(callbacks)
    for callback in callbacks:
        _refuse_broken(callback)
    if verbose is None:
        verbose = 1 if progress_enabled() else 0
    device = _default_device() if device is None else torch.device(device)
    trial = torchbearer.Trial(model, optimizer, loss_fn, metrics=metrics, callbacks=callbacks, verbose=verbose)
    return trial.to(device)


# --- helpers ---------------------------------------------------------------------------------------


def _refuse_broken(callback: Any) -> None:
    """Fail at once, with what to do instead, rather than with an obscure TypeError in the middle of ``run``."""
    for inner in _callbacks_within(callback):
        fix = _broken_because(inner)
        if fix is not None:
            name = f"{type(inner).__module__}.{type(inner).__name__}"
            raise TypeError(f"{name} crashes in the middle of trial.run() with this torch/torchvision: {fix}")


def _broken_because(callback: Any) -> str | None:
    if isinstance(callback, torchbearer.callbacks.ReduceLROnPlateau):
        return _PLATEAU_FIX
    if isinstance(callback, (_tb_imaging.MakeGrid, _tb_tensor_board.TensorBoardImages)):
        return _GRID_FIX
    if isinstance(callback, _tb_imaging.ImagingCallback) and any(
        function.__qualname__.startswith("ImagingCallback.make_grid.") for function in _wrapped(callback.on_batch)
    ):
        return _GRID_FIX.replace("Collect the images", "Leave out .make_grid(), collect the images", 1)
    return None


def _callbacks_within(callback: Any) -> Iterable[Any]:
    """The callback and, for a ``CallbackList``, every callback inside it."""
    yield callback
    for inner in getattr(callback, "callback_list", None) or ():
        yield from _callbacks_within(inner)


def _wrapped(function: Any, depth: int = 0) -> Iterable[Any]:
    """``function`` and the functions its closure holds: the layers torchbearer's decorators wrapped around it."""
    if depth > 20 or not callable(function):
        return
    yield function
    for cell in getattr(function, "__closure__", None) or ():
        try:
            content = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if callable(content) and hasattr(content, "__qualname__") and not isinstance(content, type):
            yield from _wrapped(content, depth + 1)
