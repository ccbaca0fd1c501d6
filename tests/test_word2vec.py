"""Word2Vec: the training step against a plain NumPy reference, known answers on generated text,
bitwise determinism across thread counts, the vocabulary against a plain count (and gensim's),
persistence, progress output and bad arguments."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import RUN_SLOW
from fastembed import _core
from fastembed.text import Word2Vec, WordVectors


def group_corpus(groups: int, words_per_group: int, sentences: int, length: int, seed: int = 0):
    """Sentences of `length` words, each drawn from one group only: words of a group co-occur,
    words of different groups never do."""
    rng = np.random.default_rng(seed)
    corpus = []
    for _ in range(sentences):
        g = int(rng.integers(groups))
        corpus.append([f"g{g}w{int(w)}" for w in rng.integers(words_per_group, size=length)])
    return corpus


def zipf_corpus(vocab: int, sentences: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [
        [f"w{int(w)}" for w in rng.zipf(1.3, size=int(rng.integers(1, 40))) % vocab]
        for _ in range(sentences)
    ]


def nearest(vectors: np.ndarray, row: int) -> int:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit[row]
    similarity[row] = -np.inf
    return int(np.argmax(similarity))


# ---------------------------------------------------------------- the step, against NumPy


def _table_sigmoid(x: float) -> float:
    # The tabulated sigmoid of word2vec.c and gensim: 1000 slots on (-6, 6), 0 / 1 beyond.
    if x <= -6:
        return 0.0
    if x >= 6:
        return 1.0
    slot = int((x + 6) * (1000 / 6 / 2))
    return 1 / (1 + np.exp(-((slot / 1000 * 2 - 1) * 6)))


def _reference_batches(syn0, syn1, ids, bounds, sg, negative, noise, alpha, batch_words):
    """window=1 (every reach is 1), no subsampling, every negative is `noise`: then nothing is
    random, and each batch is: all examples from the tables at its start, then the sums."""
    syn0 = syn0.astype(np.float64)
    syn1 = syn1.astype(np.float64)
    sentence_of = np.searchsorted(bounds, np.arange(len(ids)), side="right") - 1
    for begin in range(0, len(ids), batch_words):
        d0 = np.zeros_like(syn0)
        d1 = np.zeros_like(syn1)
        for i in range(begin, min(begin + batch_words, len(ids))):
            s = sentence_of[i]
            context = [j for j in (i - 1, i + 1) if bounds[s] <= j < bounds[s + 1]]
            if not context:
                continue
            inputs = [[j] for j in context] if sg else [context]
            for rows in inputs:
                h = syn0[ids[rows]].mean(axis=0)
                error = np.zeros(syn0.shape[1])
                targets = [(ids[i], 1.0)] + [(noise, 0.0)] * negative
                for k, (t, label) in enumerate(targets):
                    if k > 0 and t == ids[i]:
                        continue
                    g = (label - _table_sigmoid(float(h @ syn1[t]))) * alpha
                    error += g * syn1[t]
                    d1[t] += g * h
                for j in rows:
                    d0[ids[j]] += error
        syn0 += d0
        syn1 += d1
    return syn0, syn1


@pytest.mark.parametrize("sg", [1, 0])
@pytest.mark.parametrize("batch_words", [1, 7, 64])
def test_step_matches_numpy_reference(sg, batch_words):
    rng = np.random.default_rng(5)
    vocab, dim, negative, noise, alpha = 12, 8, 3, 4, 0.05
    ids = rng.integers(vocab, size=90).astype(np.int32)
    bounds = np.array([0, 1, 30, 30, 61, 90], dtype=np.int64)
    syn0 = (rng.random((vocab, dim), dtype=np.float32) - 0.5) * 2
    syn1 = (rng.random((vocab, dim), dtype=np.float32) - 0.5) * 2
    weights = np.zeros(vocab)
    weights[noise] = 1.0
    expected0, expected1 = _reference_batches(
        syn0, syn1, ids, bounds, sg, negative, noise, alpha, batch_words
    )
    batches = -(-len(ids) // batch_words)
    loss, examples, kept = _core.word2vec_train_batches(
        syn0, syn1, ids, bounds, np.ones(vocab), weights, skip_gram=bool(sg), window=1,
        negative=negative, seed=3, alpha=alpha, min_alpha=alpha, epochs=1,
        batch_words=batch_words, epoch=0, first_batch=0, last_batch=batches,
    )  # fmt: skip
    assert kept == len(ids)
    lengths = [n for n in np.diff(bounds) if n > 1]
    assert examples == (sum(2 * (n - 1) for n in lengths) if sg else sum(lengths))
    assert loss > 0
    np.testing.assert_allclose(syn0, expected0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(syn1, expected1, rtol=1e-4, atol=1e-5)


def test_batches_split_across_calls_give_the_same_tables():
    rng = np.random.default_rng(1)
    ids = rng.integers(50, size=3000).astype(np.int32)
    bounds = np.array([0, 700, 701, 2000, 3000], dtype=np.int64)
    args = (np.full(50, 0.7), rng.random(50) + 0.1)
    options = dict(skip_gram=True, window=4, negative=4, seed=9, alpha=0.05, min_alpha=0.001,
                   epochs=2, batch_words=100)  # fmt: skip
    tables = []
    for cuts in ([0, 30], [0, 1, 2, 17, 29, 30]):
        syn0 = np.random.default_rng(2).random((50, 16), dtype=np.float32) - 0.5
        syn1 = np.zeros_like(syn0)
        for first, last in zip(cuts, cuts[1:]):
            _core.word2vec_train_batches(syn0, syn1, ids, bounds, *args, **options, epoch=1,
                                         first_batch=first, last_batch=last)  # fmt: skip
        tables.append((syn0, syn1))
    assert tables[0][0].tobytes() == tables[1][0].tobytes()
    assert tables[0][1].tobytes() == tables[1][1].tobytes()


# ---------------------------------------------------------------- known answers


@pytest.mark.parametrize("sg", [1, 0])
def test_words_that_only_co_occur_are_nearest_neighbours(sg):
    corpus = group_corpus(groups=12, words_per_group=4, sentences=1500, length=8)
    model = Word2Vec(vector_size=24, window=3, min_count=1, sample=0, epochs=5, sg=sg, seed=2)
    model.train(corpus, progress=False)
    wv = model.wv
    assert len(wv) == 48
    for row, word in enumerate(wv.index_to_key):
        neighbour = wv.index_to_key[nearest(wv.vectors, row)]
        assert neighbour.split("w")[0] == word.split("w")[0], (word, neighbour)


def test_training_lowers_the_loss_and_moves_only_trained_tables():
    corpus = zipf_corpus(vocab=300, sentences=400)
    model = Word2Vec(vector_size=16, min_count=2, epochs=1, sg=1, seed=4)
    model.train(corpus, progress=False)
    assert isinstance(model.wv, WordVectors)
    assert model.wv.vectors.dtype == np.float32
    assert model.wv.vectors.shape == (len(model.wv), 16)
    assert model.syn1neg.shape == model.wv.vectors.shape
    assert np.isfinite(model.wv.vectors).all() and np.abs(model.syn1neg).sum() > 0


# ---------------------------------------------------------------- determinism


def test_bitwise_identical_for_1_2_and_8_threads():
    corpus = zipf_corpus(vocab=2000, sentences=1500, seed=3)
    results = []
    for workers in (1, 2, 8):
        for sg in (1, 0):
            model = Word2Vec(vector_size=48, min_count=2, epochs=2, sg=sg, seed=7, workers=workers)
            model.train(corpus, progress=False)
            results.append((sg, model.wv.vectors.tobytes(), model.syn1neg.tobytes()))
    for sg in (1, 0):
        same_sg = [r for r in results if r[0] == sg]
        assert all(r == same_sg[0] for r in same_sg)


def test_seed_changes_the_vectors():
    corpus = zipf_corpus(vocab=200, sentences=200)
    a = Word2Vec(vector_size=8, min_count=1, epochs=1, seed=1).train(corpus, progress=False)
    b = Word2Vec(vector_size=8, min_count=1, epochs=1, seed=2).train(corpus, progress=False)
    assert not np.array_equal(a.wv.vectors, b.wv.vectors)


# ---------------------------------------------------------------- vocabulary and input


def test_vocabulary_counts_match_a_plain_count():
    corpus = zipf_corpus(vocab=500, sentences=300, seed=5)
    counts = Counter(word for sentence in corpus for word in sentence)
    model = Word2Vec(vector_size=4, min_count=3, epochs=1).train(corpus, progress=False)
    expected = {word: count for word, count in counts.items() if count >= 3}
    assert dict(zip(model.wv.index_to_key, model.counts.tolist())) == expected
    assert list(model.counts) == sorted(model.counts, reverse=True)
    assert model.corpus_total_words == sum(counts.values())


def test_max_final_vocab_and_min_count_as_gensim():
    gensim = pytest.importorskip("gensim")
    corpus = zipf_corpus(vocab=400, sentences=300, seed=6)
    for min_count, max_final_vocab in ((1, 50), (5, 30), (2, None), (3, 10_000)):
        ours = Word2Vec(
            vector_size=4, min_count=min_count, max_final_vocab=max_final_vocab, epochs=1
        )
        ours.train(corpus, progress=False)
        theirs = gensim.models.Word2Vec(
            vector_size=4, min_count=min_count, max_final_vocab=max_final_vocab
        )
        theirs.build_vocab(corpus)
        expected = {w: theirs.wv.get_vecattr(w, "count") for w in theirs.wv.index_to_key}
        assert dict(zip(ours.wv.index_to_key, ours.counts.tolist())) == expected


def test_corpus_file_equals_sentences_and_long_lines_are_cut(tmp_path):
    rng = np.random.default_rng(8)
    long_line = [f"w{int(w)}" for w in rng.integers(30, size=25_000)]
    short = [["a", "b", "w1"], ["w2", "a"]] * 50
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(" ".join(s) for s in [long_line, *short]) + "\n\n", encoding="utf-8")
    options = dict(vector_size=8, min_count=1, window=2, epochs=1, seed=3)
    from_file = Word2Vec(**options).train(corpus_file=path, progress=False)
    pieces = [long_line[:10_000], long_line[10_000:20_000], long_line[20_000:]]
    from_pieces = Word2Vec(**options).train([*pieces, *short], progress=False)
    from_sentences = Word2Vec(**options).train([long_line, *short], progress=False)
    assert from_file.wv.index_to_key == from_pieces.wv.index_to_key
    assert from_file.wv.vectors.tobytes() == from_pieces.wv.vectors.tobytes()
    assert from_file.wv.vectors.tobytes() == from_sentences.wv.vectors.tobytes()
    assert from_file.corpus_total_words == 25_000 + 250


def test_generator_input_and_out_of_vocabulary_words():
    corpus = zipf_corpus(vocab=100, sentences=200)
    listed = Word2Vec(vector_size=8, min_count=3, epochs=1).train(corpus, progress=False)
    generated = Word2Vec(vector_size=8, min_count=3, epochs=1).train(
        (s for s in corpus), progress=False
    )
    assert listed.wv.vectors.tobytes() == generated.wv.vectors.tobytes()
    assert all(count >= 3 for count in listed.counts)


# ---------------------------------------------------------------- persistence


def test_save_load_round_trip_and_continued_training(tmp_path):
    corpus = zipf_corpus(vocab=300, sentences=300, seed=2)
    model = Word2Vec(
        vector_size=12, min_count=2, epochs=2, sg=1, seed=5, workers=2, max_final_vocab=100
    )
    model.train(corpus, progress=False)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = Word2Vec.load(path)
    assert loaded.wv.index_to_key == model.wv.index_to_key
    assert loaded.wv.vectors.tobytes() == model.wv.vectors.tobytes()
    assert loaded.syn1neg.tobytes() == model.syn1neg.tobytes()
    assert np.array_equal(loaded.counts, model.counts)
    for name in ("vector_size", "window", "min_count", "negative", "sample", "alpha", "min_alpha",
                 "epochs", "sg", "seed", "workers", "max_final_vocab", "batch_words",
                 "corpus_total_words", "epochs_trained"):  # fmt: skip
        assert getattr(loaded, name) == getattr(model, name), name
    model.train(corpus, progress=False)
    loaded.train(corpus, progress=False)
    assert loaded.wv.vectors.tobytes() == model.wv.vectors.tobytes()


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(ValueError, match="not a Word2Vec file"):
        Word2Vec.load(path)
    with pytest.raises(ValueError, match="not been trained"):
        Word2Vec().save(tmp_path / "untrained.npz")
    assert not (tmp_path / "untrained.npz").exists()


# ---------------------------------------------------------------- progress


def test_progress_on_stderr_and_quiet_without(capsys):
    corpus = zipf_corpus(vocab=100, sentences=200)
    Word2Vec(vector_size=8, min_count=1, epochs=2).train(corpus, progress=True)
    err = capsys.readouterr().err
    assert "words/s" in err and "epoch 2/2" in err and "alpha" in err and "ETA" in err
    Word2Vec(vector_size=8, min_count=1, epochs=2).train(corpus, progress=False)
    assert capsys.readouterr() == ("", "")


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "argument, value",
    [("window", 0), ("vector_size", 0), ("negative", 0), ("epochs", 0), ("sg", 2),
     ("min_count", -1), ("workers", 0), ("max_final_vocab", 0), ("sample", -1.0),
     ("alpha", float("nan")), ("batch_words", 0)],
)  # fmt: skip
def test_bad_settings_raise_value_error_naming_them(argument, value):
    with pytest.raises(ValueError, match=argument):
        Word2Vec(**{argument: value})


def test_bad_corpora_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        Word2Vec().train([], progress=False)
    with pytest.raises(ValueError, match="empty"):
        Word2Vec().train([[], []], progress=False)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="corpus_file"):
        Word2Vec().train(corpus_file=empty, progress=False)
    with pytest.raises(ValueError, match="min_count=5"):
        Word2Vec(min_count=5).train([["a", "b", "a"]], progress=False)
    with pytest.raises(ValueError, match="exactly one"):
        Word2Vec().train(progress=False)
    with pytest.raises(ValueError, match="exactly one"):
        Word2Vec().train([["a"]], corpus_file=empty, progress=False)
    with pytest.raises(ValueError, match="corpus_file"):
        Word2Vec().train(corpus_file=tmp_path / "missing.txt", progress=False)
    with pytest.raises(TypeError, match="token lists"):
        Word2Vec(min_count=1).train(["a sentence as one string"], progress=False)
    with pytest.raises(TypeError, match="vector_size"):
        Word2Vec(vector_size=10.0)


def test_kernel_rejects_bad_corpus_arrays():
    syn0 = np.zeros((4, 3), np.float32)
    syn1 = np.zeros((4, 3), np.float32)
    ids = np.array([0, 1, 5], np.int32)
    good = dict(skip_gram=True, window=2, negative=1, seed=1, alpha=0.1, min_alpha=0.0, epochs=1,
                batch_words=2, epoch=0, first_batch=0, last_batch=2)  # fmt: skip
    keep, weights = np.ones(4), np.ones(4)
    with pytest.raises(IndexError, match="5"):
        _core.word2vec_train_batches(syn0, syn1, ids, np.array([0, 3]), keep, weights, **good)
    ids[2] = 3
    with pytest.raises(ValueError, match="sentence_bounds"):
        _core.word2vec_train_batches(syn0, syn1, ids, np.array([0, 2]), keep, weights, **good)
    with pytest.raises(ValueError, match="negative_weights"):
        _core.word2vec_train_batches(syn0, syn1, ids, np.array([0, 3]), keep, -weights, **good)
    with pytest.raises(ValueError, match="syn1neg"):
        _core.word2vec_train_batches(syn0, syn1[:2], ids, np.array([0, 3]), keep, weights, **good)
    with pytest.raises(ValueError, match="batches"):
        _core.word2vec_train_batches(syn0, syn1, ids, np.array([0, 3]), keep, weights,
                                     **{**good, "last_batch": 3})  # fmt: skip
    assert not syn0.any() and not syn1.any()


# ---------------------------------------------------------------- quality against gensim


@pytest.mark.slow
@pytest.mark.skipif(not RUN_SLOW, reason="FASTEMBED_RUN_SLOW=1 runs the gensim quality comparison")
@pytest.mark.parametrize("sg", [1, 0])
def test_wordsim_within_003_of_gensim(sg):
    gensim = pytest.importorskip("gensim")
    from gensim.test.utils import datapath

    corpus, wordsim = datapath("head500.noblanks.cor"), datapath("wordsim353.tsv")
    settings = dict(
        vector_size=100, window=5, negative=5, min_count=5, sample=1e-3, epochs=10, sg=sg
    )
    ours, theirs = [], []
    for seed in (1, 2, 3):
        model = Word2Vec(**settings, seed=seed, workers=2).train(corpus_file=corpus, progress=False)
        ours.append(model.wv.evaluate_word_pairs(wordsim)[1][0])
        reference = gensim.models.Word2Vec(corpus_file=corpus, **settings, seed=seed, workers=2)
        keyed = WordVectors(reference.wv.index_to_key, reference.wv.vectors)
        theirs.append(keyed.evaluate_word_pairs(wordsim)[1][0])
    assert np.mean(ours) >= np.mean(theirs) - 0.03, (ours, theirs)
