"""ShardedEmbedding: one embedding table split by rows over shards that an engine hosts.

The table object routes and checks; the shards hold rows and optimizer state. A lookup checks
every id and reads the rows: the local engine straight from the shards' tables (one gather),
the Ray engine by bucketing the distinct ids by shard in one C++ pass (``Layout.distinct``),
asking each shard for its rows once and expanding them back in the caller's order. A training
step reduces the batch's gradient here with the reduction a single layer uses
(``fastembed.sparse_grad``: sorted distinct rows and their sums, in position order) over the
ids renamed to rows of the shards' tables laid end to end (``Layout.concatenated``), so each
shard's rows and sums are slices of it; each shard applies the fused optimizer in place: the
same arithmetic on the same sums as a single layer.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from .. import _core
from .._atomic import atomic_write
from .._checks import as_int, require_table_fits
from .._functional import padding_row, sparse_grad
from .._ids import as_ids
from .._initializers import INIT_NAMES, Initializer, initial_table, seed_key
from ..layers import Embedding
from ..sparse import RowSparseGrad
from .engines import Builder, LocalEngine, RayEngine, ShardError, make_engine
from .layout import PLACEMENTS, Layout
from .shard import optimizer_config

__all__ = ["ShardedEmbedding", "ShardError"]

MANIFEST = "manifest.json"
FORMAT = "fastembed.ShardedEmbedding"
FORMAT_VERSION = 1
_TABLE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_GENERATION_PREFIX = "generation-"


class ShardedEmbedding:
    """An embedding table of ``num_embeddings`` rows split by rows over ``num_shards`` shards.

    It computes what one :class:`fastembed.Embedding` over the same table computes: ``forward``
    returns the same array, ``backward`` with an optimizer makes the same update (bitwise), and
    errors are the same. Only where the rows live differs.

    Parameters
    ----------
    num_embeddings, embedding_dim : int
        Shape of the whole table.
    num_shards : int
        Number of shards (>= 1).
    engine : {"local", "ray"} or engine object, default "local"
        ``"local"``: the shards live in this process. ``"ray"``: one Ray actor per shard, in the
        Ray cluster this process has joined, or in a one-machine Ray started on loopback. A
        :class:`RayEngine` object sets actor CPUs, threads, timeout and placement.
    placement : {"range", "modulo"}, default "range"
        ``"range"``: shard ``s`` holds contiguous rows ``[s * r, (s + 1) * r)``,
        ``r = ceil(num_embeddings / num_shards)``. ``"modulo"``: row ``i`` lives on shard
        ``i % num_shards``, which spreads frequent ids over all shards.
    dtype : float32 or float64
    init : {"uniform", "normal", "xavier_uniform"} or callable, default "uniform"
        As for :class:`fastembed.Embedding`. A named init draws each row from ``seed`` and its
        row id alone (a counter-based generator, drawn by the shard that holds the row), so a
        new table is the same for a given seed whatever ``num_shards``, ``placement`` and
        engine. (It is not the table ``Embedding(seed=seed)`` draws.) A callable is called once
        here with the whole shape and ``np.random.default_rng(seed)``.
    seed : int, optional
        Seed of the init; a fresh one when None (kept in ``self.seed``).
    padding_idx : int, optional
        As in PyTorch: that row is zeros in a new table and its gradient is always zero.
    threads_per_shard : int, optional
        Kernel threads of each Ray actor (set explicitly inside it: Ray sets
        ``OMP_NUM_THREADS=1`` in workers). Ignored by the local engine: its shards share this
        process's one thread pool, which runs one call at a time with all of
        ``fastembed.get_num_threads()`` threads (see :class:`LocalEngine`).

    Examples
    --------
    >>> with ShardedEmbedding(1000, 8, num_shards=4, seed=0) as table:
    ...     out = table.forward([[1, 999], [5, 5]])
    ...     table.backward(np.ones_like(out), optimizer=fastembed.optim.Adam())
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        *,
        num_shards: int,
        engine: str | LocalEngine | RayEngine = "local",
        placement: str = "range",
        dtype: DTypeLike = np.float32,
        init: Initializer = "uniform",
        seed: int | None = None,
        padding_idx: int | None = None,
        threads_per_shard: int | None = None,
    ) -> None:
        num_embeddings = as_int(num_embeddings, "num_embeddings", 0)
        embedding_dim = as_int(embedding_dim, "embedding_dim", 0)
        dtype = _table_dtype(dtype)
        require_table_fits(num_embeddings, embedding_dim, dtype)
        layout = _layout(num_embeddings, num_shards, placement)
        padding = padding_row(padding_idx, num_embeddings)
        if not callable(init) and init not in INIT_NAMES:
            raise ValueError(
                f"init must be one of {', '.join(map(repr, INIT_NAMES))} or a callable, "
                f"got {init!r}"
            )
        threads = _threads(threads_per_shard)
        self.seed, key = seed_key(seed)
        if callable(init):
            whole = initial_table(init, (num_embeddings, embedding_dim), dtype, self.seed)
            if padding is not None:
                whole[padding] = 0
            builders = _row_builders(layout, whole)
        else:
            builders = [
                ("drawn", (s, layout, embedding_dim, dtype.str, init, key, padding))
                for s in range(layout.num_shards)
            ]
        self._setup(layout, embedding_dim, dtype, padding, engine, threads, builders)

    def _setup(
        self,
        layout: Layout,
        embedding_dim: int,
        dtype: np.dtype,
        padding: int | None,
        engine: object,
        threads_per_shard: int | None,
        builders: list[Builder],
    ) -> None:
        self._layout = layout
        self.embedding_dim = embedding_dim
        self.dtype = dtype
        self.padding_idx = padding
        self.threads_per_shard = threads_per_shard
        self._engine = make_engine(engine)
        self.engine: str = self._engine.name
        self._ids: np.ndarray | None = None
        self._optimizer: tuple[str, dict[str, Any]] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False
        self._engine.start(builders, threads_per_shard)

    # --- other ways to make one ---------------------------------------------------------------

    @classmethod
    def from_embedding(
        cls,
        emb: Embedding,
        num_shards: int,
        *,
        engine: str | LocalEngine | RayEngine = "local",
        placement: str = "range",
        threads_per_shard: int | None = None,
    ) -> ShardedEmbedding:
        """The table of ``emb`` (an :class:`Embedding`, or a 2-d float array) split into
        ``num_shards`` shards, with its ``padding_idx``. The shards hold copies: ``emb`` is
        not changed by training the sharded table."""
        if isinstance(emb, Embedding):
            weight, padding = emb.weight, emb.padding_idx
        elif isinstance(emb, np.ndarray):
            weight, padding = emb, None
        else:
            raise TypeError(f"emb must be an Embedding or an array, got {type(emb).__name__}")
        dtype = _table_dtype(weight.dtype)
        if weight.ndim != 2:
            raise ValueError(f"the table must be 2-d, got shape {weight.shape}")
        layout = _layout(weight.shape[0], num_shards, placement)
        table = cls.__new__(cls)
        table.seed = None
        builders = _row_builders(layout, weight)
        threads = _threads(threads_per_shard)
        table._setup(layout, weight.shape[1], dtype, padding, engine, threads, builders)
        return table

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        engine: str | LocalEngine | RayEngine = "local",
        num_shards: int | None = None,
        *,
        placement: str | None = None,
        threads_per_shard: int | None = None,
    ) -> ShardedEmbedding:
        """The table saved by :meth:`save` in ``directory`` (its last complete checkpoint),
        with its optimizer state. ``num_shards`` and ``placement`` default to the saved ones;
        others re-shard: each new shard reads its rows out of the saved shards' files."""
        directory = os.fspath(directory)
        manifest = _read_manifest(directory)
        layout = _layout(
            manifest["num_embeddings"],
            manifest["num_shards"] if num_shards is None else num_shards,
            manifest["placement"] if placement is None else placement,
        )
        table = cls.__new__(cls)
        table.seed = manifest.get("seed")
        builders = _checkpoint_builders(layout, directory, manifest)
        table._setup(
            layout,
            manifest["embedding_dim"],
            np.dtype(manifest["dtype"]),
            manifest["padding_idx"],
            engine,
            _threads(threads_per_shard),
            builders,
        )
        table._optimizer = _optimizer_entry(manifest)
        return table

    # --- properties ---------------------------------------------------------------------------

    @property
    def num_embeddings(self) -> int:
        return self._layout.num_embeddings

    @property
    def num_shards(self) -> int:
        return self._layout.num_shards

    @property
    def placement(self) -> str:
        return self._layout.placement

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_embeddings, self.embedding_dim)

    def shard_rows(self, shard: int) -> range:
        """The global row ids that shard ``shard`` holds."""
        return self._layout.rows(as_int(shard, "shard", 0, self.num_shards - 1))

    # --- lookups and training -----------------------------------------------------------------

    def forward(self, ids: ArrayLike) -> np.ndarray:
        """``weight[ids]``, exactly as :meth:`Embedding.forward`: shape ``ids.shape +
        (embedding_dim,)``, any ids shape and integer dtype. Every id is checked before any
        shard is asked (``IndexError`` naming the id and its position). The ids are remembered
        for :meth:`backward`."""
        self._check_open()
        converted = as_ids(ids)
        out = self._lookup(converted)
        self._remember(ids, converted)
        return out

    __call__ = forward

    def forward_async(self, ids: ArrayLike) -> concurrent.futures.Future:
        """:meth:`forward` as a ``concurrent.futures.Future``: the ids are checked now (errors
        raise here, and the ids are remembered for :meth:`backward`), the shards are asked in
        the background."""
        self._check_open()
        converted = as_ids(ids)
        _core.check_ids(converted, self.num_embeddings)
        self._remember(ids, converted)
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, "ShardedEmbedding")
        return self._executor.submit(self._lookup, converted)

    def _remember(self, ids: ArrayLike, converted: np.ndarray) -> None:
        """Keeps the ids for backward, copied if they are the caller's array (as Embedding)."""
        caller_owns = converted is ids or not converted.flags.owndata
        self._ids = converted.copy() if caller_owns else converted

    def _lookup(self, ids: np.ndarray) -> np.ndarray:
        # From the recycled buffers, as a single layer's result: no fresh pages to fault in.
        out = _core.empty((*ids.shape, self.embedding_dim), self.dtype)
        self._engine.lookup(self._layout, ids, out.reshape(-1, self.embedding_dim))
        return out

    def backward(self, grad_output: np.ndarray, optimizer: Any = None) -> RowSparseGrad | None:
        """Train on the gradient of the last :meth:`forward`.

        The gradient is reduced here as a single layer reduces it (sorted distinct rows, each
        row's sum in position order; the ``padding_idx`` row left out), and each shard receives
        only its rows and their sums. With ``optimizer`` (``fastembed.optim.SGD``, ``Adagrad``
        or ``Adam``), every shard applies it in place to those rows, so the table ends up as a
        single :class:`Embedding` trained with the same optimizer would (bitwise). The
        optimizer gives the rule and hyper-parameters (read at every step); its state lives in
        the shards and is saved by :meth:`save`. Returns None.

        Without ``optimizer``, nothing changes and the step's gradient is returned as a
        :class:`RowSparseGrad` (global row ids).

        Raises
        ------
        RuntimeError
            No forward yet.
        ValueError, TypeError
            ``grad_output`` has the wrong shape or dtype; ``optimizer`` is not one of
            fastembed's. Nothing is sent to any shard then.
        ShardError
            A shard could not be reached (see :meth:`restore`).
        """
        self._check_open()
        if self._ids is None:
            raise RuntimeError("backward() needs a forward() first")
        if not isinstance(grad_output, np.ndarray):
            raise TypeError(f"grad_output must be a NumPy array, got {type(grad_output).__name__}")
        expected = (*self._ids.shape, self.embedding_dim)
        if grad_output.shape != expected:
            raise ValueError(
                f"grad_output must have shape ids.shape + (embedding_dim,) = {expected}, "
                f"got shape {grad_output.shape}"
            )
        if grad_output.dtype != self.dtype:
            raise TypeError(
                f"grad_output must have the dtype of the table ({self.dtype}), got "
                f"{grad_output.dtype}"
            )
        if optimizer is None:
            return sparse_grad(
                grad_output, self._ids, self.num_embeddings, padding_idx=self.padding_idx
            )
        config = optimizer_config(optimizer)
        # Reduced over the ids renamed to rows of the shards' tables laid end to end: the same
        # runs, so the same sums, but the sorted rows come out grouped by shard, and each
        # shard's rows and sums are slices (no routing pass, no copy of the sums).
        layout = self._layout
        renamed = self._ids if self.placement == "range" else layout.concatenated(self._ids)
        padding = None
        if self.padding_idx is not None:
            padding = int(layout.concatenated(np.array([self.padding_idx]))[0])
        grad = sparse_grad(grad_output, renamed, self.num_embeddings, padding_idx=padding)
        first = layout.first_rows
        bounds = np.searchsorted(grad.indices, first).tolist()
        shards = [slice(bounds[s], bounds[s + 1]) for s in range(self.num_shards)]
        parts = [
            (grad.indices[part] - first[s], grad.values[part]) for s, part in enumerate(shards)
        ]
        self._engine.step(config, parts)
        self._optimizer = config
        return None

    # --- checkpoints --------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> None:
        """Writes a checkpoint into ``directory``: one ``.npy`` per shard and per optimizer
        state array, in a new ``generation-<n>/`` folder, then ``manifest.json`` (replaced
        atomically, last), then the older generations are removed. A crash at any point leaves
        the previous checkpoint loadable. The shards write their own files, so on a cluster
        ``directory`` must be on storage every node sees.
        """
        self._check_open()
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        previous = _read_manifest(directory, missing_ok=True)
        generation = (previous["generation"] + 1) if previous else 1
        folder = f"{_GENERATION_PREFIX}{generation}"
        shutil.rmtree(os.path.join(directory, folder), ignore_errors=True)  # a crashed save's
        os.makedirs(os.path.join(directory, folder))
        prefixes = [f"{folder}/shard-{s}" for s in range(self.num_shards)]
        entries = self._engine.save(directory, prefixes)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "generation": generation,
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "dtype": self.dtype.str,
            "num_shards": self.num_shards,
            "placement": self.placement,
            "padding_idx": self.padding_idx,
            "seed": self.seed,
            "optimizer": None
            if self._optimizer is None
            else {"class": self._optimizer[0], "hyperparameters": self._optimizer[1]},
            "shards": entries,
        }
        with atomic_write(os.path.join(directory, MANIFEST), "w", encoding="utf-8") as file:
            json.dump(manifest, file, indent=1)
        for name in os.listdir(directory):
            if name.startswith(_GENERATION_PREFIX) and name != folder:
                shutil.rmtree(os.path.join(directory, name), ignore_errors=True)

    def restore(self, directory: str | os.PathLike) -> None:
        """Brings every shard back from the checkpoint in ``directory`` (after a
        :class:`ShardError`, say), keeping this table's engine, shard count and placement. The
        old shards (actors) are ended first, dead or alive."""
        self._check_open()
        directory = os.fspath(directory)
        manifest = _read_manifest(directory)
        if (manifest["num_embeddings"], manifest["embedding_dim"]) != self.shape:
            raise ValueError(
                f"the checkpoint in {directory} holds a "
                f"({manifest['num_embeddings']}, {manifest['embedding_dim']}) table, "
                f"this one is {self.shape}"
            )
        if np.dtype(manifest["dtype"]) != self.dtype:
            raise ValueError(f"the checkpoint's dtype is {manifest['dtype']}, not {self.dtype}")
        self._engine.restart(
            _checkpoint_builders(self._layout, directory, manifest), self.threads_per_shard
        )
        self.padding_idx = manifest["padding_idx"]
        self._optimizer = _optimizer_entry(manifest)
        self._ids = None

    def to_embedding(self) -> Embedding:
        """The whole table gathered into one :class:`Embedding` (a copy; for tables that fit
        in this process)."""
        self._check_open()
        whole = self._layout.assemble(self._engine.tables())
        return Embedding(weight=whole, padding_idx=self.padding_idx)

    # --- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Ends the shards (Ray actors are killed) and the background thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._engine.close()

    def __enter__(self) -> ShardedEmbedding:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this ShardedEmbedding is closed")

    def __repr__(self) -> str:
        return (
            f"ShardedEmbedding({self.num_embeddings}, {self.embedding_dim}, "
            f"num_shards={self.num_shards}, engine={self.engine!r}, "
            f"placement={self.placement!r}, dtype={self.dtype.name}, "
            f"padding_idx={self.padding_idx})"
        )


def _table_dtype(dtype: DTypeLike) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in _TABLE_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _layout(num_embeddings: int, num_shards: object, placement: object) -> Layout:
    shards = as_int(num_shards, "num_shards", 1, 1 << 20)
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be 'range' or 'modulo', got {placement!r}")
    return Layout(num_embeddings, shards, str(placement))


def _threads(threads_per_shard: object) -> int | None:
    if threads_per_shard is None:
        return None
    return as_int(threads_per_shard, "threads_per_shard", 1, 1024)


def _row_builders(layout: Layout, weight: np.ndarray) -> list[Builder]:
    builders = []
    for s in range(layout.num_shards):
        rows = layout.rows(s)
        builders.append(("from_rows", (s, weight[rows.start : rows.stop : rows.step])))
    return builders


def _checkpoint_builders(layout: Layout, directory: str, manifest: dict) -> list[Builder]:
    absolute = os.path.abspath(directory)
    return [("from_checkpoint", (s, layout, absolute, manifest)) for s in range(layout.num_shards)]


def _optimizer_entry(manifest: dict) -> tuple[str, dict[str, Any]] | None:
    entry = manifest.get("optimizer")
    return None if entry is None else (entry["class"], entry["hyperparameters"])


def _read_manifest(directory: str, missing_ok: bool = False) -> dict | None:
    path = os.path.join(directory, MANIFEST)
    if not os.path.exists(path):
        if missing_ok:
            return None
        raise ValueError(f"{directory} holds no ShardedEmbedding checkpoint (no {MANIFEST})")
    try:
        with open(path, encoding="utf-8") as file:
            manifest = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the checkpoint manifest {path}: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {manifest.get('format_version')!r}; this fastembed "
            f"reads {FORMAT_VERSION}"
        )
    return manifest
