import functools
import pickle

import pytest
import torch
import torch.nn.functional as F
import torchbearer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchbearer import callbacks as tb_callbacks
from torchbearer.callbacks import imaging as tb_imaging

from dpdl.train import MakeGrid, ReduceLROnPlateau, load_trial_checkpoint, make_trial


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy machine idle-spinning threads cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def separable(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=g)
    return X, (X.sum(1) > 0).long()


def loader(X, y, batch_size=32):
    return DataLoader(TensorDataset(X, y), batch_size=batch_size)


def small_trial(seed=0, callbacks=(), lr=0.5, **kwargs):
    torch.manual_seed(seed)
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return make_trial(model, optimizer, nn.CrossEntropyLoss(), callbacks=callbacks, device="cpu", verbose=0, **kwargs)


def weights(trial):
    return {k: v.clone() for k, v in trial.state[torchbearer.MODEL].state_dict().items()}


# --- make_trial ------------------------------------------------------------------------------------


def test_make_trial_trains_a_model_that_lowers_the_loss():
    X, y = separable()
    trial = small_trial()
    model = trial.state[torchbearer.MODEL]
    loss_before = F.cross_entropy(model(X), y).item()
    history = trial.with_generators(loader(X, y), val_generator=loader(X, y)).run(epochs=5)
    assert len(history) == 5 and {"loss", "acc", "val_loss", "val_acc"} <= set(history[-1])
    assert F.cross_entropy(model(X), y).item() < 0.5 * loss_before
    assert history[-1]["val_acc"] > 0.9


def test_make_trial_puts_the_model_on_dpdl_device_by_default(monkeypatch):
    monkeypatch.setenv("DPDL_DEVICE", "meta")  # a device torch runs shapes on, so the move is visible
    trial = make_trial(nn.Linear(2, 2), None, None)
    assert next(trial.state[torchbearer.MODEL].parameters()).device.type == "meta"
    assert str(trial.state[torchbearer.DEVICE]) == "meta"


def test_make_trial_is_quiet_under_ci_and_shows_progress_otherwise(monkeypatch):
    monkeypatch.delenv("DPDL_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert make_trial(nn.Linear(2, 2), None, None, device="cpu").verbose == 1
    monkeypatch.setenv("CI", "true")
    assert make_trial(nn.Linear(2, 2), None, None, device="cpu").verbose == 0
    assert make_trial(nn.Linear(2, 2), None, None, device="cpu", verbose=2).verbose == 2


def test_make_trial_accepts_a_single_metric_name_and_checks_the_model():
    trial = small_trial(metrics="loss")
    X, y = separable(32)
    assert set(trial.with_generators(loader(X, y)).run(1)[0]) >= {"loss"}
    with pytest.raises(TypeError, match="nn.Module"):
        make_trial(lambda X: X, None, None)


@pytest.mark.parametrize(
    "broken, fix",
    [
        (lambda: tb_callbacks.ReduceLROnPlateau(), "dpdl.train.ReduceLROnPlateau"),
        (lambda: tb_imaging.MakeGrid(), "dpdl.train.MakeGrid"),
    ],
)
def test_make_trial_refuses_the_broken_torchbearer_callbacks_and_names_the_fix(broken, fix):
    with pytest.raises(TypeError, match=fix):
        small_trial(callbacks=[broken()])


# --- fix 1: loading a full-trial checkpoint --------------------------------------------------------


def test_torch_load_refuses_a_trial_checkpoint_which_is_why_load_trial_checkpoint_exists(tmp_path):
    trial = small_trial()
    torch.save(trial.state_dict(), tmp_path / "trial.pt")
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        trial.load_state_dict(torch.load(tmp_path / "trial.pt"))


def test_a_checkpointer_checkpoint_restores_weights_optimizer_and_history_exactly(tmp_path):
    X, y = separable()
    path = tmp_path / "latest.pt"
    trained = small_trial(callbacks=[tb_callbacks.MostRecent(str(path))])
    trained.with_generators(loader(X, y)).run(epochs=3)
    fresh = small_trial(seed=1, callbacks=[tb_callbacks.MostRecent(str(tmp_path / "other.pt"))])
    assert not torch.equal(weights(fresh)["weight"], weights(trained)["weight"])

    assert load_trial_checkpoint(fresh, path) is fresh

    for name, value in weights(trained).items():
        assert torch.equal(weights(fresh)[name], value)
    momentum = lambda t: t.state[torchbearer.OPTIMIZER].state_dict()["state"][0]["momentum_buffer"]  # noqa: E731
    assert torch.equal(momentum(fresh), momentum(trained))
    assert fresh.state[torchbearer.HISTORY] == trained.state[torchbearer.HISTORY]


def test_a_trial_state_dict_saved_by_hand_loads_into_a_trial_without_callbacks(tmp_path):
    X, y = separable()
    trained = small_trial(callbacks=[tb_callbacks.EarlyStopping(monitor="loss")])
    trained.with_generators(loader(X, y)).run(epochs=1)
    torch.save(trained.state_dict(), tmp_path / "trial.pt")
    fresh = load_trial_checkpoint(small_trial(seed=1), tmp_path / "trial.pt", resume=False)
    for name, value in weights(trained).items():
        assert torch.equal(weights(fresh)[name], value)
    assert fresh.state[torchbearer.HISTORY] == []  # resume=False: the weights only


def test_a_checkpoint_in_the_legacy_format_with_dpdls_scheduler_loads(tmp_path):
    X, y = separable(32)
    trained = small_trial(callbacks=[ReduceLROnPlateau(monitor="loss")])
    trained.with_generators(loader(X, y)).run(epochs=1)
    torch.save(trained.state_dict(), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    fresh = load_trial_checkpoint(small_trial(seed=1), tmp_path / "old.pt")
    assert torch.equal(weights(fresh)["weight"], weights(trained)["weight"])


def test_the_torchbearer_helpers_are_part_of_dpdl_train():
    import dpdl.train

    assert {"make_trial", "load_trial_checkpoint", "ReduceLROnPlateau", "MakeGrid", "fit"} <= set(dir(dpdl.train))
    assert dpdl.train.make_trial is make_trial
    with pytest.raises(AttributeError, match="no attribute 'trainer'"):
        dpdl.train.trainer


class CountEpochs(torchbearer.Callback):
    """A course-style custom callback with state: its class is named in the checkpoint."""

    def __init__(self):
        self.epochs = 0

    def on_end_epoch(self, state):
        self.epochs += 1

    def state_dict(self):
        return {"epochs": self.epochs}

    def load_state_dict(self, state_dict):
        self.epochs = state_dict["epochs"]


def test_a_checkpoint_naming_the_trials_own_callback_class_loads_with_its_state(tmp_path):
    X, y = separable(32)
    trained = small_trial(callbacks=[CountEpochs()])
    trained.with_generators(loader(X, y)).run(epochs=2)
    torch.save(trained.state_dict(), tmp_path / "trial.pt")
    counter = CountEpochs()
    load_trial_checkpoint(small_trial(callbacks=[counter]), tmp_path / "trial.pt")
    assert counter.epochs == 2
    with pytest.raises(ValueError, match="CountEpochs"):  # a trial without it has no reason to trust the class
        load_trial_checkpoint(small_trial(), tmp_path / "trial.pt")


class NotACallback:
    pass


def test_unknown_objects_in_a_checkpoint_are_refused_unless_trusted(tmp_path):
    trial = small_trial()
    state = trial.state_dict()
    state[torchbearer.HISTORY] = [{"loss": 1.0, "note": NotACallback()}]
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match=r"NotACallback.*trusted=True"):
        load_trial_checkpoint(small_trial(), tmp_path / "odd.pt")
    loaded = load_trial_checkpoint(small_trial(), tmp_path / "odd.pt", trusted=True)
    assert isinstance(loaded.state[torchbearer.HISTORY][0]["note"], NotACallback)


def test_a_missing_checkpoint_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_trial_checkpoint(small_trial(), tmp_path / "missing.pt")


# --- fix 2: ReduceLROnPlateau ----------------------------------------------------------------------


def plateau_trial(callback):
    """A model whose loss cannot move: zero weights, zero inputs and zero targets give zero gradients."""
    model = nn.Linear(2, 1)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trial = make_trial(model, optimizer, nn.MSELoss(), metrics=["loss"], callbacks=[callback], device="cpu", verbose=0)
    data = loader(torch.zeros(8, 2), torch.zeros(8, 1), batch_size=4)
    return trial.with_generators(data, val_generator=data), optimizer


def test_torchbearers_reduce_lr_on_plateau_breaks_on_this_torch():
    model = nn.Linear(2, 1)
    callback = tb_callbacks.ReduceLROnPlateau(monitor="loss", patience=0)
    trial = torchbearer.Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), callbacks=[callback],
                              verbose=0).with_generators(loader(torch.zeros(4, 2), torch.zeros(4, 1)))
    with pytest.raises(TypeError, match="verbose"):
        trial.run(epochs=1)


def test_reduce_lr_on_plateau_lowers_the_lr_when_the_monitored_metric_stalls(capsys):
    trial, optimizer = plateau_trial(ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, verbose=True))
    trial.run(epochs=5)  # epoch 1 sets the best; after 2 epochs without improvement (3 and 5) the lr halves
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**2)
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "Epoch 3: reducing learning rate of group 0 to 5.0000e-02.",
        "Epoch 5: reducing learning rate of group 0 to 2.5000e-02.",
    ]


def test_reduce_lr_on_plateau_keeps_the_lr_while_the_metric_improves():
    X, y = separable()
    scheduler = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0)
    trial = small_trial(callbacks=[scheduler], lr=0.05)
    trial.with_generators(loader(X, y)).run(epochs=3)
    history = [epoch["loss"] for epoch in trial.state[torchbearer.HISTORY]]
    assert history[0] > history[1] > history[2]
    assert trial.state[torchbearer.OPTIMIZER].param_groups[0]["lr"] == 0.05


def test_reduce_lr_on_plateau_takes_one_min_lr_per_param_group():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    for parameter in model.parameters():  # zeros in, zeros out, zero targets: the loss cannot move
        nn.init.zeros_(parameter)
    optimizer = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[1].parameters()}], lr=0.1)
    callback = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_lr=[0.08, 0.0])
    trial = make_trial(model, optimizer, nn.MSELoss(), metrics=["loss"], callbacks=[callback], device="cpu")
    trial.with_generators(loader(torch.zeros(4, 2), torch.zeros(4, 2))).run(epochs=3)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.08, 0.1 * 0.5**2])


def test_reduce_lr_on_plateau_rejects_bad_arguments_when_built():
    with pytest.raises(ValueError, match="mode"):
        ReduceLROnPlateau(mode="lowest")
    with pytest.raises(ValueError, match="[Ff]actor"):
        ReduceLROnPlateau(factor=2.0)


# --- fix 3: MakeGrid -------------------------------------------------------------------------------


class Images(nn.Module):
    """A 'model' over 1x8x8 images, so that the trial has image inputs for MakeGrid to collect."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(64, 2)

    def forward(self, X):
        return self.linear(X.flatten(1))


def image_trial(callback, make=functools.partial(make_trial, device="cpu")):
    torch.manual_seed(0)
    model = Images()
    trial = make(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), callbacks=[callback],
                 verbose=0)
    X, y = torch.rand(12, 1, 8, 8), torch.randint(0, 2, (12,))
    return trial.with_generators(loader(X, y, batch_size=4)), X


def test_torchbearers_make_grid_breaks_on_this_torchvision():
    trial, _ = image_trial(tb_imaging.MakeGrid(num_images=4).on_train(), make=torchbearer.Trial)
    with pytest.raises(TypeError, match="range"):
        trial.run(epochs=1)


def test_make_grid_collects_images_into_one_grid_image():
    grids = []
    grid_callback = MakeGrid(num_images=6, nrow=3, padding=2, normalize=True).on_train()
    grid_callback.with_handler(lambda image, index, state: grids.append(image))
    trial, X = image_trial(grid_callback)
    trial.run(epochs=2)
    assert len(grids) == 2  # once per epoch
    grid = grids[0]
    # 6 images of 8x8 in 2 rows of 3, with 2 pixels of padding around each: (3, 2*10 + 2, 3*10 + 2)
    assert grid.shape == (3, 22, 32)
    first = X[0, 0]
    torch.testing.assert_close(grid[0, 2:10, 2:10], (first - X[:6].min()) / (X[:6].max() - X[:6].min()))


def test_make_grid_passes_norm_range_on_as_value_range():
    grids = []
    grid_callback = MakeGrid(num_images=4, nrow=4, padding=0, normalize=True, norm_range=(0.0, 2.0)).on_train()
    trial, X = image_trial(grid_callback.with_handler(lambda image, index, state: grids.append(image)))
    trial.run(epochs=1)
    assert grids[0].shape == (3, 8, 32)
    torch.testing.assert_close(grids[0][0, :, :8], X[0, 0] / 2)
