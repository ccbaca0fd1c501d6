"""One shard of a :class:`ShardedEmbedding`: its rows of the table and its optimizer's state.

A shard is the same object whichever engine hosts it: the local engine keeps a list of them in
the calling process, the Ray engine keeps one inside each actor. Everything it does is a call
into the kernels that serve a single :class:`fastembed.Embedding` (gather, the fused optimizer
steps), on the shard's own rows.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import optim
from .._atomic import atomic_write
from .._functional import gather
from .._initializers import counter_rows
from .._memory import line_aligned_copy, line_aligned_empty
from .layout import Layout

# (optimizer class name, hyper-parameters): what a shard needs to build the caller's optimizer.
OptimizerConfig = tuple[str, dict[str, Any]]

_OPTIMIZERS = {cls.__name__: cls for cls in (optim.SGD, optim.Adagrad, optim.Adam)}


def optimizer_config(optimizer: object) -> OptimizerConfig:
    """The class name and hyper-parameters of one of fastembed's fused optimizers."""
    if type(optimizer) not in _OPTIMIZERS.values():
        raise TypeError(
            "optimizer must be fastembed.optim.SGD, Adagrad or Adam, got "
            f"{type(optimizer).__name__}"
        )
    names = optimizer.hyperparameters  # type: ignore[attr-defined]
    return type(optimizer).__name__, {name: getattr(optimizer, name) for name in names}


def _build_optimizer(config: OptimizerConfig) -> optim.SparseOptimizer:
    name, hyperparameters = config
    if name not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r} (expected one of {sorted(_OPTIMIZERS)})")
    return _OPTIMIZERS[name](**hyperparameters)


def write_npy(path: str, array: np.ndarray) -> None:
    """``np.save`` through the atomic-write helper."""
    with atomic_write(path) as file:
        np.save(file, np.asarray(array), allow_pickle=False)


class Shard:
    """Rows ``layout.rows(index)`` of the table, as a writeable C-contiguous array ``weight``.

    It steps the caller's optimizer as a layer of its own: ``optimizer.step(shard, sums)`` with
    the shard's distinct local rows and their summed gradients (see :meth:`step`).
    """

    trainable = True

    def __init__(self, index: int, weight: np.ndarray) -> None:
        self.index = index
        self.weight = weight
        self.optimizer: optim.SparseOptimizer | None = None
        self._loaded_state: dict[str, np.ndarray] = {}
        self._rows: np.ndarray | None = None

    # --- how a shard comes to be --------------------------------------------------------------

    @classmethod
    def drawn(
        cls,
        index: int,
        layout: Layout,
        dim: int,
        dtype: str,
        init: str,
        key: int,
        padding_idx: int | None,
    ) -> Shard:
        """A new shard, each row drawn from ``key`` and its global row id alone."""
        rows = layout.rows(index)
        weight = counter_rows(init, key, rows, layout.num_embeddings, dim, np.dtype(dtype))
        if padding_idx is not None and padding_idx in rows:
            weight[rows.index(padding_idx)] = 0
        return cls(index, weight)

    @classmethod
    def from_rows(cls, index: int, rows: np.ndarray) -> Shard:
        """A shard owning a copy of ``rows`` (which may be a read-only object-store array), on
        a cache line as every table fastembed makes (``line_aligned_copy``)."""
        return cls(index, line_aligned_copy(rows))

    @classmethod
    def from_checkpoint(
        cls, index: int, layout: Layout, directory: str, manifest: dict[str, Any]
    ) -> Shard:
        """Rows ``layout.rows(index)`` read from a checkpoint written under any layout (the rows
        are picked out of the saved shards' memory-mapped files), with the optimizer state."""
        saved = Layout(manifest["num_embeddings"], manifest["num_shards"], manifest["placement"])
        files = manifest["shards"]
        rows = layout.rows(index)
        ids = np.arange(rows.start, rows.stop, rows.step, dtype=np.int64)
        owners, local = saved.owner(ids)
        present = [int(s) for s in np.unique(owners)]

        def pick(name: str | None) -> np.ndarray:
            """Rows of one saved array (the table, or the optimizer state called ``name``)."""
            result = None
            for owner in present:
                path = files[owner]["table"] if name is None else files[owner]["state"][name]
                source = np.load(os.path.join(directory, path), mmap_mode="r")
                if result is None:
                    result = line_aligned_empty((len(rows), *source.shape[1:]), source.dtype)
                mine = owners == owner
                result[mine] = source[local[mine]]
            if result is None:  # a shard without rows
                source = np.load(os.path.join(directory, _first_file(files, name)), mmap_mode="r")
                result = np.empty((0, *source.shape[1:]), dtype=source.dtype)
            return result

        shard = cls(index, pick(None))
        config = manifest.get("optimizer")
        if config is not None:
            names = files[0]["state"]
            state = {}
            for name in names:
                first = np.load(os.path.join(directory, files[0]["state"][name]), mmap_mode="r")
                # A 0-d entry (Adam's step) is the same on every shard: all count every step.
                state[name] = np.array(first) if first.ndim == 0 else pick(name)
            shard._load_optimizer((config["class"], config["hyperparameters"]), state)
        return shard

    def _load_optimizer(self, config: OptimizerConfig, state: dict[str, np.ndarray]) -> None:
        self.optimizer = _build_optimizer(config)
        flat = {name: np.asarray(value) for name, value in config[1].items()}
        flat.update({f"table0.{name}": array for name, array in state.items()})
        self.optimizer.load_state_dict(flat)
        self._loaded_state = state

    # --- what a shard does --------------------------------------------------------------------

    def lookup(self, local_ids: np.ndarray) -> np.ndarray:
        """Its rows ``local_ids`` (an array of the shard's own row numbers)."""
        return gather(self.weight, local_ids)

    def step(self, config: OptimizerConfig, local_rows: np.ndarray, sums: np.ndarray) -> None:
        """One optimizer step: row ``local_rows[k]`` (sorted, distinct) has the summed gradient
        ``sums[k]``. Called on every shard at every step, with no rows if the batch had none
        here, so that step counts (Adam's bias correction) stay those of a single layer.

        The fused kernel reduces by row as it does for a layer; each row occurs once, so its
        "sum" is its gradient copied bit for bit, and the update is the single layer's.
        """
        name, hyperparameters = config
        if self.optimizer is None or type(self.optimizer).__name__ != name:
            self.optimizer = _build_optimizer(config)
            self._loaded_state = {}
        else:  # the caller may change hyper-parameters between steps (a learning-rate schedule)
            for key, value in hyperparameters.items():
                setattr(self.optimizer, key, value)
        self._rows = local_rows
        try:
            self.optimizer.step(self, sums)
        finally:
            self._rows = None

    def _gradient_description(self, grad_output: np.ndarray) -> tuple:
        """The step's gradient as the fused optimizer kernels take it (see optim.py)."""
        if type(grad_output) is not np.ndarray or not grad_output.flags.c_contiguous:
            grad_output = np.ascontiguousarray(grad_output)
        return (grad_output, self._rows, None, "sum", None, None, -1, False)

    def save(self, directory: str, prefix: str) -> dict[str, Any]:
        """Writes ``<prefix>.npy`` (the rows) and ``<prefix>.<name>.npy`` per optimizer state
        array into ``directory``; returns their names relative to it."""
        entry: dict[str, Any] = {"table": f"{prefix}.npy", "rows": int(self.weight.shape[0])}
        write_npy(os.path.join(directory, entry["table"]), self.weight)
        state = (self.optimizer.state(self) if self.optimizer else {}) or self._loaded_state
        entry["state"] = {}
        for name, array in state.items():
            entry["state"][name] = f"{prefix}.{name}.npy"
            write_npy(os.path.join(directory, entry["state"][name]), array)
        return entry

    def table(self) -> np.ndarray:
        return self.weight


def _first_file(files: list[dict[str, Any]], name: str | None) -> str:
    return files[0]["table"] if name is None else files[0]["state"][name]
