"""Large results live in recycled buffers: they must behave exactly like fresh NumPy arrays."""

from __future__ import annotations

import gc

import fastembed
import numpy as np
import pytest

# Large enough to be recycled (>= 4 MiB): 65_536 rows of 32 float32.
NUM_IDS = 65_536
DIM = 32


@pytest.fixture
def table(rng):
    return rng.standard_normal((1_000, DIM)).astype(np.float32)


@pytest.fixture(autouse=True)
def restore_limit():
    previous = fastembed.set_buffer_cache_limit(1 << 30)
    yield
    fastembed.set_buffer_cache_limit(previous)


def test_a_recycled_result_is_a_plain_writeable_array(table, rng):
    ids = rng.integers(0, len(table), NUM_IDS)
    result = fastembed.gather(table, ids)
    assert result.dtype == np.float32 and result.shape == (NUM_IDS, DIM)
    assert result.flags.c_contiguous and result.flags.writeable
    result[0] = 7.0  # writeable for real
    np.testing.assert_array_equal(result[1:], table[ids[1:]])


def test_live_results_never_share_memory(table, rng):
    ids = rng.integers(0, len(table), NUM_IDS)
    results = [fastembed.gather(table, ids) for _ in range(4)]
    for i, a in enumerate(results):
        for b in results[i + 1 :]:
            assert not np.shares_memory(a, b)
    for result in results:
        np.testing.assert_array_equal(result, table[ids])


def test_a_dropped_buffer_is_reused_with_fresh_contents(table, rng):
    first_ids = rng.integers(0, len(table), NUM_IDS)
    second_ids = rng.integers(0, len(table), NUM_IDS)
    first = fastembed.gather(table, first_ids)
    address = first.ctypes.data
    del first
    gc.collect()
    second = fastembed.gather(table, second_ids)
    assert second.ctypes.data == address  # the same pages, no new page faults
    np.testing.assert_array_equal(second, table[second_ids])


def test_scatter_add_results_are_recycled_too(rng):
    num_embeddings = NUM_IDS
    ids = rng.integers(0, num_embeddings, 10_000)
    grad = rng.standard_normal((ids.size, DIM)).astype(np.float32)
    expected = np.zeros((num_embeddings, DIM))
    np.add.at(expected, ids, grad)
    for _ in range(3):  # each call gets the previous call's buffer back, full of old sums
        np.testing.assert_allclose(
            fastembed.scatter_add(grad, ids, num_embeddings), expected, rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("limit", [1 << 30, 0])
def test_backward_scratch_is_recycled_without_stale_contents(limit, rng):
    """The backward's scratch of 1 MiB and more (sort keys, block sums) comes from the same
    cache: calls of other sizes and both reduction paths get it back full of old keys and sums."""
    fastembed.set_buffer_cache_limit(limit)
    dim = 4
    for n, num_embeddings in [(300_000, 200_000), (150_000, 120_000), (400_000, 5_000)] * 2:
        ids = rng.integers(0, num_embeddings, n)
        grad = rng.standard_normal((n, dim))
        expected = np.zeros((num_embeddings, dim))
        np.add.at(expected, ids, grad)
        np.testing.assert_allclose(
            fastembed.scatter_add(grad, ids, num_embeddings), expected, rtol=1e-12, atol=1e-12
        )
        sparse = fastembed.sparse_grad(grad, ids, num_embeddings)
        np.testing.assert_array_equal(sparse.indices, np.unique(ids))
        np.testing.assert_allclose(sparse.values, expected[sparse.indices], rtol=1e-12, atol=1e-12)


def test_a_result_outlives_a_zero_limit(table, rng):
    ids = rng.integers(0, len(table), NUM_IDS)
    result = fastembed.gather(table, ids)
    assert fastembed.set_buffer_cache_limit(0) == 1 << 30
    gc.collect()
    np.testing.assert_array_equal(result, table[ids])
    del result
    gc.collect()  # freed, not kept: the limit is 0
    assert fastembed.set_buffer_cache_limit(1 << 20) == 0


@pytest.mark.parametrize("bad", [-1, -(2**40)])
def test_negative_limit_is_value_error(bad):
    with pytest.raises(ValueError, match=str(bad)):
        fastembed.set_buffer_cache_limit(bad)


@pytest.mark.parametrize("bad", [1.5, "1", True])
def test_non_integer_limit_is_type_error(bad):
    with pytest.raises(TypeError):
        fastembed.set_buffer_cache_limit(bad)


@pytest.mark.parametrize("dtype", [None, np.float32, np.float16, np.float64])
def test_line_aligned_copy_starts_on_a_line_and_equals_the_cast(rng, dtype):
    values = rng.standard_normal((257, 64)).astype(np.float32)[:, :48]  # not C-contiguous
    table = fastembed.line_aligned_copy(values, dtype)
    expected = values.astype(values.dtype if dtype is None else dtype)
    assert table.ctypes.data % 64 == 0
    assert table.flags.c_contiguous and table.flags.writeable
    assert table.dtype == expected.dtype and table.shape == expected.shape
    np.testing.assert_array_equal(table, expected)
    assert not np.shares_memory(table, values)


def test_line_aligned_copy_of_bfloat16(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = rng.standard_normal((10, 32)).astype(np.float32)
    table = fastembed.line_aligned_copy(values, ml_dtypes.bfloat16)
    assert table.ctypes.data % 64 == 0
    np.testing.assert_array_equal(
        table.view(np.uint16), values.astype(ml_dtypes.bfloat16).view(np.uint16)
    )


def test_line_aligned_copy_of_an_empty_table():
    assert fastembed.line_aligned_copy(np.empty((0, 8), np.float32)).shape == (0, 8)


def test_a_line_aligned_table_gives_the_same_lookups(rng):
    # The copy is only placed differently: every kernel reads it to the same bits.
    values = rng.standard_normal((500, 64)).astype(np.float16)
    table = fastembed.line_aligned_copy(values)
    ids = rng.integers(0, 500, 3000)
    offsets = np.arange(0, 3000, 7)
    np.testing.assert_array_equal(fastembed.gather(table, ids), values[ids])
    np.testing.assert_array_equal(
        fastembed.embedding_bag(table, ids, offsets), fastembed.embedding_bag(values, ids, offsets)
    )
