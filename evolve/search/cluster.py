"""Evaluations on a Dask cluster: the engine's map (see evolve.search.workers) over Dask distributed.

`DaskMap(client, task, fingerprint)` submits each evaluation as one Dask task that runs the
trusted supervisor on a worker and returns the frozen EvalResult; the driver consumes results
as they finish and alone writes the archive. Dask does the distributing and the fault handling:

- a worker that dies mid-evaluation (killed, OOM-killed, node lost) has its evaluation re-run
  on another worker by the scheduler; an evaluation that killed `allowed-failures` + 1 workers
  ends with Dask's KilledWorker, which becomes a CRASH result "killed N workers";
- on `cuda` each task asks for the worker resource `GPU=1` (workers started with
  `--resources GPU=1`, one per GPU, as dask-cuda starts them) and pins the genome to the
  worker's first visible GPU;
- a worker evaluates only against data whose fingerprint equals the run's: it opens its own
  prepared data, prepares the default dataset itself when it can, and otherwise the task fails
  with WorkerDataError, which stops the run with that one line (never a score on other data,
  and never a failure charged to the genome);
- a worker whose genome sandbox lacks a network namespace refuses too: Dask runs whatever a
  connected client sends, so a genome able to reach the scheduler would run code outside its
  sandbox;
- a scheduler that goes away ends the map with ClusterLost (one line; what was recorded stays).

What it does not do: start clusters (except `local:N`, a LocalCluster of N one-thread worker
processes, for one machine and for the tests), install anything on workers, or move data to
them. Requires `distributed` (`pip install -e '.[cluster]'`).
"""

from __future__ import annotations

import collections
import os
import threading
import time
import uuid
from typing import Callable, Iterable, Iterator

from evolve.evaluation.result import Status, make_result
from evolve.search.workers import Done

ALLOWED_FAILURES = 3          # worker deaths one evaluation may cause before it is a crash
CONNECT_TIMEOUT_S = 10        # reaching the scheduler at start
LOST_AFTER_S = 30             # no scheduler for this long during a run: the cluster is lost


class ClusterError(Exception):
    """The cluster cannot serve the run (setup, not the genome): one line for the user."""


class WorkerDataError(ClusterError):
    """Raised on a worker that cannot evaluate for this run: data missing or other than the
    run's, no GPU for a cuda task, or a sandbox without a network namespace."""


class ClusterLost(ClusterError):
    """The scheduler went away during the run."""


def parse_spec(spec: str) -> tuple[str, int | str]:
    """('local', N) for `local:N`, ('address', ADDRESS) otherwise; ValueError with the reason."""
    if spec.startswith("local:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"--cluster {spec}: want local:N with N >= 1 worker processes")
        return "local", n
    if "://" not in spec and ":" not in spec:
        raise ValueError(f"--cluster {spec}: want a scheduler address (tcp://HOST:PORT) or local:N")
    return "address", spec


def connect(spec: str, task, allowed_failures: int = ALLOWED_FAILURES,
            local_kwargs: dict | None = None):
    """(client, cluster or None) for `spec`, or raise ClusterError with one line.

    `allowed_failures` applies to a LocalCluster's scheduler; a remote scheduler has its own
    (`distributed.scheduler.allowed-failures` in its Dask config, 3 by default)."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError("--cluster needs Dask distributed: pip install -e '.[cluster]'") from None
    try:
        kind, value = parse_spec(spec)
    except ValueError as e:
        raise ClusterError(str(e)) from None
    if kind == "local":
        if task.device == "cuda":
            raise ClusterError("--cluster local:N runs the CPU task; on one machine's GPUs the "
                               "default map already runs one evaluation per GPU")
        # Why: each worker runs one evaluation at a time, so its genome gets an equal share of
        # the cores as intra-op threads instead of all of them competing for every core.
        threads = max(1, (os.cpu_count() or 1) // value)
        kwargs = dict(n_workers=value, threads_per_worker=1, processes=True,
                      dashboard_address=None, env={"OMP_NUM_THREADS": str(threads),
                                                   "MKL_NUM_THREADS": str(threads)})
        kwargs.update(local_kwargs or {})
        try:
            with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
                cluster = LocalCluster(**kwargs)
                return Client(cluster), cluster
        except Exception as e:
            raise ClusterError(f"--cluster {spec}: the local cluster did not start ({e})") from None
    try:
        return Client(value, timeout=f"{CONNECT_TIMEOUT_S}s"), None
    except Exception as e:
        raise ClusterError(f"--cluster {spec}: cannot reach the Dask scheduler "
                           f"({e.__class__.__name__}: {str(e)[:120]})") from None


# -- the worker side ---------------------------------------------------------------------------
_SUPERVISORS: dict[str, object] = {}
_LOCK = threading.Lock()


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except Exception:
        return f"pid {os.getpid()}"


def _supervisor(task_dict: dict, fingerprint: str):
    """This worker's Supervisor for the run's task, its data checked against the fingerprint."""
    import fcntl

    from evolve.data.prepare import PreparedData, ensure_prepared
    from evolve.evaluation.supervisor import Supervisor
    from evolve.evaluation.task import Task, home_dir

    with _LOCK:
        sup = _SUPERVISORS.get(fingerprint)
        if sup is not None:
            return sup
        task = Task(**task_dict)
        lock_path = home_dir() / "prepare.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as lock:       # workers of one host prepare once, in turn
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = ensure_prepared(task, progress=False, log=lambda m: None)
        where = f"worker {_worker_name()}"
        if not isinstance(data, PreparedData):
            raise WorkerDataError(f"{where}: data not prepared: {data}")
        mine = task.fingerprint(data.fingerprint)
        if mine != fingerprint:
            raise WorkerDataError(
                f"{where}: data fingerprint differs from the run's ({mine} there, {fingerprint} "
                f"in the run; {data.root}): prepare the same dataset and vocabulary on it "
                f"(python -m evolve prepare --dataset {task.dataset} --vocab-size "
                f"{task.vocab_size}) or remove it")
        sup = Supervisor(task, data)
        if "netns" not in sup.sandbox_desc.split("+"):
            # Why: a Dask scheduler and its workers run any function a connected client sends
            # them. A genome that shares the host's network could connect to them (loopback)
            # and run code outside its sandbox, e.g. write its own result.
            raise WorkerDataError(
                f"{where}: the genome sandbox here has no network namespace ({sup.sandbox_desc}), "
                "so a genome could reach the Dask scheduler; cluster workers need `unshare --net` "
                "(root, or unprivileged user namespaces)")
        _SUPERVISORS[fingerprint] = sup
        return sup


def evaluate_on_worker(task_dict: dict, fingerprint: str, source: str):
    """One evaluation on this worker: (EvalResult, worker name, started, finished)."""
    from evolve.search.workers import visible_gpus

    sup = _supervisor(task_dict, fingerprint)
    name, env = _worker_name(), {}
    if task_dict.get("device") == "cuda":
        gpus = visible_gpus()
        if not gpus:
            raise WorkerDataError(f"worker {name}: the task is on cuda but no GPU is visible")
        env = {"CUDA_VISIBLE_DEVICES": gpus[0]}
        name += f" cuda:{gpus[0]}"
    started = time.time()
    result = sup.evaluate(source, env=env)
    return result, name, started, time.time()


# -- the driver side ---------------------------------------------------------------------------
class DaskMap:
    """The engine's map over a Dask client: one task per evaluation, results as they finish."""

    def __init__(self, client, task, fingerprint: str,
                 evaluate: Callable[[dict, str, str], tuple] = evaluate_on_worker,
                 cluster=None):
        self.client = client
        self.cluster = cluster              # closed with the map when the map started it
        self.task_dict = task.to_dict() if hasattr(task, "to_dict") else dict(task)
        self.fingerprint = fingerprint
        self.evaluate = evaluate
        self.resources = {"GPU": 1} if self.task_dict.get("device") == "cuda" else None
        self.slots = self._slots()
        if self.slots < 1:
            raise ValueError("the Dask cluster has no worker that can run this task"
                             + (" (none offers the resource GPU=1)" if self.resources else ""))

    def _slots(self) -> int:
        """Evaluations the cluster can run at once now (workers come and go)."""
        try:
            workers = self.client.scheduler_info().get("workers", {}).values()
        except Exception:                   # the scheduler is unreachable: the stream will say
            return getattr(self, "slots", 1)
        if self.resources:
            return int(sum(w.get("resources", {}).get("GPU", 0) for w in workers))
        return int(sum(w.get("nthreads", 1) for w in workers))

    def imap(self, jobs: Iterable[tuple[str, str]]) -> Iterator[Done]:
        jobs = list(jobs)
        if not jobs:
            return iter(())
        return self._results(jobs)

    def _results(self, jobs: list[tuple[str, str]]) -> Iterator[Done]:
        from distributed import as_completed

        run = uuid.uuid4().hex[:8]
        queue = collections.deque(jobs)
        pending, meta = {}, {}
        stream = as_completed([], with_results=True, raise_errors=False)

        def top_up() -> None:
            # Why the driver holds the queue: given them all at once, Dask assigns each worker
            # tasks ahead of time (tasks of distinct names are never queued on the scheduler),
            # and when a worker dies it charges the death to every task assigned to it, so an
            # innocent genome waiting behind a worker-killer would end as "killed N workers".
            # So only as many evaluations as the cluster has free slots are in Dask at once.
            while queue and len(pending) < max(1, self._slots()):
                key, source = queue.popleft()
                # pure=False and a unique name: never deduplicated or cached by Dask.
                fut = self.client.submit(self.evaluate, self.task_dict, self.fingerprint, source,
                                         key=f"evolve-eval-{key}-{run}", pure=False,
                                         resources=self.resources)
                pending[fut.key] = fut
                meta[fut.key] = (key, time.time())
                stream.add(fut)

        top_up()
        try:
            # Results are gathered as each task finishes and the future is released at once:
            # a result left in a worker's memory would be computed again if that worker died.
            for fut, value in stream:
                pending.pop(fut.key, None)
                if fut.status == "error" and isinstance(value, tuple):
                    value = value[1]         # (type, exception, traceback)
                fut.release()
                done = self._done(value, *meta[fut.key])
                top_up()
                yield done
        finally:
            if pending:                     # Ctrl-C or an error: nothing left runs on
                try:
                    self.client.cancel(list(pending.values()), force=True)
                except Exception:
                    pass

    def _done(self, value, key: str, submitted: float) -> Done:
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        if not isinstance(value, BaseException):
            result, worker, started, finished = value
            return Done(key, result, worker, started, finished)
        if isinstance(value, WorkerDataError):
            raise value
        if isinstance(value, KilledWorker):
            n = int(getattr(value, "allowed_failures", ALLOWED_FAILURES)) + 1
            result = make_result(Status.CRASH, reason=(
                f"killed {n} workers: every worker that ran this evaluation died (killed, out of "
                "memory or lost); it is not retried"))
        elif isinstance(value, (FutureCancelledError, OSError)):
            raise ClusterLost(f"the Dask scheduler went away ({value.__class__.__name__}); every "
                              "finished evaluation is recorded")
        else:
            result = make_result(Status.CRASH, reason=(
                f"the evaluation failed on its worker: {value.__class__.__name__}: {str(value)[:200]}"))
        return Done(key, result, "dask", submitted, time.time())

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()
