"""Thread counts and concurrency: results never depend on either."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import fastembed
import numpy as np
import pytest
from conftest import (
    ID_DISTRIBUTIONS,
    KERNEL_ID_DTYPES,
    WEIGHT_DTYPES,
    assert_bitwise_equal,
    assert_close_to_reference,
    make_grad,
    make_ids,
    make_table,
    reference_gather,
    run_python,
)

THREAD_COUNTS = [1, 2, 3, 7]

# (num_embeddings, dim) for 40_000 ids: cache-sized gradients streamed in 2 and in 8 position
# blocks (blocked_reduce.hpp), and a two-pass radix sort (ids need more than 16 bits) whose dense
# result alone is enough work for every thread.
TABLE_SIZES = [(3_000, 16), (1_000, 32), (200_000, 8)]


@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("distribution", ID_DISTRIBUTIONS)
@pytest.mark.parametrize("grad_dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize(("num_embeddings", "dim"), TABLE_SIZES, ids=str)
def test_scatter_add_is_bitwise_identical_for_any_thread_count(
    distribution, grad_dtype, num_embeddings, dim, rng
):
    ids = make_ids(distribution, 40_000, num_embeddings, rng)
    grad = make_grad(ids.shape, dim, grad_dtype, rng)
    results = []
    for num_threads in THREAD_COUNTS:
        fastembed.set_num_threads(num_threads)
        assert fastembed.get_num_threads() == num_threads
        results.append(fastembed.scatter_add(grad, ids, num_embeddings))
    assert_close_to_reference(results[0], grad, ids, num_embeddings)
    for result in results[1:]:
        assert_bitwise_equal(result, results[0])


@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("distribution", ID_DISTRIBUTIONS)
@pytest.mark.parametrize("num_threads", THREAD_COUNTS)
def test_scatter_add_int32_and_int64_ids_agree_bitwise(distribution, num_threads, rng):
    fastembed.set_num_threads(num_threads)
    ids = make_ids(distribution, 40_000, 3_000, rng)
    grad = make_grad(ids.shape, 16, np.float32, rng)
    assert_bitwise_equal(
        fastembed.scatter_add(grad, ids.astype(np.int32), 3_000),
        fastembed.scatter_add(grad, ids.astype(np.int64), 3_000),
    )


@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("num_threads", THREAD_COUNTS)
@pytest.mark.parametrize("id_dtype", KERNEL_ID_DTYPES)
def test_gather_for_any_thread_count(num_threads, id_dtype, rng):
    fastembed.set_num_threads(num_threads)
    W = make_table(5_000, 32, np.float32, rng)
    ids = make_ids("zipf", 30_000, 5_000, rng, id_dtype)
    assert_bitwise_equal(fastembed.gather(W, ids), reference_gather(W, ids))


def test_get_num_threads_is_positive():
    assert isinstance(fastembed.get_num_threads(), int)
    assert fastembed.get_num_threads() >= 1


@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("n", [0, -1, -(2**40)])
def test_set_num_threads_below_one_is_value_error(n):
    before = fastembed.get_num_threads()
    with pytest.raises(ValueError, match=str(n)):
        fastembed.set_num_threads(n)
    assert fastembed.get_num_threads() == before


@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("n", [1.5, "2", True])
def test_set_num_threads_non_integer_is_type_error(n):
    before = fastembed.get_num_threads()
    with pytest.raises(TypeError):
        fastembed.set_num_threads(n)
    assert fastembed.get_num_threads() == before


@pytest.mark.parametrize("value", ["1", "3", "5"])
def test_environment_variable_sets_the_thread_count(value):
    child = run_python(
        "import fastembed, numpy as np\n"
        "print(fastembed.get_num_threads())\n"
        "g = np.ones((40000, 16), np.float32)\n"
        "ids = np.arange(40000) % 1000\n"
        "assert (fastembed.scatter_add(g, ids, 1000) == 40).all()\n",
        FASTEMBED_NUM_THREADS=value,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == [value]


def test_default_thread_count_is_the_usable_cores():
    child = run_python("import fastembed; print(fastembed.get_num_threads())")
    assert child.returncode == 0, child.stderr
    assert int(child.stdout) == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_invalid_environment_variable_still_gives_a_working_library(value):
    child = run_python(
        "import fastembed; print(fastembed.get_num_threads())", FASTEMBED_NUM_THREADS=value
    )
    assert child.returncode == 0, child.stderr
    assert int(child.stdout) >= 1


def test_forked_child_can_use_the_pool():
    """The pool's threads do not survive fork(); the child must rebuild them, not hang."""
    child = run_python(
        "import os, fastembed, numpy as np\n"
        "fastembed.set_num_threads(2)\n"
        "g = np.ones((40000, 16), np.float32)\n"
        "ids = np.arange(40000) % 1000\n"
        "expected = fastembed.scatter_add(g, ids, 1000)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    ok = np.array_equal(fastembed.scatter_add(g, ids, 1000), expected)\n"
        "    os._exit(0 if ok else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "assert os.waitstatus_to_exitcode(status) == 0, status\n"
        "print('ok')\n"
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["ok"]


_HELPER_MASKS = """
import json, os, fastembed, numpy as np
fastembed.set_num_threads(3)
g = np.ones((40000, 16), np.float32)
ids = np.arange(40000) % 1000
expected = fastembed.scatter_add(g, ids, 1000)  # starts the two helpers, with every CPU
allowed = sorted(os.sched_getaffinity(0))
helpers = [
    int(t) for t in os.listdir("/proc/self/task")
    if open(f"/proc/self/task/{t}/comm").read().strip() == "fastembed"
]
masks = {}
for cpu in allowed[:2]:
    os.sched_setaffinity(0, {cpu})  # this thread, the caller, runs on `cpu` alone
    assert np.array_equal(fastembed.scatter_add(g, ids, 1000), expected)
    masks[cpu] = [sorted(os.sched_getaffinity(t)) for t in helpers]
print(json.dumps({"allowed": allowed, "helpers": len(helpers), "masks": masks}))
"""


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and two CPUs",
)
@pytest.mark.parametrize("setting", [None, "1", "0"])
def test_helpers_stay_off_the_callers_cpu(setting):
    """Helpers may run on every CPU the pool's creator could, less the one its caller is on
    (a scheduler may otherwise wake them there); FASTEMBED_HELPER_AFFINITY=0 turns it off."""
    environment = {} if setting is None else {"FASTEMBED_HELPER_AFFINITY": setting}
    child = run_python(_HELPER_MASKS, **environment)
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    allowed = report["allowed"]
    assert report["helpers"] == 2
    for cpu, masks in report["masks"].items():
        expected = allowed if setting == "0" else [c for c in allowed if c != int(cpu)]
        assert masks == [expected, expected]


# --- several Python threads at once ------------------------------------------------------


def _workload(seed: int) -> tuple:
    """Inputs for one caller: each its own sizes, dtypes and id distribution."""
    rng = np.random.default_rng(seed)
    num_embeddings = int(rng.integers(100, 5_000))
    dim = int(rng.integers(1, 24))
    dtype = WEIGHT_DTYPES[seed % 2]
    id_dtype = KERNEL_ID_DTYPES[(seed // 2) % 2]
    ids = make_ids(ID_DISTRIBUTIONS[seed % 3], 40_000, num_embeddings, rng, id_dtype)
    return make_table(num_embeddings, dim, dtype, rng), ids, make_grad(ids.shape, dim, dtype, rng)


def _forward_and_backward(weight, ids, grad):
    return fastembed.gather(weight, ids), fastembed.scatter_add(grad, ids, weight.shape[0])


@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("num_threads", [1, 2, 3])
def test_concurrent_callers_get_the_serial_results(num_threads):
    fastembed.set_num_threads(num_threads)
    workloads = [_workload(seed) for seed in range(8)]
    serial = [_forward_and_backward(*w) for w in workloads]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            concurrent = list(pool.map(lambda w: _forward_and_backward(*w), workloads))
            for (gathered, grad), (gathered_serial, grad_serial) in zip(concurrent, serial):
                assert_bitwise_equal(gathered, gathered_serial)
                assert_bitwise_equal(grad, grad_serial)


@pytest.mark.usefixtures("restore_num_threads")
def test_changing_the_thread_count_while_others_compute():
    workloads = [_workload(seed) for seed in range(6)]
    serial = [_forward_and_backward(*w) for w in workloads]

    def resize():
        for n in [3, 1, 2, 7, 2]:
            fastembed.set_num_threads(n)

    with ThreadPoolExecutor(max_workers=7) as pool:
        resizing = pool.submit(resize)
        concurrent = list(pool.map(lambda w: _forward_and_backward(*w), workloads))
        resizing.result()
    for (gathered, grad), (gathered_serial, grad_serial) in zip(concurrent, serial):
        assert_bitwise_equal(gathered, gathered_serial)
        assert_bitwise_equal(grad, grad_serial)


def test_concurrent_errors_do_not_disturb_other_callers(rng):
    """One caller's IndexError reaches that caller only; the others still succeed."""
    W = make_table(1_000, 8, np.float32, rng)
    good = make_ids("zipf", 40_000, 1_000, rng)
    bad = good.copy()
    bad[12_345] = 1_000
    grad = make_grad(good.shape, 8, np.float32, rng)
    expected = _forward_and_backward(W, good, grad)

    def call(ids):
        try:
            return _forward_and_backward(W, ids, grad)
        except IndexError as error:
            return error

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, [good, bad] * 6))
    for gathered, grad_weight in results[0::2]:
        assert_bitwise_equal(gathered, expected[0])
        assert_bitwise_equal(grad_weight, expected[1])
    for result in results[1::2]:
        assert isinstance(result, IndexError) and "ids[12345]" in str(result)
