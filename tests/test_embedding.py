"""The Embedding layer: initialisation, the table it keeps, forward/backward and its state."""

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
    make_table,
    raises_leaving_untouched,
    reference_gather,
    sentinel_array,
)

# --- a new table ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_default_init_is_uniform_minus_to_plus_005(dtype):
    emb = fastembed.Embedding(1_000, 200, dtype=dtype, seed=0)
    W = emb.weight
    assert W.shape == (1_000, 200)
    assert W.dtype == dtype
    assert W.flags.c_contiguous and W.flags.writeable
    assert W.min() >= -0.05 and W.max() <= 0.05
    # 200k draws of U(-0.05, 0.05): mean 0 (sd 6.5e-5), std 0.1 / sqrt(12) = 0.02887
    assert abs(W.mean()) < 5e-4
    assert W.std() == pytest.approx(0.1 / np.sqrt(12), rel=0.01)
    # both ends are reached and every tenth of the range is populated about equally
    assert W.min() < -0.0499 and W.max() > 0.0499
    counts, _ = np.histogram(W, bins=10, range=(-0.05, 0.05))
    assert counts.min() > 0.9 * W.size / 10


def test_default_dtype_is_float32():
    emb = fastembed.Embedding(10, 4)
    assert emb.weight.dtype == np.float32
    assert emb.weight.shape == (10, 4)
    assert emb.grad is None


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_seed_makes_init_reproducible(dtype):
    first = fastembed.Embedding(50, 8, dtype=dtype, seed=123).weight
    again = fastembed.Embedding(50, 8, dtype=dtype, seed=123).weight
    other = fastembed.Embedding(50, 8, dtype=dtype, seed=124).weight
    assert_bitwise_equal(first, again)
    assert not np.array_equal(first, other)


def test_unseeded_tables_differ():
    assert not np.array_equal(fastembed.Embedding(50, 8).weight, fastembed.Embedding(50, 8).weight)


@pytest.mark.parametrize(("num_embeddings", "dim"), [(0, 4), (4, 0), (1, 1)], ids=str)
def test_degenerate_sizes(num_embeddings, dim):
    emb = fastembed.Embedding(num_embeddings, dim, seed=1)
    assert emb.weight.shape == (num_embeddings, dim)


@pytest.mark.parametrize(
    ("args", "kwargs", "exception"),
    [
        ((), {}, ValueError),
        ((10,), {}, ValueError),
        ((-1, 4), {}, ValueError),
        ((10, 4), {"dtype": np.int32}, TypeError),
        ((10, 4), {"dtype": np.int16}, TypeError),
    ],
    ids=str,
)
def test_bad_constructor_arguments(args, kwargs, exception):
    with pytest.raises(exception):
        fastembed.Embedding(*args, **kwargs)


# --- a given table: kept as it is -----------------------------------------------------------


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_given_weight_is_not_copied(dtype, rng):
    W = make_table(20, 5, dtype, rng)
    emb = fastembed.Embedding(weight=W)
    assert emb.weight is W
    assert np.shares_memory(emb.weight, W)
    assert (emb.num_embeddings, emb.embedding_dim, emb.dtype) == (20, 5, dtype)
    W[3] = 7.0  # the layer sees the caller's later writes: it is the same memory
    assert_bitwise_equal(emb([3, 3]), np.full((2, 5), 7.0, dtype=dtype))


def test_given_weight_with_matching_sizes(rng):
    W = make_table(20, 5, np.float64, rng)
    assert fastembed.Embedding(20, 5, weight=W).weight is W


@pytest.mark.parametrize(("num_embeddings", "dim"), [(21, 5), (20, 4), (5, 20)], ids=str)
def test_given_weight_with_other_sizes_is_value_error(num_embeddings, dim, rng):
    W = make_table(20, 5, np.float32, rng)
    with raises_leaving_untouched(ValueError, "shape", W):
        fastembed.Embedding(num_embeddings, dim, weight=W)


def test_memmap_table_is_kept_as_the_memmap(tmp_path, rng):
    values = make_table(2_000, 16, np.float32, rng)
    path = tmp_path / "table.f32"
    values.tofile(path)
    W = np.memmap(path, dtype=np.float32, mode="r+", shape=(2_000, 16))
    emb = fastembed.Embedding(weight=W)
    assert emb.weight is W
    assert isinstance(emb.weight, np.memmap)
    ids = make_ids("zipf", 500, 2_000, rng).reshape(20, 25)
    assert_bitwise_equal(emb(ids), reference_gather(values, ids))
    grad = make_grad(ids.shape, 16, np.float32, rng)
    assert_close_to_reference(emb.backward(grad), grad, ids, 2_000)


def test_read_only_memmap_table_works_for_lookups(tmp_path, rng):
    values = make_table(300, 4, np.float64, rng)
    path = tmp_path / "table.f64"
    values.tofile(path)
    emb = fastembed.Embedding(weight=np.memmap(path, dtype=np.float64, mode="r", shape=(300, 4)))
    ids = rng.integers(0, 300, 40)
    assert_bitwise_equal(emb(ids), reference_gather(values, ids))


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_read_only_table_works_for_lookups_and_gradients(dtype, rng):
    W = make_table(30, 6, dtype, rng)
    W.setflags(write=False)
    emb = fastembed.Embedding(weight=W)
    ids = rng.integers(0, 30, (4, 5))
    assert_bitwise_equal(emb(ids), reference_gather(W, ids))
    grad = make_grad(ids.shape, 6, dtype, rng)
    assert_close_to_reference(emb.backward(grad), grad, ids, 30)


@pytest.mark.parametrize(
    ("make_weight", "exception", "match"),
    [
        pytest.param(lambda W: W[:, ::2], ValueError, "contiguous", id="strided"),
        pytest.param(lambda W: np.asfortranarray(W), ValueError, "contiguous", id="fortran"),
        pytest.param(lambda W: W.reshape(-1), ValueError, "2-d", id="1-d"),
        pytest.param(lambda W: W.reshape(2, 5, 6), ValueError, "2-d", id="3-d"),
        pytest.param(lambda W: W.astype(np.int64), TypeError, "float", id="int64"),
        pytest.param(lambda W: W.astype(np.int16), TypeError, "float", id="int16"),
        pytest.param(lambda W: W.tolist(), TypeError, "array", id="list"),
    ],
)
def test_unusable_weight(make_weight, exception, match, rng):
    table = make_table(10, 6, np.float32, rng)
    weight = make_weight(table)
    with raises_leaving_untouched(exception, match, table):
        fastembed.Embedding(weight=weight)


# --- forward and backward ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("id_dtype", KERNEL_ID_DTYPES)
@pytest.mark.parametrize("ids_shape", [(), (7,), (3, 4), (2, 3, 2), (0,)], ids=str)
def test_forward_and_backward(dtype, id_dtype, ids_shape, rng):
    emb = fastembed.Embedding(12, 5, dtype=dtype, seed=3)
    weight_before = emb.weight.copy()
    ids = rng.integers(0, 12, ids_shape).astype(id_dtype)
    output = emb(ids)
    assert output.shape == ids_shape + (5,)
    assert_bitwise_equal(output, reference_gather(emb.weight, ids))
    grad = make_grad(ids_shape, 5, dtype, rng)
    grad_weight = emb.backward(grad)
    assert grad_weight is emb.grad
    assert_close_to_reference(grad_weight, grad, ids, 12)
    assert_bitwise_equal(emb.weight, weight_before)  # backward computes, never updates


def test_classic_example():
    W = np.arange(15, dtype=np.float32).reshape(3, 5)
    emb = fastembed.Embedding(weight=W)
    np.testing.assert_array_equal(emb([[0, 2], [1, 2]]), [[W[0], W[2]], [W[1], W[2]]])
    grad = emb.backward(np.ones((2, 2, 5), dtype=np.float32))
    np.testing.assert_array_equal(grad, [[1] * 5, [1] * 5, [2] * 5])


@pytest.mark.parametrize("distribution", ID_DISTRIBUTIONS)
def test_large_batch(distribution, rng):
    emb = fastembed.Embedding(2_000, 8, seed=5)
    ids = make_ids(distribution, 40_000, 2_000, rng).reshape(80, 500)
    assert_bitwise_equal(emb(ids), reference_gather(emb.weight, ids))
    grad = make_grad(ids.shape, 8, np.float32, rng)
    assert_close_to_reference(emb.backward(grad), grad, ids, 2_000)


def test_forward_into_out(rng):
    emb = fastembed.Embedding(12, 5, seed=3)
    ids = rng.integers(0, 12, (3, 4))
    out = sentinel_array((3, 4, 5), np.float32)
    assert emb.forward(ids, out=out) is out
    assert_bitwise_equal(out, reference_gather(emb.weight, ids))


def test_backward_uses_the_last_forward(rng):
    emb = fastembed.Embedding(12, 5, seed=3)
    emb(rng.integers(0, 12, (2, 3)))
    ids = rng.integers(0, 12, 9)
    emb(ids)
    grad = make_grad((9,), 5, np.float32, rng)
    assert_close_to_reference(emb.backward(grad), grad, ids, 12)


def test_backward_twice_accumulates_into_the_same_grad(rng):
    emb = fastembed.Embedding(12, 5, seed=3)
    ids = rng.integers(0, 12, 30)
    emb(ids)
    grad = make_grad((30,), 5, np.float32, rng)
    first = emb.backward(grad)
    single = first.copy()
    second = emb.backward(grad)
    assert second is first  # added in place, as PyTorch's .grad
    assert_bitwise_equal(second, single + single)
    emb.zero_grad()
    assert emb.grad is None
    assert_bitwise_equal(emb.backward(grad), single)


def test_backward_before_forward_is_runtime_error(rng):
    emb = fastembed.Embedding(12, 5, seed=3)
    with pytest.raises(RuntimeError):
        emb.backward(make_grad((3,), 5, np.float32, rng))
    assert emb.grad is None


@pytest.mark.parametrize(
    "make_ids_like",
    [
        pytest.param(lambda a: a.astype(np.int64), id="int64"),
        pytest.param(lambda a: a.astype(np.int32), id="int32"),
        pytest.param(lambda a: a.astype(np.int16), id="int16"),
        pytest.param(lambda a: np.repeat(a, 2)[::2], id="strided"),
        pytest.param(lambda a: a.tolist(), id="list"),
    ],
)
def test_changing_callers_ids_after_forward_does_not_change_the_gradient(make_ids_like, rng):
    emb = fastembed.Embedding(12, 5, seed=3)
    original = rng.integers(0, 12, 40)
    ids = make_ids_like(original)
    emb(ids)
    if isinstance(ids, list):
        ids[:] = [0] * len(ids)
    else:
        ids[...] = 0
    grad = make_grad((40,), 5, np.float32, rng)
    assert_close_to_reference(emb.backward(grad), grad, original, 12)


def test_changing_callers_memmap_ids_after_forward_does_not_change_the_gradient(tmp_path, rng):
    original = rng.integers(0, 12, 40)
    ids = np.memmap(tmp_path / "ids.i8", dtype=np.int64, mode="w+", shape=(40,))
    ids[:] = original
    emb = fastembed.Embedding(12, 5, seed=3)
    emb(ids)
    ids[:] = 0
    grad = make_grad((40,), 5, np.float32, rng)
    assert_close_to_reference(emb.backward(grad), grad, original, 12)


# --- errors leave the layer as it was --------------------------------------------------------


@pytest.mark.parametrize("grad_shape", [(6,), (5, 5), (6, 4), (6, 5, 1), (2, 3, 5)], ids=str)
def test_backward_with_wrong_grad_shape_keeps_the_previous_grad(grad_shape, rng):
    emb = fastembed.Embedding(12, 5, seed=3)
    ids = rng.integers(0, 12, 6)
    emb(ids)
    previous = emb.backward(make_grad((6,), 5, np.float32, rng))
    weight_before = emb.weight.copy()
    bad = np.asarray(rng.standard_normal(grad_shape), dtype=np.float32)
    with raises_leaving_untouched(ValueError, "shape", emb.weight, previous, bad):
        emb.backward(bad)
    assert emb.grad is previous
    assert_bitwise_equal(emb.weight, weight_before)


def test_backward_with_wrong_grad_dtype_keeps_the_previous_grad(rng):
    emb = fastembed.Embedding(12, 5, seed=3)
    emb(rng.integers(0, 12, 6))
    previous = emb.backward(make_grad((6,), 5, np.float32, rng))
    with raises_leaving_untouched(TypeError, None, emb.weight, previous):
        emb.backward(np.ones((6, 5), dtype=np.int32))
    assert emb.grad is previous


@pytest.mark.parametrize(
    ("bad_ids", "exception"),
    [
        ([[1, 2], [12, 0]], IndexError),
        ([[1, 2], [-1, 0]], IndexError),
        ([[1.0, 2.0], [3.0, 0.0]], TypeError),
        ([[True, False], [True, True]], TypeError),
    ],
    ids=str,
)
def test_failed_forward_writes_nothing_and_keeps_the_state(bad_ids, exception, rng):
    emb = fastembed.Embedding(12, 5, seed=3)
    ids = rng.integers(0, 12, (2, 2))
    emb(ids)
    previous = emb.backward(make_grad((2, 2), 5, np.float32, rng))
    out = sentinel_array((2, 2, 5), np.float32)
    with raises_leaving_untouched(exception, None, emb.weight, previous, out):
        emb.forward(bad_ids, out=out)
    assert emb.grad is previous
    emb.zero_grad()
    grad = make_grad((2, 2), 5, np.float32, rng)  # backward still refers to the last good forward
    assert_close_to_reference(emb.backward(grad), grad, ids, 12)


def test_forward_with_bad_out_writes_nothing(rng):
    emb = fastembed.Embedding(12, 5, seed=3)
    ids = rng.integers(0, 12, (2, 2))
    out = sentinel_array((2, 2, 5), np.float64)
    with raises_leaving_untouched(TypeError, "dtype", emb.weight, out):
        emb.forward(ids, out=out)
