"""ShardedEmbedding on Ray: one actor per shard, the same results as the in-process engine.

All tests share one Ray instance (a session fixture that shuts it down at the end), started on
loopback without a dashboard. Skipped where Ray is not installed, and under an AddressSanitizer
preload (the sanitized CI run), where Ray's own binaries must not run.
"""

from __future__ import annotations

import concurrent.futures
import os
import time

import fastembed
import numpy as np
import pytest
from conftest import assert_bitwise_equal

if "asan" in os.environ.get("LD_PRELOAD", ""):
    pytest.skip("Ray's binaries do not run under the ASan preload", allow_module_level=True)
from fastembed.distributed import RayEngine, ShardedEmbedding, ShardError  # noqa: E402
from fastembed.distributed.engines import keep_ray_local  # noqa: E402

keep_ray_local()  # before ray is imported: loopback only, no usage report
ray = pytest.importorskip("ray")

V, D = 211, 8


@pytest.fixture(scope="session")
def ray_cluster():
    started = not ray.is_initialized()
    if started:
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            object_store_memory=256 * 1024 * 1024,
            log_to_driver=False,
        )
    yield
    if started:
        ray.shutdown()


def engine():
    # 4 shards on 2 CPUs: half a CPU each; a short timeout keeps a failing test short.
    return RayEngine(num_cpus=0.5, threads_per_shard=1, timeout=30)


def test_ray_training_equals_a_single_embedding(ray_cluster, rng):
    single = fastembed.Embedding(weight=rng.standard_normal((V, D)).astype(np.float32))
    with ShardedEmbedding.from_embedding(single, 4, engine=engine(), placement="modulo") as table:
        assert table.engine == "ray"
        ours, theirs = fastembed.optim.Adam(lr=0.05), fastembed.optim.Adam(lr=0.05)
        for ids in (rng.integers(0, V, (6, 9)), np.array([0, 4, 8]), rng.integers(0, 20, 50)):
            grad = rng.standard_normal((*ids.shape, D)).astype(np.float32)
            assert_bitwise_equal(table.forward(ids), single.forward(ids))
            table.backward(grad, optimizer=ours)
            single.backward(grad, optimizer=theirs)
        assert_bitwise_equal(table.to_embedding().weight, single.weight)
        future = table.forward_async([[1, 2], [3, V - 1]])
        assert isinstance(future, concurrent.futures.Future)
        assert_bitwise_equal(future.result(timeout=30), single.forward([[1, 2], [3, V - 1]]))
        with pytest.raises(IndexError, match="out of range"):
            table.forward([V])


def test_a_killed_shard_raises_shard_error_and_restores_from_a_checkpoint(ray_cluster, tmp_path):
    local = ShardedEmbedding(V, D, num_shards=3, seed=11, padding_idx=5)
    table = ShardedEmbedding(V, D, num_shards=2, seed=11, padding_idx=5, engine=engine())
    # A new table is the same on any engine and shard count; the actors write the checkpoint.
    assert_bitwise_equal(table.to_embedding().weight, local.to_embedding().weight)
    optimizer = fastembed.optim.Adam(lr=0.5)
    table.forward(np.arange(V))
    table.backward(np.ones((V, D), np.float32), optimizer=optimizer)
    table.save(tmp_path)
    saved = table.to_embedding().weight
    assert_bitwise_equal(ShardedEmbedding.load(tmp_path, num_shards=3).to_embedding().weight, saved)

    ray.kill(table._engine._actors[1])
    started = time.monotonic()
    with pytest.raises(ShardError, match="shard 1") as error:
        table.forward(np.arange(V))
    assert error.value.shard == 1
    assert time.monotonic() - started < 30
    table.restore(tmp_path)
    assert_bitwise_equal(table.to_embedding().weight, saved)
    assert_bitwise_equal(table.forward([0, 100, 210]), saved[[0, 100, 210]])
    # Training goes on from the restored optimizer state (Adam's step 2, as a single layer).
    single = fastembed.Embedding(weight=saved.copy(), padding_idx=5)
    reference = fastembed.optim.Adam(lr=0.5)
    single.forward(np.arange(V))
    single.backward(np.ones((V, D), np.float32), optimizer=reference)  # step 1 (rows replayed)
    single.weight[...] = saved
    for ids in (np.arange(0, V, 3), np.arange(V)):
        grad = np.full((ids.size, D), 0.25, np.float32)
        table.forward(ids)
        single.forward(ids)
        table.backward(grad, optimizer=optimizer)
        single.backward(grad, optimizer=reference)
    assert_bitwise_equal(table.to_embedding().weight, single.weight)

    actors = list(table._engine._actors)
    table.close()
    # ray.kill is asynchronous: a call sent right after it may still be served, so each actor is
    # asked until it is gone (bounded; a call to an ended actor raises RayActorError).
    deadline = time.monotonic() + 30
    for actor in actors:
        with pytest.raises(ray.exceptions.RayActorError):
            while time.monotonic() < deadline:
                ray.get(actor.ready.remote(), timeout=30)
                time.sleep(0.1)
