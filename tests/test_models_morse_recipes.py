"""Lab 7's Morse readers: built from their recipes, trained by one function, cached through load_or_train."""

import pytest
import torch

from dpdl.data.morse import morse_pairs, morse_vocabs, pairs_to_tensors
from dpdl.models import morse_recipes
from dpdl.models.morse_recipes import (
    LSTM_RECIPE,
    TRANSFORMER_RECIPE,
    MorseData,
    build_morse_lstm,
    build_morse_transformer,
    load_morse_lstm,
    morse_lab_data,
    train_morse_model,
)
from dpdl.models.seq2seq_lstm import Seq2SeqLSTM
from dpdl.models.transformer import Seq2SeqTransformer

TEXT = (
    "The sun is up. A cat sat on the mat. Dogs bark at night, owls hoot. We read and write. "
    "Big red boxes hold old maps. Six fish swim. Ten men ran to the bay. She sells sea shells."
) * 3


def tiny_data():
    splits = morse_pairs(TEXT, max_chars=10, seed=0)
    source_vocab, target_vocab = morse_vocabs()
    tensors = {}
    for split, pairs in splits.items():
        tensors[f"X_{split}"], tensors[f"y_{split}"] = pairs_to_tensors(pairs, source_vocab, target_vocab)
    return MorseData(splits, source_vocab, target_vocab, **tensors)


TINY_LSTM = {**LSTM_RECIPE, "embedding_dim": 8, "hidden_size": 16, "epochs": 3, "batch_size": 8, "lr": 1e-2}


def test_builders_follow_their_recipes_and_are_seeded():
    transformer = build_morse_transformer()
    assert isinstance(transformer, Seq2SeqTransformer) and transformer.d_model == TRANSFORMER_RECIPE["d_model"]
    assert len(transformer.encoder.layers) == len(transformer.decoder.layers) == TRANSFORMER_RECIPE["num_layers"]
    lstm = build_morse_lstm()
    assert isinstance(lstm, Seq2SeqLSTM) and lstm.hidden_size == LSTM_RECIPE["hidden_size"]
    assert lstm.reverse_source == LSTM_RECIPE["reverse_source"]
    again = build_morse_lstm()
    assert all(torch.equal(p, q) for p, q in zip(lstm.parameters(), again.parameters()))


def test_train_morse_model_trains_in_place_and_returns_the_history():
    data = tiny_data()
    model = build_morse_lstm(TINY_LSTM)
    before = [p.detach().clone() for p in model.parameters()]
    history = train_morse_model(model, TINY_LSTM, data)
    assert len(history) == 3 and "val_accuracy" in history.metrics
    assert history["loss"][-1] < history["loss"][0]
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_load_morse_lstm_trains_once_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("DPDL_DATA_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(morse_recipes, "morse_lab_data", lambda *args, **kwargs: calls.append(args) or tiny_data())
    first, how = load_morse_lstm(TINY_LSTM, device="cpu")
    assert how == "trained" and len(calls) == 1 and not first.training
    second, how = load_morse_lstm(TINY_LSTM, device="cpu")
    assert how == "loaded" and len(calls) == 1
    assert all(torch.equal(p, q) for p, q in zip(first.parameters(), second.parameters()))
    _, how = load_morse_lstm({**TINY_LSTM, "epochs": 2}, device="cpu")
    assert how == "trained", "another recipe is another model"


@pytest.mark.integration
def test_the_lab_data_are_lab7_attentions_pairs(data_env):
    data = morse_lab_data()
    assert [len(data.pairs[split]) for split in ["train", "val", "test"]] == [6000, 500, 300]
    assert data.pairs["train"][0][1] == "execrates an art that"  # lab7_attention prints the same first pair
    assert data.X_train.shape == (6000, 24) and data.y_train.shape == (6000, 26)
    train_texts = {text for _, text in data.pairs["train"]}
    assert not train_texts & {text for _, text in data.pairs["test"]}
