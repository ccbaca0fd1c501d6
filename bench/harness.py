"""What a benchmark suite sees: the run context (timing, recording) and the collected results.

A suite is a module ``bench/suite_<name>.py`` with ``def run(ctx: Context) -> None``, called once
per thread count. It may also define ``def targets(results: Results) -> list[Target]``, called
once after every thread count has run, to state the ratios its issue asks for.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import numpy as np

CaseT = TypeVar("CaseT")

# Word-frequency-like ids shared by every suite: id k has probability ~ (k + 1) ** -a, the
# unbounded tail wrapping modulo V.
ZIPF_EXPONENT = 1.1

# PyTorch's OpenMP workers keep spinning ~10 ms after each parallel call; on a 2-core machine
# they would take a core from whatever is timed next, so each method's warm-up waits this long.
QUIESCE_SECONDS = 0.03


def zipf_ids(rng: np.random.Generator, n: int, num_embeddings: int) -> np.ndarray:
    return (rng.zipf(ZIPF_EXPONENT, n) - 1) % num_embeddings


def short_count(count: int) -> str:
    """1_000_000 -> "1M", 10_000 -> "10k", 128 -> "128": compact sizes for case names."""
    for suffix, size in (("M", 1_000_000), ("k", 1_000)):
        if count >= size and count % size == 0:
            return f"{count // size}{suffix}"
    return str(count)


@dataclass(frozen=True)
class Record:
    """One method timed on one case: ``seconds`` is the median over ``repeats`` calls."""

    suite: str
    threads: int
    case: str
    group: str
    method: str
    seconds: float
    min_seconds: float
    repeats: int
    nbytes: int

    @property
    def key(self) -> tuple[int, str, str]:
        """The table this record belongs to."""
        return (self.threads, self.case, self.group)


@dataclass(frozen=True)
class Target:
    """A required speed ratio: every entry of ``ratios`` (label -> ratio) must be >= ``minimum``.

    A ratio is "how many times faster" (the other method's time over ours), so an empty
    ``ratios`` means the comparison could not be made in this run (e.g. torch is missing).
    """

    description: str
    minimum: float
    ratios: dict[str, float]

    @property
    def status(self) -> str:
        if not self.ratios:
            return "SKIP"
        return "PASS" if min(self.ratios.values()) >= self.minimum else "FAIL"

    @property
    def worst(self) -> tuple[str, float] | None:
        if not self.ratios:
            return None
        return min(self.ratios.items(), key=lambda item: item[1])


@dataclass
class Results:
    """Every record of a run, in the order recorded."""

    records: list[Record] = field(default_factory=list)

    def seconds(self, threads: int, case: str, group: str, method: str) -> float | None:
        """Median seconds of one method, or None if it was not run."""
        for record in self.records:
            if record.key == (threads, case, group) and record.method == method:
                return record.seconds
        return None

    def table(self, key: tuple[int, str, str]) -> list[Record]:
        return [record for record in self.records if record.key == key]

    @property
    def thread_counts(self) -> list[int]:
        return sorted({record.threads for record in self.records})

    def cases(self, suite: str) -> list[str]:
        """Case names of one suite, in the order first recorded."""
        return list(dict.fromkeys(r.case for r in self.records if r.suite == suite))


class Context:
    """Handed to a suite's ``run``: settings of this run plus ``compare``, which times and
    records.

    Attributes
    ----------
    quick : bool
        Tiny sizes: a smoke test that must finish in seconds.
    torch : module or None
        ``torch`` when importable; a suite skips everything torch-related when None.
    rng : numpy.random.Generator
        Seeded, so every run benchmarks the same data.
    threads : int
        Thread count that fastembed and torch are set to for this call of ``run``.
    repeats : int
        Timed calls per method (after one warm-up call) unless ``compare`` is told otherwise.
    bandwidth : float
        This machine's copy bandwidth in bytes/s (``np.copyto``, bytes read + written).
    """

    def __init__(
        self,
        *,
        suite: str,
        quick: bool,
        torch: Any,
        threads: int,
        repeats: int,
        bandwidth: float,
        case_filters: list[str],
        results: Results,
        on_table: Callable[[tuple[int, str, str]], None],
    ) -> None:
        self.suite = suite
        self.quick = quick
        self.torch = torch
        self.rng = np.random.default_rng(20240601)
        self.threads = threads
        self.repeats = repeats
        self.bandwidth = bandwidth
        self._case_filters = [f.lower() for f in case_filters]
        self._results = results
        self._on_table = on_table
        self._open_table: tuple[int, str, str] | None = None

    def with_rngs(self, cases: list[CaseT]) -> list[tuple[CaseT, np.random.Generator]]:
        """Each case with its own generator, seeded from ``rng``: a case gets the same data
        whichever cases ``--cases`` selects."""
        seeds = self.rng.integers(2**32, size=len(cases))
        return [(case, np.random.default_rng(seed)) for case, seed in zip(cases, seeds)]

    def wants(self, case: str) -> bool:
        """Whether ``--cases`` selects this case; call it before building a case's data."""
        name = case.lower()
        return not self._case_filters or any(f in name for f in self._case_filters)

    def compare(
        self,
        case: str,
        group: str,
        methods: dict[str, Callable[[], object]],
        nbytes: int,
        repeats: int | dict[str, int] | None = None,
        setup: Callable[[], object] | None = None,
    ) -> None:
        """Time ``methods`` on the same data, one after another, and record each median.

        Each method gets one untimed warm-up call (page faults, caches, lazy initialisation),
        then its timed calls back to back, as a loop calling it would. Before the warm-up a
        short pause lets other libraries' worker threads go idle (not with ``quick``). Calls
        are not interleaved across methods: PyTorch's spinning workers would take a core from
        the call after each of its own, and a pause before every call made each call pay for
        waking idle cores instead (measured: 4.3 -> 6.2 ms for a 2-thread gather). The garbage
        collector is paused while timing.

        ``repeats``: timed calls per method (default ``self.repeats``), or a dict giving some
        methods another count. ``setup()``, if given, runs untimed before every call (e.g.
        restoring an array that a method modifies in place). ``nbytes`` is the memory traffic
        the operation must move at minimum (the same for every method), from which GB/s is
        computed. A table is printed as soon as a table of another case or group starts.
        """
        if not self.wants(case):
            return
        quiesce = 0.0 if self.quick else QUIESCE_SECONDS
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for method, fn in methods.items():
                count = repeats.get(method, self.repeats) if isinstance(repeats, dict) else repeats
                self._timed_call(fn, setup, quiesce)
                times = [self._timed_call(fn, setup, 0.0) for _ in range(count or self.repeats)]
                self._store(case, group, method, times, nbytes)
        finally:
            if gc_was_enabled:
                gc.enable()

    @staticmethod
    def _timed_call(
        fn: Callable[[], object], setup: Callable[[], object] | None, pause: float
    ) -> float:
        if pause:
            time.sleep(pause)
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    def _store(self, case: str, group: str, method: str, times: list[float], nbytes: int) -> None:
        record = Record(
            suite=self.suite,
            threads=self.threads,
            case=case,
            group=group,
            method=method,
            seconds=statistics.median(times),
            min_seconds=min(times),
            repeats=len(times),
            nbytes=int(nbytes),
        )
        if self._open_table is not None and self._open_table != record.key:
            self._on_table(self._open_table)
        self._open_table = record.key
        self._results.records.append(record)

    def finish(self) -> None:
        """Hand over the last open table (run.py calls this after the suite returns)."""
        if self._open_table is not None:
            self._on_table(self._open_table)
            self._open_table = None
