"""An LSTM encoder-decoder (Sutskever, Vinyals and Le, 2014) for sequence-to-sequence tasks (lab 7).

The encoder reads the whole source and keeps only its final state ``(h, c)``; the decoder starts from that
state and writes the target one token at a time. Everything the decoder knows about the source passes through
that fixed-size state: the bottleneck that attention removes (``dpdl.models.transformer``). The model has the
interface of :class:`~dpdl.models.transformer.Seq2SeqTransformer` for training (``model(src, tgt_in) ->
logits``, so ``dpdl.train.fit(..., step=teacher_forcing(pad_index))`` trains it) and its own step-by-step :func:`greedy_decode`,
which carries the decoder's state instead of re-reading the prefix. All tensors are batch first.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from dpdl._checks import check_sizes
from dpdl.models.decoding import check_token_ids, decode_length, greedy_tokens
from dpdl.train.modes import eval_mode

__all__ = ["Seq2SeqLSTM", "reverse_padded", "greedy_decode"]

State = tuple[Tensor, Tensor]  # (h, c), each (num_layers, B, hidden_size)


def reverse_padded(ids: Tensor, pad_index: int = 0) -> Tensor:
    """Each row's tokens in reverse order, padding left at the end: ``[a, b, c, 0, 0] -> [c, b, a, 0, 0]``.

    Sutskever et al. fed the encoder the source reversed: the first target tokens then depend on the source
    tokens read last, so the path between a target token and the source token it depends on is short at
    the start of the sentence, and training gets going sooner. Rows are ``(B, S)`` ids padded at the end
    with ``pad_index``.
    """
    check_token_ids(ids, "ids")
    lengths = (ids != pad_index).sum(1, keepdim=True)  # (B, 1)
    steps = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)  # (1, S)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (B, S): mirror the real part only
    return ids.gather(1, index)


class Seq2SeqLSTM(nn.Module):
    """An LSTM encoder-decoder: source ids ``(B, S)`` and target ids ``(B, T)`` -> logits ``(B, T, V)``.

    - :meth:`encode`: embed the source (reversed with :func:`reverse_padded` when ``reverse_source``), run the
      encoder LSTM over the real tokens only (a packed sequence, so padding never reaches the state) and
      return its final state ``(h, c)``, each ``(num_layers, B, hidden_size)``;
    - :meth:`decode`: from that state, embed the decoder's inputs (``<bos>`` then the target, shifted right:
      teacher forcing) and run the decoder LSTM over all of them at once, then a linear layer to logits;
    - :meth:`decode_step`: the same for one step, ``(B,)`` ids -> logits ``(B, V)`` and the new state, for
      :func:`greedy_decode`.

    Teacher forcing is what makes :meth:`decode` one call: all the decoder's inputs are known in advance, so
    one ``nn.LSTM`` call runs the whole target. At test time each input is the previous output, so decoding
    loops over :meth:`decode_step`.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        *,
        embedding_dim: int = 32,
        hidden_size: int = 256,
        num_layers: int = 1,
        dropout: float = 0.0,
        pad_index: int = 0,
        reverse_source: bool = True,
    ) -> None:
        super().__init__()
        check_sizes(
            "Seq2SeqLSTM",
            src_vocab_size=src_vocab_size,
            tgt_vocab_size=tgt_vocab_size,
            embedding_dim=embedding_dim,
            hidden_size=hidden_size,
            num_layers=num_layers,
        )
        if not 0 <= pad_index < min(src_vocab_size, tgt_vocab_size):
            raise ValueError(f"pad_index {pad_index} must be an index of both vocabularies")
        self.pad_index, self.reverse_source = pad_index, reverse_source
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.src_embed = nn.Embedding(src_vocab_size, embedding_dim, padding_idx=pad_index)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, embedding_dim, padding_idx=pad_index)
        lstm_options = dict(num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0, batch_first=True)
        self.encoder = nn.LSTM(embedding_dim, hidden_size, **lstm_options)
        self.decoder = nn.LSTM(embedding_dim, hidden_size, **lstm_options)
        self.head = nn.Linear(hidden_size, tgt_vocab_size)

    def encode(self, src: Tensor) -> State:
        """Source ids ``(B, S)`` padded at the end -> the encoder's final state ``(h, c)``, each ``(num_layers, B, H)``."""
        check_token_ids(src, "src")
        lengths = (src != self.pad_index).sum(1)
        if bool((lengths == 0).any()):
            raise ValueError("every source row needs at least one token that is not padding")
        if self.reverse_source:
            src = reverse_padded(src, self.pad_index)
        packed = pack_padded_sequence(self.src_embed(src), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, state = self.encoder(packed)  # the state after each row's last real token
        return state

    def decode(self, tgt_in: Tensor, state: State) -> tuple[Tensor, State]:
        """Decoder inputs ``(B, T)`` (``<bos>`` first) from ``state`` -> logits ``(B, T, V)`` and the final state."""
        check_token_ids(tgt_in, "tgt_in")
        outputs, state = self.decoder(self.tgt_embed(tgt_in), state)  # (B, T, H)
        return self.head(outputs), state

    def decode_step(self, prev_ids: Tensor, state: State) -> tuple[Tensor, State]:
        """One decoder step: the previous tokens ``(B,)`` and the state -> logits ``(B, V)`` of the next token, new state."""
        if not isinstance(prev_ids, Tensor) or prev_ids.dim() != 1:
            got = f"shape {tuple(prev_ids.shape)}" if isinstance(prev_ids, Tensor) else type(prev_ids).__name__
            raise ValueError(f"decode_step takes one token per row, ids of shape (B,); got {got}")
        logits, state = self.decode(prev_ids.unsqueeze(1), state)
        return logits.squeeze(1), state

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """``src`` ``(B, S)``, ``tgt_in`` ``(B, T)`` -> logits ``(B, T, V)``; teacher forcing feeds ``tgt[:, :-1]``."""
        logits, _ = self.decode(tgt_in, self.encode(src))
        return logits

    def extra_repr(self) -> str:
        return f"pad_index={self.pad_index}, reverse_source={self.reverse_source}"


@torch.no_grad()
def greedy_decode(
    model: Seq2SeqLSTM,
    src: Tensor,
    bos_index: int,
    eos_index: int,
    *,
    max_len: int | None = None,
    pad_index: int = 0,
) -> Tensor:
    """Decode ``src`` ``(B, S)`` one token at a time, always taking the most likely one: ids ``(B, 1 + L)``.

    The same contract as :func:`dpdl.models.transformer.greedy_decode`: row ``i`` starts with ``<bos>``, stops
    at its ``<eos>`` (then ``pad_index``), all rows stop when all have written ``<eos>`` or after ``max_len``
    tokens (default ``S + 10``). Each step feeds only the previous token and carries the state, so a step
    costs the same at every position (the Transformer's decoder re-reads the whole prefix). Eval mode, on the
    model's device.
    """
    check_token_ids(src, "src")
    max_len = decode_length(src, max_len)
    with eval_mode(model):
        src = src.to(next(model.parameters()).device)
        state = model.encode(src)

        def next_logits(out: Tensor) -> Tensor:  # feeds only the last token; the state carries the rest
            nonlocal state
            logits, state = model.decode_step(out[:, -1], state)
            return logits

        return greedy_tokens(
            next_logits, len(src), src.device, bos_index, eos_index, max_len=max_len, pad_index=pad_index
        )


# --- helpers ------------------------------------------------------------------------------------------
