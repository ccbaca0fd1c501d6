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
            label = f"{target.group} · {case} · vs {target.other}"
            bars.append((label, ratio.median, ratio.low, ratio.high, target.minimum))
    return bars


def draw(path: Path, targets: list[Target], title: str) -> bool:
    """Write the chart to ``path``; False (nothing written) when no target has a peer's ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    bars = speedup_bars(targets)
    if not bars:
        return False
    labels, medians, lows, highs, minimums = zip(*bars)
    rows = list(range(len(bars)))
    figure, axes = plt.subplots(figsize=(13, 1.5 + 0.24 * len(bars)))
    met = [m >= t for m, t in zip(medians, minimums)]
    # Bars grow from 1x: rightwards where fastembed is faster, leftwards where it is slower.
    axes.barh(
        rows,
        [m - 1.0 for m in medians],
        left=1.0,
        color=["tab:green" if ok else "tab:red" for ok in met],
        alpha=0.75,
        height=0.7,
    )
    axes.errorbar(
        medians,
        rows,
        xerr=[[m - lo for m, lo in zip(medians, lows)], [hi - m for m, hi in zip(medians, highs)]],
        fmt="none",
        ecolor="black",
        capsize=3,
        linewidth=1,
        label="range over the back-to-back pairs",
    )
    axes.scatter(minimums, rows, marker="|", s=120, color="tab:blue", zorder=3, label="target")
    axes.axvline(1.0, color="black", linewidth=1.2)
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}x"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    low, high = min(min(lows), 0.8), max(max(highs), max(minimums))
    axes.set_xlim(low / 1.3, high * 1.6)
    for row, median, top in zip(rows, medians, highs):
        axes.annotate(f"{median:.2f}x", (max(median, top), row), xytext=(5, -3),
                      textcoords="offset points", fontsize=7)  # fmt: skip
    axes.set_yticks(rows, labels, fontsize=7)
    axes.set_ylim(len(bars) - 0.5, -0.5)
    axes.grid(axis="x", which="major", alpha=0.3)
    axes.set_xlabel("speed-up = the peer's time / fastembed's (median of the pairs), log scale; "
                    "green: target met, red: missed")  # fmt: skip
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def chart_title(machine: dict[str, Any], host: dict[str, Any], threads: int, mode: str) -> str:
    return (
        f"fastembed's speed-up over its peers ({mode} run)\n{machine['cpu_model']}, "
        f"{machine['available_cores']} cores, {threads} thread{'s' if threads > 1 else ''}, "
        f"copy bandwidth {host['copy_bandwidth'] / 1e9:.1f} GB/s"
    )
