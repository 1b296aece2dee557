import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dpdl.models.transformer import (
    PositionalEncoding,
    Seq2SeqTransformer,
    cross_attention_weights,
    greedy_decode,
    sinusoidal_encoding,
)
from dpdl.train import History, evaluate, fit, teacher_forcing
from tests.copy_task import BOS, EOS, PAD, copy_task


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def loader(data, batch_size, seed=None):
    """Batches of (src, tgt) rows, shuffled with its own generator when ``seed`` is given."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(TensorDataset(*data), batch_size=batch_size, shuffle=seed is not None, generator=generator)


def loss_ignoring_padding(logits, tgt_out):
    return nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)


def small_model(**options):
    return Seq2SeqTransformer(10, 10, **{"d_model": 32, "nhead": 4, "dim_feedforward": 64, "dropout": 0.0, **options})


# --- positions ---------------------------------------------------------------------------------------


def test_sinusoidal_encoding_follows_the_formula():
    pe = sinusoidal_encoding(50, 16)
    assert pe.shape == (50, 16) and pe.dtype == torch.float32
    assert pe[0].tolist() == [0.0, 1.0] * 8
    p, i = 7, 3
    assert pe[p, 2 * i].item() == pytest.approx(math.sin(p / 10000 ** (2 * i / 16)), abs=1e-6)
    assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(p / 10000 ** (2 * i / 16)), abs=1e-6)
    assert pe.abs().max() <= 1


def test_sinusoidal_encoding_with_odd_width_drops_the_last_cosine():
    pe = sinusoidal_encoding(10, 5)
    assert pe.shape == (10, 5)
    p = torch.arange(10.0)
    for i in range(3):
        torch.testing.assert_close(pe[:, 2 * i], torch.sin(p / 10000 ** (2 * i / 5)))
    for i in range(2):
        torch.testing.assert_close(pe[:, 2 * i + 1], torch.cos(p / 10000 ** (2 * i / 5)))


@given(st.integers(0, 400), st.integers(0, 400), st.integers(0, 60))
@settings(max_examples=50, deadline=None)
def test_similarity_of_two_positions_depends_only_on_their_offset(p, q, k):
    pe = sinusoidal_encoding(470, 32).double()
    assert (pe[p] @ pe[p + k]).item() == pytest.approx((pe[q] @ pe[q + k]).item(), abs=1e-4)


def test_all_positions_get_distinct_encodings():
    pe = sinusoidal_encoding(200, 16)
    assert torch.cdist(pe, pe).add(torch.eye(200) * 10).min() > 0.1


def test_positional_encoding_adds_the_encodings_and_explains_bad_shapes():
    layer = PositionalEncoding(8, max_len=20)
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(layer(x), x + sinusoidal_encoding(5, 8))
    assert "pe" not in layer.state_dict()  # a fixed buffer, not saved with the weights
    with pytest.raises(ValueError, match=r"\(B, T, 8\) \(batch first\)"):
        layer(torch.randn(5, 8))
    with pytest.raises(ValueError, match="max_len >= 21"):
        layer(torch.randn(1, 21, 8))
    with pytest.raises(ValueError, match="length must be a positive int"):
        sinusoidal_encoding(0, 8)


# --- the model ---------------------------------------------------------------------------------------------


def test_the_model_maps_source_and_target_ids_to_batch_first_logits():
    model = small_model()
    X, y = copy_task(4)
    logits = model(X, y[:, :-1])
    assert logits.shape == (4, y.shape[1] - 1, 10)
    memory, src_padding_mask = model.encode(X)
    assert memory.shape == (4, X.shape[1], 32)
    assert torch.equal(src_padding_mask, X == PAD)


def test_the_decoder_cannot_see_later_target_tokens():
    model = small_model().eval()
    X, y = copy_task(3)
    tgt_in = y[:, :-1].clone()
    before = model(X, tgt_in)
    tgt_in[:, 4:] = 5  # change everything from position 4 on
    after = model(X, tgt_in)
    torch.testing.assert_close(after[:, :4], before[:, :4])
    assert not torch.allclose(after[:, 4:], before[:, 4:])


def test_padding_does_not_change_the_logits_of_real_positions():
    model = small_model().eval()
    X, y = copy_task(3)
    tgt_in = y[:, :-1]
    logits = model(X, tgt_in)
    wider_X = torch.cat([X, torch.zeros(3, 4, dtype=torch.long)], 1)
    wider_tgt = torch.cat([tgt_in, torch.zeros(3, 3, dtype=torch.long)], 1)
    torch.testing.assert_close(model(wider_X, wider_tgt)[:, : tgt_in.shape[1]], logits, atol=1e-5, rtol=1e-5)


def test_the_model_needs_positions_to_tell_orders_apart():
    model = small_model().eval()
    memory, _ = model.encode(torch.tensor([[3, 4, 5]]))
    swapped, _ = model.encode(torch.tensor([[5, 4, 3]]))
    assert not torch.allclose(memory[0, 0], swapped[0, 2], atol=1e-3)


def test_the_model_rejects_bad_sizes_and_inputs_with_clear_errors():
    with pytest.raises(ValueError, match=r"d_model \(30\) must be divisible by nhead \(4\)"):
        Seq2SeqTransformer(10, 10, d_model=30, nhead=4)
    with pytest.raises(ValueError, match="src_vocab_size must be a positive int"):
        Seq2SeqTransformer(0, 10)
    with pytest.raises(ValueError, match=r"int64 of shape \(B, length\)"):
        small_model()(torch.tensor([3, 4]), torch.tensor([[1]]))
    with pytest.raises(ValueError, match=r"int64 of shape \(B, length\)"):
        small_model()(torch.tensor([[3.0, 4.0]]), torch.tensor([[1]]))


def test_embeddings_start_at_the_scale_of_the_position_encodings():
    model = Seq2SeqTransformer(60, 60, d_model=64)
    scaled = model.src_embed.weight[1:] * math.sqrt(64)
    assert 0.8 < scaled.std().item() < 1.2
    assert model.src_embed.weight[0].eq(0).all() and model.tgt_embed.weight[0].eq(0).all()


# --- training and decoding ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = small_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = fit(
        model,
        optimizer,
        loss_ignoring_padding,
        loader(copy_task(600), 32, seed=0),
        epochs=12,
        val_loader=loader(copy_task(100, seed=1), 256),
        step=teacher_forcing(PAD),
        device="cpu",
        progress=False,
    )
    return model, history


def test_fit_with_teacher_forcing_learns_to_copy(trained):
    model, history = trained
    assert isinstance(history, History) and len(history) == 12
    assert history.metrics == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert history["loss"][-1] < 0.3 * history["loss"][0]
    assert history["val_accuracy"][-1] > 0.95
    assert evaluate(model, loader(copy_task(100, seed=1), 256), loss_ignoring_padding, step=teacher_forcing(PAD)) == (
        pytest.approx({"loss": history["val_loss"][-1], "accuracy": history["val_accuracy"][-1]}, rel=1e-5)
    )


def test_greedy_decode_of_a_trained_copier_gives_back_its_sources(trained):
    model, _ = trained
    X, y = copy_task(50, seed=2)
    mode = model.training
    out = greedy_decode(model, X, BOS, EOS)
    assert model.training == mode  # left in its mode
    assert out.dtype == torch.long and out[:, 0].eq(BOS).all()
    right = sum(torch.equal(out[i, : (y[i] != PAD).sum()], y[i, : (y[i] != PAD).sum()]) for i in range(50))
    assert right >= 45
    assert out.shape[1] <= X.shape[1] + 11


class Scripted(nn.Module):
    """A fake model that, at step t, predicts script[b][t] for row b (to test greedy_decode exactly)."""

    def __init__(self, script, vocab=10):
        super().__init__()
        self.script, self.vocab = script, vocab
        self.weight = nn.Parameter(torch.zeros(1))

    def encode(self, src):
        return src.float().unsqueeze(-1), src == PAD

    def decode(self, tgt_in, memory, src_padding_mask):
        logits = torch.zeros(tgt_in.shape[0], tgt_in.shape[1], self.vocab)
        for b, row in enumerate(self.script):
            for t in range(tgt_in.shape[1]):
                logits[b, t, row[min(t, len(row) - 1)]] = 1.0
        return logits


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


# --- attention maps -----------------------------------------------------------------------------------------------


def test_cross_attention_weights_are_distributions_over_real_source_tokens():
    model = small_model()
    X, y = copy_task(5)
    weights = cross_attention_weights(model, X, y[:, :-1])
    assert weights.shape == (5, y.shape[1] - 1, X.shape[1])
    torch.testing.assert_close(weights.sum(-1), torch.ones(5, y.shape[1] - 1))
    assert weights.masked_select((X == PAD).unsqueeze(1).expand_as(weights)).abs().max() == 0
    assert model.training  # mode restored


def test_cross_attention_weights_match_the_layer_recomputed_by_hand():
    model = small_model().eval()
    X, y = copy_task(3)
    tgt_in = y[:, :-1]
    memory, src_padding_mask = model.encode(X)
    x = model.positional(model.tgt_embed(tgt_in) * math.sqrt(model.d_model))
    layer = model.decoder.layers[0]
    T = tgt_in.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    with torch.no_grad():
        h = layer.norm1(x + layer.self_attn(x, x, x, attn_mask=causal, key_padding_mask=tgt_in == PAD)[0])
        _, expected = layer.multihead_attn(h, memory, memory, key_padding_mask=src_padding_mask)
    torch.testing.assert_close(cross_attention_weights(model, X, tgt_in, layer=0), expected, atol=1e-5, rtol=1e-4)
    layer = model.decoder.layers[0].multihead_attn
    assert not layer._forward_hooks and not layer._forward_pre_hooks  # hooks removed


def test_a_pre_norm_model_ends_each_stack_with_a_layer_norm():
    model = small_model(norm_first=True).eval()
    assert isinstance(model.encoder.norm, nn.LayerNorm) and isinstance(model.decoder.norm, nn.LayerNorm)
    assert small_model().encoder.norm is None
    X, y = copy_task(4)
    assert model(X, y[:, :-1]).shape == (4, y.shape[1] - 1, 10)
    weights = cross_attention_weights(model, X, y[:, :-1])
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, y.shape[1] - 1))


def test_the_model_and_decoding_are_exported_from_dpdl_models():
    import dpdl.models

    assert dpdl.models.Seq2SeqTransformer is Seq2SeqTransformer and dpdl.models.greedy_decode is greedy_decode
    assert dpdl.models.PositionalEncoding is PositionalEncoding
