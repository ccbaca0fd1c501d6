"""Benchmark fastembed against NumPy and (where importable) PyTorch on the same data.

Usage: ``python bench/run.py [--threads 1,2] [--repeats 7] [--quick] [--suites core,...]
[--cases SUBSTRING,...] [--json bench/results.json]``

Runs every suite module ``bench/suite_<name>.py`` (see ``harness.py`` for what a suite gets)
once per thread count, prints a Markdown table per (thread count, case, group), then the
suites' target ratios as PASS/FAIL lines, and writes all raw results to JSON.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import fastembed
from harness import Context, Results, Target
from machine import available_cores, copy_bandwidth, machine_info
from report import format_table, format_target, write_json

BENCH_DIR = Path(__file__).resolve().parent


def discover_suites() -> dict[str, ModuleType]:
    names = sorted(path.stem.removeprefix("suite_") for path in BENCH_DIR.glob("suite_*.py"))
    return {name: importlib.import_module(f"suite_{name}") for name in names}


def import_torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads",
        type=lambda text: [int(t) for t in text.split(",")],
        default=sorted({1, available_cores()}),
        help="comma-separated thread counts (default: 1 and all cores)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (default 7)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--suites", default=None, help="comma-separated (default: all)")
    parser.add_argument(
        "--cases", default="", help="run only cases whose name contains one of these substrings"
    )
    parser.add_argument("--json", type=Path, default=BENCH_DIR / "results.json")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.repeats < 1 or min(args.threads) < 1:
        parser.error("--repeats and --threads must be >= 1")
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


def set_threads(threads: int, torch: Any) -> None:
    fastembed.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)


def _format_load(load: tuple[float, ...] | None) -> str:
    return " ".join(f"{x:.2f}" for x in load) if load else "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    suites = select_suites(args.suites)
    torch = import_torch()
    machine = machine_info(torch)
    mib = 64 if args.quick else 256
    bandwidth = copy_bandwidth(mib << 20, repeats=args.repeats)
    load = _format_load(machine["load_average_at_start"])
    print(f"# fastembed benchmarks{' (quick)' if args.quick else ''}\n")
    print(
        f"{machine['cpu_model']}, {machine['available_cores']} cores available; "
        f"numpy {machine['numpy']}, torch {machine['torch'] or 'not importable'}; "
        f"thread counts {args.threads}; median of {args.repeats} timed calls after a warm-up "
        f"unless stated; copy bandwidth (np.copyto "
        f"{mib} MiB, read + write) {bandwidth / 1e9:.1f} GB/s; load average {load}\n",
        flush=True,
    )

    results = Results()

    def print_table(key: tuple[int, str, str]) -> None:
        print(format_table(results.table(key), bandwidth), flush=True)

    started = time.perf_counter()
    for threads in args.threads:
        set_threads(threads, torch)
        for name, suite in suites.items():
            ctx = Context(
                suite=name,
                quick=args.quick,
                torch=torch,
                threads=threads,
                repeats=args.repeats,
                bandwidth=bandwidth,
                case_filters=[f for f in args.cases.split(",") if f],
                results=results,
                on_table=print_table,
            )
            suite.run(ctx)
            ctx.finish()

    machine["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    targets: list[Target] = []
    for suite in suites.values():
        if hasattr(suite, "targets"):
            targets.extend(suite.targets(results))
    if targets:
        print("## Targets\n")
        if args.quick:
            print("(--quick sizes are too small for these ratios to mean anything)\n")
        for target in targets:
            print(format_target(target))
        print()

    write_json(
        args.json,
        machine=machine,
        settings={
            "threads": args.threads,
            "repeats": args.repeats,
            "quick": args.quick,
            "suites": list(suites),
            "cases": args.cases,
        },
        bandwidth=bandwidth,
        results=results,
        targets=targets,
    )
    print(
        f"{len(results.records)} results in {time.perf_counter() - started:.0f} s "
        f"(load average at the end {_format_load(machine['load_average_at_end'])}) -> {args.json}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
