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
    """``PASS  description: 1.31x (range 1.20-1.45 over 3 pairs) [on the worst case]; target
    >= 1x``, then the note."""
    worst = target.worst
    assert worst is not None, "a target without ratios is reported as skipped, not judged"
    case, ratio = worst
    where = (
        f" on {case}"
        if len(target.ratios) == 1
        else f", worst of {len(target.ratios)} cases: {case}"
    )
    line = f"{target.status}  {target.description}: {ratio}{where}; target >= {target.minimum:g}x"
    if target.note:
        line += f"\n      ({target.note})"
    return line


def jsonable(value: Any) -> Any:
    """Dataclasses (Record, Ratio, Target) as dicts, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


def write_json(
    path: Path,
    *,
    machine: dict[str, Any],
    settings: dict[str, Any],
    results: Results,
    targets: list[Target],
    suite_seconds: dict[str, dict[str, float]],
) -> None:
    document = {
        "machine": machine,
        "host": jsonable(results.host),
        "settings": settings,
        "copy_bandwidth_bytes_per_s": results.host.get("copy_bandwidth"),
        "suite_seconds": suite_seconds,
        "results": [
            {**jsonable(record), "gb_per_s": record.nbytes / record.seconds / 1e9}
            for record in results.records
        ],
        "targets": [{**jsonable(t), "status": t.status} for t in targets],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
