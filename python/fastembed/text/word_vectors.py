"""WordVectors: keys <-> rows of a float table, with gensim's ``KeyedVectors`` names."""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .._checks import as_int
from .._functional import gather
from ..layers import Embedding, check_table
from ._correlation import Correlation, pearson_spearman
from ._similarity import Similarity
from ._word2vec_format import read_word2vec, write_word2vec

# What gensim treats as one key (anything else given to ``wv[...]`` is a list of keys).
_KEY_TYPES = (str, bytes, int, np.integer)


class WordVectors(Similarity):
    """Word vectors: row ``i`` of ``vectors`` is the vector of ``index_to_key[i]``.

    Parameters
    ----------
    keys : iterable of hashable
        One distinct key (usually a word) per row of ``vectors``, in row order.
    vectors : ndarray of shape (len(keys), vector_size)
        A float32 or float64 C-contiguous table, kept as it is (no copy: an ``np.memmap``
        works, and writes to it are seen by every lookup). Lists are converted to float32.

    Raises
    ------
    ValueError
        If the number of keys is not the number of rows, or a key occurs twice (named).
    TypeError
        If ``vectors`` is not float32 or float64.
    """

    def __init__(self, keys: Iterable[Hashable], vectors: Any) -> None:
        if not isinstance(vectors, np.ndarray):
            vectors = np.asarray(vectors, dtype=np.float32)
        check_table(vectors, "vectors")
        index_to_key = list(keys)
        if len(index_to_key) != vectors.shape[0]:
            raise ValueError(
                f"{len(index_to_key)} keys for {vectors.shape[0]} rows of vectors "
                "(one key per row is needed)"
            )
        key_to_index = {key: index for index, key in enumerate(index_to_key)}
        if len(key_to_index) != len(index_to_key):
            seen: set = set()
            duplicate = next(k for k in index_to_key if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            raise ValueError(f"key {duplicate!r} occurs more than once in keys")
        self.index_to_key: list = index_to_key
        self.key_to_index: dict = key_to_index
        self.vectors: np.ndarray = vectors

    @property
    def vector_size(self) -> int:
        """The length of each vector."""
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.index_to_key)

    def __repr__(self) -> str:
        return (
            f"WordVectors({len(self)} keys, vector_size={self.vector_size}, "
            f"dtype={self.vectors.dtype})"
        )

    def get_index(self, key: Hashable, default: int | None = None) -> int:
        """The row of ``key``, as gensim's ``KeyedVectors.get_index``.

        An int (not itself a key) in ``0..len(self)-1`` is its own row; otherwise ``default`` if
        it is given (not None), else ``KeyError`` naming the key.
        """
        index = self.key_to_index.get(key, -1)
        if index >= 0:
            return index
        if (
            isinstance(key, (int, np.integer))
            and not isinstance(key, bool)
            and 0 <= key < len(self)
        ):
            return int(key)
        if default is not None:
            return default
        raise KeyError(f"key {key!r} not in vocabulary")

    def __contains__(self, key: Hashable) -> bool:
        return self.get_index(key, -1) >= 0

    def get_vector(self, key: Hashable) -> np.ndarray:
        """The vector of ``key``: a view of its row of ``vectors`` (``KeyError`` if unknown)."""
        return self.vectors[self.get_index(key)]

    def __getitem__(self, key_or_keys: Hashable | Iterable[Hashable]) -> np.ndarray:
        """``wv["word"]`` is that word's row (a view); ``wv[["a", "b"]]`` is a new
        ``(2, vector_size)`` array gathered by the C++ lookup. Unknown keys raise ``KeyError``."""
        if isinstance(key_or_keys, _KEY_TYPES):
            return self.get_vector(key_or_keys)
        rows = np.fromiter((self.get_index(key) for key in key_or_keys), dtype=np.int64)
        return gather(self.vectors, rows)

    def ids(
        self, texts_or_tokens: str | Iterable[Any], oov: Hashable | None = None
    ) -> np.ndarray | list[np.ndarray]:
        """The rows of words, ready for ``gather`` or ``wv.embedding()``.

        Parameters
        ----------
        texts_or_tokens : str, list of str, or list of lists of str
            A text (split on whitespace), a list of tokens (each looked up as it is), or a list
            of token lists (one result per list).
        oov : key or int, optional
            What an unknown word becomes: the row of this key (or this row, given an int). By
            default unknown words are dropped.

        Returns
        -------
        ndarray of int64, or a list of them for a list of token lists.
        """
        oov_row = None if oov is None else self.get_index(oov)
        if isinstance(texts_or_tokens, str):
            return self._rows(texts_or_tokens.split(), oov_row)
        items = list(texts_or_tokens)
        if items and all(not isinstance(item, str) for item in items):
            return [self._rows(tokens, oov_row) for tokens in items]
        return self._rows(items, oov_row)

    def _rows(self, tokens: Iterable[Hashable], oov_row: int | None) -> np.ndarray:
        lookup = self.key_to_index.get
        if oov_row is None:
            rows = (row for row in map(lookup, tokens) if row is not None)
        else:
            rows = (lookup(token, oov_row) for token in tokens)
        return np.fromiter(rows, dtype=np.int64)

    def embedding(self, **options: Any) -> Embedding:
        """A frozen :class:`fastembed.Embedding` over ``vectors`` itself (no copy).

        ``options`` are ``Embedding``'s (``padding_idx``, ``max_norm``, ...); pass
        ``trainable=True`` for a layer that trains these very vectors.
        """
        options.setdefault("trainable", False)
        return Embedding(weight=self.vectors, **options)

    @classmethod
    def load_word2vec_format(
        cls,
        path: str | os.PathLike,
        binary: bool = False,
        limit: int | None = None,
        dtype: DTypeLike = np.float32,
        no_header: bool = False,
    ) -> WordVectors:
        """Reads a file in the word2vec format, as gensim's ``KeyedVectors.load_word2vec_format``.

        Parameters
        ----------
        path : str or os.PathLike
            A text file ("<count> <dim>" header, then "<key> <v1> ... <vdim>" per line: what
            the word2vec C tool, gensim and fastText's ``.vec`` write), or with ``binary=True``
            the binary format (header line, then per vector "<key> " and dim float32s). Files
            ending in ``.gz`` or ``.bz2`` are decompressed first.
        binary : bool, default False
        limit : int, optional
            Read only the first ``limit`` vectors.
        dtype : float32 (default) or float64
            The table's dtype. Text numbers are rounded to it once, correctly (as ``strtof`` /
            ``strtod``), so a file loads to the same bits as in gensim.
        no_header : bool, default False
            A text file without the header line (GloVe): every line is a vector, the dimension
            is the first line's number of values.

        Raises
        ------
        ValueError
            For a malformed file, naming it and the line (the header is line 1): a header that
            is not two integers, fewer or more vectors than it announces, a row with too few or
            too many numbers, something that is not a number, a truncated binary file, a key
            that is not valid UTF-8. Nothing is returned then.

        Notes
        -----
        The file is memory-mapped and parsed in C++ on all threads (``fastembed.set_num_threads``).
        A key that occurs twice keeps its first vector, as in gensim.
        """
        keys, vectors = read_word2vec(
            path, binary=binary, limit=limit, dtype=dtype, no_header=no_header
        )
        return cls(keys, vectors)

    def save_word2vec_format(self, path: str | os.PathLike, binary: bool = False) -> None:
        """Writes the vectors in gensim's word2vec format, atomically (the old file is replaced
        only once the new one is complete).

        Text: "<count> <dim>" then "<key> <v1> ... <vdim>" per row, each value the shortest
        decimal that reads back to the same value (``str`` of a NumPy scalar, as gensim
        writes). Binary (``binary=True``): the header line, then per row "<key> " and the
        vector as float32 bytes, without separators (as gensim writes). Rows in ``index_to_key``
        order; keys must be non-empty and contain no space or newline (``ValueError``).
        """
        write_word2vec(path, self.index_to_key, self.vectors, binary=binary)

    def evaluate_word_pairs(
        self,
        path: str | os.PathLike,
        delimiter: str = "\t",
        restrict_vocab: int = 300000,
        case_insensitive: bool = True,
    ) -> tuple[Correlation, Correlation, float]:
        """How well cosine similarities agree with human judgements (gensim's
        ``evaluate_word_pairs``), e.g. on WordSim-353.

        Parameters
        ----------
        path : str or os.PathLike
            Lines "word_a<delimiter>word_b<delimiter>score"; lines starting with "#" and lines
            that do not split into three fields with a numeric score are skipped.
        restrict_vocab : int, default 300000
            Only the first ``restrict_vocab`` keys count as known.
        case_insensitive : bool, default True
            Compare upper-cased words; of several keys with the same upper-case form, the first
            (the most frequent in a frequency-sorted file) is used.

        Returns
        -------
        ((pearson, p_value), (spearman, p_value), oov_percent)
            The correlations between the scores and the model's similarities over the pairs
            whose words are both known, and the percentage of pairs skipped as unknown.
            p-values are two-sided, from SciPy when it is installed, else computed here.

        Raises
        ------
        ValueError
            If no pair could be evaluated.
        """
        restrict_vocab = as_int(restrict_vocab, "restrict_vocab", 0)
        known = self.index_to_key[:restrict_vocab]
        fold = str.upper if case_insensitive else str
        vocabulary = {fold(key): row for row, key in reversed(list(enumerate(known)))}
        pairs: list[tuple[int, int]] = []
        scores: list[float] = []
        unknown = 0
        with open(path, encoding="utf-8") as file:
            for line in file:
                if line.startswith("#"):
                    continue
                fields = [fold(field) for field in line.split(delimiter)]
                if len(fields) != 3:
                    continue
                try:
                    score = float(fields[2])
                except ValueError:
                    continue
                rows = vocabulary.get(fields[0]), vocabulary.get(fields[1])
                if None in rows:
                    unknown += 1
                    continue
                pairs.append(rows)  # type: ignore[arg-type]
                scores.append(score)
        if not pairs:
            raise ValueError(
                f"no word pair of {os.fspath(path)} could be evaluated (none has both words "
                f"among the first {restrict_vocab} keys, or the file is not in the format)"
            )
        rows = np.array(pairs, dtype=np.int64)
        pearson, spearman = pearson_spearman(
            np.array(scores), self._cosines(rows[:, 0], rows[:, 1])
        )
        return pearson, spearman, unknown / (len(pairs) + unknown) * 100

    def _cosines(self, rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
        """Cosine similarity of each pair of rows, rounded as gensim rounds it: each vector
        scaled by 1 / its norm in float64, rounded to the table's dtype, then one dot product
        per pair in that dtype (a zero vector stays zero)."""
        units = []
        for rows in (rows_a, rows_b):
            wide = gather(self.vectors, rows).astype(np.float64)
            norms = np.sqrt(np.einsum("ij,ij->i", wide, wide))[:, None]
            scaled = np.where(norms > 0, wide * (1.0 / np.where(norms > 0, norms, 1.0)), wide)
            units.append(scaled.astype(self.vectors.dtype))
        return np.array([np.dot(a, b) for a, b in zip(*units)], dtype=np.float64)
