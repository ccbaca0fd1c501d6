"""Every row reader of the pooled kernel (float16, bfloat16, 8-bit, 4-bit) at widths that
exercise its groups of 8 and 4 lanes and the element-by-element tail, against NumPy float64:
bags, gathers and quantizing, at 1 and 2 threads."""

from __future__ import annotations

import fastembed
import numpy as np
import pytest
from conftest import assert_bitwise_equal, quantized_sum_bags, unpack_quantized
from fastembed import quantize

V = 64
DIMS = [1, 2, 7, 8, 9, 15, 16, 17, 18, 64, 66, 67]
READERS = ["float16", "bfloat16", "8-bit", "4-bit"]


def make_table(reader: str, dim: int, rng: np.random.Generator):
    """(table, its rows in float64 exactly as stored, the magnitude float32 rounds each element
    at: |x| for float16 / bfloat16, |code * scale| + |bias| for codes)."""
    weight = rng.standard_normal((V, dim)).astype(np.float32)
    weight[0, 0] = 2.0**-20  # a float16 subnormal
    if reader == "float16":
        table = weight.astype(np.float16)
        return table, table.astype(np.float64), np.abs(table.astype(np.float64))
    if reader == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        table = weight.astype(ml_dtypes.bfloat16)
        return table, table.astype(np.float64), np.abs(table.astype(np.float64))
    bits = int(reader.split("-")[0])
    table = quantize(weight, bits)
    # code * scale + bias from the bytes, in float64
    codes, scale, bias = unpack_quantized(table)
    magnitude = codes * np.abs(scale)[:, None] + np.abs(bias)[:, None]
    return table, codes * scale[:, None] + bias[:, None], magnitude


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("reader", READERS)
def test_bags_and_gathers_at_every_width(reader, dim, rng, restore_num_threads):
    if reader == "4-bit" and dim % 2:
        pytest.skip("4-bit rows need an even embedding_dim (as FBGEMM's)")
    table, rows, magnitude = make_table(reader, dim, rng)
    ids = rng.integers(0, V, 300)
    offsets = np.concatenate([[0], np.sort(rng.choice(np.arange(1, 300), 40, replace=False))])
    bounds = np.append(offsets, len(ids))
    weights = rng.uniform(0.5, 2.0, len(ids)).astype(np.float32)
    results = {}
    for threads in (1, 2):
        fastembed.set_num_threads(threads)
        for mode in ("sum", "mean"):
            out = np.empty((len(offsets), dim), np.float32)
            fastembed.embedding_bag(table, ids, offsets, mode=mode, out=out)
            results[threads, mode] = out
        out = np.empty((len(offsets), dim), np.float32)
        fastembed.embedding_bag(
            table, ids, offsets, mode="sum", per_sample_weights=weights, out=out
        )
        results[threads, "weighted"] = out
        gathered = np.empty((len(ids), dim), np.float32)
        fastembed.gather(table, ids, out=gathered)
        results[threads, "gather"] = gathered
    for key in ("sum", "mean", "weighted", "gather"):
        assert_bitwise_equal(results[2, key], results[1, key])
    if reader.endswith("-bit"):  # the fused sums, every group of lanes and the tail
        for mode in ("sum", "mean"):
            assert_bitwise_equal(results[1, mode], quantized_sum_bags(table, ids, offsets, mode))
        expected = quantized_sum_bags(table, ids, offsets, per_sample_weights=weights)
        assert_bitwise_equal(results[1, "weighted"], expected)
    # elements are widened exactly (float16, bfloat16) or as float32(code * scale) + bias (two
    # roundings, each within half an ulp of the magnitude)
    assert np.all(np.abs(results[1, "gather"] - rows[ids]) <= 2.0**-23 * magnitude[ids] + 1e-30)
    for b in range(len(offsets)):
        bag = ids[bounds[b] : bounds[b + 1]]
        w = weights[bounds[b] : bounds[b + 1]].astype(np.float64)
        # float32 sums in position order: each addition within half an ulp of the running sum,
        # each element within one ulp of its magnitude
        bound = (len(bag) + 2) * 2.0**-23 * magnitude[bag].sum(0) + 1e-30
        np.testing.assert_array_less(np.abs(results[1, "sum"][b] - rows[bag].sum(0)), bound)
        mean = rows[bag].mean(0)
        np.testing.assert_array_less(np.abs(results[1, "mean"][b] - mean), bound / len(bag))
        weighted = (w[:, None] * rows[bag]).sum(0)
        wbound = (len(bag) + 3) * 2.0**-23 * (w[:, None] * magnitude[bag]).sum(0) + 1e-30
        np.testing.assert_array_less(np.abs(results[1, "weighted"][b] - weighted), wbound)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("bits", [8, 4])
def test_quantize_at_every_width(bits, dim, rng):
    """Min, max and codes of every width (vector groups and tail) as NumPy's formulas give."""
    if bits == 4 and dim % 2:
        pytest.skip("4-bit rows need an even embedding_dim")
    weight = rng.standard_normal((V, dim)).astype(np.float32)
    q = quantize(weight, bits)
    packed = np.asarray(q.packed)
    low = weight.min(1)
    high = weight.max(1)
    if bits == 8:
        scale, bias = packed[:, dim:].copy().view(np.float32).T
        np.testing.assert_array_equal(bias, low)
        np.testing.assert_array_equal(scale, (high - low) / np.float32(255))
        inverse = np.float32(255) / ((high - low) + np.float32(1e-8))
        codes = np.rint(np.clip((weight - low[:, None]) * inverse[:, None], 0, 255))
        np.testing.assert_array_equal(packed[:, :dim], codes.astype(np.uint8))
    else:
        scale, bias = packed[:, dim // 2 :].copy().view(np.float16).astype(np.float32).T
        np.testing.assert_array_equal(bias, low.astype(np.float16).astype(np.float32))
        codes = np.rint(np.clip((weight - bias[:, None]) * (np.float32(1) / scale)[:, None], 0, 15))
        codes = codes.astype(np.uint8)
        np.testing.assert_array_equal(packed[:, : dim // 2], codes[:, 0::2] | (codes[:, 1::2] << 4))
