import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dpdl.models.seq2seq_lstm import Seq2SeqLSTM, greedy_decode, reverse_padded
from dpdl.train import fit, teacher_forcing
from tests.copy_task import BOS, EOS, PAD
from tests.copy_task import copy_task as shared_copy_task


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def copy_task(n, seed=0):
    """The copy task with sentences of 2 to 5 letters."""
    return shared_copy_task(n, max_len=5, seed=seed)


def small_model(**options):
    return Seq2SeqLSTM(10, 10, **{"embedding_dim": 8, "hidden_size": 32, **options})


# --- the source reversed --------------------------------------------------------------------------------


def test_reverse_padded_mirrors_the_real_tokens_and_leaves_padding_at_the_end():
    ids = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 3], [4, 0, 0, 0, 0]])
    assert reverse_padded(ids).tolist() == [[5, 4, 3, 0, 0], [3, 9, 8, 7, 6], [4, 0, 0, 0, 0]]
    assert torch.equal(reverse_padded(reverse_padded(ids)), ids)
    assert reverse_padded(torch.tensor([[3, 4, 7, 7]]), pad_index=7).tolist() == [[4, 3, 7, 7]]


# --- the encoder ------------------------------------------------------------------------------------------


def test_encode_returns_the_state_after_each_rows_last_real_token():
    model = small_model(reverse_source=False, num_layers=2)
    X = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 3]])
    h, c = model.encode(X)
    assert h.shape == c.shape == (2, 2, 32)  # (num_layers, B, hidden_size)
    for row, length in enumerate([3, 5]):
        _, (h_row, c_row) = model.encoder(model.src_embed(X[row : row + 1, :length]))
        torch.testing.assert_close(h[:, row], h_row[:, 0])
        torch.testing.assert_close(c[:, row], c_row[:, 0])


def test_encode_reads_the_source_reversed_when_asked():
    model = small_model(reverse_source=True)
    X = torch.tensor([[3, 4, 5, 0], [6, 7, 8, 9]])
    forwards = Seq2SeqLSTM(10, 10, embedding_dim=8, hidden_size=32, reverse_source=False)
    forwards.load_state_dict(model.state_dict())
    for got, want in zip(model.encode(X), forwards.encode(torch.tensor([[5, 4, 3, 0], [9, 8, 7, 6]]))):
        torch.testing.assert_close(got, want)


def test_padding_columns_change_nothing():
    model = small_model().eval()
    X, y = copy_task(6)
    wide_X = torch.cat([X, torch.zeros(6, 4, dtype=torch.long)], 1)
    for got, want in zip(model.encode(wide_X), model.encode(X)):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(model(wide_X, y[:, :-1]), model(X, y[:, :-1]))


def test_an_empty_source_row_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="at least one token that is not padding"):
        small_model().encode(torch.tensor([[3, 4], [0, 0]]))


# --- the decoder ------------------------------------------------------------------------------------------


def test_teacher_forcing_in_one_call_equals_the_decoder_stepped_token_by_token():
    model = small_model(num_layers=2).eval()
    X, y = copy_task(5)
    logits = model(X, y[:, :-1])
    assert logits.shape == (5, y.shape[1] - 1, 10)
    state = model.encode(X)
    for t in range(y.shape[1] - 1):
        step_logits, state = model.decode_step(y[:, t], state)
        torch.testing.assert_close(step_logits, logits[:, t])


def test_the_decoder_cannot_see_later_target_tokens():
    model = small_model().eval()
    X, y = copy_task(4)
    changed = y.clone()
    changed[:, 3:] = 5
    torch.testing.assert_close(model(X, changed[:, :-1])[:, :3], model(X, y[:, :-1])[:, :3])


def test_bad_inputs_and_sizes_are_explained():
    with pytest.raises(ValueError, match="hidden_size"):
        Seq2SeqLSTM(10, 10, hidden_size=0)
    with pytest.raises(ValueError, match="pad_index 12 must be an index of both vocabularies"):
        Seq2SeqLSTM(10, 20, pad_index=12)
    with pytest.raises(ValueError, match="int64 of shape"):
        small_model().encode(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="one token per row"):
        small_model().decode_step(torch.zeros(3, 1, dtype=torch.long), small_model().encode(torch.ones(3, 2).long()))


# --- training and greedy decoding -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = Seq2SeqLSTM(10, 10, embedding_dim=16, hidden_size=64)
    X, y = copy_task(600)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_loader = DataLoader(
        TensorDataset(X, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    val_loader = DataLoader(TensorDataset(*copy_task(100, seed=1)), batch_size=256)

    def loss_fn(logits, tgt_out):
        return nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)

    history = fit(
        model,
        optimizer,
        loss_fn,
        train_loader,
        epochs=15,
        val_loader=val_loader,
        step=teacher_forcing(PAD),
        device="cpu",
        progress=False,
    )
    return model, history


def test_fit_with_teacher_forcing_trains_it_to_copy(trained):
    _, history = trained
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    assert history["val_accuracy"][-1] > 0.95


def test_greedy_decode_of_a_trained_copier_gives_back_its_sources(trained):
    model, _ = trained
    X, y = copy_task(50, seed=2)
    model.train()
    out = greedy_decode(model, X, BOS, EOS)
    assert model.training  # left in its mode
    assert out.dtype == torch.long and out[:, 0].eq(BOS).all()
    right = sum(torch.equal(out[i, : (y[i] != PAD).sum()], y[i, : (y[i] != PAD).sum()]) for i in range(50))
    assert right >= 45
    assert out.shape[1] <= X.shape[1] + 11


class Scripted(Seq2SeqLSTM):
    """A fake model that, at step t, predicts script[b][t] for row b (its state counts the steps)."""

    def __init__(self, script):
        super().__init__(10, 10, embedding_dim=1, hidden_size=1)
        self.script = script

    def encode(self, src):
        return torch.zeros(1, src.shape[0], 1), torch.zeros(1, src.shape[0], 1)

    def decode_step(self, prev_ids, state):
        h, c = state
        logits = torch.zeros(len(prev_ids), 10)
        for b, row in enumerate(self.script):
            logits[b, row[min(int(h[0, b, 0]), len(row) - 1)]] = 1.0
        return logits, (h + 1, c)


def test_greedy_decode_stops_when_every_row_is_done_and_pads_after_eos():
    model = Scripted([[4, EOS, 7, 7], [5, 6, 8, EOS]])
    out = greedy_decode(model, torch.tensor([[3, 3], [3, 3]]), BOS, EOS)
    assert out.tolist() == [[BOS, 4, EOS, PAD, PAD], [BOS, 5, 6, 8, EOS]]


def test_greedy_decode_stops_after_max_len_tokens():
    model = Scripted([[4]])  # never says <eos>
    assert greedy_decode(model, torch.tensor([[3, 3]]), BOS, EOS, max_len=5).tolist() == [[BOS, 4, 4, 4, 4, 4]]
    assert greedy_decode(model, torch.tensor([[3, 3]]), BOS, EOS).shape == (1, 1 + 2 + 10)  # default S + 10
    with pytest.raises(ValueError, match="max_len must be a positive int"):
        greedy_decode(model, torch.tensor([[3]]), BOS, EOS, max_len=0)


def test_greedy_decode_feeds_back_its_own_predictions():
    model = small_model().eval()
    X, _ = copy_task(3)
    out = greedy_decode(model, X, BOS, EOS, max_len=6)
    for t in range(1, out.shape[1]):  # unfinished rows: the argmax of the logits given the decoded prefix
        logits = model(X, out[:, :t])[:, -1]
        alive = ~(out[:, 1:t] == EOS).any(1)
        assert torch.equal(out[alive, t], logits.argmax(-1)[alive])


def test_the_model_and_decoding_are_exported_from_dpdl_models():
    import dpdl.models

    assert dpdl.models.Seq2SeqLSTM is Seq2SeqLSTM
    assert isinstance(small_model(), nn.Module)
