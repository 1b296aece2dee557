"""What one step of :func:`dpdl.train.fit` computes from a batch: the loss, and the outputs and targets to score.

``fit`` and ``evaluate`` own the loop (batches, backward, optimiser, scheduler, metrics, callbacks); a *step*
owns the forward pass: ``step(model, batch, loss_fn) -> (loss, y_hat, y)``. :func:`supervised_step` is the
default, ``(X, y)`` batches; :func:`teacher_forcing` trains sequence-to-sequence models (lab 7). Write your
own for other batches, the way fastai's ``one_batch`` or torchbearer's closure are swapped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

__all__ = ["Step", "supervised_step", "teacher_forcing"]

LossFn = Callable[[Any, Tensor], Tensor]
# step(model, batch, loss_fn) -> (loss, y_hat, y); loss_fn is None when no loss is wanted (loss is then None).
Step = Callable[[nn.Module, Any, Any], tuple]


def supervised_step(
    model: nn.Module, batch: tuple[Tensor, Tensor], loss_fn: LossFn | None
) -> tuple[Tensor | None, Any, Tensor]:
    """The default step: ``X, y = batch``, ``y_hat = model(X)``, ``loss = loss_fn(y_hat, y)``; returns ``(loss, y_hat, y)``.

    ``loss`` is ``None`` when ``loss_fn`` is (``evaluate`` without a loss). A loss that fails on the shapes
    or dtypes of ``y_hat`` and ``y`` is re-raised with the likely fix (labels as floats, one-hot labels,
    a ``(B, 1)`` output against ``(B,)`` labels, labels out of range).
    """
    X, y = batch
    y_hat = model(X)
    return (_loss(loss_fn, y_hat, y) if loss_fn is not None else None), y_hat, y


def teacher_forcing(pad_index: int = 0) -> Step:
    """A step for sequence-to-sequence models ``model(src, tgt_in) -> logits (B, T, V)``, trained with teacher forcing.

    Batches are ``(src, tgt)``: source ids ``(B, S)`` and target ids ``(B, T + 1)``, each target row
    ``<bos> ... <eos>`` padded with ``pad_index`` (as :func:`dpdl.data.morse.pairs_to_tensors` makes them).
    The step cuts the columns that are padding in every row of the batch (short batches run faster), feeds
    the decoder the target shifted right and scores the logits against the target shifted left:
    ``logits = model(src, tgt[:, :-1])``, ``loss = loss_fn(logits, tgt[:, 1:])``, so position ``t`` predicts
    token ``t + 1`` from the true tokens before it. ``loss_fn(logits (B, T, V), tgt_out (B, T))`` must
    ignore padding itself (``F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=pad_index)``).

    The outputs returned for the metrics are the real (non-padding) target positions only, ``(N, V)`` and
    ``(N,)``: ``fit``'s ``"accuracy"`` is then the fraction of real target tokens predicted right with the
    true prefix given, and its ``"loss"`` the average over real tokens.

    ``history = fit(model, optimizer, loss_fn, train_loader, step=teacher_forcing(PAD), ...)``.
    """
    if isinstance(pad_index, bool) or not isinstance(pad_index, int):
        raise TypeError(f"pad_index must be the int id of the padding token; got {pad_index!r}")

    def teacher_forcing_step(model: nn.Module, batch: Any, loss_fn: LossFn | None) -> tuple:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(t, Tensor) for t in batch)):
            raise TypeError(f"teacher_forcing needs (src, tgt) batches of id tensors; got {type(batch).__name__}")
        src, tgt = (_trim(ids, pad_index) for ids in batch)
        if tgt.dim() != 2 or tgt.shape[1] < 2:
            raise ValueError(
                f"teacher_forcing needs targets (B, T) holding at least <bos> and <eos>; got shape {tuple(tgt.shape)}"
            )
        tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
        logits = model(src, tgt_in)
        loss = loss_fn(logits, tgt_out) if loss_fn is not None else None
        real = tgt_out != pad_index
        return loss, logits[real], tgt_out[real]

    teacher_forcing_step.pad_index = pad_index  # type: ignore[attr-defined]
    return teacher_forcing_step


# --- helpers ---------------------------------------------------------------------------------------


def _trim(ids: Tensor, pad_index: int) -> Tensor:
    """Drop the trailing columns that are padding in every row of the batch."""
    if ids.dim() != 2:
        return ids
    used = (ids != pad_index).any(0).nonzero()
    return ids[:, : int(used[-1]) + 1] if len(used) else ids[:, :1]


def _loss(loss_fn: LossFn, y_hat: Any, y: Tensor) -> Tensor:
    try:
        return loss_fn(y_hat, y)
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        hint = _loss_hint(y_hat, y)
        if hint is None:
            raise
        raise ValueError(
            f"loss_fn(y_hat, y) failed for y_hat {_describe(y_hat)} and y {_describe(y)}: {err}\n{hint}"
        ) from err


def _loss_hint(y_hat: Any, y: Tensor) -> str | None:
    if not (isinstance(y_hat, Tensor) and isinstance(y, Tensor)) or y_hat.dim() == 0 or y.dim() == 0:
        return None
    if y_hat.shape[0] != y.shape[0]:
        return (
            f"The model returned {y_hat.shape[0]} outputs {_describe(y_hat)} for a batch of {y.shape[0]} labels "
            f"{_describe(y)}; check the model's forward (a .view(-1, ...) that mixes up the batch dimension? use "
            "x.flatten(1))"
        )
    if y_hat.dim() == y.dim() + 1 and y_hat.shape[1] == 1:
        return (
            "The model gives one logit per example, shape (B, 1), but y has shape (B,): squeeze the output "
            "(return y_hat.squeeze(1) from forward) or pass y.unsqueeze(1).float(), with BCEWithLogitsLoss"
        )
    if y_hat.dim() == y.dim() + 1 and y.dtype.is_floating_point:
        return (
            "Cross-entropy wants the labels as integer class indices of shape (B,), but y holds floats: "
            "convert them with y.long() (e.g. in the dataset's target_transform)"
        )
    if y_hat.shape == y.shape and not y.dtype.is_floating_point:
        return (
            "y has the shape of the model's output but holds integers; losses that compare with a target of "
            "that shape (BCEWithLogitsLoss, MSELoss) want floats: pass y.float()"
        )
    if y_hat.shape == y.shape and y.dim() >= 2 and y.shape[1] > 1:
        return "y looks one-hot (floats of shape (B, C)); cross-entropy and accuracy want class indices: y.argmax(1)"
    if y_hat.dim() == y.dim() + 1 and y.numel() and (int(y.min()) < 0 or int(y.max()) >= y_hat.shape[1]):
        return (
            f"Labels must lie in [0, {y_hat.shape[1]}) for a model with {y_hat.shape[1]} outputs; got values "
            f"from {int(y.min())} to {int(y.max())}. Are the labels 1-based, or the output layer too small?"
        )
    return None


def _describe(t: Any) -> str:
    if isinstance(t, Tensor):
        return f"(shape {tuple(t.shape)}, {str(t.dtype).replace('torch.', '')})"
    return f"({type(t).__name__})"
