"""WordVectors.evaluate_word_pairs against gensim on WordSim-353, and its correlations and
p-values against closed forms and SciPy (the fallback used when SciPy is missing included)."""

import math
import sys

import numpy as np
import pytest
from fastembed import WordVectors
from fastembed.text import _correlation


def gensim_pair(name, **options):
    test_utils = pytest.importorskip("gensim.test.utils")
    from gensim.models import KeyedVectors

    path = test_utils.datapath(name)
    kv = KeyedVectors.load_word2vec_format(path, **options)
    return kv, WordVectors(kv.index_to_key, kv.vectors), test_utils.datapath("wordsim353.tsv")


@pytest.mark.parametrize(
    "options",
    [{}, {"case_insensitive": False}, {"restrict_vocab": 500}, {"delimiter": "\t"}],
)
def test_same_numbers_as_gensim_on_wordsim353(options):
    kv, wv, pairs = gensim_pair("euclidean_vectors.bin", binary=True)
    (pearson, pearson_p), (spearman, spearman_p), oov = wv.evaluate_word_pairs(pairs, **options)
    expected = kv.evaluate_word_pairs(pairs, **options)
    assert pearson == pytest.approx(expected[0][0], rel=1e-12)
    assert pearson_p == pytest.approx(expected[0][1], rel=1e-9)
    assert spearman == pytest.approx(expected[1][0], rel=1e-12)
    assert spearman_p == pytest.approx(expected[1][1], rel=1e-9)
    assert oov == pytest.approx(expected[2], rel=1e-12)
    assert all(isinstance(x, float) for x in (pearson, pearson_p, spearman, spearman_p, oov))


def test_against_numpy(tmp_path):
    """Scores and cosines computed by hand; comments, bad lines and unknown words skipped."""
    rng = np.random.default_rng(0)
    keys = ["alpha", "Beta", "gamma", "delta", "eps", "zeta"]
    vectors = rng.standard_normal((6, 8)).astype(np.float32)
    wv = WordVectors(keys, vectors)
    lines = [
        "# a comment",
        "alpha\tbeta\t1.5",
        "gamma\tdelta\t7",
        "eps\tzeta\t3.25",
        "alpha\tzeta\t9",
        "alpha\tunknown\t2",
        "not\ta\tnumber\tline",
        "eps\tBETA\tx",
    ]
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n")
    (pearson, _), (spearman, _), oov = wv.evaluate_word_pairs(path)
    rows = {"alpha": 0, "beta": 1, "gamma": 2, "delta": 3, "eps": 4, "zeta": 5}
    pairs = [("alpha", "beta"), ("gamma", "delta"), ("eps", "zeta"), ("alpha", "zeta")]
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    model = [float(unit[rows[a]] @ unit[rows[b]]) for a, b in pairs]
    gold = [1.5, 7.0, 3.25, 9.0]
    assert pearson == pytest.approx(np.corrcoef(gold, model)[0, 1], abs=1e-6)
    ranks = lambda x: np.argsort(np.argsort(x))  # noqa: E731  (no ties here)
    assert spearman == pytest.approx(np.corrcoef(ranks(gold), ranks(model))[0, 1], abs=1e-12)
    assert oov == pytest.approx(100 / 5)
    with pytest.raises(ValueError, match="no word pair"):
        wv.evaluate_word_pairs(path, restrict_vocab=0)
    (_, _), (_, _), oov_case = wv.evaluate_word_pairs(path, case_insensitive=False)
    assert oov_case == pytest.approx(100 * 2 / 5)


def test_p_values_closed_forms():
    """Student's t with 2 degrees of freedom (n = 4) gives p = 1 - |r|; with 1 (n = 3),
    p = 1 - 2 atan(|t|) / pi."""
    for r in (0.0, 0.3, -0.7, 0.999):
        assert _correlation._two_sided_p(r, 4) == pytest.approx(1 - abs(r), abs=1e-13)
        t = abs(r) * math.sqrt(1 / (1 - r * r))
        assert _correlation._two_sided_p(r, 3) == pytest.approx(
            1 - 2 * math.atan(t) / math.pi, abs=1e-13
        )
    assert _correlation._two_sided_p(1.0, 10) == 0.0
    assert _correlation._two_sided_p(0.5, 2) == 1.0


def test_fallback_matches_scipy(monkeypatch):
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for n in (3, 5, 30, 353, 2000):
        x = rng.standard_normal(n)
        y = 0.3 * x + rng.standard_normal(n)
        y[: n // 3] = np.round(y[: n // 3])  # ties for the ranks
        pearson = stats.pearsonr(x, y)
        spearman = stats.spearmanr(x, y)
        monkeypatch.setitem(sys.modules, "scipy", None)
        (r, p), (rho, p_rho) = _correlation.pearson_spearman(x, y)
        monkeypatch.undo()
        assert r == pytest.approx(pearson[0], rel=1e-12, abs=1e-15)
        assert p == pytest.approx(pearson[1], rel=1e-9, abs=1e-300)
        assert rho == pytest.approx(spearman[0], rel=1e-12, abs=1e-15)
        assert p_rho == pytest.approx(spearman[1], rel=1e-9, abs=1e-300)
