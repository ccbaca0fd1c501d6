"""Property tests: every public call against a plain NumPy reference on random inputs.

Each public entry point is one row of ``PUBLIC_CALLS``: how to call it on a drawn ``Case`` and
the NumPy formula it must match. A new API (an option, a bag, a sparse gradient) is covered by
every property below once it has a row there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastembed
import numpy as np
import pytest
from conftest import SENTINEL, WEIGHT_DTYPES
from hypothesis import given, settings
from hypothesis import strategies as st

# --- drawn inputs -----------------------------------------------------------------------------

# D = 1, widths that are not a multiple of any SIMD width, and rows longer than a cache line.
DIMS = [1, 2, 3, 7, 8, 16, 17, 64, 65, 300]

ID_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]

# How the ids reach the public call: an array of one of ID_DTYPES in some layout, or Python.
ID_FORMS = ["array", "byteswapped", "non_contiguous", "fortran", "python"]

DISTRIBUTIONS = ["uniform", "all_equal", "all_distinct", "zipf", "heavy"]


@dataclass
class Case:
    weight: np.ndarray  # (V, D), float32 or float64
    ids: Any  # what the caller passes: an integer array of any dtype/layout, a list or an int
    flat_ids: np.ndarray  # the same ids as an int64 array (for the references)
    grad: np.ndarray  # ids.shape + (D,), dtype of weight
    threads: int
    use_out: bool
    # Options, used by the rows of PUBLIC_CALLS that take them.
    padding_idx: int | None = None  # in [-V, V): negative counts from the end
    scale_grad_by_freq: bool = False
    max_norm: float = 1.0
    norm_type: float = 2.0

    @property
    def num_embeddings(self) -> int:
        return self.weight.shape[0]


def draw_id_values(
    distribution: str, shape: tuple, num_embeddings: int, rng: np.random.Generator
) -> np.ndarray:
    size = int(np.prod(shape))
    if distribution == "uniform":
        ids = rng.integers(0, num_embeddings, size)
    elif distribution == "all_equal":
        ids = np.full(size, rng.integers(0, num_embeddings))
    elif distribution == "all_distinct":  # every id once per cycle, shuffled
        ids = rng.permutation(np.arange(size) % num_embeddings)
    elif distribution == "zipf":
        ids = (rng.zipf(1.3, size) - 1) % num_embeddings
    else:  # "heavy": one id takes a random majority of the positions
        ids = rng.integers(0, num_embeddings, size)
        ids[rng.random(size) < rng.uniform(0.5, 0.95)] = rng.integers(0, num_embeddings)
    return ids.reshape(shape).astype(np.int64)


def present_ids(values: np.ndarray, form: str, id_dtype, rng: np.random.Generator) -> Any:
    """``values`` in the form a caller might hand over (the same ids, another representation)."""
    if form == "python":
        return values.tolist()  # a nested list, or a plain int for 0-d ids
    array = values.astype(id_dtype)
    if form == "byteswapped":
        return array.astype(array.dtype.newbyteorder())
    if form == "non_contiguous" and array.ndim >= 1:
        wide = np.zeros((*array.shape[:-1], 2 * array.shape[-1]), dtype=id_dtype)
        wide[..., ::2] = array
        wide[..., 1::2] = rng.integers(-100, 100, wide[..., 1::2].shape).astype(id_dtype)
        return wide[..., ::2]
    if form == "fortran" and array.ndim >= 2:  # (np.asfortranarray makes 0-d ids 1-d)
        return np.asfortranarray(array)
    return array


@st.composite
def cases(draw, min_size: int = 0, max_size: int = 2_000, max_rows: int = 5_000) -> Case:
    num_embeddings = draw(st.one_of(st.just(1), st.integers(1, 16), st.integers(1, max_rows)))
    dim = draw(st.sampled_from(DIMS))
    dtype = draw(st.sampled_from(WEIGHT_DTYPES))
    if min_size > 0:  # a batch of at least min_size ids: (n,) or (n // width, width)
        size = draw(st.integers(min_size, max_size))
        width = draw(st.sampled_from([1, 3, 50]))
        shape = (size,) if width == 1 else (size // width, width)
    else:  # 0-d to 3-d, sides of any length including 0
        ndim = draw(st.integers(0, 3))
        side = st.integers(0, int(max_size ** (1 / max(ndim, 1))))
        shape = tuple(draw(st.lists(side, min_size=ndim, max_size=ndim)))
    distribution = draw(st.sampled_from(DISTRIBUTIONS))
    form = draw(st.sampled_from(ID_FORMS))
    # Only id dtypes that can hold every id of this table.
    id_dtype = draw(
        st.sampled_from([t for t in ID_DTYPES if np.iinfo(t).max >= num_embeddings - 1])
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ids = present_ids(draw_id_values(distribution, shape, num_embeddings, rng), form, id_dtype, rng)
    # As NumPy reads them: a list loses zero-length axes before the last ([[]] is (1, 0)).
    flat_ids = np.array(ids, dtype=np.int64)
    weight = rng.standard_normal((num_embeddings, dim)).astype(dtype)
    grad = rng.standard_normal((*flat_ids.shape, dim)).astype(dtype)
    return Case(
        weight=weight,
        ids=ids,
        flat_ids=flat_ids,
        grad=grad,
        threads=draw(st.integers(1, 8)),
        use_out=draw(st.booleans()),
        padding_idx=draw(st.none() | st.integers(-num_embeddings, num_embeddings - 1)),
        scale_grad_by_freq=draw(st.booleans()),
        max_norm=draw(st.sampled_from([0.5, 3.0, 8.0, 100.0])),
        norm_type=draw(st.sampled_from([1.0, 2.0, 3.5, np.inf])),
    )


# --- the public calls and their references ------------------------------------------------------


@dataclass(frozen=True)
class PublicCall:
    """One public entry point: ``run(case)`` calls it, ``reference(case, absolute)`` is the plain
    NumPy formula in float64 (with ``absolute``, every float input replaced by its absolute
    value: the magnitude that bounds the rounding error of a sum). ``sums``: whether the result
    adds or scales values (compared within that bound) or only copies them (bit for bit)."""

    name: str
    run: Callable[[Case], np.ndarray]
    reference: Callable[[Case, bool], np.ndarray]
    sums: bool


def _out_for(case: Case, shape: tuple) -> np.ndarray | None:
    return np.full(shape, SENTINEL, dtype=case.weight.dtype) if case.use_out else None


def _rows_shape(case: Case) -> tuple:
    return (*case.flat_ids.shape, case.weight.shape[1])


def _gather(case: Case) -> np.ndarray:
    out = _out_for(case, _rows_shape(case))
    result = fastembed.gather(case.weight, case.ids, out=out)
    assert out is None or result is out
    return result


def _scatter_add(case: Case) -> np.ndarray:
    out = _out_for(case, case.weight.shape)
    result = fastembed.scatter_add(case.grad, case.ids, case.num_embeddings, out=out)
    assert out is None or result is out
    return result


def _embedding_forward(case: Case) -> np.ndarray:
    out = _out_for(case, _rows_shape(case))
    result = fastembed.Embedding(weight=case.weight).forward(case.ids, out=out)
    assert out is None or result is out
    return result


def _embedding_backward(case: Case) -> np.ndarray:
    emb = fastembed.Embedding(weight=case.weight)
    emb(case.ids)
    grad = emb.backward(case.grad)
    assert emb.grad is grad
    return grad


def _sparse_grad(case: Case) -> np.ndarray:
    grad = fastembed.sparse_grad(case.grad, case.ids, case.num_embeddings)
    assert np.array_equal(grad.indices, np.unique(case.flat_ids))
    return grad.to_dense()


def _embedding_sparse_backward(case: Case) -> np.ndarray:
    emb = fastembed.Embedding(weight=case.weight, sparse=True)
    emb(case.ids)
    grad = emb.backward(case.grad)
    assert isinstance(grad, fastembed.RowSparseGrad) and emb.grad is grad
    return grad.to_dense()


def _grad_options(case: Case) -> dict[str, Any]:
    return {"padding_idx": case.padding_idx, "scale_grad_by_freq": case.scale_grad_by_freq}


def _scatter_add_options(case: Case) -> np.ndarray:
    return fastembed.scatter_add(case.grad, case.ids, case.num_embeddings, **_grad_options(case))


def _scatter_add_accumulate(case: Case) -> np.ndarray:
    out = case.weight.copy()  # the gradient so far
    result = fastembed.scatter_add(
        case.grad, case.ids, case.num_embeddings, out=out, accumulate=True, **_grad_options(case)
    )
    assert result is out
    return result


def _sparse_grad_options(case: Case) -> np.ndarray:
    return fastembed.sparse_grad(
        case.grad, case.ids, case.num_embeddings, **_grad_options(case)
    ).to_dense()


def _embedding_backward_options(case: Case) -> np.ndarray:
    emb = fastembed.Embedding(weight=case.weight, **_grad_options(case))
    emb(case.ids)
    return emb.backward(case.grad)


def _gather_max_norm(case: Case) -> np.ndarray:
    table = case.weight.copy()  # renormalised in place
    return fastembed.gather(table, case.ids, max_norm=case.max_norm, norm_type=case.norm_type)


def _maybe_abs(array: np.ndarray, absolute: bool) -> np.ndarray:
    return np.abs(array) if absolute else array


def reference_lookup(case: Case, absolute: bool) -> np.ndarray:
    return _maybe_abs(case.weight, absolute)[case.flat_ids].astype(np.float64)


def reference_dense_grad(case: Case, absolute: bool) -> np.ndarray:
    dim = case.weight.shape[1]
    result = np.zeros((case.num_embeddings, dim), dtype=np.float64)
    grad = _maybe_abs(case.grad, absolute).reshape(-1, dim).astype(np.float64)
    np.add.at(result, case.flat_ids.reshape(-1), grad)
    return result


def _padding_row(case: Case) -> int | None:
    return None if case.padding_idx is None else case.padding_idx % case.num_embeddings


def reference_dense_grad_with_options(case: Case, absolute: bool) -> np.ndarray:
    """PyTorch's rule: the plain sum, divided by the id's count, and zero for the padding row."""
    result = reference_dense_grad(case, absolute)
    if case.scale_grad_by_freq:
        counts = np.bincount(case.flat_ids.reshape(-1), minlength=case.num_embeddings)
        result /= np.maximum(counts, 1)[:, None]
    if _padding_row(case) is not None:
        result[_padding_row(case)] = 0
    return result


def reference_accumulated_grad(case: Case, absolute: bool) -> np.ndarray:
    return reference_dense_grad_with_options(case, absolute) + _maybe_abs(case.weight, absolute)


def reference_renormalised_lookup(case: Case, absolute: bool) -> np.ndarray:
    """Each distinct looked-up row with norm > max_norm scaled by max_norm / (norm + 1e-7)."""
    weight = case.weight.astype(np.float64)
    for row in np.unique(case.flat_ids):
        norm = np.linalg.norm(weight[row], ord=case.norm_type)
        if norm > case.max_norm:
            weight[row] *= case.max_norm / (norm + 1e-7)
    return _maybe_abs(weight, absolute)[case.flat_ids]


PUBLIC_CALLS = [
    PublicCall("gather", _gather, reference_lookup, sums=False),
    PublicCall("scatter_add", _scatter_add, reference_dense_grad, sums=True),
    PublicCall("Embedding.forward", _embedding_forward, reference_lookup, sums=False),
    PublicCall("Embedding.backward", _embedding_backward, reference_dense_grad, sums=True),
    PublicCall("sparse_grad", _sparse_grad, reference_dense_grad, sums=True),
    PublicCall(
        "Embedding(sparse=True).backward",
        _embedding_sparse_backward,
        reference_dense_grad,
        sums=True,
    ),
    PublicCall(
        "scatter_add(padding_idx, scale_grad_by_freq)",
        _scatter_add_options,
        reference_dense_grad_with_options,
        sums=True,
    ),
    PublicCall(
        "scatter_add(accumulate=True)",
        _scatter_add_accumulate,
        reference_accumulated_grad,
        sums=True,
    ),
    PublicCall(
        "sparse_grad(padding_idx, scale_grad_by_freq)",
        _sparse_grad_options,
        reference_dense_grad_with_options,
        sums=True,
    ),
    PublicCall(
        "Embedding(padding_idx, scale_grad_by_freq).backward",
        _embedding_backward_options,
        reference_dense_grad_with_options,
        sums=True,
    ),
    # Renormalising scales rows: compared within the rounding bound like a sum.
    PublicCall(
        "gather(max_norm, norm_type)", _gather_max_norm, reference_renormalised_lookup, sums=True
    ),
]
SUMMING_CALLS = [call for call in PUBLIC_CALLS if call.sums]


def assert_matches_reference(call: PublicCall, case: Case, got: np.ndarray) -> None:
    expected = call.reference(case, False)
    assert got.shape == expected.shape
    assert got.dtype == case.weight.dtype
    if not call.sums:
        assert got.tobytes() == expected.astype(got.dtype).tobytes()
        return
    # A rounded sum in any order is within (terms - 1) * eps * sum(|terms|) of the exact one; 16
    # is ample for the orders used (position order, fixed blocks) and far below a lost row.
    bound = 16 * np.finfo(got.dtype).eps * call.reference(case, True) + np.finfo(got.dtype).tiny
    error = np.abs(got.astype(np.float64) - expected)
    worst = np.unravel_index(np.argmax(error - bound), error.shape) if error.size else ()
    assert np.all(error <= bound), f"at {worst}: got {got[worst]}, expected {expected[worst]}"


def _calls(calls: list[PublicCall]):
    return pytest.mark.parametrize("call", calls, ids=lambda call: call.name)


# --- properties -------------------------------------------------------------------------------


@pytest.mark.usefixtures("restore_num_threads")
@_calls(PUBLIC_CALLS)
@given(case=cases())
def test_matches_numpy_reference(call, case):
    fastembed.set_num_threads(case.threads)
    weight_before = case.weight.copy()
    grad_before = case.grad.copy()
    got = call.run(case)
    assert_matches_reference(call, case, got)
    assert case.weight.tobytes() == weight_before.tobytes()
    assert case.grad.tobytes() == grad_before.tobytes()


@pytest.mark.usefixtures("restore_num_threads")
@_calls(SUMMING_CALLS)
@settings(max_examples=max(3, settings.default.max_examples // 6))
@given(case=cases(min_size=20_000, max_size=60_000, max_rows=300_000))
def test_sums_are_bitwise_identical_for_1_to_8_threads(call, case):
    """Batches large enough that every thread count really splits the work."""
    results = []
    for threads in range(1, 9):
        fastembed.set_num_threads(threads)
        results.append(call.run(case))
    assert_matches_reference(call, case, results[0])
    for threads, result in enumerate(results[1:], start=2):
        assert result.tobytes() == results[0].tobytes(), f"{threads} threads differ from 1"


@_calls(PUBLIC_CALLS)
@given(case=cases(max_size=500))
def test_ids_as_int64_array_give_the_same_bits(call, case):
    """Any id dtype, byte order, layout or Python form gives what an int64 array gives."""
    got = call.run(case)
    case.ids = case.flat_ids
    assert got.tobytes() == call.run(case).tobytes()
