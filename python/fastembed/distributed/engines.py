"""Engines: where a :class:`ShardedEmbedding`'s shards live and how calls reach them.

* :class:`LocalEngine` (the default): the shards are objects in this process; a lookup writes
  each shard's rows straight into the caller's output. Needs nothing but fastembed.
* :class:`RayEngine`: one Ray actor per shard, in the Ray cluster this process has joined
  (``ray.init(address=...)``), or in a local one-machine Ray started on first use. Arrays travel
  through Ray's object store.

Both take the same calls from the table (``start``, ``lookup``, ``step``, ``save``, ``tables``,
``close``); a shard is a :class:`~fastembed.distributed.shard.Shard` in both, built from a
``(constructor name, arguments)`` pair so that it can be built where it lives.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from .. import _core, _threading
from .layout import Layout
from .shard import OptimizerConfig, Shard

# How a shard is built: the name of a Shard constructor (drawn, from_rows, from_checkpoint) and
# its arguments.
Builder = tuple[str, tuple]


class ShardError(RuntimeError):
    """A shard could not be reached or failed: its actor died, or it did not answer in time.

    Attributes
    ----------
    shard : int
        The shard's index.
    """

    def __init__(self, shard: int, message: str) -> None:
        super().__init__(f"shard {shard}: {message}")
        self.shard = shard


def _build(builder: Builder) -> Shard:
    name, arguments = builder
    return getattr(Shard, name)(*arguments)


def _slices(offsets: np.ndarray) -> list[slice]:
    bounds = offsets.tolist()
    return [slice(bounds[s], bounds[s + 1]) for s in range(len(bounds) - 1)]


class LocalEngine:
    """The shards as objects in this process.

    A lookup is one gather reading each row from its shard's table (no bucketing, no
    deduplication: measured, sending each shard its distinct ids and expanding the answers took
    twice as long as the gather); a step hands each shard its slice of the batch's reduced
    gradient, the shards one after another.

    ``threads_per_shard`` is accepted and ignored here, on purpose: the kernels run on
    fastembed's one process-wide thread pool (``fastembed.set_num_threads``), which serves one
    call at a time with all its threads. Shards run side by side with ``t`` threads each would
    queue for that pool and run one after another anyway, and a gather or a step over one
    shard at a time already uses every thread; a per-call thread count would only make each
    shard's call slower. The total is set with ``fastembed.set_num_threads``.
    """

    name = "local"

    def __init__(self) -> None:
        self._shards: list[Shard] = []

    def start(self, builders: list[Builder], threads_per_shard: int | None) -> None:
        self._shards = [_build(builder) for builder in builders]

    def restart(self, builders: list[Builder], threads_per_shard: int | None) -> None:
        """Rebuilds every shard (from a checkpoint, say)."""
        self.start(builders, threads_per_shard)

    def lookup(self, layout: Layout, ids: np.ndarray, out: np.ndarray) -> None:
        """``out`` (N, D) = the rows of ``ids``, read from the shards' tables in one pass (the
        shards are in this process: nothing to bucket). IndexError before any row is read."""
        tables = [shard.weight for shard in self._shards]
        _core.gather_sharded(tables, ids, out, layout.num_embeddings, layout.placement == "modulo")

    def step(self, config: OptimizerConfig, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for shard, (rows, sums) in zip(self._shards, parts):
            shard.step(config, rows, sums)

    def save(self, directory: str, prefixes: list[str]) -> list[dict[str, Any]]:
        return [shard.save(directory, prefix) for shard, prefix in zip(self._shards, prefixes)]

    def tables(self) -> list[np.ndarray]:
        return [shard.table() for shard in self._shards]

    def close(self) -> None:
        self._shards = []


class _ShardActor:
    """What a Ray actor holds: one Shard, built in the actor's process."""

    def __init__(self, builder: Builder, threads: int) -> None:
        # Ray starts workers with OMP_NUM_THREADS=1 and a CPU share of its own choosing: the
        # shard's thread count is set here, explicitly.
        _threading.set_num_threads(threads)
        self._shard = _build(builder)

    def ready(self) -> int:
        return self._shard.index

    def rebuild(self, builder: Builder) -> int:
        self._shard = _build(builder)
        return self._shard.index

    def lookup(self, local_ids: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Rows ``local_ids[start:stop]``: every shard is sent the whole array, which the
        object store holds once and each actor maps without copying."""
        return self._shard.lookup(local_ids[start:stop])

    def step(self, config: OptimizerConfig, rows: np.ndarray, sums: np.ndarray) -> None:
        self._shard.step(config, rows, sums)

    def save(self, directory: str, prefix: str) -> dict[str, Any]:
        return self._shard.save(directory, prefix)

    def table(self) -> np.ndarray:
        return self._shard.table()


def keep_ray_local() -> None:
    """Sets the environment a one-machine Ray needs here; call it before ``ray`` is imported.

    Usage statistics off (otherwise Ray contacts an outside host), and, unless ``RAY_ADDRESS``
    names a cluster to join, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: Ray then takes the loopback
    address as the node's address and binds every server to 127.0.0.1. Without it, Ray on Linux
    advertises and listens on the machine's network interface even when ``ray.init`` is given
    ``_node_ip_address="127.0.0.1"``. Ray reads both variables when it is imported; a value the
    caller set already is kept.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not os.environ.get("RAY_ADDRESS"):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def import_ray() -> Any:
    """``ray``, imported as :func:`keep_ray_local` sets it up."""
    keep_ray_local()
    try:
        import ray
    except ImportError as error:
        raise ImportError('engine="ray" needs Ray: pip install ".[ray]"') from error
    return ray


def init_local_ray(num_cpus: int | None = None, **options: Any) -> None:
    """Starts a one-machine Ray bound to the loopback interface, without a dashboard, unless
    this process has joined a cluster already (``ray.init(address=...)``) or ``RAY_ADDRESS``
    names one to join."""
    ray = import_ray()
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **options)
        return
    ray.init(
        address="local",
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        num_cpus=num_cpus if num_cpus is not None else os.cpu_count(),
        **options,
    )


class RayEngine:
    """One Ray actor per shard.

    Parameters
    ----------
    num_cpus : float, optional
        CPUs Ray reserves for each shard's actor; fractions let several shards share a core.
        Default: the cluster's CPUs divided among the shards, at most 1.
    threads_per_shard : int, optional
        Kernel threads of each actor (``fastembed.set_num_threads`` inside it). Default: the
        table's ``threads_per_shard``, else ``num_cpus`` rounded down, at least 1.
    timeout : float, default 60
        Seconds a call waits for the shards before raising :class:`ShardError`. Starting the
        actors (new worker processes, each importing NumPy and fastembed) waits at least
        ``STARTUP_TIMEOUT`` seconds: on a busy host that alone can take tens of seconds.
    actor_options : dict, optional
        More options for the actors (``ray.remote(...).options``), e.g.
        ``{"scheduling_strategy": "SPREAD"}`` for one shard per node, or
        ``{"resources": {"embedding_host": 1}}`` for one shard per host that has that resource.
    """

    name = "ray"
    STARTUP_TIMEOUT = 300.0

    def __init__(
        self,
        *,
        num_cpus: float | None = None,
        threads_per_shard: int | None = None,
        timeout: float = 60.0,
        actor_options: dict[str, Any] | None = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.num_cpus = num_cpus
        self.threads_per_shard = threads_per_shard
        self.timeout = float(timeout)
        self.actor_options = dict(actor_options or {})
        self._actors: list[Any] = []

    def start(self, builders: list[Builder], threads_per_shard: int | None) -> None:
        self._actors = [
            self._new_actor(builder, len(builders), threads_per_shard) for builder in builders
        ]
        self._wait({s: a.ready.remote() for s, a in enumerate(self._actors)}, startup=True)

    def _new_actor(self, builder: Builder, num_shards: int, threads_per_shard: int | None) -> Any:
        ray = import_ray()
        init_local_ray()
        cpus = self.num_cpus
        if cpus is None:
            cpus = min(1.0, ray.cluster_resources().get("CPU", 1.0) / max(num_shards, 1))
        threads = self.threads_per_shard or threads_per_shard or max(1, int(cpus))
        actor = ray.remote(_ShardActor).options(num_cpus=cpus, max_restarts=0, **self.actor_options)
        return actor.remote(builder, threads)

    def restart(self, builders: list[Builder], threads_per_shard: int | None) -> None:
        """Rebuilds every shard: a live actor rebuilds its shard in place, a dead one is
        replaced by a new actor."""
        calls = {s: a.rebuild.remote(b) for s, (a, b) in enumerate(zip(self._actors, builders))}
        actors = [
            self._actors[s]
            if s in calls and self._rebuilt(s, calls[s])
            else self._new_actor(builder, len(builders), threads_per_shard)
            for s, builder in enumerate(builders)
        ]
        self._kill(self._actors[len(builders) :])
        self._actors = actors
        self._wait({s: a.ready.remote() for s, a in enumerate(self._actors)}, startup=True)

    def _rebuilt(self, shard: int, call: Any) -> bool:
        """Whether the actor answered the rebuild ``call`` (False: the actor is gone)."""
        try:
            self._wait({shard: call})
        except ShardError as error:
            if isinstance(error.__cause__, import_ray().exceptions.RayActorError):
                return False
            raise
        return True

    def _wait(self, calls: dict[int, Any], startup: bool = False) -> dict[int, Any]:
        """Each shard's result, or ShardError naming the first shard (by index) that failed or
        did not answer before the deadline; the whole call never waits longer than timeout
        (or STARTUP_TIMEOUT, if longer, for a ``startup`` wait on new actors)."""
        ray = import_ray()
        timeout = max(self.timeout, self.STARTUP_TIMEOUT) if startup else self.timeout
        deadline = time.monotonic() + timeout
        results = {}
        for shard, ref in calls.items():
            try:
                results[shard] = ray.get(ref, timeout=max(deadline - time.monotonic(), 0.0))
            except ray.exceptions.RayActorError as error:
                raise ShardError(
                    shard,
                    f"its Ray actor is gone ({type(error).__name__}); restore(directory) or "
                    "ShardedEmbedding.load(directory) brings the table back from a checkpoint",
                ) from error
            except ray.exceptions.GetTimeoutError as error:
                raise ShardError(shard, f"no answer within {timeout} s") from error
            except ray.exceptions.RayTaskError as error:
                raise ShardError(shard, f"failed: {error}") from error
        return results

    def lookup(self, layout: Layout, ids: np.ndarray, out: np.ndarray) -> None:
        """Buckets the distinct ids by shard (IndexError before any shard is asked), asks every
        shard with ids for each of its rows once, all at once, and expands the answers into
        ``out`` in the caller's order. Sending distinct ids only is what makes Zipf-like
        batches cheap here: the object store then moves each frequent row once, not once per
        occurrence, and a shard's load is its distinct rows."""
        local, offsets, inverse = layout.distinct(ids)
        parts = _slices(offsets)
        # One object for all shards: a put per shard cost 10-18 ms on 1M uniform ids.
        local_ref = import_ray().put(local)
        calls = {
            s: self._actors[s].lookup.remote(local_ref, part.start, part.stop)
            for s, part in enumerate(parts)
            if part.stop > part.start
        }
        answers = self._wait(calls)
        nothing = np.empty((0, out.shape[1]), dtype=out.dtype)
        _core.expand_rows(
            [answers.get(s, nothing) for s in range(len(parts))], offsets, inverse, out
        )

    def step(self, config: OptimizerConfig, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
        calls = {
            s: actor.step.remote(config, rows, sums)
            for s, (actor, (rows, sums)) in enumerate(zip(self._actors, parts))
        }
        self._wait(calls)

    def save(self, directory: str, prefixes: list[str]) -> list[dict[str, Any]]:
        calls = {
            s: a.save.remote(directory, p) for s, (a, p) in enumerate(zip(self._actors, prefixes))
        }
        results = self._wait(calls)
        return [results[s] for s in range(len(self._actors))]

    def tables(self) -> list[np.ndarray]:
        results = self._wait({s: a.table.remote() for s, a in enumerate(self._actors)})
        return [results[s] for s in range(len(self._actors))]

    def close(self) -> None:
        self._kill(self._actors)
        self._actors = []

    @staticmethod
    def _kill(actors: list[Any]) -> None:
        if actors:
            ray = import_ray()
            for actor in actors:
                ray.kill(actor)


def make_engine(engine: object) -> LocalEngine | RayEngine:
    """An engine from its name ("local", "ray") or an engine object (used as it is)."""
    if isinstance(engine, (LocalEngine, RayEngine)):
        return engine
    if engine == "local":
        return LocalEngine()
    if engine == "ray":
        return RayEngine()
    raise ValueError(f"engine must be 'local', 'ray' or an engine object, got {engine!r}")
