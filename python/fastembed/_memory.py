"""The cache of large result buffers."""

from __future__ import annotations

import operator

from . import _core


def set_buffer_cache_limit(nbytes: int) -> int:
    """Set how many bytes of dropped result buffers fastembed keeps for reuse; return the old limit.

    Results of 4 MiB and more that fastembed allocates (``gather`` or ``scatter_add`` without
    ``out=``) live in buffers that return to a cache when the array is garbage collected, and
    a later call needing a similar size reuses one instead of asking the operating system for
    fresh pages, which costs more than the lookup itself for large outputs. The default limit is
    1 GiB; ``0`` disables the cache and frees what it holds. Passing ``out=`` avoids
    allocation altogether.

    Parameters
    ----------
    nbytes : int
        The new limit in bytes, ``>= 0``.

    Returns
    -------
    int
        The previous limit.
    """
    if isinstance(nbytes, bool):
        raise TypeError(f"nbytes must be an int, got {nbytes!r}")
    return _core.set_buffer_cache_limit(operator.index(nbytes))
