"""WordVectors: keys <-> rows of a float table, with gensim's ``KeyedVectors`` names."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np

from .._functional import gather
from ..layers import Embedding, check_table

# What gensim treats as one key (anything else given to ``wv[...]`` is a list of keys).
_KEY_TYPES = (str, bytes, int, np.integer)


class WordVectors:
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
