"""Issue 13: the host's cache sizes (detection, override, fallback) change speed, never bits;
the strategy choices that fix a summation order depend on the shape alone."""

from __future__ import annotations

import json
import os

import fastembed
import numpy as np
import pytest
from conftest import run_python

SIZE_KEYS = ("l1d_bytes", "l2_bytes", "l3_bytes")

# A child process prints one JSON line last (an editable build may print before it).
RESULTS_CODE = """
import hashlib, json
import numpy as np
import fastembed

def digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()

rng = np.random.default_rng(13)
out = {"info": fastembed.host_info()}
# gather: 20k x 64 float32 (5 MiB, past a 2 MiB in-order threshold), 20k spread ids
table = rng.standard_normal((20_000, 64), dtype=np.float32)
ids = rng.integers(0, 20_000, 20_000)
out["gather"] = digest(fastembed.gather(table, ids))
# a streamed gather (10 MiB, past a quarter of a 32 MiB L3) into an output 16 bytes past a cache
# line, rows of 144 bytes: partial lines at both ends of a row, whole ones between
buffer = np.empty(70_000 * 36 + 16, np.float32)
start = (16 - buffer.ctypes.data % 64) % 64 // 4
streamed = buffer[start : start + 70_000 * 36].reshape(70_000, 36)
ids = rng.integers(0, 20_000, 70_000)
out["streamed"] = digest(fastembed.gather(table[:, :36].copy(), ids, out=streamed))
# bags: rows of 300 (several column blocks and a tail), bags of up to 400 ids (many chunks)
wide = rng.standard_normal((500, 300), dtype=np.float32)
bag_ids = rng.integers(0, 500, 20_000)
offsets = np.sort(rng.choice(20_000, 100, replace=False))
offsets[0] = 0
for mode in ("sum", "mean", "max"):
    out["bag_" + mode] = digest(fastembed.embedding_bag(wide, bag_ids, offsets, mode=mode))
out["bag_argmax"] = digest(
    fastembed.embedding_bag(wide, bag_ids, offsets, mode="max", return_argmax=True)[1])
out["bag_weighted"] = digest(fastembed.embedding_bag(
    wide, bag_ids, offsets, mode="sum",
    per_sample_weights=rng.standard_normal(20_000, dtype=np.float32)))
# 20k bags into 1.25 MiB: streamed under a 1 MiB L3 (past a quarter of it), not under 32 MiB
narrow = np.ascontiguousarray(table[:, :16])
out["bag_streamed"] = digest(fastembed.embedding_bag(
    narrow, rng.integers(0, 20_000, 40_000), np.arange(0, 40_000, 2), mode="sum"))
out["bag_float64"] = digest(
    fastembed.embedding_bag(wide.astype(np.float64), bag_ids, offsets, mode="sum"))
# backward: blocked (V=1000) and sorted runs (V=200k)
grad = rng.standard_normal((20_000, 64), dtype=np.float32)
out["blocked"] = digest(fastembed.scatter_add(grad, rng.integers(0, 1000, 20_000), 1000))
out["sorted"] = digest(fastembed.scatter_add(grad, rng.integers(0, 200_000, 20_000), 200_000))
# a heavy run (9000 of one id: blocks of 4096 rows), float16 rows, a sparse gradient
heavy = np.concatenate([np.zeros(9_000, np.int64), rng.integers(0, 200_000, 11_000)])
out["heavy"] = digest(fastembed.scatter_add(grad, heavy, 200_000))
out["half"] = digest(fastembed.scatter_add(grad.astype(np.float16), heavy, 200_000))
sparse = fastembed.sparse_grad(grad, heavy, 200_000)
out["sparse"] = digest(sparse.indices) + digest(sparse.values)
# fused steps: every optimizer on float32, stochastic rounding into float16; bag backward
for name, optimizer in (
    ("sgd", fastembed.optim.SGD(0.1, momentum=0.9)),
    ("adagrad", fastembed.optim.Adagrad(0.1)),
    ("rowwise", fastembed.optim.Adagrad(0.1, rowwise=True)),
    ("adam", fastembed.optim.Adam(0.1)),
    ("sgd_f16", fastembed.optim.SGD(0.1, stochastic_rounding=True, seed=3)),
):
    dtype = np.float16 if name.endswith("f16") else np.float32
    layer = fastembed.Embedding(weight=np.asarray(table, dtype=dtype))
    for step in range(2):
        layer(heavy % 20_000)
        layer.backward(grad.astype(dtype), optimizer=optimizer)
    out["step_" + name] = digest(layer.weight)
bag = fastembed.EmbeddingBag(weight=wide.copy(), mode="mean")
bag(bag_ids, offsets)
bag.backward(rng.standard_normal((100, 300), dtype=np.float32), optimizer=fastembed.optim.SGD(0.1))
out["bag_step"] = digest(bag.weight)
# float16 and quantized rows through the pooled loop; packing
out["bag_float16"] = digest(
    fastembed.embedding_bag(wide.astype(np.float16), bag_ids, offsets, mode="sum"))
for bits in (8, 4):
    q = fastembed.quantize(wide, bits=bits)
    out["pack_%d" % bits] = digest(q.packed)
    out["qbag_%d" % bits] = digest(fastembed.embedding_bag(q, bag_ids, offsets, mode="mean"))
print(json.dumps(out))
"""


def child_results(**environment: str) -> dict:
    child = run_python(RESULTS_CODE, FASTEMBED_NUM_THREADS="2", **environment)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.strip().splitlines()[-1])


def test_host_info_reports_sizes_and_budgets():
    info = fastembed.host_info()
    for key in SIZE_KEYS:
        assert isinstance(info[key], int) and info[key] > 0
        assert info["sysfs"][key] >= 0 and info["cpuid"][key] >= 0
    assert info["source"].startswith("l1d=")
    assert info["prefetch_bytes"] == info["l1d_bytes"] // 2
    assert info["unprefetched_table_bytes"] == info["l2_bytes"]
    assert info["pooling_chunk_bytes"] == info["l1d_bytes"] // 2
    assert info["streaming_bytes"] == info["l3_bytes"] // 4
    assert info["in_order_table_bytes"] == 2 * info["l3_bytes"]
    # The budgets that fix summation orders are constants, sized for a small cache.
    assert info["block_sums_budget_bytes"] == 8 << 20
    assert info["block_sums_per_block_bytes"] == 4 << 20


def test_detection_takes_the_smaller_of_sysfs_and_cpuid():
    info = fastembed.host_info()
    for key in SIZE_KEYS:
        reported = [info[source][key] for source in ("sysfs", "cpuid") if info[source][key]]
        if reported and "=env" not in info["source"]:
            assert info[key] <= min(reported)


def test_environment_overrides_and_ignores_bad_values():
    info = child_results(
        FASTEMBED_L1D_BYTES="4096", FASTEMBED_L2_BYTES="65536", FASTEMBED_L3_BYTES="1048576"
    )["info"]
    assert (info["l1d_bytes"], info["l2_bytes"], info["l3_bytes"]) == (4096, 65536, 1 << 20)
    assert info["source"] == "l1d=env l2=env l3=env"
    assert info["streaming_bytes"] == 1 << 18
    default = child_results()["info"]
    bad = child_results(FASTEMBED_L1D_BYTES="32K", FASTEMBED_L2_BYTES="-1", FASTEMBED_L3_BYTES="")
    assert bad["info"] == default


def test_results_do_not_depend_on_the_cache_sizes():
    """Tiny and huge caches cross every host-dependent threshold (in-order gather, streaming
    stores, prefetch distance, bag chunks, and no prefetching from a table that fits in the L2:
    every table here is prefetched under the tiny L2 and none under the huge one); the results
    keep every bit."""
    default = child_results()
    tiny = child_results(
        FASTEMBED_L1D_BYTES="1024", FASTEMBED_L2_BYTES="4096", FASTEMBED_L3_BYTES="1048576"
    )
    huge = child_results(
        FASTEMBED_L1D_BYTES=str(1 << 20),
        FASTEMBED_L2_BYTES=str(1 << 30),
        FASTEMBED_L3_BYTES=str(1 << 32),
    )
    assert huge["info"]["l2_bytes"] == 1 << 30
    for key in default:
        if key != "info":
            assert default[key] == tiny[key] == huge[key], key


def test_baseline_avx2_and_avx512_copies_give_the_same_bits():
    """FASTEMBED_ISA=baseline runs the baseline copies of the instruction-bound kernels (pooled
    loop, packing, reductions and the updates they feed) where the AVX2 or AVX-512 copies would
    run, and streams whole cache lines in 16-byte stores; FASTEMBED_ISA=avx2 runs the AVX2 copy
    of the pooled loop where the AVX-512 one would, and 32-byte stores."""
    default = child_results()
    capped = {isa: child_results(FASTEMBED_ISA=isa) for isa in ("avx2", "baseline")}
    copies = [results["info"]["isa"] for results in (default, capped["avx2"], capped["baseline"])]
    if len(set(copies)) == 1:
        pytest.skip("this build and CPU have one copy only")
    assert copies in (["avx512", "avx2", "baseline"], ["avx2", "avx2", "baseline"]), copies
    for results in capped.values():
        for key in default:
            if key != "info":
                assert default[key] == results[key], key


@pytest.mark.parametrize("num_embeddings", [16_384, 16_385])
@pytest.mark.parametrize("per_id", [8, 7])
def test_backward_either_side_of_the_blocked_thresholds(num_embeddings, per_id):
    """V * D * 4 = 4 MiB (one block's budget) and N = 8 V (two blocks of 4 rows per id) are
    where the blocked path stops: exact on integer values either side, bitwise across threads."""
    dim = 64
    n = per_id * num_embeddings
    rng = np.random.default_rng(num_embeddings + per_id)
    ids = rng.integers(0, num_embeddings, n)
    grad = rng.integers(-8, 9, (n, dim)).astype(np.float32)
    expected = np.zeros((num_embeddings, dim), np.float64)
    np.add.at(expected, ids, grad)
    previous = fastembed.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            fastembed.set_num_threads(threads)
            results.append(fastembed.scatter_add(grad, ids, num_embeddings))
    finally:
        fastembed.set_num_threads(previous)
    np.testing.assert_array_equal(results[0], expected)
    assert results[0].tobytes() == results[1].tobytes()


# The prefetch plan: FASTEMBED_PREFETCH, else a calibration on the first read beyond the L3.
# Plans read "wide rows' level:rows ahead:narrow rows' level"; the candidates for the wide rows
# keep the default's narrow level, then the narrow rows' level is chosen at the winner's distance.
CANDIDATE_PLANS = {"l1:16:l1", "l1:32:l1", "l1:64:l1", "l2:16:l1", "l2:32:l1", "l2:64:l1"}
DEFAULT_PLAN = "l2:64:l1"


def check_calibrated(report: dict) -> None:
    """The wide rows' plan is the fastest candidate, and the narrow rows' level the faster of
    the two at that plan's distance."""
    assert set(report["probe_ms"]) == CANDIDATE_PLANS
    assert set(report["narrow_probe_ms"]) == {"l1", "l2"}
    assert all(ms > 0 for ms in [*report["probe_ms"].values(), *report["narrow_probe_ms"].values()])
    wide = min(report["probe_ms"], key=report["probe_ms"].get)
    narrow = min(report["narrow_probe_ms"], key=report["narrow_probe_ms"].get)
    assert report["plan"] == wide[: -len("l1")] + narrow


# Reads 4 MiB of scattered 256-byte rows (16k ids in one bag) twice, then a 64-element gather:
# with FASTEMBED_L3_BYTES=1 MiB the first read is past the L3.
PREFETCH_CODE = """
import json
import numpy as np
import fastembed

before = fastembed.host_info()["prefetch"]
# small integers: every sum of up to 16k of them is exact in float32
table = (np.arange(40_000 * 64) % 251).astype(np.float32).reshape(40_000, 64)
ids = np.random.default_rng(5).integers(0, 40_000, 16_384)
first = fastembed.embedding_bag(table, ids, np.array([0]), mode="sum")
after = fastembed.host_info()["prefetch"]
second = fastembed.embedding_bag(table, ids, np.array([0]), mode="sum")
expected = table[ids].astype(np.float64).sum(axis=0)
print(json.dumps({"before": before, "after": after, "again": fastembed.host_info()["prefetch"],
                  "exact": bool((first[0] == expected).all() and (second == first).all())}))
"""


def prefetch_child(**environment: str) -> dict:
    child = run_python(PREFETCH_CODE, FASTEMBED_NUM_THREADS="2", **environment)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.strip().splitlines()[-1])


def test_prefetch_calibrates_once_on_the_first_read_beyond_the_l3():
    report = prefetch_child(FASTEMBED_L3_BYTES=str(1 << 20))
    assert report["before"] == {
        "plan": DEFAULT_PLAN,
        "source": "default",
        "probe_bytes": 0,
        "calibration_ms": 0.0,
        "probe_ms": {},
        "narrow_probe_ms": {},
    }
    after = report["after"]
    assert after["source"] == "calibrated"
    assert after["probe_bytes"] == 64 << 20  # four times the L3, at least 64 MiB
    check_calibrated(after)
    # Each candidate ran 5 rounds: at least 3 of them took its median or longer.
    medians = [*after["probe_ms"].values(), *after["narrow_probe_ms"].values()]
    assert after["calibration_ms"] >= 3 * sum(medians)
    assert report["again"] == after  # calibrated once per process
    assert report["exact"]


def test_prefetch_does_not_calibrate_for_reads_the_l3_holds():
    report = prefetch_child(FASTEMBED_L3_BYTES=str(64 << 20))
    assert report["after"]["source"] == report["again"]["source"] == "default"
    assert report["after"]["plan"] == DEFAULT_PLAN


@pytest.mark.parametrize(
    ("value", "plan"),
    [
        ("l1:32", "l1:32:l1"),  # narrow rows' level left out: the L1
        ("l2:1", "l2:1:l1"),
        ("l1:256:l2", "l1:256:l2"),
        ("l2:16:l1", "l2:16:l1"),
    ],
)
def test_prefetch_environment_sets_the_plan_and_skips_the_calibration(value, plan):
    report = prefetch_child(FASTEMBED_PREFETCH=value, FASTEMBED_L3_BYTES=str(1 << 20))
    for when in ("before", "after", "again"):
        assert report[when] == {
            "plan": plan,
            "source": "env",
            "probe_bytes": 0,
            "calibration_ms": 0.0,
            "probe_ms": {},
            "narrow_probe_ms": {},
        }
    assert report["exact"]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "l3:16",
        "l1:0",
        "l1:257",
        "l1:",
        "L1:16",
        "l1:16x",
        "l1:-4",
        "l1:16:",
        "l1:16:l3",
        "l1:16:l2x",
        "l1:16:l2:l2",
        "l116",
    ],
)
def test_prefetch_environment_ignores_bad_values(value):
    report = prefetch_child(FASTEMBED_PREFETCH=value, FASTEMBED_L3_BYTES=str(64 << 20))
    assert report["after"]["source"] == "default"
    assert report["after"]["plan"] == DEFAULT_PLAN


FALLBACK_CODE = """
import json, resource
import numpy as np
import fastembed

fastembed.embedding_bag(np.ones((4, 64), np.float32), [0, 1], [0], mode="sum")
table = np.ones((40_000, 64), np.float32)
ids = np.random.default_rng(5).integers(0, 40_000, 16_384)
mapped = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (mapped + (24 << 20), resource.RLIM_INFINITY))
bag = fastembed.embedding_bag(table, ids, np.array([0]), mode="sum")
exact = bool((bag == 16_384).all())
print(json.dumps({"after": fastembed.host_info()["prefetch"], "exact": exact}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="sizes the limit from /proc")
@pytest.mark.skipif(
    "asan" in os.environ.get("LD_PRELOAD", ""),
    reason="AddressSanitizer reserves terabytes of address space and aborts on a failed allocation",
)
def test_prefetch_falls_back_when_the_probe_cannot_be_allocated():
    """An address-space limit 24 MiB above what the child has mapped: the 64 MiB probe buffer
    fails, the default plan stays, and the lookup itself still works."""
    child = run_python(FALLBACK_CODE, FASTEMBED_NUM_THREADS="1", FASTEMBED_L3_BYTES=str(1 << 20))
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["after"]["source"] == "fallback"
    assert report["after"]["plan"] == DEFAULT_PLAN
    assert report["exact"]


def test_results_do_not_depend_on_the_prefetch_plan():
    default = child_results()
    for plan in ("l1:1:l1", "l2:256:l2", "l1:16:l2"):
        results = child_results(FASTEMBED_PREFETCH=plan)
        assert results["info"]["prefetch"]["plan"] == plan
        for key in default:
            if key != "info":
                assert default[key] == results[key], (plan, key)


def test_calibrate_prefetch_reports_without_changing_the_plan():
    from fastembed import _core

    before = fastembed.host_info()["prefetch"]
    report = _core.calibrate_prefetch(1 << 20, 256, 2)
    assert report["source"] == "calibrated" and report["probe_bytes"] == 1 << 20
    check_calibrated(report)
    assert fastembed.host_info()["prefetch"] == before
    for bad in ((255, 256, 2), (1 << 20, 0, 2), (1 << 20, 256, 0)):
        with pytest.raises(ValueError, match="probe_bytes >= 256"):
            _core.calibrate_prefetch(*bad)
