"""Row-sparse gradients: the rows of a table's gradient that can be non-zero, and nothing else."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._dtypes import TABLE_DTYPE_NAMES, is_table_dtype


class RowSparseGrad:
    """Gradient of a ``(num_embeddings, embedding_dim)`` table stored as its non-zero rows.

    Row ``indices[r]`` of the dense gradient is ``values[r]``; every other row is zero. This is
    what a lookup's backward produces when only a few of many rows were looked up (PyTorch's
    ``sparse=True``, as a coalesced ``torch.sparse_coo_tensor``), and what a sparse optimizer
    consumes.

    Parameters
    ----------
    indices : ndarray of int64, shape (nnz,)
        Row ids, strictly increasing, each in ``[0, num_embeddings)``.
    values : ndarray of float32, float64, float16 or bfloat16, shape (nnz, embedding_dim)
        The rows' gradients.
    num_embeddings : int
        Number of rows of the dense gradient.

    Attributes
    ----------
    indices, values, num_embeddings
        As given (the arrays are kept, not copied).

    Examples
    --------
    >>> g = RowSparseGrad(np.array([1, 3]), np.ones((2, 2), np.float32), 4)
    >>> g.to_dense()
    array([[0., 0.],
           [1., 1.],
           [0., 0.],
           [1., 1.]], dtype=float32)
    """

    __slots__ = ("indices", "values", "num_embeddings")

    # ``dense + sparse`` comes to __radd__ (a row update) instead of densifying through ufuncs.
    __array_ufunc__ = None

    def __init__(self, indices: np.ndarray, values: np.ndarray, num_embeddings: int) -> None:
        indices = np.asarray(indices)
        values = np.asarray(values)
        if indices.dtype.kind not in "iu" or indices.ndim != 1:
            raise TypeError(
                f"indices must be a 1-d integer array, got {indices.dtype} {indices.shape}"
            )
        if not is_table_dtype(values.dtype):
            raise TypeError(f"values must be {TABLE_DTYPE_NAMES}, got {values.dtype}")
        if values.ndim != 2 or values.shape[0] != indices.shape[0]:
            raise ValueError(
                f"values must have shape (len(indices), embedding_dim) = ({len(indices)}, D), "
                f"got {values.shape}"
            )
        num_embeddings = int(num_embeddings)
        if num_embeddings < 0:
            raise ValueError(f"num_embeddings must be >= 0, got {num_embeddings}")
        if indices.size:
            if np.any(np.diff(indices) <= 0):
                raise ValueError("indices must be strictly increasing (sorted, no repeats)")
            if indices[0] < 0 or indices[-1] >= num_embeddings:
                bad = indices[0] if indices[0] < 0 else indices[-1]
                raise IndexError(f"index {bad} is out of range for num_embeddings={num_embeddings}")
        self.indices: np.ndarray = indices.astype(np.int64, copy=False)
        self.values: np.ndarray = values
        self.num_embeddings: int = num_embeddings

    @classmethod
    def _from_kernel(
        cls, indices: np.ndarray, values: np.ndarray, num_embeddings: int
    ) -> RowSparseGrad:
        """Wraps a kernel's result, which is valid by construction: no checks, no copies."""
        grad = cls.__new__(cls)
        grad.indices = indices
        grad.values = values
        grad.num_embeddings = num_embeddings
        return grad

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the dense gradient: ``(num_embeddings, embedding_dim)``."""
        return (self.num_embeddings, self.values.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    @property
    def nnz(self) -> int:
        """Number of stored rows."""
        return self.indices.shape[0]

    def to_dense(self) -> np.ndarray:
        """The dense ``(num_embeddings, embedding_dim)`` gradient (zeros outside ``indices``)."""
        dense = np.zeros(self.shape, dtype=self.dtype)
        dense[self.indices] = self.values
        return dense

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError("a RowSparseGrad cannot be viewed as a dense array without a copy")
        dense = self.to_dense()
        return dense if dtype is None else dense.astype(dtype, copy=False)

    def merge(self, other: RowSparseGrad) -> RowSparseGrad:
        """Sum of two sparse gradients of the same table, as a new RowSparseGrad.

        The stored rows are the union of both sets of indices; a row present in both is
        ``self.values[i] + other.values[j]``, so the result does not depend on anything but
        the two operands.
        """
        if not isinstance(other, RowSparseGrad):
            raise TypeError(f"can only merge a RowSparseGrad, got {type(other).__name__}")
        if other.shape != self.shape or other.dtype != self.dtype:
            raise ValueError(
                f"cannot merge gradients of shape {other.shape} {other.dtype} "
                f"into {self.shape} {self.dtype}"
            )
        indices = np.union1d(self.indices, other.indices)
        values = np.zeros((indices.shape[0], self.values.shape[1]), dtype=self.dtype)
        values[np.searchsorted(indices, self.indices)] = self.values
        values[np.searchsorted(indices, other.indices)] += other.values
        return RowSparseGrad._from_kernel(indices, values, self.num_embeddings)

    def __add__(self, other: object) -> Any:
        """``sparse + sparse`` merges (see :meth:`merge`); ``sparse + dense`` is dense."""
        if isinstance(other, RowSparseGrad):
            return self.merge(other)
        if isinstance(other, np.ndarray):
            if other.shape != self.shape:
                raise ValueError(
                    f"cannot add shape {other.shape} to a gradient of shape {self.shape}"
                )
            result = np.array(other, dtype=np.result_type(other, self.dtype), copy=True)
            result[self.indices] += self.values
            return result
        return NotImplemented

    __radd__ = __add__

    def __repr__(self) -> str:
        return (
            f"RowSparseGrad(num_embeddings={self.num_embeddings}, "
            f"embedding_dim={self.values.shape[1]}, nnz={self.nnz}, dtype={self.dtype})"
        )
