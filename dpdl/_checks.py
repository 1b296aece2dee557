"""One-line argument checks, so that a function's body shows its idea and its errors still say what to fix.

Like torchvision's ``verify_str_arg``: each validator raises with a message naming the function, the
argument, what it needs and what it got, plus an optional ``hint`` on how to fix it. Used by
:mod:`dpdl.relax`, :mod:`dpdl.losses`, :mod:`dpdl.train.metrics` and :mod:`dpdl.models`. Checks that teach
something about the function itself (a temperature, labels of -1/+1) stay beside it, in its module.

torch is imported only where a tensor is checked, so importing this module costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "check_tensor",
    "check_same_shape",
    "check_broadcasts",
    "check_number",
    "check_sizes",
    "check_choice",
    "apply_reduction",
]


def check_tensor(fn: str, name: str, value: Any, *, floating: bool = False) -> None:
    """``value`` must be a ``torch.Tensor`` (TypeError), of a floating-point dtype with ``floating``."""
    from torch import Tensor

    if not isinstance(value, Tensor):
        raise TypeError(
            f"{fn} needs {name} to be a torch.Tensor; got {type(value).__name__} — wrap it with torch.tensor(...)"
        )
    if floating and not value.is_floating_point():
        raise TypeError(f"{fn} needs a floating-point {name}; got {value.dtype} — convert it with .float()")


def check_same_shape(fn: str, names: tuple[str, str], a: Tensor, b: Tensor, hint: str = "") -> None:
    """Tensors ``a`` and ``b`` (called ``names``) must have the same shape (ValueError)."""
    if a.shape != b.shape:
        raise ValueError(
            f"{fn} needs {names[0]} and {names[1]} of the same shape; got {tuple(a.shape)} and {tuple(b.shape)}"
            + _hint(hint)
        )


def check_broadcasts(fn: str, name: str, value: Tensor, shape: Sequence[int], hint: str = "") -> None:
    """``value`` must broadcast to ``shape`` without changing it (ValueError)."""
    from torch import Size, broadcast_shapes

    try:
        fits = broadcast_shapes(value.shape, Size(shape)) == Size(shape)
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"{fn}: {name} of shape {tuple(value.shape)} does not broadcast to {tuple(shape)}" + _hint(hint, "; ")
        )


def check_number(
    fn: str,
    name: str,
    value: Any,
    *,
    at_least: float | None = None,
    integer: bool = False,
    finite: bool = False,
    hint: str = "",
) -> None:
    """``value`` must be a number (an int with ``integer``; ``bool`` is neither), ``>= at_least``, and
    finite with ``finite`` (ValueError): ``"hinge_loss needs margin >= 0; got -1.0 — ..."``."""
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    ok = ok and (at_least is None or value >= at_least) and (not finite or math.isfinite(value))
    if not ok:
        parts = [f">= {at_least:g}"] if at_least is not None else []
        parts += ["finite"] * finite + ["an int"] * integer
        need = ", ".join(parts) or "a number"
        raise ValueError(f"{fn} needs {name} {need}; got {value!r}" + _hint(hint))


def check_sizes(fn: str, **sizes: Any) -> None:
    """Every keyword's value must be a positive int (a layer width, a number of classes; ValueError)."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{fn}: {name} must be a positive int; got {value!r}")


def check_choice(fn: str, name: str, value: Any, choices: Sequence[str], hint: str = "") -> None:
    """``value`` must be one of ``choices`` (ValueError): ``"fn: reduction must be 'mean', 'sum' or 'none'"``."""
    if value not in choices:
        listed = ", ".join(repr(choice) for choice in choices[:-1]) + f" or {choices[-1]!r}"
        raise ValueError(f"{fn}: {name} must be {listed}; got {value!r}" + _hint(hint))


def apply_reduction(fn: str, loss: Tensor, reduction: str) -> Tensor:
    """``loss`` averaged (``"mean"``), summed (``"sum"``) or as it is (``"none"``), as torch's losses take
    ``reduction``; checked first (ValueError)."""
    check_choice(fn, "reduction", reduction, ("mean", "sum", "none"))
    if reduction == "none":
        return loss
    return loss.mean() if reduction == "mean" else loss.sum()


def _hint(hint: str, joiner: str = " — ") -> str:
    return f"{joiner}{hint}" if hint else ""
