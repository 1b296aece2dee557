import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dpdl.data.text import (
    BucketLoader,
    GloVe,
    TextSplit,
    UnknownWordError,
    Vocab,
    glove,
    imdb,
    nietzsche_text,
    pad_batch,
    tokenize,
)


@pytest.fixture
def vectors(data_env) -> GloVe:
    return glove()


# --- Nietzsche ------------------------------------------------------------------------------------


@pytest.mark.integration
def test_nietzsche_is_the_keras_corpus_of_600893_characters(data_env):
    text = nietzsche_text()
    assert isinstance(text, str) and len(text) == 600893
    assert text.startswith("PREFACE\n\n\nSUPPOSING that Truth is a woman")
    assert "\r" not in text and len(set(text)) < 100


# --- GloVe ------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_glove_holds_50000_words_most_frequent_first_with_50d_float32_vectors(vectors):
    assert len(vectors) == len(vectors.words) == len(vectors.index) == 50000
    assert vectors.vectors.shape == (50000, 50) and vectors.vectors.dtype == torch.float32
    assert vectors.words[:4] == ["the", ",", ".", "of"]
    assert vectors.index["queen"] == vectors.words.index("queen")
    assert vectors.vector("the")[0].item() == pytest.approx(0.418)  # the first number in the file
    assert "queen" in vectors and "Queen" not in vectors
    assert glove() is vectors  # loaded once per process


@pytest.mark.integration
def test_king_minus_man_plus_woman_is_queen_then_throne_then_prince(vectors):
    answer = vectors.analogy("man", "king", "woman", k=3)
    assert [word for word, _ in answer] == ["queen", "throne", "prince"]
    assert [cosine for _, cosine in answer] == pytest.approx([0.852, 0.766, 0.759], abs=1e-3)


def test_analogy_adds_unit_length_vectors_as_3cosadd_does():
    # "b" is long: with raw vectors b - a + c points almost along b, and "near_b" would win.
    words = ["a", "b", "c", "near_b", "near_sum"]
    directions = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-0.2, 1.0, 0.2], [-1.0, 1.0, 1.0]])
    lengths = torch.tensor([1.0, 10.0, 1.0, 1.0, 1.0])
    small = GloVe(words, directions * lengths[:, None])
    (best, cosine), _ = small.analogy("a", "b", "c", k=2)
    assert best == "near_sum" and cosine == pytest.approx(1.0, abs=1e-6)
    raw_query = small.vector("b") - small.vector("a") + small.vector("c")
    assert small.nearest(raw_query, k=1, exclude=("a", "b", "c"))[0][0] == "near_b"  # what raw vectors give


@pytest.mark.integration
def test_nearest_leaves_out_the_query_word_and_scores_are_cosines(vectors):
    answer = vectors.nearest("frog", k=5)
    words = [word for word, _ in answer]
    assert "frog" not in words and {"toad", "snake"} <= set(words)
    scores = [score for _, score in answer]
    assert scores == sorted(scores, reverse=True)
    for word, score in answer:
        expected = F.cosine_similarity(vectors.vector("frog"), vectors.vector(word), dim=0).item()
        assert score == pytest.approx(expected, abs=1e-5)


@pytest.mark.integration
def test_nearest_to_a_vector_includes_its_own_word_unless_excluded(vectors):
    (best, score), *_ = vectors.nearest(vectors.vector("paris"), k=3)
    assert best == "paris" and score == pytest.approx(1.0, abs=1e-5)
    words = [word for word, _ in vectors.nearest(vectors.vector("paris"), k=3, exclude=["paris", "france"])]
    assert "paris" not in words and "france" not in words


@pytest.mark.integration
def test_unknown_words_raise_a_key_error_that_suggests_lowercase(vectors):
    with pytest.raises(KeyError) as caught:
        vectors.vector("Paris")
    assert isinstance(caught.value, UnknownWordError)
    assert "try 'paris'" in str(caught.value)
    with pytest.raises(UnknownWordError, match="not among the 50000 GloVe words"):
        vectors.analogy("man", "king", "xyzzyqx")


@pytest.mark.integration
def test_bad_queries_are_errors(vectors):
    with pytest.raises(ValueError, match="shape \\(50,\\)"):
        vectors.nearest(torch.zeros(3))
    with pytest.raises(ValueError, match="k must be a positive int"):
        vectors.nearest("king", k=0)


def test_glove_works_on_a_small_vocabulary_too():
    small = GloVe(["a", "b", "c"], torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]))
    assert repr(small) == "GloVe(3 words, dim=2)"
    with pytest.raises(TypeError, match="words are strings"):
        small.vector(0)
    assert [word for word, _ in small.nearest("a", k=5)] == ["b", "c"]
    assert small.analogy("a", "b", "c", k=1) == []  # every word is part of the question
    with pytest.raises(ValueError, match="one vector per word"):
        GloVe(["a"], torch.zeros(2, 2))


# --- IMDB -------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_imdb_splits_have_the_requested_sizes_and_equal_labels(data_env):
    splits = imdb()
    assert set(splits) == {"train", "val", "test"}
    assert {name: len(split) for name, split in splits.items()} == {"train": 7000, "val": 1000, "test": 2000}
    for split in splits.values():
        assert isinstance(split, TextSplit) and split.labels.dtype == torch.int64
        assert torch.bincount(split.labels).tolist() == [len(split) // 2] * 2
        assert split.label_names == ("negative", "positive")
    assert repr(splits["val"]) == "TextSplit(1000 texts: 500 negative, 500 positive)"
    text, label = splits["train"][0]
    assert isinstance(text, str) and label in (0, 1)


@pytest.mark.integration
def test_imdb_splits_are_disjoint_and_cover_all_reviews(data_env):
    splits = imdb(seed=3, val_fraction=0.15, test_fraction=0.25)
    ids = [set(split.ids.tolist()) for split in splits.values()]
    assert sum(len(s) for s in ids) == 10000 and set.union(*ids) == set(range(10000))
    assert len(splits["val"]) == 1500 and len(splits["test"]) == 2500


@pytest.mark.integration
def test_imdb_same_seed_same_split_other_seed_other_split(data_env):
    first, again, other = imdb(seed=0), imdb(seed=0), imdb(seed=1)
    assert first["test"].texts == again["test"].texts and torch.equal(first["test"].labels, again["test"].labels)
    assert set(first["test"].ids.tolist()) != set(other["test"].ids.tolist())


@pytest.mark.integration
def test_imdb_labels_match_the_words_of_the_reviews(data_env):
    train = imdb()["train"]
    praise = torch.tensor(["excellent" in text.lower() for text in train.texts])
    # reviews saying "excellent" are mostly positive; a shuffled label column would give about 50 %
    assert train.labels[praise].float().mean() > 0.7


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"val_fraction": -0.1}, "val_fraction must be"),
        ({"test_fraction": 1.0}, "test_fraction must be"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "below 1"),
    ],
)
def test_imdb_rejects_fractions_that_leave_no_training_data(kwargs, message):
    with pytest.raises(ValueError, match=message):
        imdb(**kwargs)


# --- tokenize, Vocab, pad_batch ------------------------------------------------------------------------


def test_tokenize_lowercases_drops_line_breaks_and_splits_punctuation():
    assert tokenize("Don't go!<br /><br />It's 10/10, isn't it?") == [
        "don't",
        "go",
        "!",
        "it's",
        "10",
        "/",
        "10",
        ",",
        "isn't",
        "it",
        "?",
    ]
    assert tokenize("Café au lait...") == ["café", "au", "lait", ".", ".", "."]
    with pytest.raises(TypeError, match="one str"):
        tokenize(["not", "a", "string"])


pieces = st.sampled_from(["<br />", "Don't", "it's", "Éa", "x_1", " ", "\n", "\t", "!", "'", ".", "10", "/", "<", "br"])


@settings(max_examples=50, deadline=None)
@given(st.lists(pieces, max_size=20).map("".join))
def test_tokenize_keeps_every_non_space_character(text):
    tokens = tokenize(text)
    assert all(token and not any(c.isspace() for c in token) for token in tokens)
    assert "".join(tokens) == "".join(c for c in text.lower().replace("<br />", " ") if not c.isspace())


def test_vocab_puts_pad_and_unk_first_then_tokens_by_frequency():
    vocab = Vocab([["b", "a", "b"], ["c", "a", "b"], ["d"]])
    assert vocab.itos == ["<pad>", "<unk>", "b", "a", "c", "d"]  # ties keep their first appearance
    assert len(vocab) == 6 and vocab["b"] == 2 and vocab["zebra"] == 1
    assert "a" in vocab and "zebra" not in vocab
    assert vocab.encode(["a", "zebra", "<pad>"]) == [3, 1, 0]
    assert vocab.decode(torch.tensor([2, 3, 1])) == ["b", "a", "<unk>"]
    assert repr(vocab) == "Vocab(6 tokens: ['<pad>', '<unk>', 'b', 'a', 'c', 'd']...)"


def test_vocab_min_freq_and_max_size_send_rare_tokens_to_unk():
    token_lists = [["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]]
    assert Vocab(token_lists, min_freq=2).itos == ["<pad>", "<unk>", "a", "b", "c"]
    assert Vocab(token_lists, max_size=4).itos == ["<pad>", "<unk>", "a", "b"]
    assert Vocab(token_lists, min_freq=3, max_size=10).encode(["c", "b"]) == [1, 3]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.sampled_from(list("abcdefgh")), max_size=10), max_size=6))
def test_vocab_decode_inverts_encode_for_every_training_token(token_lists):
    vocab = Vocab(token_lists)
    for tokens in token_lists:
        assert vocab.decode(vocab.encode(tokens)) == tokens
    assert len(vocab) == 2 + len({token for tokens in token_lists for token in tokens})


def test_vocab_rejects_strings_where_token_lists_belong():
    with pytest.raises(TypeError, match="tokenize"):
        Vocab(["a whole sentence"])
    with pytest.raises(TypeError, match="tokenize"):
        Vocab([["a"]]).encode("a whole sentence")
    with pytest.raises(IndexError, match="outside this vocabulary of 3"):
        Vocab([["a"]]).decode([7])
    with pytest.raises(ValueError, match="max_size"):
        Vocab([["a"]], max_size=1)
    with pytest.raises(ValueError, match="min_freq"):
        Vocab([["a"]], min_freq=0)


def test_pad_batch_pads_at_the_end_and_returns_lengths():
    padded, lengths = pad_batch([[5, 6, 7], [8], torch.tensor([9, 10])], pad_index=0)
    assert padded.dtype == torch.int64 and padded.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert lengths.tolist() == [3, 1, 2]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(2, 50), min_size=1, max_size=12), min_size=1, max_size=8), st.integers(0, 1))
def test_pad_batch_keeps_each_sequence_and_fills_the_rest(sequences, pad_index):
    padded, lengths = pad_batch(sequences, pad_index=pad_index)
    assert padded.shape == (len(sequences), max(map(len, sequences)))
    for row, length, sequence in zip(padded, lengths, sequences):
        assert row[:length].tolist() == sequence
        assert (row[length:] == pad_index).all()


def test_pad_batch_rejects_empty_or_nested_input():
    with pytest.raises(ValueError, match="at least one"):
        pad_batch([])
    with pytest.raises(ValueError, match="1-D"):
        pad_batch([[[1, 2]], [[3, 4]]])


# --- BucketLoader ------------------------------------------------------------------------------------


def _sequences(n: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 40, (n,), generator=g).tolist()
    return [torch.randint(1, 30, (length,), generator=g).tolist() for length in lengths]


def test_bucket_loader_yields_every_example_once_padded_at_the_end_with_its_label():
    sequences = _sequences(103)
    labels = torch.arange(103)  # label = row number, to find each example again
    loader = BucketLoader(sequences, labels, batch_size=10, shuffle=True, generator=0)
    seen = []
    for X, y in loader:
        assert X.dtype == torch.int64 and X.shape[0] == y.shape[0] <= 10
        lengths = (X != 0).sum(1)
        assert lengths.max() == X.shape[1]  # padded to the batch's longest sequence only
        for row, length, label in zip(X, lengths, y.tolist()):
            assert row[:length].tolist() == sequences[label] and (row[length:] == 0).all()
        seen.extend(y.tolist())
    assert sorted(seen) == list(range(103)) and len(loader) == 11
    assert loader.order.tolist() == seen  # the order of the last pass


def test_bucketing_cuts_padding_compared_with_random_batches():
    sequences = _sequences(2000)
    labels = torch.zeros(2000, dtype=torch.long)

    def padded_cells(bucket_batches):
        loader = BucketLoader(sequences, labels, 32, shuffle=True, bucket_batches=bucket_batches, generator=1)
        return sum(X.numel() for X, _ in loader)

    real = sum(map(len, sequences))
    assert padded_cells(50) < 1.1 * real < 1.5 * real < padded_cells(1)


def test_bucket_loader_without_shuffle_sorts_by_length_and_repeats_itself():
    sequences = _sequences(50)
    loader = BucketLoader(sequences, torch.zeros(50, dtype=torch.long), batch_size=8)
    widths = [X.shape[1] for X, _ in loader]
    assert widths == sorted(widths) and widths == [X.shape[1] for X, _ in loader]
    assert [len(sequences[i]) for i in loader.order.tolist()] == sorted(map(len, sequences))


def test_bucket_loader_shuffles_each_pass_reproducibly_from_its_seed():
    sequences, labels = _sequences(200), torch.arange(200)

    def two_passes(seed):
        loader = BucketLoader(sequences, labels, batch_size=16, shuffle=True, bucket_batches=4, generator=seed)
        return [torch.cat([y for _, y in loader]).tolist() for _ in range(2)]

    first, second = two_passes(0)
    assert first != second and two_passes(0) == [first, second] and two_passes(1) != [first, second]


@pytest.mark.parametrize(
    "sequences, labels, kwargs, error, message",
    [
        ([[1, 2], [3]], [0], {}, ValueError, "one label per sequence"),
        ([[1, 2], []], [0, 1], {}, ValueError, "non-empty"),
        ([[1, 0, 2]], [0], {}, ValueError, "holds the pad index 0"),
        ([[1, 2]], [0], {"batch_size": 0}, ValueError, "batch_size"),
        ([[1, 2]], [0], {"bucket_batches": 0}, ValueError, "bucket_batches"),
        ([], [], {}, ValueError, "at least one"),
    ],
)
def test_bucket_loader_rejects_bad_input_with_a_reason(sequences, labels, kwargs, error, message):
    with pytest.raises(error, match=message):
        BucketLoader(sequences, labels, **kwargs)
