"""Fake evaluations for the map conformance suite: a "genome" is a line of key=value settings.

    name=a;sleep=0.3;bpb=1.5;marks=/tmp/dir     sleeps, then returns OK with val_bpb 1.5
    name=b;crash=1                                returns a CRASH result
    name=c;raise=1                                raises (a fault in trusted code)
    name=d;sleep=0.5;die=1                        kills the process it runs in (a Dask worker),
                                                  after the sleep, as a real genome could only
                                                  after its process started
    ...;started=/tmp/dir                          also writes started/<name>.<pid> at the start

With a pruner that stops runs, a fake run ends PRUNED at the pruner's first checkpoint (so the
suite sees that a job's pruner reached the evaluation, across a pickle on Dask).

Each run writes a file `marks/<name>.<pid>.<ns>` holding "start end gpu" (wall clock, the
CUDA_VISIBLE_DEVICES it was given), so tests count runs and overlaps across processes. The
module is importable by Dask worker processes (it lives in the tests package).
"""

from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

from evolve.evaluation.result import Status, make_result


def settings(source: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in source.split(";") if "=" in part)


def behave(source: str, env: dict[str, str] | None = None, pruner=None):
    s = settings(source)
    start = time.time()
    if s.get("started"):
        open(os.path.join(s["started"], f"{s.get('name', 'x')}.{os.getpid()}"), "w").close()
    time.sleep(float(s.get("sleep", 0)))
    if s.get("die"):
        os.kill(os.getpid(), signal.SIGKILL)
    gpu = (env or {}).get("CUDA_VISIBLE_DEVICES", "")
    if s.get("marks"):
        path = os.path.join(s["marks"], f"{s.get('name', 'x')}.{os.getpid()}.{time.time_ns()}")
        with open(path, "w") as f:
            f.write(f"{start} {time.time()} {gpu}")
    if s.get("raise"):
        raise RuntimeError("a fault in trusted code")
    if s.get("crash"):
        return make_result(Status.CRASH, reason="the genome crashed")
    if pruner is not None and pruner.stop:
        return make_result(Status.PRUNED, reason="pruned", pruned_at=pruner.checkpoints[0])
    return make_result(Status.OK, val_bpb=float(s.get("bpb", 2.0)), tokens_per_sec=1000.0)


class FakeSupervisor:
    """What LocalMap needs of a Supervisor: a task and evaluate()."""

    def __init__(self, device: str = "cpu"):
        self.task = SimpleNamespace(device=device)

    def evaluate(self, source: str, progress=None, env=None, pruner=None):
        return behave(source, env, pruner)


def fake_on_worker(task_dict: dict, fingerprint: str, source: str, key: str = "",
                   pruner=None):
    """DaskMap's evaluate, faked: the same (result, worker, started, finished) shape; the
    phases go to the driver through the real worker-side reporter."""
    from evolve.search.cluster import _reporter

    started = time.time()
    report = _reporter(key)
    if report is not None:
        report("starting", 0.0)
        report("training", 0.5)
    result = behave(source, pruner=pruner)
    if report is not None:
        report("scoring", 1.0)
    return result, f"pid {os.getpid()}", started, time.time()


def marks(directory) -> list[tuple[str, float, float, str]]:
    """(name, start, end, gpu) of every finished fake run in `directory`."""
    out = []
    for name in sorted(os.listdir(directory)):
        start, end, *gpu = open(os.path.join(directory, name)).read().split(" ")
        out.append((name.split(".")[0], float(start), float(end), gpu[0] if gpu else ""))
    return out
