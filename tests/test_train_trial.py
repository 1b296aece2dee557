import functools

import pytest
import torch
import torch.nn.functional as F
import torchbearer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchbearer import callbacks as tb_callbacks
from torchbearer.callbacks import imaging as tb_imaging
from torchbearer.callbacks import tensor_board as tb_tensor_board

from dpdl.train import make_trial


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


BROKEN = {
    "ReduceLROnPlateau": lambda: tb_callbacks.ReduceLROnPlateau(),
    "MakeGrid": lambda: tb_imaging.MakeGrid(num_images=4).on_train(),
    "TensorBoardImages": lambda: tb_tensor_board.TensorBoardImages(),
    "ImagingCallback.make_grid()": lambda: tb_imaging.FromState(torchbearer.X).on_train().make_grid(),
    "make_grid() after cache()": lambda: tb_imaging.FromState(torchbearer.X).on_train().cache(4).make_grid(),
    "cache() after make_grid()": lambda: tb_imaging.FromState(torchbearer.X).on_train().make_grid().cache(4),
    "inside a CallbackList": lambda: tb_callbacks.CallbackList([tb_imaging.MakeGrid()]),
}


@pytest.mark.parametrize("name", BROKEN)
def test_make_trial_refuses_the_callbacks_that_crash_mid_run_and_says_what_to_do(name):
    with pytest.raises(TypeError, match=r"crashes in the middle of trial.run\(\).*(make_grid|step_plateau)"):
        small_trial(callbacks=[BROKEN[name]()])


def test_make_trial_accepts_an_imaging_callback_without_make_grid():
    images = []
    callback = tb_imaging.FromState(torchbearer.X).on_train().cache(4)
    trial, X = image_trial(callback.with_handler(lambda image, index, state: images.append(image)))
    trial.run(epochs=1)
    assert torch.equal(torch.stack(images), X[:4])  # the handler gets the cached images one by one


def test_the_torchbearer_helper_is_part_of_dpdl_train():
    import dpdl.train

    assert {"make_trial", "fit"} <= set(dir(dpdl.train))
    assert dpdl.train.make_trial is make_trial
    with pytest.raises(AttributeError, match="no attribute 'trainer'"):
        _ = dpdl.train.trainer


# --- why: what the refused callbacks do when a trial runs them ---------------------------------------


def test_torchbearers_reduce_lr_on_plateau_breaks_on_this_torch():
    model = nn.Linear(2, 1)
    callback = tb_callbacks.ReduceLROnPlateau(monitor="loss", patience=0)
    trial = torchbearer.Trial(
        model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), callbacks=[callback], verbose=0
    ).with_generators(loader(torch.zeros(4, 2), torch.zeros(4, 1)))
    with pytest.raises(TypeError, match="verbose"):
        trial.run(epochs=1)


class Images(nn.Module):
    """A 'model' over 1x8x8 images, so that the trial has image inputs for MakeGrid to collect."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(64, 2)

    def forward(self, X):
        return self.linear(X.flatten(1))


_CPU_TRIAL = functools.partial(make_trial, device="cpu")


def image_trial(callback, make=_CPU_TRIAL):
    torch.manual_seed(0)
    model = Images()
    trial = make(
        model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), callbacks=[callback], verbose=0
    )
    X, y = torch.rand(12, 1, 8, 8), torch.randint(0, 2, (12,))
    return trial.with_generators(loader(X, y, batch_size=4)), X


def test_torchbearers_make_grid_breaks_on_this_torchvision():
    trial, _ = image_trial(tb_imaging.MakeGrid(num_images=4).on_train(), make=torchbearer.Trial)
    with pytest.raises(TypeError, match="range"):
        trial.run(epochs=1)


def test_torchbearers_imaging_make_grid_breaks_on_this_torchvision():
    trial, _ = image_trial(BROKEN["ImagingCallback.make_grid()"](), make=torchbearer.Trial)
    with pytest.raises(TypeError, match="range"):
        trial.run(epochs=1)


def test_torchbearers_tensorboard_images_break_on_this_torchvision():
    callback = tb_tensor_board.TensorBoardImages(key=torchbearer.X, num_images=4)
    callback.on_start = callback.on_end = lambda state: None  # no TensorBoard writer: the crash comes before it
    trial, X = image_trial(callback, make=torchbearer.Trial)
    trial.with_val_generator(loader(X, torch.zeros(len(X), dtype=torch.long), batch_size=4))
    with pytest.raises(TypeError, match="range"):
        trial.run(epochs=1)
