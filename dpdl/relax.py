"""Relaxations: smooth stand-ins for discrete choices, and gradients through random samples (book ch. 9).

``argmax``, ``max`` and drawing a sample give zero or no gradient; a softmax with a temperature,
Gumbel-softmax, straight-through, the reparameterisation trick and REINFORCE each give a useful one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dpdl._checks import apply_reduction, check_broadcasts, check_number, check_same_shape, check_tensor

__all__ = [
    "softmax",
    "soft_argmax",
    "soft_maximum",
    "gumbel_softmax",
    "straight_through",
    "sample_normal",
    "reinforce_surrogate",
    "smooth_l1",
]


def softmax(x: Tensor, temperature: float | Tensor = 1.0, dim: int = -1) -> Tensor:
    """``softmax(x / temperature)`` along ``dim``: a smooth, differentiable stand-in for one-hot argmax.

    As ``temperature -> 0`` the result approaches the one-hot argmax (ties share the mass); as it grows,
    the uniform distribution. Shape: same as ``x``; sums to 1 along ``dim``.
    """
    check_tensor("softmax", "x", x, floating=True)
    _check_temperature(temperature)
    return torch.softmax(x / temperature, dim=dim)


def soft_argmax(x: Tensor, temperature: float | Tensor = 1.0, dim: int = -1) -> Tensor:
    """The softmax-weighted average index, ``sum_i i * softmax(x / T)_i``: a float that approaches argmax.

    Unlike ``x.argmax(dim)`` it has a gradient, so a network can learn *where* something is.
    Shape: ``x`` without ``dim``, e.g. ``(B, N) -> (B,)``; dtype of ``x``.
    """
    p = softmax(x, temperature, dim)
    index = torch.arange(x.shape[dim], dtype=p.dtype, device=p.device)
    return (p * _along(index, x.dim(), dim)).sum(dim)


def soft_maximum(x: Tensor, temperature: float | Tensor = 1.0, dim: int = -1) -> Tensor:
    """The softmax-weighted average value, ``sum_i x_i * softmax(x / T)_i``: a smooth ``max``.

    Always ``<= x.max(dim)``; it approaches the maximum as ``T -> 0`` and the mean as ``T`` grows. Its
    gradient reaches every entry, not only the largest. Shape: ``x`` without ``dim``.
    """
    return (softmax(x, temperature, dim) * x).sum(dim)


def gumbel_softmax(
    logits: Tensor,
    temperature: float | Tensor = 1.0,
    hard: bool = False,
    dim: int = -1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A differentiable sample from ``Categorical(logits=logits)`` along ``dim`` (Gumbel-softmax).

    Gumbel-max: ``argmax(logits + g)`` with ``g = -log(-log(u))``, ``u ~ U(0, 1)`` is an exact sample.
    Replacing argmax by ``softmax(. / temperature)`` makes it differentiable: a point on the simplex
    that approaches a one-hot sample as ``temperature -> 0`` (with larger gradient variance).
    ``hard=True`` returns the one-hot sample itself and back-propagates the soft sample's gradient
    (straight-through). Shape: same as ``logits``. Pass a seeded ``generator`` for repeatable noise.

    The noise is drawn, and the sample computed, in at least float32, then cast to the logits' dtype:
    bfloat16 has 8 significant bits, so uniform noise drawn in it takes only a few hundred values near 1
    and the samples' frequencies are measurably off ``softmax(logits)``.
    """
    check_tensor("gumbel_softmax", "logits", logits, floating=True)
    _check_temperature(temperature)
    work_dtype = torch.promote_types(logits.dtype, torch.float32)  # float16/bfloat16 -> float32; float64 stays
    u = torch.rand(logits.shape, generator=generator, dtype=work_dtype, device=logits.device)
    tiny = torch.finfo(work_dtype).tiny  # keep both logs finite: u can be exactly 0
    exponential = (-torch.log(u.clamp_min(tiny))).clamp_min(tiny)  # -log(u) ~ Exp(1)
    gumbel = -torch.log(exponential)
    y_soft_work = torch.softmax((logits.to(work_dtype) + gumbel) / temperature, dim=dim)
    y_soft = y_soft_work.to(logits.dtype)
    if not hard:
        return y_soft
    index = y_soft_work.argmax(dim=dim, keepdim=True)  # before the cast, which could round two maxima equal
    y_hard = torch.zeros_like(y_soft).scatter_(dim, index, 1.0)
    return straight_through(y_hard, y_soft)


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """Forward the value of ``hard``, back-propagate the gradient of ``soft``: ``soft + (hard - soft).detach()``.

    For a non-differentiable step (rounding, one-hot argmax, sign) whose smooth version ``soft`` is close
    enough: the gradient is biased but useful. ``hard`` and ``soft`` must have the same shape.
    """
    check_tensor("straight_through", "soft", soft, floating=True)
    check_tensor("straight_through", "hard", hard)
    check_same_shape(
        "straight_through",
        ("hard", "soft"),
        hard,
        soft,
        "hard should be the discrete version of soft, element for element",
    )
    return soft + (hard.to(soft.dtype) - soft).detach()


def sample_normal(
    mu: Tensor,
    log_var: Tensor,
    generator: torch.Generator | None = None,
    *,
    sample_shape: tuple[int, ...] = (),
) -> Tensor:
    """A reparameterised sample ``mu + exp(0.5 * log_var) * eps``, ``eps ~ N(0, I)``, from ``N(mu, diag exp(log_var))``.

    The randomness sits in ``eps``, so the sample is a differentiable function of ``mu`` and
    ``log_var`` (``d z / d mu = 1``): the VAE's reparameterisation trick. ``log_var`` (not the standard
    deviation) keeps the variance positive without a constraint. Shapes: ``mu`` and ``log_var`` equal,
    e.g. ``(B, D)``; result ``(*sample_shape, *mu.shape)``.
    """
    check_tensor("sample_normal", "mu", mu, floating=True)
    check_tensor("sample_normal", "log_var", log_var, floating=True)
    check_same_shape(
        "sample_normal", ("mu", "log_var"), mu, log_var, "an encoder usually returns both from heads of equal width"
    )
    shape = (*_check_sample_shape(sample_shape), *mu.shape)
    eps = torch.randn(shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + torch.exp(0.5 * log_var) * eps


def reinforce_surrogate(log_prob: Tensor, loss: Tensor, baseline: float | Tensor | None = None) -> Tensor:
    """A scalar whose gradient is the score-function (REINFORCE) estimate of ``grad E[loss]``.

    ``mean((loss - baseline).detach() * log_prob)``: minimise it (``.backward()``) in place of the
    expected loss when the sample cannot be differentiated through. Its *value* is not the loss. The
    loss is a constant here; a baseline (e.g. the mean loss) lowers the variance without changing the
    expected gradient. Shapes: ``log_prob`` and ``loss`` equal, e.g. ``(N,)``; ``baseline`` a number or a
    tensor broadcastable to them (it is detached too).
    """
    check_tensor("reinforce_surrogate", "log_prob", log_prob, floating=True)
    check_tensor("reinforce_surrogate", "loss", loss)
    check_same_shape(
        "reinforce_surrogate", ("log_prob", "loss"), log_prob, loss,
        "one loss per sample: do not average the loss before passing it",
    )  # fmt: skip
    advantage = loss
    if baseline is not None:
        if isinstance(baseline, Tensor):
            check_broadcasts(
                "reinforce_surrogate", "baseline", baseline, loss.shape,
                "use a number, a 0-d tensor or one value per sample of the loss",
            )  # fmt: skip
        advantage = loss - baseline
    return (advantage.detach() * log_prob).mean()


def smooth_l1(x: Tensor, y: Tensor, beta: float = 1.0, reduction: str = "mean") -> Tensor:
    """Smooth L1: ``0.5 d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta``, ``d = x - y``.

    Quadratic near zero (a gradient that shrinks to 0, unlike L1's constant ``sign``), linear far away
    (outliers pull less than in MSE). ``beta=0`` is the L1 loss. Same as
    ``torch.nn.functional.smooth_l1_loss``; it is the Huber loss divided by ``beta``
    (``huber_loss(x, y, delta=beta) / beta``: far away smooth L1 has slope 1, Huber slope ``delta``). Shapes: ``x`` and ``y`` equal; ``reduction`` is
    ``"mean"`` (a scalar), ``"sum"`` or ``"none"`` (same shape as ``x``).
    """
    check_tensor("smooth_l1", "x", x, floating=True)
    check_tensor("smooth_l1", "y", y)
    check_same_shape(
        "smooth_l1",
        ("x", "y"),
        x,
        y,
        "a (B, 1) prediction against (B,) targets is a common cause: use y_hat.squeeze(1)",
    )
    check_number(
        "smooth_l1", "beta", beta, at_least=0, finite=True,
        hint="it is where the loss turns from quadratic to linear (beta=0 gives L1)",
    )  # fmt: skip
    diff = (x - y).abs()
    if beta == 0:
        loss = diff
    else:
        loss = torch.where(diff < beta, 0.5 * diff**2 / beta, diff - 0.5 * beta)
    return apply_reduction("smooth_l1", loss, reduction)


def _check_temperature(temperature: float | Tensor) -> None:
    what = (
        "the logits are divided by it: towards 0 the result sharpens to a one-hot argmax, "
        "large values flatten it to uniform"
    )
    if isinstance(temperature, Tensor):
        if temperature.numel() == 0 or not bool((temperature > 0).all()) or not bool(torch.isfinite(temperature).all()):
            raise ValueError(f"temperature must be finite and > 0; got {temperature} — {what}")
        return
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a number or a tensor; got {type(temperature).__name__}")
    if not temperature > 0 or math.isinf(temperature):
        raise ValueError(f"temperature must be finite and > 0; got {temperature!r} — {what}")


def _check_sample_shape(sample_shape: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(sample_shape, int):
        sample_shape = (sample_shape,)
    try:
        shape = tuple(int(n) for n in sample_shape)
    except (TypeError, ValueError):
        shape = (-1,)
    if any(n < 0 for n in shape):
        raise ValueError(f"sample_shape must be a tuple of sizes >= 0, e.g. (100,); got {sample_shape!r}")
    return shape


def _along(v: Tensor, ndim: int, dim: int) -> Tensor:
    """Reshape the 1-d ``v`` so it broadcasts along ``dim`` of an ``ndim``-dimensional tensor."""
    shape = [1] * ndim
    shape[dim] = -1
    return v.reshape(shape)
