"""Issue 16's benchmark: Word2Vec training, from reading the corpus to the vectors written in
word2vec format, against gensim's ``Word2Vec(corpus_file=..., workers=threads)`` at the same
settings, for skip-gram and CBOW; and the quality of both (WordSim-353 and SimLex-999 through
``WordVectors.evaluate_word_pairs``, averaged over the seeds the timed calls used)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
from fastembed.examples.word2vec import generated_sentences, shipped_corpus
from fastembed.text import Word2Vec, WordVectors
from harness import Context, Results, Target

HEADLINE_SECONDS = 25
FULL_SECONDS = 300
PEERS = ("gensim",)

OURS = "fastembed Word2Vec"
GENSIM = "gensim Word2Vec(corpus_file=)"
GROUP = "corpus -> vectors file"
# The settings (gensim's defaults but for 10 epochs and sg).
SETTINGS = dict(vector_size=100, window=5, negative=5, min_count=5, sample=1e-3)


def corpus_path(directory: str, quick: bool) -> tuple[str, str]:
    """gensim's shipped Wikipedia excerpt (its first 20 lines with --quick), or generated text
    of about its size."""
    path = shipped_corpus()
    if path is not None and not quick:
        return path, "gensim's head500.noblanks.cor (331k tokens of Wikipedia)"
    if path is not None:
        with open(path, encoding="utf-8") as file:
            head = [next(file) for _ in range(20)]
        lines, description = head, "the first 20 lines of gensim's head500.noblanks.cor"
    else:
        sentences = generated_sentences(1000 if quick else 30000)
        lines, description = [" ".join(s) + "\n" for s in sentences], "generated text"
    path = os.path.join(directory, "corpus.txt")
    with open(path, "w", encoding="utf-8") as file:
        file.writelines(lines)
    return path, description


def run(ctx: Context) -> None:
    gensim = ctx.peer("gensim")
    with tempfile.TemporaryDirectory(prefix="bench-word2vec-") as directory:
        corpus, description = corpus_path(directory, ctx.quick)
        epochs_of = {"quick": 1, "headline": 1, "full": 10}
        epochs = epochs_of.get(ctx.mode, 1)
        print(
            f"word2vec suite, {ctx.threads} thread(s): {description}; dim 100, window 5, "
            f"negative 5, min_count 5, sample 1e-3, {epochs} epoch(s). Timed: training from "
            "the file and writing the vectors in word2vec text format; each call uses the next "
            "seed, and the quality is averaged over those calls.\n",
            flush=True,
        )
        for sg in (1, 0):
            case = f"{'skip-gram' if sg else 'CBOW'}, {epochs} epoch(s)"
            if ctx.headline and not sg:
                continue  # the headline: skip-gram, the slower of the two
            if ctx.wants(case):
                bench_case(ctx, gensim, case, corpus, directory, sg, epochs)


def bench_case(
    ctx: Context, gensim: Any, case: str, corpus: str, directory: str, sg: int, epochs: int
) -> None:
    out = os.path.join(directory, "vectors.txt")
    trained: dict[str, list[WordVectors]] = {OURS: [], GENSIM: []}

    def ours() -> None:
        seed = 1 + len(trained[OURS])
        model = Word2Vec(**SETTINGS, epochs=epochs, sg=sg, seed=seed, workers=ctx.threads)
        model.train(corpus_file=corpus, progress=False)
        model.wv.save_word2vec_format(out)
        trained[OURS].append(model.wv)

    def theirs() -> None:
        seed = 1 + len(trained[GENSIM])
        model = gensim.models.Word2Vec(
            corpus_file=corpus, **SETTINGS, epochs=epochs, sg=sg, seed=seed, workers=ctx.threads
        )
        model.wv.save_word2vec_format(out)
        trained[GENSIM].append(WordVectors(model.wv.index_to_key, model.wv.vectors))

    methods: dict[str, Callable[[], object]] = {OURS: ours}
    if gensim is not None:
        methods[GENSIM] = theirs
    # Full runs: 2 timed calls after the warm-up, so the quality is averaged over 3 seeds.
    repeats = 2 if ctx.mode == "full" else 1
    ctx.compare(case, GROUP, methods, os.path.getsize(corpus), repeats=repeats)
    if gensim is not None and not ctx.quick:
        report_quality(case, trained, gensim)


def report_quality(case: str, trained: dict[str, list[WordVectors]], gensim: Any) -> None:
    from gensim.test.utils import datapath

    print(f"quality, {case} (Spearman rho: mean and range over the seeds of the timed calls):")
    for method, vectors in trained.items():
        line = [f"  {method}, {len(vectors)} seeds:"]
        for name, file in (("WordSim-353", "wordsim353.tsv"), ("SimLex-999", "simlex999.txt")):
            rhos = [float(wv.evaluate_word_pairs(datapath(file))[1][0]) for wv in vectors]
            line.append(f"{name} {np.mean(rhos):.3f} ({min(rhos):.3f}-{max(rhos):.3f})")
        print(" ".join(line), flush=True)


def targets(results: Results) -> list[Target]:
    """Issue 16: no slower than gensim at the same settings and thread count."""
    return [results.speedup(1.0, GROUP, OURS, GENSIM, results.cases("word2vec"))]
