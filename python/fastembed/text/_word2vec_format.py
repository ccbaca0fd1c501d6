"""The word2vec file formats: reading (parsed in C++ on all threads) and writing, as gensim does."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import mmap
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .. import _core
from .._atomic import atomic_write
from .._checks import as_int

# Rows formatted per call when writing text: large enough to use every thread, small enough
# that the text of one block (~4 KB per 300-d row) stays a few tens of MB.
_TEXT_BLOCK_ROWS = 8192


@contextlib.contextmanager
def _file_bytes(path: str | os.PathLike) -> Iterator[Any]:
    """The file's bytes: memory-mapped (no copy), or decompressed for ``.gz`` / ``.bz2``."""
    name = os.fspath(path)
    if name.endswith((".gz", ".bz2")):
        opener = gzip.open if name.endswith(".gz") else bz2.open
        with opener(name, "rb") as compressed:
            yield compressed.read()
        return
    with open(name, "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            yield b""
            return
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            yield mapped


def read_word2vec(
    path: str | os.PathLike,
    *,
    binary: bool,
    limit: int | None,
    dtype: DTypeLike,
    no_header: bool,
) -> tuple[list[str], np.ndarray]:
    """Keys and vectors of a word2vec file; ``ValueError`` naming the path and line if malformed.

    Duplicate keys keep their first vector, as gensim keeps them.
    """
    if limit is not None:
        limit = as_int(limit, "limit", 0)
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    if binary and no_header:
        raise ValueError("no_header=True is for text files only (binary files have a header)")
    with _file_bytes(path) as data:
        try:
            keys, vectors = _core.read_word2vec(data, bool(binary), bool(no_header), limit, dtype)
        except ValueError as error:
            raise ValueError(f"{os.fspath(path)}: {error}") from None
    first_rows = dict(zip(reversed(keys), range(len(keys) - 1, -1, -1)))
    if len(first_rows) != len(keys):
        kept = np.array(sorted(first_rows.values()), dtype=np.int64)
        keys = [keys[i] for i in kept]
        vectors = np.ascontiguousarray(vectors[kept])
    return keys, vectors


def _checked_keys(keys: Sequence[Any]) -> list[str]:
    """The keys as str, refusing those that could not be read back (empty, or with a space or
    a newline)."""
    texts = [key if isinstance(key, str) else str(key) for key in keys]
    for text in texts:
        if not text or " " in text or "\n" in text:
            raise ValueError(
                f"key {text!r} cannot be written to a word2vec file (keys must be non-empty, "
                "without spaces or newlines)"
            )
    return texts


def write_word2vec(
    path: str | os.PathLike, keys: Sequence[Any], vectors: np.ndarray, *, binary: bool
) -> None:
    """Writes gensim's format: "<count> <dim>\\n", then per key "<key> " and the vector as
    float32 bytes (binary) or as NumPy's ``str`` of each value, space-separated (text)."""
    texts = _checked_keys(keys)
    count, dim = vectors.shape
    with atomic_write(path, "wb") as file:
        file.write(f"{count} {dim}\n".encode())
        for start in range(0, count, _TEXT_BLOCK_ROWS):
            block = slice(start, start + _TEXT_BLOCK_ROWS)
            if binary:
                rows = np.asarray(vectors[block], dtype=np.float32)
                file.write(
                    b"".join(
                        key.encode() + b" " + row.tobytes() for key, row in zip(texts[block], rows)
                    )
                )
            else:
                file.write(_core.format_word2vec_text(texts[block], vectors[block]))
