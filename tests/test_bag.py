"""EmbeddingBag: forward, backward (table and per-sample weights), checks, layer state.

References are plain NumPy loops over the bags in float64; PyTorch where importable.
"""

from __future__ import annotations

import fastembed
import numpy as np
import pytest
from conftest import (
    KERNEL_ID_DTYPES,
    WEIGHT_DTYPES,
    assert_bitwise_equal,
    make_ids,
    make_table,
    raises_leaving_untouched,
    sentinel_array,
)

MODES = ["sum", "mean", "max"]


def make_offsets(n: int, num_bags: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted random bag starts from 0, with some empty bags (repeated starts)."""
    offsets = np.sort(rng.integers(0, n + 1, num_bags))
    offsets[0] = 0
    offsets[num_bags // 3] = offsets[num_bags // 3 - 1]  # an empty bag
    return offsets


def bag_ranges(offsets, n, include_last_offset=False):
    offsets = list(np.asarray(offsets))
    ends = offsets[1:] if include_last_offset else offsets[1:] + [n]
    starts = offsets[:-1] if include_last_offset else offsets
    return list(zip(starts, ends))


def reference_bag(weight, ids, offsets, mode, per_sample_weights=None, padding_idx=None, ilo=False):
    """Forward in float64: a loop over bags; also the arg-max positions for max."""
    ranges = bag_ranges(offsets, len(ids), ilo)
    out = np.zeros((len(ranges), weight.shape[1]))
    argmax = np.full(out.shape, -1, dtype=np.int64)
    for b, (start, end) in enumerate(ranges):
        positions = [i for i in range(start, end) if ids[i] != padding_idx]
        if not positions:
            continue
        rows = weight[ids[positions]].astype(np.float64)
        if per_sample_weights is not None:
            rows = rows * per_sample_weights[positions, None]
        if mode == "sum":
            out[b] = rows.sum(axis=0)
        elif mode == "mean":
            out[b] = rows.mean(axis=0)
        else:
            out[b] = rows.max(axis=0)
            argmax[b] = np.asarray(positions)[rows.argmax(axis=0)]
    return out, argmax


def reference_bag_backward(grad_output, ids, offsets, num_embeddings, mode, psw=None, pad=None):
    """Dense gradient in float64 by np.add.at, one entry per (position, element)."""
    n = len(ids)
    result = np.zeros((num_embeddings, grad_output.shape[1]))
    _, argmax = reference_bag(np.zeros((num_embeddings, 1)), ids, offsets, "sum", None, pad)
    for b, (start, end) in enumerate(bag_ranges(offsets, n)):
        positions = [i for i in range(start, end) if ids[i] != pad]
        for i in positions:
            g = grad_output[b].astype(np.float64)
            if mode == "mean":
                g = g / len(positions)
            elif psw is not None:
                g = g * psw[i]
            if mode != "max":
                result[ids[i]] += g
    return result


def reference_max_backward(grad_output, ids, argmax, num_embeddings):
    result = np.zeros((num_embeddings, grad_output.shape[1]))
    bags, dims = np.nonzero(argmax >= 0)
    np.add.at(result, (ids[argmax[bags, dims]], dims), grad_output[bags, dims])
    return result


@pytest.fixture
def case(rng):
    num_embeddings, dim, n, num_bags = 60, 9, 400, 37
    ids = make_ids("uniform", n, num_embeddings, rng)
    return {
        "weight": make_table(num_embeddings, dim, np.float64, rng),
        "ids": ids,
        "offsets": make_offsets(n, num_bags, rng),
        "psw": rng.standard_normal(n),
        "grad": rng.standard_normal((num_bags, dim)),
    }


def cast(case, dtype, id_dtype=np.int64):
    return (
        case["weight"].astype(dtype),
        case["ids"].astype(id_dtype),
        case["psw"].astype(dtype),
        case["grad"].astype(dtype),
    )


# --- forward -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("id_dtype", KERNEL_ID_DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding_idx", [None, 7])
def test_forward_matches_numpy(case, dtype, id_dtype, mode, padding_idx):
    weight, ids, _, _ = cast(case, dtype, id_dtype)
    ids[::5] = 7  # padding entries, including whole bags of them
    got = fastembed.embedding_bag(weight, ids, case["offsets"], mode=mode, padding_idx=padding_idx)
    expected, expected_argmax = reference_bag(weight, ids, case["offsets"], mode, None, padding_idx)
    assert got.dtype == dtype and got.shape == expected.shape
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-5)
    if mode == "max":
        again, argmax = fastembed.embedding_bag(
            weight, ids, case["offsets"], mode=mode, padding_idx=padding_idx, return_argmax=True
        )
        assert_bitwise_equal(again, got)
        np.testing.assert_array_equal(argmax, expected_argmax)
        picked = weight[ids[np.maximum(argmax, 0)], np.arange(weight.shape[1])]
        assert_bitwise_equal(got, np.where(argmax >= 0, picked, 0).astype(dtype))


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_per_sample_weights_forward(case, dtype):
    weight, ids, psw, _ = cast(case, dtype)
    got = fastembed.embedding_bag(
        weight, ids, case["offsets"], mode="sum", per_sample_weights=psw, padding_idx=3
    )
    expected, _ = reference_bag(weight, ids, case["offsets"], "sum", psw, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_fixed_length_bags_equal_offsets(case, mode):
    weight, ids = case["weight"], case["ids"][:400].reshape(40, 10)
    got = fastembed.embedding_bag(weight, ids, mode=mode)
    flat = fastembed.embedding_bag(weight, ids.reshape(-1), np.arange(0, 400, 10), mode=mode)
    assert_bitwise_equal(got, flat)
    assert_bitwise_equal(fastembed.embedding_bag(weight, ids[:, :1], mode=mode), weight[ids[:, 0]])


def test_mode_defaults_to_mean_as_in_pytorch(case):
    weight, ids, offsets = case["weight"], case["ids"], case["offsets"]
    expected, _ = reference_bag(weight, ids, offsets, "mean")
    got = fastembed.embedding_bag(weight, ids, offsets)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    grad = np.ones_like(got)
    assert_bitwise_equal(
        fastembed.embedding_bag_backward(grad, ids, offsets, num_embeddings=len(weight)),
        fastembed.embedding_bag_backward(
            grad, ids, offsets, num_embeddings=len(weight), mode="mean"
        ),
    )


def test_include_last_offset(case):
    weight, ids = case["weight"], case["ids"]
    offsets = np.array([0, 3, 3, 10, 250])  # 4 bags, ids 250.. belong to none
    got = fastembed.embedding_bag(weight, ids, offsets, mode="sum", include_last_offset=True)
    expected, _ = reference_bag(weight, ids, offsets, "sum", ilo=True)
    assert got.shape == (4, weight.shape[1])
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert_bitwise_equal(
        got[:3], fastembed.embedding_bag(weight, ids[:10], offsets[:3], mode="sum")
    )


def test_empty_inputs(case):
    weight = case["weight"]
    assert fastembed.embedding_bag(weight, [], [], mode="mean").shape == (0, weight.shape[1])
    empty_bags = fastembed.embedding_bag(weight, [], [0, 0, 0], mode="max")
    assert_bitwise_equal(empty_bags, np.zeros((3, weight.shape[1])))
    assert fastembed.embedding_bag(weight, np.zeros((0, 4), np.int64), mode="sum").shape == (0, 9)
    assert_bitwise_equal(
        fastembed.embedding_bag(weight, np.zeros((2, 0), np.int64), mode="mean"),
        np.zeros((2, weight.shape[1])),
    )


def test_out_is_written_and_returned(case):
    weight, ids, offsets = case["weight"], case["ids"], case["offsets"]
    out = sentinel_array((len(offsets), weight.shape[1]), weight.dtype)
    result = fastembed.embedding_bag(weight, ids, offsets, mode="mean", out=out)
    assert result is out
    assert_bitwise_equal(out, fastembed.embedding_bag(weight, ids, offsets, mode="mean"))


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offsets", "include_last_offset", "match"),
    [
        ([1, 3, 5], False, r"offsets\[0\] must be 0, got 1"),
        ([0, 5, 3], False, r"non-decreasing, but offsets\[2\]=3 < offsets\[1\]=5"),
        ([0, 5, 401], False, r"offsets\[-1\]=401 is larger than the number of ids, 400"),
        ([0, 5, 401], True, r"offsets\[-1\]=401"),
        ([], True, "at least one entry"),
        ([[0, 5]], False, "offsets must be 1-d"),
    ],
    ids=str,
)
# A list goes through the NumPy checks; an int32 / int64 array through the compiled ones.
@pytest.mark.parametrize("container", [list, np.int32, np.int64], ids=["list", "int32", "int64"])
def test_bad_offsets_raise_value_error_and_write_nothing(
    case, offsets, include_last_offset, match, container
):
    weight, ids = case["weight"], case["ids"]
    if container is not list:
        offsets = np.array(offsets, dtype=container)
    num_bags = max(len(offsets) - include_last_offset, 0)
    out = sentinel_array((num_bags, weight.shape[1]), weight.dtype)
    with raises_leaving_untouched(ValueError, match, out, weight):
        fastembed.embedding_bag(
            weight, ids, offsets, mode="sum", include_last_offset=include_last_offset, out=out
        )
    grad = np.ones((num_bags, weight.shape[1]))
    with pytest.raises(ValueError, match=match):
        fastembed.embedding_bag_backward(
            grad,
            ids,
            offsets,
            num_embeddings=60,
            mode="sum",
            include_last_offset=include_last_offset,
        )


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_offsets_checked_alike_as_list_and_array(dtype):
    """The compiled offsets check (int32 / int64 arrays) and the NumPy one (anything else) give
    the same bags, or the same message, for random offsets good and bad."""
    rng = np.random.default_rng(11)
    weight = rng.standard_normal((7, 3)).astype(np.float32)
    for _ in range(300):
        ids = rng.integers(0, 7, int(rng.integers(0, 6)))
        # Steps of -1..3 from 0 (from elsewhere one time in five): every rule gets broken.
        offsets = np.cumsum(rng.integers(-1, 4, int(rng.integers(0, 5))))
        if offsets.size and rng.integers(5):
            offsets -= offsets[0]
        include_last_offset = bool(rng.integers(2))
        outcomes = []
        for given in (offsets.tolist(), offsets.astype(dtype)):
            try:
                outcomes.append(
                    fastembed.embedding_bag(
                        weight, ids, given, mode="sum", include_last_offset=include_last_offset
                    )
                )
            except ValueError as error:
                outcomes.append(str(error))
        if isinstance(outcomes[0], str):
            assert outcomes[0] == outcomes[1]
        else:
            assert_bitwise_equal(outcomes[1], outcomes[0])


def test_float_offsets_are_a_type_error(case):
    with pytest.raises(TypeError, match="offsets must be integers"):
        fastembed.embedding_bag(case["weight"], case["ids"], [0.0, 2.0], mode="sum")


@pytest.mark.parametrize(
    ("ids", "offsets", "kwargs", "match"),
    [
        (np.zeros(6, np.int64), None, {}, "ids must be 2-d"),
        (np.zeros((2, 3), np.int64), [0, 3], {}, "ids must be 1-d"),
        (np.zeros(6, np.int64), [0, 3], {"per_sample_weights": np.ones(5)}, "shape of ids"),
        (
            np.zeros(6, np.int64),
            [0],
            {"per_sample_weights": np.ones(6), "mode": "mean"},
            "mode='sum'",
        ),
        (np.zeros(6, np.int64), [0], {"mode": "median"}, "mode must be one of"),
        (np.zeros(6, np.int64), [0], {"padding_idx": 60}, "padding_idx=60 is out of range"),
    ],
    ids=str,
)
def test_bad_arguments_raise_value_error(case, ids, offsets, kwargs, match):
    kwargs = {"mode": "sum", **kwargs}
    with pytest.raises(ValueError, match=match):
        fastembed.embedding_bag(case["weight"], ids, offsets, **kwargs)


def test_per_sample_weights_of_another_dtype_are_a_type_error(case):
    weight = case["weight"].astype(np.float32)
    with pytest.raises(TypeError, match="per_sample_weights"):
        fastembed.embedding_bag(
            weight, case["ids"], case["offsets"], mode="sum", per_sample_weights=case["psw"]
        )


@pytest.mark.parametrize("bad_id", [60, -1])
def test_id_out_of_range_is_index_error_and_writes_nothing(case, bad_id):
    weight, ids, offsets = case["weight"], case["ids"].copy(), case["offsets"]
    ids[123] = bad_id
    out = sentinel_array((len(offsets), weight.shape[1]), weight.dtype)
    with raises_leaving_untouched(IndexError, rf"id {bad_id} at ids\[123\]", out):
        fastembed.embedding_bag(weight, ids, offsets, mode="mean", out=out)


@pytest.mark.parametrize("table", ["float32", "float16", "8-bit", "4-bit"])
@pytest.mark.parametrize("mode", ["sum", "max"])
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("positions", [[0], [399], [123, 7, 390], [251, 250]])
def test_ids_checked_while_pooling_report_the_first_bad_one(table, mode, id_dtype, positions, rng):
    """Without out=, ids are range-checked as they are pooled; the error is the same."""
    V, D, n = 60, 10, 400
    weight = make_table(V, D, np.float32, rng)
    weight = {
        "float32": weight,
        "float16": weight.astype(np.float16),
        "8-bit": fastembed.quantize(weight, 8),
        "4-bit": fastembed.quantize(weight, 4),
    }[table]
    ids = make_ids("uniform", n, V, rng).astype(id_dtype)
    offsets = make_offsets(n, 37, rng)
    bad = [-1, 60, 2**31 - 1]  # -1 first: no padding_idx is also spelled -1 inside
    for k, position in enumerate(positions):
        ids[position] = bad[k % len(bad)]
    first = min(positions)
    with pytest.raises(IndexError, match=rf"id {ids[first]} at ids\[{first}\]"):
        fastembed.embedding_bag(weight, ids, offsets, mode=mode)
    # ids in no bag are checked too
    ids[:] = 0
    ids[-1] = V
    with pytest.raises(IndexError, match=rf"id {V} at ids\[{n - 1}\]"):
        fastembed.embedding_bag(
            weight, ids, np.append(offsets, n - 1), mode=mode, include_last_offset=True
        )


# --- backward ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("id_dtype", KERNEL_ID_DTYPES)
@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("padding_idx", [None, 7])
def test_backward_matches_numpy(case, dtype, id_dtype, mode, padding_idx):
    _, ids, _, grad = cast(case, dtype, id_dtype)
    ids[::5] = 7
    got = fastembed.embedding_bag_backward(
        grad, ids, case["offsets"], num_embeddings=60, mode=mode, padding_idx=padding_idx
    )
    expected = reference_bag_backward(grad, ids, case["offsets"], 60, mode, None, padding_idx)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    if padding_idx is not None:
        assert not got[padding_idx].any()


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_backward_with_per_sample_weights_matches_numpy(case, dtype):
    weight, ids, psw, grad = cast(case, dtype)
    got = fastembed.embedding_bag_backward(
        grad, ids, case["offsets"], num_embeddings=60, mode="sum", per_sample_weights=psw
    )
    expected = reference_bag_backward(grad, ids, case["offsets"], 60, "sum", psw)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    grad_psw = fastembed.embedding_bag_per_sample_weights_backward(
        grad, weight, ids, case["offsets"], padding_idx=ids[0]
    )
    bag_of = np.repeat(np.arange(len(case["offsets"])), np.diff(np.append(case["offsets"], 400)))
    expected_psw = np.einsum("nd,nd->n", grad[bag_of].astype(np.float64), weight[ids])
    expected_psw[ids == ids[0]] = 0
    np.testing.assert_allclose(grad_psw, expected_psw, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("padding_idx", [None, 7])
def test_max_backward_goes_to_the_arg_max(case, dtype, padding_idx):
    weight, ids, _, grad = cast(case, dtype)
    ids[::5] = 7
    _, argmax = fastembed.embedding_bag(
        weight, ids, case["offsets"], mode="max", padding_idx=padding_idx, return_argmax=True
    )
    got = fastembed.embedding_bag_backward(
        grad,
        ids,
        case["offsets"],
        num_embeddings=60,
        mode="max",
        padding_idx=padding_idx,
        argmax=argmax,
    )
    np.testing.assert_allclose(got, reference_max_backward(grad, ids, argmax, 60), rtol=1e-5)


def test_max_backward_needs_argmax(case):
    with pytest.raises(ValueError, match="argmax"):
        fastembed.embedding_bag_backward(
            case["grad"], case["ids"], case["offsets"], num_embeddings=60, mode="max"
        )


def test_backward_checks_grad_shape(case):
    with pytest.raises(ValueError, match="grad_output must have shape"):
        fastembed.embedding_bag_backward(
            case["grad"][1:], case["ids"], case["offsets"], num_embeddings=60, mode="sum"
        )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("distribution", ["uniform", "heavy"])
def test_bitwise_identical_across_thread_counts(rng, restore_num_threads, mode, distribution):
    num_embeddings, dim, n, num_bags = 5_000, 16, 60_000, 3_000
    ids = make_ids(distribution, n, num_embeddings, rng)
    offsets = make_offsets(n, num_bags, rng)
    weight = make_table(num_embeddings, dim, np.float32, rng)
    grad = rng.standard_normal((num_bags, dim)).astype(np.float32)
    results = []
    for threads in (1, 2, 3, 7):
        fastembed.set_num_threads(threads)
        out, argmax = (
            fastembed.embedding_bag(weight, ids, offsets, mode=mode, return_argmax=True)
            if mode == "max"
            else (fastembed.embedding_bag(weight, ids, offsets, mode=mode), None)
        )
        back = fastembed.embedding_bag_backward(
            grad, ids, offsets, num_embeddings=num_embeddings, mode=mode, argmax=argmax
        )
        results.append((out, back))
    for out, back in results[1:]:
        assert_bitwise_equal(out, results[0][0])
        assert_bitwise_equal(back, results[0][1])


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("threads", [1, 2])
def test_sums_keep_the_sign_of_zeros(restore_num_threads, dtype, mode, threads):
    """A bag's sum is its first row added to by the others in position order: a bag of negative
    zeros sums to -0.0 (a sum started from +0, as NumPy's add.reduce along an axis starts it,
    would give +0), +0 plus -0 to +0, in every column of a row wider than one vector block; an
    empty bag gives +0."""
    dim = 77  # a whole block of the widest vectors (64 floats with AVX2) and a tail
    signs = np.where(np.arange(dim) % 3 == 0, 1.0, -1.0)
    rows = [-np.zeros(dim), np.zeros(dim), signs * 0.0, signs * np.arange(dim)]
    weight = np.stack(rows).astype(dtype)
    bags = [[0], [0, 0], [0, 1], [1, 0], [2], [2, 0, 2], [3, 0], [0, 3, 2], [], [1]]
    ids = np.array([i for bag in bags for i in bag], dtype=np.int64)
    offsets = np.cumsum([0] + [len(bag) for bag in bags[:-1]])
    fastembed.set_num_threads(threads)
    got = fastembed.embedding_bag(weight, ids, offsets, mode=mode)
    for b, bag in enumerate(bags):
        expected = np.zeros(dim, dtype)
        if bag:
            expected = weight[bag[0]].copy()
            for row in bag[1:]:
                expected = expected + weight[row]
        if mode == "mean" and len(bag) > 1:
            expected = expected / dtype(len(bag))
        assert_bitwise_equal(got[b], expected)


# --- PyTorch parity ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "weighted"), [("sum", False), ("sum", True), ("mean", False), ("max", False)]
)
@pytest.mark.parametrize("padding_idx", [None, 7])
@pytest.mark.parametrize("include_last_offset", [False, True])
def test_matches_torch(case, mode, padding_idx, weighted, include_last_offset):
    torch = pytest.importorskip("torch")
    weight, ids, psw, _ = cast(case, np.float32)
    ids[::5] = 7
    offsets = case["offsets"]
    if include_last_offset:
        # PyTorch documents offsets[-1] == len(ids) (it pools inconsistently past a smaller one)
        offsets = np.append(offsets, len(ids))
    psw = psw if weighted else None
    weight_t = torch.from_numpy(weight.copy()).requires_grad_(True)
    psw_t = torch.from_numpy(psw).requires_grad_(True) if weighted else None
    out_t = torch.nn.functional.embedding_bag(
        torch.from_numpy(ids),
        weight_t,
        torch.from_numpy(offsets),
        mode=mode,
        per_sample_weights=psw_t,
        include_last_offset=include_last_offset,
        padding_idx=padding_idx,
    )
    grad = np.random.default_rng(5).standard_normal(tuple(out_t.shape)).astype(np.float32)
    out_t.backward(torch.from_numpy(grad))

    bag = fastembed.EmbeddingBag(
        weight=weight.copy(),
        mode=mode,
        padding_idx=padding_idx,
        include_last_offset=include_last_offset,
    )
    out = bag(ids, offsets, per_sample_weights=psw)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bag.backward(grad), weight_t.grad.numpy(), rtol=1e-5, atol=1e-5)
    if weighted:
        np.testing.assert_allclose(
            bag.grad_per_sample_weights, psw_t.grad.numpy(), rtol=1e-5, atol=1e-5
        )


# --- the layer -----------------------------------------------------------------------------


def test_layer_new_table_and_padding_row():
    bag = fastembed.EmbeddingBag(20, 4, padding_idx=-1, seed=3)
    assert bag.weight.shape == (20, 4) and bag.weight.dtype == np.float32
    assert bag.padding_idx == 19 and not bag.weight[19].any()
    assert bag.weight[:19].min() >= -0.05 and bag.weight.max() <= 0.05
    assert bag.mode == "mean" and "EmbeddingBag(num_embeddings=20" in repr(bag)
    assert_bitwise_equal(bag.weight, fastembed.EmbeddingBag(20, 4, padding_idx=19, seed=3).weight)


def test_layer_given_weight_is_kept_and_not_zeroed():
    weight = np.ones((5, 3), np.float64)
    bag = fastembed.EmbeddingBag(weight=weight, padding_idx=2, mode="sum")
    assert bag.weight is weight and weight[2].all()


def test_layer_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        fastembed.EmbeddingBag(5, 3, mode="avg")
    with pytest.raises(ValueError, match="padding_idx"):
        fastembed.EmbeddingBag(5, 3, padding_idx=5)
    with pytest.raises(RuntimeError, match="forward"):
        fastembed.EmbeddingBag(5, 3).backward(np.zeros((1, 3), np.float32))


def test_layer_keeps_its_own_copy_of_the_ids(case):
    bag = fastembed.EmbeddingBag(weight=case["weight"], mode="sum")
    ids, offsets = case["ids"].copy(), case["offsets"].copy()
    bag(ids, offsets)
    expected = fastembed.embedding_bag_backward(
        case["grad"], case["ids"], case["offsets"], num_embeddings=60, mode="sum"
    )
    ids[:] = 0
    offsets[1:] = 400
    assert_bitwise_equal(bag.backward(case["grad"]), expected)
    assert bag.grad is not None and bag.grad_per_sample_weights is None


def test_layer_2d_ids_and_max(case):
    bag = fastembed.EmbeddingBag(weight=case["weight"], mode="max")
    ids = case["ids"].reshape(40, 10)
    out = bag(ids)
    grad = np.ones_like(out)
    dense = bag.backward(grad)
    # every element of every bag's gradient lands on exactly one row
    assert dense.sum() == pytest.approx(grad.sum())
    assert_bitwise_equal(out, ids_max(case["weight"], ids))


def ids_max(weight, ids):
    return weight[ids].max(axis=1)


# --- row-sparse gradient and accumulation --------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding_idx", [None, 7])
@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_sparse_gradient_is_the_dense_one_bitwise(case, mode, padding_idx, dtype):
    weight, ids, psw, grad = cast(case, dtype)
    ids[::5] = 7
    psw = psw if mode == "sum" else None
    _, argmax = fastembed.embedding_bag(
        weight, ids, case["offsets"], mode="max", padding_idx=padding_idx, return_argmax=True
    )
    argmax = argmax if mode == "max" else None
    kwargs = dict(
        num_embeddings=60, mode=mode, per_sample_weights=psw, padding_idx=padding_idx, argmax=argmax
    )
    sparse = fastembed.embedding_bag_backward(grad, ids, case["offsets"], sparse=True, **kwargs)
    dense = fastembed.embedding_bag_backward(grad, ids, case["offsets"], **kwargs)
    assert isinstance(sparse, fastembed.RowSparseGrad) and sparse.values.dtype == dtype
    if mode == "max":
        expected_rows = np.unique(ids[argmax[argmax >= 0]])
    else:
        expected_rows = np.setdiff1d(np.unique(ids), [] if padding_idx is None else [padding_idx])
    np.testing.assert_array_equal(sparse.indices, expected_rows)
    assert_bitwise_equal(sparse.to_dense(), dense)


def test_sparse_gradient_of_no_entries(case):
    weight = case["weight"]
    grad = np.ones((2, weight.shape[1]))
    empty = fastembed.embedding_bag_backward(
        grad, [7, 7], [0, 1], num_embeddings=60, mode="mean", padding_idx=7, sparse=True
    )
    assert empty.indices.shape == (0,) and empty.values.shape == (0, weight.shape[1])


def test_sparse_gradient_matches_torch(case):
    torch = pytest.importorskip("torch")
    weight, ids, psw, grad = cast(case, np.float32)
    module = torch.nn.EmbeddingBag(60, weight.shape[1], mode="sum", sparse=True, padding_idx=7)
    module.weight.data.copy_(torch.from_numpy(weight))
    out = module(
        torch.from_numpy(ids),
        torch.from_numpy(case["offsets"]),
        per_sample_weights=torch.from_numpy(psw),
    )
    out.backward(torch.from_numpy(grad))
    theirs = module.weight.grad.coalesce()
    bag = fastembed.EmbeddingBag(weight=weight.copy(), mode="sum", sparse=True, padding_idx=7)
    bag(ids, case["offsets"], per_sample_weights=psw)
    ours = bag.backward(grad)
    present = theirs.indices()[0].numpy()
    np.testing.assert_array_equal(ours.indices, present[present != 7])
    np.testing.assert_allclose(ours.to_dense(), theirs.to_dense().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sparse", [False, True])
def test_layer_gradient_accumulates_until_zero_grad(case, sparse):
    bag = fastembed.EmbeddingBag(weight=case["weight"], mode="mean", sparse=sparse)
    grad = case["grad"]
    bag(case["ids"], case["offsets"])
    first = np.asarray(bag.backward(grad)).copy()
    bag(case["ids"][:50], [0, 10])
    bag.backward(grad[:2])
    second = fastembed.embedding_bag_backward(
        grad[:2], case["ids"][:50], [0, 10], num_embeddings=60, mode="mean"
    )
    np.testing.assert_allclose(np.asarray(bag.grad), first + second, rtol=1e-12)
    bag.zero_grad(set_to_none=False)
    assert not np.asarray(bag.grad).any()
    bag.zero_grad()
    assert bag.grad is None


def test_layer_keeps_its_own_copy_of_the_per_sample_weights(case):
    bag = fastembed.EmbeddingBag(weight=case["weight"], mode="sum")
    psw = case["psw"].copy()
    bag(case["ids"], case["offsets"], per_sample_weights=psw)
    psw[:] = 0
    expected = fastembed.embedding_bag_backward(
        case["grad"],
        case["ids"],
        case["offsets"],
        num_embeddings=60,
        mode="sum",
        per_sample_weights=case["psw"],
    )
    assert_bitwise_equal(bag.backward(case["grad"]), expected)


# --- PyTorch's other EmbeddingBag options: max_norm, scale_grad_by_freq, freeze ----------------


def reference_renorm(weight, ids, max_norm, norm_type):
    """PyTorch's rule in NumPy, in place: each distinct looked-up row over max_norm is scaled."""
    for row in np.unique(ids):
        norm = np.linalg.norm(weight[row].astype(np.float64), ord=norm_type)
        if norm > max_norm:
            weight[row] *= max_norm / (norm + 1e-7)
    return weight


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("norm_type", [2.0, 1.0, np.inf])
def test_max_norm_renormalises_looked_up_rows_in_place_then_pools(case, mode, norm_type):
    weight, ids, _, _ = cast(case, np.float64)
    ids = ids % 30  # rows 30.. are never looked up and must stay as they were
    weight *= 3
    expected_table = reference_renorm(weight.copy(), ids, 1.5, norm_type)
    bag = fastembed.EmbeddingBag(weight=weight, mode=mode, max_norm=1.5, norm_type=norm_type)
    out = bag(ids, case["offsets"])
    assert bag.weight is weight
    np.testing.assert_allclose(weight, expected_table, rtol=1e-12, atol=1e-12)
    expected, _ = reference_bag(expected_table, ids, case["offsets"], mode)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_max_norm_of_a_read_only_table_is_value_error_and_writes_nothing(case):
    weight, ids, _, _ = cast(case, np.float32)
    weight *= 10
    weight.flags.writeable = False
    out = sentinel_array((len(case["offsets"]), weight.shape[1]), np.float32)
    with raises_leaving_untouched(ValueError, "read-only", weight, out):
        fastembed.embedding_bag(weight, ids, case["offsets"], mode="sum", max_norm=1.0, out=out)


@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("sparse", [False, True])
def test_scale_grad_by_freq_divides_by_the_id_count(case, mode, sparse):
    weight, ids, _, grad = cast(case, np.float64)
    counts = np.bincount(ids, minlength=len(weight))
    expected = reference_bag_backward(grad, ids, case["offsets"], len(weight), mode)
    expected /= np.maximum(counts, 1)[:, None]
    got = fastembed.embedding_bag_backward(
        grad,
        ids,
        case["offsets"],
        num_embeddings=len(weight),
        mode=mode,
        scale_grad_by_freq=True,
        sparse=sparse,
    )
    got = got.to_dense() if sparse else got
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_scale_grad_by_freq_with_max_is_value_error(case):
    with pytest.raises(ValueError, match="scale_grad_by_freq"):
        fastembed.EmbeddingBag(10, 3, mode="max", scale_grad_by_freq=True)
    weight, ids, _, grad = cast(case, np.float64)
    _, argmax = fastembed.embedding_bag(
        weight, ids, case["offsets"], mode="max", return_argmax=True
    )
    with pytest.raises(ValueError, match="scale_grad_by_freq"):
        fastembed.embedding_bag_backward(
            grad,
            ids,
            case["offsets"],
            num_embeddings=len(weight),
            mode="max",
            argmax=argmax,
            scale_grad_by_freq=True,
        )


@pytest.mark.parametrize("mode", MODES)
def test_max_norm_and_from_pretrained_match_torch(case, mode):
    # scale_grad_by_freq is checked against NumPy above, not here: PyTorch 2.13's CPU
    # embedding_bag divides some ids by another id's count (ids [0, 0, 1, 0, 2] in bags
    # [0, 2] give id 1 a third of its gradient), unlike its documentation and F.embedding.
    torch = pytest.importorskip("torch")
    weight, ids, _, _ = cast(case, np.float32)
    weight *= 2
    layer_t = torch.nn.EmbeddingBag.from_pretrained(
        torch.from_numpy(weight.copy()), freeze=False, max_norm=1.2, mode=mode
    )
    out_t = layer_t(torch.from_numpy(ids), torch.from_numpy(case["offsets"]))
    grad = np.random.default_rng(2).standard_normal(tuple(out_t.shape)).astype(np.float32)
    out_t.backward(torch.from_numpy(grad))

    bag = fastembed.EmbeddingBag.from_pretrained(weight, freeze=False, max_norm=1.2, mode=mode)
    np.testing.assert_allclose(
        bag(ids, case["offsets"]), out_t.detach().numpy(), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(weight, layer_t.weight.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        bag.backward(grad), layer_t.weight.grad.numpy(), rtol=1e-5, atol=1e-5
    )


def test_from_pretrained_is_frozen_by_default(case):
    weight, ids, psw, grad = cast(case, np.float64)
    bag = fastembed.EmbeddingBag.from_pretrained(weight, mode="sum")
    assert bag.weight is weight and bag.freeze and not bag.trainable
    bag(ids, case["offsets"], per_sample_weights=psw)
    assert bag.backward(grad) is None and bag.grad is None
    assert bag.grad_per_sample_weights is not None  # the weights' gradient is still there
    before = weight.copy()
    with pytest.raises(ValueError, match="frozen"):
        bag.backward(grad, optimizer=fastembed.optim.SGD(0.1))
    np.testing.assert_array_equal(weight, before)
    bag.freeze = False
    np.testing.assert_allclose(
        bag.backward(grad),
        reference_bag_backward(grad, ids, case["offsets"], len(weight), "sum", psw),
        rtol=1e-12,
        atol=1e-12,
    )


def test_fused_sgd_step_uses_the_scaled_gradient(case):
    weight, ids, _, grad = cast(case, np.float64)
    expected = weight - 0.5 * (
        reference_bag_backward(grad, ids, case["offsets"], len(weight), "mean")
        / np.maximum(np.bincount(ids, minlength=len(weight)), 1)[:, None]
    )
    bag = fastembed.EmbeddingBag(weight=weight, mode="mean", scale_grad_by_freq=True)
    bag(ids, case["offsets"])
    assert bag.backward(grad, optimizer=fastembed.optim.SGD(0.5)) is None
    np.testing.assert_allclose(weight, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_norm": 0.0}, ValueError),
        ({"max_norm": -1.0}, ValueError),
        ({"max_norm": 1.0, "norm_type": 0.0}, ValueError),
        ({"max_norm": "1"}, TypeError),
        ({"max_norm": 1.0, "norm_type": None}, TypeError),
    ],
)
def test_bad_norm_options_write_nothing(case, kwargs, error):
    weight, ids, _, _ = cast(case, np.float64)
    weight *= 10
    out = sentinel_array((len(case["offsets"]), weight.shape[1]), np.float64)
    with raises_leaving_untouched(error, "norm", weight, out):
        fastembed.embedding_bag(weight, ids, case["offsets"], mode="sum", out=out, **kwargs)
    with pytest.raises(error):
        fastembed.EmbeddingBag(weight=weight, **kwargs)
