"""ShardedEmbedding on the in-process engine: the same results as one Embedding, bitwise.

The reference is a single fastembed.Embedding over the same table, trained with the same
optimizer; the sharded table's forward and training must match it bit for bit, for every
placement, shard count, ids shape and dtype, and optimizer.
"""

from __future__ import annotations

import concurrent.futures
import json
import os

import fastembed
import numpy as np
import pytest
from conftest import assert_bitwise_equal
from fastembed import _core
from fastembed.distributed import LocalEngine, ShardedEmbedding
from fastembed.distributed import shard as shard_module
from fastembed.distributed.layout import Layout

V, D = 103, 6  # 103 rows do not divide evenly into 2, 3, 4 or 7 shards

PLACEMENTS = ["range", "modulo"]
SHARD_COUNTS = [1, 3, 4, 7]

OPTIMIZERS = {
    "sgd": lambda: fastembed.optim.SGD(lr=0.1),
    "sgd_momentum": lambda: fastembed.optim.SGD(lr=0.05, momentum=0.9),
    "adagrad": lambda: fastembed.optim.Adagrad(lr=0.1),
    "adagrad_rowwise": lambda: fastembed.optim.Adagrad(lr=0.1, rowwise=True),
    "adam": lambda: fastembed.optim.Adam(lr=0.01),
}


def table_of(sharded: ShardedEmbedding) -> np.ndarray:
    return sharded.to_embedding().weight


def skewed_ids(rng: np.random.Generator, shape: tuple, num_embeddings: int = V) -> np.ndarray:
    """Repeated small ids and a uniform tail: runs of equal ids on every shard."""
    ids = np.where(
        rng.random(shape) < 0.5, rng.integers(0, 5, shape), rng.integers(0, num_embeddings, shape)
    )
    return ids.astype(np.int64)


# --- a new table --------------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["uniform", "normal", "xavier_uniform"])
def test_new_table_is_the_same_for_any_shard_count_and_placement(init):
    reference = ShardedEmbedding(V, D, num_shards=1, init=init, seed=7)
    expected = table_of(reference)
    for num_shards in SHARD_COUNTS:
        for placement in PLACEMENTS:
            with ShardedEmbedding(
                V, D, num_shards=num_shards, placement=placement, init=init, seed=7
            ) as table:
                assert_bitwise_equal(table_of(table), expected)
    assert not np.array_equal(
        expected, table_of(ShardedEmbedding(V, D, num_shards=1, init=init, seed=8))
    )


def test_new_table_draws_from_the_named_distribution():
    uniform = table_of(ShardedEmbedding(2000, 50, num_shards=3, seed=1))
    assert uniform.dtype == np.float32
    assert uniform.min() >= -0.05 and uniform.max() <= 0.05
    assert abs(uniform.mean()) < 1e-3 and abs(uniform.std() - 0.1 / np.sqrt(12)) < 1e-3
    normal = table_of(
        ShardedEmbedding(2000, 50, num_shards=3, init="normal", seed=1, dtype=np.float64)
    )
    assert normal.dtype == np.float64
    assert abs(normal.mean()) < 0.01 and abs(normal.std() - 1) < 0.01
    limit = np.sqrt(6 / (2000 + 50))
    xavier = table_of(ShardedEmbedding(2000, 50, num_shards=3, init="xavier_uniform", seed=1))
    assert xavier.max() <= limit and xavier.max() > 0.99 * limit
    # Distinct rows and columns are not copies of each other (the counter covers both).
    assert len(np.unique(uniform)) > 0.99 * uniform.size


def test_seed_none_draws_a_fresh_table_and_keeps_its_seed():
    a, b = ShardedEmbedding(50, 4, num_shards=2), ShardedEmbedding(50, 4, num_shards=2)
    assert not np.array_equal(table_of(a), table_of(b))
    again = ShardedEmbedding(50, 4, num_shards=5, placement="modulo", seed=a.seed)
    assert_bitwise_equal(table_of(again), table_of(a))


def test_callable_init_and_padding_idx():
    def ones(shape, rng):
        return np.ones(shape)

    table = ShardedEmbedding(V, D, num_shards=4, init=ones, padding_idx=-1, placement="modulo")
    weight = table_of(table)
    assert table.padding_idx == V - 1
    assert np.all(weight[-1] == 0) and np.all(weight[:-1] == 1)
    drawn = table_of(ShardedEmbedding(V, D, num_shards=3, padding_idx=40, seed=3))
    assert np.all(drawn[40] == 0) and np.all(drawn[39] != 0)


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"num_shards": 0}, ValueError, "num_shards"),
        ({"num_shards": 2.0}, TypeError, "num_shards"),
        ({"num_shards": 2, "placement": "hash"}, ValueError, "placement"),
        ({"num_shards": 2, "engine": "spark"}, ValueError, "engine"),
        ({"num_shards": 2, "dtype": np.int32}, TypeError, "dtype"),
        ({"num_shards": 2, "init": "zeros"}, ValueError, "init"),
        ({"num_shards": 2, "padding_idx": V}, ValueError, "padding_idx"),
        ({"num_shards": 2, "threads_per_shard": 0}, ValueError, "threads_per_shard"),
    ],
)
def test_bad_arguments(arguments, error, match):
    with pytest.raises(error, match=match):
        ShardedEmbedding(V, D, **arguments)


# --- routing ------------------------------------------------------------------------------------


def _owner(ids, num_shards, placement):
    """(shard, local row) of each id, by the issue's definition of the placements."""
    rows_per_shard = -(-V // num_shards)
    if placement == "modulo":
        return ids % num_shards, ids // num_shards
    return ids // rows_per_shard, ids % rows_per_shard


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
# The kernel finds distinct rows by marking them in bitmaps of the table when the batch has at
# least 1/32 as many ids as the table has rows, else by sorting: 1300 ids mark, 3 ids sort.
@pytest.mark.parametrize("uniform, zeros", [(1000, 300), (2, 1)])
def test_route_distinct_sends_each_row_once(placement, id_dtype, uniform, zeros, rng):
    num_shards = 5
    ids = np.concatenate([rng.integers(0, V, uniform), np.zeros(zeros, np.int64)]).astype(id_dtype)
    rng.shuffle(ids)
    local, offsets, inverse = _core.route_distinct(ids, V, num_shards, placement == "modulo")
    owner, expected_local = _owner(ids, num_shards, placement)
    assert local.dtype == ids.dtype
    for shard in range(num_shards):
        mine = local[offsets[shard] : offsets[shard + 1]]
        np.testing.assert_array_equal(mine, np.unique(expected_local[owner == shard]))
    assert offsets[0] == 0 and offsets[-1] == len(local) == len(np.unique(ids))
    # Slot inverse[i] holds the id at position i.
    slot_shard = np.searchsorted(offsets, np.arange(len(local)), side="right") - 1
    np.testing.assert_array_equal(slot_shard[inverse], owner)
    np.testing.assert_array_equal(local[inverse], expected_local)
    # Each shard answers its rows; expanded back they are the whole table's rows.
    layout = Layout(V, num_shards, placement)
    weight = rng.standard_normal((V, D)).astype(np.float32)
    answers = [
        weight[np.asarray(layout.rows(s))[local[offsets[s] : offsets[s + 1]]]]
        for s in range(num_shards)
    ]
    out = np.full((len(ids), D), np.nan, np.float32)
    _core.expand_rows(answers, offsets, inverse, out)
    np.testing.assert_array_equal(out, weight[ids])


def test_expand_rows_refuses_bad_arguments():
    offsets = np.array([0, 2, 3], np.int64)
    answers = [np.zeros((2, D), np.float32), np.zeros((1, D), np.float32)]
    out = np.empty((4, D), np.float32)
    with pytest.raises(IndexError, match="3"):
        _core.expand_rows(answers, offsets, np.array([0, 1, 3, 2], np.int64), out)
    with pytest.raises(ValueError, match="answer 1"):
        _core.expand_rows(answers[:1] * 2, offsets, np.zeros(4, np.int64), out)
    with pytest.raises(ValueError, match="offsets"):
        _core.expand_rows(answers, offsets[:2], np.zeros(4, np.int64), out)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_concatenated_rows_number_the_shards_tables_end_to_end(placement, rng):
    num_shards = 3
    layout = Layout(V, num_shards, placement)
    ids = rng.integers(0, V, (7, 11))
    owner, local = _owner(ids, num_shards, placement)
    expected = np.asarray(layout.first_rows)[owner] + local
    renamed = layout.concatenated(ids)
    assert renamed.shape == ids.shape and renamed.dtype == ids.dtype
    np.testing.assert_array_equal(renamed, expected)
    # A bijection of [0, V): the shards' rows in shard order.
    whole = np.concatenate([np.asarray(layout.rows(s)) for s in range(num_shards)])
    np.testing.assert_array_equal(layout.concatenated(whole), np.arange(V))
    with pytest.raises(IndexError, match=str(V)):
        layout.concatenated(np.array([0, V]))


# --- forward ------------------------------------------------------------------------------------


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("num_shards", SHARD_COUNTS)
@pytest.mark.parametrize(
    "ids",
    [
        np.int64(17),
        np.array([], dtype=np.int64),
        np.zeros((0, 3), dtype=np.int32),
        np.array([102, 0, 5, 5, 51]),
        np.arange(V).reshape(1, V),
        np.array([[[1, 2], [3, 4]], [[102, 101], [0, 0]]], dtype=np.int32),
        np.array([3, 1, 4, 1, 5, 9, 2, 6], dtype=np.uint8),
        np.array([[60, 61], [62, 63]], dtype=np.int16),
        np.arange(100, dtype=np.int64).reshape(2, 50)[:, ::2],  # not contiguous
        [[1, 2, 3], [4, 5, 6]],
        7,
    ],
    ids=lambda ids: f"{np.asarray(ids).dtype}{np.shape(ids)}",
)
def test_forward_equals_a_single_embedding(placement, num_shards, ids, rng):
    single = fastembed.Embedding(weight=rng.standard_normal((V, D)).astype(np.float32))
    with ShardedEmbedding.from_embedding(single, num_shards, placement=placement) as table:
        got = table.forward(ids)
        assert_bitwise_equal(got, single.forward(ids))
        assert_bitwise_equal(table(ids), got)


def test_forward_of_large_batches_equals_np_take(rng):
    weight = rng.standard_normal((5000, 16))
    ids = rng.integers(0, 5000, (300, 200))
    for placement in PLACEMENTS:
        with ShardedEmbedding.from_embedding(weight, 4, placement=placement) as table:
            assert_bitwise_equal(table.forward(ids), np.take(weight, ids, axis=0))


class CountingEngine(LocalEngine):
    """The in-process engine, counting the calls that got rows from the shards or sent them
    updates (its lookup checks every id before it reads any row)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def lookup(self, layout, ids, out):
        super().lookup(layout, ids, out)
        self.calls += 1

    def step(self, config, parts):
        self.calls += 1
        super().step(config, parts)


@pytest.mark.parametrize(
    ("ids", "error", "message"),
    [
        ([[1, 2], [V, 0]], IndexError, "id 103 at ids\\[1, 0\\] is out of range"),
        ([4, -1], IndexError, "id -1 at ids\\[1\\] is out of range"),
        (np.array([2**40]), IndexError, "out of range"),
        (np.array([1.0, 2.0]), TypeError, "ids must be integers"),
        (np.array([True]), TypeError, "ids must be integers"),
    ],
)
def test_bad_ids_raise_what_embedding_raises_before_any_shard_is_asked(ids, error, message):
    engine = CountingEngine()
    single = fastembed.Embedding(V, D, seed=0)
    table = ShardedEmbedding.from_embedding(single, 3, engine=engine)
    with pytest.raises(error) as expected:
        single.forward(ids)
    with pytest.raises(error, match=message) as got:
        table.forward(ids)
    assert str(got.value) == str(expected.value)
    with pytest.raises(error, match=message):
        table.forward_async(ids)
    assert engine.calls == 0


def test_forward_async_returns_a_future(rng):
    single = fastembed.Embedding(weight=rng.standard_normal((V, D)))
    with ShardedEmbedding.from_embedding(single, 4, placement="modulo") as table:
        batches = [rng.integers(0, V, (5, 7)) for _ in range(6)]
        futures = [table.forward_async(ids) for ids in batches]
        assert all(isinstance(f, concurrent.futures.Future) for f in futures)
        for future, ids in zip(futures, batches):
            assert_bitwise_equal(future.result(timeout=30), single.forward(ids))
        # backward uses the ids of the last call, as after forward()
        grad = rng.standard_normal((5, 7, D))
        np.testing.assert_array_equal(
            np.asarray(table.backward(grad)),
            np.asarray(fastembed.sparse_grad(grad, batches[-1], V)),
        )


# --- training -----------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding_idx", [None, 2])
def test_training_equals_a_single_embedding_bitwise(optimizer, placement, dtype, padding_idx, rng):
    weight = rng.standard_normal((V, D)).astype(dtype)
    single = fastembed.Embedding(weight=weight.copy(), padding_idx=padding_idx)
    table = ShardedEmbedding.from_embedding(single, 4, placement=placement)
    single_opt, sharded_opt = OPTIMIZERS[optimizer](), OPTIMIZERS[optimizer]()
    batches = [
        skewed_ids(rng, (8, 5)),
        np.array([0, 1, 1, 3]),  # range placement: shard 0 only; the others must count the step
        skewed_ids(rng, (40,)).astype(np.int32),
        np.array([], dtype=np.int64),
        skewed_ids(rng, (3, 4, 2)),
    ]
    for ids in batches:
        grad = rng.standard_normal((*np.shape(ids), D)).astype(dtype)
        assert_bitwise_equal(table.forward(ids), single.forward(ids))
        assert table.backward(grad, optimizer=sharded_opt) is None
        single.backward(grad, optimizer=single_opt)
        assert_bitwise_equal(table_of(table), single.weight)
    assert not np.array_equal(single.weight, weight)
    if padding_idx is not None:
        assert_bitwise_equal(single.weight[padding_idx], weight[padding_idx])


def test_hyperparameter_changes_reach_the_shards(rng):
    single = fastembed.Embedding(weight=rng.standard_normal((V, D)).astype(np.float32))
    table = ShardedEmbedding.from_embedding(single, 3, placement="modulo")
    a, b = fastembed.optim.Adam(lr=0.1), fastembed.optim.Adam(lr=0.1)
    for lr in (0.1, 0.01, 0.001):
        a.lr = b.lr = lr
        ids = skewed_ids(rng, (20,))
        grad = rng.standard_normal((20, D)).astype(np.float32)
        table.forward(ids)
        single.forward(ids)
        table.backward(grad, optimizer=a)
        single.backward(grad, optimizer=b)
    assert_bitwise_equal(table_of(table), single.weight)


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize(
    "batch",
    [
        "blocked",  # 20 rows per id on a cache-sized table: the position-blocked reduction
        "heavy",  # one id 9000 times among sorted runs: a run cut into blocks summed apart
    ],
)
def test_training_reduces_like_a_single_layer_in_every_reduction_regime(placement, batch, rng):
    """The sharded backward reduces over ids renamed to the shards' concatenated rows: both of
    the single layer's summation orders must survive the renaming, bit for bit."""
    # The blocked reduction needs >= 8 rows per id of a cache-sized table; sorted runs (where
    # heavy runs are cut) need fewer, so a larger table there.
    rows = V if batch == "blocked" else 5000
    weight = rng.standard_normal((rows, D)).astype(np.float32)
    single = fastembed.Embedding(weight=weight.copy(), padding_idx=2)
    table = ShardedEmbedding.from_embedding(single, 3, placement=placement)
    if batch == "blocked":
        ids = rng.integers(0, rows, 20 * rows)
    else:
        ids = np.where(rng.random(12_000) < 0.75, 5, rng.integers(0, rows, 12_000))
    grad = rng.standard_normal((ids.size, D)).astype(np.float32)
    single_opt, sharded_opt = fastembed.optim.SGD(lr=0.1), fastembed.optim.SGD(lr=0.1)
    for _ in range(2):
        assert_bitwise_equal(table.forward(ids), single.forward(ids))
        table.backward(grad, optimizer=sharded_opt)
        single.backward(grad, optimizer=single_opt)
        assert_bitwise_equal(table_of(table), single.weight)


def test_backward_without_optimizer_returns_the_sparse_gradient(rng):
    table = ShardedEmbedding(V, D, num_shards=3, seed=0, padding_idx=0)
    before = table_of(table)
    ids = skewed_ids(rng, (6, 3))
    grad = rng.standard_normal((6, 3, D)).astype(np.float32)
    table.forward(ids)
    got = table.backward(grad)
    expected = fastembed.sparse_grad(grad, ids, V, padding_idx=0)
    assert isinstance(got, fastembed.RowSparseGrad)
    assert_bitwise_equal(got.indices, expected.indices)
    assert_bitwise_equal(got.values, expected.values)
    assert_bitwise_equal(table_of(table), before)


@pytest.mark.parametrize(
    ("grad", "error", "match"),
    [
        (np.ones((4, D + 1), np.float32), ValueError, "grad_output must have shape"),
        (np.ones((5, D), np.float32), ValueError, "grad_output must have shape"),
        (np.ones((2, 2, D), np.float32), ValueError, "grad_output must have shape"),
        (np.ones((4, D), np.float64), TypeError, "dtype"),
        ([[1.0] * D] * 4, TypeError, "NumPy array"),
    ],
)
def test_bad_gradients_change_nothing(grad, error, match):
    engine = CountingEngine()
    table = ShardedEmbedding(V, D, num_shards=3, seed=0, engine=engine)
    before = table_of(table)
    table.forward([1, 2, 50, 102])
    engine.calls = 0
    with pytest.raises(error, match=match):
        table.backward(grad, optimizer=fastembed.optim.SGD(lr=1.0))
    assert engine.calls == 0
    assert_bitwise_equal(table_of(table), before)


def test_backward_needs_a_forward_and_a_fastembed_optimizer():
    table = ShardedEmbedding(V, D, num_shards=2, seed=0)
    with pytest.raises(RuntimeError, match="forward"):
        table.backward(np.ones((1, D), np.float32))
    table.forward([1])
    with pytest.raises(TypeError, match="optimizer"):
        table.backward(np.ones((1, D), np.float32), optimizer=object())


# --- conversions, checkpoints, lifetime ---------------------------------------------------------


def test_from_embedding_copies_and_to_embedding_round_trips(rng):
    single = fastembed.Embedding(
        weight=rng.standard_normal((V, D)).astype(np.float32), padding_idx=4
    )
    original = single.weight.copy()
    table = ShardedEmbedding.from_embedding(single, 3, placement="modulo")
    table.forward([1, 2])
    table.backward(np.ones((2, D), np.float32), optimizer=fastembed.optim.SGD(lr=1.0))
    assert_bitwise_equal(single.weight, original)
    back = table.to_embedding()
    assert isinstance(back, fastembed.Embedding) and back.padding_idx == 4
    np.testing.assert_array_equal(back.weight[[1, 2]], original[[1, 2]] - 1)
    np.testing.assert_array_equal(np.delete(back.weight, [1, 2], 0), np.delete(original, [1, 2], 0))


def train(table, single, optimizers, rng, steps):
    for _ in range(steps):
        ids = skewed_ids(rng, (30,))
        grad = rng.standard_normal((30, D)).astype(table.dtype)
        table.forward(ids)
        single.forward(ids)
        table.backward(grad, optimizer=optimizers[0])
        single.backward(grad, optimizer=optimizers[1])


@pytest.mark.parametrize("optimizer", ["adam", "adagrad_rowwise", "sgd_momentum"])
@pytest.mark.parametrize(
    ("num_shards", "placement"), [(None, None), (2, None), (5, "modulo"), (1, "range")]
)
def test_save_load_and_reshard_continue_training_exactly(
    optimizer, num_shards, placement, tmp_path, rng
):
    single = fastembed.Embedding(weight=rng.standard_normal((V, D)).astype(np.float32))
    table = ShardedEmbedding.from_embedding(single, 4, placement="range")
    optimizers = (OPTIMIZERS[optimizer](), OPTIMIZERS[optimizer]())
    train(table, single, optimizers, rng, 3)
    table.save(tmp_path)
    table.close()
    loaded = ShardedEmbedding.load(tmp_path, num_shards=num_shards, placement=placement)
    assert loaded.num_shards == (num_shards or 4)
    assert loaded.placement == (placement or "range")
    assert_bitwise_equal(table_of(loaded), single.weight)
    # The optimizer state came along: Adam's step count and moments continue.
    train(loaded, single, (OPTIMIZERS[optimizer](), optimizers[1]), rng, 2)
    assert_bitwise_equal(table_of(loaded), single.weight)


def test_checkpoint_files(tmp_path):
    table = ShardedEmbedding(V, D, num_shards=3, seed=0, padding_idx=1)
    table.forward([0, 50])
    table.backward(np.ones((2, D), np.float32), optimizer=fastembed.optim.Adam())
    table.save(tmp_path)
    table.save(tmp_path)  # the second save replaces the first generation
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["generation"] == 2 and manifest["num_shards"] == 3
    assert manifest["optimizer"]["class"] == "Adam"
    assert sorted(os.listdir(tmp_path)) == ["generation-2", "manifest.json"]
    shard = manifest["shards"][1]
    rows = np.load(tmp_path / shard["table"])
    assert rows.shape == (35, D)
    assert_bitwise_equal(rows, table_of(table)[35:70])
    assert sorted(shard["state"]) == ["exp_avg", "exp_avg_sq", "step"]
    assert int(np.load(tmp_path / shard["state"]["step"])) == 1


def test_a_crash_during_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch, rng):
    table = ShardedEmbedding(V, D, num_shards=3, seed=0)
    optimizer = fastembed.optim.Adagrad(lr=0.5)
    table.forward([1, 40, 80])
    table.backward(np.ones((3, D), np.float32), optimizer=optimizer)
    table.save(tmp_path)
    saved = table_of(table)
    table.forward([2, 41, 81])
    table.backward(np.ones((3, D), np.float32), optimizer=optimizer)

    real_save = shard_module.Shard.save

    def crashing_save(self, directory, prefix):
        if self.index == 2:  # shards 0 and 1 have written their new files by now
            raise OSError("disk full")
        return real_save(self, directory, prefix)

    monkeypatch.setattr(shard_module.Shard, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        table.save(tmp_path)
    monkeypatch.undo()
    assert_bitwise_equal(table_of(ShardedEmbedding.load(tmp_path)), saved)
    # The next save cleans the crashed generation up.
    table.save(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["generation-2", "manifest.json"]
    assert_bitwise_equal(table_of(ShardedEmbedding.load(tmp_path, num_shards=2)), table_of(table))


def test_restore_brings_the_last_checkpoint_back(tmp_path):
    table = ShardedEmbedding(V, D, num_shards=4, seed=0, placement="modulo")
    table.save(tmp_path)
    saved = table_of(table)
    table.forward([3])
    table.backward(np.ones((1, D), np.float32), optimizer=fastembed.optim.SGD(lr=1.0))
    assert not np.array_equal(table_of(table), saved)
    table.restore(tmp_path)
    assert_bitwise_equal(table_of(table), saved)
    with pytest.raises(RuntimeError, match="forward"):
        table.backward(np.ones((1, D), np.float32))


def test_load_rejects_what_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="no manifest.json"):
        ShardedEmbedding.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest"):
        ShardedEmbedding.load(tmp_path)
    other = ShardedEmbedding(10, 2, num_shards=2, seed=0)
    other.save(tmp_path / "small")
    with pytest.raises(ValueError, match="table"):
        ShardedEmbedding(V, D, num_shards=2).restore(tmp_path / "small")


def test_close_and_context_manager():
    with ShardedEmbedding(V, D, num_shards=2, seed=0) as table:
        table.forward([1])
    with pytest.raises(RuntimeError, match="closed"):
        table.forward([1])
    table.close()  # idempotent
    assert "num_shards=2" in repr(table) and table.engine == "local"
