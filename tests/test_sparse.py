"""Row-sparse gradients: fastembed.sparse_grad, RowSparseGrad, and the layer's sparse=True mode."""

from __future__ import annotations

import pickle

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
)
from fastembed import RowSparseGrad

THREAD_COUNTS = [1, 2, 3, 7]


def assert_valid_sparse(grad: RowSparseGrad, ids, num_embeddings: int, dim: int, dtype) -> None:
    """indices are exactly the sorted distinct ids; values have the matching shape."""
    assert grad.indices.dtype == np.int64
    assert_bitwise_equal(grad.indices, np.unique(np.asarray(ids, dtype=np.int64)))
    assert grad.values.shape == (len(grad.indices), dim)
    assert grad.values.dtype == dtype
    assert grad.shape == (num_embeddings, dim)
    assert grad.num_embeddings == num_embeddings


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("id_dtype", KERNEL_ID_DTYPES)
@pytest.mark.parametrize("distribution", ID_DISTRIBUTIONS)
def test_sparse_grad_is_the_dense_gradient_bitwise(dtype, id_dtype, distribution, rng):
    ids = make_ids(distribution, 50_000, 80_000, rng, id_dtype)
    grad = make_grad((50_000,), 12, dtype, rng)
    sparse = fastembed.sparse_grad(grad, ids, 80_000)
    assert_valid_sparse(sparse, ids, 80_000, 12, dtype)
    dense = fastembed.scatter_add(grad, ids, 80_000)
    assert_bitwise_equal(sparse.to_dense(), dense)
    assert_close_to_reference(sparse.to_dense(), grad, ids, 80_000)


@pytest.mark.parametrize("ids_shape", [(0,), (1,), (7, 5), (2, 3, 4)], ids=str)
def test_sparse_grad_shapes(ids_shape, rng):
    ids = rng.integers(0, 20, ids_shape)
    grad = make_grad(ids_shape, 3, np.float32, rng)
    sparse = fastembed.sparse_grad(grad, ids, 20)
    assert_valid_sparse(sparse, ids, 20, 3, np.float32)
    assert_close_to_reference(sparse.to_dense(), grad, ids, 20)


def test_sparse_grad_of_zero_width_rows(rng):
    sparse = fastembed.sparse_grad(np.zeros((5, 0), np.float32), [3, 1, 3, 0, 1], 4)
    assert_bitwise_equal(sparse.indices, np.array([0, 1, 3]))
    assert sparse.values.shape == (3, 0)


@pytest.mark.parametrize("padding_idx", [0, 7, 19, -1, 12])
@pytest.mark.parametrize("scale_grad_by_freq", [False, True])
@pytest.mark.parametrize("num_embeddings", [20, 200_000])  # counting path, sorted runs
def test_sparse_options_leave_out_the_padding_id(
    padding_idx, scale_grad_by_freq, num_embeddings, rng
):
    ids = rng.integers(0, 20, 3_000)
    ids[ids == 12] = 13  # 12 never occurs: leaving it out must not shift anything
    grad = make_grad((3_000,), 5, np.float32, rng)
    options = {"padding_idx": padding_idx, "scale_grad_by_freq": scale_grad_by_freq}
    sparse = fastembed.sparse_grad(grad, ids, num_embeddings, **options)
    row = padding_idx % num_embeddings
    assert_bitwise_equal(sparse.indices, np.setdiff1d(np.unique(ids), [row]))
    dense = fastembed.scatter_add(grad, ids, num_embeddings, **options)
    assert_bitwise_equal(sparse.to_dense(), dense)


@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("num_embeddings", [1_000, 300_000])
@pytest.mark.parametrize(
    "options", [{}, {"padding_idx": 0}, {"scale_grad_by_freq": True, "padding_idx": -1}], ids=str
)
def test_sparse_grad_is_bitwise_identical_for_any_thread_count(num_embeddings, options, rng):
    ids = make_ids("heavy", 40_000, num_embeddings, rng)
    ids[::5] = 0
    grad = make_grad((40_000,), 32, np.float32, rng)
    results = []
    for threads in THREAD_COUNTS:
        fastembed.set_num_threads(threads)
        results.append(fastembed.sparse_grad(grad, ids, num_embeddings, **options))
    for other in results[1:]:
        assert_bitwise_equal(other.indices, results[0].indices)
        assert_bitwise_equal(other.values, results[0].values)


def test_sparse_grad_errors(rng):
    grad = make_grad((3,), 2, np.float32, rng)
    with pytest.raises(IndexError, match="id 9"):
        fastembed.sparse_grad(grad, [1, 9, 2], 5)
    with pytest.raises(ValueError, match="shape"):
        fastembed.sparse_grad(grad, [1, 2], 5)
    with pytest.raises(TypeError, match="float32 or float64"):
        fastembed.sparse_grad(grad.astype(np.int32), [1, 2, 3], 5)
    with pytest.raises(ValueError, match="padding_idx"):
        fastembed.sparse_grad(grad, [1, 2, 3], 5, padding_idx=5)
    with pytest.raises(ValueError, match="num_embeddings"):
        fastembed.sparse_grad(grad, [1, 2, 3], -1)


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("padding_idx", [None, 0, 3])
def test_sparse_grad_matches_torch_coalesced(dtype, padding_idx, rng):
    # (torch refuses scale_grad_by_freq with sparse gradients; ours equals the dense one,
    # which test_sparse_options_leave_out_the_padding_id and test_options compare to torch.)
    torch = pytest.importorskip("torch")
    ids = make_ids("zipf", 400, 50, rng).reshape(20, 20)
    ids[0, 0] = 3
    grad = make_grad(ids.shape, 6, dtype, rng)
    weight_t = torch.zeros((50, 6), dtype=torch.from_numpy(grad).dtype, requires_grad=True)
    torch.nn.functional.embedding(
        torch.from_numpy(ids),
        weight_t,
        padding_idx=padding_idx,
        sparse=True,
    ).backward(torch.from_numpy(grad))
    expected = weight_t.grad.coalesce()
    got = fastembed.sparse_grad(grad, ids, 50, padding_idx=padding_idx)
    assert_bitwise_equal(got.indices, expected.indices()[0].numpy())
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got.values, expected.values().numpy(), rtol=rtol, atol=rtol)


# --- RowSparseGrad ---------------------------------------------------------------------------


def test_row_sparse_grad_dense_views():
    g = RowSparseGrad(np.array([1, 3]), np.arange(4, dtype=np.float32).reshape(2, 2), 5)
    expected = np.zeros((5, 2), np.float32)
    expected[[1, 3]] = [[0, 1], [2, 3]]
    assert_bitwise_equal(g.to_dense(), expected)
    assert_bitwise_equal(np.asarray(g), expected)
    assert_bitwise_equal(np.asarray(g, dtype=np.float64), expected.astype(np.float64))
    assert g.shape == (5, 2) and g.dtype == np.float32 and g.nnz == 2
    assert repr(g) == "RowSparseGrad(num_embeddings=5, embedding_dim=2, nnz=2, dtype=float32)"


def test_row_sparse_grad_merge_is_the_sum_of_the_dense_gradients(rng):
    a = fastembed.sparse_grad(make_grad((50,), 4, np.float64, rng), rng.integers(0, 30, 50), 30)
    b = fastembed.sparse_grad(
        make_grad((40,), 4, np.float64, rng), rng.integers(10, 60, 40) % 30, 30
    )
    merged = a + b
    assert isinstance(merged, RowSparseGrad)
    assert_bitwise_equal(merged.indices, np.union1d(a.indices, b.indices))
    assert_bitwise_equal(merged.to_dense(), a.to_dense() + b.to_dense())
    assert_bitwise_equal(a.merge(b).values, merged.values)


def test_row_sparse_grad_plus_dense_is_dense(rng):
    a = fastembed.sparse_grad(make_grad((20,), 3, np.float32, rng), rng.integers(0, 9, 20), 9)
    dense = make_table(9, 3, np.float32, rng)
    for result in (a + dense, dense + a):
        assert type(result) is np.ndarray
        assert_bitwise_equal(result, dense + a.to_dense())


def test_row_sparse_grad_merge_of_mismatched_gradients_is_an_error(rng):
    a = RowSparseGrad(np.array([1]), np.ones((1, 2), np.float32), 5)
    with pytest.raises(ValueError, match="cannot merge"):
        a + RowSparseGrad(np.array([1]), np.ones((1, 2), np.float32), 6)
    with pytest.raises(ValueError, match="cannot merge"):
        a + RowSparseGrad(np.array([1]), np.ones((1, 2), np.float64), 5)
    with pytest.raises(TypeError):
        a.merge(np.ones((5, 2)))


@pytest.mark.parametrize(
    ("indices", "values", "exception", "match"),
    [
        ([2, 1], np.ones((2, 2)), ValueError, "increasing"),
        ([1, 1], np.ones((2, 2)), ValueError, "increasing"),
        ([1, 5], np.ones((2, 2)), IndexError, "5"),
        ([-1, 2], np.ones((2, 2)), IndexError, "-1"),
        ([1, 2], np.ones((3, 2)), ValueError, "shape"),
        ([1.0, 2.0], np.ones((2, 2)), TypeError, "integer"),
        ([1, 2], np.ones((2, 2), dtype=np.int32), TypeError, "float32"),
    ],
    ids=str,
)
def test_row_sparse_grad_checks_its_parts(indices, values, exception, match):
    with pytest.raises(exception, match=match):
        RowSparseGrad(np.array(indices), values, 5)


def test_row_sparse_grad_pickles(rng):
    g = fastembed.sparse_grad(make_grad((20,), 3, np.float32, rng), rng.integers(0, 9, 20), 9)
    again = pickle.loads(pickle.dumps(g))
    assert_bitwise_equal(again.indices, g.indices)
    assert_bitwise_equal(again.values, g.values)
    assert again.num_embeddings == 9


# --- the layer in sparse mode ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_sparse_layer_backward_returns_a_row_sparse_grad(dtype, rng):
    emb = fastembed.Embedding(1_000_000, 8, sparse=True, dtype=dtype, padding_idx=0, seed=0)
    ids = rng.integers(0, 1_000, (30, 10))
    ids[0] = 0
    emb(ids)
    grad = make_grad(ids.shape, 8, dtype, rng)
    result = emb.backward(grad)
    assert isinstance(result, RowSparseGrad) and result is emb.grad
    assert_bitwise_equal(result.indices, np.setdiff1d(np.unique(ids), [0]))
    expected = fastembed.sparse_grad(grad, ids, 1_000_000, padding_idx=0)
    assert_bitwise_equal(result.values, expected.values)


def test_sparse_layer_accumulates_by_merging_until_zero_grad(rng):
    emb = fastembed.Embedding(100, 4, sparse=True, dtype=np.float64, seed=0)
    steps = []
    for _ in range(3):
        ids = rng.integers(0, 100, 30)
        grad = make_grad((30,), 4, np.float64, rng)
        emb(ids)
        emb.backward(grad)
        steps.append(fastembed.scatter_add(grad, ids, 100))
    np.testing.assert_allclose(emb.grad.to_dense(), sum(steps), rtol=1e-12)
    emb.zero_grad(set_to_none=False)
    assert emb.grad.nnz == 0 and emb.grad.shape == (100, 4)
    emb.zero_grad()
    assert emb.grad is None


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_dense_layer_accumulates_in_place_until_zero_grad(dtype, rng):
    emb = fastembed.Embedding(50, 4, dtype=dtype, padding_idx=3, scale_grad_by_freq=True, seed=0)
    total = np.zeros((50, 4))
    first = None
    for _ in range(3):
        ids = rng.integers(0, 50, 40)
        grad = make_grad((40,), 4, dtype, rng)
        emb(ids)
        result = emb.backward(grad)
        first = result if first is None else first
        assert result is first
        total += fastembed.scatter_add(grad, ids, 50, padding_idx=3, scale_grad_by_freq=True)
    np.testing.assert_allclose(emb.grad, total, rtol=1e-5 if dtype == np.float32 else 1e-12)
    emb.zero_grad(set_to_none=False)
    assert emb.grad is first and not first.any()


def test_sparse_layer_matches_torch_accumulated_gradient(rng):
    torch = pytest.importorskip("torch")
    weight = make_table(40, 5, np.float64, rng)
    layer_t = torch.nn.Embedding.from_pretrained(
        torch.from_numpy(weight.copy()), freeze=False, sparse=True, padding_idx=2
    )
    emb = fastembed.Embedding.from_pretrained(weight, freeze=False, sparse=True, padding_idx=2)
    for _ in range(2):
        ids = rng.integers(0, 40, 25)
        ids[0] = 2
        grad = make_grad((25,), 5, np.float64, rng)
        layer_t(torch.from_numpy(ids)).backward(torch.from_numpy(grad))
        emb(ids)
        emb.backward(grad)
    expected = layer_t.weight.grad.coalesce()
    assert_bitwise_equal(emb.grad.indices, expected.indices()[0].numpy())
    np.testing.assert_allclose(emb.grad.values, expected.values().numpy(), rtol=1e-12)


def test_switching_a_layer_between_sparse_and_dense_keeps_accumulating(rng):
    emb = fastembed.Embedding(20, 3, sparse=True, dtype=np.float64, seed=0)
    ids = rng.integers(0, 20, 10)
    grad = make_grad((10,), 3, np.float64, rng)
    emb(ids)
    emb.backward(grad)
    emb.sparse = False
    result = emb.backward(grad)
    assert type(result) is np.ndarray
    np.testing.assert_allclose(result, 2 * fastembed.scatter_add(grad, ids, 20), rtol=1e-12)
    emb.sparse = True
    result = emb.backward(grad)
    assert type(result) is np.ndarray  # dense + sparse stays dense
    np.testing.assert_allclose(result, 3 * fastembed.scatter_add(grad, ids, 20), rtol=1e-12)
