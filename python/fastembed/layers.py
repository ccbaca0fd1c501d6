"""User-facing layers: options and state around the functional API (no math here)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ._bag_functional import padding_argument
from ._checks import as_int, kernel_readable, norm_options, require_table_fits
from ._dtypes import TABLE_DTYPE_NAMES, arithmetic_dtype, is_reduced, is_table_dtype, table_dtype
from ._functional import gather, padding_row, scatter_add, sparse_grad
from ._ids import as_ids
from ._initializers import Initializer, initial_table
from ._memory import line_aligned_copy
from ._persistence import load_table, save_table
from .quantized import QuantizedTable
from .sparse import RowSparseGrad

if TYPE_CHECKING:
    from .optim import SparseOptimizer

_Layer = TypeVar("_Layer", bound="TableLayer")

# Options saved with the table and shown by repr, with their defaults.
_OPTION_DEFAULTS: dict[str, Any] = {
    "padding_idx": None,
    "max_norm": None,
    "norm_type": 2.0,
    "scale_grad_by_freq": False,
    "sparse": False,
    "mask_zero": False,
    "trainable": True,
}


def check_table(weight: np.ndarray, name: str = "weight") -> np.ndarray:
    """``weight`` itself if it is a float32/float64/float16/bfloat16 2-d C-contiguous array
    (TypeError or ValueError naming ``name`` otherwise)."""
    if not isinstance(weight, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(weight).__name__}")
    if not is_table_dtype(weight.dtype):
        raise TypeError(f"{name} must be {TABLE_DTYPE_NAMES}, got {weight.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"{name} must be 2-d (num_embeddings, embedding_dim), got {weight.shape}")
    if not weight.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")
    return weight


def _require_trainable_table(weight: np.ndarray | QuantizedTable) -> None:
    if isinstance(weight, QuantizedTable):
        raise TypeError("a QuantizedTable cannot be trained (its layer must stay frozen)")


def _keras_weights(weights: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Keras' ``weights=[table]`` (a list of one array) or the array itself."""
    if isinstance(weights, np.ndarray):
        return weights
    if isinstance(weights, (list, tuple)) and len(weights) == 1:
        return weights[0]
    raise ValueError("weights must be an array or a list of exactly one array (Keras style)")


class TableLayer:
    """What the layer classes share: their table ``weight``, accumulated ``grad`` and
    ``trainable``, and saving and loading them with their options."""

    weight: np.ndarray
    grad: np.ndarray | RowSparseGrad | None
    trainable: bool
    #: The options (constructor arguments) saved with the table, with their defaults.
    option_defaults: dict[str, Any]

    def _options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.option_defaults}

    def save(self, path: str | os.PathLike, optimizer: SparseOptimizer | None = None) -> None:
        """Write the table and the options to ``path``, atomically.

        ``*.npy``: the table as a ``.npy`` file plus the options in ``<path>.json``. Any other
        name (``*.npz`` by convention): one uncompressed ``.npz`` archive (members
        ``weight.npy`` and ``config.npy``) written at exactly ``path``. Both can be loaded
        memory-mapped with :meth:`load`. Gradients and the last ids are not saved.

        The files are written beside their targets and renamed over them once complete, so
        ``path`` always holds the old or the new table, whatever crashes or is killed. Saving
        over the file the table is memory-mapped from is safe: with ``mmap_mode="r"`` or
        ``"c"`` the map keeps reading the replaced file until it is dropped; with ``"r+"`` the
        table *is* the file, so ``save`` flushes the map, writes the options, and the layer
        stays mapped to the live file.

        Parameters
        ----------
        path : str or os.PathLike
        optimizer : SGD, Adagrad or Adam, optional
            Makes a training checkpoint (``.npz`` only): the optimizer's class,
            hyper-parameters and its state for this layer's table go into the same file, for
            ``load(path, optimizer=...)``.

        Raises
        ------
        OSError
            The file cannot be written (disk full, permission denied, a bad path), naming the
            path. The old file is left as it was and no temporary file is left behind.
        ValueError
            An option cannot be written as JSON, or ``optimizer`` with a ``.npy`` path; raised
            before anything is written.
        """
        config = {"layer": self._kind(), **self._options()}
        table = self.weight
        if isinstance(table, QuantizedTable):
            config["quantized_bits"] = table.bits
            table = table.packed
        arrays = {}
        if optimizer is not None:
            description, optimizer_arrays = optimizer._checkpoint(self)
            config["optimizer"] = description
            arrays = {f"optimizer.{name}": array for name, array in optimizer_arrays.items()}
        save_table(path, table, config, arrays)

    @classmethod
    def load(
        cls: type[_Layer],
        path: str | os.PathLike,
        mmap_mode: str | None = None,
        optimizer: SparseOptimizer | None = None,
    ) -> _Layer:
        """A layer from a file written by :meth:`save` (or any ``.npy`` table).

        Parameters
        ----------
        path : str or os.PathLike
        mmap_mode : {None, "r", "c", "r+"}
            As for ``np.load``: ``None`` reads the table into memory; ``"r"`` (read-only) and
            ``"c"`` (copy-on-write) map it without reading it, for ``.npy`` and ``.npz`` alike;
            ``"r+"`` (writes go to the file) is for ``.npy`` only.
        optimizer : SGD, Adagrad or Adam, optional
            For a checkpoint (saved with ``optimizer=``): an optimizer of the saved class with
            the saved hyper-parameters, into which the saved state for this table is restored
            (the new layer becomes its next table, so a fresh optimizer's ``state_dict()``
            equals the saved one). Training on gives bitwise what training straight through
            would have.

        Raises
        ------
        ValueError
            The file is not a fastembed table of this layer class (another archive, a pickle,
            random bytes, empty, truncated, a newer format, another layer's options), naming
            the path and what is wrong; or ``optimizer`` is of another class or has other
            hyper-parameters than the saved one, or the file holds no optimizer state.
        OSError
            The file cannot be opened or read.
        """
        weight, config, arrays = load_table(path, mmap_mode, with_arrays=optimizer is not None)
        path = os.fspath(path)
        kind = config.pop("layer", cls._kind())
        described = config.pop("optimizer", None)
        bits = config.pop("quantized_bits", None)
        if kind != cls._kind():
            raise ValueError(f"{path} holds an {kind} layer, not an {cls._kind()}: use {kind}.load")
        unknown = set(config) - set(cls.option_defaults)
        if unknown:
            raise ValueError(f"{path}: unknown options {sorted(unknown)}")
        try:
            if bits is not None:
                weight = QuantizedTable.from_fbgemm(weight, bits)
            layer = cls(weight=weight, **config)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path} does not hold a valid {cls._kind()}: {error}") from error
        if optimizer is not None:
            if described is None:
                raise ValueError(
                    f"{path} holds no optimizer state (it was saved without optimizer=)"
                )
            prefix = "optimizer."
            saved = {n[len(prefix) :]: a for n, a in arrays.items() if n.startswith(prefix)}
            try:
                optimizer._restore(layer, described, saved)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path}: {error}") from error
        return layer

    @classmethod
    def _kind(cls) -> str:
        """The layer class the file records: the one that defines the options."""
        for klass in cls.__mro__:
            if "option_defaults" in vars(klass):
                return klass.__name__
        raise TypeError(f"{cls.__name__} defines no option_defaults")

    @property
    def freeze(self) -> bool:
        """PyTorch-style ``not trainable``; settable."""
        return not self.trainable

    @freeze.setter
    def freeze(self, value: bool) -> None:
        self.trainable = not value

    @property
    def num_embeddings(self) -> int:
        return self.weight.shape[0]

    @property
    def embedding_dim(self) -> int:
        return self.weight.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.weight.dtype

    def _table_grad(self, grad_output: np.ndarray) -> np.ndarray:
        """``grad_output`` checked against the table: its dtype, or float32 for a float16 or
        bfloat16 table (whose gradient rows are then rounded once, as they are summed)."""
        if grad_output.dtype == self.dtype or (
            is_reduced(self.dtype) and grad_output.dtype == arithmetic_dtype(self.dtype)
        ):
            return grad_output
        allowed = f"{self.dtype}" + (" or float32" if is_reduced(self.dtype) else "")
        raise TypeError(
            f"grad_output must be {allowed} (the table's dtype), got {grad_output.dtype}"
        )

    def _add_sparse_grad(self, step: RowSparseGrad) -> None:
        """Adds one backward's row-sparse gradient into ``grad``, in the table's dtype."""
        if step.dtype != self.dtype:
            step = RowSparseGrad._from_kernel(
                step.indices, step.values.astype(self.dtype), step.num_embeddings
            )
        self.grad = step if self.grad is None else self.grad + step

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Start a new accumulation: ``grad = None`` (PyTorch's default), or zeros in place."""
        if set_to_none or self.grad is None:
            self.grad = None
        elif isinstance(self.grad, RowSparseGrad):
            empty = np.empty((0, self.embedding_dim), dtype=self.grad.dtype)
            self.grad = RowSparseGrad(np.empty(0, dtype=np.int64), empty, self.num_embeddings)
        else:
            self.grad.fill(0)


class Embedding(TableLayer):
    """A lookup table mapping integer ids to dense vectors (PyTorch ``nn.Embedding``, Keras
    ``Embedding``, Lasagne ``EmbeddingLayer``), with their options.

    ``emb(ids)`` returns ``weight[ids]``: the one-hot encoding of ``ids`` times ``weight``,
    done as a table lookup. ``emb.backward(grad_output)`` adds the gradient w.r.t. ``weight``
    into ``emb.grad`` (dense array, or :class:`RowSparseGrad` with ``sparse=True``).

    Parameters
    ----------
    num_embeddings : int, optional
        Number of rows (the vocabulary size; Keras ``input_dim``). Taken from the table if
        omitted.
    embedding_dim : int, optional
        Length of each vector (Keras ``output_dim``). Taken from the table if omitted.
    weight : ndarray of shape (num_embeddings, embedding_dim), optional
        A float32 or float64 C-contiguous table to use as it is (Lasagne's ``W``): the layer
        keeps this very array (no copy), so an ``np.memmap`` works, and a read-only table works
        for lookups. It is not modified on construction (not even the ``padding_idx`` row).
    weights : ndarray or list of one ndarray, optional
        Keras' spelling of ``weight`` (``weights=[matrix]``); give one of the two.
    dtype : dtype, default float32
        dtype of the table the layer allocates when no table is given: float32, float64,
        float16 or bfloat16 (``ml_dtypes.bfloat16``, or the string ``"bfloat16"``). A float16
        or bfloat16 table is drawn in float32 and rounded once; lookups return its dtype (or
        float32 into a float32 ``out``), and its gradient and optimizer updates are computed
        in float32 and rounded once when written.
    seed : int, optional
        Seed of the initialiser, for a reproducible table.
    init : {"uniform", "normal", "xavier_uniform"} or callable, default "uniform"
        How a new table is drawn: U(-0.05, 0.05) (Keras' default), N(0, 1) (PyTorch's
        default), Glorot/Xavier uniform, or ``init(shape, rng) -> array`` of exactly ``shape``.
    padding_idx : int, optional
        PyTorch: this row of a new table is zeros and its gradient is always zero (the row is
        left out of a sparse gradient). Negative values count from the end.
    max_norm : float, optional
        PyTorch: before each lookup, the looked-up rows whose ``norm_type``-norm exceeds it
        are scaled in place in ``weight`` to norm ``max_norm`` (once per distinct row per
        call). A read-only table gives a ``ValueError`` only when some row needs it.
    norm_type : float, default 2.0
        The p of the p-norm for ``max_norm`` (p > 0, or ``inf``).
    scale_grad_by_freq : bool, default False
        PyTorch: each id's gradient is divided by its number of occurrences in the batch.
    sparse : bool, default False
        PyTorch: ``backward`` produces a :class:`RowSparseGrad` (the occurring rows only; cost
        independent of ``num_embeddings``) instead of a dense array.
    mask_zero : bool, default False
        Keras: id 0 is reserved as padding of variable-length sequences and
        :meth:`compute_mask` returns ``ids != 0``. As Keras documents, ``num_embeddings`` must
        then be the vocabulary size + 1. (It does not change the lookup or the gradient; combine
        with ``padding_idx=0`` for PyTorch's zero padding row.)
    trainable : bool, default True
        Keras: a non-trainable (frozen) layer's ``backward`` returns ``None`` and never touches
        ``weight`` or ``grad``. ``freeze`` is its PyTorch-style negation.

    Attributes
    ----------
    weight : ndarray
        The table.
    grad : ndarray, RowSparseGrad or None
        The accumulated gradient: each :meth:`backward` adds into it, as PyTorch's ``.grad``
        does, until :meth:`zero_grad`.
    padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, mask_zero, trainable
        The options (``padding_idx`` normalised to a non-negative row, as PyTorch stores it).

    Examples
    --------
    >>> emb = Embedding(10, 3, padding_idx=0, seed=0)
    >>> emb([[0, 2], [1, 0]]).shape
    (2, 2, 3)
    >>> emb.weight[0]
    array([0., 0., 0.], dtype=float32)
    """

    option_defaults = _OPTION_DEFAULTS

    def __init__(
        self,
        num_embeddings: int | None = None,
        embedding_dim: int | None = None,
        *,
        weight: np.ndarray | None = None,
        weights: np.ndarray | Sequence[np.ndarray] | None = None,
        dtype: DTypeLike = np.float32,
        seed: int | None = None,
        init: Initializer = "uniform",
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        mask_zero: bool = False,
        trainable: bool = True,
    ) -> None:
        if weights is not None:
            if weight is not None:
                raise ValueError("give weight or weights (its Keras spelling), not both")
            weight = _keras_weights(weights)
        if isinstance(weight, QuantizedTable):
            if trainable:
                raise ValueError(
                    "a QuantizedTable cannot be trained: use trainable=False (from_pretrained "
                    "freezes it)"
                )
            if max_norm is not None:
                raise ValueError(
                    "max_norm renormalises rows in place: a QuantizedTable is read-only"
                )
        elif weight is not None:
            check_table(weight)
        if weight is not None:
            for name, given, actual in (
                ("num_embeddings", num_embeddings, weight.shape[0]),
                ("embedding_dim", embedding_dim, weight.shape[1]),
            ):
                if given is not None and given != actual:
                    raise ValueError(f"{name}={given} does not match weight.shape={weight.shape}")
            shape = weight.shape
        else:
            if num_embeddings is None or embedding_dim is None:
                raise ValueError("give num_embeddings and embedding_dim, or weight")
            dtype = table_dtype(dtype)
            num_embeddings = as_int(num_embeddings, "num_embeddings", 0)
            embedding_dim = as_int(embedding_dim, "embedding_dim", 0)
            require_table_fits(num_embeddings, embedding_dim, dtype)
            shape = (num_embeddings, embedding_dim)
        # Every option is checked before a table is drawn, so a bad one costs nothing.
        padding = padding_row(padding_idx, shape[0])
        max_norm, norm_type = norm_options(max_norm, norm_type)
        if mask_zero and shape[0] < 1:
            raise ValueError("mask_zero=True reserves id 0: num_embeddings must be >= 1")
        if weight is None:
            # Drawn in the arithmetic dtype, then rounded once (NumPy draws float32/64 only).
            weight = initial_table(init, shape, arithmetic_dtype(dtype), seed)
            if weight.dtype != dtype:
                weight = line_aligned_copy(weight, dtype)
            if padding is not None:
                weight[padding] = 0
        self.weight: np.ndarray = weight
        self.grad: np.ndarray | RowSparseGrad | None = None
        self.padding_idx: int | None = padding
        self.max_norm: float | None = max_norm
        self.norm_type: float = norm_type
        self.scale_grad_by_freq: bool = bool(scale_grad_by_freq)
        self.sparse: bool = bool(sparse)
        self.mask_zero: bool = bool(mask_zero)
        self.trainable: bool = bool(trainable)
        self._ids: np.ndarray | None = None

    @classmethod
    def from_pretrained(
        cls,
        embeddings: np.ndarray | QuantizedTable,
        freeze: bool = True,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
    ) -> Embedding:
        """A layer around an existing table, as PyTorch's ``Embedding.from_pretrained``.

        The table is kept as it is (no copy, ``padding_idx`` row not zeroed); ``freeze=True``
        (the default) makes the layer non-trainable. A :class:`fastembed.QuantizedTable` gives
        a frozen layer whose lookups dequantize to float32 (``freeze=False`` is a ValueError).
        """
        return cls(
            weight=embeddings,
            trainable=not freeze,
            padding_idx=padding_idx,
            max_norm=max_norm,
            norm_type=norm_type,
            scale_grad_by_freq=scale_grad_by_freq,
            sparse=sparse,
        )

    def forward(self, ids: ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
        """Look up ``ids`` (any shape) and remember them for :meth:`backward`.

        Returns an array of shape ``ids.shape + (embedding_dim,)``, written into ``out`` if
        given. With ``max_norm``, the looked-up rows of ``weight`` are renormalised in place
        first. The ids are copied only if they are the caller's own array, so that changing it
        afterwards cannot change the gradient.
        """
        converted = as_ids(ids)
        result = gather(
            self.weight, converted, out, max_norm=self.max_norm, norm_type=self.norm_type
        )
        caller_owns = converted is ids or not converted.flags.owndata
        self._ids = converted.copy() if caller_owns else converted
        return result

    __call__ = forward

    def compute_mask(self, ids: ArrayLike) -> np.ndarray | None:
        """Keras: ``ids != 0`` (a bool array of the ids' shape) with ``mask_zero``, else None."""
        if not self.mask_zero:
            return None
        return np.asarray(as_ids(ids)) != 0

    def backward(
        self, grad_output: np.ndarray, optimizer: SparseOptimizer | None = None
    ) -> np.ndarray | RowSparseGrad | None:
        """Add the gradient w.r.t. ``weight`` of the last :meth:`forward` into ``grad``.

        ``grad_output`` must have shape ``ids.shape + (embedding_dim,)`` and the dtype of
        ``weight`` (or float32, for a float16 or bfloat16 table: ``grad`` keeps the table's
        dtype, each row summed in float32 and rounded once). As in PyTorch, the gradient
        accumulates over calls until :meth:`zero_grad`: dense gradients are added in place into
        ``grad`` (allocated on the first call), sparse ones are merged. Returns the
        accumulated ``grad`` (not this call's share alone), or ``None`` for a frozen layer,
        which leaves ``grad`` as it is. On error nothing changes.

        With ``optimizer`` (a :mod:`fastembed.optim` optimizer), the table is updated instead,
        straight from the sorted ids, without forming any gradient array (the same as
        ``optimizer.step(self, grad_output)``); returns None and leaves ``grad`` as it was. A
        frozen layer or a read-only table then raises ``ValueError``.
        """
        if self._ids is None:
            raise RuntimeError("backward() needs a forward() first")
        grad_output = np.asarray(grad_output)
        if grad_output.shape[-1:] != (self.embedding_dim,):
            raise ValueError(
                f"grad_output must end in embedding_dim={self.embedding_dim}, "
                f"got shape {grad_output.shape}"
            )
        grad_output = self._table_grad(grad_output)
        if optimizer is not None:
            optimizer.step(self, grad_output)
            return None
        if not self.trainable:
            return None
        _require_trainable_table(self.weight)
        options = {"padding_idx": self.padding_idx, "scale_grad_by_freq": self.scale_grad_by_freq}
        if self.sparse:
            self._add_sparse_grad(
                sparse_grad(grad_output, self._ids, self.num_embeddings, **options)
            )
        elif self.grad is None:
            self.grad = scatter_add(
                grad_output,
                self._ids,
                self.num_embeddings,
                out=np.empty(self.weight.shape, dtype=self.dtype),
                **options,
            )
        else:
            if isinstance(self.grad, RowSparseGrad):  # the layer was switched to dense
                self.grad = self.grad.to_dense()
            scatter_add(
                grad_output,
                self._ids,
                self.num_embeddings,
                out=self.grad,
                accumulate=True,
                **options,
            )
        return self.grad

    def _gradient_description(self, grad_output: np.ndarray) -> tuple:
        """The last lookup's gradient as the fused optimizer kernels take it."""
        if self._ids is None:
            raise RuntimeError("an optimizer step needs a forward() first")
        grad_output = kernel_readable(grad_output)
        padding = padding_argument(self.padding_idx, self.num_embeddings)
        scale = self.scale_grad_by_freq
        return (grad_output, self._ids, None, "sum", None, None, padding, scale)

    def __getstate__(self) -> dict[str, Any]:
        weight = self.weight
        return {
            "weight": weight if isinstance(weight, QuantizedTable) else np.asarray(weight),
            "grad": self.grad,
            "ids": self._ids,
            **self._options(),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(weight=state["weight"], **{name: state[name] for name in _OPTION_DEFAULTS})
        self.grad = state["grad"]
        self._ids = state["ids"]

    def __repr__(self) -> str:
        options = "".join(
            f", {name}={value!r}"
            for name, value in self._options().items()
            if name != "norm_type" and value != _OPTION_DEFAULTS[name]
        )
        if self.max_norm is not None and self.norm_type != _OPTION_DEFAULTS["norm_type"]:
            options += f", norm_type={self.norm_type!r}"
        return (
            f"Embedding({self.num_embeddings}, {self.embedding_dim}, dtype={self.dtype}{options})"
        )
