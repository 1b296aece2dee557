"""The copy task the sequence-to-sequence tests train on: the target is the source, between <bos> and <eos>.

Small enough to learn in a second on a CPU, and a wrong decoder, mask or shift cannot learn it.
"""

import torch

PAD, BOS, EOS = 0, 1, 2  # the copy task's specials; tokens 3..9 are "letters"


def copy_task(n, min_len=2, max_len=6, vocab=10, seed=0):
    """Sources of random letters (N, S), targets <bos> letters <eos> (N, S + 2), both padded with 0."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=g)
    X = torch.zeros(n, max_len, dtype=torch.long)
    y = torch.zeros(n, max_len + 2, dtype=torch.long)
    for i, length in enumerate(lengths.tolist()):
        letters = torch.randint(3, vocab, (length,), generator=g)
        X[i, :length] = letters
        y[i, 0], y[i, 1 : length + 1], y[i, length + 1] = BOS, letters, EOS
    return X, y
