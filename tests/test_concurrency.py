"""Concurrency: many Python threads at once, thread counts changing under them, and fork().

Every wait has a timeout, so a deadlock fails a test instead of hanging the run. Work that
could hang for good runs in daemon threads or child processes, which a failed test leaves behind
without blocking the interpreter's exit.

The per-layer work is one row of ``LAYER_STEPS``: a new layer or optimizer adds a row and is
run by every test here.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import fastembed
import numpy as np
import pytest
from conftest import make_grad, make_ids, run_python

NUM_CALLERS = 12  # Python threads calling at once (the issue asks for at least 8)
TIMEOUT = 120.0  # seconds; generous for a loaded 2-core machine under sanitizers


@dataclass(frozen=True)
class Workload:
    """One caller's inputs: its own table size, dtype, ids and gradient."""

    weight: np.ndarray
    ids: np.ndarray
    grad: np.ndarray


def make_workload(seed: int, n: int = 30_000, max_embeddings: int = 20_000) -> Workload:
    rng = np.random.default_rng(seed)
    num_embeddings = int(rng.integers(50, max_embeddings))
    dim = int(rng.choice([1, 3, 8, 17, 32]))
    dtype = [np.float32, np.float64][seed % 2]
    ids = make_ids(
        ["uniform", "zipf"][seed // 2 % 2],
        n,
        num_embeddings,
        rng,
        [np.int32, np.int64][seed % 3 % 2],
    )
    weight = rng.standard_normal((num_embeddings, dim)).astype(dtype)
    return Workload(weight, ids.reshape(-1, 10), make_grad((n // 10, 10), dim, dtype, rng))


def embedding_step(w: Workload) -> tuple[np.ndarray, ...]:
    """A fresh layer on a copy of the table: forward, then backward."""
    layer = fastembed.Embedding(weight=w.weight.copy())
    return layer(w.ids), layer.backward(w.grad)


def functional_step(w: Workload) -> tuple[np.ndarray, ...]:
    return fastembed.gather(w.weight, w.ids), fastembed.scatter_add(
        w.grad, w.ids, w.weight.shape[0]
    )


def embedding_with_options_step(w: Workload) -> tuple[np.ndarray, ...]:
    """Options that touch the table (max_norm renormalises it in place) and the gradient, with
    a second backward accumulating into the first."""
    layer = fastembed.Embedding(
        weight=w.weight.copy(), max_norm=1.5, padding_idx=3, scale_grad_by_freq=True
    )
    rows = layer(w.ids)
    layer.backward(w.grad)
    return rows, layer.backward(w.grad).copy(), layer.weight


def sparse_embedding_step(w: Workload) -> tuple[np.ndarray, ...]:
    layer = fastembed.Embedding(weight=w.weight.copy(), sparse=True)
    rows = layer(w.ids)
    grad = layer.backward(w.grad)
    return rows, grad.indices, grad.values


def bag_gradient(w: Workload, num_bags: int) -> np.ndarray:
    """A (num_bags, D) gradient drawn from the workload's."""
    dim = w.weight.shape[1]
    return np.ascontiguousarray(np.resize(w.grad.reshape(-1, dim), (num_bags, dim)))


def uneven_offsets(n: int) -> np.ndarray:
    """Bags of 10 and 37 ids interleaved, and empty ones where both start together."""
    return np.sort(np.concatenate([np.arange(0, n, 10), np.arange(0, n, 37)]))


def bag_step(w: Workload) -> tuple[np.ndarray, ...]:
    """Fixed-length bags (the 2-d ids), mean, with padding; two backwards accumulate."""
    layer = fastembed.EmbeddingBag(weight=w.weight.copy(), mode="mean", padding_idx=3)
    rows = layer(w.ids)
    grad = bag_gradient(w, len(rows))
    layer.backward(grad)
    return rows, layer.backward(grad).copy()


def bag_with_offsets_step(w: Workload) -> tuple[np.ndarray, ...]:
    """1-d ids with uneven offsets, sum with per-sample weights, sparse gradient."""
    ids = w.ids.reshape(-1)
    weights = w.grad.reshape(-1)[: ids.size].copy()
    layer = fastembed.EmbeddingBag(weight=w.weight.copy(), mode="sum", sparse=True)
    rows = layer(ids, uneven_offsets(ids.size), weights)
    grad = layer.backward(bag_gradient(w, len(rows)))
    return rows, grad.indices, grad.values, layer.grad_per_sample_weights


def max_bag_step(w: Workload) -> tuple[np.ndarray, ...]:
    ids = w.ids.reshape(-1)
    offsets = uneven_offsets(ids.size)
    rows, argmax = fastembed.embedding_bag(w.weight, ids, offsets, mode="max", return_argmax=True)
    grad = fastembed.embedding_bag_backward(
        bag_gradient(w, len(rows)),
        ids,
        offsets,
        num_embeddings=w.weight.shape[0],
        mode="max",
        argmax=argmax,
    )
    return rows, argmax, grad


def optimizer_step(make: Callable[[], fastembed.optim.SparseOptimizer], pooled: bool):
    """Two fused training steps of a fresh layer and optimizer: the table and the state."""

    def step(w: Workload) -> tuple[np.ndarray, ...]:
        optimizer = make()
        if pooled:
            layer = fastembed.EmbeddingBag(weight=w.weight.copy(), mode="max")
            grad = bag_gradient(w, len(w.ids))
        else:
            layer = fastembed.Embedding(weight=w.weight.copy(), padding_idx=0)
            grad = w.grad
        for _ in range(2):
            layer(w.ids)
            layer.backward(grad, optimizer=optimizer)
        state = optimizer.state(layer)
        return (layer.weight, *(state[name] for name in sorted(state)))

    return step


LAYER_STEPS: dict[str, Callable[[Workload], tuple[np.ndarray, ...]]] = {
    "Embedding": embedding_step,
    "functional": functional_step,
    "Embedding with options": embedding_with_options_step,
    "sparse Embedding": sparse_embedding_step,
    "EmbeddingBag": bag_step,
    "EmbeddingBag with offsets": bag_with_offsets_step,
    "embedding_bag max": max_bag_step,
    "Embedding + SGD(momentum)": optimizer_step(lambda: fastembed.optim.SGD(0.1, 0.9), False),
    "Embedding + Adagrad(rowwise)": optimizer_step(
        lambda: fastembed.optim.Adagrad(0.1, rowwise=True), False
    ),
    "EmbeddingBag + Adagrad": optimizer_step(lambda: fastembed.optim.Adagrad(0.1), True),
    "EmbeddingBag + Adam": optimizer_step(lambda: fastembed.optim.Adam(0.01), True),
}


def run_in_threads(jobs: list[Callable[[], object]], timeout: float = TIMEOUT) -> list[object]:
    """Runs every job in its own daemon thread, started together; returns their results.

    Fails (rather than hangs) if any job has not finished within ``timeout`` seconds.
    """
    results: list[object] = [None] * len(jobs)
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def run(index: int, job: Callable[[], object]) -> None:
        try:
            start.wait(timeout)
            results[index] = job()
        except BaseException as error:  # reported on the main thread
            errors.append(error)

    threads = [
        threading.Thread(target=run, args=(i, job), daemon=True) for i, job in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        if thread.is_alive():
            pytest.fail(f"a caller did not finish within {timeout} s: deadlock?")
    if errors:
        raise errors[0]
    return results


def assert_same_results(got: tuple[np.ndarray, ...], expected: tuple[np.ndarray, ...]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


@pytest.fixture(scope="module")
def workloads() -> list[Workload]:
    return [make_workload(seed) for seed in range(NUM_CALLERS)]


@pytest.fixture(scope="module")
def large_workloads() -> list[Workload]:
    """Backwards whose scratch (>= 1 MiB: sort keys, block sums) comes from the buffer cache."""
    return [make_workload(seed, n=200_000, max_embeddings=300_000) for seed in range(4)]


# --- many callers -------------------------------------------------------------------------------


@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("step", list(LAYER_STEPS.values()), ids=list(LAYER_STEPS))
@pytest.mark.parametrize("num_threads", [1, 2, 8])
def test_callers_on_separate_layers_get_the_serial_results(step, num_threads, workloads):
    fastembed.set_num_threads(num_threads)
    serial = [step(w) for w in workloads]
    for _ in range(2):
        concurrent = run_in_threads([lambda w=w: step(w) for w in workloads])
        for got, expected in zip(concurrent, serial):
            assert_same_results(got, expected)


@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("num_threads", [1, 4])
def test_lookups_on_one_shared_read_only_table(num_threads, rng):
    fastembed.set_num_threads(num_threads)
    table = rng.standard_normal((50_000, 16)).astype(np.float32)
    table.flags.writeable = False
    layer = fastembed.Embedding(weight=table)
    batches = [make_ids(d, 20_000, 50_000, rng) for d in ["uniform", "zipf"] * (NUM_CALLERS // 2)]
    snapshot = table.tobytes()

    def lookups(ids: np.ndarray) -> tuple[np.ndarray, ...]:
        out = np.empty((ids.size, 16), np.float32)
        return (
            fastembed.gather(table, ids),
            fastembed.gather(table, ids, out=out),
            layer.weight[ids],
        )

    for got in run_in_threads([lambda ids=ids: lookups(ids) for ids in batches]):
        assert_same_results(got[:2], (got[2], got[2]))
    assert table.tobytes() == snapshot


@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("step", list(LAYER_STEPS.values()), ids=list(LAYER_STEPS))
def test_changing_the_thread_count_while_others_compute(step, workloads):
    """Results never depend on the thread count, so they must equal the serial ones whatever
    the count is at any moment; and set_num_threads (which waits for running jobs) must never
    deadlock with them."""
    serial = [step(w) for w in workloads[:8]]
    computing = threading.Event()
    computing.set()

    def compute(w: Workload) -> list[tuple[np.ndarray, ...]]:
        return [step(w) for _ in range(3)]

    def resize(seed: int) -> int:
        changes = 0
        rng = np.random.default_rng(seed)
        while computing.is_set():
            fastembed.set_num_threads(int(rng.integers(1, 9)))
            changes += 1
        return changes

    resizers = [threading.Thread(target=resize, args=(s,), daemon=True) for s in range(2)]
    for thread in resizers:
        thread.start()
    try:
        results = run_in_threads([lambda w=w: compute(w) for w in workloads[:8]])
    finally:
        computing.clear()
    for thread in resizers:
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "set_num_threads did not return: deadlock?"
    for rounds, expected in zip(results, serial):
        for got in rounds:
            assert_same_results(got, expected)


# --- fork ---------------------------------------------------------------------------------------


def run_in_forked_child(check: Callable[[], bool]) -> None:
    """Runs ``check`` in a child made by os.fork(); fails unless it returns True in time. The
    child inherits this process's pool exactly as fork() leaves it."""
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only, never return into pytest
        status = 4
        try:
            status = 0 if check() else 3
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
        os._exit(status)
    deadline = time.monotonic() + TIMEOUT
    while True:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"forked child did not finish within {TIMEOUT} s: deadlock?")
        time.sleep(0.005)
    exit_code = os.waitstatus_to_exitcode(status)
    assert exit_code == 0, f"forked child failed (exit code {exit_code}; 3: wrong results)"


def serial_results(workloads: list[Workload]) -> dict[str, list[tuple[np.ndarray, ...]]]:
    return {name: [step(w) for w in workloads] for name, step in LAYER_STEPS.items()}


def child_results_match(workloads: list[Workload], expected: dict[str, list[tuple]]) -> bool:
    """Every step at several thread counts gives the bytes it gave in the parent."""
    for num_threads in (1, 3, 8):
        fastembed.set_num_threads(num_threads)
        for name, step in LAYER_STEPS.items():
            for w, want in zip(workloads, expected[name]):
                if any(a.tobytes() != b.tobytes() for a, b in zip(step(w), want)):
                    return False
    return True


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")


@needs_fork
@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("num_threads", [1, 4])
def test_fork_after_the_pool_was_used(num_threads, workloads):
    fastembed.set_num_threads(num_threads)
    expected = serial_results(workloads[:4])  # the pool's workers now exist
    run_in_forked_child(lambda: child_results_match(workloads[:4], expected))
    # The parent's pool is unaffected.
    for w, want in zip(workloads[:4], expected["functional"]):
        assert_same_results(functional_step(w), want)


@needs_fork
@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize("sizes", ["workloads", "large_workloads"])
def test_fork_while_other_threads_compute(sizes, request):
    """fork() while Python threads are inside kernels: the child gets a usable pool and buffer
    cache (it waits for no job or lock of the parent's) and the parent's callers finish with
    correct results."""
    workloads = request.getfixturevalue(sizes)
    fastembed.set_num_threads(4)
    expected = [functional_step(w) for w in workloads[:6]]
    child_expected = serial_results(workloads[:2])
    busy = threading.Event()
    busy.set()

    def keep_computing(w: Workload, want: tuple) -> bool:
        ok = True
        while busy.is_set():
            ok &= all(a.tobytes() == b.tobytes() for a, b in zip(functional_step(w), want))
        return ok

    threads_done: list[bool] = []
    callers = [
        threading.Thread(
            target=lambda w=w, e=e: threads_done.append(keep_computing(w, e)), daemon=True
        )
        for w, e in zip(workloads[:6], expected)
    ]
    for thread in callers:
        thread.start()
    try:
        for _ in range(3):
            run_in_forked_child(lambda: child_results_match(workloads[:2], child_expected))
    finally:
        busy.clear()
    for thread in callers:
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "a caller did not finish: deadlock?"
    assert threads_done == [True] * len(callers)


@needs_fork
@pytest.mark.usefixtures("restore_num_threads")
def test_fork_in_a_forked_child(workloads):
    fastembed.set_num_threads(3)
    expected = serial_results(workloads[:2])

    def grandchild_too() -> bool:
        if not child_results_match(workloads[:2], expected):
            return False
        run_in_forked_child(lambda: child_results_match(workloads[:2], expected))
        return True

    run_in_forked_child(grandchild_too)


@needs_fork
def test_fork_before_the_pool_was_ever_used():
    """A fresh interpreter that forks before any kernel ran: both sides start the pool."""
    code = (
        "import os, fastembed, numpy as np\n"
        "fastembed.set_num_threads(4)\n"
        "g = np.arange(60000 * 8, dtype=np.float64).reshape(60000, 8) % 7\n"
        "ids = np.arange(60000) % 999\n"
        "expected = np.zeros((999, 8)); np.add.at(expected, ids, g)\n"
        "pid = os.fork()\n"
        "ok = np.array_equal(fastembed.scatter_add(g, ids, 999), expected)\n"
        "if pid == 0:\n"
        "    os._exit(0 if ok else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "assert ok and os.waitstatus_to_exitcode(status) == 0, status\n"
        "print('ok')\n"
    )
    child = run_python(code)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["ok"]
