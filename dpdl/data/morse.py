"""Morse code as a sequence-to-sequence task: the International Morse table, encode/decode, and
(Morse code -> text) pairs cut from a text, as padded batch-first tensors (lab 7, attention).

``encode("Sos now")`` -> ``"... --- ... / -. --- .--"``: letters are separated by spaces, words by
``" / "``. Morse has no case, so :func:`decode` gives lowercase text. :func:`morse_pairs` turns a
text (Nietzsche by default) into short ``(code, text)`` pairs split into train/val/test by a seed;
:func:`morse_vocabs` and :func:`pairs_to_tensors` make the index tensors a Transformer reads.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np
from torch import Tensor

from dpdl.data.text import Vocab, check_split_fractions, pad_batch

__all__ = [
    "MORSE_CODE",
    "WORD_GAP",
    "BOS",
    "EOS",
    "normalize",
    "encode",
    "decode",
    "morse_pairs",
    "code_tokens",
    "morse_vocabs",
    "pairs_to_tensors",
    "indices_to_text",
    "char_accuracy",
]

# International Morse code (ITU-R M.1677-1), plus the common non-ITU signs ! & ; _ $.
MORSE_CODE: dict[str, str] = {
    "a": ".-", "b": "-...", "c": "-.-.", "d": "-..", "e": ".", "f": "..-.", "g": "--.", "h": "....",
    "i": "..", "j": ".---", "k": "-.-", "l": ".-..", "m": "--", "n": "-.", "o": "---", "p": ".--.",
    "q": "--.-", "r": ".-.", "s": "...", "t": "-", "u": "..-", "v": "...-", "w": ".--", "x": "-..-",
    "y": "-.--", "z": "--..",
    "0": "-----", "1": ".----", "2": "..---", "3": "...--", "4": "....-", "5": ".....", "6": "-....",
    "7": "--...", "8": "---..", "9": "----.",
    ".": ".-.-.-", ",": "--..--", "?": "..--..", "'": ".----.", "!": "-.-.--", "/": "-..-.", "(": "-.--.",
    ")": "-.--.-", "&": ".-...", ":": "---...", ";": "-.-.-.", "=": "-...-", "+": ".-.-.", "-": "-....-",
    "_": "..--.-", '"': ".-..-.", "$": "...-..-", "@": ".--.-.",
}  # fmt: skip
WORD_GAP = "/"  # the token between words: encode joins words with " / "
BOS = "<bos>"  # start of a target sequence: the decoder's first input
EOS = "<eos>"  # end of a target sequence: the decoder's last output

_TEXT_OF_CODE = {code: char for char, code in MORSE_CODE.items()}
# Characters morse_pairs keeps: markup signs of plain-text books (_emphasis_, =headings=, /, &, +...) go.
_PAIR_CHARACTERS = frozenset(string.ascii_lowercase + string.digits + " .,;:?!'\"-()")
_SENTENCE_END = re.compile(r"(?<=[.!?]) ")
_DASH_RUN = re.compile(r"-{2,}")  # "woman--what": the plain-text em dash


def normalize(text: str, errors: str = "strict") -> str:
    """The text as Morse can carry it: lowercase, whitespace runs made one space, no space at either end.

    This is what ``decode(encode(text))`` gives back. ``errors="strict"`` raises a ``ValueError`` naming
    the characters without a Morse code; ``errors="ignore"`` strips accents (é -> e) and drops the rest.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize takes a str; got {type(text).__name__}")
    if errors not in ("strict", "ignore"):
        raise ValueError(f"errors must be 'strict' or 'ignore'; got {errors!r}")
    if errors == "ignore":
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = text.lower()
    unknown = sorted({c for c in text if c not in MORSE_CODE and not c.isspace()})
    if unknown and errors == "strict":
        shown = ", ".join(repr(c) for c in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        raise ValueError(
            f"no Morse code for {len(unknown)} character(s): {shown}; remove them, or pass errors='ignore' "
            f"to drop them (MORSE_CODE lists the {len(MORSE_CODE)} characters Morse can send)"
        )
    if unknown:
        text = "".join(c for c in text if c in MORSE_CODE or c.isspace())
    return " ".join(text.split())


def encode(text: str, errors: str = "strict") -> str:
    """Morse code of ``text``: each letter's dots and dashes, letters separated by ``" "``, words by ``" / "``.

    ``encode("SOS now")`` -> ``"... --- ... / -. --- .--"``. Case is lost and whitespace runs count as
    one gap (see :func:`normalize`); ``errors`` says what to do with characters that have no code.
    """
    words = normalize(text, errors).split(" ")
    return f" {WORD_GAP} ".join(" ".join(MORSE_CODE[c] for c in word) for word in words if word)


def decode(code: str) -> str:
    """Text of Morse ``code``: letters separated by whitespace, words by ``/`` -> lowercase text.

    The inverse of :func:`encode` up to :func:`normalize`. Empty words (``"/ /"``) are skipped; a dot-dash
    group that is no letter raises a ``ValueError`` saying which one and where.
    """
    if not isinstance(code, str):
        raise TypeError(f"decode takes a str of dots, dashes, spaces and '/'; got {type(code).__name__}")
    bad = sorted({c for c in code if c not in ".-/" and not c.isspace()})
    if bad:
        raise ValueError(
            f"Morse code holds only '.', '-', whitespace (between letters) and '/' (between words); "
            f"got {', '.join(repr(c) for c in bad[:10])} — to turn text into Morse use encode(text)"
        )
    words = []
    for number, word in enumerate(code.split(WORD_GAP), start=1):
        letters = []
        for letter in word.split():
            if letter not in _TEXT_OF_CODE:
                raise ValueError(f"{letter!r} (in word {number}) is not the Morse code of any letter, digit or sign")
            letters.append(_TEXT_OF_CODE[letter])
        if letters:
            words.append("".join(letters))
    return " ".join(words)


def morse_pairs(
    text: str | None = None,
    *,
    min_chars: int = 1,
    max_chars: int = 30,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> dict[str, list[tuple[str, str]]]:
    """``(code, text)`` pairs for a Morse -> text model, split into ``"train"``, ``"val"`` and ``"test"``.

    The text (default: :func:`dpdl.data.text.nietzsche_text`) is normalised to lowercase letters, digits,
    spaces and ``.,;:?!'"-()`` (accents stripped, markup signs dropped), cut into sentences, and each
    sentence into chunks of whole words of ``min_chars`` to ``max_chars`` characters. Repeated chunks are
    kept once, so no target text is in two splits; the chunks are shuffled with ``seed`` and cut in the
    given fractions, so the same arguments give the same splits on any machine.
    """
    for name, value in (("min_chars", min_chars), ("max_chars", max_chars)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    if min_chars > max_chars:
        raise ValueError(f"min_chars must not exceed max_chars; got min_chars={min_chars}, max_chars={max_chars}")
    check_split_fractions(val_fraction, test_fraction)
    if text is None:
        from dpdl.data.text import nietzsche_text

        text = nietzsche_text()
    if not isinstance(text, str):
        raise TypeError(f"text must be a str (or None for Nietzsche); got {type(text).__name__}")
    clean = normalize(_DASH_RUN.sub(" ", text), errors="ignore")
    clean = " ".join("".join(c for c in clean if c in _PAIR_CHARACTERS).split())
    chunks = {}  # a dict keeps the first occurrence's order: deduplicated and reproducible
    for sentence in _SENTENCE_END.split(clean):
        for chunk in _pack_words(sentence.split(" "), max_chars):
            if len(chunk) >= min_chars:
                chunks[chunk] = None
    texts = list(chunks)
    if not texts:
        raise ValueError(f"the text gives no chunk of {min_chars} to {max_chars} characters; widen the range")
    order = np.random.default_rng(seed).permutation(len(texts))
    n_test, n_val = round(len(texts) * test_fraction), round(len(texts) * val_fraction)
    if n_test + n_val >= len(texts):
        raise ValueError(
            f"the text gives only {len(texts)} chunk(s), too few to leave training pairs after taking "
            f"{n_val} for val and {n_test} for test; use a longer text or smaller fractions"
        )
    rows = {"train": order[n_test + n_val :], "val": order[n_test : n_test + n_val], "test": order[:n_test]}
    return {name: [(encode(texts[i]), texts[i]) for i in index] for name, index in rows.items()}


def code_tokens(code: str) -> list[str]:
    """The tokens of Morse ``code``: one per letter (``".-"``) and ``"/"`` per word gap.

    ``code_tokens(encode(text))`` has exactly one token per character of ``normalize(text)`` (a space
    becomes ``"/"``), so source and target are aligned position by position.
    """
    if not isinstance(code, str):
        raise TypeError(f"code_tokens takes a Morse code str; got {type(code).__name__}")
    return code.replace(WORD_GAP, f" {WORD_GAP} ").split()


def morse_vocabs() -> tuple[Vocab, Vocab]:
    """``(source_vocab, target_vocab)``: every Morse letter code and ``"/"``; every character, space, BOS, EOS.

    Both are built from the Morse table, not from data, so they never meet an unknown token and their
    indices are the same in every notebook. Index 0 is ``<pad>`` in both (``Vocab.pad_index``).
    """
    source_vocab = Vocab([[*MORSE_CODE.values(), WORD_GAP]])
    target_vocab = Vocab([[BOS, EOS, " ", *MORSE_CODE]])
    return source_vocab, target_vocab


def pairs_to_tensors(
    pairs: Sequence[tuple[str, str]], source_vocab: Vocab, target_vocab: Vocab
) -> tuple[Tensor, Tensor]:
    """Index tensors of ``(code, text)`` pairs: ``X`` int64 ``(N, S)`` and ``y`` int64 ``(N, T + 2)``, batch first.

    ``X[i]`` holds the letter tokens of ``code`` (:func:`code_tokens`), ``y[i]`` is ``<bos>``, the characters
    of ``text``, ``<eos>``; both are padded at the end with ``<pad>`` = 0 to the longest in ``pairs``.
    """
    if len(pairs) == 0:
        raise ValueError("pairs_to_tensors needs at least one (code, text) pair")
    sources, targets = [], []
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(s, str) for s in pair)):
            raise ValueError(f"pairs must be (code, text) tuples of two str, as morse_pairs returns; got {pair!r}")
        code, text = pair
        tokens = code_tokens(code)
        unknown = sorted({token for token in tokens if token not in source_vocab})
        if unknown or not tokens:
            raise ValueError(
                f"the code {code!r} holds no token or tokens that are not in source_vocab: {unknown[:5]}; "
                "make codes with encode(text) and vocabularies with morse_vocabs()"
            )
        unknown = sorted({char for char in text if char not in target_vocab or len(char) != 1})
        if unknown or not text:
            raise ValueError(
                f"the text {text!r} is empty or holds characters that are not in target_vocab: {unknown[:5]}; "
                "normalise it first (normalize(text): lowercase, single spaces)"
            )
        sources.append(source_vocab.encode(tokens))
        targets.append(target_vocab.encode([BOS, *text, EOS]))
    X, _ = pad_batch(sources, source_vocab.pad_index)
    y, _ = pad_batch(targets, target_vocab.pad_index)
    return X, y


def indices_to_text(indices: Iterable[int] | Tensor, target_vocab: Vocab) -> str:
    """The text of one target row ``(T,)``, e.g. a row of ``y`` or of :func:`dpdl.models.transformer.greedy_decode`.

    A ``<bos>`` at the start and ``<pad>`` are left out and reading stops at the first ``<eos>``; any other
    token that is no character (``<unk>``, a ``<bos>`` later on) shows as ``"\ufffd"``, so that a model's
    mistakes keep their positions for :func:`char_accuracy`.
    """
    if isinstance(indices, Tensor):
        if indices.dim() != 1:
            raise ValueError(f"indices_to_text takes one row (T,); got shape {tuple(indices.shape)} — loop over rows")
        indices = indices.tolist()
    indices = list(indices)
    if indices and indices[0] == target_vocab[BOS]:
        indices = indices[1:]
    eos = target_vocab[EOS]
    if eos in indices:
        indices = indices[: indices.index(eos)]
    tokens = target_vocab.decode([i for i in indices if i != target_vocab.pad_index])
    return "".join(token if len(token) == 1 else "\ufffd" for token in tokens)


def char_accuracy(predicted: Sequence[str], targets: Sequence[str]) -> float:
    """The fraction of characters right, position by position, over all pairs; missing or extra characters count wrong.

    Each pair contributes ``max(len(p), len(t))`` positions, so an empty prediction scores 0 and a
    prediction that runs on past its target is penalised.
    """
    if isinstance(predicted, str) or isinstance(targets, str):
        raise TypeError("char_accuracy takes lists of strings (one per sentence), not a single str")
    if len(predicted) != len(targets):
        raise ValueError(f"need one prediction per target; got {len(predicted)} predictions and {len(targets)} targets")
    right = sum(sum(a == b for a, b in zip(p, t)) for p, t in zip(predicted, targets))
    total = sum(max(len(p), len(t)) for p, t in zip(predicted, targets))
    return right / total if total else 1.0


# --- helpers ----------------------------------------------------------------------------------------


def _pack_words(words: list[str], max_chars: int) -> Iterable[str]:
    """Greedy chunks of consecutive words, each at most ``max_chars`` long; a longer word ends a chunk, skipped."""
    chunk: list[str] = []
    size = 0
    for word in words:
        if not word:
            continue
        if len(word) > max_chars:
            if chunk:
                yield " ".join(chunk)
            chunk, size = [], 0
            continue
        extra = len(word) + (1 if chunk else 0)
        if size + extra > max_chars:
            yield " ".join(chunk)
            chunk, size = [word], len(word)
        else:
            chunk.append(word)
            size += extra
    if chunk:
        yield " ".join(chunk)
