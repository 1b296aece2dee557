"""A small encoder-decoder Transformer for sequence-to-sequence tasks, trained with teacher forcing (lab 7).

Lab 7 writes attention, multi-head attention, the sinusoidal encoding and the masks by hand; this module
puts the same pieces together from ``nn.TransformerEncoderLayer``/``nn.TransformerDecoderLayer`` so that
notebooks can spend their cells on training and on what the model does: :class:`Seq2SeqTransformer`,
:func:`fit_seq2seq` (teacher forcing, a loss that ignores padding), :func:`greedy_decode` and
:func:`cross_attention_weights` (which source tokens each output looked at). All tensors are batch first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from dpdl._checks import check_sizes
from dpdl.progress import progress as _progress_bar
from dpdl.train.history import History
from dpdl.train.loop import Callback, _check_callbacks, _check_epochs, _model_device, _resolve_device, _run_callbacks

__all__ = [
    "sinusoidal_encoding",
    "PositionalEncoding",
    "Seq2SeqTransformer",
    "fit_seq2seq",
    "evaluate_seq2seq",
    "greedy_decode",
    "cross_attention_weights",
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
        _check_ids(src, "src")
        src_padding_mask = src == self.pad_index
        x = self.positional(self.src_embed(src) * math.sqrt(self.d_model))
        return self.encoder(x, src_key_padding_mask=src_padding_mask), src_padding_mask

    def decode(self, tgt_in: Tensor, memory: Tensor, src_padding_mask: Tensor) -> Tensor:
        """Target ids so far ``(B, T)`` (``<bos>`` first) -> logits ``(B, T, V)`` of the next token at each position."""
        _check_ids(tgt_in, "tgt_in")
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


def fit_seq2seq(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None,
    train_data: tuple[Tensor, Tensor],
    *,
    epochs: int = 1,
    batch_size: int = 64,
    val_data: tuple[Tensor, Tensor] | None = None,
    pad_index: int = 0,
    generator: torch.Generator | int | None = None,
    device: torch.device | str | None = None,
    callbacks: Sequence[Callback] | Callback = (),
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    clip_grad_norm: float | None = None,
    progress: bool = True,
) -> History:
    """Train a sequence-to-sequence ``model(src, tgt_in) -> logits`` with teacher forcing; returns a :class:`History`.

    ``train_data = (X, y)``: source ids ``X`` ``(N, S)`` and target ids ``y`` ``(N, T)``, each row of ``y``
    ``<bos> ... <eos>`` padded with ``pad_index`` (as :func:`dpdl.data.morse.pairs_to_tensors` gives them).
    Every step takes a shuffled batch (order drawn from ``generator``, an int seed or a ``torch.Generator``;
    default torch's global RNG), cuts the columns that are padding in the whole batch, and feeds the
    decoder the target shifted right: ``logits = model(src, tgt[:, :-1])`` is scored against
    ``tgt[:, 1:]``, so position ``t`` predicts token ``t + 1`` from the true tokens before it.

    ``loss_fn(logits (B, T, V), tgt_out (B, T))`` must ignore padding; ``None`` uses the cross-entropy
    with ``ignore_index=pad_index``. The history holds per epoch ``loss`` (averaged over the real target
    tokens) and ``accuracy`` (the fraction of real target tokens whose argmax is right, with the true
    prefix given), plus ``val_loss``/``val_accuracy`` with ``val_data``. ``callbacks`` follow
    :func:`dpdl.train.fit`'s contract: ``callback(epoch, history, model)`` after every epoch (model in eval
    mode), all of them, and training stops when one returns ``True``.

    ``scheduler`` (e.g. ``OneCycleLR``: a warm-up, then a decay) is stepped after every batch: Transformers
    trained at a high constant learning rate tend to spike, and a decaying rate ends training calmly.
    ``clip_grad_norm`` rescales the gradient of each step to at most that norm.
    """
    _check_epochs(epochs)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    X, y = _check_data(train_data, "train_data")
    if val_data is not None:
        val_data = _check_data(val_data, "val_data")
    if not (callable(getattr(optimizer, "zero_grad", None)) and callable(getattr(optimizer, "step", None))):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer; got {type(optimizer).__name__}")
    loss_fn = _loss_fn(loss_fn, pad_index)
    callbacks = _check_callbacks(callbacks)
    if isinstance(generator, int) and not isinstance(generator, bool):
        generator = torch.Generator().manual_seed(generator)
    device = _resolve_device(device)
    model.to(device)
    was_training = model.training
    history = History()
    try:
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(len(X), generator=generator)
            batches = order.split(batch_size)
            totals = _Totals()
            bar = _progress_bar(batches, enabled=None if progress else False, desc=f"epoch {epoch}/{epochs}")
            for rows in bar:
                src, tgt = _trim(X[rows], pad_index).to(device), _trim(y[rows], pad_index).to(device)
                tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
                logits = model(src, tgt_in)
                loss = loss_fn(logits, tgt_out)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip_grad_norm is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                totals.add(loss.detach(), logits.detach(), tgt_out, pad_index)
            record = totals.result()
            model.eval()
            if val_data is not None:
                val = evaluate_seq2seq(model, loss_fn, val_data, batch_size=max(batch_size, 256), pad_index=pad_index)
                record.update({f"val_{name}": value for name, value in val.items()})
            history.append(record)
            if _run_callbacks(callbacks, epoch, history, model):
                break
    finally:
        model.train(was_training)
    return history


@torch.no_grad()
def evaluate_seq2seq(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None,
    data: tuple[Tensor, Tensor],
    *,
    batch_size: int = 256,
    pad_index: int = 0,
) -> dict[str, float]:
    """Teacher-forced ``{"loss", "accuracy"}`` of ``model`` on ``data = (X, y)`` (as in :func:`fit_seq2seq`), eval mode.

    With the true prefix given at every position this measures next-token prediction, not decoding:
    :func:`greedy_decode` feeds the model its own outputs, and one early mistake can derail the rest.
    """
    X, y = _check_data(data, "data")
    loss_fn = _loss_fn(loss_fn, pad_index)
    device = _model_device(model, None)
    was_training = model.training
    model.eval()
    totals = _Totals()
    try:
        for rows in torch.arange(len(X)).split(batch_size):
            src, tgt = _trim(X[rows], pad_index).to(device), _trim(y[rows], pad_index).to(device)
            logits = model(src, tgt[:, :-1])
            totals.add(loss_fn(logits, tgt[:, 1:]), logits, tgt[:, 1:], pad_index)
    finally:
        model.train(was_training)
    return totals.result()


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
    _check_ids(src, "src")
    if max_len is None:
        max_len = src.shape[1] + 10
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive int; got {max_len!r}")
    was_training = model.training
    model.eval()
    try:
        src = src.to(_model_device(model, None))
        memory, src_padding_mask = model.encode(src)
        out = torch.full((src.shape[0], 1), bos_index, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            logits = model.decode(out, memory, src_padding_mask)  # (B, t, V): only the last position is new
            next_ids = logits[:, -1].argmax(-1)
            next_ids = torch.where(done, torch.full_like(next_ids, pad_index), next_ids)
            out = torch.cat([out, next_ids.unsqueeze(1)], dim=1)
            done |= next_ids == eos_index
            if bool(done.all()):
                break
    finally:
        model.train(was_training)
    return out


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

    was_training = model.training
    model.eval()
    handles = [
        attention.register_forward_pre_hook(ask_for_weights, with_kwargs=True),
        attention.register_forward_hook(keep_weights, with_kwargs=True),
    ]
    try:
        device = _model_device(model, None)
        model(src.to(device), tgt_in.to(device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return caught[0].cpu()


# --- helpers ------------------------------------------------------------------------------------------


class _Totals:
    """Sums of loss and right tokens over an epoch, kept on the device and read once at the end."""

    def __init__(self) -> None:
        self.loss_sum: Tensor | float = 0.0
        self.right: Tensor | int = 0
        self.tokens = 0

    def add(self, loss: Tensor, logits: Tensor, tgt_out: Tensor, pad_index: int) -> None:
        real = tgt_out != pad_index
        n = int(real.sum())
        self.loss_sum = self.loss_sum + loss * n
        self.right = self.right + ((logits.argmax(-1) == tgt_out) & real).sum()
        self.tokens += n

    def result(self) -> dict[str, float]:
        tokens = max(self.tokens, 1)
        return {"loss": float(self.loss_sum) / tokens, "accuracy": float(self.right) / tokens}


def _loss_fn(loss_fn, pad_index: int) -> Callable[[Tensor, Tensor], Tensor]:
    if loss_fn is None:
        cross_entropy = nn.CrossEntropyLoss(ignore_index=pad_index)
        return lambda logits, tgt_out: cross_entropy(logits.flatten(0, 1), tgt_out.flatten())
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(logits, tgt_out), or None; got {type(loss_fn).__name__}")
    return loss_fn


def _trim(ids: Tensor, pad_index: int) -> Tensor:
    """Drop the trailing columns that are padding in every row of the batch (batches of short rows run faster)."""
    used = (ids != pad_index).any(0).nonzero()
    return ids[:, : int(used[-1]) + 1] if len(used) else ids[:, :1]


def _check_ids(ids: Tensor, name: str) -> None:
    if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype != torch.long:
        got = f"shape {tuple(ids.shape)}, {ids.dtype}" if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(f"{name} must be token ids, int64 of shape (B, length) (batch first); got {got}")


def _check_data(data, name: str) -> tuple[Tensor, Tensor]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{name} must be a pair (X, y) of id tensors (N, S) and (N, T); got {type(data).__name__}")
    X, y = data
    _check_ids(X, f"{name}[0] (the sources X)")
    _check_ids(y, f"{name}[1] (the targets y)")
    if len(X) != len(y):
        raise ValueError(f"{name} needs one target per source; got {len(X)} sources and {len(y)} targets")
    if len(X) == 0:
        raise ValueError(f"{name} is empty")
    if y.shape[1] < 2:
        raise ValueError(f"targets must hold at least <bos> and <eos> (2 columns); got shape {tuple(y.shape)}")
    return X, y

