"""fastembed.text.Vocabulary and pad_sequences against Keras' Tokenizer semantics (written out
by hand: Keras itself is not a dependency)."""

import json

import numpy as np
import pytest
from fastembed.text import Vocabulary, pad_sequences


def test_seed_example():
    vocab = Vocabulary.from_texts(["This is a text", "This is not a text"])
    assert vocab.word_index == {"this": 1, "is": 2, "a": 3, "text": 4, "not": 5}
    padded = pad_sequences(vocab.texts_to_sequences(["This is a text"]), maxlen=6)
    assert padded.tolist() == [[0, 0, 1, 2, 3, 4]]
    assert padded.dtype == np.int32
    assert len(vocab) == 6


def test_ids_by_descending_count_ties_by_first_occurrence():
    vocab = Vocabulary.from_texts(["b a c", "c d c", "a"])
    # counts: b 1, a 2, c 3, d 1 -> c, a, then b before d (b came first)
    assert vocab.word_counts == {"b": 1, "a": 2, "c": 3, "d": 1}
    assert list(vocab.word_counts) == ["b", "a", "c", "d"]
    assert vocab.word_index == {"c": 1, "a": 2, "b": 3, "d": 4}
    assert vocab.index_word == {1: "c", 2: "a", 3: "b", 4: "d"}


def test_filters_lower_and_split():
    vocab = Vocabulary.from_texts(["Hello, World!  hello\tworld's"])
    assert vocab.word_counts == {"hello": 2, "world": 1, "world's": 1}
    raw = Vocabulary.from_texts(["A-b A-b"], lower=False, filters="", split="-")
    assert raw.word_counts == {"A": 1, "b A": 1, "b": 1}
    tokens = Vocabulary.from_texts([["Already", "split"], ["split"]])
    assert tokens.word_index == {"split": 1, "already": 2}


def test_unknown_words_dropped_or_oov():
    vocab = Vocabulary.from_texts(["a b b"])
    assert vocab.texts_to_sequences(["b z a"]) == [[1, 2]]
    with_oov = Vocabulary.from_texts(["a b b"], oov_token="<unk>")
    assert with_oov.word_index == {"<unk>": 1, "b": 2, "a": 3}
    assert with_oov.texts_to_sequences(["b z a"]) == [[2, 1, 3]]
    assert len(with_oov) == 4


def test_num_words_as_keras():
    texts = ["a a a b b c", "d"]
    vocab = Vocabulary.from_texts(texts, num_words=3)
    assert len(vocab.word_index) == 4  # Keras keeps every word in word_index
    assert vocab.texts_to_sequences(["a b c d"]) == [[1, 2]]
    assert len(vocab) == 3
    assert vocab.sequences_to_texts([[1, 2, 3, 4]]) == ["a b"]
    oov = Vocabulary.from_texts(texts, num_words=3, oov_token="?")
    assert oov.texts_to_sequences(["a b c d z"]) == [[2, 1, 1, 1, 1]]
    assert oov.sequences_to_texts([[2, 3, 4, 0]]) == ["a ? ? ?"]
    assert len(oov) == 3


def test_min_count():
    vocab = Vocabulary.from_texts(["a a b c c c"], min_count=2)
    assert vocab.word_index == {"c": 1, "a": 2}
    assert vocab.word_counts == {"a": 2, "b": 1, "c": 3}
    assert vocab.texts_to_sequences(["a b c"]) == [[2, 1]]


def test_len_is_enough_for_an_embedding():
    import fastembed

    texts = ["the cat sat on the mat", "the dog"]
    for options in (
        {},
        {"num_words": 4},
        {"oov_token": "<unk>"},
        {"num_words": 2, "oov_token": "x"},
    ):
        vocab = Vocabulary.from_texts(texts, **options)
        sequences = vocab.texts_to_sequences(texts + ["unseen words here"])
        emitted = max(i for s in sequences for i in s)
        assert len(vocab) == emitted + 1, options
        emb = fastembed.Embedding(len(vocab), 3, seed=0)
        emb(pad_sequences(sequences))


def test_empty_vocabulary():
    vocab = Vocabulary.from_texts(["", "!!!"])
    assert vocab.word_index == {} and len(vocab) == 1
    assert vocab.texts_to_sequences(["a"]) == [[]]


def test_sequences_to_texts_round_trip():
    texts = ["the cat sat on the mat", "a dog"]
    vocab = Vocabulary.from_texts(texts)
    assert vocab.sequences_to_texts(vocab.texts_to_sequences(texts)) == texts
    assert vocab.sequences_to_texts([np.array([0, 1, 99])]) == ["the"]


def test_save_load(tmp_path):
    vocab = Vocabulary.from_texts(
        ["Ünïcode wörds, and words", "words"], num_words=3, oov_token="<unk>", min_count=1
    )
    path = tmp_path / "vocab.json"
    vocab.save(path)
    json.loads(path.read_text(encoding="utf-8"))  # plain JSON
    loaded = Vocabulary.load(path)
    assert loaded.word_index == vocab.word_index
    assert list(loaded.word_counts.items()) == list(vocab.word_counts.items())
    assert loaded.index_word == vocab.index_word
    assert len(loaded) == len(vocab)
    assert loaded.texts_to_sequences(["words ünïcode zzz"]) == vocab.texts_to_sequences(
        ["words ünïcode zzz"]
    )


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a Vocabulary"):
        Vocabulary.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a Vocabulary"):
        Vocabulary.load(path)


def test_bad_options():
    with pytest.raises(ValueError, match="split"):
        Vocabulary.from_texts(["a"], split="")
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.from_texts(["a"], min_count=0)
    with pytest.raises(TypeError, match="num_words"):
        Vocabulary.from_texts(["a"], num_words=2.5)
    with pytest.raises(TypeError, match="text"):
        Vocabulary.from_texts([3])
    with pytest.raises(TypeError, match="list of texts"):
        Vocabulary.from_texts("one text")
    with pytest.raises(TypeError, match="list of texts"):
        Vocabulary.from_texts(["a"]).texts_to_sequences("a")


def test_pad_sequences_as_keras():
    seqs = [[1, 2, 3], [4], [], [5, 6, 7, 8, 9]]
    assert pad_sequences(seqs).tolist() == [
        [0, 0, 1, 2, 3],
        [0, 0, 0, 0, 4],
        [0, 0, 0, 0, 0],
        [5, 6, 7, 8, 9],
    ]
    assert pad_sequences(seqs, maxlen=3, padding="post", truncating="post").tolist() == [
        [1, 2, 3],
        [4, 0, 0],
        [0, 0, 0],
        [5, 6, 7],
    ]
    assert pad_sequences(seqs, maxlen=2).tolist() == [[2, 3], [0, 4], [0, 0], [8, 9]]
    out = pad_sequences([[1.5, 2.5]], maxlen=3, dtype="float32", value=-1.0)
    assert out.dtype == np.float32 and out.tolist() == [[-1.0, 1.5, 2.5]]
    assert pad_sequences([[1, 2]], maxlen=0).shape == (1, 0)
    assert pad_sequences([]).shape == (0, 0)
    nested = pad_sequences([[[1, 2]], [[3, 4], [5, 6]]])
    assert nested.shape == (2, 2, 2) and nested[0].tolist() == [[0, 0], [1, 2]]


def test_pad_sequences_bad_arguments():
    with pytest.raises(ValueError, match="Padding"):
        pad_sequences([[1]], padding="middle")
    with pytest.raises(ValueError, match="Truncating"):
        pad_sequences([[1]], truncating="middle")
    with pytest.raises(ValueError, match="sequences"):
        pad_sequences([1, 2])
    with pytest.raises(ValueError, match="maxlen"):
        pad_sequences([[1]], maxlen=-1)
    with pytest.raises(ValueError, match="str"):
        pad_sequences([[1]], value="x")
