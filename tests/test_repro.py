import random

import numpy as np
import pytest
import torch

from dpdl.repro import seed_everything, use_deterministic_algorithms


def draw():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_same_seed_gives_same_draws_from_every_generator():
    seed_everything(123)
    first = draw()
    seed_everything(123)
    assert draw() == first


def test_different_seeds_give_different_draws():
    seed_everything(1)
    first = draw()
    seed_everything(2)
    second = draw()
    assert all(a != b for a, b in zip(first, second))


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "42", True])
def test_bad_seed_is_rejected_with_the_allowed_range(bad):
    with pytest.raises(ValueError, match=r"\[0, 2\*\*32\)"):
        seed_everything(bad)


def test_deterministic_switch_turns_on_and_off():
    try:
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic
    finally:
        use_deterministic_algorithms(False)
    assert not torch.are_deterministic_algorithms_enabled()
