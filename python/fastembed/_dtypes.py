"""The dtypes a table can have: float32, float64, float16 and bfloat16.

bfloat16 is ``ml_dtypes.bfloat16`` (the NumPy ecosystem's; JAX and TensorFlow use it), an
optional dependency imported only when a bfloat16 is asked for by name. An array that already
has that dtype is recognised without importing anything: NumPy reports it as kind ``'V'``,
itemsize 2, name ``'bfloat16'``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

_PLAIN = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16))
TABLE_DTYPE_NAMES = "float32 or float64 (or float16, bfloat16)"


def is_bfloat16(dtype: np.dtype) -> bool:
    """Whether ``dtype`` is ml_dtypes' bfloat16."""
    return dtype.kind == "V" and dtype.itemsize == 2 and dtype.name == "bfloat16"


def is_table_dtype(dtype: np.dtype) -> bool:
    """Whether a table (or a gradient) may have ``dtype``."""
    return (dtype in _PLAIN and dtype.isnative) or is_bfloat16(dtype)


def is_reduced(dtype: np.dtype) -> bool:
    """float16 or bfloat16: stored in 2 bytes, computed in float32."""
    return dtype == np.float16 or is_bfloat16(dtype)


def bfloat16() -> np.dtype:
    """ml_dtypes' bfloat16 (ImportError naming the package if it is missing)."""
    try:
        import ml_dtypes
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "bfloat16 tables need the ml_dtypes package (pip install 'fastembed[half]')"
        ) from error
    return np.dtype(ml_dtypes.bfloat16)


def table_dtype(dtype: DTypeLike, name: str = "dtype") -> np.dtype:
    """``dtype`` as a table dtype: TypeError unless it is one of the four; the string
    ``"bfloat16"`` imports ml_dtypes."""
    if isinstance(dtype, str) and dtype == "bfloat16":
        return bfloat16()
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be {TABLE_DTYPE_NAMES}, got {dtype!r}") from None
    if not is_table_dtype(resolved):
        raise TypeError(f"{name} must be {TABLE_DTYPE_NAMES}, got {resolved}")
    return resolved


def arithmetic_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a table of ``dtype`` is computed in: float64 for float64, float32 otherwise."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)
