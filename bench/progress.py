"""Where a run stands: suite, case, step i/n, time elapsed and an estimate of the time left.

On a terminal one status line (on stderr) is redrawn in place, and erased before anything else
is printed; otherwise (a log file, a pipe) a plain line per case. The estimate adds the budgets
(the suites' ``HEADLINE_SECONDS`` or ``FULL_SECONDS``) of the steps not yet done, scaled by
how the finished steps compared with theirs.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}:{seconds:02d}"


class Progress:
    """Steps (one per suite and thread count) with their budgets in seconds."""

    def __init__(self, steps: list[tuple[str, float]], stream: TextIO = sys.stderr) -> None:
        self._steps = steps
        self._stream = stream
        self._live = stream.isatty()
        self._shown = False
        self._started = time.perf_counter()
        self._step = -1
        self._step_started = self._started
        self._done_seconds = 0.0  # actual time of the finished steps
        self._done_budget = 0.0  # their budgets
        self._step_cpu = time.process_time()
        # Wall and CPU seconds (all threads of this process) of each finished step: on a busy
        # machine the first grows, the second hardly moves.
        self.step_seconds: list[float] = []
        self.step_cpu_seconds: list[float] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self._started

    def next_step(self) -> None:
        now = time.perf_counter()
        cpu = time.process_time()
        if self._step >= 0:
            self.step_seconds.append(now - self._step_started)
            self.step_cpu_seconds.append(cpu - self._step_cpu)
            self._done_seconds += now - self._step_started
            self._done_budget += self._steps[self._step][1]
        self._step += 1
        self._step_started = now
        self._step_cpu = cpu

    def finish(self) -> None:
        self.next_step()
        self.clear()

    def left(self) -> float:
        """Seconds left: the budgets still to come, scaled by the pace so far (the current
        step counts once it has overrun its budget)."""
        if self._step < 0:
            return sum(budget for _, budget in self._steps)
        budget = self._steps[self._step][1]
        in_step = time.perf_counter() - self._step_started
        spent, planned = self._done_seconds, self._done_budget
        if in_step > budget:
            spent, planned = spent + in_step, planned + budget
        pace = spent / planned if planned else 1.0
        later = sum(budget for _, budget in self._steps[self._step + 1 :])
        return max(0.0, pace * budget - in_step) + pace * later

    def update(self, case: str, group: str) -> None:
        """A new case (or group of it) starts in the current step."""
        name = self._steps[self._step][0]
        line = (
            f"[{self._step + 1}/{len(self._steps)}] {clock(self.elapsed())} elapsed, about "
            f"{clock(self.left())} left · {name} · {case} · {group}"
        )
        if self._live:
            self.clear()
            self._stream.write(line[: self._width()])
            self._shown = True
        else:
            self._stream.write(f"progress: {line}\n")
        self._stream.flush()

    def clear(self) -> None:
        """Erase the status line (before anything else is printed on the terminal)."""
        if self._shown:
            self._stream.write("\r\033[K")
            self._stream.flush()
            self._shown = False

    @staticmethod
    def _width() -> int:
        return shutil.get_terminal_size().columns - 1


class ClearingStdout:
    """stdout that erases the status line before each write, so that prints by the suites and
    the tables never land on top of it."""

    def __init__(self, stdout: TextIO, progress: Progress) -> None:
        self._stdout = stdout
        self._progress = progress

    def write(self, text: str) -> int:
        self._progress.clear()
        return self._stdout.write(text)

    def flush(self) -> None:
        self._stdout.flush()

    def isatty(self) -> bool:
        return self._stdout.isatty()
