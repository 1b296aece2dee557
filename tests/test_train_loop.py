import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dpdl.train import History, accuracy, evaluate, fit, predict


def separable(n=256, seed=0):
    """Two classes split by the line x0 + x1 = 0, with a margin: a linear model can get all of them."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=g)
    X = X[(X.sum(1)).abs() > 0.2]
    return X, (X.sum(1) > 0).long()


def linear(seed=0, outputs=2):
    torch.manual_seed(seed)
    return nn.Linear(2, outputs)


def batches(X, y, batch_size):
    return list(zip(X.split(batch_size), y.split(batch_size)))


def sgd(model, lr=0.5):
    return torch.optim.SGD(model.parameters(), lr=lr)


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("DPDL_PROGRESS", "0")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy machine idle-spinning threads cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- fit trains and records ------------------------------------------------------------------------


def test_fit_learns_a_linearly_separable_problem_and_records_every_epoch():
    X, y = separable()
    train_loader = DataLoader(TensorDataset(X[:160], y[:160]), batch_size=32, shuffle=True)
    val_loader = DataLoader(TensorDataset(X[160:], y[160:]), batch_size=64)
    model = linear()
    loss_before = F.cross_entropy(model(X), y).item()
    history = fit(model, sgd(model), nn.CrossEntropyLoss(), train_loader, epochs=8, val_loader=val_loader, device="cpu")
    assert isinstance(history, History) and len(history) == 8
    assert history.metrics == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert all(len(history[name]) == 8 for name in history.metrics)
    assert history["val_accuracy"][-1] > 0.95
    assert history["loss"][-1] < history["loss"][0] < loss_before + 1e-6


def test_fit_without_a_val_loader_records_train_metrics_only():
    X, y = separable(64)
    model = linear()
    history = fit(model, sgd(model), nn.CrossEntropyLoss(), batches(X, y, 16), epochs=2, device="cpu", metrics=["loss"])
    assert history.metrics == ["loss"] and len(history) == 2


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 50), st.integers(1, 70))
def test_recorded_metrics_are_means_over_examples_not_over_batches(batch_size, n):
    """With lr = 0 nothing changes, so the epoch's metrics must equal the full-data values."""
    g = torch.Generator().manual_seed(n)
    X, y = torch.randn(n, 2, generator=g), torch.randint(0, 3, (n,), generator=g)
    model = linear(outputs=3)
    history = fit(
        model,
        sgd(model, lr=0.0),
        nn.CrossEntropyLoss(),
        batches(X, y, batch_size),
        device="cpu",
        val_loader=batches(X, y, 7),
    )
    with torch.no_grad():
        logits = model(X)
    for prefix in ("", "val_"):
        assert history[prefix + "loss"][0] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
        assert history[prefix + "accuracy"][0] == pytest.approx(accuracy(logits, y))


@pytest.mark.parametrize("held_outputs", [1 << 22, 30])  # score once per epoch, or every few batches
def test_accuracy_counts_every_position_of_sequences_of_different_lengths(monkeypatch, held_outputs):
    monkeypatch.setattr("dpdl.train.loop._HELD_OUTPUTS", held_outputs)
    g = torch.Generator().manual_seed(0)
    sequences = [(torch.randn(4, 3, T, generator=g), torch.randint(0, 3, (4, T), generator=g)) for T in (5, 2, 7, 5)]

    class PerPosition(nn.Module):  # (B, C, T) -> (B, C, T) logits for each position
        def __init__(self):
            super().__init__()
            self.mix = nn.Conv1d(3, 3, kernel_size=1)

        def forward(self, X):
            return self.mix(X)

    torch.manual_seed(0)
    model = PerPosition()
    result = evaluate(model, sequences, nn.CrossEntropyLoss(), device="cpu")
    with torch.no_grad():
        hits = sum((model(X).argmax(1) == y).sum().item() for X, y in sequences)
    assert result["accuracy"] == pytest.approx(hits / (4 * (5 + 2 + 7 + 5)))


def test_fit_scores_one_logit_per_example_by_its_sign():
    X, y = separable(128)

    class OneLogit(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 1)

        def forward(self, X):
            return self.linear(X).squeeze(1)

    torch.manual_seed(0)
    model = OneLogit()
    history = fit(model, sgd(model), nn.BCEWithLogitsLoss(), batches(X, y.float(), 16), epochs=5, device="cpu")
    assert history["accuracy"][-1] > 0.95
    assert history["accuracy"][-1] == pytest.approx(accuracy(model(X), y))


def test_fit_uses_dpdl_device_by_default(monkeypatch):
    monkeypatch.setenv("DPDL_DEVICE", "meta")  # a device torch runs shapes on, so the move is visible
    seen = []
    model = linear()
    fit(
        model,
        sgd(model),
        nn.CrossEntropyLoss(),
        batches(*separable(32), 16),
        metrics=(),
        callbacks=lambda epoch, history, model: seen.append(next(model.parameters()).device.type),
    )
    assert seen == ["meta"]


def test_fit_leaves_the_model_in_the_mode_it_had():
    X, y = separable(32)
    for mode in (True, False):
        model = linear().train(mode)
        fit(model, sgd(model), nn.CrossEntropyLoss(), batches(X, y, 16), device="cpu", val_loader=batches(X, y, 16))
        assert model.training is mode


def test_fit_trains_in_train_mode_and_validates_in_eval_mode():
    modes = []

    class Spy(nn.Linear):
        def forward(self, X):
            modes.append((self.training, torch.is_grad_enabled()))
            return super().forward(X)

    X, y = separable(32)
    model = Spy(2, 2)
    fit(model, sgd(model), nn.CrossEntropyLoss(), batches(X, y, 16), device="cpu", val_loader=batches(X, y, 32))
    assert modes == [(True, True), (True, True), (False, False)]


def test_fit_shows_progress_bars_unless_told_not_to(monkeypatch, capsys):
    monkeypatch.delenv("DPDL_PROGRESS")
    monkeypatch.delenv("CI", raising=False)
    X, y = separable(32)
    model = linear()
    fit(model, sgd(model), nn.CrossEntropyLoss(), batches(X, y, 16), epochs=2, device="cpu", progress=False)
    assert capsys.readouterr().err == ""
    fit(model, sgd(model), nn.CrossEntropyLoss(), batches(X, y, 16), epochs=2, device="cpu")
    assert "epoch 2/2" in capsys.readouterr().err


# --- callbacks -------------------------------------------------------------------------------------


def test_callbacks_run_once_per_epoch_with_epoch_history_and_eval_mode_model():
    calls = []

    def callback(epoch, history, model):
        calls.append((epoch, len(history), history["loss"][-1], model, model.training))

    X, y = separable(64)
    model = linear()
    history = fit(
        model,
        sgd(model),
        nn.CrossEntropyLoss(),
        batches(X, y, 16),
        epochs=3,
        device="cpu",
        callbacks=[callback, callback],
    )
    assert [c[:2] for c in calls] == [(1, 1), (1, 1), (2, 2), (2, 2), (3, 3), (3, 3)]
    assert [c[2] for c in calls[::2]] == history["loss"]
    assert all(c[3] is model and c[4] is False for c in calls)


@pytest.mark.parametrize("stop", [True, torch.tensor(True)])
def test_a_callback_returning_true_stops_training_after_that_epoch(stop):
    X, y = separable(64)
    model = linear()
    history = fit(
        model,
        sgd(model),
        nn.CrossEntropyLoss(),
        batches(X, y, 16),
        epochs=10,
        device="cpu",
        callbacks=lambda epoch, history, model: stop if epoch == 2 else None,
    )
    assert len(history) == 2


def test_early_stopping_on_validation_loss():
    def stop_when_val_loss_stalls(epoch, history, model):
        return epoch > 1 and history["val_loss"][-1] > min(history["val_loss"][:-1]) - 1e-9

    X, y = separable(64)
    model = linear()
    history = fit(
        model,
        sgd(model, lr=0.0),
        nn.CrossEntropyLoss(),
        batches(X, y, 16),
        epochs=10,
        device="cpu",
        val_loader=batches(X, y, 64),
        callbacks=[stop_when_val_loss_stalls],
    )
    assert len(history) == 2  # lr = 0: the validation loss never improves


def test_a_callback_returning_something_else_is_an_error():
    model = linear()
    with pytest.raises(TypeError, match="None to go on or True to stop"):
        fit(
            model,
            sgd(model),
            nn.CrossEntropyLoss(),
            batches(*separable(32), 16),
            device="cpu",
            callbacks=[lambda epoch, history, model: ["a sample"]],
        )
    with pytest.raises(TypeError, match="callback"):
        fit(model, sgd(model), nn.CrossEntropyLoss(), batches(*separable(32), 16), device="cpu", callbacks=["print"])


# --- evaluate and predict --------------------------------------------------------------------------


def test_evaluate_matches_full_batch_metrics_and_restores_train_mode():
    X, y = separable(100)
    model = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.5), nn.Linear(8, 2)).train()
    result = evaluate(model, batches(X, y, 32), nn.CrossEntropyLoss())
    assert model.training
    model.eval()
    with torch.no_grad():
        logits = model(X)
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert result["accuracy"] == pytest.approx(accuracy(logits, y))


def test_evaluate_without_loss_fn_reports_accuracy_only():
    X, y = separable(50)
    assert list(evaluate(linear(), batches(X, y, 20))) == ["accuracy"]
    with pytest.raises(ValueError, match="loss_fn"):
        evaluate(linear(), batches(X, y, 20), metrics=("loss",))


def test_evaluate_runs_on_the_models_device_by_default(monkeypatch):
    monkeypatch.setenv("DPDL_DEVICE", "meta")  # would fail if evaluate moved the CPU model there
    X, y = separable(20)
    assert 0.0 <= evaluate(linear(), [(X, y)], nn.CrossEntropyLoss())["accuracy"] <= 1.0


def test_predict_concatenates_batches_on_the_cpu_and_restores_mode():
    X, y = separable(50)
    model = linear().train()
    with torch.no_grad():
        expected = model(X)
    for source in (X, DataLoader(TensorDataset(X, y), batch_size=8), list(X.split(7))):
        y_hat = predict(model, source, batch_size=16)
        assert y_hat.shape == (len(X), 2) and y_hat.device.type == "cpu" and not y_hat.requires_grad
        torch.testing.assert_close(y_hat, expected)
    assert model.training


def test_predict_keeps_the_parts_of_a_tuple_output():
    class TwoHeads(nn.Module):
        def forward(self, X):
            return X.sum(1), X * 2

    X = torch.randn(10, 3)
    total, doubled = predict(TwoHeads(), X, batch_size=4)
    assert total.shape == (10,) and doubled.shape == (10, 3)
    torch.testing.assert_close(doubled, X * 2)


def test_predict_rejects_bad_input():
    with pytest.raises(ValueError, match="batch_size"):
        predict(linear(), torch.randn(4, 2), batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        predict(linear(), [])
    with pytest.raises(ValueError, match="0-d"):
        predict(linear(), torch.tensor(1.0))
    with pytest.raises(TypeError, match="X or \\(X, y\\)"):
        predict(linear(), [{"X": torch.randn(2, 2)}])
    with pytest.raises(TypeError, match="tuple of tensors"):
        predict(_Dict(), torch.randn(2, 2))


class _Dict(nn.Linear):
    """A model that returns a dict, which neither accuracy nor predict can read."""

    def __init__(self):
        super().__init__(2, 2)

    def forward(self, X):
        return {"y_hat": super().forward(X)}


# --- bad arguments get clear errors ----------------------------------------------------------------


def fit_once(model=None, loss_fn=None, loader=None, **kwargs):
    model = model or linear()
    loader = loader if loader is not None else batches(*separable(32), 16)
    return fit(model, sgd(model), loss_fn or nn.CrossEntropyLoss(), loader, device="cpu", **kwargs)


@pytest.mark.parametrize("epochs, error", [(0, ValueError), (-3, ValueError), (1.5, TypeError), (True, TypeError)])
def test_epochs_must_be_a_positive_int(epochs, error):
    with pytest.raises(error, match="epochs"):
        fit_once(epochs=epochs)


def test_unknown_metrics_list_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown metric.*'f1'.*\['loss', 'accuracy'\]"):
        fit_once(metrics=("loss", "f1"))


@pytest.mark.parametrize(
    "loader, message",
    [
        ([torch.randn(4, 2)], "single tensor"),
        ([(torch.randn(4, 2),)], "tuple of 1 items"),
        ([{"X": torch.randn(4, 2), "y": torch.zeros(4)}], "dict with keys"),
        ([(torch.randn(4, 2), [0, 1, 0, 1])], "list"),
    ],
)
def test_loader_yielding_something_other_than_x_y_pairs_is_an_error(loader, message):
    with pytest.raises(TypeError, match=f"yield \\(X, y\\) pairs.*{message}"):
        fit_once(loader=loader)


def test_a_tensor_or_non_iterable_is_not_a_loader():
    with pytest.raises(TypeError, match="DataLoader"):
        fit_once(loader=torch.randn(4, 2))
    with pytest.raises(TypeError, match="val_loader"):
        fit_once(val_loader=3)


def test_an_exhausted_generator_is_reported_as_empty():
    X, y = separable(32)
    with pytest.raises(ValueError, match="no batches.*generator"):
        fit_once(loader=(batch for batch in batches(X, y, 16)), epochs=2)


def test_an_empty_val_loader_is_reported():
    with pytest.raises(ValueError, match="val_loader yielded no batches"):
        fit_once(val_loader=[])


def test_a_loss_error_without_a_known_cause_is_raised_unchanged():
    def broken_loss(y_hat, y):
        raise RuntimeError("something else went wrong")

    with pytest.raises(RuntimeError, match="^something else went wrong$"):
        fit_once(loss_fn=broken_loss)


def test_one_hot_float_labels_for_cross_entropy_are_explained():
    X, y = separable(32)
    with pytest.raises(ValueError, match=r"one-hot.*y\.argmax\(1\)"):
        fit_once(loader=batches(X, F.one_hot(y, 2).float(), 16))


def test_float_class_labels_for_cross_entropy_are_explained():
    X, y = separable(32)
    with pytest.raises(ValueError, match=r"integer class indices.*y\.long\(\)"):
        fit_once(loader=batches(X, y.float(), 16))
    with pytest.raises(ValueError, match=r"integer class indices.*y\.long\(\)"):
        fit_once(loader=batches(X, y.float(), 16), metrics=("loss",))


def test_a_single_logit_with_unsqueezed_output_is_explained():
    X, y = separable(32)
    with pytest.raises(ValueError, match=r"\(B, 1\).*squeeze"):
        fit_once(
            model=linear(outputs=1), loss_fn=nn.BCEWithLogitsLoss(), loader=batches(X, y.float(), 16), metrics=("loss",)
        )


def test_integer_targets_for_a_float_loss_are_explained():
    X = torch.randn(8, 2)
    with pytest.raises(ValueError, match=r"y\.float\(\)"):
        fit_once(loss_fn=nn.BCEWithLogitsLoss(), loader=[(X, torch.ones(8, 2, dtype=torch.long))], metrics=("loss",))


def test_labels_beyond_the_models_outputs_are_explained():
    X = torch.randn(8, 2)
    with pytest.raises(ValueError, match=r"\[0, 2\).*1-based"):
        fit_once(loader=[(X, torch.full((8,), 2))])


def test_model_output_batch_size_must_match_the_labels():
    class FlattensTheBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, X):
            return self.linear(X.view(-1, 4))  # mixes two examples into one row

    with pytest.raises(ValueError, match="returned 8 outputs .* batch of 16 labels"):
        fit_once(model=FlattensTheBatch(), loader=[(torch.randn(16, 2), torch.zeros(16, dtype=torch.long))])


def test_a_loss_per_example_is_an_error():
    with pytest.raises(ValueError, match="reduction='mean'"):
        fit_once(loss_fn=nn.CrossEntropyLoss(reduction="none"))


def test_a_loss_without_gradient_is_explained():
    frozen = linear().requires_grad_(False)
    with pytest.raises(ValueError, match="frozen"):
        fit(
            frozen,
            torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1),
            nn.CrossEntropyLoss(),
            batches(*separable(32), 16),
            device="cpu",
        )
    with pytest.raises(ValueError, match=r"left autograd.*\.detach\(\)"):
        fit_once(loss_fn=lambda y_hat, y: F.cross_entropy(y_hat.detach(), y))


def test_other_arguments_are_checked():
    with pytest.raises(TypeError, match="nn.Module"):
        fit(lambda X: X, None, nn.CrossEntropyLoss(), [])
    with pytest.raises(TypeError, match="optimizer"):
        fit(linear(), "sgd", nn.CrossEntropyLoss(), [])
    with pytest.raises(TypeError, match="loss_fn"):
        fit_once(loss_fn="cross_entropy")
    with pytest.raises(TypeError, match="accuracy.*metrics=\\('loss',\\)"):
        fit_once(model=_Dict(), loss_fn=lambda y_hat, y: y_hat["y_hat"].sum())


def test_regression_targets_with_the_default_accuracy_metric_say_to_train_on_loss_only():
    model = nn.Linear(3, 2)
    X, y = torch.randn(8, 3), torch.randn(8, 2)  # two real-valued targets per example
    with pytest.raises(ValueError, match=r"regression targets.*metrics=\(\"loss\",\)"):
        fit(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), [(X, y)], epochs=1)
    history = fit(
        model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), [(X, y)], epochs=1, metrics=("loss",)
    )
    assert "accuracy" not in history.metrics and len(history["loss"]) == 1


# --- scheduler, clipping and the step hook ---------------------------------------------------------


def test_the_scheduler_is_stepped_after_every_batch():
    X, y = separable(40)
    model = linear()
    optimizer = sgd(model, lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    rates = []
    fit(
        model,
        optimizer,
        nn.CrossEntropyLoss(),
        batches(X, y, 16),
        epochs=2,
        scheduler=scheduler,
        device="cpu",
        callbacks=lambda epoch, history, model: rates.append(optimizer.param_groups[0]["lr"]),
    )
    num_batches = len(batches(X, y, 16))
    assert scheduler.last_epoch == 2 * num_batches
    assert rates == [0.5**num_batches, 0.5 ** (2 * num_batches)]


def test_step_lr_counted_in_batches_is_the_per_epoch_schedule():
    """StepLR(step_size=len(train_loader)) trains exactly like stepping StepLR(step_size=1) after each epoch."""
    X, y = separable(96)
    trained = []
    for per_batch in (True, False):
        model = linear(seed=3)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        loader = batches(X, y, 16)
        if per_batch:
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=len(loader), gamma=0.1)
            fit(model, optimizer, nn.CrossEntropyLoss(), loader, epochs=3, scheduler=scheduler, device="cpu")
        else:
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
            fit(
                model,
                optimizer,
                nn.CrossEntropyLoss(),
                loader,
                epochs=3,
                device="cpu",
                callbacks=lambda epoch, history, model, scheduler=scheduler: scheduler.step(),
            )
        trained.append([p.detach().clone() for p in model.parameters()])
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.1**3)
    for a, b in zip(*trained):
        assert torch.equal(a, b)


def test_clip_grad_norm_bounds_each_step():
    X, y = separable(32)
    model = linear()
    before = [p.detach().clone() for p in model.parameters()]
    fit(model, sgd(model, lr=1.0), nn.CrossEntropyLoss(), batches(X, y, 32), clip_grad_norm=1e-6, device="cpu")
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert 0 < moved <= 1.01e-6  # one step of lr 1 with a gradient of norm at most 1e-6
    unclipped = linear()
    fit(unclipped, sgd(unclipped, lr=1.0), nn.CrossEntropyLoss(), batches(X, y, 32), device="cpu")
    assert torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(unclipped.parameters(), before))) > 1e-3


def test_a_step_function_trains_on_batches_of_another_shape():
    """A step for dict batches with per-example weights: the loop trains, scores and moves the dict to the device."""
    X, y = separable(64)
    dict_batches = [{"inputs": Xb, "labels": yb, "weights": torch.ones(len(yb))} for Xb, yb in batches(X, y, 16)]
    seen = []

    def weighted_step(model, batch, loss_fn):
        seen.append(sorted(batch))
        y_hat = model(batch["inputs"])
        losses = F.cross_entropy(y_hat, batch["labels"], reduction="none")
        return (losses * batch["weights"]).mean(), y_hat, batch["labels"]

    model = linear()
    history = fit(
        model,
        sgd(model),
        nn.CrossEntropyLoss(),
        dict_batches,
        epochs=5,
        val_loader=dict_batches,
        step=weighted_step,
        device="cpu",
    )
    assert seen[0] == ["inputs", "labels", "weights"]
    assert history["accuracy"][-1] > 0.9
    reference = linear()
    expected = fit(
        reference,
        sgd(reference),
        nn.CrossEntropyLoss(),
        batches(X, y, 16),
        epochs=5,
        val_loader=batches(X, y, 16),
        device="cpu",
    )
    for name, values in expected.to_dict().items():  # weights of 1: the plain loop's numbers
        assert history[name] == pytest.approx(values) if name != "epoch" else history.epochs == values
    assert evaluate(model, dict_batches, nn.CrossEntropyLoss(), step=weighted_step)["accuracy"] == pytest.approx(
        history["val_accuracy"][-1]
    )


def test_a_step_that_returns_something_else_is_explained():
    with pytest.raises(TypeError, match=r"must return \(loss, y_hat, y\)"):
        fit_once(step=lambda model, batch, loss_fn: loss_fn(model(batch[0]), batch[1]))
    with pytest.raises(TypeError, match="step must be a function"):
        fit_once(step="teacher_forcing")


def test_bad_schedulers_and_clipping_are_explained():
    model = linear()
    optimizer = sgd(model)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    with pytest.raises(TypeError, match="ReduceLROnPlateau needs a metric.*callback"):
        fit(model, optimizer, nn.CrossEntropyLoss(), batches(*separable(32), 16), scheduler=plateau)
    other = torch.optim.lr_scheduler.StepLR(sgd(linear()), step_size=1)
    with pytest.raises(ValueError, match="another optimizer"):
        fit(model, optimizer, nn.CrossEntropyLoss(), batches(*separable(32), 16), scheduler=other)
    with pytest.raises(TypeError, match="torch.optim.lr_scheduler"):
        fit(model, optimizer, nn.CrossEntropyLoss(), batches(*separable(32), 16), scheduler=0.1)
    for clip in (0, -1.0, "1", True):
        with pytest.raises(ValueError, match="clip_grad_norm must be a positive number"):
            fit(model, optimizer, nn.CrossEntropyLoss(), batches(*separable(32), 16), clip_grad_norm=clip)


def test_fit_evaluate_and_predict_give_each_module_back_its_own_mode():
    """A batch-norm layer frozen in eval mode inside a model in train mode stays so (transfer learning)."""
    X, y = separable(32)
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model.train()
    model[1].eval()
    fit(model, sgd(model), nn.CrossEntropyLoss(), batches(X, y, 16), val_loader=batches(X, y, 16), device="cpu")
    evaluate(model, batches(X, y, 16), nn.CrossEntropyLoss())
    predict(model, X)
    assert [m.training for m in model] == [True, False, True] and model.training
