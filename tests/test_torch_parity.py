"""Parity with PyTorch's embedding (skipped where torch is not installed)."""

from __future__ import annotations

import fastembed
import numpy as np
import pytest
from conftest import (
    ID_DISTRIBUTIONS,
    KERNEL_ID_DTYPES,
    WEIGHT_DTYPES,
    assert_bitwise_equal,
    make_grad,
    make_ids,
    make_table,
)

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("distribution", ID_DISTRIBUTIONS)
@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("id_dtype", KERNEL_ID_DTYPES)
def test_forward_and_gradient_match_torch(distribution, dtype, id_dtype, rng):
    W = make_table(1_000, 8, dtype, rng)
    ids = make_ids(distribution, 40_000, 1_000, rng, id_dtype).reshape(100, 400)
    grad = make_grad(ids.shape, 8, dtype, rng)

    weight_t = torch.from_numpy(W.copy()).requires_grad_()
    output_t = F.embedding(torch.from_numpy(ids), weight_t)
    (output_t * torch.from_numpy(grad)).sum().backward()

    emb = fastembed.Embedding(weight=W)
    assert_bitwise_equal(emb(ids), output_t.detach().numpy())
    # torch sums each id's rows in its own order: equal up to rounding, relative to the size
    # of the rows summed
    expected = weight_t.grad.numpy()
    magnitude = np.zeros((1_000, 8))
    np.add.at(magnitude, ids.reshape(-1), np.abs(grad.reshape(-1, 8)).astype(np.float64))
    error = np.abs(emb.backward(grad).astype(np.float64) - expected)
    assert np.all(error <= 32 * np.finfo(dtype).eps * magnitude)


@pytest.mark.parametrize("ids_shape", [(), (5,), (0,), (2, 3, 4)], ids=str)
def test_shapes_match_torch(ids_shape, rng):
    W = make_table(10, 3, np.float32, rng)
    ids = rng.integers(0, 10, ids_shape)
    expected = F.embedding(torch.from_numpy(ids), torch.from_numpy(W)).numpy()
    assert_bitwise_equal(fastembed.gather(W, ids), expected)
