"""torchbearer on today's torch: a device-aware, CI-quiet ``Trial`` and fixes for three parts that broke.

torchbearer 0.5.5 (the course's training framework) predates torch 2.6's weights-only loading and later
changes to torch's schedulers and torchvision's ``make_grid``; the drop-in replacements are
:func:`load_trial_checkpoint`, :class:`ReduceLROnPlateau` and :class:`MakeGrid`.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
from typing import Any, Callable, Iterable, Sequence

import torch
import torchbearer
import torchvision.utils
from torch import Tensor, nn
from torchbearer.callbacks import imaging as _tb_imaging
from torchbearer.callbacks import torch_scheduler as _tb_scheduler

from dpdl.device import device as _default_device
from dpdl.progress import progress_enabled

__all__ = ["make_trial", "load_trial_checkpoint", "ReduceLROnPlateau", "MakeGrid"]


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


def load_trial_checkpoint(
    trial: torchbearer.Trial,
    path: str | os.PathLike,
    *,
    resume: bool = True,
    map_location: torch.device | str | None = None,
    trusted: bool = False,
) -> torchbearer.Trial:
    """Load a checkpoint saved by torchbearer's checkpointers or ``torch.save(trial.state_dict())`` into ``trial``.

    Since torch 2.6, ``torch.load`` only unpickles tensors and plain containers (``weights_only=True``), and a
    torchbearer checkpoint also holds its ``StateKey`` dict keys and the classes of the trial's callbacks, so
    ``trial.load_state_dict(torch.load(path))`` fails. This loads it still with ``weights_only=True``,
    allowing exactly those: torchbearer's ``StateKey`` and callback classes (and dpdl's), and the classes
    of the callbacks in ``trial``. Anything else is refused unless ``trusted=True`` (full unpickling: only for
    files you made yourself). ``resume=False`` loads only the model's weights. ``map_location`` defaults
    to the trial's device, so a checkpoint saved on a GPU loads on a laptop. Returns ``trial``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {path!r}")
    if map_location is None:
        map_location = trial.state[torchbearer.DEVICE]
    if trusted:
        state = torch.load(path, map_location=map_location, weights_only=False)
    else:
        try:
            with torch.serialization.safe_globals(_trusted_classes(trial)):
                state = torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            refused = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(err)))) or [str(err)]
            raise ValueError(
                f"{path} holds Python objects that are not torchbearer's: {refused}. torch loads only weights "
                "and known classes by default, since unpickling can run code; if you made this file yourself, "
                "pass trusted=True"
            ) from err
    return trial.load_state_dict(state, resume=resume)


class ReduceLROnPlateau(_tb_scheduler.TorchScheduler):
    """torchbearer's ``ReduceLROnPlateau`` callback for torch versions whose scheduler has no ``verbose`` argument.

    Multiplies the learning rate by ``factor`` when ``monitor`` (a metric name such as ``"val_loss"``)
    has not improved for ``patience`` epochs; ``mode="max"`` for metrics that should grow (``"val_acc"``).
    The other arguments are those of ``torch.optim.lr_scheduler.ReduceLROnPlateau``. ``verbose=True``
    prints each reduction, as torch used to.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        verbose: bool = False,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | list[float] = 0,
        eps: float = 1e-8,
        step_on_batch: bool = False,
    ) -> None:
        builder = functools.partial(
            torch.optim.lr_scheduler.ReduceLROnPlateau,
            mode=mode,
            factor=factor,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
            min_lr=min_lr,
            eps=eps,
        )
        groups = len(min_lr) if isinstance(min_lr, (list, tuple)) else 1  # a list has one entry per param group
        dummy = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)]} for _ in range(groups)], lr=1.0)
        builder(dummy)  # bad arguments fail here rather than in the middle of run()
        super().__init__(builder, monitor=monitor, step_on_batch=step_on_batch)
        self.verbose = verbose

    def _step(self, state: dict, current: float | None = None) -> None:  # torchbearer's EPOCH counts from 0
        groups = state[torchbearer.OPTIMIZER].param_groups
        before = [group["lr"] for group in groups]
        super()._step(state, current)
        if self.verbose:
            for i, (old, group) in enumerate(zip(before, groups)):
                if group["lr"] != old:
                    epoch = state[torchbearer.EPOCH] + 1
                    print(f"Epoch {epoch}: reducing learning rate of group {i} to {group['lr']:.4e}.")


class MakeGrid(_tb_imaging.MakeGrid):
    """torchbearer's ``MakeGrid`` imaging callback for torchvision versions whose ``make_grid`` takes ``value_range=``.

    Caches ``num_images`` images ``(N, C, H, W)`` from ``key`` (default: the input batch) once per epoch and
    turns them into one grid image ``(3, H', W')`` with ``torchvision.utils.make_grid``; ``norm_range`` is
    passed on as ``value_range``. Send the grid on with ``.to_file(...)``, ``.to_state(key)``, ``.to_pyplot()``.
    """

    def on_cache(self, cache: Tensor, state: dict) -> Tensor:
        return torchvision.utils.make_grid(
            cache,
            nrow=self.nrow,
            padding=self.padding,
            normalize=self.normalize,
            value_range=self.norm_range,
            scale_each=self.scale_each,
            pad_value=self.pad_value,
        )


# --- helpers ---------------------------------------------------------------------------------------

_BROKEN = {
    torchbearer.callbacks.ReduceLROnPlateau: "dpdl.train.ReduceLROnPlateau",
    _tb_imaging.MakeGrid: "dpdl.train.MakeGrid",
}


def _refuse_broken(callback: Any) -> None:
    """Fail at once, with the fix, instead of an obscure TypeError in the middle of ``run``."""
    fix = _BROKEN.get(type(callback))
    if fix is not None:
        name = f"{type(callback).__module__}.{type(callback).__name__}"
        raise TypeError(f"{name} does not work with this torch/torchvision; use {fix} (same arguments) instead")


def _trusted_classes(trial: torchbearer.Trial) -> list[type]:
    """torchbearer's ``StateKey``, its (and dpdl's) callback classes, and the classes of ``trial``'s callbacks."""
    classes = [torchbearer.state.StateKey, *_subclasses(torchbearer.Callback)]
    classes = [cls for cls in classes if cls.__module__.startswith(("torchbearer.", "dpdl."))]
    return classes + list(_callback_classes(trial.state[torchbearer.CALLBACK_LIST]))


def _subclasses(cls: type) -> Iterable[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _callback_classes(callback: Any) -> Iterable[type]:
    yield type(callback)
    for inner in getattr(callback, "callback_list", None) or ():
        yield from _callback_classes(inner)


