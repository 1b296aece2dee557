import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dpdl.models import Seq2SeqTransformer
from dpdl.train import evaluate, fit, supervised_step, teacher_forcing
from tests.copy_task import PAD, copy_task


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("DPDL_PROGRESS", "0")
    torch.manual_seed(0)


def small_model():
    return Seq2SeqTransformer(10, 10, d_model=16, nhead=2, dim_feedforward=32, dropout=0.0)


def loss_ignoring_padding(logits, tgt_out):
    return nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)


def test_supervised_step_is_forward_then_loss():
    model = nn.Linear(3, 2)
    X, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    loss, y_hat, labels = supervised_step(model, (X, y), nn.functional.cross_entropy)
    torch.testing.assert_close(y_hat, model(X))
    torch.testing.assert_close(loss, nn.functional.cross_entropy(model(X), y))
    assert labels is y
    assert supervised_step(model, (X, y), None)[0] is None


def test_supervised_step_explains_a_loss_that_fails_on_float_labels():
    with pytest.raises(ValueError, match=r"y\.long\(\)"):
        supervised_step(nn.Linear(3, 2), (torch.randn(4, 3), torch.ones(4)), nn.functional.cross_entropy)


def test_teacher_forcing_shifts_the_target_and_scores_real_tokens_only():
    model = small_model().eval()
    X, y = copy_task(8)
    loss, y_hat, labels = teacher_forcing(PAD)(model, (X, y), loss_ignoring_padding)
    logits = model(X, y[:, :-1])
    real = y[:, 1:] != PAD
    torch.testing.assert_close(y_hat, logits[real])
    assert torch.equal(labels, y[:, 1:][real])  # no padding left to score
    torch.testing.assert_close(loss, nn.functional.cross_entropy(logits[real], y[:, 1:][real]))


def test_evaluate_with_teacher_forcing_averages_over_real_tokens():
    model = small_model().eval()
    X, y = copy_task(24)
    batches = DataLoader(TensorDataset(X, y), batch_size=5)  # batches of different numbers of real tokens
    result = evaluate(model, batches, loss_ignoring_padding, step=teacher_forcing(PAD))
    logits = model(X, y[:, :-1])
    real = y[:, 1:] != PAD
    assert result["loss"] == pytest.approx(nn.functional.cross_entropy(logits[real], y[:, 1:][real]).item(), rel=1e-5)
    assert result["accuracy"] == pytest.approx((logits.argmax(-1)[real] == y[:, 1:][real]).float().mean().item())


def test_teacher_forcing_calls_the_loss_on_logits_and_targets_cut_to_the_batch():
    X, y = copy_task(32, max_len=4)
    X, y = (
        torch.cat([X, torch.zeros(32, 3, dtype=torch.long)], 1),
        torch.cat([y, torch.zeros(32, 2, dtype=torch.long)], 1),
    )
    calls = []

    def loss_fn(logits, tgt_out):
        calls.append((tuple(logits.shape), tuple(tgt_out.shape)))
        return loss_ignoring_padding(logits, tgt_out)

    model = small_model()
    teacher_forcing(PAD)(model, (X, y), loss_fn)
    longest = int((y != PAD).sum(1).max())  # <bos> letters <eos> of the longest row
    assert calls == [((32, longest - 1, 10), (32, longest - 1))]


def test_training_ignores_extra_padding_columns_and_is_repeatable():
    X, y = copy_task(64)
    wide_X = torch.cat([X, torch.zeros(64, 5, dtype=torch.long)], 1)
    wide_y = torch.cat([y, torch.zeros(64, 3, dtype=torch.long)], 1)
    histories = []
    for data in [(X, y), (X, y), (wide_X, wide_y)]:
        torch.manual_seed(1)
        model = small_model()
        batches = DataLoader(
            TensorDataset(*data), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(3)
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        histories.append(
            fit(
                model, optimizer, loss_ignoring_padding, batches, epochs=2, step=teacher_forcing(PAD), device="cpu"
            ).to_dict()
        )
    assert histories[0] == histories[1]
    for name in histories[0]:
        assert histories[2][name] == pytest.approx(histories[0][name], rel=1e-4)


def test_teacher_forcing_explains_bad_batches_and_arguments():
    model = small_model()
    X, y = copy_task(4)
    with pytest.raises(TypeError, match=r"\(src, tgt\) batches"):
        teacher_forcing(PAD)(model, X, loss_ignoring_padding)
    with pytest.raises(ValueError, match="at least <bos> and <eos>"):
        teacher_forcing(PAD)(model, (X, y[:, :1]), loss_ignoring_padding)
    with pytest.raises(TypeError, match="pad_index must be the int id"):
        teacher_forcing("<pad>")
