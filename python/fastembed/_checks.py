"""Checks of Python-level arguments, done before any call into the compiled kernels.

The bindings check arrays they are handed; these checks make sure they are handed arrays and
integers at all, so that a wrong argument gets a message naming it instead of pybind11's
generic "incompatible function arguments".
"""

from __future__ import annotations

import operator

import numpy as np
from numpy.typing import ArrayLike


def require_array(value: object, name: str) -> np.ndarray:
    """``value`` itself if it is a NumPy array (subclasses such as ``np.memmap`` included)."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(value).__name__}")
    return value


def kernel_readable(array: ArrayLike) -> np.ndarray:
    """``array`` as a C-contiguous ndarray aligned to its dtype, which the kernels read in place:
    the array itself when it is one (no copy), else a copy. A 0-d array stays 0-d (where
    ``np.ascontiguousarray`` would make it 1-d, passing for a width-1 row)."""
    array = np.asarray(array)
    if array.flags.c_contiguous and array.flags.aligned:
        return array
    return array.copy(order="C")


INT64_MAX = int(np.iinfo(np.int64).max)


def as_int(value: object, name: str, minimum: int, maximum: int = INT64_MAX) -> int:
    """``value`` as a Python int in ``[minimum, maximum]``: TypeError for anything that is not
    an integer (bool and float included, even 3.0), ValueError outside the range (the default
    maximum is what the compiled module can take)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    if number > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {number}")
    return number


def require_table_fits(num_embeddings: int, embedding_dim: int, dtype: np.dtype) -> None:
    """ValueError if a (num_embeddings, embedding_dim) table of ``dtype`` could not be indexed
    in this address space (NumPy would fail later with a message naming neither)."""
    elements = num_embeddings * max(embedding_dim, 1)
    if elements * np.dtype(dtype).itemsize > np.iinfo(np.intp).max:
        raise ValueError(
            f"a ({num_embeddings}, {embedding_dim}) {np.dtype(dtype)} table is too large for "
            "this machine's address space"
        )


def optional_float(value: object, name: str, *, required: bool = False) -> float | None:
    """``None`` (unless ``required``) or a real number as a float: TypeError otherwise."""
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    return float(value)


def norm_options(max_norm: object, norm_type: object) -> tuple[float | None, float]:
    """A layer's ``max_norm`` (None or > 0) and ``norm_type`` (> 0 or inf), checked."""
    limit = optional_float(max_norm, "max_norm")
    if limit is not None and not limit > 0:
        raise ValueError(f"max_norm must be > 0, got {limit!r}")
    p = optional_float(norm_type, "norm_type", required=True)
    if not p > 0:
        raise ValueError(f"norm_type must be > 0 (or inf), got {p!r}")
    return limit, p
