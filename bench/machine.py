"""The host a benchmark ran on: what every table is read against.

Its caches (as sysfs and as CPUID, through glibc's ``getconf``, report them: in a VM the two can
disagree by 8x; and the sizes fastembed's kernels took from them, ``fastembed.host_info()``),
the copy bandwidth of ``np.copyto`` (the physical reference for GB/s), the latency of a
dependent random load (what bounds random row reads), how much a second thread adds to
streaming bandwidth (what a 1 -> N thread speed-up can reach), and the prefetch plan the kernels
calibrated (``fastembed.host_info()["prefetch"]``), plus the versions of everything compared.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import fastembed
import numpy as np
from harness import Ratio, thread_label

# Distributions whose versions results.json keeps (those not installed are recorded as None).
PACKAGES = (
    "fastembed", "numpy", "torch", "gensim", "faiss-cpu", "scipy", "ml_dtypes", "ray",
    "matplotlib", "tqdm",
)  # fmt: skip


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _copy_seconds(dst: np.ndarray, src: np.ndarray, threads: int) -> float:
    """One copy of ``src`` into ``dst``, split into ``threads`` slices copied by as many Python
    threads (``np.copyto`` releases the GIL while it copies)."""
    if threads == 1:
        start = time.perf_counter()
        np.copyto(dst, src)
        return time.perf_counter() - start
    bounds = np.linspace(0, src.size, threads + 1).astype(int)
    workers = [
        threading.Thread(target=np.copyto, args=(dst[a:b], src[a:b]))
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start


def copy_bandwidth(nbytes: int, repeats: int, threads: int = 1, pairs: int = 0) -> dict[str, Any]:
    """Bytes/s of ``np.copyto`` between two ``nbytes`` buffers, counting bytes read + written,
    the median of ``repeats`` copies after a first copy that faults both buffers in.

    With ``threads > 1`` and ``pairs`` rounds, also the streaming gain from 1 to ``threads``
    threads: in each round ``repeats`` copies by one thread, then as many split across
    ``threads``, the gain being the ratio of the two medians (a Ratio over the rounds).
    """
    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    single = [_copy_seconds(dst, src, 1) for _ in range(repeats)]
    found: dict[str, Any] = {"copy_bandwidth": 2 * nbytes / statistics.median(single)}
    if threads > 1 and pairs:
        gains, parallel = [], []
        for _ in range(pairs):
            one = statistics.median(_copy_seconds(dst, src, 1) for _ in range(repeats))
            many = statistics.median(_copy_seconds(dst, src, threads) for _ in range(repeats))
            gains.append(one / many)
            parallel.append(many)
        found["copy_bandwidth_all_threads"] = 2 * nbytes / statistics.median(parallel)
        found["streaming_gain"] = Ratio(
            statistics.median(gains), min(gains), max(gains), len(gains)
        )
    return found


def random_load_ns(nbytes: int, steps: int, rng: np.random.Generator) -> float:
    """Nanoseconds of one dependent random load over an ``nbytes`` buffer: a walk through a
    random cycle of cache lines spread over the whole buffer, each load's address the value the
    previous load returned.

    The cycle has ``steps`` lines (those a walk visits: building it costs as much as walking
    it), drawn at random from the buffer, every page of which is touched first. The walk is a
    Python loop; its own cost per step, measured on a 16 KiB cycle (in L1), is subtracted.
    """
    slots_per_line = 64 // 8

    def walk(size: int) -> float:
        successor = np.empty(size // 8, dtype=np.int64)
        successor.fill(0)  # every page faulted in before the walk
        lines = rng.permutation(np.unique(rng.integers(0, successor.size // slots_per_line, steps)))
        slots = lines * slots_per_line
        successor[slots] = np.roll(slots, -1)
        view = memoryview(successor)
        slot = int(slots[0])
        for _ in range(steps // 10):  # warm-up: the loop itself
            slot = view[slot]
        start = time.perf_counter()
        for _ in range(steps):
            slot = view[slot]
        return (time.perf_counter() - start) / steps

    return max(0.0, walk(nbytes) - walk(16 << 10)) * 1e9


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def sysfs_caches() -> dict[str, int]:
    """Data and unified cache sizes of CPU 0 in bytes, as sysfs reports them ("L1d", "L2"...)."""
    caches = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        kind, level, size = (_read(index / name) for name in ("type", "level", "size"))
        if kind == "Instruction" or not level or not size:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1], 1)
        caches[f"L{level}{'d' if kind == 'Data' else ''}"] = int(size.rstrip("KMG")) * scale
    return caches


def cpuid_caches() -> dict[str, int]:
    """Cache sizes as glibc's ``getconf`` reports them (read from CPUID), in bytes."""
    names = {"LEVEL1_DCACHE_SIZE": "L1d", "LEVEL2_CACHE_SIZE": "L2", "LEVEL3_CACHE_SIZE": "L3"}
    caches = {}
    for name, label in names.items():
        try:
            value = subprocess.run(
                ["getconf", name], capture_output=True, text=True, timeout=5, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if value.isdigit() and int(value) > 0:
            caches[label] = int(value)
    return caches


def calibrate_prefetch(nbytes: int, rng: np.random.Generator) -> None:
    """Reads ``nbytes`` of scattered rows through fastembed: the first such read past the L3
    calibrates the kernels' prefetch plan, so the plan is known for the host line and no timed
    call pays for the calibration."""
    table = np.ones((nbytes // 256, 64), np.float32)
    fastembed.embedding_bag(table, rng.integers(0, len(table), len(table)), [0], mode="sum")


def _prefetch(prefetch: dict[str, Any]) -> str:
    text = f"prefetch {prefetch['plan']} ({prefetch['source']}"
    if prefetch["probe_ms"]:
        medians = ", ".join(f"{plan} {ms:.2f}" for plan, ms in prefetch["probe_ms"].items())
        narrow = ", ".join(f"{level} {ms:.2f}" for level, ms in prefetch["narrow_probe_ms"].items())
        text += (
            f" in {prefetch['calibration_ms']:.0f} ms over {_size(prefetch['probe_bytes'])}; "
            f"median ms {medians}; 128-byte rows {narrow}"
        )
    return text + ")"


def measure_host(mode: str, threads: int, rng: np.random.Generator) -> dict[str, Any]:
    """The host line's numbers (see the module docstring); smaller buffers with ``--quick``."""
    quick = mode == "quick"
    mib = 64 if quick else 256
    calibrate_prefetch(mib << 20, rng)
    kernels = fastembed.host_info()
    host: dict[str, Any] = {
        "caches_sysfs": sysfs_caches(),
        "caches_cpuid": cpuid_caches(),
        # What fastembed's kernels took from those (and FASTEMBED_*_BYTES), and their budgets.
        "kernels": kernels,
        "caches_kernels": {
            label: kernels[f"{key}_bytes"]
            for label, key in (("L1d", "l1d"), ("L2", "l2"), ("L3", "l3"))
        },
        "copy_mib": mib,
        "threads": threads,
    }
    host.update(copy_bandwidth(mib << 20, repeats=3, threads=threads, pairs=3))
    host["random_load_ns"] = random_load_ns(mib << 20, 20_000 if quick else 200_000, rng)
    return host


def _size(nbytes: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= size:
            return f"{nbytes / size:g} {unit}"
    return f"{nbytes} B"


def _caches(caches: dict[str, int]) -> str:
    return " ".join(f"{label} {_size(size)}" for label, size in caches.items()) or "unknown"


def format_host(host: dict[str, Any]) -> str:
    """The host line printed above every table."""
    line = (
        f"host: caches (sysfs) {_caches(host['caches_sysfs'])}; (CPUID) "
        f"{_caches(host['caches_cpuid'])}; used by the kernels {_caches(host['caches_kernels'])} "
        f"({host['kernels']['source']}; {host['kernels']['isa']} kernels); copy bandwidth "
        f"(np.copyto {host['copy_mib']} MiB, "
        f"read + write) {host['copy_bandwidth'] / 1e9:.1f} GB/s; dependent random load over "
        f"{host['copy_mib']} MiB {host['random_load_ns']:.0f} ns; "
        f"{_prefetch(host['kernels']['prefetch'])}"
    )
    if host.get("neighbour_mib"):
        line += (
            f"; beside a neighbour process streaming through 2 x {host['neighbour_mib']} MiB "
            "(--neighbour)"
        )
    gain = host.get("streaming_gain")
    if gain is not None:
        line += (
            f"; streaming 1 -> {thread_label(host['threads'])} "
            f"{host['copy_bandwidth_all_threads'] / 1e9:.1f} GB/s, gain {gain}"
        )
    return line


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "available_cores": available_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
        # Other processes on a shared machine skew multithreaded timings: keep the evidence.
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
