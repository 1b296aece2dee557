import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Normal, kl_divergence

from dpdl.losses import (
    gaussian_kl,
    gaussian_kl_monte_carlo,
    gaussian_log_likelihood,
    hinge_loss,
    vae_loss,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=gen(seed), dtype=dtype)


# --- hinge ----------------------------------------------------------------------------------------


def test_hinge_loss_matches_a_hand_computation():
    scores = torch.tensor([2.0, 0.5, -1.0, -3.0])
    y = torch.tensor([1, 1, 1, -1])
    # max(0, 1 - y * s): [max(0, -1), max(0, 0.5), max(0, 2), max(0, -2)] = [0, 0.5, 2, 0]
    torch.testing.assert_close(hinge_loss(scores, y, reduction="none"), torch.tensor([0.0, 0.5, 2.0, 0.0]))
    assert hinge_loss(scores, y).item() == pytest.approx(0.625)
    assert hinge_loss(scores, y, reduction="sum").item() == pytest.approx(2.5)
    # margin 2: [max(0, 0), max(0, 1.5), max(0, 3), max(0, -1)]
    assert hinge_loss(scores, y, margin=2.0, reduction="sum").item() == pytest.approx(4.5)


def test_hinge_loss_gradient_only_comes_from_examples_inside_the_margin():
    scores = torch.tensor([2.0, 0.5, -1.0, -3.0], requires_grad=True)
    y = torch.tensor([1.0, 1.0, 1.0, -1.0])
    hinge_loss(scores, y, reduction="sum").backward()
    torch.testing.assert_close(scores.grad, torch.tensor([0.0, -1.0, -1.0, 0.0]))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-10, 10, allow_nan=False), st.sampled_from([-1, 1])), min_size=1, max_size=20))
def test_hinge_loss_matches_torch_relu_formula_and_the_multi_margin_loss(pairs):
    scores = torch.tensor([s for s, _ in pairs], dtype=torch.float64)
    y = torch.tensor([label for _, label in pairs])
    expected = torch.relu(1 - y * scores).mean()
    torch.testing.assert_close(hinge_loss(scores, y), expected)
    # torch's multi_margin_loss on the two-class scores (-s/2, s/2) is the same hinge.
    two_class = torch.stack([-scores / 2, scores / 2], dim=1)
    torch.testing.assert_close(hinge_loss(scores, y), F.multi_margin_loss(two_class, (y + 1) // 2) * 2)


def test_hinge_loss_accepts_scores_of_shape_b_by_1():
    scores = torch.tensor([[0.5], [-0.5]])
    assert hinge_loss(scores, torch.tensor([1, -1])).item() == pytest.approx(0.5)


def test_hinge_loss_rejects_zero_one_labels_with_the_fix():
    message = "labels must be -1 or +1 for hinge_loss; got values {0, 1} — map them with 2*y - 1"
    with pytest.raises(ValueError, match=re.escape(message)):
        hinge_loss(torch.randn(4), torch.tensor([0, 1, 1, 0]))
    with pytest.raises(ValueError, match=re.escape(message)):
        hinge_loss(torch.randn(2), torch.tensor([0.0, 1.0]))


def test_hinge_loss_rejects_multi_class_labels_and_points_to_cross_entropy():
    with pytest.raises(ValueError, match=r"got values \{-1, 1, 2\} — .*cross-entropy"):
        hinge_loss(torch.randn(3), torch.tensor([-1, 1, 2]))


@pytest.mark.parametrize(
    ("scores", "y", "kwargs", "error", "message"),
    [
        (torch.zeros(4, 2), torch.ones(4), {}, ValueError, r"scores \(4, 2\) and y \(4,\)"),
        (torch.zeros(3), torch.ones(4), {}, ValueError, "one score per label"),
        (torch.zeros(3), torch.ones(3), {"margin": -1.0}, ValueError, "margin >= 0"),
        (torch.zeros(3), torch.ones(3), {"reduction": "avg"}, ValueError, "reduction must be"),
        (torch.zeros(3, dtype=torch.long), torch.ones(3), {}, TypeError, "floating-point scores"),
        (torch.zeros(3), [1, 1, 1], {}, TypeError, "y to be a torch.Tensor"),
    ],
)
def test_hinge_loss_rejects_bad_input(scores, y, kwargs, error, message):
    with pytest.raises(error, match=message):
        hinge_loss(scores, y, **kwargs)


# --- Gaussian KL ----------------------------------------------------------------------------------


def test_gaussian_kl_is_zero_for_the_standard_normal():
    assert torch.equal(gaussian_kl(torch.zeros(3, 5), torch.zeros(3, 5)), torch.zeros(3))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_gaussian_kl_matches_torch_distributions(batch_size, dim, seed):
    mu, log_var = randn(batch_size, dim, seed=seed) * 2, randn(batch_size, dim, seed=seed + 1)
    expected = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum(-1)
    kl = gaussian_kl(mu, log_var)
    assert kl.shape == (batch_size,)
    torch.testing.assert_close(kl, expected)
    assert (kl >= 0).all()


def test_gaussian_kl_monte_carlo_converges_to_the_closed_form():
    mu = torch.tensor([[0.0, 0.0], [1.0, -0.5], [-2.0, 0.3]], dtype=torch.float64)
    log_var = torch.tensor([[0.0, 0.0], [0.5, -1.0], [-0.3, 1.2]], dtype=torch.float64)
    n = 20_000
    estimate = gaussian_kl_monte_carlo(mu, log_var, num_samples=n, generator=gen(1))
    assert estimate.shape == (3,)
    # The spread of single-sample estimates (an independent seeded batch of them) gives the standard
    # error of an n-sample mean: std / sqrt(n). Allow four of them, plus 1e-12 for the exact row 0.
    single = gaussian_kl_monte_carlo(mu.repeat(n, 1), log_var.repeat(n, 1), generator=gen(2)).reshape(n, 3)
    standard_error = single.std(0) / math.sqrt(n)
    assert ((estimate - gaussian_kl(mu, log_var)).abs() <= 4 * standard_error + 1e-12).all()
    assert (standard_error[1:] > 0).all()


def test_gaussian_kl_monte_carlo_gradient_converges_to_the_closed_form_gradient():
    mu = torch.tensor([[1.0, -0.5]], dtype=torch.float64, requires_grad=True)
    log_var = torch.tensor([[0.5, -1.0]], dtype=torch.float64, requires_grad=True)
    exact = torch.autograd.grad(gaussian_kl(mu, log_var).sum(), (mu, log_var))
    estimate = torch.autograd.grad(gaussian_kl_monte_carlo(mu, log_var, 20_000, gen(3)).sum(), (mu, log_var))
    # Per-sample gradients here have standard deviations near 1, so the standard error of a 20,000-sample
    # mean is about 0.007: 0.05 is more than six of them.
    for e, x in zip(estimate, exact):
        torch.testing.assert_close(e, x, atol=0.05, rtol=0)


def test_gaussian_kl_monte_carlo_is_repeatable_with_a_seeded_generator():
    mu, log_var = randn(2, 3), randn(2, 3, seed=1)
    a = gaussian_kl_monte_carlo(mu, log_var, 10, gen(5))
    assert torch.equal(a, gaussian_kl_monte_carlo(mu, log_var, 10, gen(5)))
    assert not torch.equal(a, gaussian_kl_monte_carlo(mu, log_var, 10, gen(6)))


@pytest.mark.parametrize("fn", [gaussian_kl, gaussian_kl_monte_carlo])
@pytest.mark.parametrize(
    ("mu", "log_var", "error", "message"),
    [
        (torch.zeros(2, 3), torch.zeros(2, 4), ValueError, r"same shape.*\(2, 3\) and \(2, 4\)"),
        (torch.zeros(()), torch.zeros(()), ValueError, "0-d"),
        (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.int32), TypeError, "floating-point log_var"),
    ],
)
def test_gaussian_kl_rejects_bad_mu_and_log_var(fn, mu, log_var, error, message):
    with pytest.raises(error, match=message):
        fn(mu, log_var)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_gaussian_kl_monte_carlo_rejects_a_bad_num_samples(bad):
    with pytest.raises(ValueError, match="num_samples >= 1"):
        gaussian_kl_monte_carlo(torch.zeros(1, 2), torch.zeros(1, 2), num_samples=bad)


# --- Gaussian log-likelihood -----------------------------------------------------------------------


def test_gaussian_log_likelihood_matches_torch_normal_for_images():
    x, mu, log_var = randn(4, 1, 3, 3), randn(4, 1, 3, 3, seed=1), randn(4, 1, 3, 3, seed=2)
    expected = Normal(mu, (0.5 * log_var).exp()).log_prob(x).sum((1, 2, 3))
    result = gaussian_log_likelihood(x, mu, log_var)
    assert result.shape == (4,)
    torch.testing.assert_close(result, expected)


@pytest.mark.parametrize("log_var", [0.0, -1.5, 2, torch.tensor(0.7, dtype=torch.float64)])
def test_gaussian_log_likelihood_accepts_a_fixed_variance(log_var):
    x, mu = randn(5, 3), randn(5, 3, seed=1)
    std = math.exp(0.5 * float(log_var))
    torch.testing.assert_close(gaussian_log_likelihood(x, mu, log_var), Normal(mu, std).log_prob(x).sum(1))


def test_gaussian_log_likelihood_accepts_a_per_feature_log_var():
    x, mu, log_var = randn(5, 3), randn(5, 3, seed=1), randn(3, seed=2)
    expected = Normal(mu, (0.5 * log_var).exp()).log_prob(x).sum(1)
    torch.testing.assert_close(gaussian_log_likelihood(x, mu, log_var), expected)


def test_gaussian_log_likelihood_is_largest_at_the_mean():
    mu = randn(3, 4)
    at_mean = gaussian_log_likelihood(mu, mu, 0.0)
    assert (gaussian_log_likelihood(mu + 0.1, mu, 0.0) < at_mean).all()
    torch.testing.assert_close(at_mean, torch.full((3,), -2 * math.log(2 * math.pi), dtype=torch.float64))


@pytest.mark.parametrize(
    ("x", "mu", "log_var", "error", "message"),
    [
        (torch.zeros(2, 3), torch.zeros(2, 4), 0.0, ValueError, "x and mu of the same shape"),
        (torch.zeros(()), torch.zeros(()), 0.0, ValueError, "batch dimension"),
        (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(4), ValueError, r"log_var of shape \(4,\) does not"),
        (torch.zeros(2, 3), torch.zeros(2, 3), "1", TypeError, "number or a tensor"),
        (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, dtype=torch.long), TypeError, "floating-point"),
    ],
)
def test_gaussian_log_likelihood_rejects_bad_input(x, mu, log_var, error, message):
    with pytest.raises(error, match=message):
        gaussian_log_likelihood(x, mu, log_var)


# --- VAE loss -------------------------------------------------------------------------------------


def vae_batch(batch_size=4, seed=0):
    x_hat = randn(batch_size, 1, 4, 4, seed=seed)  # logits
    x = torch.rand(batch_size, 1, 4, 4, generator=gen(seed + 1), dtype=torch.float64)
    mu, log_var = randn(batch_size, 3, seed=seed + 2), randn(batch_size, 3, seed=seed + 3)
    return x_hat, x, mu, log_var


@pytest.mark.parametrize("reconstruction", ["bce", "mse"])
def test_vae_loss_equals_the_sum_of_its_parts(reconstruction):
    total, rec, kl = vae_loss(*vae_batch(), reconstruction=reconstruction, return_parts=True)
    torch.testing.assert_close(total, rec + kl)
    assert total.dim() == 0 and rec.item() > 0 and kl.item() > 0
    torch.testing.assert_close(vae_loss(*vae_batch(), reconstruction=reconstruction), total)


def test_vae_loss_sums_per_example_and_averages_over_the_batch():
    x_hat, x, mu, log_var = vae_batch()
    batch_size = x.shape[0]
    expected_rec = F.binary_cross_entropy_with_logits(x_hat, x, reduction="sum") / batch_size
    expected_kl = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum() / batch_size
    total, rec, kl = vae_loss(x_hat, x, mu, log_var, return_parts=True)
    torch.testing.assert_close(rec, expected_rec)
    torch.testing.assert_close(kl, expected_kl)
    mse_total, mse_rec, _ = vae_loss(x_hat, x, mu, log_var, reconstruction="mse", return_parts=True)
    torch.testing.assert_close(mse_rec, F.mse_loss(x_hat, x, reduction="sum") / batch_size)


@pytest.mark.parametrize("reconstruction", ["bce", "mse"])
def test_vae_loss_is_unchanged_when_the_batch_is_doubled_with_copies(reconstruction):
    batch = vae_batch()
    doubled = [torch.cat([t, t]) for t in batch]
    torch.testing.assert_close(
        vae_loss(*doubled, reconstruction=reconstruction), vae_loss(*batch, reconstruction=reconstruction)
    )
    # ... but doubling the pixels of each example doubles the reconstruction term (a sum, not a mean).
    x_hat, x, mu, log_var = batch
    wide = (torch.cat([x_hat, x_hat], dim=-1), torch.cat([x, x], dim=-1), mu, log_var)
    _, rec, _ = vae_loss(*batch, reconstruction=reconstruction, return_parts=True)
    _, wide_rec, _ = vae_loss(*wide, reconstruction=reconstruction, return_parts=True)
    torch.testing.assert_close(wide_rec, 2 * rec)


def test_vae_loss_back_propagates_to_the_decoder_and_the_encoder():
    x_hat, x, mu, log_var = (t.clone().requires_grad_(i != 1) for i, t in enumerate(vae_batch()))
    vae_loss(x_hat, x, mu, log_var).backward()
    torch.testing.assert_close(x_hat.grad, (torch.sigmoid(x_hat) - x).detach() / x.shape[0])
    torch.testing.assert_close(mu.grad, mu.detach() / x.shape[0])
    torch.testing.assert_close(log_var.grad, 0.5 * (log_var.detach().exp() - 1) / x.shape[0])


@pytest.mark.parametrize("shift", [-0.5, 0.5])
def test_vae_loss_bce_rejects_targets_outside_0_1_and_says_why(shift):
    x_hat, x, mu, log_var = vae_batch()
    with pytest.raises(ValueError, match=r"targets x in \[0, 1\].*Normalize.*reconstruction='mse'"):
        vae_loss(x_hat, x + shift, mu, log_var)
    vae_loss(x_hat, x + shift, mu, log_var, reconstruction="mse")  # fine for values


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda b: (b[0][:, :, :3], *b[1:]), ValueError, "x_hat and x of the same shape"),
        (lambda b: (b[0], b[1], b[2][:3], b[3][:3]), ValueError, "batch size 3 but x has 4"),
        (lambda b: (b[0], b[1], b[2], b[3][:, :2]), ValueError, "mu and log_var of the same shape"),
        (lambda b: (b[0][0, 0, 0, 0], b[1][0, 0, 0, 0], b[2], b[3]), ValueError, "batch dimension"),
        (lambda b: (b[0], (b[1] > 0.5).long(), b[2], b[3]), TypeError, "floating-point x"),
    ],
)
def test_vae_loss_rejects_bad_shapes_and_types(change, error, message):
    with pytest.raises(error, match=message):
        vae_loss(*change(vae_batch()))


def test_vae_loss_rejects_an_unknown_reconstruction():
    with pytest.raises(ValueError, match="'bce' .*or 'mse'; got 'l1'"):
        vae_loss(*vae_batch(), reconstruction="l1")
