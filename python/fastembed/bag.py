"""The EmbeddingBag layer: pooled lookups (options and state; the math is in the kernels)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _core
from ._bag_functional import (
    Bags,
    arithmetic_weights,
    bag_arguments,
    check_mode,
    padding_argument,
    pool,
)
from ._checks import kernel_readable, norm_options
from .layers import Embedding, TableLayer, _require_trainable_table
from .quantized import QuantizedTable
from .sparse import RowSparseGrad

if TYPE_CHECKING:
    from .optim import SparseOptimizer


class EmbeddingBag(TableLayer):
    """Sums, means or maxima of bags of embeddings, without materialising the embeddings
    (PyTorch's ``nn.EmbeddingBag``).

    ``bag(ids, offsets)`` returns one row per bag: the pooled rows of the table for the ids in
    that bag. Lookup and pooling are one pass over the ids: no ``(len(ids), embedding_dim)``
    array is formed, forward or backward.

    Parameters
    ----------
    num_embeddings, embedding_dim : int, optional
        Size of the table; taken from ``weight`` if omitted.
    mode : {"mean", "sum", "max"}, default "mean"
        Pooling of each bag's rows.
    weight : ndarray of shape (num_embeddings, embedding_dim), optional
        A float32/float64 C-contiguous table, used as it is (no copy).
    padding_idx : int, optional
        Entries with this id are skipped: they add nothing, do not count toward the mean, and
        the row gets no gradient and no optimizer update. A new table has this row zeroed.
        Negative values count from the end.
    dtype : dtype, default float32
        dtype of a new table: float32, float64, float16 or bfloat16 (see
        :class:`fastembed.Embedding`). Bags of a float16 or bfloat16 table are pooled in
        float32 and returned in the table's dtype.
    seed : int, optional
        Seed of a new table's initialiser, U(-0.05, 0.05) as :class:`Embedding`.
    sparse : bool, default False
        :meth:`backward` returns a :class:`fastembed.RowSparseGrad` (only the rows the batch
        touched) instead of a dense ``(num_embeddings, embedding_dim)`` array.
    include_last_offset : bool, default False
        ``offsets`` carry one more entry, the end of the last bag (CSR style).
    max_norm : float, optional
        PyTorch's ``max_norm``: each forward first renormalises, in place in ``weight``, the
        looked-up rows whose ``norm_type``-norm exceeds it (see :func:`fastembed.gather`).
    norm_type : float, default 2.0
        The p of the p-norm for ``max_norm``.
    scale_grad_by_freq : bool, default False
        PyTorch's option: each id's gradient is divided by its number of entries in the batch
        (not with ``mode="max"``, as in PyTorch).
    trainable : bool, default True
        A non-trainable (frozen) layer's :meth:`backward` leaves ``grad`` as it is and returns
        None (``grad_per_sample_weights`` is still computed); an optimizer step on it raises
        ``ValueError``. ``freeze`` is the PyTorch-style inverse, settable.

    Attributes
    ----------
    weight : ndarray
        The table.
    grad : ndarray or RowSparseGrad or None
        Gradient w.r.t. the table, accumulated over :meth:`backward` calls until
        :meth:`zero_grad`.
    grad_per_sample_weights : ndarray or None
        Gradient w.r.t. the ``per_sample_weights`` of the last forward, shape of ``ids``, set
        by :meth:`backward` when the forward had per-sample weights (else None):
        ``grad[i] = grad_output[bag of i] . weight[ids[i]]``, 0 for padding entries.

    ``bag.save(path, optimizer=None)`` and ``EmbeddingBag.load(path, mmap_mode=None,
    optimizer=None)`` save and load the table with these options, as :class:`Embedding`'s.

    Examples
    --------
    >>> bag = EmbeddingBag(weight=np.arange(8, dtype=np.float32).reshape(4, 2), mode="sum")
    >>> bag([0, 1, 3], offsets=[0, 2])
    array([[2., 4.],
           [6., 7.]], dtype=float32)
    """

    option_defaults: dict[str, Any] = {
        "mode": "mean",
        "padding_idx": None,
        "sparse": False,
        "include_last_offset": False,
        "max_norm": None,
        "norm_type": 2.0,
        "scale_grad_by_freq": False,
        "trainable": True,
    }

    def __init__(
        self,
        num_embeddings: int | None = None,
        embedding_dim: int | None = None,
        *,
        mode: str = "mean",
        weight: np.ndarray | None = None,
        padding_idx: int | None = None,
        dtype: DTypeLike = np.float32,
        seed: int | None = None,
        sparse: bool = False,
        include_last_offset: bool = False,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        trainable: bool = True,
    ) -> None:
        self.mode = check_mode(mode)
        if scale_grad_by_freq and self.mode == "max":
            raise ValueError("scale_grad_by_freq is not supported with mode='max'")
        # The table's checks and initialisation are the Embedding layer's.
        table = Embedding(
            num_embeddings,
            embedding_dim,
            weight=weight,
            dtype=dtype,
            seed=seed,
            trainable=trainable,
        )
        self.weight: np.ndarray = table.weight
        self.padding_idx: int | None = None
        if padding_idx is not None:
            self.padding_idx = padding_argument(padding_idx, self.num_embeddings)
            if weight is None:
                self.weight[self.padding_idx] = 0
        self.sparse = bool(sparse)
        self.include_last_offset = bool(include_last_offset)
        self.max_norm, self.norm_type = norm_options(max_norm, norm_type)
        self.scale_grad_by_freq = bool(scale_grad_by_freq)
        self.trainable = bool(trainable)
        self.grad: Any = None
        self.grad_per_sample_weights: np.ndarray | None = None
        self._bags: Bags | None = None
        self._argmax: np.ndarray | None = None

    @classmethod
    def from_pretrained(
        cls,
        embeddings: np.ndarray | QuantizedTable,
        freeze: bool = True,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        mode: str = "mean",
        sparse: bool = False,
        include_last_offset: bool = False,
        padding_idx: int | None = None,
    ) -> EmbeddingBag:
        """A layer around an existing table, as PyTorch's ``EmbeddingBag.from_pretrained``.

        The table is used as it is (no copy, ``padding_idx`` row not zeroed); ``freeze=True``
        (the default) makes the layer non-trainable. A :class:`fastembed.QuantizedTable` gives
        a frozen layer whose bags are pooled from rows dequantized in registers (float32).
        """
        return cls(
            weight=embeddings,
            mode=mode,
            padding_idx=padding_idx,
            sparse=sparse,
            include_last_offset=include_last_offset,
            max_norm=max_norm,
            norm_type=norm_type,
            scale_grad_by_freq=scale_grad_by_freq,
            trainable=not freeze,
        )

    def forward(
        self,
        ids: ArrayLike,
        offsets: ArrayLike | None = None,
        per_sample_weights: ArrayLike | None = None,
    ) -> np.ndarray:
        """Pool bags of ids: see :func:`fastembed.embedding_bag` for ``ids``/``offsets``.

        Returns an array of shape ``(num_bags, embedding_dim)``. With ``max_norm``, the
        looked-up rows of ``weight`` are renormalised in place first. The ids, offsets and
        weights are kept (copied where they are the caller's) for :meth:`backward`.
        """
        bags = bag_arguments(ids, offsets, self.include_last_offset, per_sample_weights, self.mode)
        padding = padding_argument(self.padding_idx, self.num_embeddings)
        argmax = None
        if self.mode == "max":
            argmax = np.empty((bags.num_bags, self.embedding_dim), dtype=np.int64)
        result = pool(
            self.weight, bags, self.mode, padding, None, argmax, self.max_norm, self.norm_type
        )
        self._bags = bags._replace(
            ids=_own(bags.ids, ids),
            per_sample_weights=None
            if bags.per_sample_weights is None
            # in the arithmetic dtype, as the backward's kernels read them
            else _own(arithmetic_weights(bags.per_sample_weights, self.dtype), per_sample_weights),
        )
        self._argmax = argmax
        return result

    __call__ = forward

    def backward(
        self, grad_output: np.ndarray, optimizer: SparseOptimizer | None = None
    ) -> np.ndarray | RowSparseGrad | None:
        """Add the gradient w.r.t. the table of the last :meth:`forward` into ``grad``.

        Dense ``(num_embeddings, embedding_dim)``, or a :class:`fastembed.RowSparseGrad` when
        ``sparse=True``. As in PyTorch (and :class:`Embedding`), ``grad`` accumulates over calls
        until :meth:`zero_grad`; returns it (None for a frozen layer, whose ``grad`` stays as it
        was). For max, each element's gradient goes to the id that
        gave the maximum. With per-sample weights, also sets ``grad_per_sample_weights`` (this
        forward's, not accumulated).

        With ``optimizer`` (a :mod:`fastembed.optim` optimizer) the table is updated instead,
        straight from the sorted ids with no gradient array (as ``optimizer.step(self,
        grad_output)``); returns None and leaves ``grad`` as it was. ``grad_per_sample_weights``
        is still computed, from the table as it was before the update.

        ``grad_output`` has the table's dtype, or float32 for a float16 or bfloat16 table
        (either is read row by row in float32 and each sum rounded once); ``grad`` has the
        table's dtype. Raises ``TypeError`` for any other dtype and
        ``ValueError`` if its shape is not ``(num_bags, embedding_dim)``; on error nothing
        changes (table, ``grad``, ``grad_per_sample_weights``, optimizer state).
        """
        bags = self._require_forward()
        grad_output = kernel_readable(grad_output)
        expected = (bags.num_bags, self.embedding_dim)
        if grad_output.shape != expected:
            raise ValueError(
                f"grad_output must have shape (num_bags, embedding_dim) = {expected}, "
                f"got {grad_output.shape}"
            )
        # A float16 / bfloat16 gradient is widened row by row as the kernels read it.
        grad_output = self._table_grad(grad_output)
        # Set only once the table's gradient (or update) has succeeded: on error nothing changes.
        grad_per_sample_weights = None
        if bags.per_sample_weights is not None:
            grad_per_sample_weights = self._per_sample_weights_grad(grad_output)
        if optimizer is not None:
            optimizer.step(self, grad_output)
            self.grad_per_sample_weights = grad_per_sample_weights
            return None
        if not self.trainable:
            self.grad_per_sample_weights = grad_per_sample_weights
            return None
        _require_trainable_table(self.weight)
        padding = padding_argument(self.padding_idx, self.num_embeddings)
        arguments = (
            grad_output,
            bags.ids,
            bags.bounds,
            self.num_embeddings,
            self.mode,
            bags.per_sample_weights,
            padding,
            self._argmax,
        )
        scale = self.scale_grad_by_freq
        if self.sparse:
            indices, values = _core.embedding_bag_backward(*arguments, None, True, False, scale)
            self._add_sparse_grad(RowSparseGrad._from_kernel(indices, values, self.num_embeddings))
        elif self.grad is None:
            table_shaped = np.empty(self.weight.shape, dtype=self.dtype)
            self.grad = _core.embedding_bag_backward(*arguments, table_shaped, False, False, scale)
        else:
            if isinstance(self.grad, RowSparseGrad):  # the layer was switched to dense
                self.grad = self.grad.to_dense()
            _core.embedding_bag_backward(*arguments, self.grad, False, True, scale)
        self.grad_per_sample_weights = grad_per_sample_weights
        return self.grad

    def _per_sample_weights_grad(self, grad_output: np.ndarray) -> np.ndarray:
        bags = self._require_forward()
        if isinstance(self.weight, QuantizedTable):
            raise TypeError(
                "the gradient of per_sample_weights is not computed from a QuantizedTable"
            )
        result = _core.embedding_bag_per_sample_weights_backward(
            grad_output,
            self.weight,
            bags.ids,
            bags.bounds,
            padding_argument(self.padding_idx, self.num_embeddings),
        )
        return result.reshape(bags.ids_shape)

    def _require_forward(self) -> Bags:
        if self._bags is None:
            raise RuntimeError("backward() needs a forward() first")
        return self._bags

    def _gradient_description(self, grad_output: np.ndarray) -> tuple:
        """The last forward's gradient as the fused optimizer kernels take it."""
        bags = self._require_forward()
        padding = padding_argument(self.padding_idx, self.num_embeddings)
        grad_output = kernel_readable(grad_output)
        return (
            grad_output,
            bags.ids,
            bags.bounds,
            self.mode,
            bags.per_sample_weights,
            self._argmax,
            padding,
            self.scale_grad_by_freq,
        )

    def __repr__(self) -> str:
        return (
            f"EmbeddingBag(num_embeddings={self.num_embeddings}, "
            f"embedding_dim={self.embedding_dim}, mode={self.mode!r}, dtype={self.dtype})"
        )


def _own(converted: np.ndarray, given: Any) -> np.ndarray:
    """``converted`` if the conversion made it, else a copy: the caller may change its array."""
    if converted is given or not converted.flags.owndata:
        return converted.copy()
    return converted
