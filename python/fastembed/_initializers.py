"""Initialisers of a new table: the named schemes of Keras and PyTorch, or the user's callable."""

from __future__ import annotations

from typing import Callable, Union

import numpy as np

from ._memory import line_aligned_copy, line_aligned_empty

Initializer = Union[str, Callable[[tuple, np.random.Generator], np.ndarray]]

INIT_NAMES = ("uniform", "normal", "xavier_uniform")


def initial_table(
    init: Initializer, shape: tuple[int, int], dtype: np.dtype, seed: int | None
) -> np.ndarray:
    """A new C-contiguous table of ``shape`` and ``dtype`` drawn by ``init``.

    ``"uniform"``: U(-0.05, 0.05), Keras' default. ``"normal"``: N(0, 1), PyTorch's default.
    ``"xavier_uniform"``: U(-a, a) with ``a = sqrt(6 / (num_embeddings + embedding_dim))``
    (Glorot & Bengio; Keras ``glorot_uniform``). A callable gets ``(shape, rng)`` with
    ``rng = np.random.default_rng(seed)`` and must return an array of exactly ``shape``; it is
    converted to ``dtype``.
    """
    rng = np.random.default_rng(seed)
    if callable(init):
        return _from_callable(init, shape, dtype, rng)
    _require_init_name(init)
    # Drawn straight into a line-aligned table (the same numbers as an allocating draw).
    table = line_aligned_empty(shape, dtype)
    if init == "normal":
        return rng.standard_normal(dtype=dtype, out=table)
    limit = 0.05 if init == "uniform" else float(np.sqrt(6.0 / max(sum(shape), 1)))
    rng.random(dtype=dtype, out=table)
    table *= 2 * limit
    table -= limit
    return table


def _require_init_name(init: str) -> None:
    if init not in INIT_NAMES:
        raise ValueError(
            f"init must be one of {', '.join(map(repr, INIT_NAMES))} or a callable, got {init!r}"
        )


def _from_callable(
    init: Callable[[tuple, np.random.Generator], np.ndarray],
    shape: tuple[int, int],
    dtype: np.dtype,
    rng: np.random.Generator,
) -> np.ndarray:
    drawn = init(shape, rng)
    drawn_shape = np.shape(drawn)
    if drawn_shape != shape:
        raise ValueError(f"init callable returned shape {drawn_shape}, expected {shape}")
    kind = np.asarray(drawn).dtype.kind
    if kind not in "biuf":
        raise TypeError(
            f"init callable must return real numbers, got dtype {np.asarray(drawn).dtype}"
        )
    return line_aligned_copy(drawn, dtype)


# SplitMix64 (Steele, Lea & Flood): element k of the stream keyed by `key` is mix(key + k * gamma),
# so any element can be drawn alone, in any order, on any machine.
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_ROWS_PER_CHUNK = 1 << 14


def seed_key(seed: int | None) -> tuple[int, int]:
    """``(seed, key)``: the seed (a fresh one when None) and the 64-bit key of its stream."""
    sequence = np.random.SeedSequence(seed)
    return int(sequence.entropy), int(sequence.generate_state(1, np.uint64)[0])


def _splitmix(key: int, counters: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1), float64, one per uint64 counter."""
    with np.errstate(over="ignore"):
        x = np.uint64(key) + counters * _GAMMA
        x ^= x >> np.uint64(30)
        x *= _MIX1
        x ^= x >> np.uint64(27)
        x *= _MIX2
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def counter_rows(
    init: str, key: int, rows: range, num_embeddings: int, dim: int, dtype: np.dtype
) -> np.ndarray:
    """Rows ``rows`` of a new ``(num_embeddings, dim)`` table, each drawn from ``key`` and its
    row id alone (a counter-based generator): the rows of a table split in any way, drawn
    anywhere, make the same table. ``init`` as in :func:`initial_table` (names only); "normal"
    uses the Box-Muller transform of two uniforms per element.
    """
    _require_init_name(init)
    table = line_aligned_empty((len(rows), dim), dtype)
    columns = np.arange(dim, dtype=np.uint64)
    draws = 2 if init == "normal" else 1
    limit = 0.05 if init == "uniform" else float(np.sqrt(6.0 / max(num_embeddings + dim, 1)))
    for first in range(0, len(rows), _ROWS_PER_CHUNK):
        chunk = rows[first : first + _ROWS_PER_CHUNK]
        ids = np.arange(chunk.start, chunk.stop, chunk.step, dtype=np.uint64)
        counters = ((ids[:, None] * np.uint64(dim) + columns) * np.uint64(draws)).reshape(-1)
        uniform = _splitmix(key, counters)
        if init == "normal":
            radius = np.sqrt(-2.0 * np.log1p(-uniform))
            values = radius * np.cos(2.0 * np.pi * _splitmix(key, counters + np.uint64(1)))
        else:
            values = uniform * (2 * limit) - limit
        table[first : first + len(chunk)] = values.reshape(len(chunk), dim)
    return table
