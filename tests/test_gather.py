"""fastembed.gather against np.take: values, shapes, id conversions, no-copy and errors."""

from __future__ import annotations

import fastembed
import numpy as np
import pytest
from conftest import (
    ID_DISTRIBUTIONS,
    KERNEL_ID_DTYPES,
    SENTINEL,
    WEIGHT_DTYPES,
    assert_bitwise_equal,
    make_ids,
    make_table,
    raises_leaving_untouched,
    reference_gather,
    sentinel_array,
)

IDS_SHAPES = [(), (1,), (7,), (3, 4), (2, 3, 4), (0,), (3, 0), (0, 5)]


def test_classic_example():
    W = np.arange(15, dtype=np.float32).reshape(3, 5)
    result = fastembed.gather(W, np.array([[0, 2], [1, 2]]))
    assert result.shape == (2, 2, 5)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, [[W[0], W[2]], [W[1], W[2]]])


def test_classic_example_out_of_range_names_id_and_position():
    W = np.arange(15, dtype=np.float32).reshape(3, 5)
    with raises_leaving_untouched(IndexError, r"\b5\b.*ids\[0, 0\]", W):
        fastembed.gather(W, np.array([[5, 0], [1, 2]]))


@pytest.mark.parametrize("weight_dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("id_dtype", KERNEL_ID_DTYPES)
@pytest.mark.parametrize("ids_shape", IDS_SHAPES, ids=str)
def test_matches_take(weight_dtype, id_dtype, ids_shape, rng):
    W = make_table(11, 6, weight_dtype, rng)
    ids = rng.integers(0, 11, ids_shape).astype(id_dtype)
    result = fastembed.gather(W, ids)
    assert result.shape == ids_shape + (6,)
    assert result.dtype == weight_dtype
    assert_bitwise_equal(result, reference_gather(W, ids))


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda a: a.astype(np.int8), id="int8"),
        pytest.param(lambda a: a.astype(np.int16), id="int16"),
        pytest.param(lambda a: a.astype(np.uint8), id="uint8"),
        pytest.param(lambda a: a.astype(np.uint16), id="uint16"),
        pytest.param(lambda a: a.astype(np.uint32), id="uint32"),
        pytest.param(lambda a: a.astype(np.uint64), id="uint64"),
        pytest.param(lambda a: a.astype(">i8"), id="big-endian-int64"),
        pytest.param(lambda a: a.astype(">i4"), id="big-endian-int32"),
        pytest.param(lambda a: np.repeat(a, 2, axis=1)[:, ::2], id="strided"),
        pytest.param(lambda a: np.asfortranarray(a), id="fortran-order"),
        pytest.param(lambda a: a.T.copy().T, id="transposed-view"),
        pytest.param(lambda a: a.tolist(), id="nested-list"),
        pytest.param(lambda a: tuple(map(tuple, a.tolist())), id="nested-tuple"),
    ],
)
@pytest.mark.parametrize("weight_dtype", WEIGHT_DTYPES)
def test_other_id_types_are_converted(convert, weight_dtype, rng):
    W = make_table(100, 5, weight_dtype, rng)
    ids = rng.integers(0, 100, (4, 6))
    result = fastembed.gather(W, convert(ids))
    assert_bitwise_equal(result, reference_gather(W, ids))


ZERO_D_IDS = [
    2,
    np.int8(2),
    np.uint64(2),
    np.int32(2),
    np.int64(2),
    np.array(2, dtype=np.int16),
    np.array(2, dtype=">i8"),
    np.array(2, dtype=np.int64),
]


@pytest.mark.parametrize(
    "scalar", ZERO_D_IDS, ids=lambda v: f"{type(v).__name__}-{np.asarray(v).dtype}"
)
def test_scalar_id_gives_one_row(scalar, rng):
    W = make_table(4, 3, np.float32, rng)
    result = fastembed.gather(W, scalar)
    assert result.shape == (3,)
    assert_bitwise_equal(result, W[2])


def test_empty_list_of_ids():
    W = np.ones((4, 3), dtype=np.float64)
    result = fastembed.gather(W, [])
    assert result.shape == (0, 3)
    assert result.dtype == np.float64


@pytest.mark.parametrize(
    ("num_embeddings", "dim"), [(1, 1), (1, 7), (9, 1), (0, 4)], ids=lambda v: str(v)
)
def test_degenerate_table_sizes(num_embeddings, dim, rng):
    W = make_table(num_embeddings, dim, np.float32, rng)
    ids = rng.integers(0, max(num_embeddings, 1), (5, 3)) if num_embeddings else np.zeros(0, int)
    assert_bitwise_equal(fastembed.gather(W, ids), reference_gather(W, ids))


def test_zero_width_rows(rng):
    W = np.zeros((5, 0), dtype=np.float32)
    result = fastembed.gather(W, np.array([[1, 4], [0, 0]]))
    assert result.shape == (2, 2, 0)


@pytest.mark.parametrize("distribution", ID_DISTRIBUTIONS)
@pytest.mark.parametrize("id_dtype", KERNEL_ID_DTYPES)
def test_large_batches(distribution, id_dtype, rng):
    W = make_table(3_000, 16, np.float32, rng)
    ids = make_ids(distribution, 40_000, 3_000, rng, id_dtype).reshape(200, 200)
    assert_bitwise_equal(fastembed.gather(W, ids), reference_gather(W, ids))


def test_output_larger_than_cache(rng):
    """12 MiB of output: large enough for streaming (non-temporal) stores and all threads."""
    W = make_table(50_000, 64, np.float32, rng)
    ids = rng.integers(0, 50_000, 48_000)
    out = sentinel_array((48_000, 64), np.float32)
    assert fastembed.gather(W, ids, out=out) is out
    assert_bitwise_equal(out, reference_gather(W, ids))


@pytest.fixture(scope="module")
def table_beyond_cache() -> np.ndarray:
    """A 64 MiB float32 table: large enough for gather to read rows in id order."""
    return make_table(262_144, 64, np.float32, np.random.default_rng(5))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("id_dtype", KERNEL_ID_DTYPES)
@pytest.mark.parametrize("distribution", ["uniform", "zipf", "sorted"])
def test_table_beyond_cache(
    table_beyond_cache, distribution, id_dtype, threads, rng, restore_num_threads
):
    """Spread ids read the table in id order from two threads on, and land in place."""
    W = table_beyond_cache
    fastembed.set_num_threads(threads)
    ids = make_ids(distribution, 150_000, len(W), rng, id_dtype).reshape(300, 500)
    ids[-1, -1] = len(W) - 1
    out = sentinel_array(ids.shape + (64,), np.float32)
    assert fastembed.gather(W, ids, out=out) is out
    assert_bitwise_equal(out, reference_gather(W, ids))
    assert_bitwise_equal(fastembed.gather(W, ids[:, ::-1]), reference_gather(W, ids[:, ::-1]))


def test_million_row_table_few_ids(rng):
    W = make_table(1_000_003, 4, np.float32, rng)
    ids = np.array([1_000_002, 0, 500_000, 1_000_002, 77], dtype=np.int64)
    assert_bitwise_equal(fastembed.gather(W, ids), reference_gather(W, ids))


# --- no copies ---------------------------------------------------------------------------


@pytest.mark.parametrize("weight_dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("ids_shape", [(), (6,), (2, 3), (0,)], ids=str)
def test_out_is_written_in_place_and_returned(weight_dtype, ids_shape, rng):
    W = make_table(10, 4, weight_dtype, rng)
    ids = rng.integers(0, 10, ids_shape)
    out = sentinel_array(ids_shape + (4,), weight_dtype)
    assert fastembed.gather(W, ids, out=out) is out
    assert_bitwise_equal(out, reference_gather(W, ids))


def test_memmap_table(tmp_path, rng):
    values = make_table(1_000, 8, np.float32, rng)
    path = tmp_path / "table.f32"
    values.tofile(path)
    W = np.memmap(path, dtype=np.float32, mode="r", shape=(1_000, 8))
    ids = rng.integers(0, 1_000, (20, 5))
    assert_bitwise_equal(fastembed.gather(W, ids), reference_gather(values, ids))


def test_read_only_table(rng):
    W = make_table(50, 3, np.float64, rng)
    W.setflags(write=False)
    ids = rng.integers(0, 50, 30)
    assert_bitwise_equal(fastembed.gather(W, ids), reference_gather(W, ids))


def test_weight_is_not_modified(rng):
    W = make_table(50, 3, np.float32, rng)
    before = W.copy()
    fastembed.gather(W, rng.integers(0, 50, 100))
    assert_bitwise_equal(W, before)


# --- errors: the right exception, and every array left as it was ---------------------------


OUT_OF_RANGE_CASES = [
    # (ids, the bad id, its position as the message writes it); the table has 10 rows
    ([3, 1, 11], 11, r"ids\[2\]"),
    ([3, 1, 10], 10, r"ids\[2\]"),  # exactly num_embeddings
    ([[0, 1], [-1, 2]], -1, r"ids\[1, 0\]"),
    ([[0, 1], [2, 1_000_000]], 1_000_000, r"ids\[1, 1\]"),
    ([[[4]], [[-7]]], -7, r"ids\[1, 0, 0\]"),
    (12, 12, r"ids\[\(\)\]"),
    (2**40, 2**40, r"ids\[\(\)\]"),
    ([0, -(2**63)], -(2**63), r"ids\[1\]"),
    ([2**31 - 1], 2**31 - 1, r"ids\[0\]"),
    ([0, -(2**31)], -(2**31), r"ids\[1\]"),
]


@pytest.mark.parametrize(
    ("ids", "bad_id", "position", "id_dtype"),
    [
        pytest.param(ids, bad_id, position, id_dtype, id=f"{np.dtype(id_dtype)}-{bad_id}")
        for ids, bad_id, position in OUT_OF_RANGE_CASES
        for id_dtype in KERNEL_ID_DTYPES
        if np.iinfo(id_dtype).min <= bad_id <= np.iinfo(id_dtype).max
    ],
)
@pytest.mark.parametrize("weight_dtype", WEIGHT_DTYPES)
def test_id_out_of_range(ids, bad_id, position, id_dtype, weight_dtype, rng):
    ids = np.asarray(ids, dtype=id_dtype)
    W = make_table(10, 3, weight_dtype, rng)
    out = sentinel_array(ids.shape + (3,), weight_dtype)
    with raises_leaving_untouched(IndexError, rf"(?<!\d){bad_id}\b.*{position}", W, out, ids):
        fastembed.gather(W, ids, out=out)


def test_id_out_of_range_at_end_of_large_batch_writes_nothing(rng):
    """With all threads at work the bad id is still found before any row is copied."""
    W = make_table(1_000, 32, np.float32, rng)
    ids = rng.integers(0, 1_000, 100_000)
    ids[-1] = 1_000
    out = sentinel_array((100_000, 32), np.float32)
    with raises_leaving_untouched(IndexError, r"1000\b.*ids\[99999\]", W, out):
        fastembed.gather(W, ids, out=out)
    assert np.all(out == SENTINEL)


def test_uint64_id_beyond_int64_is_index_error(rng):
    W = make_table(10, 3, np.float32, rng)
    ids = np.array([1, 2**64 - 1], dtype=np.uint64)
    with raises_leaving_untouched(IndexError, rf"{2**64 - 1}.*ids\[1\]", W):
        fastembed.gather(W, ids)


@pytest.mark.parametrize(
    "ids",
    [
        np.array([0.0, 1.0]),
        np.array([0, 1], dtype=np.float32),
        np.array([True, False]),
        np.array([0, 1], dtype=np.complex128),
        np.array([0, 1], dtype=object),
        np.array(["0", "1"]),
        [0.0, 1.0],
        [True, False],
        1.0,
        True,
    ],
    ids=lambda v: f"{type(v).__name__}-{np.asarray(v).dtype}",
)
def test_non_integer_ids_are_type_errors(ids, rng):
    W = make_table(10, 3, np.float32, rng)
    out = sentinel_array(np.shape(ids) + (3,), np.float32)
    with raises_leaving_untouched(TypeError, None, W, out):
        fastembed.gather(W, ids, out=out)


@pytest.mark.parametrize(
    "make_out",
    [
        pytest.param(lambda: sentinel_array((4, 3), np.float32), id="too-few-rows"),
        pytest.param(lambda: sentinel_array((5, 4), np.float32), id="wrong-dim"),
        pytest.param(lambda: sentinel_array((5, 3, 1), np.float32), id="extra-axis"),
        pytest.param(lambda: sentinel_array((15,), np.float32), id="flat"),
    ],
)
def test_out_of_wrong_shape_is_value_error(make_out, rng):
    W = make_table(10, 3, np.float32, rng)
    ids = rng.integers(0, 10, 5)
    out = make_out()
    with raises_leaving_untouched(ValueError, "shape", W, out, ids):
        fastembed.gather(W, ids, out=out)


@pytest.mark.parametrize(
    ("weight_dtype", "out_dtype"),
    [(np.float32, np.float64), (np.float64, np.float32), (np.float32, np.int32)],
)
def test_out_of_wrong_dtype_is_type_error(weight_dtype, out_dtype, rng):
    W = make_table(10, 3, weight_dtype, rng)
    ids = rng.integers(0, 10, 5)
    out = sentinel_array((5, 3), out_dtype)
    with raises_leaving_untouched(TypeError, "dtype", W, out, ids):
        fastembed.gather(W, ids, out=out)


def test_non_contiguous_out_is_value_error(rng):
    W = make_table(10, 3, np.float32, rng)
    ids = rng.integers(0, 10, 5)
    storage = sentinel_array((5, 6), np.float32)
    with raises_leaving_untouched(ValueError, "contiguous", W, storage):
        fastembed.gather(W, ids, out=storage[:, ::2])


def test_read_only_out_is_value_error(rng):
    W = make_table(10, 3, np.float32, rng)
    ids = rng.integers(0, 10, 5)
    out = sentinel_array((5, 3), np.float32)
    out.setflags(write=False)
    with raises_leaving_untouched(ValueError, "read-only", W, out):
        fastembed.gather(W, ids, out=out)


def test_out_overlapping_weight_is_value_error(rng):
    W = make_table(10, 3, np.float32, rng)
    with raises_leaving_untouched(ValueError, "overlap", W):
        fastembed.gather(W, np.array([9, 8, 7, 6, 5]), out=W[:5])


@pytest.mark.parametrize(
    "make_weight",
    [
        pytest.param(lambda W: np.asfortranarray(W), id="fortran"),
        pytest.param(lambda W: W[:, ::2], id="strided-columns"),
        pytest.param(lambda W: W[::2], id="strided-rows"),
    ],
)
def test_non_contiguous_weight_is_value_error(make_weight, rng):
    weight = make_weight(make_table(10, 6, np.float32, rng))
    ids = np.array([0, 1, 2])
    out = sentinel_array((3, weight.shape[1]), np.float32)
    with raises_leaving_untouched(ValueError, "contiguous", weight, out):
        fastembed.gather(weight, ids, out=out)


@pytest.mark.parametrize("shape", [(12,), (2, 3, 2), ()], ids=str)
def test_weight_not_2d_is_value_error(shape, rng):
    weight = np.asarray(rng.standard_normal(shape), dtype=np.float32)
    out = sentinel_array((1, 2), np.float32)
    with raises_leaving_untouched(ValueError, "2-d", weight, out):
        fastembed.gather(weight, np.array([0]), out=out)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int16, ">f2", np.complex64, bool])
def test_unsupported_weight_dtype_is_type_error(dtype):
    weight = np.ones((4, 3), dtype=dtype)
    out = sentinel_array((2, 3), np.float32)
    with raises_leaving_untouched(TypeError, "float32 or float64", weight, out):
        fastembed.gather(weight, np.array([0, 1]), out=out)
