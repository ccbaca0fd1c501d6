"""The machine a benchmark ran on: its copy bandwidth (the physical reference) and versions."""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any

import numpy as np


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def copy_bandwidth(nbytes: int, repeats: int) -> float:
    """Bytes/s of ``np.copyto`` between two ``nbytes`` buffers, counting bytes read + written.

    The median of ``repeats`` copies after a first copy that faults both buffers in.
    """
    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        samples.append(time.perf_counter() - start)
    return 2 * nbytes / statistics.median(samples)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(torch: Any) -> dict[str, Any]:
    import fastembed

    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "available_cores": available_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "fastembed": getattr(fastembed, "__version__", None),
        # Other processes on a shared machine skew multithreaded timings: keep the evidence.
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
