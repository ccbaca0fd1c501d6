"""Size of the kernels' thread pool."""

from __future__ import annotations

import os
import warnings

from . import _core


def get_num_threads() -> int:
    """Number of threads the kernels use (the calling thread included)."""
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (1 to 1024) in later calls; calls already running finish first.

    The default is ``FASTEMBED_NUM_THREADS`` if set, else the number of CPUs this process may
    run on (its affinity mask). Results never depend on the thread count.
    """
    if isinstance(n, bool) or int(n) != n:
        raise TypeError(f"num_threads must be an int, got {n!r}")
    _core.set_num_threads(int(n))


def _check_environment() -> None:
    value = os.environ.get("FASTEMBED_NUM_THREADS")
    if value is None:
        return
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        warnings.warn(
            f"FASTEMBED_NUM_THREADS={value!r} is not a positive integer; "
            f"using {_core.available_cores()} threads",
            RuntimeWarning,
            stacklevel=3,
        )
