"""float16 and bfloat16 tables: every call, against NumPy's (and ml_dtypes') rounding, the
float32 kernels on the widened table, and PyTorch where it is installed."""

from __future__ import annotations

import fastembed
import numpy as np
import pytest
from conftest import assert_bitwise_equal, make_ids, raises_leaving_untouched
from fastembed import optim

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
HALF_DTYPES = [np.dtype(np.float16), BF16]
HALF_IDS = ["float16", "bfloat16"]
V, D = 300, 12


def half_table(dtype, rng, shape=(V, D)) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32).astype(dtype)


def bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).view(np.uint16)


def assert_same_halves(a: np.ndarray, b: np.ndarray) -> None:
    """Bitwise equal, except that any NaN equals any NaN."""
    assert a.shape == b.shape and a.dtype == b.dtype
    nan = np.isnan(a.astype(np.float32)) & np.isnan(b.astype(np.float32))
    assert np.array_equal(bits(a)[~nan], bits(b)[~nan])


def hard_values(rng) -> np.ndarray:
    """float32 values that probe every rounding case: ties, subnormals, overflow, specials."""
    scales = [1e-9, 3e-8, 6e-5, 1e-3, 1.0, 300.0, 6e4, 1e10, 3e38]
    with np.errstate(over="ignore"):
        random = np.concatenate([rng.standard_normal(4000) * s for s in scales]).astype(np.float32)
    # Exact ties of float16 (11 significant bits) and bfloat16 (8): odd multiples of half an ulp.
    ties16 = (np.arange(1, 2000, 2) * 2.0**-11 + 1.0).astype(np.float32)
    ties_bf = (np.arange(1, 500, 2) * 2.0**-8 + 1.0).astype(np.float32)
    specials = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519.99, 65520, -65520, 5.96e-8, 2.98e-8,
         2.9802322e-08, 1e-45, 3.4028235e38, -3.4028235e38],
        dtype=np.float32,
    )  # fmt: skip
    return np.concatenate([random, ties16, -ties16, ties_bf, -ties_bf, specials])


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
def test_rounding_to_half_is_numpys_round_to_nearest_even(dtype, rng):
    values = hard_values(rng).reshape(-1, 1)
    with np.errstate(over="ignore"):
        expected = values.astype(dtype)
    got = np.empty(values.shape, dtype)
    fastembed.scatter_add(values, np.arange(len(values)), len(values), out=got)
    assert_same_halves(got, expected)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
def test_widening_is_exact(dtype):
    every = np.arange(2**16, dtype=np.uint16).view(dtype).reshape(-1, 1)  # all 65536 values
    out = np.empty(every.shape, np.float32)
    fastembed.gather(every, np.arange(len(every)), out=out)
    expected = every.astype(np.float32)
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(out), nan)
    assert np.array_equal(out[~nan].view(np.uint32), expected[~nan].view(np.uint32))


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
def test_gather_in_table_dtype_or_widened(dtype, rng):
    W = half_table(dtype, rng)
    ids = make_ids("zipf", 500, V, rng).reshape(20, 25)
    got = fastembed.gather(W, ids)
    assert_bitwise_equal(got, W[ids])
    out = np.empty((20, 25, D), np.float32)
    assert fastembed.gather(W, ids, out=out) is out
    assert_bitwise_equal(out, W.astype(np.float32)[ids])
    with pytest.raises(TypeError, match="out"):
        fastembed.gather(W, ids, out=np.empty((20, 25, D), np.float64))


@pytest.mark.parametrize("grad_dtype", [np.dtype(np.float32), *HALF_DTYPES], ids=["f32", *HALF_IDS])
@pytest.mark.parametrize("out_dtype", [np.dtype(np.float32), *HALF_DTYPES], ids=["f32", *HALF_IDS])
def test_scatter_add_sums_in_float32_and_rounds_once(grad_dtype, out_dtype, rng):
    ids = make_ids("heavy", 40_000, V, rng)
    grad = rng.standard_normal((40_000, D)).astype(grad_dtype)
    wide = fastembed.scatter_add(grad.astype(np.float32), ids, V, padding_idx=7)
    out = np.full((V, D), 5.0, dtype=out_dtype)
    assert fastembed.scatter_add(grad, ids, V, out=out, padding_idx=7) is out
    assert_bitwise_equal(out, wide.astype(out_dtype))
    # the default result has grad_output's dtype
    assert_bitwise_equal(
        fastembed.scatter_add(grad, ids, V, padding_idx=7), wide.astype(grad_dtype)
    )
    # accumulate: one rounding per call, of (old + sum)
    start = rng.standard_normal((V, D)).astype(out_dtype)
    acc = start.copy()
    fastembed.scatter_add(grad, ids, V, out=acc, accumulate=True)
    present = np.isin(np.arange(V), ids)
    sums = fastembed.scatter_add(grad.astype(np.float32), ids, V)
    expected = start.copy()
    expected[present] = (start.astype(np.float32)[present] + sums[present]).astype(out_dtype)
    assert_bitwise_equal(acc, expected)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
def test_sparse_grad_of_half_gradient(dtype, rng):
    ids = make_ids("zipf", 2_000, V, rng)
    grad = rng.standard_normal((2_000, D)).astype(dtype)
    sparse = fastembed.sparse_grad(grad, ids, V, scale_grad_by_freq=True)
    dense = fastembed.scatter_add(grad.astype(np.float32), ids, V, scale_grad_by_freq=True)
    assert sparse.dtype == dtype
    assert np.array_equal(sparse.indices, np.unique(ids))
    assert_bitwise_equal(sparse.values, dense[sparse.indices].astype(dtype))


def test_mixed_precisions_are_refused_where_they_make_no_sense(rng):
    grad64 = np.ones((4, 3))
    with pytest.raises(TypeError, match="out"):
        fastembed.scatter_add(grad64, [0, 1, 2, 3], 5, out=np.zeros((5, 3), np.float16))
    with pytest.raises(TypeError, match="out"):
        fastembed.scatter_add(grad64.astype(np.float16), [0, 1, 2, 3], 5, out=np.zeros((5, 3)))
    with pytest.raises(TypeError, match="float16, bfloat16"):
        fastembed.gather(np.ones((3, 2), np.int16), [0])


@pytest.mark.parametrize("dtype", [np.float16, "bfloat16", BF16], ids=["f16", "bf16-name", "bf16"])
@pytest.mark.parametrize("sparse", [False, True])
def test_embedding_layer_of_half_table(dtype, sparse, rng):
    emb = fastembed.Embedding(V, D, dtype=dtype, seed=1, sparse=sparse, padding_idx=0)
    wanted = np.dtype(BF16 if dtype == "bfloat16" else dtype)
    assert emb.weight.dtype == wanted and emb.dtype == wanted
    drawn = fastembed.Embedding(V, D, seed=1, padding_idx=0).weight
    assert_bitwise_equal(emb.weight, drawn.astype(wanted))  # drawn in float32, rounded once
    ids = rng.integers(0, V, (6, 9))
    assert_bitwise_equal(emb(ids), emb.weight[ids])
    grad32 = rng.standard_normal((6, 9, D)).astype(np.float32)
    emb.backward(grad32)
    emb.backward(grad32.astype(wanted))
    grad = emb.grad.to_dense() if sparse else emb.grad
    assert grad.dtype == wanted
    once = fastembed.scatter_add(grad32, ids, V, padding_idx=0).astype(wanted)
    twice = fastembed.scatter_add(grad32.astype(wanted), ids, V, padding_idx=0)
    if sparse:
        expected = once[np.unique(ids)].astype(np.float32) + twice[np.unique(ids)].astype(
            np.float32
        )
        assert_bitwise_equal(grad[np.unique(ids)], expected.astype(wanted))
    else:  # the second sum is added into the first unrounded: one rounding per backward
        second = fastembed.scatter_add(
            grad32.astype(wanted).astype(np.float32), ids, V, padding_idx=0
        )
        assert_bitwise_equal(grad, (once.astype(np.float32) + second).astype(wanted))
    with pytest.raises(TypeError, match="float32"):
        emb.backward(grad32.astype(np.float64))


def apply_update(opt_factory, dtype, grad_dtype, rng, stochastic=False):
    W = half_table(dtype, rng)
    ids = make_ids("zipf", 3_000, V, rng)
    grad = rng.standard_normal((3_000, D)).astype(grad_dtype)
    emb = fastembed.Embedding(weight=W.copy())
    opt = opt_factory(stochastic)
    for _ in range(2):
        emb(ids)
        emb.backward(grad, optimizer=opt)
    return W, ids, grad, emb, opt


OPTIMIZERS = {
    "sgd": lambda sr: optim.SGD(0.05, momentum=0.5, stochastic_rounding=sr, seed=11),
    "adagrad": lambda sr: optim.Adagrad(0.05, stochastic_rounding=sr, seed=11),
    "adam": lambda sr: optim.Adam(0.05, stochastic_rounding=sr, seed=11),
}


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("grad_dtype", ["table", "float32"])
def test_optimizer_on_half_table_matches_float32_update_rounded(dtype, name, grad_dtype, rng):
    """To nearest: each step is the float32 optimizer's step from the widened table, rounded."""
    grad_type = dtype if grad_dtype == "table" else np.dtype(np.float32)
    W, ids, grad, emb, opt = apply_update(OPTIMIZERS[name], dtype, grad_type, rng)
    reference = fastembed.Embedding(weight=W.astype(np.float32))
    ref_opt = OPTIMIZERS[name](False)
    for _ in range(2):
        reference(ids)
        reference.backward(grad.astype(np.float32), optimizer=ref_opt)
        reference.weight[...] = reference.weight.astype(dtype).astype(np.float32)
    assert_bitwise_equal(emb.weight, reference.weight.astype(dtype))
    for key, state in opt.state(emb).items():
        assert state.dtype == (np.int64 if key == "step" else np.float32)
        assert_bitwise_equal(state, ref_opt.state(reference)[key])


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_stochastic_rounding_does_not_depend_on_threads(dtype, name, rng, restore_num_threads):
    results = []
    for threads in (1, 2, 3):
        fastembed.set_num_threads(threads)
        results.append(apply_update(OPTIMIZERS[name], dtype, dtype, np.random.default_rng(5), True))
    for _, _, _, emb, _ in results[1:]:
        assert_bitwise_equal(emb.weight, results[0][3].weight)
    # another seed draws another stream: other roundings of the same updates
    reseeded = {
        "sgd": lambda sr: optim.SGD(0.05, momentum=0.5, stochastic_rounding=sr, seed=12),
        "adagrad": lambda sr: optim.Adagrad(0.05, stochastic_rounding=sr, seed=12),
        "adam": lambda sr: optim.Adam(0.05, stochastic_rounding=sr, seed=12),
    }[name]
    emb = apply_update(reseeded, dtype, dtype, np.random.default_rng(5), True)[3]
    assert not np.array_equal(bits(emb.weight), bits(results[0][3].weight))


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
def test_stochastic_rounding_is_unbiased_and_picks_a_neighbour(dtype):
    """Updates far below the table's precision vanish to nearest but move it on average."""
    n = 20_000
    start = np.full((n, 1), 1.0, dtype)  # ulp above 1: 2^-10 (float16), 2^-7 (bfloat16)
    ulp = 2.0**-10 if dtype == np.float16 else 2.0**-7
    step = ulp / 8
    grad = np.full((n, 1), step, np.float32)
    outcomes = {}
    for sr in (False, True):
        emb = fastembed.Embedding(weight=start.copy())
        emb(np.arange(n))
        emb.backward(grad, optimizer=optim.SGD(1.0, stochastic_rounding=sr, seed=3))
        outcomes[sr] = emb.weight.astype(np.float64)
    assert np.all(outcomes[False] == 1.0)
    below = 1.0 - ulp / 2  # the neighbour below 1 (ulp halves under a power of two)
    values = outcomes[True]
    assert np.all((values == 1.0) | (values == below))
    p = (1.0 - (1.0 - step)) / (1.0 - below)  # probability of rounding down: 1/4
    frequency = np.mean(values == below)
    assert abs(frequency - p) < 5 * np.sqrt(p * (1 - p) / n)
    assert abs(values.mean() - (1.0 - step)) < 5 * ulp / 2 * np.sqrt(p * (1 - p) / n)


def test_optimizer_state_and_hyperparameters_of_stochastic_rounding(rng):
    opt = optim.Adagrad(0.1, stochastic_rounding=True, seed=9)
    emb = fastembed.Embedding(V, D, dtype=np.float16, seed=0)
    emb([1, 2])
    emb.backward(np.ones((2, D), np.float32), optimizer=opt)
    state = opt.state_dict()
    assert state["stochastic_rounding"] and int(state["seed"]) == 9
    assert int(state["table0.step"]) == 1
    assert "seed=9" in repr(opt)
    fresh = optim.Adagrad(0.1)
    fresh.load_state_dict(state)
    assert fresh.stochastic_rounding and fresh.seed == 9
    with pytest.raises(TypeError, match="seed"):
        optim.SGD(0.1, stochastic_rounding=True, seed=1.5)
    with pytest.raises(ValueError, match="seed"):
        optim.SGD(0.1, stochastic_rounding=True, seed=-1)


def test_bad_gradient_dtype_for_half_table_changes_nothing(rng):
    emb = fastembed.Embedding(V, D, dtype=np.float16, seed=0)
    emb([1, 2, 3])
    opt = optim.Adam(0.1)
    with raises_leaving_untouched(TypeError, "float16 or float32", emb.weight):
        emb.backward(np.ones((3, D), BF16), optimizer=opt)
    with raises_leaving_untouched(TypeError, "float16 or float32", emb.weight):
        emb.backward(np.ones((3, D)), optimizer=opt)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
@pytest.mark.parametrize("suffix", [".npy", ".npz"])
@pytest.mark.parametrize("mmap_mode", [None, "r"])
def test_save_and_load_keep_the_dtype(dtype, suffix, mmap_mode, tmp_path, rng):
    emb = fastembed.Embedding(V, D, dtype=dtype, seed=4, padding_idx=2)
    path = tmp_path / f"table{suffix}"
    emb.save(path)
    loaded = fastembed.Embedding.load(path, mmap_mode=mmap_mode)
    assert loaded.weight.dtype == dtype and loaded.padding_idx == 2
    assert_bitwise_equal(np.asarray(loaded.weight), emb.weight)
    ids = rng.integers(0, V, 50)
    assert_bitwise_equal(loaded(ids), emb(ids))


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_bag_pools_in_float32_and_rounds_once(dtype, mode, rng):
    W = half_table(dtype, rng)
    ids = make_ids("zipf", 400, V, rng)
    offsets = np.sort(rng.integers(0, 400, 30))
    offsets[0] = 0
    wide = fastembed.embedding_bag(W.astype(np.float32), ids, offsets, mode=mode, padding_idx=3)
    got = fastembed.embedding_bag(W, ids, offsets, mode=mode, padding_idx=3)
    assert_bitwise_equal(got, wide.astype(dtype))
    out = np.empty(wide.shape, np.float32)
    fastembed.embedding_bag(W, ids, offsets, mode=mode, padding_idx=3, out=out)
    assert_bitwise_equal(out, wide)
    # and against float64 NumPy: within float32's rounding, then half an ulp of the dtype
    bounds = np.append(offsets, len(ids))
    for b in range(len(offsets)):
        rows = W[ids[bounds[b] : bounds[b + 1]]].astype(np.float64)
        rows = rows[ids[bounds[b] : bounds[b + 1]] != 3]
        if len(rows) == 0:
            expected = np.zeros(D)
        else:
            expected = {"sum": rows.sum(0), "mean": rows.mean(0), "max": rows.max(0)}[mode]
        magnitude = np.abs(rows).sum(0) if len(rows) else np.zeros(D)
        tolerance = np.finfo(dtype).eps * np.abs(expected) + 1e-5 * magnitude + 1e-30
        assert np.all(np.abs(got[b].astype(np.float64) - expected) <= tolerance)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
def test_bag_per_sample_weights_in_float32_or_table_dtype(dtype, rng):
    W = half_table(dtype, rng)
    ids = rng.integers(0, V, 60)
    offsets = np.arange(0, 60, 6)
    weights = rng.standard_normal(60).astype(np.float32)
    wide = fastembed.embedding_bag(
        W.astype(np.float32), ids, offsets, mode="sum", per_sample_weights=weights
    )
    got = fastembed.embedding_bag(W, ids, offsets, mode="sum", per_sample_weights=weights)
    assert_bitwise_equal(got, wide.astype(dtype))
    narrow = weights.astype(dtype)
    got = fastembed.embedding_bag(W, ids, offsets, mode="sum", per_sample_weights=narrow)
    expected = fastembed.embedding_bag(
        W.astype(np.float32), ids, offsets, mode="sum", per_sample_weights=narrow.astype(np.float32)
    )
    assert_bitwise_equal(got, expected.astype(dtype))


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_layer_of_half_table(dtype, mode, rng):
    bag = fastembed.EmbeddingBag(V, D, mode=mode, dtype=dtype, seed=2)
    wide = fastembed.EmbeddingBag(weight=bag.weight.astype(np.float32), mode=mode)
    ids = rng.integers(0, V, (10, 7))
    assert_bitwise_equal(bag(ids), wide(ids).astype(dtype))
    grad = rng.standard_normal((10, D)).astype(np.float32)
    bag.backward(grad.astype(dtype))
    wide.backward(grad.astype(dtype).astype(np.float32))
    assert_bitwise_equal(bag.grad, wide.grad.astype(dtype))


@pytest.mark.parametrize("name, dtype", [("float16", np.float16), ("bfloat16", BF16)], ids=HALF_IDS)
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_bags_and_gradients_match_torch(name, dtype, mode, rng):
    torch = pytest.importorskip("torch")
    W = half_table(dtype, rng)
    ids = rng.integers(0, V, 500)
    offsets = np.arange(0, 500, 10)
    weight_t = torch.from_numpy(W.astype(np.float32)).to(getattr(torch, name)).requires_grad_()
    out_t = torch.nn.functional.embedding_bag(
        torch.from_numpy(ids), weight_t, torch.from_numpy(offsets), mode=mode
    )
    got = fastembed.embedding_bag(W, ids, offsets, mode=mode)
    expected = out_t.detach().float().numpy()
    tolerance = 4 * np.finfo(dtype).eps * (np.abs(expected) + 1)
    assert np.all(np.abs(got.astype(np.float32) - expected) <= tolerance)
    grad = rng.standard_normal((50, D)).astype(np.float32).astype(dtype)
    out_t.backward(torch.from_numpy(grad.astype(np.float32)).to(getattr(torch, name)))
    bag = fastembed.EmbeddingBag(weight=W.copy(), mode=mode)
    bag(ids, offsets)
    bag.backward(grad)
    expected = weight_t.grad.float().numpy()
    tolerance = 8 * np.finfo(dtype).eps * (np.abs(expected) + 1)
    assert bag.grad.dtype == dtype
    assert np.all(np.abs(bag.grad.astype(np.float32) - expected) <= tolerance)


def numpy_bag_gradient(grad, ids, bounds, mode, weights=None) -> np.ndarray:
    """The table's gradient of a sum / mean bag in float64: each id's bag rows, scaled, added."""
    expected = np.zeros((V, D))
    for b in range(len(bounds) - 1):
        members = range(bounds[b], bounds[b + 1])
        for i in members:
            scale = 1.0 / len(members) if mode == "mean" else 1.0
            if weights is not None:
                scale = float(weights[i])
            expected[ids[i]] += scale * grad[b].astype(np.float64)
    return expected


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("sparse", [False, True])
def test_bag_backward_of_half_gradient_sums_in_float32(dtype, mode, sparse, rng):
    """A float16 / bfloat16 grad_output is read in float32: the gradient is the float32 one of
    the widened grad_output, rounded once into grad_output's dtype (or into a float32 out)."""
    ids = make_ids("zipf", 600, V, rng)
    offsets = np.arange(0, 600, 12)
    W = half_table(dtype, rng)
    argmax = None
    if mode == "max":
        _, argmax = fastembed.embedding_bag(W, ids, offsets, mode="max", return_argmax=True)
    grad = half_table(dtype, rng, (50, D))
    options = {"num_embeddings": V, "mode": mode, "argmax": argmax, "sparse": sparse}
    got = fastembed.embedding_bag_backward(grad, ids, offsets, **options)
    wide = fastembed.embedding_bag_backward(grad.astype(np.float32), ids, offsets, **options)
    if sparse:
        assert_bitwise_equal(got.indices, wide.indices)
        assert_bitwise_equal(got.values, wide.values.astype(dtype))
    else:
        assert_bitwise_equal(got, wide.astype(dtype))
        into = np.full((V, D), np.nan, np.float32)
        fastembed.embedding_bag_backward(grad, ids, offsets, out=into, **options)
        assert_bitwise_equal(into, wide)
        if mode != "max":
            expected = numpy_bag_gradient(grad, ids, np.append(offsets, 600), mode)
            tolerance = np.finfo(dtype).eps * np.abs(expected) + 1e-5 * np.abs(expected).max()
            assert np.all(np.abs(got.astype(np.float64) - expected) <= tolerance)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
@pytest.mark.parametrize("weights_dtype", ["table", "float32"])
def test_bag_backward_of_half_gradient_with_per_sample_weights(dtype, weights_dtype, rng):
    ids = rng.integers(0, V, 120)
    offsets = np.arange(0, 120, 8)
    weights = rng.standard_normal(120).astype(np.float32)
    if weights_dtype == "table":
        weights = weights.astype(dtype)
    grad = half_table(dtype, rng, (15, D))
    got = fastembed.embedding_bag_backward(
        grad, ids, offsets, num_embeddings=V, mode="sum", per_sample_weights=weights
    )
    wide = fastembed.embedding_bag_backward(
        grad.astype(np.float32), ids, offsets, num_embeddings=V, mode="sum",
        per_sample_weights=weights.astype(np.float32),
    )  # fmt: skip
    assert_bitwise_equal(got, wide.astype(dtype))
    W = half_table(dtype, rng)
    got = fastembed.embedding_bag_per_sample_weights_backward(grad, W, ids, offsets)
    wide = fastembed.embedding_bag_per_sample_weights_backward(
        grad.astype(np.float32), W.astype(np.float32), ids, offsets
    )
    assert_bitwise_equal(got, wide)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("weighted", [False, True])
def test_bag_optimizer_step_with_half_gradient(dtype, name, weighted, rng):
    """A bag layer's fused step from a gradient in the table's dtype is the step from that
    gradient widened to float32, and so is grad_per_sample_weights."""
    W = half_table(dtype, rng)
    ids = make_ids("zipf", 900, V, rng)
    offsets = np.arange(0, 900, 9)
    weights = rng.standard_normal(900).astype(dtype) if weighted else None
    grad = half_table(dtype, rng, (100, D))
    mode = "sum" if weighted else "mean"
    layers, optimizers = [], []
    for gradient in (grad, grad.astype(np.float32)):
        bag = fastembed.EmbeddingBag(weight=W.copy(), mode=mode)
        optimizer = OPTIMIZERS[name](False)
        for _ in range(2):
            bag(ids, offsets, per_sample_weights=weights)
            bag.backward(gradient, optimizer=optimizer)
        layers.append(bag)
        optimizers.append(optimizer)
    assert_bitwise_equal(layers[0].weight, layers[1].weight)
    assert not np.array_equal(layers[0].weight, W)
    if weighted:
        assert_bitwise_equal(layers[0].grad_per_sample_weights, layers[1].grad_per_sample_weights)
    for key, state in optimizers[0].state(layers[0]).items():
        assert_bitwise_equal(state, optimizers[1].state(layers[1])[key])
