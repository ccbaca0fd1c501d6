"""Property tests of pooled lookups and fused optimizer steps against plain NumPy loops.

A drawn ``BagCase`` is a table, bags (2-d fixed-length ids, or 1-d ids with offsets, empty bags
and ``include_last_offset`` included), a mode, per-sample weights (with sum), a padding id, a
gradient and a thread count. The references pool, differentiate and update one bag / one row at a
time in float64, sharing nothing with the kernels; ``BAG_CALLS`` lists the public calls they
check, ``STEPS`` the optimizers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastembed
import numpy as np
import pytest
from conftest import SENTINEL, WEIGHT_DTYPES
from hypothesis import given, settings
from hypothesis import strategies as st
from test_properties import DIMS, DISTRIBUTIONS, ID_DTYPES, draw_id_values, present_ids

MODES = ["sum", "mean", "max"]
OFFSET_FORMS = ["int64", "int32", "uint16", "list"]

# Fewer examples than the plain lookups: each bag case runs several calls and a Python loop.
BAG_EXAMPLES = max(5, settings.default.max_examples // 3)


@dataclass
class BagCase:
    weight: np.ndarray  # (V, D)
    ids: Any  # as passed: 2-d (fixed-length bags, offsets None) or 1-d with offsets
    offsets: Any  # as passed, or None
    include_last_offset: bool
    flat_ids: np.ndarray  # int64, flat
    bounds: np.ndarray  # int64 (num_bags + 1,): bag b is flat_ids[bounds[b]:bounds[b + 1]]
    mode: str
    per_sample_weights: np.ndarray | None  # the ids' shape, dtype of weight (sum only)
    padding_idx: int | None  # in [-V, V)
    grad: np.ndarray  # (num_bags, D)
    threads: int
    use_out: bool

    @property
    def num_embeddings(self) -> int:
        return self.weight.shape[0]

    @property
    def num_bags(self) -> int:
        return len(self.bounds) - 1

    @property
    def padding_row(self) -> int | None:
        return None if self.padding_idx is None else self.padding_idx % self.num_embeddings

    @property
    def options(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "per_sample_weights": self.per_sample_weights,
            "include_last_offset": self.include_last_offset,
            "padding_idx": self.padding_idx,
        }


def _present_offsets(bounds: np.ndarray, form: str) -> Any:
    return bounds.tolist() if form == "list" else bounds.astype(form)


@st.composite
def bag_cases(
    draw, min_ids: int = 0, max_ids: int = 600, max_rows: int = 3_000, modes=tuple(MODES)
) -> BagCase:
    """A drawn bag case with ``min_ids..max_ids`` ids (``min_ids > 0``: a batch large enough
    that every thread count splits the work, in up to 2_000 bags)."""
    max_bags = 2_000 if min_ids else 60
    num_embeddings = draw(st.one_of(st.just(1), st.integers(1, 16), st.integers(1, max_rows)))
    dim = draw(st.sampled_from(DIMS))
    dtype = draw(st.sampled_from(WEIGHT_DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    distribution = draw(st.sampled_from(DISTRIBUTIONS))
    id_dtype = draw(
        st.sampled_from([t for t in ID_DTYPES if np.iinfo(t).max >= num_embeddings - 1])
    )
    include_last_offset = False
    if draw(st.booleans()):  # fixed-length bags: 2-d ids
        num_bags = draw(st.integers(1 if min_ids else 0, max_bags))
        bag_size = draw(
            st.integers(-(-min_ids // num_bags) if num_bags else 0, max_ids // max(num_bags, 1))
        )
        values = draw_id_values(distribution, (num_bags, bag_size), num_embeddings, rng)
        forms = ["array", "byteswapped", "non_contiguous", "fortran", "python"]
        form = draw(st.sampled_from(forms if num_bags else forms[:-1]))  # [] would be 1-d
        ids = present_ids(values, form, id_dtype, rng)
        bounds = np.arange(num_bags + 1, dtype=np.int64) * bag_size
        offsets = None
    else:  # 1-d ids and offsets: bags of any length, empty ones included
        n = draw(st.integers(min_ids, max_ids))
        num_bags = draw(st.integers(0 if n == 0 else 1, max_bags))
        starts = np.sort(rng.integers(0, n + 1, max(num_bags - 1, 0)))
        include_last_offset = draw(st.booleans())
        end = n
        if include_last_offset and n > 0 and draw(st.booleans()):
            end = int(rng.integers(starts[-1] if len(starts) else 0, n + 1))  # ids past it: no bag
            starts = np.minimum(starts, end)
        if num_bags == 0:
            bounds = np.zeros(1, np.int64) if include_last_offset else np.zeros(0, np.int64)
            bounds_for_bags = np.zeros(1, np.int64)
        else:
            bounds_for_bags = np.concatenate([[0], starts, [end]]).astype(np.int64)
            bounds = bounds_for_bags if include_last_offset else bounds_for_bags[:-1]
        offsets = _present_offsets(bounds, draw(st.sampled_from(OFFSET_FORMS)))
        bounds = bounds_for_bags
        values = draw_id_values(distribution, (n,), num_embeddings, rng)
        ids = present_ids(values, draw(st.sampled_from(["array", "python"])), id_dtype, rng)
    mode = draw(st.sampled_from(list(modes)))
    flat_ids = np.array(ids, dtype=np.int64).reshape(-1)
    per_sample_weights = None
    if mode == "sum" and draw(st.booleans()):
        per_sample_weights = rng.standard_normal(np.shape(values)).astype(dtype)
    return BagCase(
        weight=rng.standard_normal((num_embeddings, dim)).astype(dtype),
        ids=ids,
        offsets=offsets,
        include_last_offset=include_last_offset,
        flat_ids=flat_ids,
        bounds=bounds,
        mode=mode,
        per_sample_weights=per_sample_weights,
        padding_idx=draw(st.none() | st.integers(-num_embeddings, num_embeddings - 1)),
        grad=rng.standard_normal((len(bounds) - 1, dim)).astype(dtype),
        threads=draw(st.integers(1, 8)),
        use_out=draw(st.booleans()),
    )


# --- references: one bag at a time, float64 -----------------------------------------------------


def bag_entries(case: BagCase, b: int) -> np.ndarray:
    """Flat positions of bag b's entries that count (padding entries left out)."""
    positions = np.arange(case.bounds[b], case.bounds[b + 1])
    return positions[case.flat_ids[positions] != case.padding_row]


def entry_weights(case: BagCase) -> np.ndarray:
    if case.per_sample_weights is None:
        return np.ones(len(case.flat_ids))
    return case.per_sample_weights.reshape(-1).astype(np.float64)


def reference_pool(case: BagCase, absolute: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(pooled rows, argmax): the plain loop over each bag's entries."""
    weight = case.weight.astype(np.float64)
    scale = entry_weights(case)
    if absolute:
        weight, scale = np.abs(weight), np.abs(scale)
    dim = weight.shape[1]
    pooled = np.zeros((case.num_bags, dim))
    argmax = np.full((case.num_bags, dim), -1, np.int64)
    for b in range(case.num_bags):
        entries = bag_entries(case, b)
        if len(entries) == 0:
            continue
        rows = scale[entries, None] * weight[case.flat_ids[entries]]
        if case.mode == "max":
            first = np.argmax(rows, axis=0)  # the first entry wins a tie
            pooled[b] = rows[first, np.arange(dim)]
            argmax[b] = entries[first]
            continue
        for row in rows:  # in position order
            pooled[b] += row
        if case.mode == "mean":
            pooled[b] /= len(entries)
    return pooled, argmax


def reference_grad(case: BagCase, absolute: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(dense gradient w.r.t. the table, the ids that get one) with np.add.at."""
    grad = np.abs(case.grad) if absolute else case.grad
    grad = grad.astype(np.float64)
    scale = np.abs(entry_weights(case)) if absolute else entry_weights(case)
    result = np.zeros(case.weight.shape)
    touched = []
    if case.mode == "max":
        _, argmax = reference_pool(case)
        bags, columns = np.nonzero(argmax >= 0)
        winners = case.flat_ids[argmax[bags, columns]]
        np.add.at(result, (winners, columns), grad[bags, columns])
        return result, np.unique(winners)
    for b in range(case.num_bags):
        entries = bag_entries(case, b)
        factor = scale[entries] / (len(entries) if case.mode == "mean" else 1)
        np.add.at(result, case.flat_ids[entries], factor[:, None] * grad[b])
        touched.extend(case.flat_ids[entries])
    return result, np.unique(np.array(touched, np.int64))


def reference_per_sample_weights_grad(case: BagCase, absolute: bool = False) -> np.ndarray:
    weight = case.weight.astype(np.float64)
    grad = case.grad.astype(np.float64)
    if absolute:
        weight, grad = np.abs(weight), np.abs(grad)
    result = np.zeros(len(case.flat_ids))
    for b in range(case.num_bags):
        for i in bag_entries(case, b):
            result[i] = grad[b] @ weight[case.flat_ids[i]]
    return result.reshape(np.shape(case.per_sample_weights))


def assert_within_rounding(
    got: np.ndarray, expected: np.ndarray, magnitude: np.ndarray, terms: Any = 16
) -> None:
    """Equal up to the rounding of a sum of ``terms`` terms of total ``magnitude`` in got's dtype:
    the classic bound, (terms - 1) * eps * magnitude, at least 16 eps (see test_properties). A
    bag adds one gradient row many times over: those roundings do not cancel."""
    assert got.shape == expected.shape
    factor = np.maximum(16, terms)
    bound = factor * np.finfo(got.dtype).eps * magnitude + np.finfo(got.dtype).tiny
    error = np.abs(got.astype(np.float64) - expected)
    worst = np.unravel_index(np.argmax(error - bound), error.shape) if error.size else ()
    assert np.all(error <= bound), f"at {worst}: got {got[worst]}, expected {expected[worst]}"


# --- the public calls ---------------------------------------------------------------------------


def _forward(case: BagCase) -> np.ndarray:
    out = None
    if case.use_out:
        out = np.full((case.num_bags, case.weight.shape[1]), SENTINEL, case.weight.dtype)
    result = fastembed.embedding_bag(case.weight, case.ids, case.offsets, out=out, **case.options)
    assert out is None or result is out
    return result


def _layer(case: BagCase, **kwargs) -> fastembed.EmbeddingBag:
    return fastembed.EmbeddingBag(
        weight=case.weight,
        mode=case.mode,
        padding_idx=case.padding_idx,
        include_last_offset=case.include_last_offset,
        **kwargs,
    )


def _layer_forward(case: BagCase) -> np.ndarray:
    return _layer(case)(case.ids, case.offsets, case.per_sample_weights)


def _argmax(case: BagCase) -> np.ndarray | None:
    if case.mode != "max":
        return None
    return fastembed.embedding_bag(
        case.weight, case.ids, case.offsets, return_argmax=True, **case.options
    )[1]


def _backward(case: BagCase, sparse: bool) -> Any:
    return fastembed.embedding_bag_backward(
        case.grad,
        case.ids,
        case.offsets,
        num_embeddings=case.num_embeddings,
        argmax=_argmax(case),
        sparse=sparse,
        **case.options,
    )


def _dense_backward(case: BagCase) -> np.ndarray:
    return _backward(case, sparse=False)


def _sparse_backward(case: BagCase) -> np.ndarray:
    grad = _backward(case, sparse=True)
    assert np.array_equal(grad.indices, reference_grad(case)[1])
    return grad.to_dense()


def _accumulated_backward(case: BagCase) -> np.ndarray:
    out = case.weight.copy()  # the gradient so far
    result = fastembed.embedding_bag_backward(
        case.grad,
        case.ids,
        case.offsets,
        num_embeddings=case.num_embeddings,
        argmax=_argmax(case),
        out=out,
        accumulate=True,
        **case.options,
    )
    assert result is out
    return result


def _layer_backward(case: BagCase, sparse: bool) -> np.ndarray:
    layer = _layer(case, sparse=sparse)
    layer(case.ids, case.offsets, case.per_sample_weights)
    grad = layer.backward(case.grad)
    assert layer.grad is grad
    if case.per_sample_weights is not None:
        assert_within_rounding(
            layer.grad_per_sample_weights,
            reference_per_sample_weights_grad(case),
            reference_per_sample_weights_grad(case, absolute=True),
        )
    return grad.to_dense() if sparse else grad


def bag_sizes(case: BagCase) -> np.ndarray:
    """Terms of each pooled row: its bag's length (a column)."""
    return np.diff(case.bounds)[:, None]


def id_counts(case: BagCase) -> np.ndarray:
    """Terms of each gradient row, at most: the id's occurrences, plus one (accumulate)."""
    return np.bincount(case.flat_ids, minlength=case.num_embeddings)[:, None] + 1


@dataclass(frozen=True)
class BagCall:
    """``run(case)`` against ``reference(case, absolute)``: as PublicCall in test_properties;
    ``terms(case)``: how many terms each result element sums, at most."""

    name: str
    run: Callable[[BagCase], np.ndarray]
    reference: Callable[[BagCase, bool], np.ndarray]
    exact_for_max: bool  # a max pool copies values: bit for bit
    terms: Callable[[BagCase], np.ndarray] = id_counts


BAG_CALLS = [
    BagCall("embedding_bag", _forward, lambda c, a: reference_pool(c, a)[0], True, bag_sizes),
    BagCall(
        "EmbeddingBag.forward",
        _layer_forward,
        lambda c, a: reference_pool(c, a)[0],
        True,
        bag_sizes,
    ),
    BagCall("embedding_bag_backward", _dense_backward, lambda c, a: reference_grad(c, a)[0], False),
    BagCall(
        "embedding_bag_backward(sparse=True)",
        _sparse_backward,
        lambda c, a: reference_grad(c, a)[0],
        False,
    ),
    BagCall(
        "embedding_bag_backward(accumulate=True)",
        _accumulated_backward,
        lambda c, a: reference_grad(c, a)[0] + (np.abs if a else np.asarray)(c.weight),
        False,
    ),
    BagCall(
        "EmbeddingBag.backward",
        lambda c: _layer_backward(c, False),
        lambda c, a: reference_grad(c, a)[0],
        False,
    ),
    BagCall(
        "EmbeddingBag(sparse=True).backward",
        lambda c: _layer_backward(c, True),
        lambda c, a: reference_grad(c, a)[0],
        False,
    ),
]
BACKWARD_CALLS = [call for call in BAG_CALLS if "backward" in call.name]


def assert_bag_call_matches(call: BagCall, case: BagCase, got: np.ndarray) -> None:
    expected = call.reference(case, False)
    assert got.dtype == case.weight.dtype
    if call.exact_for_max and case.mode == "max":
        assert got.tobytes() == expected.astype(got.dtype).tobytes()
    else:
        assert_within_rounding(got, expected, call.reference(case, True), call.terms(case))


def _calls(calls: list[BagCall]):
    return pytest.mark.parametrize("call", calls, ids=lambda call: call.name)


@pytest.mark.usefixtures("restore_num_threads")
@_calls(BAG_CALLS)
@settings(max_examples=BAG_EXAMPLES)
@given(case=bag_cases())
def test_bag_calls_match_the_numpy_loop(call, case):
    fastembed.set_num_threads(case.threads)
    inputs = [a for a in (case.weight, case.grad, case.per_sample_weights) if a is not None]
    before = [a.tobytes() for a in inputs]
    assert_bag_call_matches(call, case, call.run(case))
    assert [a.tobytes() for a in inputs] == before


@settings(max_examples=BAG_EXAMPLES)
@given(case=bag_cases(modes=("max",)))
def test_max_argmax_is_the_first_maximum(case):
    """return_argmax gives, per element, the flat position of the first entry holding the max
    (-1 for a bag with no entries), and the backward routes each element there."""
    _, argmax = fastembed.embedding_bag(
        case.weight, case.ids, case.offsets, return_argmax=True, **case.options
    )
    assert argmax.tobytes() == reference_pool(case)[1].tobytes()


@settings(max_examples=BAG_EXAMPLES)
@given(case=bag_cases(modes=("sum",)))
def test_per_sample_weights_backward_matches_the_dot_products(case):
    if case.per_sample_weights is None:
        case.per_sample_weights = np.ones(np.shape(case.ids), case.weight.dtype)
    got = fastembed.embedding_bag_per_sample_weights_backward(
        case.grad,
        case.weight,
        case.ids,
        case.offsets,
        include_last_offset=case.include_last_offset,
        padding_idx=case.padding_idx,
    )
    assert got.dtype == case.weight.dtype
    assert_within_rounding(
        got,
        reference_per_sample_weights_grad(case),
        reference_per_sample_weights_grad(case, absolute=True),
    )


@pytest.mark.usefixtures("restore_num_threads")
@_calls(BACKWARD_CALLS)
@settings(max_examples=max(3, settings.default.max_examples // 10))
@given(case=bag_cases(min_ids=20_000, max_ids=60_000, max_rows=20_000))
def test_bag_backward_is_bitwise_identical_for_1_to_8_threads(call, case):
    results = []
    for threads in range(1, 9):
        fastembed.set_num_threads(threads)
        results.append(call.run(case))
    for threads, result in enumerate(results[1:], start=2):
        assert result.tobytes() == results[0].tobytes(), f"{threads} threads differ from 1"


# --- optimizer steps ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """An optimizer and its update of one touched row in float64: ``update(w, g, state, t)``
    changes the row ``w`` and its ``state`` (a dict of float64 arrays, rows of the optimizer's
    state) in place, ``t`` being the step number (from 1)."""

    name: str
    make: Callable[[], fastembed.optim.SparseOptimizer]
    update: Callable[[np.ndarray, np.ndarray, dict[str, np.ndarray], int], None]


def _sgd(w, g, state, t, lr=0.05):
    w -= lr * g


def _sgd_momentum(w, g, state, t, lr=0.05, momentum=0.8):
    state["momentum_buffer"][...] = momentum * state["momentum_buffer"] + g
    w -= lr * state["momentum_buffer"]


def _adagrad(w, g, state, t, lr=0.05, eps=1e-6):
    state["state_sum"][...] += g * g
    w -= lr * g / (np.sqrt(state["state_sum"]) + eps)


def _adagrad_rowwise(w, g, state, t, lr=0.05, eps=1e-6):
    state["state_sum"][...] += np.mean(g * g)
    w -= lr * g / (math.sqrt(state["state_sum"]) + eps)


def _adam(w, g, state, t, lr=0.01, beta1=0.9, beta2=0.99, eps=1e-6):
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g * g
    w -= lr * math.sqrt(1 - beta2**t) / (1 - beta1**t) * m / (np.sqrt(v) + eps)


STEPS = [
    Step("SGD", lambda: fastembed.optim.SGD(0.05), _sgd),
    Step("SGD(momentum)", lambda: fastembed.optim.SGD(0.05, momentum=0.8), _sgd_momentum),
    Step("Adagrad", lambda: fastembed.optim.Adagrad(0.05, eps=1e-6), _adagrad),
    Step(
        "Adagrad(rowwise)",
        lambda: fastembed.optim.Adagrad(0.05, eps=1e-6, rowwise=True),
        _adagrad_rowwise,
    ),
    Step("Adam", lambda: fastembed.optim.Adam(0.01, betas=(0.9, 0.99), eps=1e-6), _adam),
]


def reference_steps(step: Step, weight: np.ndarray, gradients: list[tuple[np.ndarray, np.ndarray]]):
    """The table after each (dense row gradient, touched ids) in turn, in float64."""
    table = weight.astype(np.float64)
    state_rows: dict[int, dict[str, np.ndarray]] = {}
    for t, (grad, touched) in enumerate(gradients, start=1):
        for row in touched:
            state = state_rows.setdefault(
                int(row),
                {
                    "momentum_buffer": np.zeros(table.shape[1]),
                    "state_sum": np.zeros(table.shape[1])
                    if step.name == "Adagrad"
                    else np.zeros(()),
                    "exp_avg": np.zeros(table.shape[1]),
                    "exp_avg_sq": np.zeros(table.shape[1]),
                },
            )
            step.update(table[row], grad[row], state, t)
    return table


def assert_update_matches(got: np.ndarray, before: np.ndarray, expected: np.ndarray, touched):
    """Untouched rows keep every bit; touched rows equal the float64 formula closely."""
    untouched = np.setdiff1d(np.arange(len(got)), touched)
    assert got[untouched].tobytes() == before[untouched].tobytes()
    tolerance = {np.float32: 2e-4, np.float64: 1e-10}[got.dtype.type]
    np.testing.assert_allclose(got[touched], expected[touched], rtol=tolerance, atol=tolerance)


def _embedding_gradient(weight, ids, grad, padding_idx, scale_grad_by_freq):
    """(dense float64 row gradient, touched ids) of a plain lookup, PyTorch's options."""
    flat = np.asarray(ids, np.int64).reshape(-1)
    result = np.zeros(weight.shape)
    np.add.at(result, flat, grad.reshape(len(flat), weight.shape[1]).astype(np.float64))
    if scale_grad_by_freq:
        result /= np.maximum(np.bincount(flat, minlength=len(weight)), 1)[:, None]
    touched = np.unique(flat)
    if padding_idx is not None:
        touched = touched[touched != padding_idx % len(weight)]
    return result, touched


@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("step", STEPS, ids=lambda step: step.name)
@settings(max_examples=BAG_EXAMPLES)
@given(data=st.data())
def test_embedding_optimizer_steps_match_the_formula(step, data):
    """Two steps through Embedding.backward(grad, optimizer=opt), two batches of ids."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    num_embeddings = data.draw(st.integers(1, 400))
    dim = data.draw(st.sampled_from(DIMS))
    dtype = data.draw(st.sampled_from(WEIGHT_DTYPES))
    padding_idx = data.draw(st.none() | st.integers(-num_embeddings, num_embeddings - 1))
    scale = data.draw(st.booleans())
    fastembed.set_num_threads(data.draw(st.integers(1, 8)))
    weight = rng.standard_normal((num_embeddings, dim)).astype(dtype)
    layer = fastembed.Embedding(
        weight=weight.copy(), padding_idx=padding_idx, scale_grad_by_freq=scale
    )
    optimizer = step.make()
    gradients = []
    for _ in range(2):
        shape = tuple(data.draw(st.lists(st.integers(0, 30), min_size=1, max_size=2)))
        distribution = data.draw(st.sampled_from(DISTRIBUTIONS))
        ids = draw_id_values(distribution, shape, num_embeddings, rng)
        grad = rng.standard_normal((*shape, dim)).astype(dtype)
        before = layer.weight.copy()
        layer(ids)
        assert layer.backward(grad, optimizer=optimizer) is None
        assert layer.grad is None
        gradients.append(_embedding_gradient(weight, ids, grad, padding_idx, scale))
        expected = reference_steps(step, weight, gradients)
        assert_update_matches(layer.weight, before, expected, gradients[-1][1])


@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("step", STEPS, ids=lambda step: step.name)
@settings(max_examples=BAG_EXAMPLES)
@given(case=bag_cases(max_ids=300, max_rows=400), second=st.integers(0, 2**32 - 1))
def test_bag_optimizer_steps_match_the_formula(step, case, second):
    """Two steps through EmbeddingBag.backward(grad, optimizer=opt) on the same bags."""
    fastembed.set_num_threads(case.threads)
    weight = case.weight.copy()
    layer = _layer(case)  # updates case.weight in place: the references see the current table
    optimizer = step.make()
    gradients = []
    for grad in (case.grad, np.random.default_rng(second).standard_normal(case.grad.shape)):
        case.grad = grad.astype(weight.dtype)
        before = layer.weight.copy()
        layer(case.ids, case.offsets, case.per_sample_weights)  # the max winners may change
        gradients.append(reference_grad(case))
        assert layer.backward(case.grad, optimizer=optimizer) is None
        expected = reference_steps(step, weight, gradients)
        assert_update_matches(layer.weight, before, expected, gradients[-1][1])


@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("step", STEPS, ids=lambda step: step.name)
@pytest.mark.parametrize("pooled", [False, True], ids=["Embedding", "EmbeddingBag"])
@settings(max_examples=max(2, settings.default.max_examples // 20))
@given(case=bag_cases(min_ids=20_000, max_ids=60_000, max_rows=20_000))
def test_optimizer_steps_are_bitwise_identical_for_1_to_8_threads(step, pooled, case):
    """Two steps from the same table and state: table and state keep the same bits."""
    results = []
    for threads in range(1, 9):
        fastembed.set_num_threads(threads)
        if pooled:
            layer = _layer(case)
            layer.weight = case.weight.copy()
            grad = case.grad
        else:
            layer = fastembed.Embedding(weight=case.weight.copy(), padding_idx=case.padding_idx)
            grad = np.resize(case.grad, (*case.flat_ids.shape, case.weight.shape[1]))
        optimizer = step.make()
        for _ in range(2):
            if pooled:
                layer(case.ids, case.offsets, case.per_sample_weights)
            else:
                layer(case.flat_ids)
            layer.backward(grad, optimizer=optimizer)
        state = optimizer.state(layer)
        results.append([layer.weight.tobytes()] + [state[k].tobytes() for k in sorted(state)])
    for threads, result in enumerate(results[1:], start=2):
        assert result == results[0], f"{threads} threads differ from 1"
