"""Tokenised text -> integer ids, read once: what Word2Vec trains on, epoch after epoch.

Every distinct token gets a provisional id in order of first appearance while the text is read
(one pass, so a generator of sentences works); the vocabulary is chosen from the counts
afterwards and the ids are remapped with one NumPy lookup.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

# gensim cuts longer sentences into pieces of this many tokens (LineSentence, corpus_file).
MAX_SENTENCE_TOKENS = 10000


class TokenizedCorpus:
    """Sentences as provisional ids: sentence ``s`` is ``ids[bounds[s]:bounds[s + 1]]``.

    ``tokens[i]`` is the token of provisional id ``i`` and ``counts[i]`` its number of
    occurrences.
    """

    def __init__(
        self, tokens: list, counts: np.ndarray, ids: np.ndarray, bounds: np.ndarray
    ) -> None:
        self.tokens = tokens
        self.counts = counts
        self.ids = ids
        self.bounds = bounds

    @property
    def num_tokens(self) -> int:
        return len(self.ids)


def _file_sentences(path: str | os.PathLike) -> Iterator[list[str]]:
    with open(path, encoding="utf-8", errors="replace") as file:
        for line in file:
            yield line.split()


def _pieces(sentences: Iterable[Sequence], name: str) -> Iterator[Sequence]:
    for number, sentence in enumerate(sentences):
        if isinstance(sentence, (str, bytes)):
            raise TypeError(
                f"{name} must be an iterable of token lists; sentence {number} is a "
                f"{type(sentence).__name__} (split it into tokens first)"
            )
        if not isinstance(sentence, Sequence):
            sentence = list(sentence)
        for start in range(0, len(sentence), MAX_SENTENCE_TOKENS):
            yield sentence[start : start + MAX_SENTENCE_TOKENS]


def tokenize(
    sentences: Iterable[Sequence] | None, corpus_file: str | os.PathLike | None
) -> TokenizedCorpus:
    """Reads ``sentences`` (token lists) or ``corpus_file`` (UTF-8, whitespace-separated
    tokens, one sentence per line). Sentences longer than 10000 tokens are cut into pieces of
    10000, as gensim's ``LineSentence`` cuts lines; empty sentences are dropped."""
    if (sentences is None) == (corpus_file is None):
        raise ValueError("give exactly one of sentences and corpus_file")
    if corpus_file is not None:
        if not os.path.isfile(corpus_file):
            raise ValueError(f"corpus_file {os.fspath(corpus_file)!r} is not a readable file")
        source, name = _file_sentences(corpus_file), "corpus_file"
    else:
        source, name = sentences, "sentences"
    index: dict = {}
    ids = array("i")
    bounds = array("q", [0])
    for piece in _pieces(source, name):
        if not piece:
            continue
        ids.extend([index.setdefault(token, len(index)) for token in piece])
        bounds.append(len(ids))
    ids_array = np.frombuffer(ids, dtype=np.int32) if ids else np.zeros(0, np.int32)
    counts = np.bincount(ids_array, minlength=len(index)).astype(np.int64)
    return TokenizedCorpus(list(index), counts, ids_array, np.frombuffer(bounds, dtype=np.int64))
