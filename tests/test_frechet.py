import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dpdl.data
from dpdl import frechet
from dpdl.frechet import feature_frechet_distance, frechet_distance, gaussian_statistics
from dpdl.models import BetterCNN


def random_covariance(dim, generator, rank=None):
    A = torch.randn(dim, rank or dim, generator=generator, dtype=torch.float64)
    return A @ A.T / (rank or dim)


def random_rotation(dim, generator):
    Q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return Q


def scipy_frechet_distance(mean_a, cov_a, mean_b, cov_b):
    """The formula as most FID code writes it: scipy's sqrtm of the (non-symmetric) product."""
    mean_a, cov_a, mean_b, cov_b = (np.asarray(t, dtype=np.float64) for t in (mean_a, cov_a, mean_b, cov_b))
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


# gaussian_statistics


def test_gaussian_statistics_match_numpy_mean_and_unbiased_covariance():
    X = torch.randn(200, 5, generator=torch.Generator().manual_seed(0)) * torch.arange(1, 6)
    mean, cov = gaussian_statistics(X)
    assert mean.dtype == cov.dtype == torch.float64
    np.testing.assert_allclose(mean.numpy(), X.double().numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov.numpy(), np.cov(X.double().numpy(), rowvar=False), rtol=1e-10)


def test_gaussian_statistics_are_computed_in_float64_from_float32_features():
    # A large offset: float32 arithmetic would lose the small spread around it.
    X = (1e4 + torch.randn(1000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))).float()
    _, cov = gaussian_statistics(X)
    np.testing.assert_allclose(cov.numpy(), np.cov(X.double().numpy(), rowvar=False), rtol=1e-9)


@pytest.mark.parametrize(
    "features, message",
    [
        (torch.zeros(5), r"shape \(N, D\)"),
        (torch.zeros(1, 3), "at least 2 examples"),
        (torch.full((3, 2), math.nan), "NaN"),
    ],
)
def test_gaussian_statistics_reject_bad_features_with_a_reason(features, message):
    with pytest.raises(ValueError, match=message):
        gaussian_statistics(features)


# frechet_distance: closed-form cases


def test_equal_gaussians_are_at_distance_zero_even_when_singular():
    g = torch.Generator().manual_seed(0)
    for rank in (6, 3):
        mean, cov = torch.randn(6, generator=g, dtype=torch.float64), random_covariance(6, g, rank)
        assert frechet_distance(mean, cov, mean, cov) == pytest.approx(0, abs=1e-9)


def test_a_translation_costs_the_squared_distance_between_the_means():
    g = torch.Generator().manual_seed(1)
    cov = random_covariance(4, g)
    mean_a, mean_b = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    expected = (mean_a - mean_b).square().sum().item()
    assert frechet_distance(mean_a, cov, mean_b, cov) == pytest.approx(expected, rel=1e-9)


def test_diagonal_covariances_give_the_sum_of_squared_differences_of_standard_deviations():
    var_a, var_b = torch.tensor([1.0, 4.0, 0.25, 9.0]), torch.tensor([4.0, 1.0, 0.25, 0.0])
    mean_a, mean_b = torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([1.0, 1.0, 0.0, 3.0])
    expected = (mean_a - mean_b).square().sum() + (var_a.sqrt() - var_b.sqrt()).square().sum()  # 5 + 1 + 1 + 0 + 9
    assert expected.item() == 16
    assert frechet_distance(mean_a, torch.diag(var_a), mean_b, torch.diag(var_b)) == pytest.approx(16, rel=1e-12)


def test_one_dimension_is_the_wasserstein_distance_of_two_normals():
    # W2^2(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2
    d = frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([-2.0]), torch.tensor([[9.0]]))
    assert d == pytest.approx(9 + 1)


def test_commuting_covariances_compare_eigenvalue_by_eigenvalue():
    g = torch.Generator().manual_seed(2)
    Q = random_rotation(5, g)
    var_a = torch.tensor([3.0, 1.0, 0.5, 2.0, 0.0], dtype=torch.float64)
    var_b = torch.tensor([1.0, 1.0, 2.0, 0.1, 4.0], dtype=torch.float64)
    cov_a, cov_b = Q @ torch.diag(var_a) @ Q.T, Q @ torch.diag(var_b) @ Q.T
    torch.testing.assert_close(cov_a @ cov_b, cov_b @ cov_a)
    mean = torch.zeros(5, dtype=torch.float64)
    expected = (var_a.sqrt() - var_b.sqrt()).square().sum().item()
    assert frechet_distance(mean, cov_a, mean, cov_b) == pytest.approx(expected, rel=1e-9)


# frechet_distance: properties


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 8))
def test_the_distance_is_symmetric_and_agrees_with_scipy_sqrtm(seed, dim):
    g = torch.Generator().manual_seed(seed)
    mean_a, mean_b = (torch.randn(dim, generator=g, dtype=torch.float64) for _ in range(2))
    cov_a, cov_b = random_covariance(dim, g), random_covariance(dim, g)
    forward, backward = frechet_distance(mean_a, cov_a, mean_b, cov_b), frechet_distance(mean_b, cov_b, mean_a, cov_a)
    assert forward == pytest.approx(backward, rel=1e-8, abs=1e-10)
    assert forward == pytest.approx(scipy_frechet_distance(mean_a, cov_a, mean_b, cov_b), rel=1e-6, abs=1e-8)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000))
def test_its_square_root_obeys_the_triangle_inequality(seed):
    g = torch.Generator().manual_seed(seed)
    gaussians = [(torch.randn(3, generator=g, dtype=torch.float64), random_covariance(3, g)) for _ in range(3)]
    (a, b, c) = gaussians
    ab, bc, ac = (math.sqrt(frechet_distance(*x, *y)) for x, y in ((a, b), (b, c), (a, c)))
    assert ac <= ab + bc + 1e-9


def test_singular_covariances_give_a_finite_result_where_a_naive_sqrtm_needs_care():
    # 50-d features from 20 examples: both covariances have rank 19, as with too few samples.
    g = torch.Generator().manual_seed(3)
    A, B = torch.randn(20, 50, generator=g), torch.randn(20, 50, generator=g) + 0.5
    d = feature_frechet_distance(A, B)
    assert math.isfinite(d) and d > 0
    mean_a, cov_a = gaussian_statistics(A)
    mean_b, cov_b = gaussian_statistics(B)
    assert d == pytest.approx(scipy_frechet_distance(mean_a, cov_a, mean_b, cov_b), rel=1e-4)


def test_scaling_the_features_by_c_scales_the_squared_distance_by_c_squared():
    g = torch.Generator().manual_seed(4)
    A, B = torch.randn(300, 4, generator=g), torch.randn(300, 4, generator=g) * 2 + 1
    assert feature_frechet_distance(3 * A, 3 * B) == pytest.approx(9 * feature_frechet_distance(A, B), rel=1e-9)


def test_fewer_samples_of_the_same_gaussian_give_a_larger_distance_the_sample_size_bias():
    g = torch.Generator().manual_seed(5)
    reference = torch.randn(20_000, 10, generator=g)
    small = feature_frechet_distance(torch.randn(100, 10, generator=g), reference)
    large = feature_frechet_distance(torch.randn(5_000, 10, generator=g), reference)
    assert large < 0.1 * small


def test_the_distance_accepts_numpy_arrays_and_lists():
    assert frechet_distance([0.0, 0.0], np.eye(2), np.array([3.0, 4.0]), [[1.0, 0.0], [0.0, 1.0]]) == pytest.approx(25)


@pytest.mark.parametrize(
    "args, message",
    [
        ((torch.zeros(2), torch.eye(2), torch.zeros(3), torch.eye(3)), "different spaces"),
        ((torch.zeros(2), torch.eye(3), torch.zeros(2), torch.eye(2)), r"cov_a must be \(2, 2\)"),
        ((torch.zeros(2, 1), torch.eye(2), torch.zeros(2), torch.eye(2)), "mean_a must be a vector"),
        ((torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]), torch.zeros(2), torch.eye(2)), "not symmetric"),
        (
            (torch.zeros(2), torch.eye(2), torch.zeros(2), torch.diag(torch.tensor([1.0, -1.0]))),
            "cov_b is not positive semi-definite",
        ),
        ((torch.zeros(2), torch.eye(2) * math.inf, torch.zeros(2), torch.eye(2)), "NaN or infinite"),
    ],
)
def test_frechet_distance_rejects_what_is_not_a_pair_of_gaussians(args, message):
    with pytest.raises(ValueError, match=message):
        frechet_distance(*args)


def test_frechet_distance_rejects_what_is_not_numbers():
    with pytest.raises(TypeError, match="mean_a must be a tensor"):
        frechet_distance("mean", torch.eye(2), torch.zeros(2), torch.eye(2))


# features


def test_features_are_the_penultimate_layer_and_leave_the_mode_alone():
    torch.manual_seed(0)
    classifier = BetterCNN()
    images = torch.rand(7, 1, 28, 28)
    out = frechet.features(classifier, images, batch_size=3)
    assert out.shape == (7, 50) and out.device.type == "cpu"
    assert classifier.training, "features switched the classifier to eval mode and left it there"
    classifier.eval()
    with torch.no_grad():
        logits = classifier(images)
    torch.testing.assert_close(classifier.classifier[-1](out), logits)


def test_features_scale_uint8_digits_like_float_ones():
    classifier = BetterCNN().eval()
    digits = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        frechet.features(classifier, digits), frechet.features(classifier, digits.float().div(255).unsqueeze(1))
    )


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.rand(3, 1, 28, 28) * 2 - 1, r"\(x \+ 1\) / 2"),
        (torch.rand(3, 1, 28, 28) * 5, "sigmoid"),
        (torch.rand(3, 28, 28), "unsqueeze"),
        (torch.rand(3, 3, 28, 28), r"\(N, 1, 28, 28\)"),
    ],
)
def test_features_reject_images_the_classifier_never_saw_with_a_fix(images, message):
    with pytest.raises(ValueError, match=message):
        frechet.features(BetterCNN(), images)


def test_features_need_a_cnn_with_a_penultimate_layer():
    with pytest.raises(TypeError, match="features and a .classifier"):
        frechet.features(torch.nn.Linear(784, 10), torch.rand(2, 1, 28, 28))


# the classifier's recipe


def test_train_classifier_learns_digits_from_the_recipe(monkeypatch):
    # Two "digits" that differ in where the ink is: any classifier that trains separates them.
    g = torch.Generator().manual_seed(0)
    X = torch.randint(0, 60, (256, 28, 28), dtype=torch.uint8, generator=g)
    y = torch.arange(256) % 2
    X[y == 1, :, :14] += 150
    monkeypatch.setattr(dpdl.data, "mnist_tensors", lambda split: (X.clone(), y.clone()))
    recipe = dict(frechet.CLASSIFIER_RECIPE, epochs=2, batch_size=32)
    model = frechet.build_classifier(recipe)
    accuracy = frechet.train_classifier(model, recipe)
    assert accuracy > 0.95
    assert not model.training


def test_train_classifier_names_a_missing_recipe_setting():
    with pytest.raises(ValueError, match=r"lacks \['lr'\]"):
        frechet.train_classifier(BetterCNN(), {k: v for k, v in frechet.CLASSIFIER_RECIPE.items() if k != "lr"})
