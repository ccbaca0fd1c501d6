"""Benchmark fastembed against NumPy and the peer libraries (PyTorch, gensim, faiss...) on the
same data.

Usage: ``python bench/run.py [--full | --quick] [--threads 1,2] [--repeats N] [--suites a,b]
[--cases SUBSTRING,...] [--neighbour MIB] [--json bench/results.json] [--plot bench/results.png]``

- default: each suite's headline case at all cores, a few minutes in all (each suite has a
  budget, ``HEADLINE_SECONDS``); the targets its cases allow are judged.
- ``--full``: every case at 1 thread and at all cores; judges every issue's target.
- ``--quick``: tiny sizes, a smoke run of seconds (its ratios mean nothing).
- ``--neighbour MIB``: the whole run beside a process that streams through two buffers of MIB
  MiB on one core (``neighbour.py``): a host whose cache and memory bandwidth are shared. Give
  ``--threads`` one less than the cores, so that it does not take a core from the kernels.

It prints the host line (caches, copy bandwidth, random-load latency, 1 -> N streaming gain:
every table is read against it), a Markdown table per (thread count, case, group), the targets
as PASS/FAIL lines with the spread of their back-to-back pairs, writes every number to
``bench/results.json`` and, where matplotlib is installed, the chart ``bench/results.png``.

A suite is a module ``bench/suite_<name>.py``, found by its name; ``bench/README.md`` gives the
convention a new suite follows (``HEADLINE_SECONDS``, ``FULL_SECONDS``, ``PEERS``,
``run(ctx)``, ``targets(results)``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
from pathlib import Path
from types import ModuleType

import fastembed
import numpy as np
from chart import chart_title, draw
from harness import FULL, HEADLINE, QUICK, Context, Results, Target, import_peer, thread_label
from machine import available_cores, format_host, machine_info, measure_host
from neighbour import streaming_neighbour
from progress import ClearingStdout, Progress, clock
from report import format_table, format_target, write_json

BENCH_DIR = Path(__file__).resolve().parent
INSTALL_PEERS = 'pip install ".[bench]"'
# A suite that does not state its budgets is given these (seconds on a 2-core machine).
DEFAULT_BUDGETS = {QUICK: 3.0, HEADLINE: 20.0, FULL: 60.0}
# The default run must fit this (the README's promise), host line and imports included.
HEADLINE_TOTAL_SECONDS = 180.0


def discover_suites() -> dict[str, ModuleType]:
    names = sorted(path.stem.removeprefix("suite_") for path in BENCH_DIR.glob("suite_*.py"))
    return {name: importlib.import_module(f"suite_{name}") for name in names}


def budget(suite: ModuleType, mode: str) -> float:
    """Seconds one pass of ``suite`` is expected to take in ``mode`` (on a 2-core machine)."""
    attribute = {HEADLINE: "HEADLINE_SECONDS", FULL: "FULL_SECONDS"}.get(mode)
    return float(getattr(suite, attribute, DEFAULT_BUDGETS[mode]) if attribute else 3.0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--full", action="store_true", help="every case, 1 thread and all cores")
    sizes.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument(
        "--threads",
        type=lambda text: [int(t) for t in text.split(",")],
        default=None,
        help="comma-separated thread counts (default: all cores; 1 and all cores with --full "
        "and --quick)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per method")
    parser.add_argument("--suites", default=None, help="comma-separated (default: all)")
    parser.add_argument(
        "--cases", default="", help="run only cases whose name contains one of these substrings"
    )
    parser.add_argument(
        "--neighbour",
        type=int,
        default=0,
        metavar="MIB",
        help="run beside a process streaming through two buffers of MIB MiB (a shared host)",
    )
    parser.add_argument("--json", type=Path, default=BENCH_DIR / "results.json")
    parser.add_argument("--plot", type=Path, default=BENCH_DIR / "results.png")
    args = parser.parse_args(argv)
    args.mode = FULL if args.full else QUICK if args.quick else HEADLINE
    if args.threads is None:
        cores = available_cores()
        args.threads = [cores] if args.mode == HEADLINE else sorted({1, cores})
    if args.repeats is None:
        args.repeats = {QUICK: 3, HEADLINE: 6, FULL: 7}[args.mode]
    if args.repeats < 1 or min(args.threads) < 1:
        parser.error("--repeats and --threads must be >= 1")
    if args.neighbour < 0:
        parser.error("--neighbour must be >= 0")
    return args


def select_suites(requested: str | None) -> dict[str, ModuleType]:
    suites = discover_suites()
    if requested is None:
        return suites
    names = [name.strip() for name in requested.split(",") if name.strip()]
    unknown = [name for name in names if name not in suites]
    if unknown:
        sys.exit(f"unknown suite(s) {unknown}; available: {sorted(suites)}")
    return {name: suites[name] for name in names}


def missing_peers(suites: dict[str, ModuleType]) -> str:
    """One sentence naming the optional packages that are not installed and what they would
    add, or "" when everything is there."""
    losses: dict[str, list[str]] = {}
    for name, suite in suites.items():
        for peer in getattr(suite, "PEERS", ()):
            if import_peer(peer) is None:
                losses.setdefault(peer, []).append(name)
    parts = [f"{peer} (comparisons in {', '.join(names)})" for peer, names in losses.items()]
    if import_peer("matplotlib") is None:
        parts.append("matplotlib (the chart)")
    if not parts:
        return ""
    return f"Not installed, so skipped: {'; '.join(parts)}. `{INSTALL_PEERS}` brings them in.\n"


def set_threads(threads: int) -> None:
    fastembed.set_num_threads(threads)
    torch = import_peer("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def _format_load(load: tuple[float, ...] | None) -> str:
    return " ".join(f"{x:.2f}" for x in load) if load else "unknown"


def print_targets(targets: list[Target], mode: str) -> None:
    judged = [t for t in targets if t.ratios]
    print("## Targets\n")
    if judged:
        if mode == QUICK:
            print("(--quick sizes are too small for these ratios to mean anything)\n")
        elif mode == HEADLINE:
            print("(on the headline cases only; `--full` judges every case of every target)\n")
        print(
            "Each ratio is the median over back-to-back pairs (both methods timed in the same "
            "round, one right after the other), with its range.\n"
        )
    for target in judged:
        print(format_target(target))
    skipped = len(targets) - len(judged)
    if skipped:
        print(
            f"\n{skipped} {'more ' if judged else ''}target(s) had nothing to judge in this run "
            "(their cases were not run, or they need a peer named at the top)."
        )
    print()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    suites = select_suites(args.suites)
    steps = [(threads, name) for threads in args.threads for name in suites]
    progress = Progress(
        [(f"{name}, {thread_label(threads)}", budget(suites[name], args.mode))
         for threads, name in steps]
    )  # fmt: skip
    stdout = ClearingStdout(sys.stdout, progress) if sys.stderr.isatty() else sys.stdout
    with contextlib.redirect_stdout(stdout), streaming_neighbour(args.neighbour):  # type: ignore[type-var]
        return run(args, suites, steps, progress)


def run(
    args: argparse.Namespace,
    suites: dict[str, ModuleType],
    steps: list[tuple[int, str]],
    progress: Progress,
) -> int:
    machine = machine_info()
    label = {QUICK: " (quick)", HEADLINE: " (headline cases; --full for all)", FULL: " (full)"}
    print(f"# fastembed benchmarks{label[args.mode]}\n")
    missing = missing_peers(suites)
    if missing:
        print(missing)
    planned = sum(budget(suites[name], args.mode) for _, name in steps)
    if args.mode == HEADLINE and planned > HEADLINE_TOTAL_SECONDS:
        print(
            f"(the suites' headline budgets add up to {planned:.0f} s, over the default run's "
            f"{HEADLINE_TOTAL_SECONDS:.0f} s: lower HEADLINE_SECONDS or the sizes)\n"
        )
    results = Results()
    results.host = measure_host(args.mode, max(args.threads), np.random.default_rng(7))
    results.host["neighbour_mib"] = args.neighbour
    bandwidth = results.host["copy_bandwidth"]
    torch = import_peer("torch")
    print(
        f"{machine['cpu_model']}, {machine['available_cores']} cores available; "
        f"numpy {np.__version__}, torch {torch.__version__ if torch else 'not installed'}; "
        f"thread counts {args.threads}; each method's {args.repeats} timed calls in up to 3 "
        f"rounds, each after a warm-up; median; load average "
        f"{_format_load(machine['load_average_at_start'])}\n\n{format_host(results.host)}\n",
        flush=True,
    )

    def print_table(key: tuple[int, str, str]) -> None:
        print(format_table(results.table(key), bandwidth), flush=True)

    for threads, name in steps:
        progress.next_step()
        set_threads(threads)
        ctx = Context(
            suite=name,
            mode=args.mode,
            threads=threads,
            repeats=args.repeats,
            rounds=3,
            bandwidth=bandwidth,
            case_filters=[f for f in args.cases.split(",") if f],
            results=results,
            on_table=print_table,
            on_progress=progress.update,
        )
        suites[name].run(ctx)
        ctx.finish()
    progress.finish()
    suite_seconds = {
        f"{name}, {thread_label(threads)}": {
            "wall": wall,
            "cpu": cpu,
            "budget": budget(suites[name], args.mode),
        }
        for (threads, name), wall, cpu in zip(
            steps, progress.step_seconds, progress.step_cpu_seconds
        )
    }

    machine["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    targets: list[Target] = []
    for suite in suites.values():
        if hasattr(suite, "targets"):
            targets.extend(suite.targets(results))
    if targets:
        print_targets(targets, args.mode)

    print(
        "Time per suite, wall (CPU of all threads; budget): "
        + ", ".join(
            f"{step} {t['wall']:.0f} s ({t['cpu']:.0f} s; {t['budget']:.0f} s)"
            for step, t in suite_seconds.items()
        )
    )
    write_json(
        args.json,
        machine=machine,
        settings={
            "mode": args.mode,
            "threads": args.threads,
            "repeats": args.repeats,
            "suites": list(suites),
            "cases": args.cases,
        },
        results=results,
        targets=targets,
        suite_seconds=suite_seconds,
    )
    drawn = ""
    if import_peer("matplotlib") is not None:
        title = chart_title(machine, results.host, max(args.threads), args.mode)
        if draw(args.plot, targets, title):
            drawn = f", chart -> {args.plot}"
    print(
        f"{len(results.records)} results in {clock(progress.elapsed())} (CPU of all threads "
        f"{clock(time.process_time())}; load average at the end "
        f"{_format_load(machine['load_average_at_end'])}) "
        f"-> {args.json}{drawn}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
