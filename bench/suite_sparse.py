"""Issue 3's benchmark: the row-sparse gradient vs PyTorch's sparse=True backward (coalesced),
and the lookup with max_norm vs PyTorch's F.embedding(max_norm=...)."""

from __future__ import annotations

import gc
from typing import Any, Callable

import fastembed
import numpy as np
from harness import ZIPF_EXPONENT, Case, Context, Results, Target
from suite_core import make_ids

HEADLINE_SECONDS = 15
FULL_SECONDS = 60
PEERS = ("torch",)

MAX_NORM = 8.0  # about sqrt(D) for D=64 standard-normal rows: roughly half the rows exceed it

SPARSE_GRAD = "fastembed.sparse_grad"
SCATTER_ADD = "fastembed.scatter_add (dense, for scale)"
TORCH_SPARSE = "aten.embedding_sparse_backward + coalesce()"
TORCH_AUTOGRAD = "F.embedding(sparse=True) backward + coalesce()"

GATHER_MAX_NORM = f"fastembed.gather(max_norm={MAX_NORM})"
GATHER_PLAIN = "fastembed.gather (no max_norm, for scale)"
TORCH_MAX_NORM = f"F.embedding(max_norm={MAX_NORM})"


def cases(ctx: Context) -> list[Case]:
    """Both cases; the headline is the first (Zipf ids, as words and items come)."""
    full = [
        Case(1_000_000, 64, 1_000_000, f"zipf({ZIPF_EXPONENT})"),
        Case(1_000_000, 64, 1_000_000, "uniform"),
    ]
    if ctx.quick:
        return [Case(c.num_embeddings // 100, c.dim, c.n // 100, c.distribution) for c in full]
    return full[:1] if ctx.headline else full


def run(ctx: Context) -> None:
    print(
        f"sparse suite, {ctx.threads} thread(s): float32, int64 ids; zipf ids = "
        f"(rng.zipf({ZIPF_EXPONENT}, N) - 1) % V. Sparse backward: GB/s counts ids + gradient "
        f"read + distinct rows written. Forward with max_norm: every repeat starts from a fresh "
        f"copy of the table (copied outside the timed region); GB/s counts ids + distinct rows "
        f"read and written + rows gathered.\n",
        flush=True,
    )
    for case, rng in ctx.with_rngs(cases(ctx)):
        if not ctx.wants(case.name):
            continue
        ids = make_ids(case, rng)
        grad = rng.standard_normal((case.n, case.dim), dtype=np.float32)
        bench_sparse_backward(ctx, case, grad, ids)
        del grad
        gc.collect()
        table = rng.standard_normal((case.num_embeddings, case.dim), dtype=np.float32)
        bench_max_norm_forward(ctx, case, table, ids)
        del table, ids
        gc.collect()


def bench_sparse_backward(ctx: Context, case: Case, grad: np.ndarray, ids: np.ndarray) -> None:
    V = case.num_embeddings
    ours = fastembed.sparse_grad(grad, ids, V)
    if not np.array_equal(ours.indices, np.unique(ids)):
        raise AssertionError(f"sparse_grad indices disagree with np.unique on {case.name}")
    nbytes = ids.nbytes + grad.nbytes + ours.values.nbytes + ours.indices.nbytes
    methods: dict[str, Callable[[], object]] = {
        SPARSE_GRAD: lambda: fastembed.sparse_grad(grad, ids, V),
        SCATTER_ADD: lambda: fastembed.scatter_add(grad, ids, V),
    }
    torch = ctx.torch
    if torch is not None:
        grad_t, ids_t = torch.from_numpy(grad), torch.from_numpy(ids)
        sparse_backward = torch.ops.aten.embedding_sparse_backward
        expected = sparse_backward(grad_t, ids_t, V, -1, False).coalesce()
        if not np.array_equal(expected.indices()[0].numpy(), ours.indices) or not np.allclose(
            expected.values().numpy(), ours.values, rtol=1e-4, atol=1e-3
        ):
            raise AssertionError(f"sparse_grad disagrees with torch on {case.name}")
        del expected
        methods[TORCH_SPARSE] = lambda: sparse_backward(grad_t, ids_t, V, -1, False).coalesce()
        methods[TORCH_AUTOGRAD] = torch_autograd_backward(torch, grad_t, ids_t, case)
    del ours
    ctx.compare(case.name, "sparse backward", methods, nbytes)


def torch_autograd_backward(
    torch: Any, grad_t: Any, ids_t: Any, case: Case
) -> Callable[[], object]:
    """What a PyTorch user runs: the autograd backward of a sparse lookup, then coalesce().
    The forward runs once, here, untimed; each call re-runs the backward of its kept graph."""
    weight = torch.zeros((case.num_embeddings, case.dim), requires_grad=True)
    output = torch.nn.functional.embedding(ids_t, weight, sparse=True)

    def backward() -> object:
        weight.grad = None
        output.backward(grad_t, retain_graph=True)
        return weight.grad.coalesce()

    return backward


def bench_max_norm_forward(ctx: Context, case: Case, table: np.ndarray, ids: np.ndarray) -> None:
    work = np.empty_like(table)
    expected = numpy_renorm(table.copy(), ids)
    np.copyto(work, table)
    out = fastembed.gather(work, ids, max_norm=MAX_NORM)
    if not np.allclose(work, expected, rtol=1e-5, atol=1e-6) or not np.array_equal(out, work[ids]):
        raise AssertionError(f"gather(max_norm) disagrees with the reference on {case.name}")
    del expected, out
    distinct = np.unique(ids).size
    row_bytes = case.dim * table.itemsize
    nbytes = ids.nbytes + 2 * distinct * row_bytes + ids.size * row_bytes
    restore = lambda: np.copyto(work, table)  # noqa: E731
    methods: dict[str, Callable[[], object]] = {
        GATHER_MAX_NORM: lambda: fastembed.gather(work, ids, max_norm=MAX_NORM),
        GATHER_PLAIN: lambda: fastembed.gather(work, ids),
    }
    torch = ctx.torch
    if torch is not None:
        work_t, ids_t = torch.from_numpy(work), torch.from_numpy(ids)
        embedding = torch.nn.functional.embedding
        methods[TORCH_MAX_NORM] = lambda: embedding(ids_t, work_t, max_norm=MAX_NORM)
    ctx.compare(
        case.name,
        "forward max_norm",
        methods,
        nbytes,
        # PyTorch's max_norm lookup takes about a second per call.
        repeats={TORCH_MAX_NORM: 1 if ctx.headline else min(ctx.repeats, 3)},
        setup=restore,
    )


def numpy_renorm(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """PyTorch's max_norm rule in NumPy, on `table` in place (the distinct looked-up rows)."""
    rows = np.unique(ids)
    norms = np.linalg.norm(table[rows].astype(np.float64), axis=1)
    over = norms > MAX_NORM
    scale = (MAX_NORM / (norms[over] + 1e-7)).astype(np.float32)
    table[rows[over]] *= scale[:, None]
    return table


def targets(results: Results) -> list[Target]:
    """Issue 3: the sparse gradient >= 3x PyTorch's coalesced one at every thread count run."""
    names = results.cases("sparse")
    return [
        results.speedup(3.0, "sparse backward", SPARSE_GRAD, TORCH_SPARSE, names, threads)
        for threads in results.thread_counts
    ]
