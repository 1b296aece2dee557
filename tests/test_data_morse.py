import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dpdl.data
from dpdl.data.morse import (
    BOS,
    EOS,
    MORSE_CODE,
    WORD_GAP,
    char_accuracy,
    code_tokens,
    decode,
    encode,
    indices_to_text,
    morse_pairs,
    morse_vocabs,
    normalize,
    pairs_to_tensors,
)
from dpdl.data.text import Vocab

SAMPLE = (
    "Supposing that Truth is a woman--what then? Is there not ground for suspecting that all philosophers, "
    "in so far as they have been dogmatists, have failed to understand women. The terrible seriousness "
    "and clumsy importunity with which they have usually paid their addresses to Truth, have been unskilled "
    "and unseemly methods for winning a woman. Certainly she has never allowed herself to be won; and at "
    "present every kind of dogma stands with sad and discouraged mien--IF, indeed, it stands at all! "
    "For there are scoffers who maintain that it has fallen, that all dogma lies on the ground. "
    "_Nay_, 1886: it is \u00e9lite & /odd/ [markup] to see \"quotes\" (and 'these') - here."
)

# Text Morse can carry: its characters in either case, spaces, tabs and newlines.
morse_text = st.text(alphabet=st.sampled_from(sorted(set("".join(MORSE_CODE) + "ABCXYZ \t\n"))), max_size=40)


# --- the table, encode, decode ------------------------------------------------------------------------


def test_the_table_gives_every_character_its_own_code_of_dots_and_dashes():
    assert len(set(MORSE_CODE.values())) == len(MORSE_CODE)
    assert all(set(code) <= {".", "-"} and 1 <= len(code) <= 7 for code in MORSE_CODE.values())
    assert MORSE_CODE["e"] == "." and MORSE_CODE["t"] == "-" and MORSE_CODE["s"] == "..." and MORSE_CODE["o"] == "---"
    assert MORSE_CODE["0"] == "-----" and MORSE_CODE["."] == ".-.-.-"
    assert WORD_GAP not in MORSE_CODE.values()


def test_encode_separates_letters_by_a_space_and_words_by_a_slash():
    assert encode("SOS now") == "... --- ... / -. --- .--"
    assert encode("  sos\n\tnow ") == "... --- ... / -. --- .--"
    assert encode("") == ""


def test_decode_reads_lowercase_text_and_skips_empty_words():
    assert decode("... --- ... / -. --- .--") == "sos now"
    assert decode("...  ---\n.../ / -.---.--".replace("-.---.--", "-. --- .--")) == "sos now"
    assert decode("") == ""


@given(morse_text)
@settings(max_examples=200, deadline=None)
def test_decode_inverts_encode_up_to_normalize(text):
    assert decode(encode(text)) == normalize(text)


@given(morse_text)
@settings(max_examples=200, deadline=None)
def test_code_tokens_align_one_token_with_each_character_of_the_text(text):
    tokens = code_tokens(encode(text))
    clean = normalize(text)
    assert len(tokens) == len(clean)
    assert all((token == WORD_GAP) == (char == " ") for token, char in zip(tokens, clean))
    assert all(token == WORD_GAP or MORSE_CODE[char] == token for token, char in zip(tokens, clean))


@given(morse_text)
@settings(max_examples=100, deadline=None)
def test_normalize_is_lowercase_single_spaced_and_idempotent(text):
    clean = normalize(text)
    assert clean == clean.lower() and "  " not in clean and clean == clean.strip()
    assert normalize(clean) == clean


def test_unencodable_characters_raise_a_clear_error_naming_them():
    with pytest.raises(ValueError, match="no Morse code for 2 character\\(s\\): '#', '\u00e9'.*errors='ignore'"):
        encode("caf\u00e9 #1")


def test_errors_ignore_strips_accents_and_drops_what_has_no_code():
    assert normalize("Caf\u00e9  #1 na\u00efve", errors="ignore") == "cafe 1 naive"
    assert decode(encode("Caf\u00e9 #1", errors="ignore")) == "cafe 1"
    with pytest.raises(ValueError, match="'strict' or 'ignore'"):
        normalize("a", errors="replace")


def test_decode_rejects_text_and_unknown_groups_saying_where():
    with pytest.raises(ValueError, match=r"only '\.', '-'.*'a'.*encode\(text\)"):
        decode("abc")
    with pytest.raises(ValueError, match=r"'\.\.\.\.\.\.\.\.' \(in word 2\) is not the Morse code"):
        decode("... / ........")
    with pytest.raises(TypeError, match="str"):
        decode(None)


# --- pairs from a text -----------------------------------------------------------------------------------


def test_pairs_are_encoded_normalised_chunks_within_the_length_range():
    splits = morse_pairs(SAMPLE, min_chars=5, max_chars=20, val_fraction=0.2, test_fraction=0.2)
    assert set(splits) == {"train", "val", "test"}
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789 .,;:?!'\"-()")
    for pairs in splits.values():
        for code, text in pairs:
            assert 5 <= len(text) <= 20 and set(text) <= allowed
            assert code == encode(text) and decode(code) == text
    texts = [text for pairs in splits.values() for _, text in pairs]
    assert any("--" in code_ for code_, _ in splits["train"])  # dashes of Morse, not of the text
    assert not any("--" in text or "_" in text or "&" in text or "/" in text for text in texts)
    assert any("elite" in text for text in texts)  # accents stripped, the word kept


def test_pairs_are_split_deterministically_by_seed_and_disjointly():
    first = morse_pairs(SAMPLE, max_chars=15, seed=3, val_fraction=0.2, test_fraction=0.2)
    again = morse_pairs(SAMPLE, max_chars=15, seed=3, val_fraction=0.2, test_fraction=0.2)
    other = morse_pairs(SAMPLE, max_chars=15, seed=4, val_fraction=0.2, test_fraction=0.2)
    assert first == again
    assert first["test"] != other["test"]
    texts = {name: {text for _, text in pairs} for name, pairs in first.items()}
    assert not (texts["train"] & texts["val"] or texts["train"] & texts["test"] or texts["val"] & texts["test"])
    n = sum(len(pairs) for pairs in first.values())
    assert len(first["test"]) == round(0.2 * n) and len(first["val"]) == round(0.2 * n)
    assert {t for pairs in first.values() for t in pairs} == {t for pairs in other.values() for t in pairs}


def test_pairs_can_all_go_to_training():
    splits = morse_pairs(SAMPLE, min_chars=30, max_chars=40, val_fraction=0, test_fraction=0)
    assert splits["val"] == [] and splits["test"] == [] and len(splits["train"]) > 3
    assert all(30 <= len(text) <= 40 for _, text in splits["train"])


def test_pairs_keep_a_repeated_chunk_once():
    splits = morse_pairs("Go on. Go on. Go on. Stop here.", val_fraction=0, test_fraction=0)
    assert sorted(text for _, text in splits["train"]) == ["go on.", "stop here."]


def test_pairs_reject_bad_arguments_with_clear_errors():
    with pytest.raises(ValueError, match="min_chars must not exceed max_chars"):
        morse_pairs(SAMPLE, min_chars=10, max_chars=5)
    with pytest.raises(ValueError, match="max_chars must be a positive int"):
        morse_pairs(SAMPLE, max_chars=0)
    with pytest.raises(ValueError, match=r"must be below 1"):
        morse_pairs(SAMPLE, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="no chunk of 200 to 300"):
        morse_pairs(SAMPLE, min_chars=200, max_chars=300)
    with pytest.raises(ValueError, match="too few to leave training pairs"):
        morse_pairs("One. Two.", val_fraction=0.4, test_fraction=0.4)
    with pytest.raises(TypeError, match="text must be a str"):
        morse_pairs(["a list"])


@pytest.mark.integration
def test_nietzsche_gives_thousands_of_pairs(data_env):
    splits = morse_pairs(max_chars=24)
    assert len(splits["train"]) > 10_000 and len(splits["test"]) > 1_000
    assert max(len(text) for pairs in splits.values() for _, text in pairs) == 24


# --- vocabularies and tensors ------------------------------------------------------------------------------


def test_vocabularies_come_from_the_table_with_pad_zero():
    source_vocab, target_vocab = morse_vocabs()
    assert len(source_vocab) == 2 + len(MORSE_CODE) + 1  # <pad>, <unk>, every code, "/"
    assert len(target_vocab) == 2 + 3 + len(MORSE_CODE)  # <pad>, <unk>, <bos>, <eos>, " ", every character
    assert source_vocab.pad_index == target_vocab.pad_index == 0
    assert all(code in source_vocab for code in MORSE_CODE.values()) and WORD_GAP in source_vocab
    assert all(char in target_vocab for char in MORSE_CODE) and {" ", BOS, EOS} <= set(target_vocab.itos)
    assert morse_vocabs()[1].itos == target_vocab.itos  # the same indices every time


def test_pairs_to_tensors_pads_batch_first_at_the_end():
    source_vocab, target_vocab = morse_vocabs()
    pairs = [(encode(t), t) for t in ["sos now", "e", "to be"]]
    X, y = pairs_to_tensors(pairs, source_vocab, target_vocab)
    assert X.dtype == y.dtype == torch.int64
    assert X.shape == (3, 7) and y.shape == (3, 9)
    assert (X != 0).sum(1).tolist() == [7, 1, 5]  # one source token per character
    assert (y != 0).sum(1).tolist() == [9, 3, 7]  # <bos>, characters, <eos>
    assert X[1, 1:].eq(0).all() and y[1, 3:].eq(0).all()
    assert y[:, 0].eq(target_vocab[BOS]).all()
    assert y[0, -1] == target_vocab[EOS] and y[1, 2] == target_vocab[EOS]
    assert source_vocab.decode(X[2, :5]) == ["-", "---", "/", "-...", "."]


@given(st.lists(morse_text.map(normalize).filter(bool), min_size=1, max_size=6))
@settings(max_examples=100, deadline=None)
def test_indices_to_text_recovers_every_text_from_its_padded_row(texts):
    source_vocab, target_vocab = morse_vocabs()
    X, y = pairs_to_tensors([(encode(t), t) for t in texts], source_vocab, target_vocab)
    assert [indices_to_text(row, target_vocab) for row in y] == texts
    assert [indices_to_text(row, target_vocab) for row in y[:, 1:]] == texts  # without <bos> too
    assert [(row != 0).sum().item() for row in X] == [len(t) for t in texts]


def test_indices_to_text_stops_at_the_first_eos_and_marks_non_characters():
    _, target_vocab = morse_vocabs()
    bos, eos, pad, unk = target_vocab[BOS], target_vocab[EOS], target_vocab.pad_index, target_vocab.unk_index
    a, b = target_vocab["a"], target_vocab["b"]
    assert indices_to_text([bos, a, b, eos, a, a], target_vocab) == "ab"
    assert indices_to_text(torch.tensor([bos, a, b, eos, pad, pad]), target_vocab) == "ab"
    assert indices_to_text([bos, a, unk, bos, b], target_vocab) == "a\ufffd\ufffdb"  # no <eos>: read to the end
    assert indices_to_text([eos, a], target_vocab) == ""
    with pytest.raises(ValueError, match="one row"):
        indices_to_text(torch.zeros(2, 3, dtype=torch.long), target_vocab)


def test_pairs_to_tensors_rejects_what_the_vocabularies_cannot_hold():
    source_vocab, target_vocab = morse_vocabs()
    with pytest.raises(ValueError, match=r"not in source_vocab: \['\.\.\.\.\.\.\.\.'\]"):
        pairs_to_tensors([("........", "x")], source_vocab, target_vocab)
    with pytest.raises(ValueError, match=r"not in target_vocab: \['O', 'S'\].*normalize"):
        pairs_to_tensors([(encode("sos"), "SOS")], source_vocab, target_vocab)
    with pytest.raises(ValueError, match="tuples of two str"):
        pairs_to_tensors([encode("sos")], source_vocab, target_vocab)
    with pytest.raises(ValueError, match="at least one"):
        pairs_to_tensors([], source_vocab, target_vocab)
    assert isinstance(source_vocab, Vocab)


# --- scoring --------------------------------------------------------------------------------------------------


def test_char_accuracy_counts_positions_and_penalises_missing_and_extra_characters():
    assert char_accuracy(["abc"], ["abc"]) == 1.0
    assert char_accuracy(["abd"], ["abc"]) == pytest.approx(2 / 3)
    assert char_accuracy([""], ["abc"]) == 0.0
    assert char_accuracy(["abcdef"], ["abc"]) == 0.5  # 3 right of max(6, 3) positions
    assert char_accuracy(["ab", "xy"], ["ab", "zy"]) == 0.75  # pooled over characters
    assert char_accuracy(["bc"], ["abc"]) == 0.0  # a dropped first letter shifts everything


def test_char_accuracy_rejects_a_single_string_or_unequal_lists():
    with pytest.raises(TypeError, match="lists of strings"):
        char_accuracy("abc", "abc")
    with pytest.raises(ValueError, match="one prediction per target"):
        char_accuracy(["a"], ["a", "b"])


def test_morse_loaders_are_exported_lazily_from_dpdl_data():
    assert dpdl.data.morse_pairs is morse_pairs and dpdl.data.morse_vocabs is morse_vocabs
    assert {"morse_pairs", "morse_vocabs"} <= set(dir(dpdl.data))
