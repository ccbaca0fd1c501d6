"""Memory: the cache of large result buffers, and tables that start on a cache line."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import _core
from ._aligned_npz import ALIGNMENT
from ._checks import as_int


def line_aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a cache line.

    NumPy's own arrays start 16 bytes past a line, so every 256-byte row of a float32 table
    with 64 columns spans five lines instead of four, and a float16 row three instead of two:
    a fifth more memory traffic on scattered rows (sum bags of 1M uniform ids over a 1M x 64
    float32 table: 18.7 ms, 14.7 ms on a line-aligned copy). The tables fastembed draws
    start on a line; tables the caller passes are used where they are.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)  # ALIGNMENT: a cache line
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def line_aligned_copy(values: ArrayLike, dtype: np.dtype) -> np.ndarray:
    """``values`` copied into a new line-aligned array of ``dtype`` (rounded once where ``dtype``
    is narrower), without a temporary of ``dtype`` in NumPy's own memory first."""
    values = np.asarray(values)
    table = line_aligned_empty(values.shape, dtype)
    table[...] = values
    return table


def set_buffer_cache_limit(nbytes: int) -> int:
    """Set how many bytes of dropped buffers fastembed keeps for reuse; return the old limit.

    Results of 4 MiB and more that fastembed allocates (``gather`` or ``scatter_add`` without
    ``out=``) live in buffers that return to a cache when the array is garbage collected, and
    a later call needing a similar size reuses one instead of asking the operating system for
    fresh pages, which costs more than the lookup itself for large outputs. The kernels'
    scratch of 1 MiB and more (the backward's sort buffers) is kept in the same cache. The
    default limit is 1 GiB; ``0`` disables the cache and frees what it holds. Passing ``out=``
    avoids allocating results altogether.

    Parameters
    ----------
    nbytes : int
        The new limit in bytes, ``>= 0``.

    Returns
    -------
    int
        The previous limit.
    """
    return _core.set_buffer_cache_limit(as_int(nbytes, "nbytes", 0))
