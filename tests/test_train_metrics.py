import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dpdl.train import accuracy, per_class_accuracy


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# (logits (B, C), labels (B,)) with random sizes; ties in argmax are vanishingly unlikely with randn.
logits_and_labels = st.tuples(st.integers(1, 40), st.integers(2, 6), st.integers(0, 10_000)).map(
    lambda t: (
        torch.randn(t[0], t[1], generator=gen(t[2])),
        torch.randint(0, t[1], (t[0],), generator=gen(t[2] + 1)),
    )
)


@settings(max_examples=40, deadline=None)
@given(logits_and_labels)
def test_accuracy_is_the_fraction_of_argmax_hits(pair):
    logits, y = pair
    hits = sum(int(row.argmax()) == int(label) for row, label in zip(logits, y))
    assert accuracy(logits, y) == pytest.approx(hits / len(y))


@settings(max_examples=40, deadline=None)
@given(logits_and_labels)
def test_per_class_accuracy_weighted_by_class_counts_is_accuracy(pair):
    logits, y = pair
    num_classes = logits.shape[1]
    per_class = per_class_accuracy(logits, y)
    counts = torch.bincount(y, minlength=num_classes).float()
    assert per_class.shape == (num_classes,)
    assert torch.isnan(per_class[counts == 0]).all()
    seen = counts > 0
    assert (per_class[seen] * counts[seen]).sum().item() / len(y) == pytest.approx(accuracy(logits, y))


def test_worked_example_of_accuracy_and_per_class_accuracy():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]])
    y = torch.tensor([0, 1, 2, 2])  # third example wrong: class 2 predicted as 1
    assert accuracy(logits, y) == 0.75
    assert per_class_accuracy(logits, y).tolist() == [1.0, 1.0, 0.5]


def test_accuracy_accepts_predicted_class_indices():
    assert accuracy(torch.tensor([0, 1, 1, 3]), torch.tensor([0, 1, 2, 3])) == 0.75


@pytest.mark.parametrize("shape", [(4,), (4, 1)])
@pytest.mark.parametrize("label_dtype", [torch.long, torch.float32])
def test_one_logit_per_example_is_thresholded_at_zero(shape, label_dtype):
    logits = torch.tensor([2.0, -1.0, 0.5, -0.1]).reshape(shape)
    y = torch.tensor([1, 0, 0, 0], dtype=label_dtype)
    assert accuracy(logits, y) == 0.75
    assert per_class_accuracy(logits, y).tolist() == pytest.approx([2 / 3, 1.0])


def test_one_logit_with_labels_of_the_same_shape_compares_elementwise():
    logits = torch.tensor([[2.0], [-1.0], [0.5]])
    assert accuracy(logits, torch.tensor([[1.0], [0.0], [0.0]])) == pytest.approx(2 / 3)


def test_sequence_logits_count_every_position():
    logits = torch.zeros(2, 3, 4)  # (B, C, T)
    logits[:, 1, :] = 1.0  # always predicts class 1
    y = torch.tensor([[1, 1, 0, 2], [1, 1, 1, 1]])
    assert accuracy(logits, y) == 6 / 8


def test_per_class_accuracy_respects_num_classes_and_marks_absent_classes_nan():
    y_hat = torch.tensor([0, 1, 1])
    result = per_class_accuracy(y_hat, torch.tensor([0, 1, 0]), num_classes=4)
    assert result.shape == (4,)
    assert result[:2].tolist() == [0.5, 1.0]
    assert math.isnan(result[2]) and math.isnan(result[3])


def test_per_class_accuracy_of_class_indices_infers_the_number_of_classes():
    assert per_class_accuracy(torch.tensor([4, 0]), torch.tensor([0, 0])).shape == (5,)


# --- bad input gets a clear error -------------------------------------------------------------------


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="y_hat has 3 examples but y has 4"):
        accuracy(torch.randn(3, 2), torch.tensor([0, 1, 0, 1]))


@pytest.mark.parametrize("bad", [-1, 3])
def test_labels_outside_the_classes_are_rejected(bad):
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        accuracy(torch.randn(2, 3), torch.tensor([0, bad]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        per_class_accuracy(torch.randn(2, 3), torch.tensor([0, bad]))


def test_labels_beyond_num_classes_are_rejected():
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        per_class_accuracy(torch.tensor([0, 1]), torch.tensor([0, 2]), num_classes=2)


def test_one_hot_labels_are_rejected_with_the_fix():
    y_one_hot = torch.eye(3)[torch.tensor([0, 2])]
    with pytest.raises(ValueError, match=r"one-hot.*y\.argmax\(1\)"):
        accuracy(torch.randn(2, 3), y_one_hot)


def test_float_class_labels_are_rejected_with_the_fix():
    with pytest.raises(TypeError, match=r"y\.long\(\)"):
        accuracy(torch.randn(2, 3), torch.tensor([0.0, 2.0]))


def test_one_logit_needs_zero_one_labels():
    with pytest.raises(ValueError, match="must be 0 or 1"):
        accuracy(torch.randn(3), torch.tensor([0, 1, 2]))


@pytest.mark.parametrize(
    "y_hat, y",
    [
        (torch.randn(2, 3, 4), torch.tensor([0, 1])),  # (B, C, T) logits with (B,) labels
        (torch.tensor([[0, 1]]), torch.tensor([0])),  # class indices of the wrong shape
    ],
)
def test_shapes_that_cannot_be_compared_are_rejected(y_hat, y):
    with pytest.raises(ValueError, match="shape"):
        accuracy(y_hat, y)


def test_non_tensors_and_empty_batches_and_bad_num_classes_are_rejected():
    with pytest.raises(TypeError, match="torch.Tensor"):
        accuracy([0.1, 0.9], torch.tensor([1]))
    with pytest.raises(ValueError, match="empty"):
        accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="batch dimension"):
        accuracy(torch.tensor(1.0), torch.tensor(1))
    with pytest.raises(ValueError, match="num_classes"):
        per_class_accuracy(torch.randn(2, 3), torch.tensor([0, 1]), num_classes=0)


def test_per_class_accuracy_never_needs_float64_which_apple_mps_lacks(monkeypatch):
    """MPS refuses float64 (``.double()`` raises there; lab 1 reached it). Forbid float64 here the same way."""

    def no_float64(*args, **kwargs):
        raise TypeError("Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't support float64")

    real_to = torch.Tensor.to

    def to_without_float64(self, *args, **kwargs):
        if torch.float64 in args or kwargs.get("dtype") is torch.float64:
            no_float64()
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "double", no_float64)
    monkeypatch.setattr(torch.Tensor, "to", to_without_float64)
    y_hat = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    y = torch.tensor([0, 1, 1, 1])
    per_class = per_class_accuracy(y_hat, y)
    assert per_class.dtype == torch.float32 and per_class.device == y.device
    torch.testing.assert_close(per_class, torch.tensor([1.0, 1 / 3, math.nan]), equal_nan=True)
    assert accuracy(y_hat, y) == pytest.approx(0.5)


@pytest.mark.skipif(not (torch.backends.mps.is_available()), reason="needs Apple's MPS")
def test_metrics_run_on_mps():
    y_hat, y = torch.randn(8, 3, device="mps"), torch.randint(0, 3, (8,), device="mps")
    assert per_class_accuracy(y_hat, y).device.type == "mps"
    assert 0.0 <= accuracy(y_hat, y) <= 1.0
