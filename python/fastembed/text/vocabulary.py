"""Vocabulary and pad_sequences: text -> ids with Keras' ``Tokenizer`` semantics."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .._atomic import atomic_write
from .._checks import as_int

# Keras' default ``filters``: every ASCII punctuation mark except the apostrophe, plus tab and
# newline.
KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'

_FORMAT = "fastembed.Vocabulary"


class Vocabulary:
    """Words <-> ids, fitted on texts as Keras' ``Tokenizer.fit_on_texts`` does.

    Ids start at 1 (0 is padding), in descending order of count, ties broken by first
    occurrence; ``oov_token``, when given, is id 1. Build one with :meth:`from_texts`.

    Attributes
    ----------
    word_counts : dict
        Every word seen, in order of first occurrence, with its count.
    word_index : dict
        word -> id for the words kept (count >= ``min_count``), ``oov_token`` first.
    index_word : dict
        id -> word, the inverse of ``word_index``.
    """

    def __init__(
        self,
        word_counts: dict[str, int],
        *,
        num_words: int | None = None,
        min_count: int = 1,
        lower: bool = True,
        filters: str = KERAS_FILTERS,
        split: str = " ",
        oov_token: str | None = None,
    ) -> None:
        if num_words is not None:
            num_words = as_int(num_words, "num_words", 0)
        if not isinstance(filters, str):
            raise TypeError(f"filters must be a str, got {type(filters).__name__}")
        if not isinstance(split, str) or not split:
            raise ValueError(f"split must be a non-empty str, got {split!r}")
        if oov_token is not None and not isinstance(oov_token, str):
            raise TypeError(f"oov_token must be a str or None, got {type(oov_token).__name__}")
        self.num_words = num_words or None  # Keras: 0 and None both mean "no limit"
        self.min_count = as_int(min_count, "min_count", 1)
        self.lower = bool(lower)
        self.filters = filters
        self.split = split
        self.oov_token = oov_token
        self.word_counts: dict[str, int] = dict(word_counts)
        self._table = str.maketrans(dict.fromkeys(filters, split))
        # Keras: the OOV token first, then words by descending count (a stable sort, so ties
        # keep their first-occurrence order); a dict built from that list, so an OOV token that
        # also occurs in the texts ends up with the id of its later position, as in Keras.
        ranked = sorted(self.word_counts.items(), key=lambda item: item[1], reverse=True)
        ordered = [] if oov_token is None else [oov_token]
        ordered += [word for word, count in ranked if count >= self.min_count]
        self.word_index: dict[str, int] = dict(zip(ordered, range(1, len(ordered) + 1)))
        self.index_word: dict[int, str] = {index: word for word, index in self.word_index.items()}

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str | Sequence[str]],
        *,
        num_words: int | None = None,
        min_count: int = 1,
        lower: bool = True,
        filters: str = KERAS_FILTERS,
        split: str = " ",
        oov_token: str | None = None,
    ) -> Vocabulary:
        """Counts the words of ``texts`` and numbers them (Keras ``Tokenizer.fit_on_texts``).

        Parameters
        ----------
        texts : iterable of str (or of token lists, used as they are, lower-cased if ``lower``)
            Read once.
        num_words : int, optional
            Keras' limit: ``texts_to_sequences`` keeps only ids below ``num_words`` (others are
            dropped, or become the OOV id). ``word_index`` still holds every word.
        min_count : int, default 1
            Words seen fewer times get no id (they are out of vocabulary).
        lower : bool, default True
            Lower-case texts first.
        filters : str
            Characters replaced by ``split`` before splitting (Keras' punctuation by default).
        split : str, default " "
            The separator; empty pieces are dropped.
        oov_token : str, optional
            If given, it is id 1 and stands in for every unknown word in ``texts_to_sequences``.
        """
        vocabulary = cls(
            {},
            num_words=num_words,
            min_count=min_count,
            lower=lower,
            filters=filters,
            split=split,
            oov_token=oov_token,
        )  # checks the options before the texts are read
        _require_collection(texts)
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(vocabulary._words(text))
        return cls(
            counts,
            num_words=num_words,
            min_count=min_count,
            lower=lower,
            filters=filters,
            split=split,
            oov_token=oov_token,
        )

    def _words(self, text: str | Sequence[str]) -> list[str]:
        """Keras' ``text_to_word_sequence``: lower-case, filters -> split, split, drop empties."""
        if isinstance(text, str):
            if self.lower:
                text = text.lower()
            return [word for word in text.translate(self._table).split(self.split) if word]
        if isinstance(text, (list, tuple)):
            return [word.lower() for word in text] if self.lower else list(text)
        raise TypeError(f"each text must be a str or a list of tokens, got {type(text).__name__}")

    @property
    def _oov_index(self) -> int | None:
        return None if self.oov_token is None else self.word_index.get(self.oov_token)

    def __len__(self) -> int:
        """The ``num_embeddings`` an ``Embedding`` over these sequences needs: the largest id
        ``texts_to_sequences`` can emit, plus one."""
        largest = max(self.index_word, default=0)
        if self.num_words is not None:
            largest = min(largest, self.num_words - 1)
        if self._oov_index is not None:
            largest = max(largest, self._oov_index)
        return largest + 1

    def __repr__(self) -> str:
        return (
            f"Vocabulary({len(self.word_index)} words, num_words={self.num_words}, "
            f"oov_token={self.oov_token!r})"
        )

    def texts_to_sequences(self, texts: Iterable[str | Sequence[str]]) -> list[list[int]]:
        """Each text as a list of ids (Keras ``texts_to_sequences``): unknown words, and ids
        ``>= num_words``, are dropped, or become the OOV id when there is an ``oov_token``."""
        _require_collection(texts)
        oov = self._oov_index
        index = self._emittable_index()
        lookup = index.get
        if oov is None:
            return [[i for i in map(lookup, self._words(text)) if i is not None] for text in texts]
        return [[lookup(word, oov) for word in self._words(text)] for text in texts]

    def _emittable_index(self) -> dict[str, int]:
        """``word_index`` without the ids that ``num_words`` cuts off."""
        if self.num_words is None:
            return self.word_index
        return {word: i for word, i in self.word_index.items() if i < self.num_words}

    def sequences_to_texts(self, sequences: Iterable[Iterable[int]]) -> list[str]:
        """Ids back to space-joined words (Keras ``sequences_to_texts``): ids with no word (0
        included) and ids ``>= num_words`` are dropped, or become the OOV token."""
        oov = self.oov_token if self._oov_index is not None else None
        words = self.index_word
        if self.num_words is not None:
            words = {i: word for i, word in words.items() if i < self.num_words}
        texts = []
        for sequence in sequences:
            found = (words.get(int(i), oov) for i in sequence)
            texts.append(" ".join(word for word in found if word is not None))
        return texts

    def save(self, path: str | os.PathLike) -> None:
        """Writes the vocabulary as JSON (options and word counts), atomically."""
        document = {
            "format": _FORMAT,
            "version": 1,
            "config": self._config(),
            "word_counts": list(self.word_counts.items()),
        }
        with atomic_write(path, "w", encoding="utf-8") as file:
            json.dump(document, file, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        """A vocabulary written by :meth:`save` (``ValueError`` for any other file)."""
        with open(path, encoding="utf-8") as file:
            try:
                document = json.load(file)
            except json.JSONDecodeError as error:
                raise ValueError(f"{os.fspath(path)} is not a Vocabulary file: {error}") from None
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise ValueError(
                f"{os.fspath(path)} is not a Vocabulary file (no {_FORMAT!r} format tag)"
            )
        if document.get("version") != 1:
            raise ValueError(
                f"{os.fspath(path)}: unsupported Vocabulary version {document.get('version')!r}"
            )
        counts = document.get("word_counts")
        if not isinstance(counts, list) or not all(
            isinstance(pair, list)
            and len(pair) == 2
            and isinstance(pair[0], str)
            and isinstance(pair[1], int)
            for pair in counts
        ):
            raise ValueError(
                f"{os.fspath(path)}: word_counts must be a list of [word, count] pairs"
            )
        return cls(dict(counts), **document.get("config", {}))

    def _config(self) -> dict[str, Any]:
        return {
            "num_words": self.num_words,
            "min_count": self.min_count,
            "lower": self.lower,
            "filters": self.filters,
            "split": self.split,
            "oov_token": self.oov_token,
        }


def _require_collection(texts: object) -> None:
    """TypeError for one str given where a list of texts belongs (it would be read as texts of
    one character each)."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            f"texts must be a list of texts, got one {type(texts).__name__}: wrap it in [ ]"
        )


def pad_sequences(
    sequences: Sequence[Sequence[Any]],
    maxlen: int | None = None,
    dtype: DTypeLike = "int32",
    padding: str = "pre",
    truncating: str = "pre",
    value: Any = 0,
) -> np.ndarray:
    """Sequences of different lengths as one ``(len(sequences), maxlen)`` array, as Keras'
    ``pad_sequences``.

    Parameters
    ----------
    sequences : list of sequences
        Each a list or array (of ids, or of equal-shaped items).
    maxlen : int, optional
        Length of every row; by default the longest sequence's.
    dtype : dtype, default "int32"
    padding : {"pre", "post"}
        Pad before (default) or after each sequence.
    truncating : {"pre", "post"}
        Cut longer sequences at the start (default) or the end.
    value : scalar, default 0
        The padding value.
    """
    if padding not in ("pre", "post"):
        raise ValueError(f'Padding type "{padding}" not understood (use "pre" or "post")')
    if truncating not in ("pre", "post"):
        raise ValueError(f'Truncating type "{truncating}" not understood (use "pre" or "post")')
    if not hasattr(sequences, "__len__"):
        raise ValueError("sequences must be a list of sequences")
    lengths = []
    item_shape: tuple[int, ...] | None = None  # that of the first non-empty sequence's items
    for sequence in sequences:
        try:
            length = len(sequence)
        except TypeError:
            raise ValueError(f"sequences must be a list of sequences, found {sequence!r}") from None
        if length and item_shape is None:
            item_shape = np.asarray(sequence).shape[1:]
        lengths.append(length)
    if maxlen is None:
        maxlen = max(lengths, default=0)
    maxlen = as_int(maxlen, "maxlen", 0)
    dtype = np.dtype(dtype)
    item_shape = item_shape or ()
    if isinstance(value, str) and dtype.kind not in "OUS":
        raise ValueError(f"value={value!r} is a str but dtype {dtype} is not a string dtype")
    result = np.full((len(sequences), maxlen) + item_shape, value, dtype=dtype)
    if maxlen == 0:
        return result
    for row, (sequence, length) in enumerate(zip(sequences, lengths)):
        if not length:
            continue
        kept = sequence[-maxlen:] if truncating == "pre" else sequence[:maxlen]
        kept = np.asarray(kept, dtype=dtype)
        if kept.shape[1:] != item_shape:
            raise ValueError(
                f"sequence {row} has items of shape {kept.shape[1:]}, the first non-empty "
                f"sequence's are {item_shape}"
            )
        if padding == "post":
            result[row, : len(kept)] = kept
        else:
            result[row, -len(kept) :] = kept
    return result
