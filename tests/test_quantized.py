"""Row-wise 8-bit and 4-bit tables (FBGEMM's layout): packing, lookups, layers, files, errors;
against NumPy float64 formulas always and PyTorch's quantized ops where installed."""

from __future__ import annotations

import fastembed
import numpy as np
import pytest
from conftest import (
    assert_bitwise_equal,
    fma32,
    make_ids,
    quantized_sum_bags,
    raises_leaving_untouched,
    unpack_quantized,
)
from fastembed import QuantizedTable, optim, quantize

V, D = 500, 16
BITS = [8, 4]


def awkward_table(rng, num_embeddings=V, dim=D) -> np.ndarray:
    """Rows of every kind: wide and narrow ranges, constant, one-signed, huge, tiny."""
    table = rng.standard_normal((num_embeddings, dim)).astype(np.float32)
    table[0] = 0.0
    table[1] = 3.25  # constant
    table[2] *= 1e-6
    table[3] *= 1e4
    table[4] = np.abs(table[4]) + 100  # all positive, far from zero
    table[5] = -np.abs(table[5]) - 7
    table[6, ::2] = 1e-30
    table[7] = np.linspace(-1, 1, dim)
    return table


def reference_dequantize(q: QuantizedTable) -> np.ndarray:
    codes, scale, bias = unpack_quantized(q)
    return codes * scale[:, None] + bias[:, None]


@pytest.mark.parametrize("bits", BITS)
def test_layout_and_error_bound(bits, rng):
    W = awkward_table(rng)
    q = quantize(W, bits=bits)
    assert q.bits == bits and q.num_embeddings == V and q.embedding_dim == D
    row_bytes = D + 8 if bits == 8 else D // 2 + 4
    assert q.packed.dtype == np.uint8 and q.packed.shape == (V, row_bytes)
    assert q.nbytes == V * row_bytes and q.shape == (V, D)
    codes, scale, bias = unpack_quantized(q)
    assert codes.min() >= 0 and codes.max() <= (255 if bits == 8 else 15)
    low, high = W.min(1).astype(np.float64), W.max(1).astype(np.float64)
    if bits == 8:
        assert np.array_equal(bias, low)
        assert np.allclose(scale, (high - low) / 255, rtol=1e-6, atol=0)
        slack = np.full(V, 1e-8)  # FBGEMM's guard: the inverse is 255 / (range + 1e-8)
    else:
        assert np.array_equal(bias, low.astype(np.float16).astype(np.float64))
        slack = np.abs(low - bias)  # the float16 rounding of the bias
    # half a quantum per element (plus 4-bit's bias rounding, and float32 arithmetic)
    error = np.abs(reference_dequantize(q) - W.astype(np.float64))
    bound = scale / 2 + slack + 1e-6 * np.abs(W).max(1)
    assert np.all(error <= bound[:, None])
    assert np.all(error[1] == 0)  # a constant row is exact


def test_fma32_rounds_once():
    # x * x = 1 + 2^-11 + 2^-24, halfway between two float32 neighbours. A 2^-60 beyond it
    # decides the rounding (up), but it is lost in a float64 sum, which then ties to even (down).
    x = np.float32(1 + 2.0**-12)
    tiny = np.float32(2.0**-60)
    low = np.float32(1 + 2.0**-11)
    high = np.nextafter(low, np.float32(2))
    assert np.float32(np.float64(x) * np.float64(x) + np.float64(tiny)) == low
    assert fma32(x, x, tiny) == high
    assert fma32(x, x, -tiny) == low
    assert fma32(x, x, np.float32(0)) == low  # an exact tie goes to even
    assert fma32(np.float32(3), np.float32(0.5), np.float32(-1)) == np.float32(0.5)


@pytest.mark.parametrize("bits", BITS)
def test_dequantize_gather_and_out(bits, rng):
    q = quantize(awkward_table(rng), bits)
    table = q.dequantize()
    assert table.dtype == np.float32 and table.shape == (V, D)
    # element = code * scale + bias, rounded once to float32
    codes, scale, bias = unpack_quantized(q)
    expected = fma32(codes, scale[:, None], bias[:, None])
    assert_bitwise_equal(table, expected)
    ids = make_ids("zipf", 600, V, rng).reshape(20, 30)
    assert_bitwise_equal(fastembed.gather(q, ids), table[ids])
    assert_bitwise_equal(q.dequantize(ids), table[ids])
    out = np.empty((20, 30, D), np.float32)
    assert fastembed.gather(q, ids, out=out) is out
    assert_bitwise_equal(out, table[ids])


def test_from_fbgemm_wraps_without_copying(rng):
    q = quantize(awkward_table(rng), 8)
    packed = q.packed.copy()
    wrapped = QuantizedTable.from_fbgemm(packed, 8)
    assert wrapped.packed is packed and wrapped.embedding_dim == D
    assert QuantizedTable.from_fbgemm(packed, 8, embedding_dim=D).embedding_dim == D
    packed4 = quantize(awkward_table(rng), 4).packed
    assert QuantizedTable.from_fbgemm(packed4, 4).embedding_dim == D


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("suffix", [".npy", ".npz"])
@pytest.mark.parametrize("mmap_mode", [None, "r"])
def test_save_and_load(bits, suffix, mmap_mode, tmp_path, rng):
    q = quantize(awkward_table(rng), bits)
    path = tmp_path / f"q{suffix}"
    q.save(path)
    loaded = QuantizedTable.load(path, mmap_mode=mmap_mode)
    assert loaded.bits == bits and loaded.embedding_dim == D
    assert_bitwise_equal(np.asarray(loaded.packed), q.packed)
    if mmap_mode:
        assert isinstance(loaded.packed, np.memmap)
    ids = rng.integers(0, V, 40)
    assert_bitwise_equal(fastembed.gather(loaded, ids), fastembed.gather(q, ids))
    layer_path = tmp_path / f"layer{suffix}"
    fastembed.Embedding.from_pretrained(q, padding_idx=1).save(layer_path)
    layer = fastembed.Embedding.load(layer_path, mmap_mode=mmap_mode)
    assert isinstance(layer.weight, QuantizedTable) and layer.padding_idx == 1
    assert_bitwise_equal(layer(ids), fastembed.gather(q, ids))


def test_quantizing_uses_all_threads_and_does_not_depend_on_them(rng, restore_num_threads):
    W = rng.standard_normal((20_000, 32)).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        fastembed.set_num_threads(threads)
        results.append((quantize(W, 8).packed, quantize(W, 4).packed))
    for packed8, packed4 in results[1:]:
        assert_bitwise_equal(packed8, results[0][0])
        assert_bitwise_equal(packed4, results[0][1])


def test_other_dtypes_are_quantized_from_float32(rng):
    W = awkward_table(rng)
    assert_bitwise_equal(quantize(W.astype(np.float64), 8).packed, quantize(W, 8).packed)
    half = W.astype(np.float16)
    assert_bitwise_equal(quantize(half, 4).packed, quantize(half.astype(np.float32), 4).packed)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("bits", BITS)
def test_non_finite_tables_are_refused(bad, bits, rng):
    W = awkward_table(rng)
    W[123, 7] = bad
    W[400, 0] = bad
    with raises_leaving_untouched(ValueError, r"weight\[123, 7\]", W):
        quantize(W, bits)


def test_bad_arguments(rng):
    W = awkward_table(rng)
    for bits in (0, 2, 16, 32, -8):
        with pytest.raises(ValueError, match="bits must be 8 or 4"):
            quantize(W, bits)
    for bits in ("8", 8.0, None, True):
        with pytest.raises(TypeError, match="bits"):
            quantize(W, bits)
    with pytest.raises(ValueError, match="even embedding_dim"):
        quantize(W[:, :15], 4)
    with pytest.raises(ValueError, match="2-d"):
        quantize(W[0], 8)
    with pytest.raises(TypeError, match="floating"):
        quantize(W.astype(np.int32), 8)
    with pytest.raises(TypeError, match="NumPy array"):
        quantize(W.tolist(), 8)
    packed = quantize(W, 8).packed
    with pytest.raises(ValueError, match="too small"):
        QuantizedTable.from_fbgemm(packed[:, :7].copy(), 8)
    with pytest.raises(ValueError, match="too small"):
        QuantizedTable.from_fbgemm(packed[:, :3].copy(), 4)
    with pytest.raises(ValueError, match="embedding_dim=16"):
        QuantizedTable.from_fbgemm(packed, 8, embedding_dim=32)
    with pytest.raises(TypeError, match="uint8"):
        QuantizedTable.from_fbgemm(packed.view(np.int8), 8)
    with pytest.raises(ValueError, match="C-contiguous"):
        QuantizedTable.from_fbgemm(packed[:, ::2], 8)
    with pytest.raises(ValueError, match="bits must be 8 or 4"):
        QuantizedTable.from_fbgemm(packed, 6)


def test_training_a_quantized_table_is_refused(rng):
    q = quantize(awkward_table(rng), 8)
    with pytest.raises(ValueError, match="cannot be trained"):
        fastembed.Embedding.from_pretrained(q, freeze=False)
    with pytest.raises(ValueError, match="cannot be trained"):
        fastembed.EmbeddingBag.from_pretrained(q, freeze=False)
    with pytest.raises(ValueError, match="max_norm"):
        fastembed.Embedding.from_pretrained(q, max_norm=1.0)
    with pytest.raises(ValueError, match="max_norm"):
        fastembed.gather(q, [1], max_norm=1.0)
    emb = fastembed.Embedding.from_pretrained(q)
    emb([1, 2])
    before = q.packed.copy()
    emb.trainable = True
    with pytest.raises(TypeError, match="QuantizedTable"):
        emb.backward(np.ones((2, D), np.float32))
    with pytest.raises(TypeError, match="QuantizedTable"):
        emb.backward(np.ones((2, D), np.float32), optimizer=optim.SGD(0.1))
    assert_bitwise_equal(q.packed, before)


def test_out_errors_write_nothing(rng):
    q = quantize(awkward_table(rng), 4)
    out = np.full((3, D), 7.0, np.float32)
    with raises_leaving_untouched(IndexError, f"id {V}", out):
        fastembed.gather(q, [0, 1, V], out=out)
    with raises_leaving_untouched(TypeError, "out", out):
        fastembed.gather(q, [0, 1, 2], out=out.astype(np.float64))
    with raises_leaving_untouched(ValueError, "shape", out):
        fastembed.gather(q, [0, 1], out=out)


# --- PyTorch's quantized ops (skipped where torch is not installed) -----------------------------


def torch_prepack(W: np.ndarray, bits: int) -> np.ndarray:
    torch = pytest.importorskip("torch")
    prepack = {
        8: torch.ops.quantized.embedding_bag_byte_prepack,
        4: torch.ops.quantized.embedding_bag_4bit_prepack,
    }[bits]
    return prepack(torch.from_numpy(W)).numpy()


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dim", [D, 2, 48, 64, 130])  # packed in groups of 32 and 16 and one by one
def test_packed_bytes_equal_torch_prepack(bits, dim, rng):
    W = np.concatenate(
        [awkward_table(rng, dim=dim), rng.uniform(-3, 3, (2_003, dim)).astype(np.float32)]
    )
    assert_bitwise_equal(quantize(W, bits).packed, torch_prepack(W, bits))


@pytest.mark.parametrize("bits", BITS)
def test_dequantized_values_equal_torch_unpack(bits, rng):
    """Both round code * scale + bias once (FBGEMM's AVX2 unpack is a fused multiply-add), so
    every value is the same bits; a row alone in its bag is that row, in both libraries."""
    torch = pytest.importorskip("torch")
    if fastembed.host_info()["isa"] == "baseline":
        pytest.skip("FBGEMM's AVX2 kernels do not run on this CPU")
    ops = torch.ops.quantized
    unpack = {8: ops.embedding_bag_byte_unpack, 4: ops.embedding_bag_4bit_unpack}[bits]
    bag = {8: ops.embedding_bag_byte_rowwise_offsets, 4: ops.embedding_bag_4bit_rowwise_offsets}
    scales = rng.uniform(1e-3, 1e3, (2_000, 1))
    W = np.concatenate([awkward_table(rng), (rng.standard_normal((2_000, D)) * scales)])
    q = quantize(W.astype(np.float32), bits)
    packed = torch.from_numpy(np.asarray(q.packed))
    assert_bitwise_equal(q.dequantize(), unpack(packed).numpy())
    ids = make_ids("uniform", 3_000, len(W), rng)
    rows = bag[bits](packed, torch.from_numpy(ids), torch.arange(len(ids)), mode=0).numpy()
    assert_bitwise_equal(fastembed.gather(q, ids), rows)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_bags_against_numpy(bits, mode, rng):
    q = quantize(awkward_table(rng), bits)
    table = q.dequantize()
    ids = make_ids("zipf", 800, V, rng)
    offsets = np.sort(rng.integers(0, 800, 60))
    offsets[0] = 0
    got = fastembed.embedding_bag(q, ids, offsets, mode=mode, padding_idx=9)
    if mode == "max":  # the dequantized rows compared, as a float32 table's, bit for bit
        expected = fastembed.embedding_bag(table, ids, offsets, mode=mode, padding_idx=9)
    else:  # codes times scales fused into the sums, the biases added once
        expected = quantized_sum_bags(q, ids, offsets, mode, padding_idx=9)
    assert_bitwise_equal(got, expected)
    reference = reference_dequantize(q)
    # float32 rounds code * scale and the sum with the bias: errors relative to both terms
    codes, scale, bias = unpack_quantized(q)
    terms = np.abs(codes * scale[:, None]) + np.abs(bias)[:, None]
    bounds = np.append(offsets, len(ids))
    for b in range(len(offsets)):
        bag = ids[bounds[b] : bounds[b + 1]]
        rows = reference[bag[bag != 9]]
        if len(rows) == 0:
            assert np.all(got[b] == 0)
            continue
        expected = {"sum": rows.sum(0), "mean": rows.mean(0), "max": rows.max(0)}[mode]
        magnitude = terms[bag[bag != 9]].sum(0)
        assert np.all(np.abs(got[b] - expected) <= 1e-6 * magnitude + 1e-30)


@pytest.mark.parametrize("bits", BITS)
def test_weighted_bags_and_layers(bits, rng):
    q = quantize(awkward_table(rng), bits)
    table = q.dequantize()
    ids = rng.integers(0, V, (12, 5))
    weights = rng.standard_normal((12, 5)).astype(np.float32)
    got = fastembed.embedding_bag(q, ids, mode="sum", per_sample_weights=weights)
    offsets = np.arange(0, ids.size, ids.shape[1])
    assert_bitwise_equal(got, quantized_sum_bags(q, ids, offsets, per_sample_weights=weights))
    # within float32 rounding (relative to |code * scale| + |bias|) of NumPy's float64 sums
    codes, scale, bias = unpack_quantized(q)
    terms = np.abs(codes * scale[:, None]) + np.abs(bias)[:, None]
    exact = np.einsum("bk,bkd->bd", weights, reference_dequantize(q)[ids])
    magnitude = np.einsum("bk,bkd->bd", np.abs(weights), terms[ids])
    assert np.all(np.abs(got - exact) <= 1e-6 * magnitude + 1e-30)
    emb = fastembed.Embedding.from_pretrained(q)
    assert emb.weight is q and not emb.trainable
    assert emb.num_embeddings == V and emb.embedding_dim == D
    assert_bitwise_equal(emb(ids), table[ids])
    assert emb.backward(np.ones((12, 5, D), np.float32)) is None
    bag = fastembed.EmbeddingBag.from_pretrained(q, mode="mean")
    assert_bitwise_equal(bag(ids), quantized_sum_bags(q, ids, offsets, mode="mean"))


@pytest.mark.parametrize("bits", BITS)
def test_torch_packed_tables_are_read_in_place(bits, rng):
    torch = pytest.importorskip("torch")
    W = awkward_table(rng)
    packed = torch_prepack(W, bits)
    q = QuantizedTable.from_fbgemm(packed, bits)
    assert q.packed is packed
    ids = rng.integers(0, V, 300)
    offsets = np.arange(0, 300, 10)
    ops = torch.ops.quantized
    op = (
        ops.embedding_bag_byte_rowwise_offsets
        if bits == 8
        else ops.embedding_bag_4bit_rowwise_offsets
    )
    weights = rng.standard_normal(300).astype(np.float32)
    expected = op(
        torch.from_numpy(packed),
        torch.from_numpy(ids),
        torch.from_numpy(offsets),
        mode=0,
        per_sample_weights=torch.from_numpy(weights),
        include_last_offset=False,
    ).numpy()
    got = fastembed.embedding_bag(q, ids, offsets, mode="sum", per_sample_weights=weights)
    magnitude = np.abs(q.dequantize()[ids] * weights[:, None]).reshape(30, 10, D).sum(1)
    assert np.all(np.abs(got - expected) <= 1e-6 * magnitude + 1e-30)
    # every row looked up alone: our error is torch's (the same codes), up to float32 rounding
    ours = np.abs(q.dequantize().astype(np.float64) - W).max()
    rows = op(
        torch.from_numpy(packed),
        torch.arange(V),
        torch.arange(V),
        mode=0,
        include_last_offset=False,
    ).numpy()
    assert ours <= np.abs(rows.astype(np.float64) - W).max() * (1 + 1e-6)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("mode", ["sum", "mean", "weighted"])
def test_long_bags_carry_their_biases_across_chunks(bits, mode, rng, restore_num_threads):
    """Bags longer than a chunk of the pooled loop (half the L1d of rows), over rows of several
    column blocks: the biases summed apart reach the bag's end whole, and the result is the
    same at 1 and 2 threads, bit for bit."""
    dim = 200
    q = quantize(awkward_table(rng, dim=dim), bits)
    chunk_rows = fastembed.host_info()["pooling_chunk_bytes"] // q.packed.shape[1]
    n = 7 * chunk_rows + 5
    ids = make_ids("zipf", n, V, rng)
    offsets = np.array([0, 1, chunk_rows + 1, 3 * chunk_rows])  # 1, a chunk, 2 chunks less 1, rest
    weights = rng.standard_normal(n).astype(np.float32) if mode == "weighted" else None
    pooled = "sum" if mode == "weighted" else mode
    expected = quantized_sum_bags(q, ids, offsets, pooled, weights, padding_idx=3)
    for threads in (1, 2):
        fastembed.set_num_threads(threads)
        got = fastembed.embedding_bag(
            q, ids, offsets, mode=pooled, per_sample_weights=weights, padding_idx=3
        )
        assert_bitwise_equal(got, expected)
