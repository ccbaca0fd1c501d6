"""Functional API: argument normalisation around one call into the compiled kernels.

Calls into ``_core`` on the per-call paths pass their arguments by position: pybind11 takes a
slower path for a call with any keyword argument (a bag of one id: 0.8 -> 1.6 us in the call).
"""

from __future__ import annotations

import operator

import numpy as np
from numpy.typing import ArrayLike

from . import _core
from ._checks import (
    INT64_MAX,
    as_int,
    kernel_readable,
    optional_float,
    require_array,
    require_table_fits,
)
from ._ids import as_ids
from .quantized import QuantizedTable
from .sparse import RowSparseGrad


def _optional_index(value: object, name: str) -> int | None:
    """``None`` or an int (not a bool or float): TypeError otherwise; ValueError for an int
    beyond int64, which no table has (the binding checks the table's range)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or None, got {value!r}")
    try:
        index = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or None, got {value!r}") from None
    if not -INT64_MAX - 1 <= index <= INT64_MAX:
        raise ValueError(f"{name}={index} is out of range for any table")
    return index


def padding_row(padding_idx: object, num_embeddings: int) -> int | None:
    """The row ``padding_idx`` names, or None: PyTorch's rule, ``-num_embeddings <= padding_idx <
    num_embeddings``, negative values counting from the end."""
    index = _optional_index(padding_idx, "padding_idx")
    if index is None:
        return None
    if not -num_embeddings <= index < num_embeddings:
        raise ValueError(
            f"padding_idx={index} is out of range for num_embeddings={num_embeddings} "
            f"(valid: {-num_embeddings}..{num_embeddings - 1})"
        )
    return index + num_embeddings if index < 0 else index


def gather(
    weight: np.ndarray | QuantizedTable,
    ids: ArrayLike,
    out: np.ndarray | None = None,
    *,
    max_norm: float | None = None,
    norm_type: float = 2.0,
) -> np.ndarray:
    """Look up rows of a table: ``out[..., :] = weight[ids[...], :]``.

    Parameters
    ----------
    weight : ndarray of shape (num_embeddings, embedding_dim), or QuantizedTable
        The table, float32, float64, float16 or bfloat16 (``ml_dtypes.bfloat16``),
        C-contiguous. Read in place (an ``np.memmap`` or a read-only array works). A
        :class:`fastembed.QuantizedTable`'s rows are dequantized in registers into float32.
    ids : array_like of int
        Row indices of any shape (0-d, 1-d, ``(batch, seq)``, empty). int32/int64 C-contiguous
        arrays are read in place; other integer dtypes, lists and scalars are converted.
    out : ndarray, optional
        Destination of shape ``ids.shape + (embedding_dim,)`` and the dtype of ``weight``,
        C-contiguous and writeable; written in place and returned. For a float16 or bfloat16
        table it may also be float32: the rows are widened as they are copied.
    max_norm : float, optional
        PyTorch's ``max_norm``: first, every distinct looked-up row whose ``norm_type``-norm
        exceeds ``max_norm`` is scaled **in place in weight** by ``max_norm / (norm + 1e-7)``
        (once per call, however often its id occurs). Must be > 0. On a read-only ``weight``
        this is a ``ValueError`` if some row needs it, and nothing is written.
    norm_type : float, default 2.0
        The p of the p-norm for ``max_norm``: any p > 0, or ``inf`` (largest magnitude).

    Returns
    -------
    ndarray
        Shape ``ids.shape + (embedding_dim,)``, dtype of ``weight`` (of ``out`` if given;
        float32 for a quantized table).

    Raises
    ------
    IndexError
        An id is negative or ``>= num_embeddings`` (the message names it and its position).
    TypeError
        ids are not integers; ``weight`` or ``out`` is not a NumPy array, or its dtype is not
        supported or differs.
    ValueError
        ``weight`` is not 2-d or not C-contiguous; ``out`` has the wrong shape, is read-only,
        not C-contiguous or overlaps an input; ``max_norm <= 0``; ``norm_type <= 0``; a row
        needs renormalising but ``weight`` is read-only.

    Nothing is written to ``out`` or ``weight`` when an exception is raised.

    Examples
    --------
    >>> W = np.arange(15, dtype=np.float32).reshape(3, 5)
    >>> gather(W, [[0, 2], [1, 2]])[1, 0]
    array([5., 6., 7., 8., 9.], dtype=float32)
    """
    if out is not None:
        require_array(out, "out")
    if type(weight) is not np.ndarray:  # (a plain array, the usual table, skips two checks)
        if isinstance(weight, QuantizedTable):
            if max_norm is not None:
                raise ValueError(
                    "max_norm would renormalise rows in place: a QuantizedTable is read-only"
                )
            return weight.dequantize(ids, out)
        require_array(weight, "weight")
    if max_norm is None:  # the plain lookup: the shortest call (small batches are per-call bound)
        if norm_type != 2.0:
            optional_float(norm_type, "norm_type", required=True)
        if type(ids) is np.ndarray:
            # The kernel checks the ids' dtype and layout itself (before writing anything), so
            # an array it reads in place skips as_ids: 0.3 us of a 3 us lookup of 128 rows.
            # Any other array is converted below, and the call repeated.
            try:
                return _core.gather(weight, ids, out)
            except (TypeError, ValueError):
                pass
        return _core.gather(weight, as_ids(ids), out)
    return _core.gather(
        weight,
        as_ids(ids),
        out,
        max_norm=optional_float(max_norm, "max_norm"),
        norm_type=optional_float(norm_type, "norm_type", required=True),
    )


def scatter_add(
    grad_output: np.ndarray,
    ids: ArrayLike,
    num_embeddings: int,
    out: np.ndarray | None = None,
    *,
    padding_idx: int | None = None,
    scale_grad_by_freq: bool = False,
    accumulate: bool = False,
) -> np.ndarray:
    """Dense gradient of :func:`gather` w.r.t. the table.

    ``grad_weight[v, :] = sum of grad_output[..., :] over the positions where ids == v``,
    computed by sorting the ids and reducing each id's rows in position order: no atomics,
    and the result is bitwise identical for any thread count.

    Parameters
    ----------
    grad_output : ndarray of shape ``ids.shape + (embedding_dim,)``
        Gradient of the loss w.r.t. the lookup's output: float32, float64, float16 or
        bfloat16. Read in place when C-contiguous, otherwise copied once. float16 and bfloat16
        rows are summed in float32.
    ids : array_like of int
        The ids of the forward lookup (see :func:`gather`).
    num_embeddings : int
        Number of rows of the table.
    out : ndarray of shape (num_embeddings, embedding_dim), optional
        Overwritten (or added into, with ``accumulate=True``) and returned. Its dtype is that
        of the result: by default ``grad_output``'s; float32, float16 and bfloat16 may be
        mixed (each sum is computed in float32 and rounded once, when written).
    padding_idx : int, optional
        PyTorch's ``padding_idx``: this row's gradient is zero (with ``accumulate``, the row is
        left as it was). Negative values count from the end; must lie in
        ``[-num_embeddings, num_embeddings)``.
    scale_grad_by_freq : bool, default False
        PyTorch's ``scale_grad_by_freq``: each id's summed gradient is divided by the number of
        times it occurs in ``ids``.
    accumulate : bool, default False
        Add the gradient into ``out`` (required) instead of overwriting it: only the rows of ids
        that occur are read and written, as a framework accumulating ``.grad`` does.

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
    grad_output = kernel_readable(grad_output)
    dim = grad_output.shape[-1] if grad_output.ndim else 1
    require_table_fits(num_embeddings, dim, grad_output.dtype)
    return _core.scatter_add(
        grad_output,
        as_ids(ids),
        num_embeddings,
        out,
        _optional_index(padding_idx, "padding_idx"),
        bool(scale_grad_by_freq),
        bool(accumulate),
    )


def sparse_grad(
    grad_output: np.ndarray,
    ids: ArrayLike,
    num_embeddings: int,
    *,
    padding_idx: int | None = None,
    scale_grad_by_freq: bool = False,
) -> RowSparseGrad:
    """Row-sparse gradient of :func:`gather` w.r.t. the table.

    The same sums as :func:`scatter_add` (bitwise), but only for the ids that occur: the
    result holds the sorted distinct ids and their gradient rows, like PyTorch's
    ``sparse=True`` gradient after ``coalesce()``. It is written straight from the sorted runs
    of the ids, so time and memory are O(N * D) whatever ``num_embeddings`` is.

    Parameters
    ----------
    grad_output, ids, num_embeddings
        As for :func:`scatter_add`.
    padding_idx : int, optional
        This id is left out of the result (its gradient is zero), as PyTorch does; negative
        values count from the end.
    scale_grad_by_freq : bool, default False
        Each id's sum is divided by its number of occurrences.

    Returns
    -------
    RowSparseGrad
        ``indices`` (int64, strictly increasing), ``values`` of shape
        ``(len(indices), embedding_dim)`` in the dtype of ``grad_output`` (float16 and
        bfloat16 rows summed in float32, rounded once).

    Raises
    ------
    IndexError, TypeError, ValueError
        As for :func:`scatter_add`.

    Examples
    --------
    >>> g = sparse_grad(np.ones((3, 2), np.float32), [4, 1, 4], 1_000_000)
    >>> g.indices, g.values
    (array([1, 4]), array([[1., 1.],
           [2., 2.]], dtype=float32))
    """
    num_embeddings = as_int(num_embeddings, "num_embeddings", 0)
    indices, values = _core.sparse_grad(
        kernel_readable(grad_output),
        as_ids(ids),
        num_embeddings,
        _optional_index(padding_idx, "padding_idx"),
        bool(scale_grad_by_freq),
    )
    return RowSparseGrad._from_kernel(indices, values, num_embeddings)
