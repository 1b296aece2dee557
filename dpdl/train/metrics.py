"""Classification metrics: how often the predicted class is the true one, overall and per class.

A classifier outputs logits ``(B, C)`` (or one logit ``(B,)``/``(B, 1)`` for two classes); the prediction is
their argmax (or ``logit > 0``). Used by :func:`dpdl.train.fit` and in every lab that trains a classifier.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from dpdl._checks import check_sizes, check_tensor

__all__ = ["accuracy", "per_class_accuracy", "class_predictor"]


def accuracy(y_hat: Tensor, y: Tensor) -> float:
    """The fraction of examples whose predicted class equals the label ``y``.

    ``y_hat`` is either logits ``(B, C)`` (prediction: argmax over ``C``), one logit per example ``(B,)`` or
    ``(B, 1)`` for a two-class problem (prediction: ``logit > 0``), or predicted class indices ``(B,)`` of an
    integer dtype. ``y`` holds class indices ``(B,)`` (integers; 0/1 floats are fine for one logit). Extra
    trailing dimensions (``(B, C, T)`` logits with ``(B, T)`` labels) count every position.
    """
    classes = class_predictor(y_hat, y, where="accuracy")
    _check_label_range(y_hat, y, _num_classes(y_hat, y, None), where="accuracy")
    return (classes(y_hat) == y).sum().item() / y.numel()


def per_class_accuracy(y_hat: Tensor, y: Tensor, num_classes: int | None = None) -> Tensor:
    """For each class ``c``, the fraction of examples labelled ``c`` that were predicted as ``c`` (its recall).

    Overall accuracy hides a class the model never gets right; this shows it. ``y_hat`` and ``y`` as for
    :func:`accuracy`. ``num_classes`` defaults to ``C`` of the logits (2 for one logit), else to the
    largest class index seen plus one. Returns a float tensor ``(num_classes,)`` on ``y``'s device, ``nan``
    for a class without examples.
    """
    classes = class_predictor(y_hat, y, where="per_class_accuracy")
    num_classes = _num_classes(y_hat, y, num_classes, where="per_class_accuracy")
    _check_label_range(y_hat, y, num_classes, where="per_class_accuracy")
    y_flat = y.reshape(-1).long()
    hit = classes(y_hat).reshape(-1) == y_flat
    total = torch.bincount(y_flat, minlength=num_classes)
    correct = torch.bincount(y_flat[hit], minlength=num_classes)
    # float32, on y's device: Apple's MPS has no float64 (a .double() there raises), and counts below 2**24
    # are exact in float32, whose division is correctly rounded. 0 / 0 = nan for a class without examples.
    return correct.float() / total.float()


def class_predictor(y_hat: Tensor, y: Tensor, where: str) -> Callable[[Tensor], Tensor]:
    """Check ``y_hat`` and ``y`` once and return how to turn ``y_hat`` into classes comparable with ``y``.

    Deciding once per pass keeps the training loop's per-step cost to the tensor ops themselves
    (:mod:`dpdl.train.loop` calls it on the first batch). ``where`` names the caller in errors.
    """
    check_tensor(where, "y_hat", y_hat)
    check_tensor(where, "y", y)
    if y.dim() == 0 or y_hat.dim() == 0:
        raise ValueError(f"{where}: y_hat and y need a batch dimension; got shapes {_shape(y_hat)} and {_shape(y)}")
    if y_hat.shape[0] != y.shape[0]:
        raise ValueError(
            f"{where}: y_hat has {y_hat.shape[0]} examples but y has {y.shape[0]} "
            f"(shapes {_shape(y_hat)} and {_shape(y)}); they must describe the same batch"
        )
    if y.dtype.is_complex or y_hat.dtype.is_complex:
        raise TypeError(f"{where}: complex tensors have no classes")
    if not y_hat.dtype.is_floating_point:  # already class indices
        if y_hat.shape != y.shape:
            raise ValueError(
                f"{where}: y_hat holds class indices ({y_hat.dtype}) of shape {_shape(y_hat)}, "
                f"which must match y's shape {_shape(y)}"
            )
        return _identity
    if y_hat.dim() == y.dim() + 1 and y_hat.shape[2:] == y.shape[1:]:
        if y_hat.shape[1] == 1:  # one logit per example: two classes
            _check_binary_labels(y, where)
            return _positive_squeezed_logit
        if y.dtype.is_floating_point:
            raise TypeError(
                f"{where}: labels y are {y.dtype} but class indices must be integers; "
                "convert them with y.long() (e.g. in the dataset's target_transform)"
            )
        return _argmax_classes
    if y_hat.shape == y.shape:
        if y.dtype.is_floating_point and y.dim() >= 2 and y.shape[1] > 1:
            raise ValueError(
                f"{where}: y has the same shape as the logits {_shape(y_hat)} and holds floats, so it looks "
                "one-hot (or like class probabilities); accuracy needs class indices — pass y.argmax(1) "
                "(integers of shape (B,)), and use them with cross-entropy too. If y holds regression targets, "
                'accuracy does not apply: pass metrics=("loss",) to fit/evaluate'
            )
        _check_binary_labels(y, where)
        return _positive_logit
    raise ValueError(
        f"{where}: cannot compare y_hat of shape {_shape(y_hat)} with labels y of shape {_shape(y)}; expected "
        "logits (B, C) with labels (B,), or one logit (B,) or (B, 1) with 0/1 labels (B,)"
    )


def _num_classes(y_hat: Tensor, y: Tensor, num_classes: int | None, where: str = "accuracy") -> int:
    if num_classes is not None:
        check_sizes(where, num_classes=num_classes)
        return num_classes
    if y_hat.dtype.is_floating_point:
        return 2 if (y_hat.dim() == y.dim() or y_hat.shape[1] == 1) else y_hat.shape[1]
    if y.numel() == 0:
        return 0
    return int(max(y.max().item(), y_hat.max().item())) + 1


def _check_label_range(y_hat: Tensor, y: Tensor, num_classes: int, where: str) -> None:
    if y.numel() == 0:
        raise ValueError(f"{where}: got an empty batch; there is nothing to score")
    low, high = int(y.min().item()), int(y.max().item())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"{where}: labels must lie in [0, {num_classes}) for {num_classes} classes; got values from {low} "
            f"to {high}. Check the labels (are they 1-based?) or the model's number of outputs"
        )


def _check_binary_labels(y: Tensor, where: str) -> None:
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError(
            f"{where}: one logit per example means two classes, so labels must be 0 or 1; got values like "
            f"{sorted(set(y.reshape(-1)[:8].tolist()))}. For regression, leave 'accuracy' out of the metrics"
        )


def _identity(y_hat: Tensor) -> Tensor:
    return y_hat


def _argmax_classes(y_hat: Tensor) -> Tensor:
    return y_hat.argmax(1)


def _positive_logit(y_hat: Tensor) -> Tensor:
    return y_hat > 0


def _positive_squeezed_logit(y_hat: Tensor) -> Tensor:
    return y_hat.squeeze(1) > 0


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)
