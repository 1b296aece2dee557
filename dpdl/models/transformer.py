"""A small encoder-decoder Transformer for sequence-to-sequence tasks, trained with teacher forcing (lab 7).

Lab 7 writes attention, multi-head attention, the sinusoidal encoding and the masks by hand; this module
puts the same pieces together from ``nn.TransformerEncoderLayer``/``nn.TransformerDecoderLayer`` so that
notebooks can spend their cells on training and on what the model does: :class:`Seq2SeqTransformer`,
:func:`greedy_decode` and :func:`cross_attention_weights` (which source tokens each output looked at).
Train it with :func:`dpdl.train.fit` and the step ``dpdl.train.teacher_forcing(pad_index)``. All tensors
are batch first.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dpdl._checks import check_sizes
from dpdl.models.decoding import check_token_ids, decode_length, greedy_tokens
from dpdl.train.modes import eval_mode

__all__ = [
    "PositionalEncoding",
    "Seq2SeqTransformer",
    "cross_attention_weights",
    "greedy_decode",
    "sinusoidal_encoding",
]


def sinusoidal_encoding(length: int, d_model: int, base: float = 10000.0) -> Tensor:
    """The sinusoidal position encodings of "Attention is all you need", float32 ``(length, d_model)``.

    ``PE[p, 2i] = sin(p / base**(2i / d_model))`` and ``PE[p, 2i + 1] = cos(p / base**(2i / d_model))``:
    each pair of columns turns at its own frequency, from one turn per ``2π`` positions down to one per
    ``2π·base``, so every position gets a distinct pattern and ``PE[p + k]`` is a rotation of ``PE[p]``
    that depends only on the offset ``k``. An odd ``d_model`` drops the last cosine column.
    """
    check_sizes("sinusoidal_encoding", length=length, d_model=d_model)
    position = torch.arange(length, dtype=torch.float64).unsqueeze(1)  # (length, 1)
    frequency = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (ceil(d/2),)
    angle = position * frequency  # (length, ceil(d/2)); float64 so that long encodings stay exact
    pe = torch.zeros(length, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe.float()


class PositionalEncoding(nn.Module):
    """Add :func:`sinusoidal_encoding` to a batch of embeddings: ``(B, T, d_model) -> (B, T, d_model)``.

    Attention alone is blind to order (permuting the tokens permutes its outputs); adding a pattern that
    depends on the position lets it tell "ab" from "ba". The encodings are a fixed buffer of ``max_len``
    rows, moved with the model by ``.to(device)`` and not trained. ``dropout`` applies after the sum.
    """

    def __init__(self, d_model: int, max_len: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("pe", sinusoidal_encoding(max_len, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``(B, T, d_model)`` -> ``x + PE[:T]`` (after dropout), same shape."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"PositionalEncoding expects embeddings of shape (B, T, {self.d_model}) (batch first); got "
                f"shape {tuple(x.shape)}"
            )
        if x.shape[1] > self.max_len:
            raise ValueError(
                f"a sequence of {x.shape[1]} positions is longer than the {self.max_len} encodings prepared; "
                f"build the model with max_len >= {x.shape[1]}"
            )
        return self.dropout(x + self.pe[: x.shape[1]])

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"


class Seq2SeqTransformer(nn.Module):
    """An encoder-decoder Transformer: source ids ``(B, S)`` and target ids ``(B, T)`` -> logits ``(B, T, V)``.

    Both sides embed their tokens (scaled by ``sqrt(d_model)``, so that embeddings and position encodings
    have similar sizes), add :class:`PositionalEncoding`, and run ``nn.TransformerEncoderLayer`` /
    ``nn.TransformerDecoderLayer`` stacks with ``batch_first=True``. The masks:

    - the source padding mask ``(B, S)`` (``True`` at ``pad_index``): no query attends to padding, in the
      encoder nor in the decoder's cross-attention;
    - the causal mask ``(T, T)``: target position ``t`` sees positions ``<= t`` only, so that training on a
      whole shifted target at once (teacher forcing) cannot peek at the token it must predict;
    - the target padding mask ``(B, T)``.

    ``encode(src) -> (memory (B, S, d_model), src_padding_mask (B, S))`` and
    ``decode(tgt_in, memory, src_padding_mask) -> logits (B, T, V)`` are separate, so that
    :func:`greedy_decode` encodes once and decodes one token at a time.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        *,
        d_model: int = 64,
        nhead: int = 4,
        num_encoder_layers: int = 2,
        num_decoder_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
        pad_index: int = 0,
        max_len: int = 512,
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        check_sizes(
            "Seq2SeqTransformer",
            src_vocab_size=src_vocab_size,
            tgt_vocab_size=tgt_vocab_size,
            d_model=d_model,
            nhead=nhead,
            dim_feedforward=dim_feedforward,
            max_len=max_len,
            num_encoder_layers=num_encoder_layers,
            num_decoder_layers=num_decoder_layers,
        )
        if d_model % nhead:
            raise ValueError(
                f"Seq2SeqTransformer: d_model ({d_model}) must be divisible by nhead ({nhead}): each head gets "
                f"d_model / nhead dimensions"
            )
        if not 0 <= pad_index < min(src_vocab_size, tgt_vocab_size):
            raise ValueError(f"pad_index {pad_index} must be an index of both vocabularies")
        self.d_model, self.pad_index = d_model, pad_index
        self.src_embed = nn.Embedding(src_vocab_size, d_model, padding_idx=pad_index)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, d_model, padding_idx=pad_index)
        for embed in (self.src_embed, self.tgt_embed):  # entries of size ~1 after the sqrt(d_model) scaling,
            nn.init.normal_(embed.weight, std=d_model**-0.5)  # like the position encodings they are added to
            embed.weight.data[pad_index] = 0
        self.positional = PositionalEncoding(d_model, max_len, dropout)
        layer_options = dict(dim_feedforward=dim_feedforward, dropout=dropout, batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model, nhead, **layer_options),
            num_encoder_layers,
            norm=nn.LayerNorm(d_model) if norm_first else None,  # pre-norm stacks end with a layer norm
            enable_nested_tensor=False,  # keep padded positions as tensors (same outputs in train and eval)
        )
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d_model, nhead, **layer_options),
            num_decoder_layers,
            norm=nn.LayerNorm(d_model) if norm_first else None,
        )
        self.head = nn.Linear(d_model, tgt_vocab_size)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """Source ids ``(B, S)`` -> ``memory`` ``(B, S, d_model)`` and the padding mask ``(B, S)`` (``True`` = pad)."""
        check_token_ids(src, "src")
        src_padding_mask = src == self.pad_index
        x = self.positional(self.src_embed(src) * math.sqrt(self.d_model))
        return self.encoder(x, src_key_padding_mask=src_padding_mask), src_padding_mask

    def decode(self, tgt_in: Tensor, memory: Tensor, src_padding_mask: Tensor) -> Tensor:
        """Target ids so far ``(B, T)`` (``<bos>`` first) -> logits ``(B, T, V)`` of the next token at each position."""
        check_token_ids(tgt_in, "tgt_in")
        T = tgt_in.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=tgt_in.device).triu(1)  # True above the diagonal: hidden
        x = self.positional(self.tgt_embed(tgt_in) * math.sqrt(self.d_model))
        h = self.decoder(
            x,
            memory,
            tgt_mask=causal,
            tgt_key_padding_mask=tgt_in == self.pad_index,
            memory_key_padding_mask=src_padding_mask,
        )
        return self.head(h)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """``src`` ``(B, S)``, ``tgt_in`` ``(B, T)`` -> logits ``(B, T, V)``; teacher forcing feeds ``tgt[:, :-1]``."""
        memory, src_padding_mask = self.encode(src)
        return self.decode(tgt_in, memory, src_padding_mask)


@torch.no_grad()
def greedy_decode(
    model: nn.Module,
    src: Tensor,
    bos_index: int,
    eos_index: int,
    *,
    max_len: int | None = None,
    pad_index: int = 0,
) -> Tensor:
    """Decode ``src`` ``(B, S)`` one token at a time, always taking the most likely one: ids ``(B, 1 + L)``.

    The model needs ``encode(src) -> (memory, src_padding_mask)`` and ``decode(tgt_in, memory,
    src_padding_mask) -> logits`` (as :class:`Seq2SeqTransformer`). The source is encoded once; the decoder
    starts from ``<bos>`` and is fed its own prediction back each step, until every row has produced
    ``<eos>`` or after ``max_len`` tokens (default ``S + 10``). Row ``i`` starts with ``<bos>``; after its
    ``<eos>`` it is filled with ``pad_index``. Runs in eval mode, on the device of the model.
    """
    check_token_ids(src, "src")
    max_len = decode_length(src, max_len)
    with eval_mode(model):
        src = src.to(_device_of(model))
        memory, src_padding_mask = model.encode(src)

        def next_logits(out: Tensor) -> Tensor:  # the decoder re-reads the prefix; only the last position is new
            return model.decode(out, memory, src_padding_mask)[:, -1]

        return greedy_tokens(
            next_logits, len(src), src.device, bos_index, eos_index, max_len=max_len, pad_index=pad_index
        )


@torch.no_grad()
def cross_attention_weights(model: Seq2SeqTransformer, src: Tensor, tgt_in: Tensor, layer: int = -1) -> Tensor:
    """How much each target position attended to each source token in one decoder layer: ``(B, T, S)``, rows sum to 1.

    The weights of ``model.decoder.layers[layer]``'s cross-attention, averaged over the heads, for the
    decoder input ``tgt_in`` ``(B, T)`` (e.g. the output of :func:`greedy_decode`; row ``t`` is the step that
    predicted token ``t + 1``), returned on the CPU, ready to plot. ``nn.TransformerDecoderLayer`` does not
    keep its weights, so they are caught with hooks during one forward pass in eval mode.
    """
    layers = getattr(getattr(model, "decoder", None), "layers", None)
    if layers is None:
        raise TypeError("cross_attention_weights needs a model with decoder.layers (nn.TransformerDecoderLayer)")
    attention = layers[layer].multihead_attn
    caught: list[Tensor] = []

    def ask_for_weights(module, args, kwargs):
        return args, {**kwargs, "need_weights": True, "average_attn_weights": True}

    def keep_weights(module, args, kwargs, output):
        caught.append(output[1])

    handles = [
        attention.register_forward_pre_hook(ask_for_weights, with_kwargs=True),
        attention.register_forward_hook(keep_weights, with_kwargs=True),
    ]
    try:
        with eval_mode(model):
            device = _device_of(model)
            model(src.to(device), tgt_in.to(device))
    finally:
        for handle in handles:
            handle.remove()
    return caught[0].cpu()


# --- helpers ------------------------------------------------------------------------------------------


def _device_of(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
