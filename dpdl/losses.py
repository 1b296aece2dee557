"""Losses the course derives by hand: hinge, Gaussian KL and log-likelihood, and the VAE loss (book ch. 9).

Each is a few lines of tensor algebra, written out so that a lab can compare it with torch's own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dpdl._checks import apply_reduction, check_broadcasts, check_choice, check_number, check_same_shape, check_tensor
from dpdl.relax import sample_normal

__all__ = [
    "hinge_loss",
    "gaussian_kl",
    "gaussian_kl_monte_carlo",
    "gaussian_log_likelihood",
    "vae_loss",
]

_LOG_2PI = math.log(2 * math.pi)


def hinge_loss(scores: Tensor, y: Tensor, margin: float = 1.0, reduction: str = "mean") -> Tensor:
    """The SVM hinge loss ``max(0, margin - y * scores)`` for labels ``y`` in {-1, +1}.

    Zero once an example is on the right side with room to spare (``y * score >= margin``), so only
    examples near or across the boundary move the weights. Shapes: ``scores`` ``(B,)`` (or ``(B, 1)``
    from a ``Linear(..., 1)``) and ``y`` ``(B,)``; ``reduction`` ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``).
    """
    check_tensor("hinge_loss", "scores", scores, floating=True)
    check_tensor("hinge_loss", "y", y)
    if scores.dim() == 2 and scores.shape[1] == 1 and y.dim() == 1:
        scores = scores.squeeze(1)
    if scores.shape != y.shape:
        raise ValueError(
            f"hinge_loss needs one score per label: scores {tuple(scores.shape)} and y {tuple(y.shape)} "
            "differ — scores should be (B,) or (B, 1) and y (B,)"
        )
    values = set(y.unique().tolist())
    if not values <= {-1, 1}:
        shown = "{" + ", ".join(_fmt(v) for v in sorted(values)[:10]) + (", ..." if len(values) > 10 else "") + "}"
        hint = (
            "map them with 2*y - 1" if values <= {0, 1} else "hinge_loss is for two classes; use cross-entropy for more"
        )
        raise ValueError(f"labels must be -1 or +1 for hinge_loss; got values {shown} — {hint}")
    check_number("hinge_loss", "margin", margin, at_least=0, hint="1.0 is the usual SVM margin")
    loss = torch.clamp(margin - y.to(scores.dtype) * scores, min=0)
    return apply_reduction("hinge_loss", loss, reduction)


def gaussian_kl(mu: Tensor, log_var: Tensor) -> Tensor:
    """Closed-form ``KL(N(mu, diag exp(log_var)) || N(0, I))``, summed over the last dimension.

    ``0.5 * sum(mu**2 + exp(log_var) - 1 - log_var)``: the VAE's regulariser, pulling each encoding
    towards the prior. It is >= 0 and 0 exactly when ``mu = 0`` and ``log_var = 0``.
    Shapes: ``mu``, ``log_var`` ``(B, D)`` -> ``(B,)``.
    """
    _check_mu_log_var("gaussian_kl", mu, log_var)
    return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(-1)


def gaussian_kl_monte_carlo(
    mu: Tensor,
    log_var: Tensor,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A Monte-Carlo estimate of :func:`gaussian_kl`: the mean of ``log q(z) - log p(z)`` over samples ``z ~ q``.

    What one does when no closed form exists; the samples are reparameterised
    (:func:`dpdl.relax.sample_normal`), so the estimate is differentiable in ``mu`` and ``log_var``.
    Unbiased; its standard error shrinks as ``1 / sqrt(num_samples)``.
    Shapes: ``mu``, ``log_var`` ``(B, D)`` -> ``(B,)``.
    """
    _check_mu_log_var("gaussian_kl_monte_carlo", mu, log_var)
    check_number("gaussian_kl_monte_carlo", "num_samples", num_samples, at_least=1, integer=True)
    z = sample_normal(mu, log_var, generator, sample_shape=(num_samples,))  # (S, B, D)
    log_q = _log_normal(z, mu, log_var)
    log_p = _log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
    return (log_q - log_p).sum(-1).mean(0)


def gaussian_log_likelihood(x: Tensor, mu: Tensor, log_var: float | Tensor) -> Tensor:
    """``log N(x; mu, diag exp(log_var))`` summed over every dimension but the first: one number per example.

    Maximising it is least squares weighted by the inverse variance, plus a penalty on large variances.
    ``log_var`` may be a number (a fixed variance shared by all) or a tensor broadcastable to ``x``
    (e.g. a learned per-pixel variance). Shapes: ``x``, ``mu`` ``(B, ...)`` -> ``(B,)``.
    """
    check_tensor("gaussian_log_likelihood", "x", x, floating=True)
    check_tensor("gaussian_log_likelihood", "mu", mu, floating=True)
    check_same_shape("gaussian_log_likelihood", ("x", "mu"), x, mu)
    _check_batch("gaussian_log_likelihood", x)
    if isinstance(log_var, Tensor):
        check_tensor("gaussian_log_likelihood", "log_var", log_var, floating=True)
        check_broadcasts(
            "gaussian_log_likelihood",
            "log_var",
            log_var,
            x.shape,
            "use a number, a 0-d tensor or a tensor shaped like x",
        )
    elif isinstance(log_var, bool) or not isinstance(log_var, (int, float)):
        raise TypeError(
            f"gaussian_log_likelihood needs log_var to be a number or a tensor; got {type(log_var).__name__}"
        )
    else:
        log_var = torch.tensor(float(log_var), dtype=x.dtype, device=x.device)
    return _log_normal(x, mu, log_var).reshape(x.shape[0], -1).sum(1)


def vae_loss(
    x_hat: Tensor,
    x: Tensor,
    mu: Tensor,
    log_var: Tensor,
    reconstruction: str = "bce",
    return_parts: bool = False,
) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """The VAE's negative ELBO: reconstruction + KL, each summed per example, then averaged over the batch.

    ``reconstruction="bce"``: ``x_hat`` are *logits* (no sigmoid in the decoder) and ``x`` lies in
    [0, 1] (Bernoulli likelihood); ``"mse"``: ``x_hat`` are values, summed squared error (Gaussian
    likelihood with fixed variance, up to constants). Summing per example (not averaging over pixels)
    keeps the two terms on the scale the ELBO gives them. Shapes: ``x_hat``, ``x`` ``(B, ...)``;
    ``mu``, ``log_var`` ``(B, D)``. Returns a scalar, or ``(total, reconstruction, kl)`` batch means
    with ``return_parts=True``.
    """
    check_tensor("vae_loss", "x_hat", x_hat, floating=True)
    check_tensor("vae_loss", "x", x, floating=True)
    check_same_shape("vae_loss", ("x_hat", "x"), x_hat, x, "reshape the decoder output to the input's shape")
    _check_batch("vae_loss", x)
    _check_mu_log_var("vae_loss", mu, log_var)
    check_choice("vae_loss", "reconstruction", reconstruction, ("bce", "mse"), "'bce' when x_hat are logits")
    if mu.shape[0] != x.shape[0]:
        raise ValueError(f"vae_loss: mu has batch size {mu.shape[0]} but x has {x.shape[0]}; pass the same batch")
    batch_size = x.shape[0]
    if reconstruction == "bce":
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(
                f"vae_loss with reconstruction='bce' needs targets x in [0, 1]; got values in "
                f"[{x.min().item():.3g}, {x.max().item():.3g}] — undo Normalize (ToTensor alone gives [0, 1]) "
                "or use reconstruction='mse'"
            )
        per_element = F.binary_cross_entropy_with_logits(x_hat, x, reduction="none")
    else:
        per_element = (x_hat - x).pow(2)
    rec = per_element.reshape(batch_size, -1).sum(1)  # (B,)
    kl = gaussian_kl(mu.reshape(batch_size, -1), log_var.reshape(batch_size, -1))  # (B,)
    total = (rec + kl).mean()
    if return_parts:
        return total, rec.mean(), kl.mean()
    return total


def _log_normal(x: Tensor, mu: Tensor, log_var: Tensor) -> Tensor:
    """Element-wise ``log N(x; mu, exp(log_var))``."""
    return -0.5 * (_LOG_2PI + log_var + (x - mu).pow(2) * torch.exp(-log_var))


def _check_batch(fn: str, x: Tensor) -> None:
    if x.dim() == 0:
        raise ValueError(f"{fn} needs a batch dimension: x of shape (B, ...), got a 0-d tensor")


def _check_mu_log_var(fn: str, mu: Tensor, log_var: Tensor) -> None:
    check_tensor(fn, "mu", mu, floating=True)
    check_tensor(fn, "log_var", log_var, floating=True)
    check_same_shape(fn, ("mu", "log_var"), mu, log_var, "the encoder's two heads should have the same width")
    if mu.dim() == 0:
        raise ValueError(f"{fn} needs mu of shape (B, D) (or (D,)); got a 0-d tensor")


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)
