"""User-facing layers: options and state around the functional API (no math here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ._bag_functional import padding_argument
from ._functional import gather, scatter_add
from ._ids import as_ids

if TYPE_CHECKING:
    from .optim import SparseOptimizer

_TABLE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_table(weight: np.ndarray) -> np.ndarray:
    if not isinstance(weight, np.ndarray):
        raise TypeError(f"weight must be a NumPy array, got {type(weight).__name__}")
    if weight.dtype not in _TABLE_DTYPES:
        raise TypeError(f"weight must be float32 or float64, got {weight.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-d (num_embeddings, embedding_dim), got {weight.shape}")
    if not weight.flags.c_contiguous:
        raise ValueError("weight must be C-contiguous (use np.ascontiguousarray)")
    return weight


class Embedding:
    """A lookup table mapping integer ids to dense vectors (Keras ``Embedding``, Lasagne
    ``EmbeddingLayer``, PyTorch ``nn.Embedding``).

    ``emb(ids)`` returns ``weight[ids]``: the one-hot encoding of ``ids`` times ``weight``,
    done as a table lookup. ``emb.backward(grad_output)`` returns the gradient w.r.t.
    ``weight``: the rows of ``grad_output`` summed into the rows that were looked up.

    Parameters
    ----------
    num_embeddings : int, optional
        Number of rows (the vocabulary size; Keras ``input_dim``). Taken from ``weight`` if
        omitted.
    embedding_dim : int, optional
        Length of each vector (Keras ``output_dim``). Taken from ``weight`` if omitted.
    weight : ndarray of shape (num_embeddings, embedding_dim), optional
        A float32 or float64 C-contiguous table to use as it is: the layer keeps this very
        array (no copy), so an ``np.memmap`` works, and a read-only table works for lookups.
    dtype : dtype, default float32
        dtype of the table the layer allocates when ``weight`` is not given.
    seed : int, optional
        Seed of the initialiser. A new table is drawn from U(-0.05, 0.05), Keras' default
        (``embeddings_initializer="uniform"``).

    Attributes
    ----------
    weight : ndarray
        The table.
    grad : ndarray or None
        Gradient of the last :meth:`backward`.

    Examples
    --------
    >>> W = np.arange(15, dtype=np.float32).reshape(3, 5)
    >>> emb = Embedding(weight=W)
    >>> emb([[0, 2], [1, 2]]).shape
    (2, 2, 5)
    """

    def __init__(
        self,
        num_embeddings: int | None = None,
        embedding_dim: int | None = None,
        *,
        weight: np.ndarray | None = None,
        dtype: DTypeLike = np.float32,
        seed: int | None = None,
    ) -> None:
        if weight is not None:
            _check_table(weight)
            for name, given, actual in (
                ("num_embeddings", num_embeddings, weight.shape[0]),
                ("embedding_dim", embedding_dim, weight.shape[1]),
            ):
                if given is not None and given != actual:
                    raise ValueError(f"{name}={given} does not match weight.shape={weight.shape}")
        else:
            if num_embeddings is None or embedding_dim is None:
                raise ValueError("give num_embeddings and embedding_dim, or weight")
            if np.dtype(dtype) not in _TABLE_DTYPES:
                raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
            for name, value in (
                ("num_embeddings", num_embeddings),
                ("embedding_dim", embedding_dim),
            ):
                if int(value) != value or value < 0:
                    raise ValueError(f"{name} must be a non-negative int, got {value!r}")
            rng = np.random.default_rng(seed)
            weight = rng.random((int(num_embeddings), int(embedding_dim)), dtype=np.dtype(dtype))
            weight *= 0.1
            weight -= 0.05
        self.weight: np.ndarray = weight
        self.grad: np.ndarray | None = None
        self._ids: np.ndarray | None = None

    @property
    def num_embeddings(self) -> int:
        return self.weight.shape[0]

    @property
    def embedding_dim(self) -> int:
        return self.weight.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.weight.dtype

    def forward(self, ids: ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
        """Look up ``ids`` (any shape) and remember them for :meth:`backward`.

        Returns an array of shape ``ids.shape + (embedding_dim,)``, written into ``out`` if
        given. The ids are copied only if they are the caller's own array, so that changing it
        afterwards cannot change the gradient.
        """
        converted = as_ids(ids)
        result = gather(self.weight, converted, out)
        caller_owns = converted is ids or not converted.flags.owndata
        self._ids = converted.copy() if caller_owns else converted
        return result

    __call__ = forward

    def backward(self, grad_output: np.ndarray, optimizer: SparseOptimizer | None = None):
        """Dense gradient w.r.t. ``weight`` of the last :meth:`forward`; also kept as ``grad``.

        ``grad_output`` must have shape ``ids.shape + (embedding_dim,)``.

        With ``optimizer`` (a :mod:`fastembed.optim` optimizer), the table is updated instead,
        straight from the sorted ids, without forming any gradient array (the same as
        ``optimizer.step(self, grad_output)``); returns None and leaves ``grad`` as it was.
        """
        if self._ids is None:
            raise RuntimeError("backward() needs a forward() first")
        if optimizer is not None:
            optimizer.step(self, grad_output)
            return None
        width = np.shape(grad_output)[-1:]
        if width != (self.embedding_dim,):
            raise ValueError(
                f"grad_output must end in embedding_dim={self.embedding_dim}, "
                f"got shape {np.shape(grad_output)}"
            )
        self.grad = scatter_add(grad_output, self._ids, self.num_embeddings)
        return self.grad

    def _gradient_description(self, grad_output: np.ndarray) -> tuple:
        """The last lookup's gradient as the fused optimizer kernels take it."""
        if self._ids is None:
            raise RuntimeError("an optimizer step needs a forward() first")
        if type(grad_output) is not np.ndarray or not grad_output.flags.c_contiguous:
            grad_output = np.ascontiguousarray(grad_output)
        padding = padding_argument(getattr(self, "padding_idx", None), self.num_embeddings)
        scale = bool(getattr(self, "scale_grad_by_freq", False))
        return (grad_output, self._ids, None, "sum", None, None, padding, scale)

    def __repr__(self) -> str:
        return (
            f"Embedding(num_embeddings={self.num_embeddings}, "
            f"embedding_dim={self.embedding_dim}, dtype={self.dtype})"
        )
