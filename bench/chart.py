"""The picture of a run: fastembed's speed-up over each peer per case, from the targets' pairs.

One horizontal bar per (target, case): the median of the back-to-back pairs, the range as an
error bar, on a log scale with 1x (level) marked and each target's minimum as a tick. Needs
matplotlib (``pip install ".[bench]"``); ``draw`` is only called when it is importable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import Target


def speedup_bars(targets: list[Target]) -> list[tuple[str, float, float, float, float]]:
    """(label, median, low, high, minimum) per case of every target against a peer."""
    bars = []
    for target in targets:
        if not target.peer:
            continue
        for case, ratio in target.ratios.items():
            label = f"{case} · {target.group}\n{target.ours} vs {target.other}"
            bars.append((label, ratio.median, ratio.low, ratio.high, target.minimum))
    return bars


def draw(path: Path, targets: list[Target], title: str) -> bool:
    """Write the chart to ``path``; False (nothing written) when no target has a peer's ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = speedup_bars(targets)
    if not bars:
        return False
    labels, medians, lows, highs, minimums = zip(*bars)
    rows = range(len(bars))
    figure, axes = plt.subplots(figsize=(11, 1.2 + 0.42 * len(bars)))
    colors = ["tab:green" if m >= t else "tab:red" for m, t in zip(medians, minimums)]
    errors = [
        [m - lo for m, lo in zip(medians, lows)],
        [hi - m for m, hi in zip(medians, highs)],
    ]
    # Bars grow from 1x: rightwards where fastembed is faster, leftwards where it is slower.
    widths = [m - 1.0 for m in medians]
    axes.barh(rows, widths, left=1.0, xerr=errors, color=colors, alpha=0.8, capsize=3)
    axes.scatter(minimums, rows, marker="|", s=300, color="black", zorder=3, label="target")
    axes.axvline(1.0, color="black", linewidth=1)
    axes.set_xscale("log")
    axes.set_yticks(list(rows), labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel("speed-up of fastembed (the peer's time / fastembed's), log scale; 1x = level")
    axes.set_title(title, fontsize=9)
    axes.legend(loc="lower right", fontsize=8)
    for row, median in zip(rows, medians):
        axes.annotate(f"{median:.2f}x", (median, row), xytext=(4, -3), textcoords="offset points",
                      fontsize=7)  # fmt: skip
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def chart_title(machine: dict[str, Any], host: dict[str, Any], threads: int, mode: str) -> str:
    return (
        f"fastembed's speed-up over its peers ({mode} run)\n{machine['cpu_model']}, "
        f"{machine['available_cores']} cores, {threads} thread{'s' if threads > 1 else ''}, "
        f"copy bandwidth {host['copy_bandwidth'] / 1e9:.1f} GB/s"
    )
