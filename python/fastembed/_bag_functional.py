"""Functional API of pooled lookups (``embedding_bag``): argument checks, then one kernel call
(arguments by position, as in ``_functional``)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from . import _core
from ._checks import as_int, kernel_readable, optional_float, require_array, require_table_fits
from ._dtypes import is_reduced
from ._functional import padding_row
from ._ids import as_ids, is_kernel_index_array
from .quantized import QuantizedTable
from .sparse import RowSparseGrad

BAG_MODES = ("sum", "mean", "max")


class Bags(NamedTuple):
    """Checked bag arguments in the kernels' terms.

    ``ids`` is the C-contiguous int32/int64 id array in the caller's shape (so that an error
    names an id by its index there); bag ``b`` holds flat positions ``bounds[b]:bounds[b + 1]``
    of it. ``per_sample_weights`` is flat or None.
    """

    ids: np.ndarray
    ids_shape: tuple
    bounds: np.ndarray
    per_sample_weights: np.ndarray | None

    @property
    def num_bags(self) -> int:
        return len(self.bounds) - 1


def check_mode(mode: str) -> str:
    if mode not in BAG_MODES:
        raise ValueError(f"mode must be one of {BAG_MODES}, got {mode!r}")
    return mode


def padding_argument(padding_idx: int | None, num_embeddings: int) -> int:
    """``padding_idx`` as the kernels take it: in ``[0, num_embeddings)``, or -1 for none.

    Negative values count from the end, as in PyTorch.
    """
    row = padding_row(padding_idx, num_embeddings)
    return -1 if row is None else row


def pool(
    weight: np.ndarray | QuantizedTable,
    bags: Bags,
    mode: str,
    padding: int,
    out: np.ndarray | None,
    argmax: np.ndarray | None,
    max_norm: float | None,
    norm_type: float,
) -> np.ndarray:
    """The one call into the pooled kernel, for plain, half-precision and quantized tables."""
    weights = arithmetic_weights(bags.per_sample_weights, weight.dtype)
    if isinstance(weight, QuantizedTable):
        if max_norm is not None:
            raise ValueError(
                "max_norm would renormalise rows in place: a QuantizedTable is read-only"
            )
        return _core.embedding_bag(
            weight.packed, bags.ids, bags.bounds, mode, weights, padding, out, argmax,
            None, 2.0, weight.bits,
        )  # fmt: skip
    return _core.embedding_bag(
        weight, bags.ids, bags.bounds, mode, weights, padding, out, argmax, max_norm, norm_type
    )  # fmt: skip


def arithmetic_weights(weights: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    """Per-sample weights as the kernels read them beside rows of ``dtype``: in its arithmetic
    dtype, so weights given in float16 / bfloat16 for such rows are widened to float32 (a
    quantized table's rows are float32 already)."""
    if weights is not None and is_reduced(dtype) and weights.dtype == dtype:
        return weights.astype(np.float32)
    return weights


def bag_arguments(
    ids: ArrayLike,
    offsets: ArrayLike | None,
    include_last_offset: bool,
    per_sample_weights: ArrayLike | None,
    mode: str,
) -> Bags:
    """Check ids/offsets/per_sample_weights as PyTorch's ``embedding_bag`` defines them.

    ``ids`` 2-d ``(num_bags, bag_size)`` with ``offsets=None`` (fixed-length bags), or 1-d with
    ``offsets``: bag ``b`` starts at ``offsets[b]`` and ends where the next starts (the last
    at ``len(ids)``, or at ``offsets[-1]`` when ``include_last_offset``). Every error is raised
    before anything is written.
    """
    check_mode(mode)
    ids = as_ids(ids)
    if offsets is None:
        if ids.ndim != 2:
            raise ValueError(
                f"ids must be 2-d (num_bags, bag_size) when offsets is None, got shape {ids.shape}"
            )
        num_bags, bag_size = ids.shape
        bounds = np.arange(num_bags + 1, dtype=np.int64) * bag_size
    else:
        if ids.ndim != 1:
            raise ValueError(f"ids must be 1-d when offsets are given, got shape {ids.shape}")
        bounds = _bounds_from_offsets(offsets, include_last_offset, ids.size)
    weights = None
    if per_sample_weights is not None:
        if mode != "sum":
            raise ValueError(
                f"per_sample_weights are only supported with mode='sum', got mode={mode!r}"
            )
        weights = np.asarray(per_sample_weights)
        if weights.shape != ids.shape:
            raise ValueError(
                f"per_sample_weights must have the shape of ids {ids.shape}, got {weights.shape}"
            )
        weights = np.ascontiguousarray(weights)
        weights = weights if weights.ndim == 1 else weights.reshape(-1)
    return Bags(ids, ids.shape, bounds, weights)


def _bounds_from_offsets(offsets: ArrayLike, include_last_offset: bool, n: int) -> np.ndarray:
    if is_kernel_index_array(offsets) and offsets.ndim == 1:
        # The usual offsets, checked and copied in one compiled pass (the same rules and
        # messages as below, which take ten NumPy calls).
        return _core.bag_bounds(offsets, n, include_last_offset)
    given = np.asarray(offsets)
    if given.size == 0 and not isinstance(offsets, np.ndarray):
        given = given.astype(np.int64)  # np.asarray([]) is float64
    if given.dtype == object and given.ndim == 1:  # Python ints too large for int64
        for k, value in enumerate(given.tolist()):
            if type(value) is int and not -(2**63) <= value < 2**63:
                raise ValueError(f"offsets[{k}]={value} is outside int64 (there are {n} ids)")
    if given.dtype.kind not in "iu":
        raise TypeError(f"offsets must be integers, got dtype {given.dtype}")
    if given.ndim != 1:
        raise ValueError(f"offsets must be 1-d, got shape {given.shape}")
    if include_last_offset and given.size == 0:
        raise ValueError("offsets must hold at least one entry when include_last_offset=True")
    if given.size and given[0] != 0:
        raise ValueError(f"offsets[0] must be 0, got {given[0]}")
    # Compared in their own dtype (no cast that could wrap), and without temporaries of
    # int64 size: for 50k offsets, diff of an int64 copy and np.append took 0.3 ms a call
    # (fresh pages each time), 5% of a bag lookup of 1M ids.
    decreasing = given[1:] < given[:-1]
    if decreasing.any():
        k = int(np.argmax(decreasing)) + 1
        raise ValueError(
            f"offsets must be non-decreasing, but offsets[{k}]={given[k]} < "
            f"offsets[{k - 1}]={given[k - 1]}"
        )
    if given.size and given[-1] > n:
        raise ValueError(f"offsets[-1]={given[-1]} is larger than the number of ids, {n}")
    bounds = np.empty(given.size + (0 if include_last_offset else 1), dtype=np.int64)
    bounds[: given.size] = given
    bounds[given.size :] = n
    return bounds


def embedding_bag(
    weight: np.ndarray | QuantizedTable,
    ids: ArrayLike,
    offsets: ArrayLike | None = None,
    *,
    mode: str = "mean",
    per_sample_weights: ArrayLike | None = None,
    include_last_offset: bool = False,
    padding_idx: int | None = None,
    out: np.ndarray | None = None,
    return_argmax: bool = False,
    max_norm: float | None = None,
    norm_type: float = 2.0,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Pool the rows of bags of ids into one row per bag (PyTorch's ``F.embedding_bag``).

    Lookup and pooling are fused: each bag's rows are read from the table straight into its
    output row, with no ``(len(ids), embedding_dim)`` intermediate.

    Parameters
    ----------
    weight : ndarray of shape (num_embeddings, embedding_dim), or QuantizedTable
        The table, float32, float64, float16 or bfloat16, C-contiguous; only read. float16
        and bfloat16 rows are pooled in float32 and the result rounded once into the table's
        dtype (or written as float32 into a float32 ``out``). A
        :class:`fastembed.QuantizedTable`'s rows are dequantized in registers; the result is
        float32. Its sums and means add each row's codes times its scale (times its weight)
        in fused multiply-adds and its bias once per bag: within float32 rounding of the
        pooled ``dequantize()`` rows, not bit for bit (max compares the dequantized rows).
    ids : array_like of int
        2-d ``(num_bags, bag_size)`` when ``offsets`` is None (bags of one length), else 1-d.
    offsets : array_like of int, optional
        Start of each bag in the 1-d ``ids``: bag ``b`` is ``ids[offsets[b]:offsets[b + 1]]``,
        the last one running to the end of ``ids``. ``offsets[0]`` must be 0, the offsets
        non-decreasing and at most ``len(ids)``; equal neighbours make an empty bag.
    mode : {"sum", "mean", "max"}, default "mean"
        How a bag's rows are pooled: their sum, mean or element-wise maximum (the mean by
        default, as in PyTorch).
    per_sample_weights : array_like, optional
        One weight per id, the dtype of ``weight`` (float32 also for a float16, bfloat16 or
        quantized table): each row is scaled by its weight before summing (``mode="sum"``
        only).
    include_last_offset : bool, default False
        ``offsets`` has one more entry, the end of the last bag (CSR style); normally
        ``len(ids)``, and ids past it belong to no bag.
    padding_idx : int, optional
        Entries with this id are skipped: they add nothing and do not count toward the mean.
        Negative values count from the end.
    out : ndarray of shape (num_bags, embedding_dim), optional
        Written in place and returned; dtype of ``weight`` (or float32), C-contiguous.
    return_argmax : bool, default False
        ``mode="max"`` only: also return an int64 ``(num_bags, embedding_dim)`` array holding,
        for each element, the position in the flat ``ids`` of the entry that gave the maximum
        (the first one on ties), -1 for an empty bag. :func:`embedding_bag_backward` needs it.
    max_norm : float, optional
        PyTorch's ``max_norm``: before pooling, every distinct looked-up row (padding
        included) whose ``norm_type``-norm exceeds ``max_norm`` is scaled **in place in
        weight** by ``max_norm / (norm + 1e-7)``, as :func:`fastembed.gather` does.
    norm_type : float, default 2.0
        The p of the p-norm for ``max_norm``: any p > 0, or ``inf``.

    Returns
    -------
    ndarray of shape (num_bags, embedding_dim), or (that, argmax) with ``return_argmax``
        An empty bag (or one holding only ``padding_idx``) gives zeros.

    Raises
    ------
    IndexError
        An id is out of range.
    TypeError
        Non-integer ids or offsets; unsupported or mismatched dtypes.
    ValueError
        Bad offsets (first not 0, decreasing, past the end of ids), ids of the wrong rank,
        per_sample_weights with another mode or of the wrong shape, a bad ``out``;
        ``max_norm <= 0``, ``norm_type <= 0``, or a row to renormalise in a read-only table.
        Nothing is written when an exception is raised.

    Examples
    --------
    >>> W = np.arange(8, dtype=np.float32).reshape(4, 2)
    >>> embedding_bag(W, [0, 1, 3], [0, 2], mode="sum")
    array([[2., 4.],
           [6., 7.]], dtype=float32)
    """
    if not isinstance(weight, QuantizedTable):
        require_array(weight, "weight")
    if out is not None:
        require_array(out, "out")
    bags = bag_arguments(ids, offsets, include_last_offset, per_sample_weights, mode)
    if return_argmax and mode != "max":
        raise ValueError(f"return_argmax needs mode='max', got mode={mode!r}")
    shape = weight.shape if len(getattr(weight, "shape", ())) == 2 else (0, 0)
    padding = padding_argument(padding_idx, shape[0])
    argmax = None
    if return_argmax:
        argmax = np.empty((bags.num_bags, shape[1]), dtype=np.int64)
    result = pool(
        weight,
        bags,
        mode,
        padding,
        out,
        argmax,
        optional_float(max_norm, "max_norm"),
        optional_float(norm_type, "norm_type", required=True),
    )
    return (result, argmax) if return_argmax else result


def embedding_bag_per_sample_weights_backward(
    grad_output: np.ndarray,
    weight: np.ndarray,
    ids: ArrayLike,
    offsets: ArrayLike | None = None,
    *,
    include_last_offset: bool = False,
    padding_idx: int | None = None,
) -> np.ndarray:
    """Gradient w.r.t. ``per_sample_weights`` of ``embedding_bag(..., mode="sum")``.

    ``result[i] = grad_output[bag of i] . weight[ids[i]]``; 0 for ``padding_idx`` entries and
    for ids in no bag. Pass the table as it was in the forward (before any update).

    ``grad_output`` has the dtype of ``weight``, or float32 for a float16 or bfloat16 table.

    Returns
    -------
    ndarray of the shape of ``ids``, in the arithmetic dtype of ``weight`` (float32 for a
    float16 or bfloat16 table).
    """
    require_array(weight, "weight")
    bags = bag_arguments(ids, offsets, include_last_offset, None, "sum")
    num_embeddings = weight.shape[0] if getattr(weight, "ndim", 0) == 2 else 0
    padding = padding_argument(padding_idx, num_embeddings)
    result = _core.embedding_bag_per_sample_weights_backward(
        kernel_readable(grad_output), weight, bags.ids, bags.bounds, padding
    )
    return result.reshape(bags.ids_shape)


def embedding_bag_backward(
    grad_output: np.ndarray,
    ids: ArrayLike,
    offsets: ArrayLike | None = None,
    *,
    num_embeddings: int,
    mode: str = "mean",
    per_sample_weights: ArrayLike | None = None,
    include_last_offset: bool = False,
    padding_idx: int | None = None,
    argmax: np.ndarray | None = None,
    out: np.ndarray | None = None,
    accumulate: bool = False,
    sparse: bool = False,
    scale_grad_by_freq: bool = False,
) -> np.ndarray | RowSparseGrad:
    """Gradient of :func:`embedding_bag` w.r.t. the table, dense or row-sparse.

    ``grad_weight[v] = sum over entries i with ids[i] == v of c_i * grad_output[bag of i]``,
    where ``c_i`` is 1 (sum), the entry's per-sample weight, or ``1 / (non-padding entries of
    its bag)`` (mean); for max, element ``d`` of ``grad_output[b]`` goes to the id at
    ``argmax[b, d]`` only. Each id's terms are added in position order from the sorted ids, with
    no ``(len(ids), embedding_dim)`` intermediate; bitwise identical for any thread count.

    Parameters
    ----------
    grad_output : ndarray of shape (num_bags, embedding_dim)
        Gradient of the loss w.r.t. the output of the forward: float32, float64, float16 or
        bfloat16 (these two are read in float32, and per-sample weights of their dtype are
        widened to float32; sums are rounded once when written).
    ids, offsets, mode, per_sample_weights, include_last_offset, padding_idx
        As given to the forward (``mode`` "mean" by default, as there).
    num_embeddings : int
        Rows of the table.
    argmax : ndarray of int64, optional
        ``mode="max"`` only (and then required): the forward's ``return_argmax`` result.
    out : ndarray of shape (num_embeddings, embedding_dim), optional
        Overwritten and returned (dense only).
    accumulate : bool, default False
        Add the gradient into ``out`` (required then) instead of overwriting it: only the
        touched rows are read and written.
    sparse : bool, default False
        Return a :class:`fastembed.RowSparseGrad`: the ids that get a gradient (sorted, the
        padding id left out; for max, the ids that gave at least one maximum) and their rows,
        straight from the sorted ids, in O(len(ids) * embedding_dim) whatever num_embeddings.
    scale_grad_by_freq : bool, default False
        PyTorch's option: each id's gradient is divided by the number of its entries in
        ``ids`` (``ValueError`` with ``mode="max"``, as in PyTorch).

    Returns
    -------
    ndarray of shape (num_embeddings, embedding_dim), or RowSparseGrad
        In ``grad_output``'s dtype (or ``out``'s: float32, float16 or bfloat16 for a float32,
        float16 or bfloat16 gradient). The ``padding_idx`` row is zero.
    """
    num_embeddings = as_int(num_embeddings, "num_embeddings", 0)
    if out is not None:
        require_array(out, "out")
    grad_output = kernel_readable(grad_output)
    if not sparse and grad_output.ndim == 2:
        require_table_fits(num_embeddings, grad_output.shape[1], grad_output.dtype)
    bags = bag_arguments(ids, offsets, include_last_offset, per_sample_weights, mode)
    padding = padding_argument(padding_idx, num_embeddings)
    result = _core.embedding_bag_backward(
        grad_output,
        bags.ids,
        bags.bounds,
        num_embeddings,
        mode,
        arithmetic_weights(bags.per_sample_weights, grad_output.dtype),
        padding,
        argmax,
        out,
        sparse,
        accumulate,
        bool(scale_grad_by_freq),
    )
    if sparse:
        indices, values = result
        return RowSparseGrad._from_kernel(indices, values, num_embeddings)
    return result
