"""Training: ``fit``/``evaluate``/``predict`` (the loop the labs first write by hand), metrics, ``History``,
cached weights (``load_or_train``) and ``make_trial``, a torchbearer ``Trial`` for today's torch.

``history = fit(model, optimizer, loss_fn, train_loader, epochs=5, val_loader=val_loader)``; sequence-to-sequence
models train with the same loop, ``fit(..., step=teacher_forcing(pad_index))``.
torchbearer is imported only when one of its helpers is first used, so ``import dpdl.train`` stays quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dpdl.train.checkpoint import load_or_train
from dpdl.train.history import History
from dpdl.train.loop import evaluate, fit, predict
from dpdl.train.metrics import accuracy, per_class_accuracy
from dpdl.train.steps import supervised_step, teacher_forcing

if TYPE_CHECKING:
    from dpdl.train.trial import make_trial

__all__ = [
    "fit",
    "evaluate",
    "predict",
    "supervised_step",
    "teacher_forcing",
    "accuracy",
    "per_class_accuracy",
    "History",
    "load_or_train",
    "make_trial",
]

_LAZY = {"make_trial"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module("dpdl.train.trial"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dpdl.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
