"""Properties of every table precision through every call (hypothesis): float16 and bfloat16
results are the float32 computation on the widened table rounded once; quantized gathers and
max bags are those of the dequantized table, sum and mean bags fuse codes times scales into
the sums and add the biases once; quantization stays within half a quantum."""

from __future__ import annotations

import fastembed
import numpy as np
import pytest
from conftest import assert_bitwise_equal, quantized_sum_bags
from hypothesis import given
from hypothesis import strategies as st

ml_dtypes = pytest.importorskip("ml_dtypes")
DTYPES = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)]
DTYPES.append(np.dtype(ml_dtypes.bfloat16))


def arithmetic(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


@st.composite
def problems(draw, even_dim: bool = False):
    num_embeddings = draw(st.integers(1, 40))
    dim = draw(st.integers(0, 9))
    if even_dim:
        dim += dim % 2
    n = draw(st.integers(0, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1e-3, 1.0, 300.0]))
    table = (rng.standard_normal((num_embeddings, dim)) * scale).astype(np.float32)
    ids = rng.integers(0, num_embeddings, n)
    cuts = np.sort(rng.integers(0, n + 1, draw(st.integers(1, 6))))
    cuts[0] = 0
    grad = rng.standard_normal((n, dim)).astype(np.float32)
    return table, ids, cuts, grad, rng


@given(problems(), st.sampled_from(DTYPES), st.sampled_from(["sum", "mean", "max"]))
def test_every_dtype_through_every_call(problem, dtype, mode):
    table, ids, offsets, grad, rng = problem
    W = table.astype(dtype)
    wide = W.astype(arithmetic(dtype))
    V, D = W.shape
    # lookups: the table's own bytes, or widened into a float32 out
    assert_bitwise_equal(fastembed.gather(W, ids), W[ids])
    if dtype.itemsize == 2:
        out = np.empty((len(ids), D), np.float32)
        assert_bitwise_equal(fastembed.gather(W, ids, out=out), wide[ids])
    # bags: the arithmetic dtype's pooling, rounded once
    expected = fastembed.embedding_bag(wide, ids, offsets, mode=mode)
    assert_bitwise_equal(
        fastembed.embedding_bag(W, ids, offsets, mode=mode), expected.astype(dtype)
    )
    if mode == "sum":
        weights = rng.standard_normal(len(ids)).astype(arithmetic(dtype))
        got = fastembed.embedding_bag(W, ids, offsets, mode="sum", per_sample_weights=weights)
        expected = fastembed.embedding_bag(
            wide, ids, offsets, mode="sum", per_sample_weights=weights
        )
        assert_bitwise_equal(got, expected.astype(dtype))
    # gradients in the table's dtype: summed in the arithmetic dtype, rounded once
    g = grad.astype(dtype)
    sums = fastembed.scatter_add(g.astype(arithmetic(dtype)), ids, V)
    assert_bitwise_equal(fastembed.scatter_add(g, ids, V), sums.astype(dtype))
    sparse = fastembed.sparse_grad(g, ids, V)
    assert np.array_equal(sparse.indices, np.unique(ids))
    assert_bitwise_equal(sparse.values, sums[sparse.indices].astype(dtype))
    # a layer's step to nearest is the arithmetic dtype's step, rounded once
    emb = fastembed.Embedding(weight=W.copy())
    emb(ids)
    emb.backward(g, optimizer=fastembed.optim.SGD(0.5))
    reference = fastembed.Embedding(weight=wide.copy())
    reference(ids)
    reference.backward(g.astype(arithmetic(dtype)), optimizer=fastembed.optim.SGD(0.5))
    assert_bitwise_equal(emb.weight, reference.weight.astype(dtype))


@given(problems(even_dim=True), st.sampled_from([8, 4]), st.sampled_from(["sum", "mean", "max"]))
def test_quantized_lookups_and_their_error(problem, bits, mode):
    table, ids, offsets, _, _ = problem
    q = fastembed.quantize(table, bits)
    dequantized = q.dequantize()
    assert_bitwise_equal(fastembed.gather(q, ids), dequantized[ids])
    got = fastembed.embedding_bag(q, ids, offsets, mode=mode)
    if mode == "max":
        assert_bitwise_equal(got, fastembed.embedding_bag(dequantized, ids, offsets, mode=mode))
    else:
        assert_bitwise_equal(got, quantized_sum_bags(q, ids, offsets, mode))
    if table.shape[1]:
        low, high = table.min(1), table.max(1)
        if bits == 8:
            quantum, slack = (high - low) / 255, np.full(len(table), 1e-8)
        else:
            bias = low.astype(np.float16).astype(np.float64)
            quantum = (high - bias) / 15
            # The float16 scale is off by up to half its ulp (2**-25 once it is subnormal),
            # which code 15 multiplies (or the clamp to 15 leaves uncovered).
            slack = np.abs(low - bias) + 15 * np.maximum(quantum * 2**-11, 2**-25)
        error = np.abs(dequantized.astype(np.float64) - table)
        bound = quantum * (1 + 2**-10) / 2 + slack + 1e-6 * np.abs(table).max(1)
        assert np.all(error <= bound[:, None])
