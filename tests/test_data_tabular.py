import numpy as np
import pytest
import torch

from dpdl.data.tabular import SKLEARN_DATASETS, sklearn_dataset


@pytest.mark.parametrize(
    "name, n, d, classes",
    [("iris", 150, 4, [50, 50, 50]), ("digits", 1797, 64, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])],
)
def test_classification_sets_give_float_features_and_int64_class_indices(name, n, d, classes):
    X, y = sklearn_dataset(name)
    assert X.shape == (n, d) and X.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == classes


def test_diabetes_is_regression_with_float_targets():
    X, y = sklearn_dataset("diabetes", dtype=torch.float64)
    assert X.shape == (442, 10) and X.dtype == y.dtype == torch.float64
    assert 25 <= y.min().item() and y.max().item() <= 346  # disease progression one year later


def test_features_equal_scikit_learns():
    from sklearn.datasets import load_iris

    X, y = sklearn_dataset("iris")
    X_ref, y_ref = load_iris(return_X_y=True)
    np.testing.assert_allclose(X.numpy(), X_ref, rtol=1e-6)
    np.testing.assert_array_equal(y.numpy(), y_ref)


@pytest.mark.parametrize("name", sorted(SKLEARN_DATASETS))
def test_standardize_gives_zero_mean_unit_std_columns(name):
    X, _ = sklearn_dataset(name, standardize=True, dtype=torch.float64)
    raw, _ = sklearn_dataset(name, dtype=torch.float64)
    constant = raw.std(dim=0, unbiased=False) == 0  # digits' blank corner pixels
    torch.testing.assert_close(X.mean(dim=0), torch.zeros(X.shape[1], dtype=torch.float64), atol=1e-12, rtol=0)
    std = X.std(dim=0, unbiased=False)
    torch.testing.assert_close(std[~constant], torch.ones(int((~constant).sum()), dtype=torch.float64))
    assert (X[:, constant] == 0).all()


def test_as_tensors_false_gives_numpy_arrays():
    X, y = sklearn_dataset("digits", as_tensors=False)
    assert isinstance(X, np.ndarray) and X.dtype == np.float32 and y.dtype == np.int64
    assert X.max() == 16.0  # 4-bit grey levels


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown scikit-learn dataset 'wine'; known: 'iris', 'digits', 'diabetes'"):
        sklearn_dataset("wine")


def test_integer_dtype_is_an_error():
    with pytest.raises(ValueError, match="floating-point dtype"):
        sklearn_dataset("iris", dtype=torch.int64)
