"""Greedy decoding for lab 7's sequence-to-sequence models: one loop for the Transformer and the LSTM.

Both decode the same way (start from ``<bos>``, feed back the most likely token, pad a row after its
``<eos>``, stop when every row is done); they differ only in how they get the next token's logits,
which each model's ``greedy_decode`` passes in as a function.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def check_token_ids(ids: Tensor, name: str) -> None:
    """Token ids are int64 ``(B, length)``, batch first."""
    if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype != torch.long:
        got = f"shape {tuple(ids.shape)}, {ids.dtype}" if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(f"{name} must be token ids, int64 of shape (B, length) (batch first); got {got}")


def decode_length(src: Tensor, max_len: int | None) -> int:
    """``max_len``, checked, or ``S + 10`` for a source ``(B, S)``."""
    if max_len is None:
        return src.shape[1] + 10
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive int; got {max_len!r}")
    return max_len


def greedy_tokens(
    next_logits: Callable[[Tensor], Tensor],
    batch_size: int,
    device: torch.device,
    bos_index: int,
    eos_index: int,
    *,
    max_len: int,
    pad_index: int,
) -> Tensor:
    """Ids ``(B, 1 + L)``: ``<bos>``, then each step the argmax of ``next_logits(out)`` ``(B, V)``.

    ``next_logits`` gets the ids written so far ``(B, t)`` and returns the logits of the next token. A row
    that has written ``<eos>`` gets ``pad_index`` from then on; decoding stops when every row is done or
    after ``max_len`` tokens.
    """
    out = torch.full((batch_size, 1), bos_index, dtype=torch.long, device=device)
    done = torch.zeros(batch_size, dtype=torch.bool, device=device)
    for _ in range(max_len):
        next_ids = next_logits(out).argmax(-1)
        next_ids = torch.where(done, torch.full_like(next_ids, pad_index), next_ids)
        out = torch.cat([out, next_ids.unsqueeze(1)], dim=1)
        done |= next_ids == eos_index
        if bool(done.all()):
            break
    return out
