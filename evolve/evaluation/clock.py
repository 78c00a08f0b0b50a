"""The budget clock of one evaluation: wall seconds, or the genome's own CPU seconds per core.

A task's `clock` says what its budget counts (evolve.evaluation.task):

- "wall": seconds of the supervisor's monotonic clock from the first training batch. Right
  for a dedicated GPU, as in autoresearch: nothing else runs there.
- "cpu": CPU seconds (user + system) used by the genome's whole process tree, as its cgroup
  counts them (evolve.evaluation.cgroups), divided by the cores the supervisor grants it
  (`Task.threads`). On an idle machine a genome that keeps its threads busy sees about the
  wall clock; on a shared one it is charged for the time it ran, not for the time other
  processes held the cores. With OpenMP threads that sleep rather than spin while they wait
  (OMP_WAIT_POLICY=PASSIVE, set by the supervisor), a thread that waits for a descheduled one
  costs nothing either. Threads beyond the grant, processes, spinning: all of it is charged,
  so none of it buys training.

A CPU clock also has a wall limit: a genome that the machine starves (less than 1/WALL_FACTOR
of its cores) or that idles is stopped WALL_FACTOR budgets after its start (TIMEOUT), so no
evaluation holds its slot without bound.

Either way the clock is the supervisor's: the feeder and the watch loop read it, the genome only
ever sees a start time derived from it (for `harness.progress()`). This module reads clocks and
pins a process to its granted cores (`grant_cores`); it decides nothing and starts nothing.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Callable

WALL_FACTOR = 4.0       # a CPU-clock evaluation ends by wall at 4 budgets: a quarter share


class BudgetClock:
    """Seconds of budget used since start(): wall seconds, or CPU seconds / threads."""

    kind = "wall"

    def __init__(self):
        self._lock = threading.Lock()
        self.t0: float | None = None          # monotonic time at which the budget started

    def start(self, at: float) -> float:
        """Start the clock at monotonic time `at` (once; later calls change nothing) and return
        the monotonic start."""
        with self._lock:
            if self.t0 is None:
                self.t0 = at
                self._started()
            return self.t0

    def _started(self) -> None:
        pass

    def elapsed(self, now: float) -> float:
        """Budget seconds used at monotonic time `now` (read now); 0 before the start."""
        return 0.0 if self.t0 is None else max(0.0, now - self.t0)

    def wall_limit(self, budget_s: float) -> float:
        """Wall seconds after the start at which the budget ends at the latest."""
        return budget_s

    def virtual_start(self, now: float) -> float:
        """The monotonic time at which a wall clock would have started to show what this one
        shows now: what the genome's harness measures progress from."""
        return now - self.elapsed(now)


class CpuClock(BudgetClock):
    """The genome tree's CPU seconds per granted core, read by `usage()` (seconds, or None
    when unreadable: then the last reading stands)."""

    kind = "cpu"

    def __init__(self, usage: Callable[[], float | None], threads: int):
        super().__init__()
        if threads < 1:
            raise ValueError("a CPU clock needs the number of cores granted (threads >= 1)")
        self.usage, self.threads = usage, threads
        self._u0 = 0.0
        self._last = 0.0

    def _read(self) -> float:
        value = self.usage()
        if value is not None:
            self._last = max(self._last, value)    # the kernel's count never goes down
        return self._last

    def _started(self) -> None:
        self._u0 = self._read()

    def elapsed(self, now: float) -> float:
        if self.t0 is None:
            return 0.0
        return max(0.0, self._read() - self._u0) / self.threads

    def wall_limit(self, budget_s: float) -> float:
        return WALL_FACTOR * budget_s


def make_clock(kind: str, threads: int, usage: Callable[[], float | None] | None) -> BudgetClock:
    """The clock a task asks for; a CPU clock needs `usage` (the tree's cgroup)."""
    if kind == "wall":
        return BudgetClock()
    if kind == "cpu":
        if usage is None:
            raise ValueError("the cpu clock needs the genome's cgroup to count its CPU time")
        return CpuClock(usage, threads)
    raise ValueError(f"unknown clock {kind!r}: use wall or cpu")


def granted_cores() -> list[int]:
    """The cores this process may run on (its affinity), in order."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def grant_cores(threads: int, cores: list[int]) -> None:
    """Pin this process to `cores` and give torch `threads` intra-op threads (in the genome's
    runner and the scorer's model process): a cold start's torch reads OMP_NUM_THREADS (set by
    the supervisor), one forked from the zygote has torch imported already."""
    if cores:
        try:
            os.sched_setaffinity(0, cores)
        except OSError:
            pass                                 # a core went offline: the scheduler decides
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds used so far by the live threads of process `pid` and its descendants (from
    /proc's per-thread schedstat, nanoseconds); None if `pid` is gone. Threads that already
    ended are not counted: for a process tree the caller controls (the scorer's model
    process), not for a genome's (that is what its cgroup is for)."""
    total, seen, todo = 0, set(), [pid]
    found = False
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        found = True
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9 if found else None

