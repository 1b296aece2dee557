import pytest
import torch
from torch import nn

from dpdl.ssl import (
    BarlowTwins,
    ConvEncoder,
    balanced_subset,
    barlow_twins_loss,
    cross_correlation,
    encode,
    linear_probe,
    pretrain,
    standardize,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float64)


def loss_by_loops(z1, z2, lambd, eps=1e-5):
    """The formula of Zbontar et al. (2021), eq. (1)-(2), written entry by entry."""
    N, D = z1.shape
    mean1, mean2 = z1.mean(0), z2.mean(0)
    var1, var2 = ((z1 - mean1) ** 2).mean(0), ((z2 - mean2) ** 2).mean(0)  # BatchNorm's biased variance
    loss = 0.0
    for i in range(D):
        for j in range(D):
            c = sum((z1[b, i] - mean1[i]) * (z2[b, j] - mean2[j]) for b in range(N))
            c = c / N / torch.sqrt(var1[i] + eps) / torch.sqrt(var2[j] + eps)
            loss = loss + ((1 - c) ** 2 if i == j else lambd * c**2)
    return loss


# --- the loss against the paper's formula -----------------------------------------------------------


@pytest.mark.parametrize("lambd", [0.0, 5e-3, 0.5])
def test_barlow_twins_loss_matches_the_formula_entry_by_entry(lambd):
    z1, z2 = randn(6, 4, seed=1), randn(6, 4, seed=2)
    torch.testing.assert_close(barlow_twins_loss(z1, z2, lambd=lambd), loss_by_loops(z1, z2, lambd))


def test_lambda_weighs_only_the_off_diagonal_terms():
    z1, z2 = randn(32, 5, seed=3), randn(32, 5, seed=4)
    c = cross_correlation(z1, z2)
    on = ((torch.diagonal(c) - 1) ** 2).sum()
    off = (c**2).sum() - (torch.diagonal(c) ** 2).sum()
    for lambd in (0.0, 1e-3, 1.0):
        torch.testing.assert_close(barlow_twins_loss(z1, z2, lambd=lambd), on + lambd * off)
    # the loss is affine in lambd with slope equal to the off-diagonal sum
    slope = barlow_twins_loss(z1, z2, lambd=1.0) - barlow_twins_loss(z1, z2, lambd=0.0)
    torch.testing.assert_close(slope, off)


def test_the_default_lambda_is_the_papers():
    z1, z2 = randn(16, 3, seed=5), randn(16, 3, seed=6)
    torch.testing.assert_close(barlow_twins_loss(z1, z2), barlow_twins_loss(z1, z2, lambd=5e-3))


# --- the batch-norm of the embeddings ------------------------------------------------------------------


def test_standardize_is_batchnorm_without_affine_in_training_mode():
    z = randn(10, 7, seed=7).float() * 3 + 2
    batch_norm = nn.BatchNorm1d(7, affine=False).train()
    torch.testing.assert_close(standardize(z), batch_norm(z))


def test_standardized_columns_have_mean_zero_and_variance_one():
    z = randn(50, 4, seed=8) * torch.tensor([1.0, 10.0, 0.1, 5.0]) + 3
    s = standardize(z, eps=0.0)
    torch.testing.assert_close(s.mean(0), torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(s.var(0, unbiased=False), torch.ones(4, dtype=torch.float64))


def test_a_constant_feature_gives_zeros_not_nan():
    z = torch.cat([randn(8, 2), torch.full((8, 1), 4.0, dtype=torch.float64)], dim=1)
    assert torch.equal(standardize(z)[:, 2], torch.zeros(8, dtype=torch.float64))
    assert torch.isfinite(barlow_twins_loss(z, z)).all()


# --- invariances ------------------------------------------------------------------------------------------


def test_the_loss_ignores_a_positive_rescaling_and_shift_of_each_feature():
    z1, z2 = randn(64, 6, seed=9), randn(64, 6, seed=10)
    scale, shift = torch.rand(6, generator=gen(11), dtype=torch.float64) * 10 + 0.1, randn(6, seed=12) * 5
    torch.testing.assert_close(
        barlow_twins_loss(z1 * scale + shift, z2), barlow_twins_loss(z1, z2), atol=1e-6, rtol=1e-6
    )


def test_the_loss_ignores_the_order_of_the_batch_and_swapping_the_views():
    z1, z2 = randn(20, 5, seed=13), randn(20, 5, seed=14)
    order = torch.randperm(20, generator=gen(15))
    torch.testing.assert_close(barlow_twins_loss(z1[order], z2[order]), barlow_twins_loss(z1, z2))
    torch.testing.assert_close(barlow_twins_loss(z2, z1), barlow_twins_loss(z1, z2))  # C becomes C^T


def test_the_same_features_permuted_in_both_views_give_the_same_loss():
    z1, z2 = randn(20, 5, seed=16), randn(20, 5, seed=17)
    features = torch.randperm(5, generator=gen(18))
    torch.testing.assert_close(barlow_twins_loss(z1[:, features], z2[:, features]), barlow_twins_loss(z1, z2))


# --- what the loss rewards -----------------------------------------------------------------------------------


def test_identical_decorrelated_views_reach_zero():
    # columns with mean zero, orthogonal, of norm sqrt(N): C is the identity exactly
    centred = randn(64, 8, seed=19) - randn(64, 8, seed=19).mean(0)
    q, _ = torch.linalg.qr(centred)  # q's columns span centred's, so they have mean zero too
    z = q * 8
    assert barlow_twins_loss(z, z, eps=0.0).item() < 1e-6


def test_a_collapsed_representation_is_penalised():
    # every feature a copy of one: perfect invariance but full redundancy
    base = randn(64, 1, seed=20)
    collapsed = base.expand(64, 8)
    c = cross_correlation(collapsed, collapsed)
    torch.testing.assert_close(c, torch.ones(8, 8, dtype=torch.float64), atol=1e-4, rtol=0)
    assert barlow_twins_loss(collapsed, collapsed, lambd=5e-3).item() == pytest.approx(5e-3 * 56, rel=1e-3)


def test_independent_views_lose_about_one_per_feature():
    z1, z2 = randn(4096, 4, seed=21), randn(4096, 4, seed=22)
    assert barlow_twins_loss(z1, z2, lambd=0.0).item() == pytest.approx(4.0, abs=0.2)


def test_cross_correlation_entries_are_correlations():
    z1, z2 = randn(100, 3, seed=23), randn(100, 3, seed=24)
    c = cross_correlation(z1, z2, eps=0.0)
    for i in range(3):
        for j in range(3):
            expected = torch.corrcoef(torch.stack([z1[:, i], z2[:, j]]))[0, 1]
            torch.testing.assert_close(c[i, j], expected)


def test_the_loss_has_a_gradient_that_reduces_it():
    z1 = randn(32, 4, seed=25).requires_grad_(True)
    z2 = z1.detach() + 0.5 * randn(32, 4, seed=26)
    loss = barlow_twins_loss(z1, z2)
    loss.backward()
    with torch.no_grad():
        assert barlow_twins_loss(z1 - 0.01 * z1.grad, z2) < loss


# --- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "z1, z2, message",
    [
        (torch.zeros(4, 3), torch.zeros(5, 3), "same shape"),
        (torch.zeros(4), torch.zeros(4), r"\(N, D\)"),
        (torch.zeros(1, 3), torch.zeros(1, 3), "N >= 2"),
        (torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, 3, dtype=torch.long), "float tensor"),
    ],
)
def test_bad_embeddings_say_what_is_wrong(z1, z2, message):
    with pytest.raises(ValueError, match=message):
        barlow_twins_loss(z1, z2)


def test_a_negative_lambda_is_refused():
    with pytest.raises(ValueError, match="lambd must be a number >= 0"):
        barlow_twins_loss(torch.zeros(4, 3), torch.zeros(4, 3), lambd=-1)


# --- the models, pre-training and the probe ----------------------------------------------------------------------


def test_conv_encoder_and_projector_shapes():
    encoder = ConvEncoder(width=4)
    assert encoder(torch.zeros(3, 1, 28, 28)).shape == (3, 16) and encoder.feature_dim == 16
    model = BarlowTwins(encoder, encoder.feature_dim, projector_dim=32)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 32)
    with pytest.raises(ValueError, match="width must be a positive int"):
        ConvEncoder(width=0)


def test_pretrain_lowers_the_loss_without_labels_and_leaves_eval_mode():
    torch.manual_seed(0)
    X = (torch.rand(256, 12, 12, generator=gen(27)) * 255).to(torch.uint8)
    encoder = ConvEncoder(width=4)
    model = BarlowTwins(encoder, encoder.feature_dim, projector_dim=16)

    def augment(images):
        return images + 0.05 * torch.randn(images.shape, generator=noise)

    noise = gen(28)
    losses = pretrain(model, X, augment, epochs=6, batch_size=64, lr=1e-2, generator=gen(29))
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0]
    assert not model.training


def test_pretrain_calls_the_loss_with_two_different_views_of_full_batches():
    calls = []

    def loss_fn(z1, z2):
        calls.append((z1.shape, torch.equal(z1, z2)))
        return (z1 - z2).pow(2).sum()

    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    X = torch.rand(70, 1, 4, 4)
    pretrain(model, X, lambda images: images + torch.randn_like(images), loss_fn=loss_fn, batch_size=32)
    assert calls == [((32, 3), False)] * 2, "70 images in batches of 32: two full batches, two views each"


def test_pretrain_refuses_a_batch_larger_than_the_data():
    with pytest.raises(ValueError, match="batch_size must be an int between 2"):
        pretrain(nn.Linear(4, 2), torch.rand(10, 1, 2, 2), lambda X: X, batch_size=11)


def test_encode_gives_cpu_features_without_gradients_in_eval_mode():
    encoder = ConvEncoder(width=2).train()
    X = (torch.rand(10, 28, 28) * 255).to(torch.uint8)
    features = encode(encoder, X, batch_size=4)
    assert features.shape == (10, 8) and not features.requires_grad and not encoder.training
    torch.testing.assert_close(features, encoder(X.float().unsqueeze(1) / 255).detach())


def test_balanced_subset_takes_per_class_of_each_class_at_random():
    y = torch.arange(10).repeat(30)
    chosen = balanced_subset(y, 3, generator=gen(30))
    assert len(chosen) == 30 and len(set(chosen.tolist())) == 30
    assert torch.equal(torch.bincount(y[chosen]), torch.full((10,), 3))
    assert not torch.equal(chosen, balanced_subset(y, 3, generator=gen(31)))
    with pytest.raises(ValueError, match="fewer than per_class=31"):
        balanced_subset(y, 31)


def test_linear_probe_separates_separable_features_and_not_noise():
    y = torch.arange(2).repeat(100)
    signal = torch.stack([y.double() * 4, randn(200, seed=32)], 1) + randn(200, 2, seed=33) * 0.5
    assert linear_probe(signal[:100], y[:100], signal[100:], y[100:]) > 0.95
    noise = randn(200, 2, seed=34)
    assert linear_probe(noise[:100], y[:100], noise[100:], y[100:]) < 0.7


def test_linear_probe_ignores_features_constant_in_training():
    y = torch.arange(2).repeat(50)
    features = torch.stack([y.double() * 4 + randn(100, seed=35) * 0.5, torch.zeros(100, dtype=torch.float64)], 1)
    test = features.clone()
    test[:, 1] = 1e3  # a blank pixel in every training image, ink at test time
    assert linear_probe(features, y, test, y) > 0.95
