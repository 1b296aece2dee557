"""Synthetic sequence tasks that need a long memory, for comparing recurrent networks (lab 7, BPTT).

:func:`adding_problem` (Hochreiter and Schmidhuber, 1997): a network reads ``T`` numbers, two of them
marked, and must output the sum of the two marked ones at the end. The first mark falls in the first half
of the sequence, so the network must carry a number across up to ``T - 1`` steps; a network that forgets
it can do no better than predicting the mean, 1, with mean squared error ``Var(y) = 1/6``
(:data:`ADDING_BASELINE_MSE`).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["adding_problem", "ADDING_BASELINE_MSE"]

# E[(y - 1)^2] for y = u + v, u, v ~ U(0, 1) independent: Var(u) + Var(v) = 1/12 + 1/12.
ADDING_BASELINE_MSE = 1 / 6


def adding_problem(
    num_sequences: int, length: int, *, generator: torch.Generator | int | None = None
) -> tuple[Tensor, Tensor]:
    """``num_sequences`` adding-problem examples: ``X`` float32 ``(N, T, 2)`` and ``y`` float32 ``(N,)``.

    ``X[n, t, 0]`` is a number drawn uniformly from ``[0, 1)``; ``X[n, t, 1]`` is 1 at exactly two steps,
    one drawn uniformly from the first ``T // 2`` steps and one from the rest, and 0 elsewhere. The target
    ``y[n]`` is the sum of the two marked numbers, in ``[0, 2)``. ``generator`` (an int seed or a
    ``torch.Generator``; default torch's global generator) makes the draw repeatable.
    """
    for name, value in (("num_sequences", num_sequences), ("length", length)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    if length < 2:
        raise ValueError(f"length must be at least 2 (one mark in each half); got {length}")
    if isinstance(generator, int) and not isinstance(generator, bool):
        generator = torch.Generator().manual_seed(generator)
    elif generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be an int seed, a torch.Generator or None; got {type(generator).__name__}")
    values = torch.rand(num_sequences, length, generator=generator)
    half = length // 2
    first = torch.randint(0, half, (num_sequences,), generator=generator)
    second = torch.randint(half, length, (num_sequences,), generator=generator)
    marks = torch.zeros(num_sequences, length)
    rows = torch.arange(num_sequences)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    return torch.stack([values, marks], dim=-1), (values * marks).sum(1)
