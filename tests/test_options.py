"""Options of the lookup and its gradient: max_norm/norm_type, padding_idx, scale_grad_by_freq,
accumulation; against plain NumPy formulas, PyTorch where importable, and across thread counts.
"""

from __future__ import annotations

import math

import fastembed
import numpy as np
import pytest
from conftest import (
    KERNEL_ID_DTYPES,
    WEIGHT_DTYPES,
    assert_bitwise_equal,
    make_grad,
    make_ids,
    make_table,
    raises_leaving_untouched,
    reference_scatter_add,
    sentinel_array,
)

NORM_TYPES = [2.0, 1.0, 3.0, 0.5, math.inf]
THREAD_COUNTS = [1, 2, 3, 7]


# --- references ------------------------------------------------------------------------------


def reference_renorm(weight: np.ndarray, ids, max_norm: float, norm_type: float) -> np.ndarray:
    """PyTorch's rule on a copy: each distinct row with norm > max_norm is scaled by
    max_norm / (norm + 1e-7), the norm taken in float64."""
    result = weight.copy()
    for row in np.unique(np.asarray(ids)):
        norm = np.linalg.norm(weight[row].astype(np.float64), ord=norm_type)
        if norm > max_norm:
            result[row] = weight[row] * weight.dtype.type(max_norm / (norm + 1e-7))
    return result


def reference_grad(grad_output, ids, num_embeddings, padding_idx=None, scale_grad_by_freq=False):
    """Dense float64 gradient with PyTorch's options applied after the plain sum."""
    result = reference_scatter_add(grad_output, ids, num_embeddings)
    if scale_grad_by_freq:
        counts = np.bincount(np.asarray(ids).reshape(-1), minlength=num_embeddings)
        result /= np.maximum(counts, 1)[:, None]
    if padding_idx is not None:
        result[padding_idx] = 0
    return result


def assert_close(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to float32/float64 rounding of sums of a few standard-normal rows."""
    rtol = 1e-5 if got.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * 10)


def big_rows_table(num_embeddings, dim, dtype, rng):
    """Rows with norms spread over [0.5, 5): some need renormalising to 2, some do not."""
    table = make_table(num_embeddings, dim, dtype, rng)
    norms = np.linalg.norm(table, axis=1, keepdims=True)
    return (table / norms * rng.uniform(0.5, 5.0, (num_embeddings, 1))).astype(dtype)


# --- max_norm --------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=str)
@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("id_dtype", KERNEL_ID_DTYPES)
def test_max_norm_renormalises_looked_up_rows_in_place(norm_type, dtype, id_dtype, rng):
    weight = big_rows_table(300, 7, dtype, rng)
    ids = rng.integers(0, 150, (20, 6)).astype(id_dtype)  # rows 150.. are never looked up
    expected_table = reference_renorm(weight, ids, 2.0, norm_type)
    out = fastembed.gather(weight, ids, max_norm=2.0, norm_type=norm_type)
    np.testing.assert_allclose(weight, expected_table, rtol=4 * np.finfo(dtype).eps)
    assert_bitwise_equal(out, weight[ids])  # the lookup reads the renormalised rows
    assert_bitwise_equal(weight[150:], expected_table[150:])  # untouched rows keep every bit
    norms = np.linalg.norm(weight[np.unique(ids)].astype(np.float64), ord=norm_type, axis=1)
    assert norms.max() <= 2.0 * (1 + 1e-5)


def test_max_norm_leaves_rows_within_the_limit_bitwise(rng):
    weight = big_rows_table(100, 8, np.float32, rng)
    before = weight.copy()
    fastembed.gather(weight, np.arange(100), max_norm=1e9)
    assert_bitwise_equal(weight, before)


def test_max_norm_infinity_never_renormalises(rng):
    weight = big_rows_table(50, 4, np.float32, rng)
    before = weight.copy()
    fastembed.gather(weight, np.arange(50), max_norm=math.inf)
    assert_bitwise_equal(weight, before)


def test_max_norm_is_applied_once_per_distinct_row(rng):
    # One row repeated many times is scaled exactly as if it occurred once.
    weight = big_rows_table(10, 16, np.float32, rng)
    weight[3] *= 100
    once = weight.copy()
    fastembed.gather(once, [3], max_norm=1.0)
    fastembed.gather(weight, np.full(50_000, 3), max_norm=1.0)
    assert_bitwise_equal(weight, once)


def test_max_norm_on_read_only_table_without_need_works(rng):
    weight = big_rows_table(20, 4, np.float32, rng) * 0.01
    weight.flags.writeable = False
    out = fastembed.gather(weight, [1, 2, 1], max_norm=1.0)
    assert_bitwise_equal(out, weight[[1, 2, 1]])


def test_max_norm_on_read_only_table_that_needs_it_is_value_error(rng):
    weight = big_rows_table(20, 4, np.float32, rng) * 0.01
    weight[7] = 10.0
    weight.flags.writeable = False
    out = sentinel_array((3, 4), np.float32)
    with raises_leaving_untouched(ValueError, "read-only.*row 7", weight, out):
        fastembed.gather(weight, [1, 7, 2], out=out, max_norm=1.0)


@pytest.mark.parametrize(
    ("max_norm", "norm_type"),
    [(0.0, 2.0), (-1.0, 2.0), (math.nan, 2.0), (1.0, 0.0), (1.0, -2.0), (1.0, math.nan)],
    ids=str,
)
def test_bad_norm_options_are_value_errors_and_write_nothing(max_norm, norm_type, rng):
    weight = big_rows_table(20, 4, np.float32, rng)
    out = sentinel_array((2, 4), np.float32)
    with raises_leaving_untouched(ValueError, "max_norm|norm_type", weight, out):
        fastembed.gather(weight, [1, 2], out=out, max_norm=max_norm, norm_type=norm_type)


def test_max_norm_with_bad_ids_writes_nothing(rng):
    weight = big_rows_table(20, 4, np.float32, rng)
    with raises_leaving_untouched(IndexError, "20", weight):
        fastembed.gather(weight, [1, 2, 20], max_norm=0.1)


def test_max_norm_of_a_string_is_type_error(rng):
    with pytest.raises(TypeError, match="max_norm"):
        fastembed.gather(make_table(4, 2, np.float32, rng), [1], max_norm="1")


# --- padding_idx, scale_grad_by_freq, accumulate ---------------------------------------------


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("id_dtype", KERNEL_ID_DTYPES)
@pytest.mark.parametrize("padding_idx", [None, 0, 5, -1])
@pytest.mark.parametrize("scale_grad_by_freq", [False, True])
def test_gradient_options_match_the_formula(dtype, id_dtype, padding_idx, scale_grad_by_freq, rng):
    ids = make_ids("zipf", 500, 40, rng, id_dtype).reshape(25, 20)
    grad = make_grad(ids.shape, 6, dtype, rng)
    got = fastembed.scatter_add(
        grad, ids, 40, padding_idx=padding_idx, scale_grad_by_freq=scale_grad_by_freq
    )
    row = None if padding_idx is None else padding_idx % 40
    assert got.dtype == dtype
    assert_close(got, reference_grad(grad, ids, 40, row, scale_grad_by_freq))
    if row is not None:
        assert not got[row].any()


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("options", [{}, {"padding_idx": 3}, {"scale_grad_by_freq": True}])
def test_accumulate_adds_into_out_and_leaves_other_rows(dtype, options, rng):
    ids = rng.integers(0, 30, 200)
    ids[ids == 7] = 8  # row 7 does not occur
    grad = make_grad((200,), 5, dtype, rng)
    start = make_table(30, 5, dtype, rng)
    out = start.copy()
    result = fastembed.scatter_add(grad, ids, 30, out=out, accumulate=True, **options)
    assert result is out
    expected = start + reference_grad(
        grad, ids, 30, options.get("padding_idx"), options.get("scale_grad_by_freq", False)
    )
    assert_close(out, expected)
    assert_bitwise_equal(out[7], start[7])
    if "padding_idx" in options:
        assert_bitwise_equal(out[3], start[3])  # accumulating leaves the padding row as it was


def test_accumulate_is_bitwise_the_sum_of_the_two_gradients(rng):
    ids = make_ids("zipf", 5_000, 300, rng)
    grad = make_grad((5_000,), 8, np.float32, rng)
    single = fastembed.scatter_add(grad, ids, 300)
    twice = single.copy()
    fastembed.scatter_add(grad, ids, 300, out=twice, accumulate=True)
    assert_bitwise_equal(twice, single + single)


def test_accumulate_without_out_is_value_error(rng):
    with pytest.raises(ValueError, match="accumulate"):
        fastembed.scatter_add(make_grad((3,), 2, np.float32, rng), [0, 1, 2], 4, accumulate=True)


@pytest.mark.parametrize("padding_idx", [4, -5, 100])
def test_padding_idx_out_of_range_is_value_error_and_writes_nothing(padding_idx, rng):
    out = sentinel_array((4, 2), np.float32)
    with raises_leaving_untouched(ValueError, f"padding_idx={padding_idx}", out):
        fastembed.scatter_add(
            make_grad((3,), 2, np.float32, rng), [0, 1, 2], 4, out=out, padding_idx=padding_idx
        )


@pytest.mark.parametrize("padding_idx", [1.0, "1", True])
def test_padding_idx_must_be_an_int(padding_idx, rng):
    with pytest.raises(TypeError, match="padding_idx"):
        fastembed.scatter_add(
            make_grad((3,), 2, np.float32, rng), [0, 1, 2], 4, padding_idx=padding_idx
        )


def test_accumulate_with_bad_ids_leaves_out_untouched(rng):
    out = make_table(4, 2, np.float32, rng)
    with raises_leaving_untouched(IndexError, "4", out):
        fastembed.scatter_add(
            make_grad((3,), 2, np.float32, rng), [0, 4, 2], 4, out=out, accumulate=True
        )


# --- determinism -----------------------------------------------------------------------------

# (num_embeddings, dim): a cache-resident gradient (counting path) and a large one (sorted runs).
SIZES = [(1_000, 16), (60_000, 64)]
DENSE_MODES = [
    {},
    {"padding_idx": 0},
    {"scale_grad_by_freq": True},
    {"padding_idx": -1, "scale_grad_by_freq": True},
    {"accumulate": True},
    {"accumulate": True, "padding_idx": 2, "scale_grad_by_freq": True},
]


@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("size", SIZES, ids=str)
@pytest.mark.parametrize("mode", DENSE_MODES, ids=str)
def test_dense_gradient_options_are_bitwise_identical_for_any_thread_count(size, mode, rng):
    num_embeddings, dim = size
    ids = make_ids("heavy", 40_000, num_embeddings, rng)
    ids[::7] = 0  # the padding row occurs
    grad = make_grad((40_000,), dim, np.float32, rng)
    start = make_table(num_embeddings, dim, np.float32, rng)
    results = []
    for threads in THREAD_COUNTS:
        fastembed.set_num_threads(threads)
        out = start.copy()
        results.append(fastembed.scatter_add(grad, ids, num_embeddings, out=out, **mode))
    for other in results[1:]:
        assert_bitwise_equal(other, results[0])


@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_max_norm_is_bitwise_identical_for_any_thread_count(norm_type, rng):
    table = big_rows_table(50_000, 32, np.float32, rng)
    ids = make_ids("heavy", 40_000, 50_000, rng)
    results = []
    for threads in THREAD_COUNTS:
        fastembed.set_num_threads(threads)
        weight = table.copy()
        out = fastembed.gather(weight, ids, max_norm=2.0, norm_type=norm_type)
        results.append((weight, out))
    for weight, out in results[1:]:
        assert_bitwise_equal(weight, results[0][0])
        assert_bitwise_equal(out, results[0][1])


# --- PyTorch ---------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf], ids=str)
@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_max_norm_matches_torch(norm_type, dtype, rng):
    torch = pytest.importorskip("torch")
    weight = big_rows_table(200, 9, dtype, rng)
    ids = rng.integers(0, 120, (30, 4))
    weight_t = torch.from_numpy(weight.copy())
    out_t = torch.nn.functional.embedding(
        torch.from_numpy(ids), weight_t, max_norm=2.0, norm_type=norm_type
    )
    out = fastembed.gather(weight, ids, max_norm=2.0, norm_type=norm_type)
    rtol = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(weight, weight_t.numpy(), rtol=rtol)
    np.testing.assert_allclose(out, out_t.numpy(), rtol=rtol)


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("id_dtype", KERNEL_ID_DTYPES)
@pytest.mark.parametrize("padding_idx", [None, 0, -1])
@pytest.mark.parametrize("scale_grad_by_freq", [False, True])
def test_dense_gradient_options_match_torch(dtype, id_dtype, padding_idx, scale_grad_by_freq, rng):
    torch = pytest.importorskip("torch")
    ids = make_ids("zipf", 600, 50, rng, id_dtype).reshape(20, 30)
    ids[0, :5] = 49  # the padding row occurs whichever end it is
    grad = make_grad(ids.shape, 7, dtype, rng)
    weight_t = torch.zeros((50, 7), dtype=torch.from_numpy(grad).dtype, requires_grad=True)
    torch.nn.functional.embedding(
        torch.from_numpy(ids.astype(np.int64)),
        weight_t,
        padding_idx=padding_idx,
        scale_grad_by_freq=scale_grad_by_freq,
    ).backward(torch.from_numpy(grad))
    got = fastembed.scatter_add(
        grad, ids, 50, padding_idx=padding_idx, scale_grad_by_freq=scale_grad_by_freq
    )
    assert_close(got, weight_t.grad.numpy())


# --- the layer's options ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_layer_padding_idx_zeroes_the_new_row_and_its_gradient(dtype, rng):
    emb = fastembed.Embedding(20, 4, dtype=dtype, padding_idx=-2, seed=1)
    assert emb.padding_idx == 18
    assert not emb.weight[18].any() and emb.weight[17].any()
    ids = np.array([[18, 3], [18, 18]])
    assert not emb(ids)[0, 0].any()
    grad = emb.backward(make_grad(ids.shape, 4, dtype, rng))
    assert not grad[18].any() and grad[3].any()


def test_layer_padding_idx_keeps_a_given_table_as_it_is(rng):
    weight = make_table(10, 3, np.float32, rng)
    before = weight.copy()
    emb = fastembed.Embedding(weight=weight, padding_idx=0)
    assert emb.weight is weight
    assert_bitwise_equal(weight, before)


@pytest.mark.parametrize("scale_grad_by_freq", [False, True])
def test_layer_gradient_options_match_the_formula(scale_grad_by_freq, rng):
    emb = fastembed.Embedding(
        30, 5, padding_idx=2, scale_grad_by_freq=scale_grad_by_freq, dtype=np.float64, seed=0
    )
    ids = make_ids("zipf", 300, 30, rng)
    emb(ids)
    grad = make_grad((300,), 5, np.float64, rng)
    assert_close(emb.backward(grad), reference_grad(grad, ids, 30, 2, scale_grad_by_freq))


def test_layer_max_norm_renormalises_its_table(rng):
    weight = big_rows_table(40, 6, np.float32, rng)
    expected = reference_renorm(weight, [1, 5, 5, 9], 1.5, 3.0)
    emb = fastembed.Embedding(weight=weight, max_norm=1.5, norm_type=3.0)
    out = emb([1, 5, 5, 9])
    np.testing.assert_allclose(emb.weight, expected, rtol=1e-6)
    assert_bitwise_equal(out, emb.weight[[1, 5, 5, 9]])


def test_layer_matches_torch_embedding_with_options(rng):
    torch = pytest.importorskip("torch")
    weight = big_rows_table(60, 8, np.float32, rng)
    ids = make_ids("zipf", 400, 60, rng).reshape(20, 20)
    grad = make_grad(ids.shape, 8, np.float32, rng)
    options = {"padding_idx": 1, "max_norm": 2.5, "scale_grad_by_freq": True}
    layer_t = torch.nn.Embedding.from_pretrained(
        torch.from_numpy(weight.copy()), freeze=False, **options
    )
    layer_t(torch.from_numpy(ids)).backward(torch.from_numpy(grad))
    emb = fastembed.Embedding.from_pretrained(weight, freeze=False, **options)
    emb(ids)
    np.testing.assert_allclose(emb.weight, layer_t.weight.detach().numpy(), rtol=1e-6)
    assert_close(emb.backward(grad), layer_t.weight.grad.numpy())


def test_mask_zero_computes_the_keras_mask():
    emb = fastembed.Embedding(10, 3, mask_zero=True, seed=0)
    ids = [[0, 3, 0], [4, 0, 9]]
    assert_bitwise_equal(emb.compute_mask(ids), np.asarray(ids) != 0)
    assert fastembed.Embedding(10, 3).compute_mask(ids) is None


def test_mask_zero_needs_a_row_for_id_zero():
    with pytest.raises(ValueError, match="mask_zero"):
        fastembed.Embedding(0, 3, mask_zero=True)


# --- init ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_normal_init_is_standard_normal(dtype):
    W = fastembed.Embedding(1_000, 100, init="normal", dtype=dtype, seed=0).weight
    assert W.dtype == dtype
    assert abs(W.mean()) < 0.01 and W.std() == pytest.approx(1.0, rel=0.01)


def test_xavier_uniform_init_has_the_glorot_limit():
    W = fastembed.Embedding(900, 100, init="xavier_uniform", seed=0).weight
    limit = np.sqrt(6 / 1_000)
    assert -limit <= W.min() < -0.99 * limit and limit * 0.99 < W.max() <= limit
    assert W.std() == pytest.approx(limit / np.sqrt(3), rel=0.01)


def test_callable_init_gets_the_shape_and_a_seeded_rng():
    calls = []

    def init(shape, rng):
        calls.append(shape)
        return rng.uniform(-1, 1, shape)

    first = fastembed.Embedding(6, 3, init=init, seed=5, dtype=np.float32).weight
    again = fastembed.Embedding(6, 3, init=init, seed=5, dtype=np.float32).weight
    assert calls == [(6, 3), (6, 3)]
    assert first.dtype == np.float32 and first.flags.c_contiguous
    assert_bitwise_equal(first, again)
    assert_bitwise_equal(first, np.random.default_rng(5).uniform(-1, 1, (6, 3)).astype(np.float32))


def test_seeded_init_is_reproducible_for_every_name():
    for init in ("uniform", "normal", "xavier_uniform"):
        a = fastembed.Embedding(7, 3, init=init, seed=9).weight
        assert_bitwise_equal(a, fastembed.Embedding(7, 3, init=init, seed=9).weight)


@pytest.mark.parametrize(
    ("kwargs", "exception", "match"),
    [
        ({"init": lambda shape, rng: np.zeros((3, 4))}, ValueError, r"shape \(3, 4\)"),
        ({"init": lambda shape, rng: np.zeros(shape, dtype=complex)}, TypeError, "real"),
        ({"init": "glorot"}, ValueError, "init must be one of"),
        ({"padding_idx": 10}, ValueError, "padding_idx=10"),
        ({"padding_idx": -11}, ValueError, "padding_idx=-11"),
        ({"padding_idx": 1.5}, TypeError, "padding_idx"),
        ({"max_norm": 0}, ValueError, "max_norm"),
        ({"max_norm": -1.0}, ValueError, "max_norm"),
        ({"norm_type": 0}, ValueError, "norm_type"),
        ({"weights": [np.zeros((10, 4), np.float32)] * 2}, ValueError, "one array"),
    ],
    ids=str,
)
def test_bad_layer_options_are_clear_errors(kwargs, exception, match):
    with pytest.raises(exception, match=match):
        fastembed.Embedding(10, 4, **kwargs)


# --- weights, from_pretrained, freeze --------------------------------------------------------


@pytest.mark.parametrize(
    "wrap", [lambda w: w, lambda w: [w], lambda w: (w,)], ids=["array", "list", "tuple"]
)
def test_keras_weights_are_used_without_a_copy(wrap, rng):
    table = make_table(8, 3, np.float32, rng)
    emb = fastembed.Embedding(8, 3, weights=wrap(table))
    assert emb.weight is table


def test_weight_and_weights_together_is_value_error(rng):
    table = make_table(8, 3, np.float32, rng)
    with pytest.raises(ValueError, match="not both"):
        fastembed.Embedding(weight=table, weights=[table])


def test_from_pretrained_is_frozen_zero_copy_by_default(rng):
    table = make_table(8, 3, np.float64, rng)
    before = table.copy()
    emb = fastembed.Embedding.from_pretrained(table)
    assert emb.weight is table and emb.freeze and not emb.trainable
    emb([1, 2, 2])
    assert emb.backward(make_grad((3,), 3, np.float64, rng)) is None
    assert emb.grad is None
    assert_bitwise_equal(table, before)


def test_freeze_and_trainable_are_one_switch(rng):
    emb = fastembed.Embedding(8, 3, seed=0, trainable=False)
    assert emb.freeze
    emb.freeze = False
    assert emb.trainable
    emb([1])
    assert emb.backward(np.ones((1, 3), np.float32)) is not None


def test_frozen_layer_still_checks_the_gradient_shape(rng):
    emb = fastembed.Embedding.from_pretrained(make_table(8, 3, np.float32, rng))
    emb([1, 2])
    with pytest.raises(ValueError, match="embedding_dim"):
        emb.backward(np.ones((2, 4), np.float32))
