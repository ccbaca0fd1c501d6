"""Word2Vec: skip-gram and CBOW with negative sampling, trained by fastembed's kernels."""

from __future__ import annotations

import io
import json
import math
import os
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .. import _core
from .._atomic import atomic_write
from .._checks import as_int, optional_float
from .._threading import get_num_threads, set_num_threads
from ._corpus import tokenize
from .word_vectors import WordVectors

# Corpus positions per batch by default: every update of a batch is computed from the
# parameters as they were when the batch began (see the class docstring). About 1,000 examples
# either way: a position gives ~6 skip-gram pairs but one CBOW example.
DEFAULT_BATCH_WORDS = {1: 256, 0: 1024}
_FORMAT = "fastembed.Word2Vec/1"
_SETTINGS = (
    "vector_size",
    "window",
    "min_count",
    "negative",
    "sample",
    "alpha",
    "min_alpha",
    "epochs",
    "sg",
    "seed",
    "workers",
    "max_final_vocab",
    "batch_words",
)
# set_num_threads is process-wide: one training at a time changes it.
_threads_lock = threading.Lock()


class Word2Vec:
    """Word2vec (Mikolov et al. 2013) with negative sampling, gensim's names and defaults.

    Parameters
    ----------
    vector_size : int
        Dimensionality of the word vectors.
    window : int
        Largest distance between a word and its context; each word draws its own reach
        uniformly from 1..window (the "reduced window" of word2vec.c and gensim).
    min_count : int
        Words occurring fewer times are left out of the vocabulary (and of training).
    negative : int
        Noise words drawn per positive example, from the unigram distribution raised to 0.75.
    sample : float
        Subsampling threshold: a word with frequency f (its count over the retained words) is
        kept with probability ``(sqrt(f / sample) + 1) * sample / f`` (gensim's formula); 0
        turns subsampling off.
    alpha, min_alpha : float
        The learning rate falls linearly from ``alpha`` to ``min_alpha`` over all epochs.
    epochs : int
        Passes over the corpus.
    sg : {0, 1}
        1 for skip-gram, 0 for CBOW (the context's vectors mean-pooled by the bag kernel).
    seed : int
        Seed of the initial vectors and of every random draw.
    workers : int or None
        Threads (None: ``fastembed.get_num_threads()``). The result does not depend on it.
        fastembed's thread count is process-wide: ``train`` sets it to ``workers`` while it
        runs (other fastembed calls in the meantime use it too) and restores it after.
    max_final_vocab : int or None
        Keep at most this many words by raising the effective ``min_count`` (as gensim: ties at
        the cut are all left out).
    batch_words : int or None
        Corpus positions per training batch (keyword only; not gensim's meaning, see below);
        None: 256 for skip-gram, 1024 for CBOW.

    Notes
    -----
    **Batches and reproducibility.** The corpus is read once into integer ids; each epoch is
    cut into batches of ``batch_words`` consecutive positions. Within a batch every example
    (a (context, center) pair for skip-gram, a center with its pooled context for CBOW) reads
    the tables as they were when the batch began; the output-side updates of all examples are
    then summed per row by the deterministic sorted reduction and applied by the fused SGD
    sink, then the input-side ones. Which words subsampling drops, each window's reach and every
    negative are hashes of (seed, epoch, corpus position), so nothing depends on the order in
    which threads work: the same seed and data give bitwise the same vectors for any
    ``workers``. gensim instead applies every pair's update at once from several threads that
    race on shared rows; its results change with the thread count and from run to run.

    **Effect on quality.** Updates inside a batch do not see each other, so a frequent word
    that occurs many times in one batch gets the sum of its updates computed from stale
    vectors. With the defaults (about 1,000 examples per batch) the WordSim-353 correlation
    stays within the noise of gensim's (README, word2vec section); batches of 4x as many
    skip-gram positions cost it 0.02-0.03 on average, of tens of thousands of positions made
    the loss rise; smaller batches leave threads idle.

    Differences from gensim: the data goes to :meth:`train`, not the constructor; only
    negative sampling (no hierarchical softmax); sigmoids outside [-6, 6] are taken as 0 or 1
    (as word2vec.c; gensim skips those updates); sentences longer than 10000 tokens are cut
    into pieces (gensim's ``LineSentence`` does so; its training on an iterable drops the rest).
    """

    def __init__(
        self,
        vector_size: int = 100,
        window: int = 5,
        min_count: int = 5,
        negative: int = 5,
        sample: float = 1e-3,
        alpha: float = 0.025,
        min_alpha: float = 1e-4,
        epochs: int = 5,
        sg: int = 0,
        seed: int = 1,
        workers: int | None = None,
        max_final_vocab: int | None = None,
        *,
        batch_words: int | None = None,
    ) -> None:
        self.vector_size = as_int(vector_size, "vector_size", 1)
        self.window = as_int(window, "window", 1)
        self.min_count = as_int(min_count, "min_count", 0)
        self.negative = as_int(negative, "negative", 1)
        self.sample = _non_negative(sample, "sample")
        self.alpha = _non_negative(alpha, "alpha")
        self.min_alpha = _non_negative(min_alpha, "min_alpha")
        self.epochs = as_int(epochs, "epochs", 1)
        self.sg = as_int(sg, "sg", 0, 1)
        self.seed = as_int(seed, "seed", 0, 2**64 - 1)
        self.workers = None if workers is None else as_int(workers, "workers", 1, 1024)
        self.max_final_vocab = (
            None if max_final_vocab is None else as_int(max_final_vocab, "max_final_vocab", 1)
        )
        self.batch_words = None if batch_words is None else as_int(batch_words, "batch_words", 1)
        self.wv: WordVectors | None = None
        self.syn1neg: np.ndarray | None = None
        self.counts: np.ndarray | None = None
        self.corpus_total_words = 0
        self.epochs_trained = 0

    def __repr__(self) -> str:
        vocab = "untrained" if self.wv is None else f"vocab={len(self.wv)}"
        return (
            f"Word2Vec({vocab}, vector_size={self.vector_size}, window={self.window}, "
            f"sg={self.sg}, negative={self.negative}, epochs={self.epochs})"
        )

    # ------------------------------------------------------------------ training

    def train(
        self,
        sentences: Iterable[Sequence] | None = None,
        corpus_file: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> Word2Vec:
        """Trains for ``epochs`` epochs on ``sentences`` or ``corpus_file``; returns ``self``.

        Parameters
        ----------
        sentences : iterable of lists of str, optional
            Tokenised sentences (read once; a generator is fine).
        corpus_file : path, optional
            UTF-8 text, whitespace-separated tokens, one sentence per line.
        progress : bool
            Print words/s, epoch, learning rate, loss and time left to stderr while training.

        The first call builds the vocabulary and the initial vectors; later calls go on
        training them (words not in the vocabulary are ignored), as gensim's ``train``.

        Raises
        ------
        ValueError
            If both or neither of ``sentences`` and ``corpus_file`` are given, the corpus is
            empty, or no word occurs ``min_count`` times.
        TypeError
            If a sentence is a string rather than a list of tokens.
        """
        corpus = tokenize(sentences, corpus_file)
        source = "corpus_file" if corpus_file is not None else "sentences"
        if corpus.num_tokens == 0:
            raise ValueError(f"the corpus ({source}) is empty: there is nothing to train on")
        if self.wv is None:
            self._build_vocabulary(corpus.tokens, corpus.counts)
        assert self.wv is not None and self.syn1neg is not None and self.counts is not None
        lookup = np.array([self.wv.key_to_index.get(t, -1) for t in corpus.tokens], dtype=np.int32)
        ids = lookup[corpus.ids]
        in_vocabulary = ids >= 0
        kept_before = np.concatenate(([0], np.cumsum(in_vocabulary, dtype=np.int64)))
        ids = np.ascontiguousarray(ids[in_vocabulary])
        bounds = np.ascontiguousarray(kept_before[corpus.bounds])
        if len(ids) == 0:
            raise ValueError(f"no word of the corpus ({source}) is in the vocabulary")
        self.corpus_total_words = corpus.num_tokens
        self._run_epochs(ids, bounds, progress)
        return self

    def _build_vocabulary(self, tokens: list, counts: np.ndarray) -> None:
        min_count = self.min_count
        if self.max_final_vocab is not None and self.max_final_vocab < len(tokens):
            # gensim: the smallest count that leaves at most max_final_vocab words.
            cut = np.sort(counts)[::-1][self.max_final_vocab]
            min_count = max(min_count, int(cut) + 1)
        retained = np.flatnonzero(counts >= min_count)
        if len(retained) == 0:
            raise ValueError(
                f"no word occurs min_count={self.min_count} times or more "
                f"(the most frequent occurs {int(counts.max())} times)"
            )
        # Descending count, ties in order of first appearance.
        order = retained[np.argsort(-counts[retained], kind="stable")]
        keys = [tokens[i] for i in order]
        self.counts = counts[order].astype(np.int64)
        # As gensim 4: inputs uniform in [-1, 1) / vector_size, outputs zero.
        syn0 = np.random.default_rng(self.seed).random(
            (len(keys), self.vector_size), dtype=np.float32
        )
        syn0 *= 2
        syn0 -= 1
        syn0 /= self.vector_size
        self.wv = WordVectors(keys, syn0)
        self.syn1neg = np.zeros_like(syn0)

    def _keep_probability(self) -> np.ndarray:
        assert self.counts is not None
        counts = self.counts.astype(np.float64)
        if self.sample == 0:
            return np.ones_like(counts)
        retained = counts.sum()
        threshold = (
            self.sample * retained if self.sample < 1.0 else self.sample * (3 + math.sqrt(5)) / 2
        )
        return np.minimum(1.0, (np.sqrt(counts / threshold) + 1) * (threshold / counts))

    def _run_epochs(self, ids: np.ndarray, bounds: np.ndarray, progress: bool) -> None:
        assert self.wv is not None and self.counts is not None
        keep = self._keep_probability()
        weights = self.counts.astype(np.float64) ** 0.75
        batch_words = self.batch_words or DEFAULT_BATCH_WORDS[self.sg]
        batches = -(-len(ids) // batch_words)
        reporter = _Progress(self.epochs, len(ids), progress)
        with _threads_lock:
            previous = get_num_threads()
            if self.workers is not None:
                set_num_threads(self.workers)
            try:
                for epoch in range(self.epochs):
                    first = 0
                    chunk = max(1, 16384 // batch_words)
                    while first < batches:
                        last = min(batches, first + chunk)
                        started = time.perf_counter()
                        loss, examples, _ = _core.word2vec_train_batches(
                            self.wv.vectors, self.syn1neg, ids, bounds, keep, weights,
                            skip_gram=bool(self.sg), window=self.window, negative=self.negative,
                            seed=self.seed, alpha=self.alpha, min_alpha=self.min_alpha,
                            epochs=self.epochs, batch_words=batch_words, epoch=epoch,
                            first_batch=first, last_batch=last,
                        )  # fmt: skip
                        elapsed = time.perf_counter() - started
                        done = epoch * len(ids) + min(len(ids), last * batch_words)
                        alpha = self._alpha_at(done / (self.epochs * len(ids)))
                        reporter.update(epoch, done, alpha, loss / max(examples, 1))
                        # About 0.2 s per call: frequent progress, negligible call overhead.
                        chunk = max(1, min(chunk * 2, int(chunk * 0.2 / max(elapsed, 1e-6))))
                        first = last
                    self.epochs_trained += 1
            finally:
                if self.workers is not None:
                    set_num_threads(previous)
                reporter.close()

    def _alpha_at(self, progress: float) -> float:
        return max(self.min_alpha, self.alpha - (self.alpha - self.min_alpha) * progress)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike) -> None:
        """Writes the settings, the vocabulary with its counts and both tables to ``path`` (an
        uncompressed ``.npz``; the file is replaced atomically)."""
        if self.wv is None or self.syn1neg is None or self.counts is None:
            raise ValueError("this Word2Vec has not been trained: there is nothing to save")
        header = {
            "format": _FORMAT,
            "settings": {name: getattr(self, name) for name in _SETTINGS},
            "keys": list(self.wv.index_to_key),
            "corpus_total_words": self.corpus_total_words,
            "epochs_trained": self.epochs_trained,
        }
        try:
            header_text = json.dumps(header)
        except TypeError:
            raise ValueError(
                "Word2Vec.save needs str keys (the vocabulary is stored as JSON)"
            ) from None
        buffer = io.BytesIO()
        np.savez(buffer, header=np.array(header_text), syn0=self.wv.vectors, syn1neg=self.syn1neg,
                 counts=self.counts)  # fmt: skip
        with atomic_write(path) as file:
            file.write(buffer.getbuffer())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Word2Vec:
        """A model written by :meth:`save`, ready to use or to train further."""
        try:
            with np.load(path, allow_pickle=False) as archive:
                header = json.loads(str(archive["header"]))
                syn0, syn1neg, counts = archive["syn0"], archive["syn1neg"], archive["counts"]
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(f"{os.fspath(path)!r} is not a Word2Vec file: {error}") from error
        if header.get("format") != _FORMAT:
            raise ValueError(
                f"{os.fspath(path)!r} is not a Word2Vec file (format {header.get('format')!r})"
            )
        model = cls(**header["settings"])
        model.wv = WordVectors(header["keys"], np.ascontiguousarray(syn0))
        model.syn1neg = np.ascontiguousarray(syn1neg)
        model.counts = counts
        model.corpus_total_words = header["corpus_total_words"]
        model.epochs_trained = header["epochs_trained"]
        return model


def _non_negative(value: Any, name: str) -> float:
    number = optional_float(value, name, required=True)
    assert number is not None
    if not (number >= 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


class _Progress:
    """One status line on stderr, rewritten in place: epoch, percent, words/s, alpha, loss, ETA."""

    def __init__(self, epochs: int, words_per_epoch: int, enabled: bool) -> None:
        self.epochs = epochs
        self.total = epochs * words_per_epoch
        self.enabled = enabled
        self.started = time.perf_counter()
        self.last_print = 0.0
        self.shown = False

    def update(self, epoch: int, done: int, alpha: float, loss: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last_print < 0.25 and done < self.total:
            return
        self.last_print = now
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else 0.0
        line = (
            f"epoch {epoch + 1}/{self.epochs}  {100 * done / self.total:5.1f}%  "
            f"{rate:,.0f} words/s  alpha {alpha:.5f}  loss {loss:.4f}  "
            f"elapsed {elapsed:.1f}s  ETA {eta:.1f}s"
        )
        sys.stderr.write("\r" + line.ljust(100))
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
