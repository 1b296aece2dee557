"""Train and eval mode, switched for a block and put back afterwards: :func:`eval_mode`, :func:`kept_modes`.

Dropout and batch norm behave differently in training and in evaluation (``model.train()``/``model.eval()``,
lab 4). A helper that evaluates, predicts or decodes must switch to eval mode and then leave the model as
it found it, even when a frozen batch-norm layer inside a training model was in eval mode on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["eval_mode", "kept_modes"]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``with eval_mode(model): ...`` runs the block with ``model`` in eval mode, then restores every module's mode.

    Gradients are not switched off (a block may want them, e.g. gradient ascent on the input of a frozen
    network): add ``torch.no_grad()`` beside it, ``with eval_mode(model), torch.no_grad(): ...``. Each
    submodule gets back its own mode, also when the block raises.
    """
    with kept_modes(model):
        model.eval()
        yield model


@contextmanager
def kept_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Remember the train/eval mode of ``model`` and of each of its submodules, and put them back after the block.

    For code that switches modes itself, such as a training loop that trains, then evaluates, each epoch.
    ``model.train(was_training)`` would set one mode everywhere and lose a layer frozen in eval mode.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
