import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck

from dpdl.relax import (
    gumbel_softmax,
    reinforce_surrogate,
    sample_normal,
    smooth_l1,
    soft_argmax,
    soft_maximum,
    softmax,
    straight_through,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0, requires_grad=True):
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float64).requires_grad_(requires_grad)


# Vectors whose largest entry beats the runner-up by >= 0.5, so that argmax is well defined and a
# temperature of 1e-2 makes the runner-up's weight at most exp(-50).
distinct_vectors = (
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=8)
    .filter(lambda v: sorted(v)[-1] - sorted(v)[-2] >= 0.5)
    .map(lambda v: torch.tensor(v, dtype=torch.float64))
)


# --- gradients of every relaxation agree with finite differences (float64) -------------------


@pytest.mark.parametrize("fn", [softmax, soft_argmax, soft_maximum])
@pytest.mark.parametrize("dim", [-1, 0])
def test_softmax_family_passes_gradcheck_in_x_and_temperature(fn, dim):
    x = randn(3, 4)
    temperature = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x, t: fn(x, t, dim=dim), (x, temperature))


def test_soft_gumbel_softmax_passes_gradcheck_with_fixed_noise():
    logits = randn(2, 5)
    temperature = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda logits_, t: gumbel_softmax(logits_, t, generator=gen(3)), (logits, temperature))


def test_sample_normal_passes_gradcheck_with_fixed_noise():
    mu, log_var = randn(3, 2, seed=1), randn(3, 2, seed=2)
    assert gradcheck(lambda m, v: sample_normal(m, v, generator=gen(4)), (mu, log_var))


def test_reinforce_surrogate_passes_gradcheck_in_log_prob():
    log_prob = randn(6)
    loss = randn(6, seed=1, requires_grad=False)
    assert gradcheck(lambda lp: reinforce_surrogate(lp, loss, baseline=0.3), (log_prob,))


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_smooth_l1_passes_gradcheck(beta):
    x, y = randn(10) * 2, randn(10, seed=1)
    assert gradcheck(lambda x, y: smooth_l1(x, y, beta), (x, y))


def test_straight_through_gradient_is_not_the_true_derivative():
    # Forward is the constant `hard`, so finite differences see 0; backward passes soft's gradient.
    soft = randn(4)
    hard = torch.ones(4, dtype=torch.float64)
    assert not gradcheck(lambda s: straight_through(hard, s), (soft,), raise_exception=False)


# --- temperature ----------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(distinct_vectors)
def test_softmax_approaches_one_hot_argmax_as_temperature_goes_to_zero(x):
    expected = F.one_hot(x.argmax(), len(x)).to(x.dtype)
    torch.testing.assert_close(softmax(x, 1e-2), expected, atol=1e-9, rtol=0)


@settings(max_examples=50, deadline=None)
@given(distinct_vectors)
def test_softmax_approaches_uniform_as_temperature_grows(x):
    # Spread of x is <= 10, so at T = 1e4 every logit/T is within 1e-3 of the others, so each p_i is within 1/n * (e^1e-3 - 1) of 1/n.
    uniform = torch.full_like(x, 1 / len(x))
    torch.testing.assert_close(softmax(x, 1e4), uniform, atol=2e-3 / len(x), rtol=0)


@settings(max_examples=50, deadline=None)
@given(distinct_vectors)
def test_soft_argmax_and_soft_maximum_approach_argmax_and_max_at_low_temperature(x):
    assert abs(soft_argmax(x, 1e-2).item() - x.argmax().item()) < 1e-9
    assert abs(soft_maximum(x, 1e-2).item() - x.max().item()) < 1e-9


@settings(max_examples=50, deadline=None)
@given(distinct_vectors, st.floats(0.05, 20))
def test_soft_maximum_lies_between_mean_and_max(x, temperature):
    value = soft_maximum(x, temperature).item()
    assert x.mean().item() - 1e-9 <= value <= x.max().item() + 1e-9


def test_soft_argmax_of_ties_is_the_mean_of_their_indices():
    x = torch.tensor([0.0, 3.0, -1.0, 3.0])
    assert soft_argmax(x, 1e-3).item() == pytest.approx(2.0)


def test_softmax_family_reduces_along_the_given_dim():
    x = torch.randn(2, 3, 4, generator=gen())
    assert softmax(x, dim=1).sum(1).allclose(torch.ones(2, 4))
    assert soft_argmax(x, dim=1).shape == (2, 4)
    assert soft_maximum(x, dim=0).shape == (3, 4)
    torch.testing.assert_close(soft_argmax(x, 1e-4, dim=1), x.argmax(1).float())


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan, torch.tensor(0.0), torch.tensor([1.0, -2.0])])
@pytest.mark.parametrize("fn", [softmax, soft_argmax, soft_maximum, gumbel_softmax])
def test_non_positive_temperature_is_rejected_with_what_it_does(fn, bad):
    with pytest.raises(ValueError, match=r"temperature must be finite and > 0.*one-hot argmax.*uniform"):
        fn(torch.randn(3), bad)


def test_temperature_of_the_wrong_type_is_rejected():
    with pytest.raises(TypeError, match="temperature must be a number or a tensor"):
        softmax(torch.randn(3), "0.5")


@pytest.mark.parametrize(
    ("x", "message"),
    [([1.0, 2.0], "needs x to be a torch.Tensor.*torch.tensor"), (torch.tensor([1, 2]), "floating-point x.*float")],
)
def test_softmax_rejects_lists_and_integer_tensors_with_how_to_fix(x, message):
    with pytest.raises(TypeError, match=message):
        softmax(x)


# --- Gumbel-softmax ---------------------------------------------------------------------------


def test_hard_gumbel_softmax_sample_frequencies_match_softmax_of_logits():
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0], dtype=torch.float64)
    n = 20_000
    samples = gumbel_softmax(logits.expand(n, 4), 0.5, hard=True, generator=gen(7))
    frequencies = samples.mean(0)
    p = torch.softmax(logits, -1)
    # Each frequency is a mean of n Bernoulli(p_k) draws: standard error sqrt(p_k (1 - p_k) / n), at most
    # 0.0035 here. Four standard errors leave a chance below 1e-4 per category of failing by accident.
    standard_error = (p * (1 - p) / n).sqrt()
    assert ((frequencies - p).abs() < 4 * standard_error).all(), (frequencies, p)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_hard_gumbel_softmax_frequencies_pass_a_chi_square_test_for_half_precision_logits(dtype):
    # Noise drawn in bfloat16 (8 significant bits: u = k/256) cut off the Gumbel tails and biased the
    # samples: this test gave p ~ 1e-44 for bfloat16 then.
    from scipy.stats import chisquare

    logits = torch.tensor([4.0, 0.0, -2.0, 2.0], dtype=dtype)  # exact in both dtypes
    n = 200_000
    samples = gumbel_softmax(logits.expand(n, 4), 0.5, hard=True, generator=gen(7))
    assert samples.dtype == dtype
    counts = samples.double().sum(0)
    assert counts.sum() == n  # one-hot rows
    expected = torch.softmax(logits.double(), -1) * n
    # The generator is seeded, so the p-value is fixed; an unbiased sampler fails a 1e-3 level by accident
    # once in a thousand seeds.
    assert chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3, (counts, expected)


def test_soft_gumbel_samples_lie_on_the_simplex_along_dim():
    logits = torch.randn(5, 6, 3, generator=gen(1)) * 3
    for dim in (-1, 1):
        y = gumbel_softmax(logits, 0.3, dim=dim, generator=gen(2))
        assert y.shape == logits.shape
        assert (y >= 0).all()
        torch.testing.assert_close(y.sum(dim), torch.ones_like(y.sum(dim)))


def test_hard_gumbel_softmax_is_the_one_hot_argmax_of_the_soft_sample_with_its_gradient():
    logits = torch.randn(8, 5, generator=gen(1), dtype=torch.float64, requires_grad=True)
    weights = torch.randn(8, 5, generator=gen(2), dtype=torch.float64)
    soft = gumbel_softmax(logits, 0.5, generator=gen(3))
    hard = gumbel_softmax(logits, 0.5, hard=True, generator=gen(3))
    assert torch.equal(hard.detach(), F.one_hot(soft.argmax(-1), 5).to(hard.dtype))
    (soft_grad,) = torch.autograd.grad((weights * soft).sum(), logits)
    (hard_grad,) = torch.autograd.grad((weights * hard).sum(), logits)
    torch.testing.assert_close(hard_grad, soft_grad)
    assert soft_grad.abs().sum() > 0


def test_gumbel_softmax_is_repeatable_with_a_seeded_generator_and_varies_without_reseeding():
    logits = torch.zeros(100, 4)
    g = gen(11)
    first = gumbel_softmax(logits, generator=g)
    second = gumbel_softmax(logits, generator=g)
    assert torch.equal(first, gumbel_softmax(logits, generator=gen(11)))
    assert not torch.equal(first, second)


def test_gumbel_softmax_stays_finite_for_extreme_logits_and_small_temperature():
    logits = torch.tensor([[1e4, -1e4, 0.0]]).expand(1000, 3)
    y = gumbel_softmax(logits, 1e-3, generator=gen())
    assert torch.isfinite(y).all()
    assert (y.argmax(-1) == 0).all()


# --- straight-through ---------------------------------------------------------------------------


def test_straight_through_forward_is_hard_backward_is_soft():
    x = torch.tensor([0.2, 1.7, -0.6], requires_grad=True)
    soft = torch.sigmoid(3 * x)
    hard = (soft > 0.5).float()
    y = straight_through(hard, soft)
    torch.testing.assert_close(y, hard)
    weights = torch.tensor([1.0, -2.0, 0.5])
    (grad,) = torch.autograd.grad((weights * y).sum(), x)
    (expected,) = torch.autograd.grad((weights * torch.sigmoid(3 * x)).sum(), x)
    torch.testing.assert_close(grad, expected)


def test_straight_through_rounding_learns_through_a_step():
    # round() has zero gradient almost everywhere; with straight-through the parameter still moves.
    w = torch.tensor(0.2, requires_grad=True)
    y = straight_through(torch.round(w.detach()), w)
    (y - 1.0).pow(2).backward()
    assert y.item() == 0.0
    assert w.grad.item() == pytest.approx(-2.0)


def test_straight_through_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"same shape.*\(3,\) and \(1, 3\)"):
        straight_through(torch.zeros(3), torch.zeros(1, 3))
    with pytest.raises(TypeError, match="hard to be a torch.Tensor"):
        straight_through([0.0, 1.0], torch.zeros(2))


# --- reparameterisation ---------------------------------------------------------------------------


def test_sample_normal_has_the_requested_mean_and_standard_deviation():
    mu = torch.tensor([1.0, -2.0], dtype=torch.float64)
    std = torch.tensor([2.0, 0.5], dtype=torch.float64)
    n = 50_000
    z = sample_normal(mu, 2 * std.log(), generator=gen(5), sample_shape=(n,))
    assert z.shape == (n, 2)
    # Standard errors: std / sqrt(n) for the mean, about std / sqrt(2 n) for the standard deviation.
    assert ((z.mean(0) - mu).abs() < 4 * std / math.sqrt(n)).all()
    assert ((z.std(0) - std).abs() < 4 * std / math.sqrt(2 * n)).all()


def test_sample_normal_gradient_is_one_in_mu_and_half_the_noise_in_log_var():
    mu = torch.randn(4, 3, generator=gen(1), requires_grad=True)
    log_var = torch.randn(4, 3, generator=gen(2), requires_grad=True)
    z = sample_normal(mu, log_var, generator=gen(3))
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))
    torch.testing.assert_close(log_var.grad, 0.5 * (z - mu).detach())


@pytest.mark.parametrize(
    ("mu", "log_var", "error", "message"),
    [
        (torch.zeros(3, 2), torch.zeros(3, 1), ValueError, r"same shape.*\(3, 2\) and \(3, 1\)"),
        (torch.zeros(3), torch.zeros(3, dtype=torch.long), TypeError, "floating-point log_var"),
        (torch.zeros(3), None, TypeError, "log_var to be a torch.Tensor"),
    ],
)
def test_sample_normal_rejects_bad_mu_and_log_var(mu, log_var, error, message):
    with pytest.raises(error, match=message):
        sample_normal(mu, log_var)


@pytest.mark.parametrize("bad", [(-1,), ("a",)])
def test_sample_normal_rejects_a_bad_sample_shape(bad):
    with pytest.raises(ValueError, match="sample_shape"):
        sample_normal(torch.zeros(2), torch.zeros(2), sample_shape=bad)


def test_sample_normal_accepts_an_int_sample_shape():
    assert sample_normal(torch.zeros(2), torch.zeros(2), sample_shape=5).shape == (5, 2)


# --- REINFORCE ------------------------------------------------------------------------------------


def _reinforce_per_sample_gradients(theta, f, n, baseline, seed):
    """Per-sample score-function gradients, read off the surrogate's gradient w.r.t. log_prob."""
    samples = torch.multinomial(torch.softmax(theta, -1).detach(), n, replacement=True, generator=gen(seed))
    log_prob = torch.log_softmax(theta, -1)[samples]
    surrogate = reinforce_surrogate(log_prob, f[samples], baseline)
    (d_log_prob,) = torch.autograd.grad(surrogate, log_prob, retain_graph=True)
    (grad,) = torch.autograd.grad(surrogate, theta)
    # d surrogate / d theta = sum_i d surrogate / d log_prob_i * score_i, score_i = onehot_i - p.
    score = F.one_hot(samples, len(theta)).to(theta.dtype) - torch.softmax(theta, -1).detach()
    per_sample = n * d_log_prob[:, None] * score
    torch.testing.assert_close(per_sample.mean(0), grad)
    return grad, per_sample


def test_reinforce_surrogate_is_unbiased_and_a_baseline_lowers_variance_not_the_mean():
    theta = torch.tensor([0.5, -1.0, 0.0, 1.0], dtype=torch.float64, requires_grad=True)
    # A fixed loss per category, far from 0 on average: where a baseline helps most.
    f = torch.tensor([11.0, 13.0, 8.0, 10.5], dtype=torch.float64)
    (exact,) = torch.autograd.grad((torch.softmax(theta, -1) * f).sum(), theta)  # grad of E[loss]
    n = 20_000
    plain, plain_samples = _reinforce_per_sample_gradients(theta, f, n, None, seed=1)
    baseline = (torch.softmax(theta, -1) * f).sum().detach()
    with_b, with_b_samples = _reinforce_per_sample_gradients(theta, f, n, baseline, seed=2)
    # Each estimate is a mean of n i.i.d. per-sample gradients, so its standard error is their standard
    # deviation / sqrt(n); four standard errors per component.
    for estimate, per_sample in ((plain, plain_samples), (with_b, with_b_samples)):
        standard_error = per_sample.std(0) / math.sqrt(n)
        assert ((estimate - exact).abs() < 4 * standard_error).all(), (estimate, exact)
    # The baseline E[f] centres the weights f - b; without it every score is scaled by about 10.
    assert (with_b_samples.var(0).sum() < 0.5 * plain_samples.var(0).sum()).item()


def test_reinforce_surrogate_treats_loss_and_baseline_as_constants():
    log_prob = torch.randn(5, requires_grad=True)
    loss = torch.randn(5, requires_grad=True)
    baseline = torch.tensor(0.3, requires_grad=True)
    reinforce_surrogate(log_prob, loss, baseline).backward()
    assert loss.grad is None and baseline.grad is None
    torch.testing.assert_close(log_prob.grad, (loss - baseline).detach() / 5)


@pytest.mark.parametrize(
    ("log_prob", "loss", "baseline", "message"),
    [
        (torch.zeros(4), torch.zeros(4, 1), None, r"same shape.*\(4,\) and \(4, 1\)"),
        (torch.zeros(4), torch.zeros(()), None, "do not average the loss"),
        (torch.zeros(4), torch.zeros(4), torch.zeros(3), r"baseline of shape \(3,\) does not broadcast"),
        (torch.zeros(4), torch.zeros(4), torch.zeros(2, 4), r"baseline of shape \(2, 4\)"),
    ],
)
def test_reinforce_surrogate_rejects_mismatched_shapes(log_prob, loss, baseline, message):
    with pytest.raises(ValueError, match=message):
        reinforce_surrogate(log_prob, loss, baseline)


def test_reinforce_surrogate_accepts_a_per_sample_baseline():
    log_prob = torch.randn(4, requires_grad=True)
    loss = torch.tensor([1.0, 2.0, 3.0, 4.0])
    reinforce_surrogate(log_prob, loss, loss).backward()
    assert torch.equal(log_prob.grad, torch.zeros(4))


# --- smooth L1 ----------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=12),
    st.sampled_from([0.0, 0.1, 1.0, 3.0]),
    st.sampled_from(["mean", "sum", "none"]),
)
def test_smooth_l1_matches_torch(values, beta, reduction):
    x = torch.tensor(values, dtype=torch.float64)
    y = torch.linspace(-2, 2, len(values), dtype=torch.float64)
    expected = F.smooth_l1_loss(x, y, beta=beta, reduction=reduction)
    torch.testing.assert_close(smooth_l1(x, y, beta, reduction), expected)


def test_smooth_l1_gradient_matches_torch():
    x = torch.tensor([-3.0, -0.4, 0.0, 0.3, 2.5], requires_grad=True)
    y = torch.zeros(5)
    (grad,) = torch.autograd.grad(smooth_l1(x, y, 1.0), x)
    (expected,) = torch.autograd.grad(F.smooth_l1_loss(x, y, beta=1.0), x)
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("beta", [-0.5, math.inf, math.nan, "1"])
def test_smooth_l1_rejects_a_bad_beta(beta):
    with pytest.raises(ValueError, match="beta >= 0"):
        smooth_l1(torch.zeros(3), torch.zeros(3), beta)


def test_smooth_l1_rejects_mismatched_shapes_and_unknown_reduction():
    with pytest.raises(ValueError, match=r"same shape.*squeeze"):
        smooth_l1(torch.zeros(4, 1), torch.zeros(4))
    with pytest.raises(ValueError, match="reduction must be"):
        smooth_l1(torch.zeros(4), torch.zeros(4), reduction="avg")
    with pytest.raises(TypeError, match="y to be a torch.Tensor"):
        smooth_l1(torch.zeros(2), [0.0, 0.0])
