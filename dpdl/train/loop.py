"""The training loop, written once: ``fit`` (forward, loss, backward, step), ``evaluate`` and ``predict``.

The labs first write this loop by hand; afterwards ``fit`` runs it with per-epoch metrics, validation,
progress bars, callbacks, a learning-rate scheduler and gradient clipping. What one step computes from a
batch is a function of its own (:mod:`dpdl.train.steps`), so sequence-to-sequence models with teacher
forcing (lab 7) train with the same loop as a classifier.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dpdl.device import device as _default_device
from dpdl.progress import progress as _progress_bar
from dpdl.train.history import History
from dpdl.train.metrics import class_predictor
from dpdl.train.modes import eval_mode, kept_modes
from dpdl.train.steps import Step, _describe, supervised_step

__all__ = ["fit", "evaluate", "predict", "KNOWN_METRICS"]

KNOWN_METRICS = ("loss", "accuracy")

Callback = Callable[[int, History, nn.Module], Any]


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    train_loader: Iterable,
    *,
    epochs: int = 1,
    val_loader: Iterable | None = None,
    device: torch.device | str | None = None,
    metrics: Sequence[str] = ("loss", "accuracy"),
    callbacks: Sequence[Callback] | Callback = (),
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    clip_grad_norm: float | None = None,
    step: Step | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` for ``epochs`` passes over ``train_loader`` and return the per-epoch :class:`History`.

    Each batch: ``loss, y_hat, y = step(model, batch, loss_fn)`` (by default ``y_hat = model(X)``,
    ``loss = loss_fn(y_hat, y)``), then ``optimizer.zero_grad()``, ``loss.backward()``, the optional
    clipping, ``optimizer.step()`` and ``scheduler.step()``. ``train_loader`` (and ``val_loader``) is any
    iterable of batches (a ``DataLoader``, a list of ``(X, y)`` pairs); the model and the tensors of each
    batch are moved to ``device`` (default :func:`dpdl.device`). ``metrics`` are averaged over the examples
    of an epoch: ``"loss"`` (batch losses weighted by batch size) and ``"accuracy"`` (argmax of logits
    ``(B, C)`` against integer labels ``(B,)``; one logit per example is thresholded at 0). With
    ``val_loader`` the history also holds ``val_loss`` and ``val_accuracy``, computed in eval mode without
    gradients after each epoch.

    ``scheduler`` is a ``torch.optim.lr_scheduler`` scheduler of ``optimizer``, **stepped after every
    batch**, so count its periods in steps (batches): ``len(train_loader)`` steps make one epoch, e.g.
    ``StepLR(optimizer, step_size=len(train_loader), gamma=0.1)`` divides the rate by 10 after each epoch,
    ``OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * len(train_loader))`` warms up, then decays.
    (``ReduceLROnPlateau`` needs a metric, so it is stepped from a callback instead:
    ``callbacks=[lambda epoch, history, model: plateau.step(history["val_loss"][-1])]``.)
    ``clip_grad_norm`` rescales each step's gradient to a total norm of at most that number
    (``nn.utils.clip_grad_norm_``), which keeps a rare huge gradient from undoing training.

    ``step(model, batch, loss_fn) -> (loss, y_hat, y)`` says what one batch computes, for batches that are
    not ``(X, y)`` with ``model(X)``: ``loss`` is the number to minimise (``None`` when ``loss_fn`` is
    ``None``), and ``y_hat``, ``y`` the outputs and targets the metrics score, one row per example
    (``y.shape[0]`` weighs the batch's loss). :func:`dpdl.train.teacher_forcing` is the step for
    sequence-to-sequence models; the default is :func:`dpdl.train.supervised_step`.

    ``callbacks`` are called after every epoch as ``callback(epoch, history, model)`` (``epoch`` counts
    from 1, the model is in eval mode) — e.g. to print samples or save a checkpoint. A callback returns
    ``None`` to go on or ``True`` to stop training after this epoch (early stopping). ``progress=False``
    hides the bars; they are hidden anyway under ``CI`` or ``DPDL_PROGRESS=0``. Afterwards every module of
    the model is back in the train/eval mode it had before.
    """
    epochs = _check_epochs(epochs)
    metrics = _check_metrics(metrics)
    callbacks = _check_callbacks(callbacks)
    _check_model(model)
    if not (callable(getattr(optimizer, "zero_grad", None)) and callable(getattr(optimizer, "step", None))):
        raise TypeError(
            "optimizer must be a torch.optim.Optimizer, e.g. torch.optim.SGD(model.parameters(), lr=0.1); "
            f"got {type(optimizer).__name__}"
        )
    _check_loss_fn(loss_fn)
    _check_scheduler(scheduler, optimizer)
    _check_clip(clip_grad_norm)
    step = _check_step(step)
    _check_loader(train_loader, "train_loader")
    if val_loader is not None:
        _check_loader(val_loader, "val_loader")
    device = _resolve_device(device)
    show = None if progress else False
    training = _Training(optimizer, scheduler, clip_grad_norm)

    model.to(device)
    history = History()
    epoch_bar = _progress_bar(  # stays on screen with the last epoch's metrics
        range(1, epochs + 1), enabled=show if epochs > 1 else False, desc="fit", unit="epoch", leave=True
    )
    try:
        with kept_modes(model):
            for epoch in epoch_bar:
                model.train()
                desc = f"epoch {epoch}/{epochs}"
                record = _run_epoch(
                    model, train_loader, step, loss_fn, device, metrics, "train_loader", desc, show, training
                )
                if val_loader is not None:
                    with eval_mode(model), torch.no_grad():
                        val = _run_epoch(
                            model, val_loader, step, loss_fn, device, metrics, "val_loader", "validate", show
                        )
                    record.update({f"val_{name}": value for name, value in val.items()})
                history.append(record)
                epoch_bar.set_postfix({name: round(value, 4) for name, value in record.items()}, refresh=False)
                model.eval()
                if _run_callbacks(callbacks, epoch, history, model):
                    break
    finally:
        epoch_bar.close()
    return history


def evaluate(
    model: nn.Module,
    loader: Iterable,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    *,
    device: torch.device | str | None = None,
    metrics: Sequence[str] = ("loss", "accuracy"),
    step: Step | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` over every batch of ``loader``, averaged over the examples.

    Runs in eval mode (dropout off, batch-norm running statistics) without gradients, then restores the
    model's previous modes. ``"loss"`` needs ``loss_fn`` and is left out without one. ``device`` defaults
    to the device the model's parameters are on. ``step`` is as in :func:`fit` (e.g.
    ``step=teacher_forcing(PAD)`` for a sequence-to-sequence model). Returns e.g.
    ``{"loss": 0.31, "accuracy": 0.91}``.
    """
    metrics = _check_metrics(metrics)
    _check_model(model)
    if loss_fn is None:
        metrics = tuple(name for name in metrics if name != "loss")
        if not metrics:
            raise ValueError("evaluate has nothing to compute: pass loss_fn, or ask for metrics=('accuracy',)")
    else:
        _check_loss_fn(loss_fn)
    step = _check_step(step)
    _check_loader(loader, "loader")
    device = _model_device(model, device)
    model.to(device)
    with eval_mode(model), torch.no_grad():
        return _run_epoch(model, loader, step, loss_fn, device, metrics, "loader", "evaluate", False)


def predict(
    model: nn.Module,
    loader_or_X: Tensor | Iterable,
    *,
    device: torch.device | str | None = None,
    batch_size: int = 1024,
) -> Tensor:
    """The model's outputs for every example, concatenated on the CPU: ``(N, ...)`` for ``N`` examples.

    ``loader_or_X`` is a tensor ``X`` of shape ``(N, ...)`` (run in batches of ``batch_size`` so that a big
    ``X`` fits in memory) or an iterable yielding ``X`` or ``(X, y)`` batches (labels are ignored). Runs in
    eval mode without gradients and restores the previous modes; ``device`` defaults to the device the
    model's parameters are on. A model returning a tuple of tensors gets a tuple of concatenations.
    """
    _check_model(model)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    if isinstance(loader_or_X, Tensor):
        if loader_or_X.dim() == 0:
            raise ValueError("predict needs a batch of inputs X of shape (N, ...); got a 0-d tensor")
        batches: Iterable = loader_or_X.split(batch_size)
    else:
        _check_loader(loader_or_X, "loader_or_X")
        batches = loader_or_X
    device = _model_device(model, device)
    model.to(device)
    outputs: list[Any] = []
    with eval_mode(model), torch.no_grad():
        for batch in batches:
            X = _inputs_of(batch)
            outputs.append(_to_cpu(model(X.to(device))))
    if not outputs:
        raise ValueError("predict got no batches: loader_or_X is empty")
    if isinstance(outputs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outputs))  # type: ignore[return-value]
    return torch.cat(outputs)


# --- one pass over a loader ------------------------------------------------------------------------


# Model outputs held on the device before they are scored in one go (4M elements: 16 MB of float32).
_HELD_OUTPUTS = 1 << 22


class _Totals:
    """The batches' losses and outputs, kept on the device and scored in bulk.

    Per step this costs a ``detach`` of the loss and of the outputs and never waits for the GPU; the
    outputs are turned into class predictions a few thousand examples at a time (one ``argmax`` for many
    batches), and the sums are read once per epoch.
    """

    def __init__(self, metrics: Sequence[str]) -> None:
        self.want_loss = "loss" in metrics
        self.want_accuracy = "accuracy" in metrics
        self.batch_sizes: list[int] = []
        self.losses: list[Tensor] = []
        self.classes: Callable[[Tensor], Tensor] | None = None
        self.outputs: list[Tensor] = []
        self.labels: list[Tensor] = []
        self.held = 0
        self.scored = 0
        self.correct: list[Tensor] = []

    def add(self, loss: Tensor | None, y_hat: Tensor, y: Tensor) -> None:
        self.batch_sizes.append(y.shape[0])
        if self.want_loss:
            self.losses.append(loss.detach())  # type: ignore[union-attr]
        if self.want_accuracy:
            self.outputs.append(y_hat.detach())
            self.labels.append(y)
            self.held += y_hat.numel()
            if self.held > _HELD_OUTPUTS:
                self._score_held()

    def result(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.want_loss:
            losses = torch.stack(self.losses).reshape(-1)
            if losses.dtype in (torch.float16, torch.bfloat16):  # mixed precision: sum in float32
                losses = losses.float()
            weights = torch.tensor(self.batch_sizes, dtype=losses.dtype, device=losses.device)
            out["loss"] = (losses @ weights).item() / sum(self.batch_sizes)
        if self.want_accuracy:
            self._score_held()
            out["accuracy"] = torch.stack(self.correct).sum().item() / self.scored
        return out

    def _score_held(self) -> None:
        if not self.outputs:
            return
        classes = self.classes
        if len({o.shape[1:] for o in self.outputs}) == 1 and len({t.shape[1:] for t in self.labels}) == 1:
            hits = classes(torch.cat(self.outputs)) == torch.cat(self.labels)  # type: ignore[misc]
            self.correct.append(hits.sum())
        else:  # e.g. sequences of different lengths: score batch by batch
            pairs = zip(self.outputs, self.labels)
            self.correct.extend((classes(o) == t).sum() for o, t in pairs)  # type: ignore[misc]
        self.scored += sum(t.numel() for t in self.labels)
        self.outputs, self.labels, self.held = [], [], 0


class _Training:
    """What a training pass does after the forward pass; an evaluation pass has none."""

    def __init__(self, optimizer, scheduler, clip_grad_norm) -> None:
        self.optimizer, self.scheduler, self.clip_grad_norm = optimizer, scheduler, clip_grad_norm

    def update(self, model: nn.Module, loss: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), self.clip_grad_norm)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()


def _run_epoch(model, loader, step, loss_fn, device, metrics, where, desc, show, training=None) -> dict[str, float]:
    """One pass over ``loader``: train when ``training`` is given, else only measure (the caller sets eval
    mode and ``no_grad``). Returns the metrics averaged over the examples."""
    totals = _Totals(metrics)
    wants_loss = training is not None or totals.want_loss
    first = True
    non_blocking = device.type == "cuda"  # overlap copies with compute; safe as CUDA streams keep order
    for batch in _progress_bar(loader, enabled=show, desc=desc, unit="batch"):
        if first and step is supervised_step:
            _check_batch(batch, where)
        batch = _to_device(batch, device, non_blocking)
        loss, y_hat, y = _check_step_result(step(model, batch, loss_fn if wants_loss else None), first)
        if first:
            _check_outputs(y_hat, y, totals, where)
            if wants_loss:
                _check_loss(loss)
            if training is not None:
                _check_trainable(loss, model)
            first = False
        if training is not None:
            training.update(model, loss)
        totals.add(loss, y_hat, y)
    if first:
        raise ValueError(f"{where} yielded no batches; is the dataset empty, or a generator already used up?")
    return totals.result()


def _to_device(batch: Any, device: torch.device, non_blocking: bool) -> Any:
    """The batch with every tensor in it (in a tuple, list or dict) on ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, (tuple, list)):
        items = [_to_device(item, device, non_blocking) for item in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)  # namedtuples too
    if isinstance(batch, dict):
        return {key: _to_device(value, device, non_blocking) for key, value in batch.items()}
    return batch


def _check_step_result(result: Any, first: bool) -> tuple[Any, Any, Tensor]:
    if first and not (isinstance(result, (tuple, list)) and len(result) == 3 and isinstance(result[2], Tensor)):
        if isinstance(result, (tuple, list)):
            got = f"a {type(result).__name__} of {len(result)} items"
        else:
            got = type(result).__name__
        raise TypeError(f"step(model, batch, loss_fn) must return (loss, y_hat, y) with y a tensor; it returned {got}")
    return result


def _check_outputs(y_hat: Any, y: Tensor, totals: _Totals, where: str) -> None:
    """Checks made on the first batch of a pass: clear messages instead of odd numbers later."""
    if isinstance(y_hat, Tensor) and y_hat.dim() > 0 and y_hat.shape[0] != y.shape[0]:
        raise ValueError(
            f"the model returned {y_hat.shape[0]} outputs {_describe(y_hat)} for a batch of {y.shape[0]} labels "
            f"{_describe(y)} from {where}; check the model's forward (a .view(-1, ...) that mixes up the batch "
            "dimension? use x.flatten(1))"
        )
    if totals.want_accuracy:
        if not isinstance(y_hat, Tensor):
            raise TypeError(
                f"'accuracy' needs the model to return one tensor of logits; it returned {type(y_hat).__name__}. "
                "Pass metrics=('loss',) for models with several outputs"
            )
        totals.classes = class_predictor(y_hat, y, where=f"accuracy on {where}")


def _check_loss(loss: Any) -> None:
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError(
            f"loss_fn must return one number per batch (a 0-d tensor); got {_describe(loss)}. "
            "Use reduction='mean' (the default), or .mean() the per-example losses"
        )


def _check_trainable(loss: Tensor, model: nn.Module) -> None:
    if loss.requires_grad:
        return
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            "the loss has no gradient because no parameter of the model requires one (all frozen?); "
            "unfreeze what should train with p.requires_grad_(True)"
        )
    raise ValueError(
        "the loss has no gradient: somewhere between the parameters and the loss the computation left "
        "autograd (.item(), .detach(), .numpy(), torch.no_grad()); compute y_hat and the loss with tensor ops"
    )


# --- argument checks ----------------------------------------------------------------------------


def _check_epochs(epochs: Any) -> int:
    if isinstance(epochs, bool) or not isinstance(epochs, int):
        raise TypeError(f"epochs must be a positive int; got {epochs!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be a positive int; got {epochs}")
    return epochs


def _check_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    unknown = [name for name in metrics if name not in KNOWN_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; the known metrics are {list(KNOWN_METRICS)}")
    return tuple(dict.fromkeys(metrics))


def _check_callbacks(callbacks: Sequence[Callback] | Callback) -> tuple[Callback, ...]:
    if callable(callbacks):
        callbacks = (callbacks,)
    callbacks = tuple(callbacks)
    for callback in callbacks:
        if not callable(callback):
            raise TypeError(
                f"callbacks must be functions callback(epoch, history, model); got {type(callback).__name__}"
            )
    return callbacks


def _run_callbacks(callbacks: tuple[Callback, ...], epoch: int, history: History, model: nn.Module) -> bool:
    stop = False
    for callback in callbacks:
        answer = callback(epoch, history, model)
        if answer is None:
            continue
        if isinstance(answer, Tensor) and answer.numel() == 1:
            answer = bool(answer)
        if not isinstance(answer, bool) and type(answer).__name__ != "bool_":
            raise TypeError(
                f"callback {getattr(callback, '__name__', callback)!r} returned {type(answer).__name__}; a "
                "callback returns None to go on or True to stop training"
            )
        stop = stop or bool(answer)
    return stop


def _check_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer) -> None:
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise TypeError(
            "fit steps its scheduler after every batch, but ReduceLROnPlateau needs a metric once per epoch: "
            "step it from a callback instead, callbacks=[lambda epoch, history, model: "
            "plateau.step(history['val_loss'][-1])]"
        )
    if not callable(getattr(scheduler, "step", None)):
        raise TypeError(
            "scheduler must be a torch.optim.lr_scheduler scheduler (e.g. OneCycleLR(optimizer, max_lr=lr, "
            f"total_steps=epochs * len(train_loader))); got {type(scheduler).__name__}"
        )
    if getattr(scheduler, "optimizer", optimizer) is not optimizer:
        raise ValueError(
            "the scheduler was made for another optimizer than the one passed to fit; build it from this one: "
            "scheduler = ...(optimizer, ...)"
        )


def _check_clip(clip_grad_norm: Any) -> None:
    if clip_grad_norm is None:
        return
    if isinstance(clip_grad_norm, bool) or not isinstance(clip_grad_norm, (int, float)) or not clip_grad_norm > 0:
        raise ValueError(
            f"clip_grad_norm must be a positive number (the largest gradient norm) or None; got {clip_grad_norm!r}"
        )


def _check_step(step: Any) -> Step:
    if step is None:
        return supervised_step
    if not callable(step):
        raise TypeError(
            "step must be a function step(model, batch, loss_fn) -> (loss, y_hat, y), such as "
            f"dpdl.train.teacher_forcing(pad_index); got {type(step).__name__}"
        )
    return step


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")


def _check_loss_fn(loss_fn: Any) -> None:
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be callable as loss_fn(y_hat, y), e.g. nn.CrossEntropyLoss(); got {type(loss_fn).__name__}"
        )


def _check_loader(loader: Any, where: str) -> None:
    if isinstance(loader, Tensor) or not hasattr(loader, "__iter__"):
        raise TypeError(
            f"{where} must be an iterable of (X, y) batches, such as a torch.utils.data.DataLoader; got "
            f"{type(loader).__name__}. Wrap tensors with DataLoader(TensorDataset(X, y), batch_size=...)"
        )


def _check_batch(batch: Any, where: str) -> None:
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(t, Tensor) for t in batch):
        return
    if isinstance(batch, Tensor):
        got = f"a single tensor of shape {tuple(batch.shape)}"
    elif isinstance(batch, (tuple, list)):
        got = f"a {type(batch).__name__} of {len(batch)} items ({', '.join(type(t).__name__ for t in batch)})"
    elif isinstance(batch, dict):
        got = f"a dict with keys {list(batch)}"
    else:
        got = type(batch).__name__
    raise TypeError(f"{where} must yield (X, y) pairs of tensors; it yielded {got}")


def _inputs_of(batch: Any) -> Tensor:
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError(f"predict needs batches X or (X, y) of tensors; got {type(batch).__name__}")


def _to_cpu(y_hat: Any) -> Any:
    if isinstance(y_hat, Tensor):
        return y_hat.cpu()
    if isinstance(y_hat, (tuple, list)) and all(isinstance(t, Tensor) for t in y_hat):
        return tuple(t.cpu() for t in y_hat)
    raise TypeError(f"predict needs the model to return a tensor or a tuple of tensors; got {type(y_hat).__name__}")


def _resolve_device(device: torch.device | str | None) -> torch.device:
    return _default_device() if device is None else torch.device(device)


def _model_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return tensor.device if tensor is not None else _default_device()
