"""Text data of lab 7 (sequences): Nietzsche for character RNNs, GloVe word vectors, IMDB reviews.

Plus the few tools a lab needs to feed words to a network in plain Python and PyTorch (torchtext is
retired): :func:`tokenize`, :class:`Vocab` (words <-> indices), :func:`pad_batch` and
:class:`BucketLoader` (padded batches of sequences of similar length).
"""

from __future__ import annotations

import csv
import functools
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from dpdl.data.store import file_path

__all__ = [
    "nietzsche_text",
    "glove",
    "GloVe",
    "UnknownWordError",
    "imdb",
    "TextSplit",
    "IMDB_LABELS",
    "tokenize",
    "Vocab",
    "pad_batch",
    "BucketLoader",
]

IMDB_LABELS = ("negative", "positive")  # label 0 and label 1


def nietzsche_text() -> str:
    """Nietzsche's *Beyond Good and Evil* (English), the Keras char-RNN corpus: one ``str`` of 600,893 characters."""
    return _read_text("nietzsche", "nietzsche.txt")


class UnknownWordError(KeyError):
    """A word that is not in the GloVe vocabulary (a ``KeyError``, with a readable message)."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


class GloVe:
    """Pretrained GloVe word vectors (6B tokens, 50-d): the 50,000 most frequent lowercase words.

    ``words`` (list, most frequent first), ``index`` (word -> row), ``vectors`` float32 ``(V, 50)``.
    Similarities are cosines, computed against all rows at once with unit-length copies of the vectors.
    """

    def __init__(self, words: list[str], vectors: Tensor) -> None:
        if vectors.dim() != 2 or len(words) != len(vectors):
            raise ValueError(
                f"need one vector per word; got {len(words)} words and vectors of shape {tuple(vectors.shape)}"
            )
        self.words = words
        self.index = {word: i for i, word in enumerate(words)}
        self.vectors = vectors
        self.unit_vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @property
    def dim(self) -> int:
        """The length of each vector (50)."""
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __repr__(self) -> str:
        return f"GloVe({len(self)} words, dim={self.dim})"

    def vector(self, word: str) -> Tensor:
        """The vector of ``word``, shape ``(50,)``; :class:`UnknownWordError` if it is not in the vocabulary."""
        return self.vectors[self._row(word)]

    def nearest(
        self, word_or_vector: str | Tensor, k: int = 10, exclude: Iterable[str] = ()
    ) -> list[tuple[str, float]]:
        """The ``k`` words most similar (cosine) to a word or a ``(50,)`` vector, best first, as ``(word, cosine)``.

        A query word is left out of its own answer; ``exclude`` leaves out more words.
        """
        skip = set(exclude)
        if isinstance(word_or_vector, str):
            skip.add(word_or_vector)
            query = self.vector(word_or_vector)
        else:
            query = torch.as_tensor(word_or_vector, dtype=self.vectors.dtype)
            if query.shape != (self.dim,):
                raise ValueError(f"the query vector must have shape ({self.dim},); got {tuple(query.shape)}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int; got {k!r}")
        cosines = self.unit_vectors @ (query / query.norm().clamp_min(1e-12))
        rows = [self.index[word] for word in skip if word in self.index]
        if rows:
            cosines[rows] = -float("inf")
        best = cosines.topk(min(k, len(self) - len(rows)))
        return [(self.words[i], float(c)) for c, i in zip(best.values.tolist(), best.indices.tolist())]

    def analogy(self, a: str, b: str, c: str, k: int = 5) -> list[tuple[str, float]]:
        """ "``a`` is to ``b`` as ``c`` is to ?": the words nearest (cosine) to ``b - a + c``, leaving out a, b and c.

        ``a``, ``b`` and ``c`` enter as unit-length vectors: this is 3CosAdd as GloVe's own evaluation
        script and gensim's ``evaluate_word_analogies`` compute it, so accuracies are comparable with
        published ones. (With raw vectors, a long vector such as a frequent word's would weigh more.)
        ``analogy("man", "king", "woman")`` -> ``[("queen", 0.852), ("throne", 0.766), ...]``.
        """
        unit = self.unit_vectors
        query = unit[self._row(b)] - unit[self._row(a)] + unit[self._row(c)]
        return self.nearest(query, k=k, exclude=(a, b, c))

    def _row(self, word: str) -> int:
        if not isinstance(word, str):
            raise TypeError(f"words are strings; got {type(word).__name__}")
        try:
            return self.index[word]
        except KeyError:
            hint = ""
            if word.lower() in self.index:
                hint = f"; GloVe words are lowercase, try {word.lower()!r}"
            raise UnknownWordError(
                f"{word!r} is not among the {len(self)} GloVe words{hint or ' (all lowercase, the most frequent first)'}"
            ) from None


def glove() -> GloVe:
    """The GloVe 6B 50-d vectors of the 50,000 most frequent words; loaded once per process (about a second)."""
    return _load_glove()


@dataclass
class TextSplit:
    """Labelled texts: ``texts[i]`` has label ``labels[i]`` (0 = negative, 1 = positive); ``labels`` int64 ``(N,)``.

    Indexing gives ``(text, label)`` pairs, so a split also works as a ``Dataset``. ``ids`` int64 ``(N,)``
    are the texts' row numbers in the source file (the IMDB subset repeats a few reviews word for word,
    so compare splits by id, not by text).
    """

    texts: list[str]
    labels: Tensor
    label_names: tuple[str, ...] = field(default=IMDB_LABELS)
    ids: Tensor | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.texts[i], int(self.labels[i])

    def __repr__(self) -> str:
        counts = torch.bincount(self.labels, minlength=len(self.label_names)).tolist()
        summary = ", ".join(f"{n} {name}" for n, name in zip(counts, self.label_names))
        return f"TextSplit({len(self)} texts: {summary})"


def imdb(seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> dict[str, TextSplit]:
    """10,000 IMDB movie reviews (5,000 positive, 5,000 negative) split into ``"train"``, ``"val"``, ``"test"``.

    The split is stratified: each label is shuffled with ``seed`` and cut in the same fractions, so every
    split keeps the 50/50 balance, and the same seed gives the same split on any machine. Texts are
    verbatim (with ``<br />`` tags; :func:`tokenize` removes them).
    """
    check_split_fractions(val_fraction, test_fraction)
    texts, labels = _load_imdb()
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label in range(len(IMDB_LABELS)):
        rows = rng.permutation(np.flatnonzero(labels == label))
        n_test, n_val = round(len(rows) * test_fraction), round(len(rows) * val_fraction)
        parts["test"].append(rows[:n_test])
        parts["val"].append(rows[n_test : n_test + n_val])
        parts["train"].append(rows[n_test + n_val :])
    splits = {}
    for name, chunks in parts.items():
        rows = rng.permutation(np.concatenate(chunks))  # mix the labels
        ids = torch.from_numpy(rows.astype(np.int64))
        splits[name] = TextSplit([texts[i] for i in rows], torch.from_numpy(labels[rows]), ids=ids)
    return splits


_TOKEN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lowercase words and punctuation marks: ``"Don't go!<br />"`` -> ``["don't", "go", "!"]``."""
    if not isinstance(text, str):
        raise TypeError(f"tokenize takes one str; got {type(text).__name__}")
    return _TOKEN.findall(text.lower().replace("<br />", " "))


class Vocab:
    """Tokens <-> indices: ``<pad>`` = 0 and ``<unk>`` = 1, then tokens from most to least frequent.

    Build it from the training texts only, ``Vocab(tokenize(t) for t in train_texts)``: tokens seen fewer
    than ``min_freq`` times, and all beyond ``max_size`` entries (the two specials included), map to
    ``<unk>``. Equal counts keep the order in which tokens first appear, so a vocabulary is reproducible.
    """

    PAD = "<pad>"
    UNK = "<unk>"
    pad_index = 0
    unk_index = 1

    def __init__(self, token_lists: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None) -> None:
        if not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"min_freq must be an int >= 1; got {min_freq!r}")
        if max_size is not None and (not isinstance(max_size, int) or max_size < 2):
            raise ValueError(f"max_size must be None or an int >= 2 (it counts <pad> and <unk>); got {max_size!r}")
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            if isinstance(tokens, str):
                raise TypeError("Vocab takes lists of tokens, one per text; got a str (use tokenize(text) first)")
            counts.update(tokens)
        kept = [token for token, n in counts.most_common() if n >= min_freq and token not in (self.PAD, self.UNK)]
        if max_size is not None:
            kept = kept[: max_size - 2]
        self.itos: list[str] = [self.PAD, self.UNK, *kept]
        self.stoi: dict[str, int] = {token: i for i, token in enumerate(self.itos)}
        self.counts = counts

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __getitem__(self, token: str) -> int:
        return self.stoi.get(token, self.unk_index)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {self.itos[:6]}...)"

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Indices of ``tokens``; unknown tokens give 1 (``<unk>``)."""
        if isinstance(tokens, str):
            raise TypeError("encode takes a list of tokens; got a str (use vocab.encode(tokenize(text)))")
        return [self.stoi.get(token, self.unk_index) for token in tokens]

    def decode(self, indices: Iterable[int] | Tensor) -> list[str]:
        """Tokens of ``indices`` (a list or a 1-D tensor), the inverse of :meth:`encode` for known tokens."""
        if isinstance(indices, Tensor):
            indices = indices.tolist()
        tokens = []
        for i in indices:
            if not 0 <= i < len(self.itos):
                raise IndexError(f"index {i} is outside this vocabulary of {len(self)} tokens")
            tokens.append(self.itos[i])
        return tokens


def pad_batch(sequences: Sequence[Sequence[int] | Tensor], pad_index: int = 0) -> tuple[Tensor, Tensor]:
    """Stack sequences of different lengths: ``padded`` int64 ``(B, T)`` with ``T`` the longest, and ``lengths`` ``(B,)``.

    Shorter sequences are filled with ``pad_index`` at the end. Use it as a ``DataLoader``'s
    ``collate_fn`` body; ``lengths`` feeds ``torch.nn.utils.rnn.pack_padded_sequence``.
    """
    if len(sequences) == 0:
        raise ValueError("pad_batch needs at least one sequence")
    tensors = [torch.as_tensor(s, dtype=torch.long) for s in sequences]
    bad = [tuple(t.shape) for t in tensors if t.dim() != 1]
    if bad:
        raise ValueError(f"each sequence must be 1-D (a list of indices); got shapes {bad[:3]}")
    lengths = torch.tensor([len(t) for t in tensors], dtype=torch.long)
    return pad_sequence(tensors, batch_first=True, padding_value=pad_index), lengths


class BucketLoader:
    """Batches ``(X, y)`` of padded token ids, each batch made of sequences of similar length.

    A batch is padded to its longest sequence, so a short review batched with a long one is mostly
    padding: compute wasted, and (without packing) read by an RNN. Here ``bucket_batches`` batches' worth
    of examples are sorted by length together and cut into batches, so each batch holds neighbours in
    length. With ``shuffle=True`` every pass draws a new order first (from ``generator``: a
    ``torch.Generator``, an int seed, or torch's global RNG) and then shuffles the batches, so an epoch
    still mixes short and long batches; ``bucket_batches=1`` gives plain random batches.

    ``sequences`` are lists (or 1-D tensors) of ids, none empty, none holding ``pad_index``; ``labels``
    ``(N,)``. Each batch is ``X`` int64 ``(B, T)`` padded at the end with ``pad_index`` (``T`` = the
    batch's longest sequence) and ``y`` ``(B,)``; the lengths are ``(X != pad_index).sum(1)``, so
    ``dpdl.train.fit`` can pass ``X`` alone to a model that packs. ``order`` holds the example order of
    the last pass (the rows of ``dpdl.train.predict(model, loader)`` are ``sequences[order]``).
    """

    def __init__(
        self,
        sequences: Sequence[Sequence[int] | Tensor],
        labels: Tensor | Sequence[int],
        batch_size: int = 64,
        shuffle: bool = False,
        bucket_batches: int = 50,
        pad_index: int = 0,
        generator: torch.Generator | int | None = None,
    ) -> None:
        for name, value in (("batch_size", batch_size), ("bucket_batches", bucket_batches)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if len(sequences) == 0:
            raise ValueError("BucketLoader needs at least one sequence")
        self.sequences = [torch.as_tensor(s, dtype=torch.long) for s in sequences]
        self.labels = torch.as_tensor(labels)
        if self.labels.dim() == 0 or len(self.labels) != len(self.sequences):
            raise ValueError(
                f"need one label per sequence; got {len(self.sequences)} sequences and labels of shape "
                f"{tuple(self.labels.shape)}"
            )
        bad = [i for i, s in enumerate(self.sequences) if s.dim() != 1 or len(s) == 0]
        if bad:
            raise ValueError(
                f"each sequence must be a non-empty 1-D list of ids; sequence {bad[0]} is not "
                f"(shape {tuple(self.sequences[bad[0]].shape)}). Map an empty text to [unk_index]"
            )
        if bool((torch.cat(self.sequences) == pad_index).any()):
            first = next(i for i, s in enumerate(self.sequences) if bool((s == pad_index).any()))
            raise ValueError(
                f"sequence {first} holds the pad index {pad_index}, so its length could not be read "
                "from the padding; encode unknown tokens as <unk>, never as <pad>"
            )
        self.lengths = torch.tensor([len(s) for s in self.sequences])
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.bucket_batches = bucket_batches
        self.pad_index = pad_index
        self.generator = torch.Generator().manual_seed(generator) if isinstance(generator, int) else generator
        self.order = self._batch_rows()[0] if not shuffle else torch.arange(len(self.sequences))

    @property
    def dataset_size(self) -> int:
        """The number of sequences ``N``."""
        return len(self.sequences)

    def __len__(self) -> int:
        return -(-len(self.sequences) // self.batch_size)  # pools hold whole batches, so only the last is short

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        self.order, batches = self._batch_rows()
        for rows in batches:
            X, _ = pad_batch([self.sequences[i] for i in rows.tolist()], pad_index=self.pad_index)
            yield X, self.labels[rows]

    def __repr__(self) -> str:
        return (
            f"BucketLoader({self.dataset_size} sequences, batch_size={self.batch_size}, {len(self)} batches, "
            f"shuffle={self.shuffle}, bucket_batches={self.bucket_batches})"
        )

    def _batch_rows(self) -> tuple[Tensor, list[Tensor]]:
        """The example order of one pass and its batches (lists of row numbers)."""
        n = len(self.sequences)
        rows = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        pool = self.batch_size * self.bucket_batches
        batches: list[Tensor] = []
        for start in range(0, n, pool):
            chunk = rows[start : start + pool]
            chunk = chunk[self.lengths[chunk].argsort(stable=True)]  # similar lengths side by side
            batches.extend(chunk.split(self.batch_size))
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]
        return torch.cat(batches), batches


def check_split_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise a ``ValueError`` unless both fractions are in [0, 1) and leave some training data."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{name} must be a number in [0, 1); got {value!r}")
    if val_fraction + test_fraction >= 1:
        total = val_fraction + test_fraction
        raise ValueError(f"val_fraction + test_fraction must be below 1 to leave training data; got {total}")


# --- loading, once per process ------------------------------------------------------------------


@functools.cache
def _read_text(name: str, relpath: str) -> str:
    with open(file_path(name, relpath), encoding="utf-8", newline="") as f:
        return f.read()


@functools.cache
def _load_glove() -> GloVe:
    with open(file_path("glove", "glove/glove.6B.50d.top50k.txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    words, rows = [], []
    for line in lines:  # split off the word only; the numbers are parsed in one vectorised call
        word, numbers = line.split(" ", 1)
        words.append(word)
        rows.append(numbers)
    values = np.fromstring(" ".join(rows), dtype=np.float32, sep=" ")
    if values.size % len(words):
        raise ValueError(f"the GloVe file is damaged: {values.size} numbers for {len(words)} words")
    return GloVe(words, torch.from_numpy(values.reshape(len(words), -1)))


@functools.cache
def _load_imdb() -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    with open(file_path("imdb", "imdb/imdb_10k.csv"), encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            texts.append(row["review"])
            labels.append(IMDB_LABELS.index(row["sentiment"]))
    return texts, np.array(labels, dtype=np.int64)
