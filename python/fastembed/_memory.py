"""The cache of large result buffers."""

from __future__ import annotations

from . import _core
from ._checks import as_int


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
