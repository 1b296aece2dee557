import pytest
import torch
from torch import nn

from dpdl.train.modes import eval_mode, kept_modes


def mixed_model():
    """A model in train mode with one batch-norm layer frozen in eval mode, as in transfer learning."""
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2)).train()
    model[1].eval()
    return model


def modes(model):
    return [module.training for module in model.modules()]


def test_eval_mode_switches_every_module_off_and_restores_each_ones_own_mode():
    model = mixed_model()
    before = modes(model)
    with eval_mode(model) as inside:
        assert inside is model and not any(modes(model))
        X = torch.randn(3, 2)
        torch.testing.assert_close(model(X), model(X))  # dropout off: deterministic
    assert modes(model) == before


def test_eval_mode_restores_the_modes_when_the_block_raises():
    model = mixed_model()
    before = modes(model)
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        raise RuntimeError("boom")
    assert modes(model) == before


def test_eval_mode_keeps_gradients_on():
    model = nn.Linear(2, 1)
    x = torch.zeros(1, 2, requires_grad=True)
    with eval_mode(model):
        model(x).sum().backward()
    assert x.grad is not None


def test_kept_modes_undoes_whatever_the_block_switched():
    model = mixed_model()
    before = modes(model)
    with kept_modes(model):
        model.train()
        model[0].eval()
    assert modes(model) == before
    with pytest.raises(TypeError, match="torch.nn.Module"), kept_modes("model"):
        pass
