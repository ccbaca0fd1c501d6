"""How results are shown: Markdown tables, target lines, and the JSON file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from harness import Record, Results, Target


def format_table(records: list[Record], bandwidth: float) -> str:
    """One Markdown table: method | median | GB/s | ratio to the fastest method."""
    threads, case, group = records[0].key
    fastest = min(r.seconds for r in records)
    # Per-call latencies read better in microseconds.
    unit, scale = ("µs", 1e6) if fastest < 1e-3 else ("ms", 1e3)
    lines = [
        f"### {case} · {group} · {threads} thread{'s' if threads > 1 else ''} "
        f"(copy bandwidth {bandwidth / 1e9:.1f} GB/s)",
        "",
        f"| method | median {unit} | GB/s | ratio to fastest |",
        "|---|---:|---:|---:|",
    ]
    for r in records:
        gbps = r.nbytes / r.seconds / 1e9
        lines.append(
            f"| {r.method} | {r.seconds * scale:.{_digits(r.seconds * scale)}f} "
            f"| {gbps:.2f} | {r.seconds / fastest:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _digits(value: float) -> int:
    return 2 if value < 10 else 1


def format_target(target: Target) -> str:
    line = f"{target.status}  {target.description} (>= {target.minimum:g}x)"
    worst = target.worst
    if worst is not None:
        label, ratio = worst
        line += f": worst {ratio:.2f}x on {label}"
    return line


def write_json(
    path: Path,
    *,
    machine: dict[str, Any],
    settings: dict[str, Any],
    bandwidth: float,
    results: Results,
    targets: list[Target],
) -> None:
    document = {
        "machine": machine,
        "settings": settings,
        "copy_bandwidth_bytes_per_s": bandwidth,
        "results": [
            {**dataclasses.asdict(record), "gb_per_s": record.nbytes / record.seconds / 1e9}
            for record in results.records
        ],
        "targets": [
            {
                "description": t.description,
                "minimum": t.minimum,
                "status": t.status,
                "ratios": t.ratios,
            }
            for t in targets
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
