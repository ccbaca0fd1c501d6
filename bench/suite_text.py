"""Issue 14's text benchmarks: loading word2vec files (text and binary) against gensim's
KeyedVectors.load_word2vec_format, and tokenising a corpus with fastembed.text.Vocabulary."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from functools import partial
from typing import Any

import fastembed
import numpy as np
from fastembed.text import Vocabulary
from harness import ZIPF_EXPONENT, Context, Results, Target, short_count

HEADLINE_SECONDS = 10
FULL_SECONDS = 240  # gensim reads a 100k x 300 text file in about a minute; it runs twice
PEERS = ("gensim",)

LOAD = "WordVectors.load_word2vec_format"
GENSIM_LOAD = "gensim KeyedVectors.load_word2vec_format"
COUNT = "Vocabulary.from_texts (count + number the words)"
ENCODE = "vocab.texts_to_sequences"

WORDS_PER_TEXT = 20
VOCABULARY_SIZE = 50_000


@dataclass(frozen=True)
class LoadCase:
    count: int
    dim: int

    @property
    def name(self) -> str:
        return f"{short_count(self.count)} x {self.dim} word2vec file"


def load_cases(ctx: Context) -> list[LoadCase]:
    """The issue's 100k x 300 file, and a smaller one for the default run's headline."""
    if ctx.quick:
        return [LoadCase(2_000, 50)]
    return [LoadCase(20_000, 100)] if ctx.headline else [LoadCase(100_000, 300)]


def token_counts(ctx: Context) -> list[int]:
    """The issue's 10M-token corpus (not in the default run, whose headline is a file load)."""
    if ctx.quick:
        return [100_000]
    return [] if ctx.headline else [10_000_000]


def run(ctx: Context) -> None:
    print(
        f"text suite, {ctx.threads} thread(s): word2vec files of float32 N(0, 0.1) vectors with "
        "keys 'w<i>', written by WordVectors.save_word2vec_format (gensim's bytes: shortest "
        "round-trip decimals, ~10 characters a number) into a temporary directory (in the page "
        "cache when read); each load maps or reads the whole file. Tokenising: texts of "
        f"{WORDS_PER_TEXT} words drawn Zipf({ZIPF_EXPONENT}) from {VOCABULARY_SIZE} words, "
        "lower-cased, punctuation filtered (Keras' defaults); GB/s counts the text's bytes."
    )
    gensim = ctx.peer("gensim")
    for case, rng in ctx.with_rngs(load_cases(ctx)):
        if ctx.wants(case.name):
            bench_load(ctx, case, rng, gensim)
    for tokens, rng in ctx.with_rngs(token_counts(ctx)):
        bench_tokenise(ctx, tokens, rng)


def bench_load(ctx: Context, case: LoadCase, rng: np.random.Generator, gensim: Any) -> None:
    vectors = (rng.standard_normal((case.count, case.dim)) * 0.1).astype(np.float32)
    keys = [f"w{i}" for i in range(case.count)]
    # gensim's text reader takes about a minute on the full case: one timed call, and in a
    # --full run only at all cores (its loader is single-threaded anyway).
    with_gensim = gensim is not None and (ctx.threads > 1 or ctx.quick or ctx.headline)
    with tempfile.TemporaryDirectory() as directory:
        for binary in (False, True):
            path = os.path.join(directory, "vectors.bin" if binary else "vectors.txt")
            fastembed.WordVectors(keys, vectors).save_word2vec_format(path, binary=binary)
            methods = {LOAD: partial(fastembed.WordVectors.load_word2vec_format, path, binary)}
            if with_gensim:
                load = gensim.models.KeyedVectors.load_word2vec_format
                methods[GENSIM_LOAD] = partial(load, path, binary=binary)
            group = "load binary" if binary else "load text"
            size = os.path.getsize(path)
            ctx.compare(case.name, group, methods, size, repeats={GENSIM_LOAD: 1})


def make_corpus(tokens: int, rng: np.random.Generator) -> list[str]:
    words = np.array([f"Word{i}" for i in range(VOCABULARY_SIZE)])
    ids = (rng.zipf(ZIPF_EXPONENT, tokens) - 1) % VOCABULARY_SIZE
    drawn = words[ids].reshape(-1, WORDS_PER_TEXT)
    return [" ".join(row) + "." for row in drawn.tolist()]


def bench_tokenise(ctx: Context, tokens: int, rng: np.random.Generator) -> None:
    case = f"{short_count(tokens)}-token corpus"
    if not ctx.wants(case):
        return
    texts = make_corpus(tokens, rng)
    nbytes = sum(len(text) for text in texts)
    ctx.compare(case, "count", {COUNT: lambda: Vocabulary.from_texts(texts)}, nbytes, repeats=3)
    vocab = Vocabulary.from_texts(texts)
    encode = {ENCODE: lambda: vocab.texts_to_sequences(texts)}
    ctx.compare(case, "encode", encode, nbytes, repeats=3)


def targets(results: Results) -> list[Target]:
    names = [name for name in results.cases("text") if name.startswith("100k x 300")]
    return [
        results.speedup(20.0, "load text", LOAD, GENSIM_LOAD, names),
        results.speedup(3.0, "load binary", LOAD, GENSIM_LOAD, names),
    ]
