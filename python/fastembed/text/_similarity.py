"""The similarity API of WordVectors (gensim's ``KeyedVectors`` names, semantics and return
types), searched by :func:`fastembed.topk`.

No norms and no normalised copy of ``vectors`` are kept: every search computes the norms of the
rows it scans inside the kernel, so a table updated in place (a training step through
``wv.embedding(trainable=True)``, an optimizer, ``wv.vectors[i] = ...``) is never searched with
stale norms, and there is nothing to invalidate. (A single query over 100k x 100 float32 costs
about 1.8x a dot-product search for that; a batch of queries, a few percent.)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Union

import numpy as np

from .._topk import topk

logger = logging.getLogger(__name__)

# What gensim takes as one key rather than a list of them.
_KEY_TYPES = (str, bytes, int, np.integer)
Term = Union[Hashable, np.ndarray, tuple]


def _as_list(value: Any) -> list:
    """gensim's ``_ensure_list``: None -> [], one key or 1-d vector -> [it], 2-d -> its rows."""
    if value is None:
        return []
    if isinstance(value, _KEY_TYPES) or (isinstance(value, np.ndarray) and value.ndim == 1):
        return [value]
    if isinstance(value, np.ndarray) and value.ndim == 2:
        return list(value)
    return list(value)


def _topn_or_none(topn: object) -> int | None:
    if topn is None:
        return None
    if isinstance(topn, bool) or not isinstance(topn, (int, np.integer)):
        raise TypeError(f"topn must be an int or None, got {topn!r}")
    return int(topn)


class Similarity:
    """Mixed into :class:`~fastembed.text.WordVectors`: needs ``vectors``, ``index_to_key`` and
    ``get_index`` (``KeyError`` naming an unknown key)."""

    vectors: np.ndarray
    index_to_key: list

    # --- helpers --------------------------------------------------------------------------

    def _searched(self, restrict_vocab: int | None) -> np.ndarray:
        """The rows searched: the first ``restrict_vocab`` (gensim: a falsy value is all)."""
        if not restrict_vocab:
            return self.vectors
        if isinstance(restrict_vocab, bool) or not isinstance(restrict_vocab, (int, np.integer)):
            raise TypeError(f"restrict_vocab must be an int or None, got {restrict_vocab!r}")
        return self.vectors[: int(restrict_vocab)]

    def _checked_vector(self, vector: np.ndarray) -> np.ndarray:
        if vector.shape != (self.vectors.shape[1],):
            raise ValueError(
                f"a vector given must have shape ({self.vectors.shape[1]},) (the vectors' width), "
                f"got {vector.shape}"
            )
        return vector

    def _unit_rows(self, rows: Sequence[int]) -> np.ndarray:
        """``vectors[rows] / their norms``, as gensim's ``get_vector(key, norm=True)``."""
        picked = self.vectors[np.asarray(rows, dtype=np.int64)]
        return picked / np.linalg.norm(picked, axis=1, keepdims=True)

    def _search(
        self, table: np.ndarray, query: np.ndarray, topn: int, skipped: Iterable[int]
    ) -> list[tuple[Any, float]]:
        """The ``topn`` rows of ``table`` nearest to ``query`` by cosine, without ``skipped``."""
        skip = sorted({row for row in skipped if row < len(table)})
        k = min(topn, len(table))
        if k < 1:
            return []
        ids, scores = topk(table, query, k, exclude=np.asarray(skip, dtype=np.int64))
        return [(self.index_to_key[i], float(s)) for i, s in zip(ids.tolist(), scores) if i >= 0]

    def _all_cosines(self, table: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """Cosine of every row of ``table`` with each query, in row order: ``(Q, len(table))``."""
        if len(table) == 0:
            return np.empty((len(queries), 0), table.dtype)
        ids, scores = topk(table, queries, len(table))
        cosines = np.empty_like(scores)
        np.put_along_axis(cosines, ids, scores, axis=1)
        return cosines

    # --- gensim's API -------------------------------------------------------------------

    def most_similar(
        self,
        positive: Term | Iterable[Term] = (),
        negative: Term | Iterable[Term] = (),
        topn: int | None = 10,
        restrict_vocab: int | None = None,
    ) -> list[tuple[Any, float]] | np.ndarray:
        """The ``topn`` keys most similar (cosine) to the mean of the unit vectors of
        ``positive`` minus those of ``negative`` (3CosAdd), as gensim's ``most_similar``.

        Parameters
        ----------
        positive, negative : key, vector, or a list of keys, vectors or ``(key_or_vector,
            weight)`` pairs
            Keys count with their unit vectors, weight 1 (positive) or -1 (negative); vectors
            (ndarrays) count as they are. The keys given are never returned.
        topn : int or None, default 10
            How many results; ``None``: the similarities of all (searched) keys, as an array.
        restrict_vocab : int, optional
            Search only the first ``restrict_vocab`` keys.

        Returns
        -------
        list of (key, float)
            Best first, ties by smaller row.

        Raises
        ------
        KeyError
            An unknown key (named).
        ValueError
            No input at all.
        """
        topn = _topn_or_none(topn)
        if topn is not None and topn < 1:
            return []
        positive, negative = _as_list(positive), _as_list(negative)
        terms = positive + negative
        weights = np.concatenate((np.ones(len(positive)), -np.ones(len(negative))))
        items = []
        for index, term in enumerate(terms):
            if isinstance(term, tuple):
                term, weights[index] = term
            items.append(term)
        if not items:
            raise ValueError("cannot compute mean with no input")
        mean = np.zeros(self.vectors.shape[1], self.vectors.dtype)
        total_weight = 0.0
        input_rows = []
        for weight, item in zip(weights, items):
            if isinstance(item, np.ndarray):
                mean += weight * self._checked_vector(item)
            else:
                row = self.get_index(item)
                input_rows.append(row)
                mean += weight * self._unit_rows([row])[0]
            total_weight += abs(weight)
        if total_weight > 0:
            mean = mean / total_weight
        table = self._searched(restrict_vocab)
        if topn is None:
            return self._all_cosines(table, mean[np.newaxis])[0]
        return self._search(table, mean, topn, input_rows)

    def similar_by_vector(
        self, vector: np.ndarray, topn: int | None = 10, restrict_vocab: int | None = None
    ) -> list[tuple[Any, float]] | np.ndarray:
        """The ``topn`` keys nearest to ``vector`` by cosine (nothing excluded), as gensim's."""
        return self.most_similar(
            positive=[np.asarray(vector)], topn=topn, restrict_vocab=restrict_vocab
        )

    def similar_by_key(
        self, key: Hashable, topn: int | None = 10, restrict_vocab: int | None = None
    ) -> list[tuple[Any, float]] | np.ndarray:
        """``most_similar(positive=[key], ...)``, as gensim's."""
        return self.most_similar(positive=[key], topn=topn, restrict_vocab=restrict_vocab)

    similar_by_word = similar_by_key

    def most_similar_cosmul(
        self,
        positive: Term | Iterable[Term] = (),
        negative: Term | Iterable[Term] = (),
        topn: int | None = 10,
        restrict_vocab: int | None = None,
    ) -> list[tuple[Any, float]] | np.ndarray:
        """3CosMul (Levy and Goldberg 2014, eq. 4 with similarities shifted to [0, 1]): the keys
        maximising ``prod((1 + cos(x, p)) / 2) / (prod((1 + cos(x, n)) / 2) + 1e-6)``, as gensim's
        ``most_similar_cosmul`` (which ignores ``restrict_vocab``; here it restricts the search).

        Keys count with their unit vectors; vectors as they are (``dot(x, v) / |x|``). The keys
        given are never returned. ``KeyError`` names an unknown key; ``ValueError`` if
        ``positive`` is empty.
        """
        topn = _topn_or_none(topn)
        if topn is not None and topn < 1:
            return []
        positive, negative = _as_list(positive), _as_list(negative)
        if not positive:
            raise ValueError("cannot compute similarity with no input")
        table = self._searched(restrict_vocab)
        input_rows, queries, scales = [], [], []
        for item in positive + negative:
            if isinstance(item, np.ndarray):
                queries.append(self._checked_vector(item))
                scales.append(np.linalg.norm(item))  # dot(x, v) / |x| = |v| cos(x, v)
            else:
                row = self.get_index(item)
                input_rows.append(row)
                queries.append(self.vectors[row])
                scales.append(1.0)
        cosines = self._all_cosines(table, np.asarray(queries, dtype=table.dtype))
        cosines *= np.asarray(scales, dtype=table.dtype)[:, np.newaxis]
        shifted = (1 + cosines) / 2
        dists = np.prod(shifted[: len(positive)], axis=0) / (
            np.prod(shifted[len(positive) :], axis=0) + 0.000001
        )
        if topn is None:
            return dists
        skip = sorted(set(input_rows))
        k = min(topn, len(table))
        ids, scores = topk(
            dists[:, np.newaxis],
            np.ones(1, dists.dtype),
            k,
            metric="dot",
            exclude=np.asarray(skip, dtype=np.int64),
        )
        return [(self.index_to_key[i], float(s)) for i, s in zip(ids.tolist(), scores) if i >= 0]

    def similarity(self, w1: Hashable, w2: Hashable) -> np.floating:
        """Cosine similarity of two keys (a NumPy scalar, as gensim's); ``KeyError`` names an
        unknown key."""
        first = self.vectors[self.get_index(w1)]
        second = self.vectors[self.get_index(w2)]
        norms = np.linalg.norm(first) * np.linalg.norm(second)
        return first.dtype.type(np.dot(first, second) / norms) if norms > 0 else first.dtype.type(0)

    def distance(self, w1: Hashable, w2: Hashable) -> np.floating:
        """``1 - similarity(w1, w2)``."""
        return 1 - self.similarity(w1, w2)

    def doesnt_match(self, words: Iterable[Hashable]) -> Hashable:
        """The word furthest (cosine) from the mean of the words' unit vectors, as gensim's:
        unknown words are ignored (logged), ``ValueError`` if none is known."""
        words = list(words)
        used = [word for word in words if self.get_index(word, -1) >= 0]
        if len(used) != len(words):
            logger.warning(
                "vectors for words %s are not present in the model, ignoring these words",
                set(words) - set(used),
            )
        if not used:
            raise ValueError("cannot select a word from an empty list")
        units = self._unit_rows([self.get_index(word) for word in used])
        mean = units.mean(axis=0)
        ids, _ = topk(units, mean, len(used), metric="dot")
        return used[int(ids[-1])]

    def evaluate_word_analogies(
        self,
        path: str | os.PathLike,
        restrict_vocab: int = 300000,
        case_insensitive: bool = True,
    ) -> tuple[float, list[dict]]:
        """Accuracy on an analogy file in the word2vec ``questions-words.txt`` format, exactly
        as gensim's ``evaluate_word_analogies``: for each ``a b c expected`` line whose four
        words are among the first ``restrict_vocab`` keys, the prediction is the best of
        ``most_similar(positive=[b, c], negative=[a], topn=5)`` that is none of a, b, c (all
        questions searched in one batched :func:`fastembed.topk` call); lines with other words
        are skipped (out of vocabulary), malformed lines too.

        Returns
        -------
        score : float
            Correct / answered over all sections (0.0 if none answered).
        sections : list of dict
            One ``{"section": name, "correct": [(a, b, c, expected), ...], "incorrect": [...]}``
            per ``: name`` header, then ``"Total accuracy"``; words upper-cased when
            ``case_insensitive``.

        Raises
        ------
        ValueError
            A question before the first section header (the line named), or bad UTF-8.
        """
        normalise = str.upper if case_insensitive else (lambda word: word)
        ok_keys = self.index_to_key[:restrict_vocab]
        ok_vocab = {normalise(key): row for row, key in reversed(list(enumerate(ok_keys)))}
        sections: list[dict] = []
        questions = []  # (section, (a, b, c, expected), rows of b, c, a)
        oov = answered = 0
        with open(path, "rb") as file:
            for line_no, raw in enumerate(file):
                line = raw.decode("utf-8")
                if line.startswith(": "):
                    sections.append(
                        {"section": line.lstrip(": ").strip(), "correct": [], "incorrect": []}
                    )
                    continue
                if not sections:
                    raise ValueError(f"Missing section header before line #{line_no} in {path}")
                words = [normalise(word) for word in line.split()]
                if len(words) != 4:
                    continue
                answered += 1
                if any(word not in ok_vocab for word in words):
                    oov += 1
                    continue
                a, b, c, _ = words
                questions.append(
                    (sections[-1], tuple(words), [ok_vocab[b], ok_vocab[c], ok_vocab[a]])
                )
        if questions:
            rows = np.array([q[2] for q in questions], dtype=np.int64)
            units = [self._unit_rows(rows[:, i]) for i in range(3)]
            means = ((units[0] + units[1]) - units[2]).astype(np.float64) / 3.0
            table = self._searched(restrict_vocab)
            k = min(5, len(table))
            ids, _ = topk(table, means.astype(self.vectors.dtype), k, exclude=rows)
            for (section, words, _), found in zip(questions, ids.tolist()):
                ignore = set(words[:3])
                predicted = None
                for row in found:
                    if row < 0:
                        break
                    predicted = normalise(self.index_to_key[row])
                    if predicted in ok_vocab and predicted not in ignore:
                        break
                section["correct" if predicted == words[3] else "incorrect"].append(words)
        correct = [q for s in sections for q in s["correct"]]
        incorrect = [q for s in sections for q in s["incorrect"]]
        sections.append({"section": "Total accuracy", "correct": correct, "incorrect": incorrect})
        if answered:
            logger.info("Quadruplets with out-of-vocabulary words: %.1f%%", 100.0 * oov / answered)
        total = len(correct) + len(incorrect)
        return (len(correct) / total if total else 0.0), sections
