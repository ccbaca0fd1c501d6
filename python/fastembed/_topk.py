"""fastembed.topk: the rows of a table nearest to each query, by dot product or cosine."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import _core
from ._checks import as_int, require_array
from ._ids import as_ids

_METRICS = ("cosine", "dot")


def _as_queries(queries: ArrayLike, dtype: np.dtype) -> np.ndarray:
    array = np.asarray(queries)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"queries must be real numbers, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise ValueError(
            f"queries must be 1-d (dim,) or 2-d (num_queries, dim), got shape {array.shape}"
        )
    return np.ascontiguousarray(array, dtype=dtype)


def _out_pair(out: object) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"out must be a pair (ids_out, scores_out) of arrays, got {out!r}")
    return require_array(out[0], "out[0] (ids)"), require_array(out[1], "out[1] (scores)")


def topk(
    table: np.ndarray,
    queries: ArrayLike,
    k: int,
    *,
    metric: str = "cosine",
    exclude: ArrayLike | None = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``table`` that score highest against each query, best first.

    Blocks of the table are scored against blocks of queries by BLAS (the OpenBLAS of the
    ``scipy-openblas32`` package, single-threaded inside fastembed's thread pool) and each block
    is scanned into a per-query top-k in C++ on all threads: the ``(Q, V)`` score matrix is never
    materialised. Results are bitwise identical for any thread count.

    Parameters
    ----------
    table : ndarray of shape (V, D)
        float32 or float64, C-contiguous; read in place (an ``np.memmap`` works).
    queries : array_like of shape (Q, D) or (D,)
        Converted to the table's dtype (a copy of the queries only, when needed). A 1-d query
        gives 1-d results of shape ``(k,)``.
    k : int
        How many rows per query, ``1 <= k <= V``.
    metric : {"cosine", "dot"}
        ``"dot"``: ``table[v] @ q``. ``"cosine"``: ``(table[v] @ (q / |q|)) / |table[v]|``, row
        norms computed during the search from the table as it is now (nothing is cached, so a
        table updated in place is never searched with stale norms); a zero row or query scores 0.
    exclude : array_like of int, shape (Q, m) (or (m,) for a 1-d query), optional
        Row ids each query must not return, ``-1`` for none (rows of different lengths pad
        with -1). If fewer than ``k`` rows remain, the missing results are id ``-1`` with score
        ``-inf``.
    out : (ndarray, ndarray), optional
        ``(ids_out, scores_out)``: int64 and the table's dtype, both of the result's shape and
        C-contiguous; written in place and returned (as the same two arrays).

    Returns
    -------
    ids : ndarray of int64, shape (Q, k)
        Row ids, best first; equal scores are ordered by smaller id, NaN scores come last.
    scores : ndarray of the table's dtype, shape (Q, k)

    Raises
    ------
    ValueError
        ``k`` outside ``1..V``; ``metric`` not ``"cosine"`` or ``"dot"``; ``queries`` of another
        width than the table; a table that is not 2-d or not C-contiguous; ``exclude`` or ``out``
        of the wrong shape, or ``out`` read-only, non-contiguous or overlapping an input.
    TypeError
        A table that is not float32/float64; non-numeric queries; non-integer ``exclude``; ``out``
        that is not a pair of arrays of dtypes int64 and the table's.
    IndexError
        An ``exclude`` id outside ``-1..V-1`` (the message names it and its position).

    Nothing is written to ``out`` when an exception is raised.

    Examples
    --------
    >>> table = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    >>> topk(table, [[1, 0.2]], 2)
    (array([[0, 2]]), array([[0.9805807, 0.8320503]], dtype=float32))
    """
    require_array(table, "table")
    if table.dtype not in (np.float32, np.float64):
        raise TypeError(f"table must be float32 or float64, got {table.dtype}")
    if not isinstance(metric, str) or metric not in _METRICS:
        raise ValueError(f"metric must be 'cosine' or 'dot', got {metric!r}")
    k = as_int(k, "k", 1)
    query_array = _as_queries(queries, table.dtype)
    single = query_array.ndim == 1
    if single:
        query_array = query_array[np.newaxis]
    exclude_array = None
    if exclude is not None:
        exclude_array = as_ids(exclude).astype(np.int64, copy=False)
        if single and exclude_array.ndim == 1:
            exclude_array = exclude_array[np.newaxis]
    ids_out = scores_out = None
    if out is not None:
        ids_out, scores_out = _out_pair(out)
        if single:  # views of the caller's arrays, checked (shape included) by the binding
            ids_out = ids_out[np.newaxis] if ids_out.ndim == 1 else ids_out
            scores_out = scores_out[np.newaxis] if scores_out.ndim == 1 else scores_out
    ids, scores = _core.topk(table, query_array, k, metric, exclude_array, ids_out, scores_out)
    if out is not None:
        return out[0], out[1]
    return (ids[0], scores[0]) if single else (ids, scores)
