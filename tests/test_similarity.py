"""WordVectors' similarity API: against plain NumPy always, against gensim where installed."""

from __future__ import annotations

import fastembed
import numpy as np
import pytest
from fastembed.text import WordVectors


def unit(rows):
    rows = np.asarray(rows, np.float64)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def numpy_most_similar(vectors, query, topn, skipped=()):
    """Cosine of every row with the query, best first (stable: ties by smaller row)."""
    scores = unit(vectors) @ unit(query)
    scores[list(skipped)] = -np.inf
    order = np.argsort(-scores, kind="stable")[:topn]
    return order, scores[order]


@pytest.fixture
def wv():
    rng = np.random.default_rng(14)
    return WordVectors(
        [f"w{i}" for i in range(300)], rng.standard_normal((300, 12)).astype(np.float32)
    )


def keys_and_scores(result):
    return [key for key, _ in result], np.array([score for _, score in result])


def test_most_similar_matches_numpy(wv):
    result = wv.most_similar("w7", topn=5)
    assert all(isinstance(key, str) and type(score) is float for key, score in result)
    rows, scores = numpy_most_similar(wv.vectors, wv.vectors[7], 5, skipped=[7])
    keys, got = keys_and_scores(result)
    assert keys == [f"w{i}" for i in rows]
    np.testing.assert_allclose(got, scores, atol=1e-6)


def test_3cosadd_with_negative_weights_vectors_and_int_keys(wv):
    query = unit(wv.vectors[1]) + unit(wv.vectors[2]) - unit(wv.vectors[3])
    rows, scores = numpy_most_similar(wv.vectors, query, 4, skipped=[1, 2, 3])
    keys, got = keys_and_scores(wv.most_similar(positive=["w1", "w2"], negative=["w3"], topn=4))
    assert keys == [f"w{i}" for i in rows]
    np.testing.assert_allclose(got, scores, atol=1e-6)
    # an int is a row; (key, weight) pairs weigh; ndarrays count as they are and are not excluded
    weighted = 2 * unit(wv.vectors[1]) + wv.vectors[9]
    rows, _ = numpy_most_similar(wv.vectors, weighted, 3, skipped=[1])
    keys, _ = keys_and_scores(wv.most_similar(positive=[(1, 2.0), wv.vectors[9]], topn=3))
    assert keys == [f"w{i}" for i in rows] and keys[0] == "w9"


def test_topn_and_restrict_vocab(wv):
    assert wv.most_similar("w0", topn=0) == []
    everything = wv.most_similar("w0", topn=None)
    np.testing.assert_allclose(everything, unit(wv.vectors) @ unit(wv.vectors[0]), atol=1e-6)
    assert everything.shape == (300,)
    assert len(wv.most_similar("w0", topn=1000)) == 299
    restricted = wv.most_similar("w250", topn=10, restrict_vocab=50)
    rows, _ = numpy_most_similar(wv.vectors[:50], wv.vectors[250], 10)
    assert keys_and_scores(restricted)[0] == [f"w{i}" for i in rows]
    assert wv.most_similar("w0", topn=None, restrict_vocab=20).shape == (20,)


def test_similar_by_vector_and_key(wv):
    keys, scores = keys_and_scores(wv.similar_by_vector(wv.vectors[4], topn=3))
    assert keys[0] == "w4" and scores[0] == pytest.approx(1.0, abs=1e-6)
    assert wv.similar_by_key("w4", topn=3) == wv.most_similar("w4", topn=3)
    assert wv.similar_by_word("w4", topn=3) == wv.most_similar("w4", topn=3)


def test_similarity_distance_and_doesnt_match(wv):
    expected = unit(wv.vectors[3]) @ unit(wv.vectors[8])
    assert wv.similarity("w3", "w8") == pytest.approx(expected, abs=1e-6)
    assert wv.distance("w3", "w8") == pytest.approx(1 - expected, abs=1e-6)
    table = np.array([[1, 0], [0.9, 0.1], [1, 0.05], [0, 1]], np.float32)
    words = WordVectors(["a", "b", "c", "odd"], table)
    assert words.doesnt_match(["a", "b", "odd", "c"]) == "odd"
    assert words.doesnt_match(["a", "unknown", "b", "odd"]) == "odd"  # unknown words ignored
    with pytest.raises(ValueError, match="empty"):
        words.doesnt_match(["x", "y"])


def test_most_similar_cosmul_matches_numpy(wv):
    cosines = unit(wv.vectors) @ unit(wv.vectors[[5, 6, 7]]).T
    shifted = (1 + cosines) / 2
    dists = shifted[:, 0] * shifted[:, 1] / (shifted[:, 2] + 1e-6)
    dists[[5, 6, 7]] = -np.inf
    rows = np.argsort(-dists, kind="stable")[:6]
    keys, got = keys_and_scores(
        wv.most_similar_cosmul(positive=["w5", "w6"], negative=["w7"], topn=6)
    )
    assert keys == [f"w{i}" for i in rows]
    np.testing.assert_allclose(got, dists[rows], rtol=1e-5)
    assert wv.most_similar_cosmul("w5", topn=None).shape == (300,)


@pytest.mark.parametrize(
    "call",
    [
        lambda wv: wv.most_similar("nope"),
        lambda wv: wv.most_similar(positive=["w1"], negative=["nope"]),
        lambda wv: wv.most_similar_cosmul(positive=["nope"]),
        lambda wv: wv.similar_by_key("nope"),
        lambda wv: wv.similarity("w1", "nope"),
    ],
)
def test_unknown_words_raise_key_error_naming_them(wv, call):
    with pytest.raises(KeyError, match="nope"):
        call(wv)


def test_bad_arguments(wv):
    with pytest.raises(ValueError, match="no input"):
        wv.most_similar()
    with pytest.raises(ValueError, match="no input"):
        wv.most_similar_cosmul(negative=["w1"])
    with pytest.raises(TypeError, match="topn"):
        wv.most_similar("w1", topn=2.5)
    with pytest.raises(TypeError, match="restrict_vocab"):
        wv.most_similar("w1", restrict_vocab="10")
    with pytest.raises(ValueError, match="width"):
        wv.similar_by_vector(np.ones(5))


def test_updated_vectors_are_searched_with_fresh_norms(wv):
    """No norms are cached: an in-place update, direct or by a training step through
    wv.embedding(), is seen by the very next search (the results equal a fresh WordVectors')."""
    before = wv.most_similar("w10", topn=3)
    wv.vectors[200] = 5 * wv.vectors[10]  # now parallel to w10, with another norm
    assert wv.most_similar("w10", topn=1)[0][0] == "w200"
    layer = wv.embedding(trainable=True)
    rng = np.random.default_rng(0)
    grad = rng.standard_normal((4, wv.vector_size)).astype(np.float32)
    layer([10, 11, 200, 12])
    layer.backward(grad, optimizer=fastembed.optim.SGD(lr=10.0))  # big steps in place
    fresh = WordVectors(wv.index_to_key, wv.vectors.copy())
    assert wv.most_similar("w10", topn=5) == fresh.most_similar("w10", topn=5)
    assert wv.most_similar("w10", topn=3) != before
    np.testing.assert_array_equal(
        wv.most_similar("w11", topn=None), fresh.most_similar("w11", topn=None)
    )


ANALOGIES = """\
: capitals
athens greece paris france
paris france athens greece
athens greece berlin germany
athens greece unknown nowhere
not four words
: plurals
cat cats dog dogs
Cat Cats Dog Dogs
"""


def analogy_vectors():
    """Hand-made: country = capital + (1, 0, 0, 0), plural = singular + (0, 1, 0, 0)."""
    base = {
        "athens": [0, 0, 1, 0],
        "paris": [0, 0, 0.2, 1],
        "berlin": [0, 0, -1, 0.3],
        "cat": [0.1, 0, 0.5, -1],
        "dog": [0.1, 0, -0.6, -0.8],
    }
    keys, rows = [], []
    for word, vector in base.items():
        keys.append(word)
        rows.append(vector)
    for word, offset in [("greece", "athens"), ("france", "paris"), ("germany", "berlin")]:
        keys.append(word)
        rows.append(np.add(base[offset], [3, 0, 0, 0]))
    for word, offset in [("cats", "cat"), ("dogs", "dog")]:
        keys.append(word)
        rows.append(np.add(base[offset], [0, 3, 0, 0]))
    return WordVectors(keys, np.array(rows, np.float32))


def test_evaluate_word_analogies(tmp_path):
    path = tmp_path / "questions.txt"
    path.write_text(ANALOGIES)
    wv = analogy_vectors()
    score, sections = wv.evaluate_word_analogies(path)
    assert [s["section"] for s in sections] == ["capitals", "plurals", "Total accuracy"]
    total = sections[-1]
    assert len(total["correct"]) + len(total["incorrect"]) == 5  # unknown and malformed skipped
    assert ("CAT", "CATS", "DOG", "DOGS") in sections[1]["correct"]  # upper-cased, case-insensitive
    assert score == len(total["correct"]) / 5
    # Each prediction is most_similar's best answer that is not an input:
    for a, b, c, expected in total["correct"] + total["incorrect"]:
        best = wv.most_similar(positive=[b.lower(), c.lower()], negative=[a.lower()], topn=1)[0][0]
        assert ((a, b, c, expected) in total["correct"]) == (best.upper() == expected)
    score, sections = wv.evaluate_word_analogies(path, case_insensitive=False)
    assert len(sections[-1]["correct"]) + len(sections[-1]["incorrect"]) == 4  # "Cat" is unknown
    score, sections = wv.evaluate_word_analogies(path, restrict_vocab=5)  # no country: all OOV
    assert sections[0]["correct"] == sections[0]["incorrect"] == [] and score == 0.0


def test_analogy_file_without_a_section_header(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("athens greece paris france\n")
    with pytest.raises(ValueError, match="section header before line #0"):
        analogy_vectors().evaluate_word_analogies(path)


# --- parity with gensim: the same vectors loaded by both ---------------------------------


@pytest.fixture(scope="module")
def gensim_pair():
    pytest.importorskip("gensim")
    from gensim.models import KeyedVectors
    from gensim.test.utils import datapath

    kv = KeyedVectors.load_word2vec_format(datapath("lee_fasttext.vec"))
    return kv, WordVectors(kv.index_to_key, kv.vectors), datapath("questions-words.txt")


def assert_same_results(theirs, ours):
    assert [key for key, _ in theirs] == [key for key, _ in ours]
    np.testing.assert_allclose([s for _, s in theirs], [s for _, s in ours], atol=2e-6)


def test_most_similar_like_gensim(gensim_pair):
    kv, wv, _ = gensim_pair
    for word in kv.index_to_key[:300:3]:
        assert_same_results(kv.most_similar(word, topn=10), wv.most_similar(word, topn=10))
    for positive, negative in [
        (["the", "of"], ["and"]),
        ([("the", 2.0), "said"], []),
        ([kv["he"]], ["of"]),
    ]:
        assert_same_results(
            kv.most_similar(positive=positive, negative=negative, topn=8),
            wv.most_similar(positive=positive, negative=negative, topn=8),
        )
    assert_same_results(
        kv.most_similar("the", restrict_vocab=100), wv.most_similar("the", restrict_vocab=100)
    )
    assert_same_results(kv.similar_by_vector(kv["year"]), wv.similar_by_vector(kv["year"]))
    np.testing.assert_allclose(
        kv.most_similar("the", topn=None), wv.most_similar("the", topn=None), atol=2e-6
    )


def test_cosmul_similarity_doesnt_match_like_gensim(gensim_pair):
    kv, wv, _ = gensim_pair
    for positive, negative in [
        (["the", "of"], ["and"]),
        (["year", "time"], []),
        ([kv["he"]], ["of"]),
    ]:
        assert_same_results(
            kv.most_similar_cosmul(positive=positive, negative=negative, topn=8),
            wv.most_similar_cosmul(positive=positive, negative=negative, topn=8),
        )
    assert wv.similarity("the", "of") == pytest.approx(kv.similarity("the", "of"), abs=1e-6)
    words = ["the", "of", "and", "government", "a"]
    assert wv.doesnt_match(words) == kv.doesnt_match(words)


@pytest.mark.parametrize(("restrict_vocab", "case_insensitive"), [(300000, True), (1000, False)])
def test_evaluate_word_analogies_like_gensim(gensim_pair, restrict_vocab, case_insensitive):
    kv, wv, questions = gensim_pair
    expected = kv.evaluate_word_analogies(questions, restrict_vocab, case_insensitive)
    assert wv.evaluate_word_analogies(questions, restrict_vocab, case_insensitive) == expected
