"""What a benchmark suite sees: the run context (timing, recording) and the collected results.

A suite is a module ``bench/suite_<name>.py``; ``bench/README.md`` states the convention (the
module constants ``HEADLINE_SECONDS``, ``FULL_SECONDS`` and ``PEERS``, ``run(ctx)`` and
``targets(results)``).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import fastembed
import numpy as np

CaseT = TypeVar("CaseT")

# Word-frequency-like ids shared by every suite: id k has probability ~ (k + 1) ** -a, the
# unbounded tail wrapping modulo V.
ZIPF_EXPONENT = 1.1

# PyTorch's OpenMP workers keep spinning ~10 ms after each parallel call; on a 2-core machine
# they would take a core from whatever is timed next, so each block of calls waits this long.
QUIESCE_SECONDS = 0.03

# A method whose calls take longer than this gets a warm-up call in its first round only: what
# a warm-up absorbs after the pause (waking idle worker threads, ~2 ms) is under 1% of its call.
WARM_UP_BELOW_SECONDS = 0.25

# Calls shorter than this warm up for WARM_UP_SECONDS before each block instead of once.
SHORT_CALL_SECONDS = 1e-4
WARM_UP_SECONDS = 0.002

# The three sizes of a run: a seconds-long smoke test, each suite's headline case (the default
# run, a few minutes in all), every case at 1 thread and all cores (judges every target).
QUICK, HEADLINE, FULL = "quick", "headline", "full"

_peers: dict[str, Any] = {}


def import_peer(name: str) -> Any:
    """The optional module ``name`` (``torch``, ``gensim``, ``faiss``...), or None when it is not
    installed; imported once per process."""
    if name not in _peers:
        try:
            _peers[name] = importlib.import_module(name)
        except ImportError:
            _peers[name] = None
    return _peers[name]


def zipf_ids(rng: np.random.Generator, n: int, num_embeddings: int) -> np.ndarray:
    return (rng.zipf(ZIPF_EXPONENT, n) - 1) % num_embeddings


# Bags of the bag benchmarks: uniform lengths 1 .. 2 * MEAN_BAG_SIZE - 1.
MEAN_BAG_SIZE = 20


def random_offsets(rng: np.random.Generator, n: int) -> np.ndarray:
    """Bag starts for bags of 1 to 2 * MEAN_BAG_SIZE - 1 ids (uniform), covering all n ids."""
    lengths = rng.integers(1, 2 * MEAN_BAG_SIZE, n // MEAN_BAG_SIZE + 1)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    return starts[starts < n].astype(np.int64)


@dataclass(frozen=True)
class Case:
    """A table of V rows of D values and a batch of N ids drawn from `distribution`."""

    num_embeddings: int
    dim: int
    n: int
    distribution: str

    @property
    def name(self) -> str:
        size = f"V={short_count(self.num_embeddings)} D={self.dim} N={short_count(self.n)}"
        return f"{size} {self.distribution}"


def short_count(count: int) -> str:
    """1_000_000 -> "1M", 10_000 -> "10k", 128 -> "128": compact sizes for case names."""
    for suffix, size in (("M", 1_000_000), ("k", 1_000)):
        if count >= size and count % size == 0:
            return f"{count // size}{suffix}"
    return str(count)


def thread_label(threads: int) -> str:
    return f"{threads} thread{'s' if threads > 1 else ''}"


@dataclass(frozen=True)
class Record:
    """One method timed on one case: ``seconds`` is the median of all ``samples``;
    ``round_seconds`` the median of each round (see ``Context.compare``)."""

    suite: str
    threads: int
    case: str
    group: str
    method: str
    seconds: float
    min_seconds: float
    repeats: int
    nbytes: int
    samples: tuple[float, ...] = ()
    round_seconds: tuple[float, ...] = ()

    @property
    def key(self) -> tuple[int, str, str]:
        """The table this record belongs to."""
        return (self.threads, self.case, self.group)


@dataclass(frozen=True)
class Ratio:
    """How many times faster one method is than another: the median over back-to-back rounds
    (both methods timed in the same round, one right after the other) and the range."""

    median: float
    low: float
    high: float
    pairs: int

    def __str__(self) -> str:
        if self.pairs < 2:
            return f"{self.median:.2f}x (1 pair)"
        return f"{self.median:.2f}x (range {self.low:.2f}-{self.high:.2f} over {self.pairs} pairs)"


@dataclass(frozen=True)
class Target:
    """A required speed ratio: every entry of ``ratios`` (case -> Ratio) must be >= ``minimum``.

    A ratio is "how many times faster" (the other method's time over ours), judged on the median
    of its back-to-back pairs. An empty ``ratios`` means the comparison could not be made in this
    run (a peer is not installed, or the case did not run). ``ours`` and ``other`` name the
    methods compared (``other`` is a peer library's method for the chart, empty otherwise);
    ``note`` is printed beside the verdict (e.g. the host's own 1 -> N bandwidth gain).
    """

    description: str
    minimum: float
    ratios: dict[str, Ratio]
    ours: str = ""
    other: str = ""
    group: str = ""
    peer: bool = True
    note: str = ""

    @property
    def status(self) -> str:
        if not self.ratios:
            return "SKIP"
        return "PASS" if min(r.median for r in self.ratios.values()) >= self.minimum else "FAIL"

    @property
    def worst(self) -> tuple[str, Ratio] | None:
        if not self.ratios:
            return None
        return min(self.ratios.items(), key=lambda item: item[1].median)


@dataclass
class Results:
    """Every record of a run, in the order recorded, and the host it ran on."""

    records: list[Record] = field(default_factory=list)
    host: dict[str, Any] = field(default_factory=dict)

    def record(self, threads: int, case: str, group: str, method: str) -> Record | None:
        for record in self.records:
            if record.key == (threads, case, group) and record.method == method:
                return record
        return None

    def seconds(self, threads: int, case: str, group: str, method: str) -> float | None:
        """Median seconds of one method, or None if it was not run."""
        found = self.record(threads, case, group, method)
        return found.seconds if found is not None else None

    def ratio(self, threads: int, case: str, group: str, ours: str, other: str) -> Ratio | None:
        """``other``'s time over ``ours``, round by round, or None if either did not run."""
        mine = self.record(threads, case, group, ours)
        theirs = self.record(threads, case, group, other)
        if mine is None or theirs is None:
            return None
        pairs = [t / m for m, t in zip(mine.round_seconds, theirs.round_seconds)]
        if not pairs:
            pairs = [theirs.seconds / mine.seconds]
        return Ratio(statistics.median(pairs), min(pairs), max(pairs), len(pairs))

    def speedup(
        self,
        minimum: float,
        group: str,
        ours: str,
        other: str,
        cases: list[str],
        threads: int | None = None,
        description: str | None = None,
        peer: bool = True,
        note: str = "",
    ) -> Target:
        """The target "``ours`` is at least ``minimum`` times faster than ``other``" on each of
        ``cases`` (those that ran), at ``threads`` (default: the largest thread count run)."""
        if threads is None:
            threads = max(self.thread_counts, default=1)
        ratios = {}
        for case in cases:
            found = self.ratio(threads, case, group, ours, other)
            if found is not None:
                ratios[case] = found
        if description is None:
            description = f"[{thread_label(threads)}] {group}: {ours} vs {other}"
        return Target(description, minimum, ratios, ours, other, group, peer, note)

    def bandwidth_share(
        self,
        minimum: float,
        group: str,
        method: str,
        cases: list[str],
        threads: int | None = None,
    ) -> Target:
        """The target "``method`` moves its bytes (the record's ``nbytes``: ids, rows read, rows
        written) at ``minimum`` of the run's copy bandwidth or faster" on each of ``cases``:
        per round, the time those bytes take at the bandwidth of ``np.copyto`` (the host line)
        over the method's time. A minimum of 0.5 is "within 2x of the copy-bandwidth time"."""
        if threads is None:
            threads = max(self.thread_counts, default=1)
        bandwidth = self.host.get("copy_bandwidth")
        ratios = {}
        for case in cases:
            record = self.record(threads, case, group, method)
            if record is None or not bandwidth or not record.round_seconds:
                continue
            shares = sorted(record.nbytes / bandwidth / s for s in record.round_seconds)
            ratios[case] = Ratio(shares[len(shares) // 2], shares[0], shares[-1], len(shares))
        description = (
            f"[{thread_label(threads)}] {group}: {method} at the copy bandwidth's pace "
            f"(its bytes' time at np.copyto's GB/s over its time; {minimum:g}: within "
            f"{1 / minimum:g}x)"
        )
        return Target(description, minimum, ratios, method, "", group, peer=False)

    def table(self, key: tuple[int, str, str]) -> list[Record]:
        return [record for record in self.records if record.key == key]

    @property
    def thread_counts(self) -> list[int]:
        return sorted({record.threads for record in self.records})

    def cases(self, suite: str) -> list[str]:
        """Case names of one suite, in the order first recorded."""
        return list(dict.fromkeys(r.case for r in self.records if r.suite == suite))


def split_count(count: int, rounds: int) -> list[int]:
    """``count`` timed calls spread over at most ``rounds`` rounds, as evenly as possible."""
    rounds = max(1, min(rounds, count))
    return [count // rounds + (r < count % rounds) for r in range(rounds)]


class Context:
    """Handed to a suite's ``run``: settings of this run plus ``compare``, which times and
    records.

    Attributes
    ----------
    mode : str
        ``"quick"`` (tiny sizes, seconds), ``"headline"`` (the default run: only the suite's
        headline case, at reduced sizes where the full case would not fit the suite's
        ``HEADLINE_SECONDS``) or ``"full"`` (every case).
    torch : module or None
        ``torch`` when importable; a suite skips everything torch-related when None. Other
        peers: ``ctx.peer("gensim")``.
    rng : numpy.random.Generator
        Seeded, so every run benchmarks the same data.
    threads : int
        Thread count that fastembed and torch are set to for this call of ``run``.
    repeats : int
        Timed calls per method unless ``compare`` is told otherwise.
    rounds : int
        Rounds the timed calls are spread over (see ``compare``); every ratio's spread comes
        from them.
    bandwidth : float
        This machine's copy bandwidth in bytes/s (``np.copyto``, bytes read + written).
    """

    def __init__(
        self,
        *,
        suite: str,
        mode: str,
        threads: int,
        repeats: int,
        rounds: int,
        bandwidth: float,
        case_filters: list[str],
        results: Results,
        on_table: Callable[[tuple[int, str, str]], None],
        on_progress: Callable[[str, str], None] = lambda case, group: None,
    ) -> None:
        self.suite = suite
        self.mode = mode
        self.torch = import_peer("torch")
        self.rng = np.random.default_rng(20240601)
        self.threads = threads
        self.repeats = repeats
        self.rounds = rounds
        self.bandwidth = bandwidth
        self._case_filters = [f.lower() for f in case_filters]
        self._results = results
        self._on_table = on_table
        self._on_progress = on_progress
        self._open_table: tuple[int, str, str] | None = None

    @property
    def quick(self) -> bool:
        return self.mode == QUICK

    @property
    def headline(self) -> bool:
        return self.mode == HEADLINE

    @staticmethod
    def peer(name: str) -> Any:
        """The optional peer module ``name``, or None when it is not installed."""
        return import_peer(name)

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
        rounds: int | None = None,
    ) -> None:
        """Time ``methods`` on the same data and record each one's calls.

        The timed calls are spread over ``self.rounds`` rounds; in each round every method runs
        one block: a short pause that lets other libraries' worker threads go idle (not with
        ``quick``), one untimed warm-up call (page faults, caches, waking this library's own
        idle workers; only in the first round for calls slower than WARM_UP_BELOW_SECONDS),
        then its timed calls back to back, as a loop calling it would. Two
        methods' medians in one round are a back-to-back pair: the spread of their ratio over
        the rounds shows how much the host drifted. Calls are not interleaved one by one:
        PyTorch's spinning workers would take a core from the call after each of its own, and
        a pause before every call made each call pay for waking idle cores instead (measured:
        4.3 -> 6.2 ms for a 2-thread gather). The garbage collector is paused while timing.

        List fastembed's method first. ``repeats``: timed calls per method (default
        ``self.repeats``), or a dict giving some methods another count (a method with fewer
        calls than rounds joins only the first rounds). ``setup()``, if given, runs untimed
        before every call (e.g. restoring an array that a method modifies in place). ``nbytes``
        is the memory traffic the operation must move at minimum (the same for every method),
        from which GB/s is computed. ``rounds`` overrides ``self.rounds`` (microsecond calls take
        more: a round's median moves with the state the core is in after the pause). A case and
        group's table is printed as soon as the next one starts.
        """
        if not self.wants(case):
            return
        self._start(case, group)
        counts = {
            method: (repeats.get(method, self.repeats) if isinstance(repeats, dict) else repeats)
            or self.repeats
            for method in methods
        }
        blocks = {
            method: split_count(count, rounds or self.rounds) for method, count in counts.items()
        }
        samples: dict[str, list[list[float]]] = {method: [] for method in methods}
        with _gc_paused():
            for round_index in range(max(len(b) for b in blocks.values())):
                for method, fn in methods.items():
                    if round_index < len(blocks[method]):
                        done = samples[method]
                        warm_up = not done or statistics.median(done[-1]) < WARM_UP_BELOW_SECONDS
                        block = self._block(fn, setup, blocks[method][round_index], warm_up)
                        done.append(block)
        for method, rounds in samples.items():
            self._store(case, group, method, rounds, nbytes)

    def compare_threads(
        self, case: str, group: str, method: str, fn: Callable[[], object], nbytes: int, pairs: int
    ) -> None:
        """Time ``fn`` at 1 fastembed thread and at ``self.threads``, in ``pairs`` interleaved
        rounds (1 thread, then all, then 1 again...), recorded as the methods
        ``f"{method}, 1 thread"`` and ``f"{method}, {threads} threads"``: the speed-up's spread
        over the pairs shows the host's drift, which a 1 -> N ratio of passes minutes apart
        hides. Each block is a warm-up and ``self.repeats // self.rounds`` timed calls."""
        if not self.wants(case):
            return
        self._start(case, group)
        per_block = max(1, self.repeats // self.rounds)
        counts = (1, self.threads)
        samples: dict[int, list[list[float]]] = {threads: [] for threads in counts}
        with _gc_paused():
            try:
                for _ in range(pairs):
                    for threads in counts:
                        fastembed.set_num_threads(threads)
                        samples[threads].append(self._block(fn, None, per_block, True))
            finally:
                fastembed.set_num_threads(self.threads)
        for threads, rounds in samples.items():
            self._store(case, group, f"{method}, {thread_label(threads)}", rounds, nbytes)

    def _start(self, case: str, group: str) -> None:
        """Print the table before this one, if it is complete, and report progress."""
        if self._open_table is not None and self._open_table[1:] != (case, group):
            self._on_table(self._open_table)
            self._open_table = None
        self._on_progress(case, group)

    def _block(
        self,
        fn: Callable[[], object],
        setup: Callable[[], object] | None,
        count: int,
        warm_up: bool,
    ) -> list[float]:
        if not self.quick:
            time.sleep(QUIESCE_SECONDS)
        if warm_up:
            # Microsecond calls warm up for WARM_UP_SECONDS: after the pause one call left a whole
            # block of the next ones 1.3 us slower now and then (the core's clock or caches).
            deadline = time.perf_counter() + WARM_UP_SECONDS
            while self._timed_call(fn, setup) < SHORT_CALL_SECONDS:
                if time.perf_counter() > deadline:
                    break
        return [self._timed_call(fn, setup) for _ in range(count)]

    @staticmethod
    def _timed_call(fn: Callable[[], object], setup: Callable[[], object] | None) -> float:
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    def _store(
        self, case: str, group: str, method: str, rounds: list[list[float]], nbytes: int
    ) -> None:
        times = [t for block in rounds for t in block]
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
            samples=tuple(times),
            round_seconds=tuple(statistics.median(block) for block in rounds),
        )
        self._open_table = record.key
        self._results.records.append(record)

    def finish(self) -> None:
        """Hand over the last open table (run.py calls this after the suite returns)."""
        if self._open_table is not None:
            self._on_table(self._open_table)
            self._open_table = None


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The garbage collector off for the duration of a ``with`` block (as it was, after)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
