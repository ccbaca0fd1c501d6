"""The benchmark's own machinery: rounds, ratios with their spread, verdicts, time left, and a
smoke run of bench/run.py --quick (slow: FASTEMBED_RUN_SLOW=1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402
from harness import HEADLINE, Context, Ratio, Record, Results, split_count  # noqa: E402
from progress import Progress  # noqa: E402
from report import format_target  # noqa: E402


def record(method: str, rounds: tuple[float, ...], case: str = "c") -> Record:
    return Record("s", 2, case, "g", method, sorted(rounds)[len(rounds) // 2], min(rounds),
                  len(rounds), 0, rounds, rounds)  # fmt: skip


def test_split_count_spreads_calls_over_rounds() -> None:
    assert split_count(7, 3) == [3, 2, 2]
    assert split_count(2, 3) == [1, 1]
    assert split_count(1, 3) == [1]
    assert sum(split_count(200, 3)) == 200


def test_ratio_is_the_median_of_round_pairs_with_its_range() -> None:
    results = Results([record("ours", (1.0, 2.0, 1.0)), record("peer", (3.0, 3.0, 5.0))])
    ratio = results.ratio(2, "c", "g", "ours", "peer")
    assert ratio == Ratio(median=3.0, low=1.5, high=5.0, pairs=3)
    assert results.ratio(2, "c", "g", "ours", "absent") is None


def test_speedup_target_judges_the_worst_case_median() -> None:
    results = Results(
        [
            record("ours", (1.0, 1.0, 1.0), "a"),
            record("peer", (2.0, 2.0, 0.5), "a"),
            record("ours", (1.0, 1.0, 1.0), "b"),
            record("peer", (3.0, 3.0, 3.0), "b"),
        ]
    )
    target = results.speedup(1.5, "g", "ours", "peer", ["a", "b", "missing"])
    assert set(target.ratios) == {"a", "b"}
    assert target.status == "PASS"
    line = format_target(target)
    assert line.startswith("PASS") and "2.00x (range 0.50-2.00 over 3 pairs)" in line
    assert "worst of 2 cases: a" in line
    assert results.speedup(2.5, "g", "ours", "peer", ["a"]).status == "FAIL"
    assert results.speedup(1.0, "g", "ours", "other", ["a"]).status == "SKIP"


def test_bandwidth_share_is_the_copy_time_of_the_bytes_over_each_round() -> None:
    rounds = (2.0, 1.0, 4.0)
    mine = Record("s", 2, "c", "g", "ours", 2.0, 1.0, 3, 10**9, rounds, rounds)
    results = Results([mine], host={"copy_bandwidth": 1e9})
    target = results.bandwidth_share(0.5, "g", "ours", ["c", "absent"])
    assert target.ratios == {"c": Ratio(median=0.5, low=0.25, high=1.0, pairs=3)}
    assert target.status == "PASS" and not target.peer
    assert results.bandwidth_share(0.6, "g", "ours", ["c"]).status == "FAIL"
    assert Results([mine]).bandwidth_share(0.5, "g", "ours", ["c"]).status == "SKIP"


def headline_context(results: Results, repeats: int, rounds: int) -> Context:
    """A headline run's context at one thread, recording into ``results``."""
    return Context(
        suite="s",
        mode=HEADLINE,
        threads=1,
        repeats=repeats,
        rounds=rounds,
        bandwidth=1e9,
        case_filters=[],
        results=results,
        on_table=lambda key: None,
    )


def test_compare_times_every_method_in_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "WARM_UP_SECONDS", 0.0)  # one warm-up call per block
    results = Results()
    ctx = headline_context(results, repeats=5, rounds=3)
    calls: list[str] = []
    ctx.compare("c", "g", {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 8,
                repeats={"b": 1})  # fmt: skip
    a, b = results.records
    assert (a.repeats, len(a.round_seconds)) == (5, 3)
    assert (b.repeats, len(b.round_seconds)) == (1, 1)
    # Each block: a warm-up, then its calls; b joins the first round only.
    assert calls == ["a"] * 3 + ["b"] * 2 + ["a"] * 3 + ["a"] * 2
    assert results.ratio(1, "c", "g", "a", "b").pairs == 1


def test_short_calls_warm_up_for_a_while_and_longer_ones_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(harness, "WARM_UP_SECONDS", 0.02)
    ctx = headline_context(Results(), repeats=2, rounds=1)
    calls = {"short": 0, "long": 0}

    def short() -> None:
        calls["short"] += 1

    def long() -> None:
        calls["long"] += 1
        time.sleep(2 * harness.SHORT_CALL_SECONDS)

    ctx.compare("c", "g", {"short": short, "long": long}, 8)
    assert calls["short"] > 100  # 20 ms of calls of about a microsecond
    assert calls["long"] == 1 + 2


def test_time_left_adds_the_budgets_to_come_at_the_pace_so_far() -> None:
    progress = Progress([("one", 10.0), ("two", 20.0)])
    assert progress.left() == pytest.approx(30.0)
    progress.next_step()
    assert progress.left() == pytest.approx(30.0, abs=0.5)


@pytest.mark.slow
def test_quick_run_writes_every_number(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--suites", "sparse", "--threads", "1",
         "--json", str(out), "--plot", str(tmp_path / "results.png")],
        check=True, capture_output=True, text=True, env={**os.environ},
    )  # fmt: skip
    document = json.loads(out.read_text())
    assert document["host"]["copy_bandwidth"] > 0
    assert document["machine"]["packages"]["numpy"]
    assert all(len(r["samples"]) == r["repeats"] for r in document["results"])


def test_streaming_neighbour_runs_for_the_block_and_is_gone_after() -> None:
    """bench/run.py --neighbour: a child that keeps streaming (its CPU time grows) while the
    block runs, and is gone after it, even when the block raises."""
    from neighbour import streaming_neighbour

    children_file = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    if not children_file.exists():
        pytest.skip("needs /proc/PID/task/TID/children")

    def children() -> set[int]:
        return {int(pid) for pid in children_file.read_text().split()}

    def user_ticks(pid: int) -> int:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11])

    before = children()
    with pytest.raises(KeyError), streaming_neighbour(4):
        (pid,) = children() - before
        start = user_ticks(pid)
        while user_ticks(pid) <= start:
            pass  # it streams: its user time grows
        raise KeyError("leave the block")
    assert children() == before
