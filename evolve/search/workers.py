"""The one swappable map through which the engine evaluates genomes.

`EvalMap` is the contract: `imap(jobs)` takes (key, source) pairs, or (key, source, pruner)
triples, and yields `Done` records in completion order (not submission order), so the engine can
write each result to the archive the moment it exists. Implementations must:

- never raise for anything a genome does (the supervisor turns it into an EvalResult), and turn
  a fault of the evaluating code itself into a CRASH result rather than end the run;
- run at most `slots` evaluations at once and say which slot ran each one (`worker`);
- be usable from one thread (the engine's); internal threads are their own business;
- hand a job's pruner (evolve.search.pruning.Pruner, or None) to the supervisor's evaluate().

`LocalMap` is the implementation for one machine: a joblib thread pool (threads, not processes:
each evaluation is already a child process, so the pool only waits, and no DEAP class or
supervisor state is ever pickled into a worker process) with one slot per visible GPU, each
evaluation pinned to its GPU through CUDA_VISIBLE_DEVICES, or a single slot on CPU.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import time
import warnings
from typing import Callable, Iterable, Iterator, Protocol

from evolve.evaluation.result import EvalResult, Status, make_result


@dataclasses.dataclass(frozen=True)
class Done:
    key: str
    result: EvalResult
    worker: str            # "cpu" or "cuda:N"
    started_at: float      # wall clock (time.time()), seconds
    finished_at: float


class EvalMap(Protocol):
    slots: int

    def imap(self, jobs: Iterable[tuple]) -> Iterator[Done]: ...


def unpack(job: tuple) -> tuple[str, str, object]:
    """(key, source, pruner or None) from a job of either form."""
    key, source, *rest = job
    return key, source, (rest[0] if rest else None)


def visible_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES when set, else every device torch sees."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch
        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


class LocalMap:
    """Evaluates on this machine with a Supervisor; one worker per GPU, or one on CPU."""

    def __init__(self, supervisor, devices: list[str] | None = None,
                 progress: Callable[[str, str, float], None] | None = None):
        self.supervisor = supervisor
        if supervisor.task.device == "cuda":
            devices = devices if devices is not None else visible_gpus()
            if not devices:
                raise ValueError("the task is on cuda but no GPU is visible")
        else:
            devices = [""]
        self.devices = devices
        self.slots = len(devices)
        self.progress = progress          # (key, phase, fraction), from worker threads

    def _run(self, free: "queue.Queue[str]", key: str, source: str, pruner=None) -> Done:
        gpu = free.get()
        try:
            env = {"CUDA_VISIBLE_DEVICES": gpu} if gpu else {}
            started = time.time()
            report = (lambda phase, f: self.progress(key, phase, f)) if self.progress else None
            try:
                kw = {"pruner": pruner} if pruner is not None else {}
                result = self.supervisor.evaluate(source, progress=report, env=env, **kw)
            except Exception as e:           # a fault in trusted code: a value, not a dead run
                result = make_result(Status.CRASH, reason=(
                    f"the evaluation failed in the supervisor: {e.__class__.__name__}: {e}"))
            return Done(key, result, f"cuda:{gpu}" if gpu else "cpu", started, time.time())
        finally:
            free.put(gpu)

    def imap(self, jobs: Iterable[tuple]) -> Iterator[Done]:
        from joblib import Parallel, delayed

        jobs = [unpack(j) for j in jobs]
        if not jobs:
            return iter(())
        free: "queue.Queue[str]" = queue.Queue()
        for d in self.devices:
            free.put(d)
        # Closing the stream early (Ctrl-C, an error in the engine) cancels what has not
        # started; that is the point, so joblib's warning about unused tasks is not shown.
        warnings.filterwarnings("ignore", message=r".*tasks .*(cancelled|not used)",
                                category=UserWarning, module="joblib")
        pool = Parallel(n_jobs=self.slots, backend="threading", return_as="generator_unordered")
        return iter(pool(delayed(self._run)(free, k, s, p) for k, s, p in jobs))
