"""Normalisation of ids: the one place where ids may be converted (and then copied)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._checks import kernel_readable

KERNEL_ID_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
_INT32, _INT64 = KERNEL_ID_DTYPES
_INT64_MIN, _INT64_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max


def is_kernel_index_array(array: object) -> bool:
    """Whether ``array`` is an int32 / int64 ndarray the kernels read in place (C-contiguous,
    aligned; read-only is fine): ids, offsets."""
    if type(array) is not np.ndarray:
        return False
    # NumPy's arrays hold its int32 / int64 dtype objects themselves, so identity settles the
    # usual case; comparing dtypes for equality took 0.2 us, a tenth of a 128-id gather.
    dtype = array.dtype
    if dtype is not _INT64 and dtype is not _INT32 and dtype not in KERNEL_ID_DTYPES:
        return False
    flags = array.flags  # (a new object on every access; flags.carray would demand writeable)
    return flags.c_contiguous and flags.aligned


def _position(flat: int, shape: tuple) -> str:
    return ", ".join(str(int(i)) for i in np.unravel_index(flat, shape)) if shape else "()"


def _reject_ints_beyond_int64(array: np.ndarray) -> None:
    """IndexError for the first Python int outside int64 (NumPy holds those as objects)."""
    for flat, value in enumerate(array.reshape(-1)):
        if isinstance(value, int) and not isinstance(value, bool):
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise IndexError(
                    f"id {value} at ids[{_position(flat, array.shape)}] is out of range "
                    "(outside int64, larger than any table)"
                )


def as_ids(ids: ArrayLike) -> np.ndarray:
    """Return ``ids`` as a C-contiguous int32 or int64 array the kernels can read in place.

    int32 and int64 C-contiguous arrays in native byte order are returned as they are (no
    copy). Other integer dtypes, byte-swapped or non-contiguous arrays, Python ints and lists
    are converted. Bool, float, complex, object and string ids raise ``TypeError``.
    """
    if is_kernel_index_array(ids):
        return ids
    array = np.asarray(ids)
    if array.size == 0 and not isinstance(ids, np.ndarray) and array.dtype.kind == "f":
        return np.zeros(array.shape, dtype=np.int64)  # np.asarray([]) is float64
    kind = array.dtype.kind
    if kind == "O" and not isinstance(ids, np.ndarray):  # a list or int with a huge int in it
        _reject_ints_beyond_int64(array)
    if kind not in "iu":
        raise TypeError(f"ids must be integers, got dtype {array.dtype}")
    if kind == "u" and array.dtype.itemsize == 8 and array.size and array.max() > _INT64_MAX:
        flat = int(np.argmax(array > _INT64_MAX))
        raise IndexError(
            f"id {int(array.reshape(-1)[flat])} at ids[{_position(flat, array.shape)}] is out "
            "of range (larger than any table)"
        )
    target = np.int32 if array.dtype.itemsize < 4 or array.dtype == np.int32 else np.int64
    return kernel_readable(array.astype(target, order="C", copy=False))  # keeps 0-d ids 0-d
