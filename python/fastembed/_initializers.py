"""Initialisers of a new table: the named schemes of Keras and PyTorch, or the user's callable."""

from __future__ import annotations

from typing import Callable, Union

import numpy as np

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
    if init == "uniform":
        return _uniform(rng, shape, dtype, 0.05)
    if init == "normal":
        return rng.standard_normal(shape, dtype=dtype)
    if init == "xavier_uniform":
        return _uniform(rng, shape, dtype, float(np.sqrt(6.0 / max(sum(shape), 1))))
    raise ValueError(
        f"init must be one of {', '.join(map(repr, INIT_NAMES))} or a callable, got {init!r}"
    )


def _uniform(
    rng: np.random.Generator, shape: tuple[int, int], dtype: np.dtype, limit: float
) -> np.ndarray:
    table = rng.random(shape, dtype=dtype)
    table *= 2 * limit
    table -= limit
    return table


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
    return np.array(drawn, dtype=dtype, order="C", copy=True)
