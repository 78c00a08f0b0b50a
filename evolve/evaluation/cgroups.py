"""The cgroup of one genome's process tree: its memory limit, its task limit, what it used.

`MemoryCgroup.create(name, limit)` makes a cgroup (v2, else v1's memory and pids hierarchies)
that the genome's first process enters before it runs anything; every process and thread it
starts is in it too. The supervisor reads from it what the tree cannot forge: whether the
kernel's OOM killer struck, whether tasks were refused (a fork bomb), the peak memory.

It needs write access to the cgroup tree (root, or a delegated subtree); without one `create`
returns None and the supervisor runs without these layers. It starts and decides nothing.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


class MemoryCgroup:
    """A memory cgroup for one genome's whole process tree (cgroup v2, else v1's memory
    controller), so a host-memory bomb ends in that tree (status oom) instead of the kernel's
    OOM killer choosing the engine or another worker. This matters most on CUDA, where the
    address-space rlimit cannot be used. Needs write access to the cgroup tree (root, or a
    delegated subtree); `create` returns None where it has none."""

    V2, V1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")
    PIDS_V1 = Path("/sys/fs/cgroup/pids")
    CPUACCT_V1 = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self, path: Path, v2: bool, pids: Path | None = None, cpu: Path | None = None):
        self.path, self.v2 = path, v2
        self.pids = pids                      # where pids.max bounds the tree's tasks, if any
        self.cpu = cpu                        # where the tree's CPU time is counted, if anywhere

    @classmethod
    def create(cls, name: str, limit_bytes: int) -> "MemoryCgroup | None":
        v2_ok = "memory" in _read(cls.V2 / "cgroup.controllers").split()
        for root, v2 in ((cls.V2, True), (cls.V1, False)) if v2_ok else ((cls.V1, False),):
            path = root / name
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                (path / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(str(limit_bytes))
            except OSError:
                try:
                    path.rmdir()
                except OSError:
                    pass
                continue
            if v2:
                try:                        # no swapping around the limit, where accounted
                    (path / "memory.swap.max").write_text("0")
                except OSError:
                    pass
            return cls(path, v2, _task_limit(path if v2 else cls.PIDS_V1 / name),
                       _cpu_account(path if v2 else cls.CPUACCT_V1 / name, v2))
        return None

    @classmethod
    def sweep(cls, alive) -> int:
        """Remove cgroups left by supervisors that died (their pid, in the name, is gone)."""
        import re

        removed = 0
        for root in (cls.V2, cls.V1, cls.PIDS_V1, cls.CPUACCT_V1):
            try:
                names = [p for p in root.iterdir() if p.name.startswith("autoevolve-")]
            except OSError:
                continue
            for path in names:
                m = re.match(r"autoevolve-(?:eval-)?(\d+)-", path.name)
                if m and not alive(int(m.group(1))):
                    cg = cls(path, root == cls.V2)
                    for pid in _read(path / "cgroup.procs").split():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except (OSError, ValueError):
                            pass
                    cg.remove()
                    removed += not path.exists()
        return removed

    @property
    def paths(self) -> list[Path]:
        """The cgroup directories a process of the tree enters (v1: memory and pids apart)."""
        return [self.path] + [p for p in (self.pids, self.cpu) if p and p != self.path]

    def enter(self) -> None:
        """Move the calling process into the cgroup (from preexec_fn: before exec)."""
        for path in self.paths:
            (path / "cgroup.procs").write_text(str(os.getpid()))

    def tasks_refused(self) -> bool:
        """Whether the tree asked for more tasks (processes and threads) than MAX_TASKS."""
        if self.pids is None:
            return False
        for line in _read(self.pids / "pids.events").splitlines():
            key, _, value = line.partition(" ")
            if key == "max" and value.strip().isdigit() and int(value) > 0:
                return True
        return False

    def processes(self) -> list[int]:
        """The pids of every process in the cgroup (those that left the genome's session too)."""
        return [int(p) for p in _read(self.path / "cgroup.procs").split() if p.isdigit()]

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the tree's processes and threads have used since they
        entered, the dead ones included, in seconds; None where it is not counted. The kernel
        counts it: nothing in the tree can lower it (it could only leave the cgroup, and the
        sandbox gives it no write access to the cgroup filesystem)."""
        if self.cpu is None:
            return None
        if self.cpu == self.path and self.v2:
            for line in _read(self.cpu / "cpu.stat").splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec" and value.strip().isdigit():
                    return int(value) / 1e6
            return None
        text = _read(self.cpu / "cpuacct.usage").strip()        # v1: nanoseconds
        return int(text) / 1e9 if text.isdigit() else None

    def oom_killed(self) -> bool:
        events = _read(self.path / ("memory.events" if self.v2 else "memory.oom_control"))
        for line in events.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit() and int(value) > 0:
                return True
        return False

    def peak_bytes(self) -> int | None:
        text = _read(self.path / ("memory.peak" if self.v2 else "memory.max_usage_in_bytes"))
        return int(text) if text.strip().isdigit() else None

    def remove(self) -> None:
        for path in reversed(self.paths):
            for _ in range(50):               # members may take a moment to be reaped
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


MAX_TASKS = 1024     # processes and threads of one genome's tree (pids.max): an honest trainer
                     # uses tens (torch's pools, a compile worker pool); adversary round 6 held
                     # 1,800 (threads and setsid()ed children the session count missed), and
                     # ~30,000 would take every pid of a host with the default pid_max


def _task_limit(path: Path) -> Path | None:
    """Bound the tasks of the cgroup at `path` (v2: the memory cgroup itself, where the pids
    controller is enabled; v1: a pids cgroup of the same name, made here); None if impossible."""
    made = False
    try:
        if not path.exists():
            path.mkdir()
            made = True
        (path / "pids.max").write_text(str(MAX_TASKS))
        return path
    except OSError:
        if made:
            try:
                path.rmdir()
            except OSError:
                pass
        return None


def _cpu_account(path: Path, v2: bool) -> Path | None:
    """Where the CPU time of the cgroup at `path` is read (v2: the cgroup itself, whose
    cpu.stat is always there; v1: a cpuacct cgroup of the same name, made here); None if
    impossible."""
    if v2:
        return path if (path / "cpu.stat").is_file() else None
    try:
        path.mkdir(exist_ok=True)
        if (path / "cpuacct.usage").is_file():
            return path
        path.rmdir()
    except OSError:
        pass
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
