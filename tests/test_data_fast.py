import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dpdl.data.fast import TensorLoader, mnist_loaders


def labelled_images(n: int, height: int = 4, width: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images whose every pixel holds the example's index, so a batch shows which rows it holds."""
    X = torch.arange(n, dtype=torch.uint8).view(n, 1, 1).expand(n, height, width).contiguous()
    return X, torch.arange(n)


def collect(loader):
    return [(X.clone(), y.clone()) for X, y in loader]


# --- batches: count, sizes, alignment ----------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 60),
    batch_size=st.integers(1, 25),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_batches_cover_the_data_once_with_len_batches_and_rows_aligned(n, batch_size, shuffle, drop_last, seed):
    if drop_last and batch_size > n:
        return  # rejected, see test_drop_last_with_batch_larger_than_data_is_an_error
    X, y = labelled_images(n)
    loader = TensorLoader(X, y, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=seed)
    batches = collect(loader)
    assert len(batches) == len(loader) == (n // batch_size if drop_last else -(-n // batch_size))
    sizes = [len(y_batch) for _, y_batch in batches]
    assert all(size == batch_size for size in sizes[:-1])
    assert sizes[-1] == batch_size or (not drop_last and sizes[-1] == n % batch_size)
    seen = torch.cat([y_batch for _, y_batch in batches])
    assert len(set(seen.tolist())) == len(seen)  # no example twice
    if not drop_last:
        assert sorted(seen.tolist()) == list(range(n))
    if not shuffle:
        assert seen.tolist() == list(range(len(seen)))
    for X_batch, y_batch in batches:  # each image still sits next to its own label
        assert torch.allclose(X_batch[:, 0, 0, 0] * 255, y_batch.float())


def test_dataset_size_and_len_count_examples_and_batches():
    X, y = labelled_images(10)
    assert TensorLoader(X, y, batch_size=4).dataset_size == 10
    assert len(TensorLoader(X, y, batch_size=4)) == 3
    assert len(TensorLoader(X, y, batch_size=4, drop_last=True)) == 2
    assert len(TensorLoader(X, y, batch_size=10, drop_last=True)) == 1


def test_repr_says_size_batches_and_device():
    X, y = labelled_images(10)
    assert repr(TensorLoader(X, y, batch_size=4, shuffle=True)) == (
        "TensorLoader(10 examples, batch_size=4, 3 batches, shuffle=True, device=cpu)"
    )


def test_shuffle_draws_a_new_order_every_epoch():
    X, y = labelled_images(200)
    loader = TensorLoader(X, y, batch_size=200, shuffle=True, generator=0)
    first, second = (next(iter(loader))[1] for _ in range(2))
    assert not torch.equal(first, second)
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(200))


def two_epochs(X, y, seed):
    loader = TensorLoader(X, y, batch_size=16, shuffle=True, generator=seed)
    return [[y_batch.tolist() for _, y_batch in loader] for _epoch in range(2)]


def test_same_seed_gives_the_same_batches_and_other_seeds_do_not():
    X, y = labelled_images(100)
    assert two_epochs(X, y, seed=3) == two_epochs(X, y, seed=3)
    assert two_epochs(X, y, seed=3) != two_epochs(X, y, seed=4)


def test_a_torch_generator_is_used_as_given():
    X, y = labelled_images(50)
    a = TensorLoader(X, y, batch_size=50, shuffle=True, generator=torch.Generator().manual_seed(7))
    b = TensorLoader(X, y, batch_size=50, shuffle=True, generator=7)
    assert torch.equal(next(iter(a))[1], next(iter(b))[1])


def test_without_a_generator_shuffling_follows_the_global_seed():
    X, y = labelled_images(50)
    loader = TensorLoader(X, y, batch_size=50, shuffle=True)
    torch.manual_seed(11)
    first = next(iter(loader))[1]
    torch.manual_seed(11)
    assert torch.equal(next(iter(loader))[1], first)


# --- conversion: scaling, normalisation, shapes ---------------------------------------------------


def test_uint8_images_get_a_channel_axis_and_are_scaled_to_unit_interval():
    X = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8)  # (1, 2, 2)
    X_batch, _ = next(iter(TensorLoader(X, torch.tensor([3]), batch_size=1)))
    assert X_batch.shape == (1, 1, 2, 2) and X_batch.dtype == torch.float32
    assert torch.allclose(X_batch, torch.tensor([[[[0.0, 1.0], [0.2, 0.4]]]]))
    assert X.dtype == torch.uint8  # the stored data stays uint8


def test_normalize_gives_x_minus_mean_over_std_of_the_scaled_pixels():
    generator = torch.Generator().manual_seed(0)
    X = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8, generator=generator)
    loader = TensorLoader(X, torch.zeros(64), batch_size=64, normalize=(0.1307, 0.3081))
    X_batch, _ = next(iter(loader))
    expected = (X.float().unsqueeze(1) / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(X_batch, expected, rtol=1e-5, atol=1e-5)
    assert X_batch.max().item() == pytest.approx((1 - 0.1307) / 0.3081, rel=1e-5)


def test_flatten_gives_one_row_per_example():
    X, y = labelled_images(5, 28, 28)
    X_batch, _ = next(iter(TensorLoader(X, y, batch_size=5, flatten=True, normalize=(0.5, 0.5))))
    assert X_batch.shape == (5, 784)
    torch.testing.assert_close(X_batch[:, 0], (torch.arange(5) / 255 - 0.5) / 0.5)


def test_per_channel_statistics_normalise_each_channel():
    X = torch.full((4, 3, 2, 2), 255, dtype=torch.uint8)
    loader = TensorLoader(X, torch.zeros(4), batch_size=4, normalize=((0.5, 0.25, 0.0), (0.5, 0.25, 2.0)))
    X_batch, _ = next(iter(loader))
    assert X_batch.shape == (4, 3, 2, 2)
    torch.testing.assert_close(X_batch[0, :, 0, 0], torch.tensor([1.0, 3.0, 0.5]))


def test_float_data_is_used_as_is_and_float64_when_asked():
    X = torch.linspace(-3, 3, 12).view(6, 2)
    X_batch, _ = next(iter(TensorLoader(X, torch.zeros(6), batch_size=6)))
    assert torch.equal(X_batch, X)
    X_batch, _ = next(iter(TensorLoader(X, torch.zeros(6), batch_size=6, dtype=torch.float64, normalize=(1.0, 2.0))))
    assert X_batch.dtype == torch.float64
    torch.testing.assert_close(X_batch, (X.double() - 1) / 2)


def test_changing_a_batch_in_place_does_not_change_the_data():
    X, y = torch.zeros(8, 3), torch.zeros(8, dtype=torch.long)
    loader = TensorLoader(X, y, batch_size=4)
    for X_batch, y_batch in loader:
        X_batch += 1
        y_batch += 1
    assert X.sum() == 0 and y.sum() == 0
    assert all(X_batch.sum() == 0 for X_batch, _ in loader)


def test_batches_live_on_the_requested_device():
    X, y = labelled_images(8)
    loader = TensorLoader(X, y, batch_size=4, device="cpu")
    X_batch, y_batch = next(iter(loader))
    assert X_batch.device.type == y_batch.device.type == loader.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_data_is_moved_to_the_gpu_once_and_stays_uint8():
    X, y = labelled_images(300)
    loader = TensorLoader(X, y, batch_size=128, shuffle=True, device="cuda", normalize=(0.5, 0.5))
    assert loader.X.is_cuda and loader.X.dtype == torch.uint8
    for X_batch, y_batch in loader:
        assert X_batch.is_cuda and y_batch.is_cuda
        torch.testing.assert_close(X_batch[:, 0, 0, 0], (y_batch.float() / 255 - 0.5) / 0.5)


# --- bad input -------------------------------------------------------------------------------------


def test_mismatched_lengths_are_an_error_naming_both():
    with pytest.raises(ValueError, match=r"len\(X\)=5 and len\(y\)=4"):
        TensorLoader(torch.zeros(5, 2), torch.zeros(4))


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "64"])
def test_bad_batch_sizes_are_an_error(batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        TensorLoader(torch.zeros(5, 2), torch.zeros(5), batch_size=batch_size)


def test_drop_last_with_batch_larger_than_data_is_an_error():
    with pytest.raises(ValueError, match="no batch at all"):
        TensorLoader(torch.zeros(5, 2), torch.zeros(5), batch_size=8, drop_last=True)


@pytest.mark.parametrize(
    "X, y, error, message",
    [
        ([[1.0]], torch.zeros(1), TypeError, "X must be a torch.Tensor"),
        (torch.zeros(3, 2, dtype=torch.int64), torch.zeros(3), TypeError, "uint8 .* or floating point"),
        (torch.zeros(0, 2), torch.zeros(0), ValueError, "empty"),
        (torch.tensor(1.0), torch.zeros(1), ValueError, "first \\(example\\) dimension"),
    ],
)
def test_bad_data_is_an_error_saying_what_to_do(X, y, error, message):
    with pytest.raises(error, match=message):
        TensorLoader(X, y)


@pytest.mark.parametrize(
    "normalize, message",
    [
        (0.5, "pair \\(mean, std\\)"),
        ((0.5, 0.0), "std must be positive"),
        (((0.1, 0.2), (0.3, 0.3)), "2 values but the batches have 1 channel"),
        (([[0.1]], 0.3), "1-D sequence"),
    ],
)
def test_bad_normalisation_is_an_error(normalize, message):
    with pytest.raises(ValueError, match=message):
        TensorLoader(torch.zeros(4, 28, 28, dtype=torch.uint8), torch.zeros(4), normalize=normalize)


def test_integer_dtype_for_batches_is_an_error():
    with pytest.raises(ValueError, match="floating-point dtype"):
        TensorLoader(torch.zeros(4, 2), torch.zeros(4), dtype=torch.int32)


# --- MNIST loaders on the real data ------------------------------------------------------------------


@pytest.mark.integration
def test_mnist_loaders_give_normalised_train_and_test_batches(data_env):
    train_loader, test_loader = mnist_loaders(batch_size=256, device="cpu")
    assert (train_loader.dataset_size, test_loader.dataset_size) == (60000, 10000)
    assert len(train_loader) == 235 and len(test_loader) == 40
    X_all = torch.cat([X_batch for X_batch, _ in test_loader])
    assert X_all.shape == (10000, 1, 28, 28)
    # normalised with the *training* statistics: close to, not exactly, mean 0 and std 1 on test data
    assert abs(X_all.mean().item()) < 0.02 and abs(X_all.std().item() - 1) < 0.02
    X_batch, y_batch = next(iter(train_loader))
    assert X_batch.shape == (256, 1, 28, 28) and y_batch.dtype == torch.int64


@pytest.mark.integration
def test_mnist_loaders_hold_out_a_seeded_validation_set(data_env):
    train_loader, val_loader, test_loader = mnist_loaders(val_size=5000, seed=1, device="cpu", flatten=True)
    assert (train_loader.dataset_size, val_loader.dataset_size, test_loader.dataset_size) == (55000, 5000, 10000)
    assert next(iter(val_loader))[0].shape == (128, 784)
    # train + val is exactly the original training set: compare label counts and a fingerprint per image
    from dpdl.data.vision import mnist_tensors

    X_full, y_full = mnist_tensors("train")
    weights = torch.randn(784, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fingerprint = lambda X: sorted((X.reshape(len(X), -1).double() @ weights).round(decimals=6).tolist())  # noqa: E731
    parts = [train_loader, val_loader]
    assert torch.equal(sum(torch.bincount(loader.y, minlength=10) for loader in parts), torch.bincount(y_full))
    assert fingerprint(torch.cat([loader.X for loader in parts])) == fingerprint(X_full)
    _, same_val, _ = mnist_loaders(val_size=5000, seed=1, device="cpu")
    _, other_val, _ = mnist_loaders(val_size=5000, seed=2, device="cpu")
    assert torch.equal(same_val.X, val_loader.X)
    assert not torch.equal(other_val.X, val_loader.X)


@pytest.mark.integration
def test_mnist_loaders_serve_fashion_mnist_with_its_own_statistics(data_env):
    from dpdl.data.vision import FASHION_MNIST_MEAN, FASHION_MNIST_STD

    train_loader, _ = mnist_loaders(dataset="fashion_mnist", device="cpu", batch_size=60000)
    X_batch, y_batch = next(iter(train_loader))
    assert torch.bincount(y_batch).tolist() == [6000] * 10
    assert abs(X_batch.mean().item()) < 1e-3 and abs(X_batch.std().item() - 1) < 1e-3
    assert X_batch.min().item() == pytest.approx(-FASHION_MNIST_MEAN / FASHION_MNIST_STD, rel=1e-5)


@pytest.mark.integration
def test_mnist_loaders_same_seed_same_training_batches(data_env):
    first = next(iter(mnist_loaders(seed=5, device="cpu")[0]))[1]
    assert torch.equal(next(iter(mnist_loaders(seed=5, device="cpu")[0]))[1], first)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dataset": "cifar10"}, "'mnist' or 'fashion_mnist'"),
        ({"val_size": -1}, "val_size must be an int from 0 to 59999"),
        ({"val_size": 60000}, "val_size must be an int from 0 to 59999"),
        ({"val_size": 0.1}, "val_size must be an int"),
    ],
)
@pytest.mark.integration
def test_mnist_loaders_reject_bad_arguments(data_env, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mnist_loaders(device="cpu", **kwargs)
