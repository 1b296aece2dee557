"""load_or_train: trains once, loads after, retrains when the recipe changes or the file is damaged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dpdl.train.checkpoint import load_or_train, weights_path


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DPDL_DATA_DIR", str(tmp_path))


def _build():
    torch.manual_seed(0)
    return nn.Linear(3, 2)


class _Trainer:
    """Counts calls and moves the weights, so a loaded model is told apart from a fresh one."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model):
        self.calls += 1
        assert model.training
        with torch.no_grad():
            model.weight.fill_(float(self.calls))


def test_trains_once_then_loads_the_same_weights(tmp_path):
    train = _Trainer()
    first, how = load_or_train("toy", _build, train, recipe={"lr": 0.1}, device="cpu")
    assert how == "trained" and train.calls == 1 and not first.training
    second, how = load_or_train("toy", _build, train, recipe={"lr": 0.1}, device="cpu")
    assert how == "loaded" and train.calls == 1 and not second.training
    assert torch.equal(first.weight, second.weight) and torch.all(second.weight == 1.0)
    assert weights_path("toy", {"lr": 0.1}).parent == tmp_path / "weights"
    assert [p.name for p in (tmp_path / "weights").iterdir()] == [weights_path("toy", {"lr": 0.1}).name]


def test_a_changed_recipe_retrains():
    train = _Trainer()
    load_or_train("toy", _build, train, recipe={"lr": 0.1}, device="cpu")
    _, how = load_or_train("toy", _build, train, recipe={"lr": 0.2}, device="cpu")
    assert how == "trained" and train.calls == 2
    assert weights_path("toy", {"lr": 0.1, "seed": 1}) == weights_path("toy", {"seed": 1, "lr": 0.1})


@pytest.mark.parametrize("damage", [b"", b"not a checkpoint", None])
def test_a_damaged_or_foreign_file_is_retrained(damage, capsys):
    path = weights_path("toy", None)
    path.parent.mkdir(parents=True)
    if damage is None:
        torch.save(nn.Linear(5, 5).state_dict(), path)  # weights of another model
    else:
        path.write_bytes(damage)
    train = _Trainer()
    model, how = load_or_train("toy", _build, train, device="cpu")
    assert how == "trained" and train.calls == 1
    assert "training again" in capsys.readouterr().out
    reloaded, how = load_or_train("toy", _build, train, device="cpu")
    assert how == "loaded" and torch.equal(reloaded.weight, model.weight)
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.parametrize("name", ["", "../escape", "a/b", 3])
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError, match="name must be"):
        load_or_train(name, _build, _Trainer(), device="cpu")


def test_bad_recipe_and_build_are_refused():
    with pytest.raises(TypeError, match="recipe must be a dict"):
        load_or_train("toy", _build, _Trainer(), recipe=[1, 2], device="cpu")
    with pytest.raises(TypeError, match="recipe values"):
        load_or_train("toy", _build, _Trainer(), recipe={"f": object()}, device="cpu")
    with pytest.raises(TypeError, match="must return an nn.Module"):
        load_or_train("toy", lambda: "model", _Trainer(), device="cpu")
