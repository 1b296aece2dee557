"""Lab 7's two Morse code readers, trained once and cached: the Transformer and the LSTM encoder-decoder.

``lab7_attention`` trains a :class:`~dpdl.models.transformer.Seq2SeqTransformer` on Morse pairs cut from
Nietzsche; ``lab7_seq2seq_lstm`` compares a :class:`~dpdl.models.seq2seq_lstm.Seq2SeqLSTM` with it on the same
pairs. Both are trained here, by recipes any notebook can call: :func:`load_morse_transformer` and
:func:`load_morse_lstm` go through :func:`dpdl.train.load_or_train`, so the first call trains (on one CPU
core, about half a minute for the Transformer and two for the LSTM) and later ones load the weights in a
second. :func:`morse_lab_data` gives the pairs and tensors both were trained and tested on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dpdl.data.text import Vocab

__all__ = [
    "TRANSFORMER_RECIPE",
    "LSTM_RECIPE",
    "MorseData",
    "morse_lab_data",
    "build_morse_transformer",
    "build_morse_lstm",
    "train_morse_model",
    "load_morse_transformer",
    "load_morse_lstm",
]

# lab7_attention's settings (same seed, data, schedule; its notebook draws the batch order with a DataLoader).
TRANSFORMER_RECIPE: dict[str, Any] = {
    "max_chars": 24, "num_train": 6000, "seed": 0,
    "d_model": 64, "nhead": 4, "num_layers": 2, "dim_feedforward": 128, "dropout": 0.0,
    "batch_size": 64, "lr": 3e-3, "epochs": 4, "clip_grad_norm": None,
}  # fmt: skip
# The LSTM needs more epochs than the Transformer to learn the same pairs (lab7_seq2seq_lstm shows why).
LSTM_RECIPE: dict[str, Any] = {
    "max_chars": 24, "num_train": 6000, "seed": 0,
    "embedding_dim": 64, "hidden_size": 256, "num_layers": 1, "reverse_source": True,
    "batch_size": 64, "lr": 5e-3, "epochs": 10, "clip_grad_norm": 1.0,
}  # fmt: skip


@dataclass
class MorseData:
    """The Morse pairs of lab 7 and their tensors (batch first, padded with ``source_vocab.pad_index`` = 0).

    ``pairs`` maps ``"train"``, ``"val"``, ``"test"`` to ``(code, text)`` lists; ``X_<split>`` ``(N, S)`` and
    ``y_<split>`` ``(N, T)`` are :func:`dpdl.data.morse.pairs_to_tensors` of them.
    """

    pairs: dict[str, list[tuple[str, str]]]
    source_vocab: Vocab
    target_vocab: Vocab
    X_train: Tensor
    y_train: Tensor
    X_val: Tensor
    y_val: Tensor
    X_test: Tensor
    y_test: Tensor


def morse_lab_data(
    max_chars: int = 24, num_train: int = 6000, num_val: int = 500, num_test: int = 300, seed: int = 0
) -> MorseData:
    """Lab 7's Morse pairs: :func:`dpdl.data.morse.morse_pairs` of Nietzsche, each split cut to its size.

    With the defaults these are the pairs ``lab7_attention`` trains, validates and decodes on (6000, 500
    and 300 of about 22,600, 2,800 and 2,800 pieces of at most 24 characters).
    """
    from dpdl.data.morse import morse_pairs, morse_vocabs, pairs_to_tensors

    splits = morse_pairs(max_chars=max_chars, seed=seed)
    pairs = {"train": splits["train"][:num_train], "val": splits["val"][:num_val], "test": splits["test"][:num_test]}
    source_vocab, target_vocab = morse_vocabs()
    tensors = {}
    for split, split_pairs in pairs.items():
        tensors[f"X_{split}"], tensors[f"y_{split}"] = pairs_to_tensors(split_pairs, source_vocab, target_vocab)
    return MorseData(pairs, source_vocab, target_vocab, **tensors)


def build_morse_transformer(recipe: Mapping[str, Any] = TRANSFORMER_RECIPE) -> nn.Module:
    """A fresh :class:`~dpdl.models.transformer.Seq2SeqTransformer` for the Morse vocabularies, seeded by the recipe."""
    from dpdl.data.morse import morse_vocabs
    from dpdl.models.transformer import Seq2SeqTransformer
    from dpdl.repro import seed_everything

    source_vocab, target_vocab = morse_vocabs()
    seed_everything(recipe["seed"])
    return Seq2SeqTransformer(
        len(source_vocab), len(target_vocab), d_model=recipe["d_model"], nhead=recipe["nhead"],
        num_encoder_layers=recipe["num_layers"], num_decoder_layers=recipe["num_layers"],
        dim_feedforward=recipe["dim_feedforward"], dropout=recipe["dropout"], pad_index=source_vocab.pad_index,
    )  # fmt: skip


def build_morse_lstm(recipe: Mapping[str, Any] = LSTM_RECIPE) -> nn.Module:
    """A fresh :class:`~dpdl.models.seq2seq_lstm.Seq2SeqLSTM` for the Morse vocabularies, seeded by the recipe."""
    from dpdl.data.morse import morse_vocabs
    from dpdl.models.seq2seq_lstm import Seq2SeqLSTM
    from dpdl.repro import seed_everything

    source_vocab, target_vocab = morse_vocabs()
    seed_everything(recipe["seed"])
    return Seq2SeqLSTM(
        len(source_vocab), len(target_vocab), embedding_dim=recipe["embedding_dim"],
        hidden_size=recipe["hidden_size"], num_layers=recipe["num_layers"],
        reverse_source=recipe["reverse_source"], pad_index=source_vocab.pad_index,
    )  # fmt: skip


def train_morse_model(
    model: nn.Module, recipe: Mapping[str, Any], data: MorseData | None = None, *, progress: bool = False
):
    """Train ``model`` in place on ``data`` (default :func:`morse_lab_data` of the recipe) as lab 7 does.

    Adam with a one-cycle schedule peaking at ``recipe["lr"]`` (stepped every batch), teacher forcing and a
    cross-entropy that ignores padding, ``recipe["epochs"]`` shuffled passes (order seeded by the recipe);
    returns the :class:`~dpdl.train.History` (loss and teacher-forced token accuracy, train and val).
    """
    from dpdl.train import fit, teacher_forcing

    if data is None:
        data = morse_lab_data(recipe["max_chars"], recipe["num_train"], seed=recipe["seed"])
    pad_index = data.source_vocab.pad_index
    train_loader = _ShuffledPairs(data.X_train, data.y_train, recipe["batch_size"], seed=recipe["seed"])
    val_rows = torch.arange(len(data.X_val)).split(max(recipe["batch_size"], 256))
    val_loader = [(data.X_val[rows], data.y_val[rows]) for rows in val_rows]
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    num_steps = recipe["epochs"] * len(train_loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe["lr"], total_steps=num_steps)

    def loss_fn(logits, tgt_out):  # the mean cross-entropy over the target tokens that are not padding
        return nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=pad_index)

    return fit(
        model, optimizer, loss_fn, train_loader, epochs=recipe["epochs"], val_loader=val_loader,
        step=teacher_forcing(pad_index), scheduler=scheduler, clip_grad_norm=recipe["clip_grad_norm"],
        device=next(model.parameters()).device, progress=progress,
    )  # fmt: skip


def load_morse_transformer(
    recipe: Mapping[str, Any] = TRANSFORMER_RECIPE, *, device: torch.device | str | None = None
) -> tuple[nn.Module, str]:
    """``(model, how)``: lab 7's Morse Transformer, from the weights cache or trained now (``"lab7-morse-transformer"``)."""
    return _load_or_train("lab7-morse-transformer", build_morse_transformer, recipe, device)


def load_morse_lstm(
    recipe: Mapping[str, Any] = LSTM_RECIPE, *, device: torch.device | str | None = None
) -> tuple[nn.Module, str]:
    """``(model, how)``: lab 7's Morse LSTM encoder-decoder, from the weights cache or trained now (``"lab7-morse-lstm"``)."""
    return _load_or_train("lab7-morse-lstm", build_morse_lstm, recipe, device)


# --- helpers ------------------------------------------------------------------------------------------


class _ShuffledPairs:
    """Batches ``(X[rows], y[rows])``, a new order each pass from one seeded generator.

    The order the recipes' cached weights were trained with (a ``DataLoader`` also draws a worker seed from
    its generator each pass, which would shift it), so a cold run trains the very weights a warm one loads.
    """

    def __init__(self, X: Tensor, y: Tensor, batch_size: int, seed: int) -> None:
        self.X, self.y, self.batch_size = X, y, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.X) / self.batch_size)

    def __iter__(self):
        for rows in torch.randperm(len(self.X), generator=self.generator).split(self.batch_size):
            yield self.X[rows], self.y[rows]


def _load_or_train(name, build, recipe, device):
    from dpdl.train.checkpoint import load_or_train

    recipe = dict(recipe)
    return load_or_train(
        name, build=lambda: build(recipe), train=lambda model: train_morse_model(model, recipe), recipe=recipe,
        device=device,
    )  # fmt: skip
