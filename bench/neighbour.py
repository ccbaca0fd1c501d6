"""A busy neighbour: a process that streams through a large buffer while the benchmark runs.

It imitates a host whose L3 and memory bandwidth are shared with another tenant (issue 13: the
kernels must keep their lead where the cache they were tuned for is not theirs alone). It copies
between two buffers of the given size, round and round, on one core, until the run ends.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

# The child allocates, touches its pages, says so, then streams until it is killed.
_CHILD = """
import sys
import numpy as np
source = np.ones({mib} << 18, np.float32)
target = np.empty_like(source)
target[...] = 0
print("ready", flush=True)
while True:
    np.copyto(target, source)
    np.copyto(source, target)
"""


@contextlib.contextmanager
def streaming_neighbour(mib: int) -> Iterator[None]:
    """Runs the neighbour (two buffers of ``mib`` MiB) for the duration of the block; none
    for ``mib`` 0. Raises RuntimeError if it does not start."""
    if mib <= 0:
        yield
        return
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(mib=int(mib))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the streaming neighbour did not start (exit {child.poll()})")
        yield
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
