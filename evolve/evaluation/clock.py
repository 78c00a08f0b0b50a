"""The budget clock of one evaluation: wall seconds, or the genome's own CPU seconds per core.

A task's `clock` says what its budget counts (evolve.evaluation.task):

- "wall": seconds of the supervisor's monotonic clock from the first training batch. Right
  for a dedicated GPU, as in autoresearch: nothing else runs there.
- "cpu": the core-seconds of the cores the supervisor grants the genome (`Task.threads` of
  them) that other processes did not take, divided by their number. Charged: the CPU time of
  the genome's whole process tree as its cgroup counts it (evolve.evaluation.cgroups), the
  time the granted cores sat idle (from /proc/stat: a core the genome leaves unused is its
  choice), and the CPU time of the supervisor's thread that packs its batches. Not charged:
  the time other processes held the granted cores. On an idle machine this is the wall
  clock; on a shared one a genome is charged for what it got, not for what others took. With
  OpenMP threads that sleep rather than spin while they wait (OMP_WAIT_POLICY=PASSIVE, set by
  the supervisor) a core freed by a waiting thread goes to whoever is runnable, so an honest
  genome's cores are rarely idle under load. Threads beyond the grant, processes, spinning:
  all of it is charged, so none of it buys training; fewer threads than the grant leave cores
  idle, which is charged too (adversary round 9: with CPU time alone, one torch thread on a
  2-core grant got twice the wall time and 0.08 bpb).

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
    """Charged core-seconds per granted core: `usage()` (the tree's CPU seconds) plus each of
    `extra` (idle seconds of the granted cores, the feeder thread's CPU seconds), each read as
    seconds or None when unreadable (then its last reading stands)."""

    kind = "cpu"

    def __init__(self, usage: Callable[[], float | None], threads: int,
                 extra: tuple[Callable[[], float | None], ...] = ()):
        super().__init__()
        if threads < 1:
            raise ValueError("a CPU clock needs the number of cores granted (threads >= 1)")
        self.sources = (usage, *extra)
        self.threads = threads
        self._u0 = 0.0
        self._last = [0.0] * len(self.sources)
        self._lock_read = threading.Lock()

    def _read(self) -> float:
        with self._lock_read:                       # the feeder and the watch loop both read
            for i, source in enumerate(self.sources):
                value = source()
                if value is not None:               # the kernel's counts never go down
                    self._last[i] = max(self._last[i], value)
            return sum(self._last)

    def _started(self) -> None:
        self._u0 = self._read()

    def elapsed(self, now: float) -> float:
        if self.t0 is None:
            return 0.0
        return max(0.0, self._read() - self._u0) / self.threads

    def wall_limit(self, budget_s: float) -> float:
        return WALL_FACTOR * budget_s


def make_clock(kind: str, threads: int, usage: Callable[[], float | None] | None,
               cores: list[int] = (),
               helper_tid: Callable[[], int | None] | None = None) -> BudgetClock:
    """The clock a task asks for; a CPU clock needs `usage` (the tree's cgroup), the granted
    `cores` (whose idle time is charged) and `helper_tid()`, the native id of the thread of
    this process that serves the genome's batches once it runs (its CPU time is charged)."""
    if kind == "wall":
        return BudgetClock()
    if kind == "cpu":
        if usage is None:
            raise ValueError("the cpu clock needs the genome's cgroup to count its CPU time")
        extra = []
        if cores:
            extra.append(lambda: idle_core_seconds(cores))
        if helper_tid is not None:
            def helper() -> float | None:
                tid = helper_tid()
                return None if tid is None else thread_cpu_seconds(tid)
            extra.append(helper)
        return CpuClock(usage, threads, tuple(extra))
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


def idle_core_seconds(cores: list[int]) -> float | None:
    """Seconds the given cores have been idle (idle + iowait in /proc/stat) since boot, summed;
    None if unreadable. Resolution: the kernel's clock tick (10 ms per core)."""
    want = {f"cpu{c}" for c in cores}
    total, seen = 0, 0
    try:
        with open("/proc/stat") as f:
            for line in f:
                if not line.startswith("cpu"):
                    break
                parts = line.split()
                if parts[0] in want:
                    total += int(parts[4]) + int(parts[5])
                    seen += 1
    except (OSError, ValueError, IndexError):
        return None
    return total / TICKS if seen == len(want) else None


TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100     # /proc/stat units


def thread_cpu_seconds(tid: int) -> float | None:
    """CPU seconds of one thread of this process (schedstat, ns); None when it is gone."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


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

