"""fastembed.scatter_add against np.add.at in float64: values, shapes, out=, and errors."""

from __future__ import annotations

import fastembed
import numpy as np
import pytest
from conftest import (
    ID_DISTRIBUTIONS,
    KERNEL_ID_DTYPES,
    WEIGHT_DTYPES,
    assert_bitwise_equal,
    assert_close_to_reference,
    make_grad,
    make_ids,
    make_integer_grad,
    raises_leaving_untouched,
    reference_scatter_add,
    sentinel_array,
)

IDS_SHAPES = [(), (1,), (9,), (3, 4), (2, 3, 4), (0,), (3, 0)]


def test_classic_example():
    ids = np.array([[0, 2], [1, 2]])
    grad = np.arange(20, dtype=np.float32).reshape(2, 2, 5)
    result = fastembed.scatter_add(grad, ids, 3)
    assert result.shape == (3, 5)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, [grad[0, 0], grad[1, 0], grad[0, 1] + grad[1, 1]])


def test_classic_example_out_of_range_names_id_and_position():
    grad = np.ones((2, 2, 5), dtype=np.float32)
    out = sentinel_array((3, 5), np.float32)
    with raises_leaving_untouched(IndexError, r"\b5\b.*ids\[0, 0\]", grad, out):
        fastembed.scatter_add(grad, np.array([[5, 0], [1, 2]]), 3, out=out)


@pytest.mark.parametrize("grad_dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("id_dtype", KERNEL_ID_DTYPES)
@pytest.mark.parametrize("ids_shape", IDS_SHAPES, ids=str)
def test_matches_add_at(grad_dtype, id_dtype, ids_shape, rng):
    ids = rng.integers(0, 7, ids_shape).astype(id_dtype)
    grad = make_grad(ids_shape, 5, grad_dtype, rng)
    result = fastembed.scatter_add(grad, ids, 7)
    assert_close_to_reference(result, grad, ids, 7)


@pytest.mark.parametrize("distribution", ID_DISTRIBUTIONS)
@pytest.mark.parametrize("grad_dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("id_dtype", KERNEL_ID_DTYPES)
def test_large_batches_match_add_at(distribution, grad_dtype, id_dtype, rng):
    ids = make_ids(distribution, 40_000, 2_000, rng, id_dtype)
    grad = make_grad(ids.shape, 12, grad_dtype, rng)
    assert_close_to_reference(fastembed.scatter_add(grad, ids, 2_000), grad, ids, 2_000)


@pytest.mark.parametrize("distribution", ID_DISTRIBUTIONS)
@pytest.mark.parametrize(
    ("num_embeddings", "dim"), [(50, 3), (2_000, 16), (70_000, 4)], ids=lambda v: str(v)
)
def test_exact_sums_of_integer_gradients(distribution, num_embeddings, dim, rng):
    """Integer-valued rows add up exactly in float32: any lost or doubled row shows."""
    ids = make_ids(distribution, 40_000, num_embeddings, rng).reshape(400, 100)
    grad = make_integer_grad(ids.shape, dim, np.float32, rng)
    result = fastembed.scatter_add(grad, ids, num_embeddings)
    np.testing.assert_array_equal(result, reference_scatter_add(grad, ids, num_embeddings))


def test_counts_of_a_single_heavy_id(rng):
    """One id repeated far more than a heavy-run block: the count comes out exact."""
    ids = np.full(50_001, 3, dtype=np.int64)
    grad = np.ones((50_001, 2), dtype=np.float64)
    result = fastembed.scatter_add(grad, ids, 5)
    np.testing.assert_array_equal(result, [[0, 0], [0, 0], [0, 0], [50_001, 50_001], [0, 0]])


@pytest.mark.parametrize("threads", [1, 3])
def test_range_repeated_into_power_of_two_table(threads, rng, restore_num_threads):
    """0..2^16-1 four times: every radix bucket holds the same power-of-two count."""
    fastembed.set_num_threads(threads)
    ids = np.tile(np.arange(2**16), 4)
    grad = make_integer_grad(ids.shape, 3, np.float32, rng)
    result = fastembed.scatter_add(grad, ids, 2**16)
    assert_bitwise_equal(result, reference_scatter_add(grad, ids, 2**16).astype(np.float32))


def test_million_row_table_few_ids(rng):
    ids = np.array([[1_000_002, 0], [500_000, 1_000_002], [77, 0]], dtype=np.int64)
    grad = make_grad(ids.shape, 4, np.float32, rng)
    result = fastembed.scatter_add(grad, ids, 1_000_003)
    assert_close_to_reference(result, grad, ids, 1_000_003)


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda a: a.astype(np.int8), id="int8"),
        pytest.param(lambda a: a.astype(np.int16), id="int16"),
        pytest.param(lambda a: a.astype(np.uint8), id="uint8"),
        pytest.param(lambda a: a.astype(np.uint32), id="uint32"),
        pytest.param(lambda a: a.astype(np.uint64), id="uint64"),
        pytest.param(lambda a: a.astype(">i8"), id="big-endian-int64"),
        pytest.param(lambda a: a.astype(np.int32), id="int32"),
        pytest.param(lambda a: np.repeat(a, 2, axis=1)[:, ::2], id="strided"),
        pytest.param(lambda a: np.asfortranarray(a), id="fortran-order"),
        pytest.param(lambda a: a.tolist(), id="nested-list"),
    ],
)
@pytest.mark.parametrize("grad_dtype", WEIGHT_DTYPES)
def test_other_id_types_give_the_int64_result_bitwise(convert, grad_dtype, rng):
    ids = make_ids("zipf", 3_000, 100, rng).reshape(30, 100)
    grad = make_grad(ids.shape, 6, grad_dtype, rng)
    expected = fastembed.scatter_add(grad, ids, 100)
    assert_bitwise_equal(fastembed.scatter_add(grad, convert(ids), 100), expected)


@pytest.mark.parametrize(
    "scalar",
    [3, np.int8(3), np.uint64(3), np.int64(3), np.array(3, dtype=np.int16), np.array(3)],
    ids=lambda v: f"{type(v).__name__}-{np.asarray(v).dtype}",
)
def test_scalar_id(scalar, rng):
    grad = make_grad((), 4, np.float32, rng)
    result = fastembed.scatter_add(grad, scalar, 5)
    expected = np.zeros((5, 4), dtype=np.float32)
    expected[3] = grad
    assert_bitwise_equal(result, expected)


@pytest.mark.parametrize("ids", [[], np.zeros(0, np.int32), np.zeros((4, 0), np.int64)], ids=str)
@pytest.mark.parametrize("grad_dtype", WEIGHT_DTYPES)
def test_empty_ids_give_zeros(ids, grad_dtype):
    grad = np.zeros(np.shape(ids) + (3,), dtype=grad_dtype)
    result = fastembed.scatter_add(grad, ids, 6)
    assert_bitwise_equal(result, np.zeros((6, 3), dtype=grad_dtype))


def test_empty_table():
    result = fastembed.scatter_add(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), 0)
    assert result.shape == (0, 3)


@pytest.mark.parametrize(("num_embeddings", "dim"), [(1, 1), (1, 9), (8, 1)], ids=str)
def test_degenerate_table_sizes(num_embeddings, dim, rng):
    ids = rng.integers(0, num_embeddings, (30, 7))
    grad = make_grad(ids.shape, dim, np.float64, rng)
    result = fastembed.scatter_add(grad, ids, num_embeddings)
    assert_close_to_reference(result, grad, ids, num_embeddings)


@pytest.mark.parametrize(
    "make_view",
    [
        pytest.param(lambda g: g[:, ::2, ::2], id="strided"),
        pytest.param(lambda g: g[:, :4, :3], id="sliced"),
        pytest.param(lambda g: np.asfortranarray(g[:, :4, :3]), id="fortran"),
        pytest.param(lambda g: g[:4, :3, :5].transpose(2, 0, 1), id="transposed"),
    ],
)
@pytest.mark.parametrize("grad_dtype", WEIGHT_DTYPES)
def test_non_contiguous_grad_output(make_view, grad_dtype, rng):
    grad = make_view(make_grad((5, 8), 6, grad_dtype, rng))
    assert grad.shape == (5, 4, 3) and not grad.flags.c_contiguous
    ids = rng.integers(0, 9, (5, 4))
    assert_close_to_reference(fastembed.scatter_add(grad, ids, 9), grad, ids, 9)


# --- out= --------------------------------------------------------------------------------


@pytest.mark.parametrize("grad_dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("distribution", ID_DISTRIBUTIONS)
def test_out_is_overwritten_not_accumulated(grad_dtype, distribution, rng):
    ids = make_ids(distribution, 40_000, 500, rng)
    grad = make_grad(ids.shape, 8, grad_dtype, rng)
    expected = fastembed.scatter_add(grad, ids, 500)
    out = sentinel_array((500, 8), grad_dtype)
    assert fastembed.scatter_add(grad, ids, 500, out=out) is out
    assert_bitwise_equal(out, expected)
    assert fastembed.scatter_add(grad, ids, 500, out=out) is out  # a second call: still not summed
    assert_bitwise_equal(out, expected)


def test_inputs_are_not_modified(rng):
    ids = make_ids("zipf", 5_000, 100, rng)
    grad = make_grad(ids.shape, 4, np.float32, rng)
    ids_before, grad_before = ids.copy(), grad.copy()
    fastembed.scatter_add(grad, ids, 100)
    assert_bitwise_equal(ids, ids_before)
    assert_bitwise_equal(grad, grad_before)


# --- errors: the right exception, and every array left as it was ---------------------------


@pytest.mark.parametrize(
    ("ids", "bad_id", "position"),
    [
        ([3, 1, 11], 11, r"ids\[2\]"),
        ([3, 1, 10], 10, r"ids\[2\]"),  # exactly num_embeddings
        ([[0, 1], [-1, 2]], -1, r"ids\[1, 0\]"),
        ([[0, 1], [2, 1_000_000]], 1_000_000, r"ids\[1, 1\]"),
        (12, 12, r"ids\[\(\)\]"),
    ],
    ids=lambda v: str(v)[:24],
)
@pytest.mark.parametrize("grad_dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("id_dtype", KERNEL_ID_DTYPES)
def test_id_out_of_range(ids, bad_id, position, grad_dtype, id_dtype, rng):
    ids = np.asarray(ids, dtype=id_dtype)
    grad = make_grad(ids.shape, 3, grad_dtype, rng)
    out = sentinel_array((10, 3), grad_dtype)
    with raises_leaving_untouched(IndexError, rf"(?<!\d){bad_id}\b.*{position}", grad, out, ids):
        fastembed.scatter_add(grad, ids, 10, out=out)


@pytest.mark.parametrize("distribution", ID_DISTRIBUTIONS)
def test_id_out_of_range_in_large_batch_writes_nothing(distribution, rng):
    ids = make_ids(distribution, 40_000, 1_000, rng)
    ids[-3] = -5
    grad = make_grad(ids.shape, 8, np.float32, rng)
    out = sentinel_array((1_000, 8), np.float32)
    with raises_leaving_untouched(IndexError, r"-5\b.*ids\[39997\]", grad, out, ids):
        fastembed.scatter_add(grad, ids, 1_000, out=out)


@pytest.mark.parametrize(
    "ids",
    [
        np.array([0.0, 1.0]),
        np.array([True, False]),
        np.array([0, 1], dtype=np.complex64),
        np.array([0, 1], dtype=object),
        [0.5, 1.0],
    ],
    ids=lambda v: f"{type(v).__name__}-{np.asarray(v).dtype}",
)
def test_non_integer_ids_are_type_errors(ids, rng):
    grad = make_grad((2,), 3, np.float32, rng)
    out = sentinel_array((4, 3), np.float32)
    with raises_leaving_untouched(TypeError, None, grad, out):
        fastembed.scatter_add(grad, ids, 4, out=out)


@pytest.mark.parametrize(
    "grad_shape",
    [(5,), (4, 3), (6, 3), (5, 3, 1), (1, 5, 3), ()],
    ids=str,
)
def test_grad_output_of_wrong_shape_is_value_error(grad_shape, rng):
    ids = rng.integers(0, 4, 5)
    grad = np.asarray(rng.standard_normal(grad_shape), dtype=np.float32)
    out = sentinel_array((4, 3), np.float32)
    with raises_leaving_untouched(ValueError, "shape", grad, out, ids):
        fastembed.scatter_add(grad, ids, 4, out=out)


@pytest.mark.parametrize("out_shape", [(3, 3), (5, 3), (4, 2), (12,), (4, 3, 1)], ids=str)
def test_out_of_wrong_shape_is_value_error(out_shape, rng):
    ids = rng.integers(0, 4, 5)
    grad = make_grad((5,), 3, np.float32, rng)
    out = sentinel_array(out_shape, np.float32)
    with raises_leaving_untouched(ValueError, "shape", grad, out, ids):
        fastembed.scatter_add(grad, ids, 4, out=out)


@pytest.mark.parametrize(
    ("grad_dtype", "out_dtype"),
    [(np.float32, np.float64), (np.float64, np.float32), (np.float64, np.int64)],
)
def test_out_of_wrong_dtype_is_type_error(grad_dtype, out_dtype, rng):
    ids = rng.integers(0, 4, 5)
    grad = make_grad((5,), 3, grad_dtype, rng)
    out = sentinel_array((4, 3), out_dtype)
    with raises_leaving_untouched(TypeError, "dtype", grad, out, ids):
        fastembed.scatter_add(grad, ids, 4, out=out)


@pytest.mark.parametrize("grad_dtype", [np.int32, ">f2", np.complex128])
def test_unsupported_grad_dtype_is_type_error(grad_dtype, rng):
    ids = rng.integers(0, 4, 5)
    grad = np.ones((5, 3), dtype=grad_dtype)
    out = sentinel_array((4, 3), np.float32)
    with raises_leaving_untouched(TypeError, "float32 or float64", grad, ids, out):
        fastembed.scatter_add(grad, ids, 4, out=out)


@pytest.mark.parametrize(
    "make_out",
    [
        pytest.param(lambda s: s[:4, ::2], id="strided-columns"),
        pytest.param(lambda s: s[::2, :3], id="strided-rows"),
        pytest.param(lambda s: np.asfortranarray(s[:4, :3]), id="fortran"),
    ],
)
def test_non_contiguous_out_is_value_error(make_out, rng):
    ids = rng.integers(0, 4, 5)
    grad = make_grad((5,), 3, np.float32, rng)
    storage = sentinel_array((8, 6), np.float32)
    out = make_out(storage)
    assert out.shape == (4, 3) and not out.flags.c_contiguous
    with raises_leaving_untouched(ValueError, "contiguous", grad, storage, out):
        fastembed.scatter_add(grad, ids, 4, out=out)


def test_read_only_out_is_value_error(rng):
    ids = rng.integers(0, 4, 5)
    grad = make_grad((5,), 3, np.float32, rng)
    out = sentinel_array((4, 3), np.float32)
    out.setflags(write=False)
    with raises_leaving_untouched(ValueError, "read-only", grad, out):
        fastembed.scatter_add(grad, ids, 4, out=out)


def test_out_overlapping_grad_output_is_value_error(rng):
    ids = np.array([0, 1, 1, 0, 2, 3, 3, 2])
    grad = make_grad((8,), 3, np.float32, rng)
    with raises_leaving_untouched(ValueError, "overlap", grad):
        fastembed.scatter_add(grad, ids, 4, out=grad[2:6])


def test_negative_num_embeddings_is_value_error(rng):
    grad = make_grad((2,), 3, np.float32, rng)
    out = sentinel_array((0, 3), np.float32)
    with raises_leaving_untouched(ValueError, "-1", grad):
        fastembed.scatter_add(grad, np.array([0, 0]), -1, out=out)
