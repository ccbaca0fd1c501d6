"""Shared references, data generators and fixtures for the fastembed tests.

The references are deliberately the plainest NumPy there is: ``np.take`` for a lookup and
``np.add.at`` into a float64 table for the gradient, so they share nothing with the kernels.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import fastembed
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Hypothesis: "default" for local runs, "ci" (fewer examples) where time is short, e.g. the
# sanitized run in .ci/run. No deadline: sanitizers and busy CI machines make timing meaningless.
_HYPOTHESIS_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
settings.register_profile("default", max_examples=60, **_HYPOTHESIS_COMMON)
settings.register_profile("ci", max_examples=15, database=None, **_HYPOTHESIS_COMMON)
settings.load_profile(os.environ.get("FASTEMBED_HYPOTHESIS_PROFILE", "default"))

RUN_SLOW = os.environ.get("FASTEMBED_RUN_SLOW") == "1"


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` (huge memory or time) run only with FASTEMBED_RUN_SLOW=1."""
    if RUN_SLOW:
        return
    skip = pytest.mark.skip(reason="slow: set FASTEMBED_RUN_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


WEIGHT_DTYPES = [np.float32, np.float64]
KERNEL_ID_DTYPES = [np.int32, np.int64]

# The sorted scatter-add cuts a run into blocks of max(4096, 2 * D) rows once it is at least
# twice that long; 24_000 occurrences of one id make several blocks and a ragged last one.
HEAVY_RUN_LENGTH = 24_000

ID_DISTRIBUTIONS = ["uniform", "zipf", "heavy", "sorted", "tiled"]

# Values written into `out` before a call that must fail, to show that nothing was written.
SENTINEL = -12345.5


def make_ids(
    distribution: str, n: int, num_embeddings: int, rng: np.random.Generator, dtype=np.int64
) -> np.ndarray:
    """``n`` ids in ``[0, num_embeddings)``.

    ``uniform``: every id equally likely. ``zipf``: a long-tailed word-frequency law, where a
    few ids take most occurrences. ``heavy``: uniform background plus one id repeated
    ``HEAVY_RUN_LENGTH`` times and a second one 9_000 times (two heavy runs, shuffled in).
    ``sorted``: uniform ids in nondecreasing order (the kernels' sort skips its passes).
    ``tiled``: 0, 1, ..., num_embeddings - 1 repeated (equal radix buckets).
    """
    if distribution == "uniform":
        ids = rng.integers(0, num_embeddings, n)
    elif distribution == "zipf":
        ids = (rng.zipf(1.2, n) - 1) % num_embeddings
    elif distribution == "heavy":
        assert n > HEAVY_RUN_LENGTH + 9_000
        ids = rng.integers(0, num_embeddings, n)
        ids[:HEAVY_RUN_LENGTH] = num_embeddings // 2
        ids[HEAVY_RUN_LENGTH : HEAVY_RUN_LENGTH + 9_000] = num_embeddings - 1
        rng.shuffle(ids)
    elif distribution == "sorted":
        ids = np.sort(rng.integers(0, num_embeddings, n))
    elif distribution == "tiled":
        ids = np.arange(n) % num_embeddings
    else:
        raise ValueError(distribution)
    return ids.astype(dtype)


def make_table(num_embeddings: int, dim: int, dtype, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((num_embeddings, dim)).astype(dtype)


def make_grad(ids_shape: tuple, dim: int, dtype, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((*ids_shape, dim)).astype(dtype)


def make_integer_grad(ids_shape: tuple, dim: int, dtype, rng: np.random.Generator) -> np.ndarray:
    """Small integers as floats: every partial sum is exact, so any order gives the exact sum."""
    return rng.integers(-8, 9, (*ids_shape, dim)).astype(dtype)


def reference_gather(weight: np.ndarray, ids) -> np.ndarray:
    return np.take(weight, np.asarray(ids, dtype=np.int64), axis=0)


def reference_scatter_add(grad_output: np.ndarray, ids, num_embeddings: int) -> np.ndarray:
    """Exact-ish dense gradient in float64 (``np.add.at`` is unbuffered: repeats accumulate)."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    dim = grad_output.shape[-1]
    result = np.zeros((num_embeddings, dim), dtype=np.float64)
    np.add.at(result, ids, grad_output.reshape(-1, dim).astype(np.float64))
    return result


def assert_close_to_reference(got: np.ndarray, grad_output: np.ndarray, ids, num_embeddings):
    """``got`` equals the float64 reference up to the rounding of summing in ``got.dtype``.

    The bound scales with the sum of magnitudes of each id's rows (the classic bound for a
    rounded sum), with a factor that allows for ~16 roundings at full size: generous for any
    summation order, yet far below one missing or doubled row of a long run.
    """
    reference = reference_scatter_add(grad_output, ids, num_embeddings)
    magnitude = reference_scatter_add(np.abs(grad_output), ids, num_embeddings)
    eps = np.finfo(got.dtype).eps
    assert got.shape == reference.shape
    assert got.dtype == grad_output.dtype
    error = np.abs(got.astype(np.float64) - reference)
    bound = 16 * eps * magnitude + np.finfo(got.dtype).tiny
    worst = np.unravel_index(np.argmax(error - bound), error.shape)
    assert np.all(error <= bound), (
        f"at {worst}: got {got[worst]}, reference {reference[worst]}, bound {bound[worst]}"
    )


def fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """a * b + c of float32 values rounded once to float32, as a fused multiply-add does."""
    a, b, c = (np.asarray(x, np.float32).astype(np.float64) for x in (a, b, c))
    product = a * b  # exact: two 24-bit significands take at most 48 bits
    total = product + c
    # TwoSum: product + c == total + error exactly.
    c_part = total - product
    error = (product - (total - c_part)) + (c - c_part)
    nearest = total.astype(np.float32)
    other = np.nextafter(nearest, np.where(total > nearest, np.inf, -np.inf).astype(np.float32))
    # Rounding twice (to float64, then to float32) differs from rounding once only where the
    # float64 sum falls exactly halfway between two float32 values and was itself rounded: the
    # exact sum then lies on its error's side of that halfway point.
    halfway = (nearest.astype(np.float64) + other.astype(np.float64)) / 2 == total
    wrong_side = halfway & (error != 0) & ((error > 0) == (other > nearest))
    return np.where(wrong_side, other, nearest)


def unpack_quantized(q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, scale, bias) of every row of a QuantizedTable, read from its bytes with NumPy:
    int64 codes, float64 scales and biases (exactly the stored float32 / float16 values)."""
    packed = np.asarray(q.packed)
    if q.bits == 8:
        codes = packed[:, : q.embedding_dim].astype(np.int64)
        tail = packed[:, q.embedding_dim :].copy().view(np.float32)
    else:
        half = packed[:, : q.embedding_dim // 2]
        codes = np.stack([half & 15, half >> 4], axis=-1).reshape(len(packed), -1)
        codes = codes.astype(np.int64)
        tail = packed[:, q.embedding_dim // 2 :].copy().view(np.float16).astype(np.float32)
    return codes, tail[:, 0].astype(np.float64), tail[:, 1].astype(np.float64)


def quantized_sum_bags(
    q,
    ids: np.ndarray,
    offsets: np.ndarray,
    mode: str = "sum",
    per_sample_weights: np.ndarray | None = None,
    padding_idx: int | None = None,
) -> np.ndarray:
    """Sum or mean bags of a QuantizedTable as fastembed pools them, bit for bit, in NumPy.

    Each entry of a bag adds its row's codes times its scale (times its weight, rounded) into
    the running float32 sum in one fused multiply-add, from -0, in position order; its bias
    (times its weight, rounded) goes to a float32 sum of biases, added once at the end; mean
    then divides by the entries counted. Padding entries are skipped; an empty bag is zeros.
    """
    dim = q.embedding_dim
    codes, scale, bias = (part.astype(np.float32) for part in unpack_quantized(q))  # exact
    ids = np.asarray(ids).reshape(-1)
    weights = None if per_sample_weights is None else per_sample_weights.reshape(-1)
    bounds = np.append(offsets, len(ids))
    out = np.zeros((len(offsets), dim), np.float32)
    for b in range(len(offsets)):
        sums = np.full(dim, -0.0, np.float32)
        biases = np.float32(-0.0)
        count = 0
        for i in range(bounds[b], bounds[b + 1]):
            if ids[i] == padding_idx:
                continue
            row_scale, row_bias = scale[ids[i]], bias[ids[i]]
            if weights is not None:
                weight = np.float32(weights[i])
                row_scale, row_bias = row_scale * weight, row_bias * weight
            sums = fma32(codes[ids[i]], np.full(dim, row_scale, np.float32), sums)
            biases = np.float32(biases + row_bias)
            count += 1
        if count:
            out[b] = sums + biases
            if mode == "mean":
                out[b] /= np.float32(count)
    return out


def assert_bitwise_equal(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    assert a.tobytes() == b.tobytes()


@contextlib.contextmanager
def raises_leaving_untouched(
    exception: type[Exception], match: str | None, *arrays: np.ndarray
) -> Iterator[None]:
    """Expect ``exception`` (message matching ``match``) and check ``arrays`` kept every bit."""
    before = [np.array(a, copy=True) for a in arrays]
    with pytest.raises(exception, match=match):
        yield
    for index, (array, snapshot) in enumerate(zip(arrays, before)):
        assert array.tobytes() == snapshot.tobytes(), f"array #{index} was written to"


def sentinel_array(shape: tuple, dtype) -> np.ndarray:
    return np.full(shape, SENTINEL, dtype=dtype)


def run_python(code: str, **environment: str) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter that imports this process's fastembed."""
    env = {key: value for key, value in os.environ.items() if key != "FASTEMBED_NUM_THREADS"}
    env.update(environment)
    # The child must import the same fastembed as this process, installed or not.
    package_root = os.path.dirname(os.path.dirname(fastembed.__file__))
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, os.environ.get("PYTHONPATH")) if p
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


@pytest.fixture
def restore_num_threads() -> Iterator[None]:
    """Lets a test change the kernels' thread count; puts the original back afterwards."""
    original = fastembed.get_num_threads()
    yield
    fastembed.set_num_threads(original)
