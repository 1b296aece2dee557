import pytest
import torch

from dpdl.data.sequence_tasks import ADDING_BASELINE_MSE, adding_problem


def test_adding_problem_marks_one_step_in_each_half_and_sums_their_values():
    X, y = adding_problem(500, 11, generator=0)
    assert X.shape == (500, 11, 2) and y.shape == (500,)
    assert X.dtype == torch.float32 and y.dtype == torch.float32
    marks = X[..., 1]
    assert set(marks.unique().tolist()) == {0.0, 1.0}
    assert marks.sum(1).eq(2).all(), "exactly two marks per sequence"
    assert marks[:, :5].sum(1).eq(1).all() and marks[:, 5:].sum(1).eq(1).all(), "one mark in each half (T // 2 = 5)"
    torch.testing.assert_close(y, (X[..., 0] * marks).sum(1))
    assert X[..., 0].min() >= 0 and X[..., 0].max() < 1


def test_adding_problem_marks_reach_every_position_of_their_half():
    X, _ = adding_problem(2000, 8, generator=1)
    first = X[:, :4, 1].argmax(1)
    second = X[:, 4:, 1].argmax(1) + 4
    assert set(first.tolist()) == {0, 1, 2, 3} and set(second.tolist()) == {4, 5, 6, 7}


def test_adding_problem_is_repeatable_from_a_seed_or_a_generator():
    X1, y1 = adding_problem(20, 30, generator=7)
    X2, y2 = adding_problem(20, 30, generator=torch.Generator().manual_seed(7))
    assert torch.equal(X1, X2) and torch.equal(y1, y2)
    X3, _ = adding_problem(20, 30, generator=8)
    assert not torch.equal(X1, X3)


def test_predicting_the_mean_scores_the_baseline_mse():
    _, y = adding_problem(200_000, 4, generator=3)
    assert ADDING_BASELINE_MSE == pytest.approx(1 / 6)
    assert ((y - 1) ** 2).mean().item() == pytest.approx(ADDING_BASELINE_MSE, rel=0.01)


def test_the_shortest_sequence_has_a_mark_in_each_of_its_two_steps():
    X, y = adding_problem(3, 2, generator=0)
    assert X[..., 1].eq(1).all()
    torch.testing.assert_close(y, X[..., 0].sum(1))


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((0, 10), {}, "num_sequences must be a positive int"),
        ((5, 1), {}, "length must be at least 2"),
        ((5, 10.0), {}, "length must be a positive int"),
        ((5, 10), {"generator": "seed"}, "generator must be an int seed"),
    ],
)
def test_adding_problem_rejects_bad_arguments_saying_what_to_pass(args, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        adding_problem(*args, **kwargs)
