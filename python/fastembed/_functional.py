"""Functional API: argument normalisation around one call into the compiled kernels."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import _core
from ._checks import as_int, require_array, require_table_fits
from ._ids import as_ids


def gather(weight: np.ndarray, ids: ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
    """Look up rows of a table: ``out[..., :] = weight[ids[...], :]``.

    Parameters
    ----------
    weight : ndarray of shape (num_embeddings, embedding_dim)
        The table, float32 or float64, C-contiguous. Read in place (an ``np.memmap`` or a
        read-only array works).
    ids : array_like of int
        Row indices of any shape (0-d, 1-d, ``(batch, seq)``, empty). int32/int64 C-contiguous
        arrays are read in place; other integer dtypes, lists and scalars are converted.
    out : ndarray, optional
        Destination of shape ``ids.shape + (embedding_dim,)`` and the dtype of ``weight``,
        C-contiguous and writeable; written in place and returned.

    Returns
    -------
    ndarray
        Shape ``ids.shape + (embedding_dim,)``, dtype of ``weight``.

    Raises
    ------
    IndexError
        An id is negative or ``>= num_embeddings`` (the message names it and its position).
    TypeError
        ids are not integers; ``weight`` or ``out`` is not a NumPy array, or its dtype is not
        supported or differs.
    ValueError
        ``weight`` is not 2-d or not C-contiguous; ``out`` has the wrong shape, is read-only,
        not C-contiguous or overlaps an input.

    Nothing is written to ``out`` when an exception is raised.

    Examples
    --------
    >>> W = np.arange(15, dtype=np.float32).reshape(3, 5)
    >>> gather(W, [[0, 2], [1, 2]])[1, 0]
    array([5., 6., 7., 8., 9.], dtype=float32)
    """
    require_array(weight, "weight")
    if out is not None:
        require_array(out, "out")
    return _core.gather(weight, as_ids(ids), out)


def scatter_add(
    grad_output: np.ndarray,
    ids: ArrayLike,
    num_embeddings: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Dense gradient of :func:`gather` w.r.t. the table.

    ``grad_weight[v, :] = sum of grad_output[..., :] over the positions where ids == v``,
    computed by sorting the ids and reducing each id's rows in position order: no atomics,
    and the result is bitwise identical for any thread count.

    Parameters
    ----------
    grad_output : ndarray of shape ``ids.shape + (embedding_dim,)``
        Gradient of the loss w.r.t. the lookup's output, float32 or float64. Read in place
        when C-contiguous, otherwise copied once.
    ids : array_like of int
        The ids of the forward lookup (see :func:`gather`).
    num_embeddings : int
        Number of rows of the table.
    out : ndarray of shape (num_embeddings, embedding_dim), optional
        Overwritten (not accumulated into) and returned; dtype of ``grad_output``.

    Returns
    -------
    ndarray of shape (num_embeddings, embedding_dim)

    Raises
    ------
    IndexError, TypeError, ValueError
        As for :func:`gather`; ``TypeError`` also when ``num_embeddings`` is not an int,
        ``ValueError`` when it is negative or too large, or ``grad_output`` has the wrong shape.
        Nothing is written to ``out`` when an exception is raised.
    """
    num_embeddings = as_int(num_embeddings, "num_embeddings", 0)
    if out is not None:
        require_array(out, "out")
    grad_output = np.asarray(grad_output, order="C")  # no copy if already C-contiguous
    dim = grad_output.shape[-1] if grad_output.ndim else 1
    require_table_fits(num_embeddings, dim, grad_output.dtype)
    return _core.scatter_add(grad_output, as_ids(ids), num_embeddings, out)
