"""The greedy loop both sequence-to-sequence models decode with: <bos> first, argmax fed back, padding after <eos>."""

import pytest
import torch

from dpdl.models.decoding import check_token_ids, decode_length, greedy_tokens

BOS, EOS, PAD = 1, 2, 0


def scripted(rows):
    """next_logits that writes rows[b][t] at step t (the last entry repeated), and records what it was given."""
    seen = []

    def next_logits(out):
        seen.append(out.clone())
        t = out.shape[1] - 1
        logits = torch.zeros(len(rows), 10)
        for b, row in enumerate(rows):
            logits[b, row[min(t, len(row) - 1)]] = 1.0
        return logits

    return next_logits, seen


def test_each_step_sees_the_tokens_so_far_and_rows_pad_after_their_eos():
    next_logits, seen = scripted([[4, EOS, 7], [5, 6, EOS]])
    out = greedy_tokens(next_logits, 2, torch.device("cpu"), BOS, EOS, max_len=10, pad_index=PAD)
    assert out.tolist() == [[BOS, 4, EOS, PAD], [BOS, 5, 6, EOS]]
    assert [s.shape[1] for s in seen] == [1, 2, 3]  # stopped as soon as both rows were done
    assert seen[1].tolist() == [[BOS, 4], [BOS, 5]]


def test_stops_after_max_len_tokens_without_eos():
    next_logits, _ = scripted([[4]])
    out = greedy_tokens(next_logits, 1, torch.device("cpu"), BOS, EOS, max_len=3, pad_index=PAD)
    assert out.tolist() == [[BOS, 4, 4, 4]]


def test_default_length_is_source_plus_ten_and_bad_lengths_are_refused():
    src = torch.zeros(2, 7, dtype=torch.long)
    assert decode_length(src, None) == 17 and decode_length(src, 3) == 3
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_len must be a positive int"):
            decode_length(src, bad)


@pytest.mark.parametrize("ids", [torch.zeros(3, dtype=torch.long), torch.zeros(2, 3), [[1, 2]]])
def test_token_ids_must_be_int64_batch_first(ids):
    with pytest.raises(ValueError, match="src must be token ids, int64 of shape"):
        check_token_ids(ids, "src")
