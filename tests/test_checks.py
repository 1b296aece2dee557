"""dpdl._checks: one-line validators whose messages name the function, the argument, the need and the fix."""

import math

import pytest
import torch

from dpdl._checks import (
    apply_reduction,
    check_broadcasts,
    check_choice,
    check_number,
    check_same_shape,
    check_sizes,
    check_tensor,
)


def test_check_tensor_names_the_argument_and_the_fix():
    check_tensor("f", "x", torch.zeros(2))
    with pytest.raises(TypeError, match=r"f needs x to be a torch.Tensor; got list — wrap it with torch.tensor"):
        check_tensor("f", "x", [1.0])
    with pytest.raises(TypeError, match=r"f needs a floating-point x; got torch.int64 — convert it with .float\(\)"):
        check_tensor("f", "x", torch.zeros(2, dtype=torch.long), floating=True)


def test_check_same_shape_shows_both_shapes_and_the_hint():
    check_same_shape("f", ("a", "b"), torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"f needs a and b of the same shape; got \(2, 3\) and \(3,\) — squeeze it$"):
        check_same_shape("f", ("a", "b"), torch.zeros(2, 3), torch.zeros(3), "squeeze it")


def test_check_broadcasts_accepts_what_broadcasts_without_growing_the_target():
    check_broadcasts("f", "w", torch.zeros(3), (2, 3))
    check_broadcasts("f", "w", torch.zeros(()), (2, 3))
    for bad in (torch.zeros(2), torch.zeros(4, 2, 3)):
        with pytest.raises(ValueError, match=r"f: w of shape .* does not broadcast to \(2, 3\); use a number"):
            check_broadcasts("f", "w", bad, (2, 3), "use a number")


@pytest.mark.parametrize("bad", [-1.0, math.nan, "1", None, True])
def test_check_number_refuses_what_is_not_a_number_at_least_the_bound(bad):
    with pytest.raises(ValueError, match=r"f needs margin >= 0; got .* — 1 is usual$"):
        check_number("f", "margin", bad, at_least=0, hint="1 is usual")


def test_check_number_says_finite_and_int_when_asked():
    check_number("f", "beta", math.inf, at_least=0)
    with pytest.raises(ValueError, match=r"f needs beta >= 0, finite; got inf"):
        check_number("f", "beta", math.inf, at_least=0, finite=True)
    with pytest.raises(ValueError, match=r"f needs n >= 1, an int; got 2.5"):
        check_number("f", "n", 2.5, at_least=1, integer=True)
    with pytest.raises(ValueError, match=r"f needs x a number; got 'a'"):
        check_number("f", "x", "a")


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "3"])
def test_check_sizes_wants_positive_ints(bad):
    check_sizes("Model", hidden=3, classes=1)
    with pytest.raises(ValueError, match=f"Model: hidden must be a positive int; got {bad!r}"):
        check_sizes("Model", classes=2, hidden=bad)


def test_check_choice_lists_the_choices():
    check_choice("f", "reduction", "sum", ("mean", "sum", "none"))
    with pytest.raises(ValueError, match=r"f: reduction must be 'mean', 'sum' or 'none'; got 'avg'$"):
        check_choice("f", "reduction", "avg", ("mean", "sum", "none"))


def test_apply_reduction_is_torch_s_reduction():
    loss = torch.tensor([1.0, 2.0, 6.0])
    assert apply_reduction("f", loss, "mean").item() == 3.0
    assert apply_reduction("f", loss, "sum").item() == 9.0
    assert apply_reduction("f", loss, "none") is loss
    with pytest.raises(ValueError, match="reduction must be"):
        apply_reduction("f", loss, "avg")
