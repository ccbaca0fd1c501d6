"""Memory: the cache of large result buffers, and tables that start on a cache line."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _core
from ._aligned_npz import ALIGNMENT
from ._checks import as_int


def line_aligned_empty(shape: tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a cache line (why:
    ``line_aligned_copy``)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)  # ALIGNMENT: a cache line
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def line_aligned_copy(values: ArrayLike, dtype: DTypeLike = None) -> np.ndarray:
    """A copy of ``values`` whose data starts on a 64-byte cache line.

    NumPy starts a large array 16 bytes past a line, so each row of a table whose rows are a
    multiple of 64 bytes touches one line more than it must: three instead of two for a
    128-byte row (D=64 float16 or bfloat16), five instead of four for a 256-byte one (D=64
    float32). fastembed reads such a table where it is, but scattered rows cost more there: on
    an AMD EPYC (Zen 4), 2 threads, sum bags of 1M uniform ids took 8.8 ms from a NumPy float16
    table and 4.8 ms from a line-aligned copy (float32: 17.0 and 12.3 ms). Tables that
    fastembed draws (``Embedding(V, D)``, ``EmbeddingBag``) or maps from its saved ``.npz``
    files start on a line already.

    Parameters
    ----------
    values : array_like
        The table (any shape).
    dtype : data-type, optional
        The copy's dtype (``values``' own by default); a narrower one rounds once, without a
        temporary in NumPy's own memory first.

    Returns
    -------
    numpy.ndarray
        A new C-contiguous, writeable array, line-aligned, equal to ``values`` cast to
        ``dtype``.

    Examples
    --------
    >>> table = line_aligned_copy(np.ones((1000, 64), np.float32), np.float16)
    >>> table.ctypes.data % 64, table.dtype
    (0, dtype('float16'))
    """
    values = np.asarray(values)
    table = line_aligned_empty(values.shape, values.dtype if dtype is None else dtype)
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
