"""Train word2vec on a text file with fastembed and look at what it learned.

    python -m fastembed.examples.word2vec --corpus FILE --out VECTORS [--binary] [--dim 100]
        [--window 5] [--negative 5] [--min-count 5] [--epochs 5] [--sample 1e-3] [--sg 0]
        [--threads N] [--seed 1] [--plot words.png]

Writes the vectors in word2vec format (text, or binary with ``--binary``), prints the nearest
neighbours of a few frequent words and, with ``--plot``, saves a 2-D PCA projection of the most
frequent words (needs matplotlib). Without ``--corpus`` it trains on the Wikipedia excerpt that
gensim ships with its tests when gensim is installed, else on text it generates; nothing is
downloaded.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time

import numpy as np

from ..text import Word2Vec, WordVectors

# A small generated language: each sentence is about one topic, with function words mixed in,
# so that words of a topic share contexts and end up each other's neighbours.
_TOPICS = {
    "animals": "cat dog horse cow sheep goat pig rabbit mouse lion tiger bear wolf fox",
    "colours": "red green blue yellow orange purple brown black white grey pink",
    "fruit": "apple pear banana cherry grape lemon peach plum mango melon",
    "numbers": "one two three four five six seven eight nine ten twenty hundred",
    "weather": "rain snow wind storm cloud sun fog frost thunder hail",
    "music": "guitar piano violin drum flute trumpet cello harp organ bass",
    "family": "mother father sister brother aunt uncle cousin daughter son grandmother",
}
_FUNCTION_WORDS = "the a and of to in is was with for on".split()


def generated_sentences(count: int = 20000, seed: int = 0) -> list[list[str]]:
    """``count`` sentences of 6-15 words, each drawn from one topic (2/3) and function words."""
    rng = np.random.default_rng(seed)
    topics = [words.split() for words in _TOPICS.values()]
    sentences = []
    for _ in range(count):
        topic = topics[rng.integers(len(topics))]
        length = int(rng.integers(6, 16))
        sentences.append(
            [
                topic[rng.integers(len(topic))]
                if rng.random() < 2 / 3
                else _FUNCTION_WORDS[rng.integers(len(_FUNCTION_WORDS))]
                for _ in range(length)
            ]
        )
    return sentences


def shipped_corpus() -> str | None:
    """gensim's test corpus (a 331k-token Wikipedia excerpt) when gensim is installed."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "test", "test_data", "head500.noblanks.cor")
        if os.path.isfile(path):
            return path
    return None


def nearest_neighbours(wv: WordVectors, word: str, count: int = 5) -> list[tuple[str, float]]:
    """The ``count`` words of highest cosine similarity to ``word`` (itself left out)."""
    unit = wv.vectors / np.maximum(np.linalg.norm(wv.vectors, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit[wv.get_index(word)]
    similarity[wv.get_index(word)] = -np.inf
    best = np.argsort(-similarity)[:count]
    return [(wv.index_to_key[i], float(similarity[i])) for i in best]


def frequent_words(model: Word2Vec, count: int) -> list[str]:
    """``count`` words spread over the 10th to 100th most frequent (the very top are mostly
    function words, whose neighbours say little)."""
    assert model.wv is not None
    ranks = np.linspace(10, min(100, len(model.wv) - 1), count).astype(int)
    return [model.wv.index_to_key[r] for r in dict.fromkeys(ranks.tolist())]


def plot_projection(wv: WordVectors, words: list[str], path: str) -> bool:
    """Saves the first two principal components of ``words``' vectors as a labelled scatter
    plot; False (and a note on stderr) when matplotlib is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        print("--plot needs matplotlib: pip install 'fastembed[plot]'", file=sys.stderr)
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vectors = wv[words].astype(np.float64)
    centred = vectors - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T
    figure, axes = plt.subplots(figsize=(10, 8))
    axes.scatter(points[:, 0], points[:, 1], s=8)
    for word, (x, y) in zip(words, points):
        axes.annotate(word, (x, y), fontsize=8)
    axes.set_title(f"word2vec: {len(words)} frequent words, first two principal components")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", help="text file, one sentence per line (default: see above)")
    parser.add_argument("--out", help="where to write the vectors (default: a temporary file)")
    parser.add_argument("--binary", action="store_true", help="binary word2vec format")
    parser.add_argument("--dim", type=int, default=100, help="vector size")
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--negative", type=int, default=5)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--sample", type=float, default=1e-3)
    parser.add_argument("--sg", type=int, default=0, choices=(0, 1), help="1: skip-gram, 0: CBOW")
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plot", help="save a 2-D projection of frequent words to this PNG")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Word2Vec:
    args = parse_args(argv)
    model = Word2Vec(
        vector_size=args.dim, window=args.window, min_count=args.min_count,
        negative=args.negative, sample=args.sample, epochs=args.epochs, sg=args.sg,
        seed=args.seed, workers=args.threads,
    )  # fmt: skip
    corpus = args.corpus or shipped_corpus()
    started = time.perf_counter()
    if corpus is not None:
        print(f"corpus: {corpus}")
        model.train(corpus_file=corpus, progress=not args.quiet)
    else:
        print("corpus: generated text (gensim, whose test corpus this example uses, is absent)")
        model.train(generated_sentences(seed=args.seed), progress=not args.quiet)
    assert model.wv is not None
    out = args.out or os.path.join(tempfile.mkdtemp(prefix="word2vec-"), "vectors.txt")
    model.wv.save_word2vec_format(out, binary=args.binary)
    seconds = time.perf_counter() - started
    print(
        f"{model.corpus_total_words:,} tokens, {len(model.wv):,} words of {args.dim} dimensions, "
        f"{'skip-gram' if args.sg else 'CBOW'}, {args.epochs} epochs in {seconds:.1f} s; "
        f"vectors written to {out}"
    )
    for word in frequent_words(model, 6):
        neighbours = ", ".join(f"{w} {s:.2f}" for w, s in nearest_neighbours(model.wv, word))
        print(f"  {word}: {neighbours}")
    if args.plot:
        words = model.wv.index_to_key[: min(150, len(model.wv))]
        if plot_projection(model.wv, words, args.plot):
            print(f"projection of {len(words)} frequent words saved to {args.plot}")
    return model


if __name__ == "__main__":
    main()
