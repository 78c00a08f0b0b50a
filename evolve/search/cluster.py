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
import logging
import os
import threading
import time
import uuid
from typing import Callable, Iterable, Iterator

from evolve.evaluation.result import Status, make_result
from evolve.search.workers import Done, unpack

ALLOWED_FAILURES = 3          # worker deaths one evaluation may cause before it is a crash
CONNECT_TIMEOUT_S = 10        # reaching the scheduler at start
PROGRESS_TOPIC = "autoevolve-progress"   # Dask event topic of the workers' phase reports
WAIT_FOR_WORKERS_S = 60       # a cluster with no worker yet gets this long to get one


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
        return _checked(*_local(dask, LocalCluster, Client, spec, value, task, allowed_failures,
                                local_kwargs))
    try:
        client = Client(value, timeout=f"{CONNECT_TIMEOUT_S}s")
    except Exception as e:
        raise ClusterError(f"--cluster {spec}: cannot reach the Dask scheduler "
                           f"({e.__class__.__name__}: {str(e)[:120]})") from None
    return _checked(client, None)


def _local(dask, LocalCluster, Client, spec: str, n: int, task, allowed_failures: int,
           local_kwargs: dict | None):
    """A LocalCluster of n one-thread worker processes and its client."""
    if task.device == "cuda":
        raise ClusterError("--cluster local:N runs the CPU task; on one machine's GPUs the "
                           "default map already runs one evaluation per GPU")
    # Why: each worker runs one evaluation at a time, so its genome gets an equal share of
    # the cores as intra-op threads instead of all of them competing for every core.
    threads = max(1, (os.cpu_count() or 1) // n)
    # silence_logs: Dask's own warnings (a worker closed on Ctrl-C, a task cancelled) are noise
    # around the run's lines; errors still show.
    kwargs = dict(n_workers=n, threads_per_worker=1, processes=True, silence_logs=logging.ERROR,
                  dashboard_address=None, env={"OMP_NUM_THREADS": str(threads),
                                               "MKL_NUM_THREADS": str(threads)})
    kwargs.update(local_kwargs or {})
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
            cluster = LocalCluster(**kwargs)
            return Client(cluster), cluster
    except Exception as e:
        raise ClusterError(f"--cluster {spec}: the local cluster did not start ({e})") from None


def code_hash() -> str:
    """A hash of the code that decides a score and that a genome imports (evolve/evaluation,
    evolve/data, evolve/harness.py, kernels/): machines that differ in it do not score alike."""
    import hashlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    files = sorted([*(root / "evolve" / "evaluation").glob("*.py"), *(root / "evolve" / "data").glob("*.py"),
                    root / "evolve" / "harness.py", *(root / "kernels").rglob("*.py")])
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _probe() -> str:
    """Run on the scheduler and each worker: the code hash of the autoevolve found there."""
    return code_hash()


def _checked(client, cluster):
    """(client, cluster) once the scheduler and every worker load the driver's autoevolve code;
    else both closed and ClusterError naming the first that does not. (Workers that join
    later are not checked here.)"""
    mine = code_hash()
    try:
        problems = []
        try:
            theirs = client.run_on_scheduler(_probe)
            if theirs != mine:
                problems.append(f"the scheduler runs other autoevolve code ({theirs}, here {mine})")
        except Exception as e:
            problems.append(f"the scheduler cannot load autoevolve ({e.__class__.__name__}: "
                            f"{(str(e).splitlines() or [''])[0][:120]})")
        for worker, theirs in client.run(_probe, on_error="return").items():
            if isinstance(theirs, BaseException):
                problems.append(f"worker {worker} cannot load autoevolve "
                                f"({theirs.__class__.__name__}: {str(theirs)[:120]})")
            elif theirs != mine:
                problems.append(f"worker {worker} runs other autoevolve code ({theirs}, here {mine})")
    except Exception as e:
        problems = [f"the cluster did not answer ({e.__class__.__name__}: {str(e)[:120]})"]
    if problems:
        client.close()
        if cluster is not None:
            cluster.close()
        raise ClusterError(problems[0] + "; install the same checkout on the scheduler and "
                           "every worker (pip install -e '.[cluster]')")
    return client, cluster


# -- the worker side ---------------------------------------------------------------------------
_SUPERVISORS: dict[str, object] = {}
_LOCK = threading.Lock()


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except Exception:
        return f"pid {os.getpid()}"


def _memory_share(worker=None) -> int | None:
    """Host memory for one genome's tree on this worker: Dask's memory limit of the worker
    (the host's memory divided among the workers started on it), so that several genomes on
    one host cannot together push it into its OOM killer, which might pick another genome;
    capped at the supervisor's default of 3/4 of the host. None when not on a worker."""
    try:
        from distributed import get_worker

        limit = (worker or get_worker()).memory_manager.memory_limit
    except Exception:
        return None
    host = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.75)
    return min(host, int(limit)) if limit else None


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
        sup = Supervisor(task, data, memory_limit_bytes=_memory_share())
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


def _reporter(key: str):
    """The supervisor's progress callback on a worker: each change of the shown phase
    ("training 45%", "scoring") goes to the driver as a Dask event (none when not on a worker)."""
    from evolve.search.progress import describe

    try:
        from distributed import get_worker

        worker = get_worker()
    except Exception:
        return None
    last = [""]

    def report(phase: str, fraction: float) -> None:
        text = describe(phase, fraction)
        if text != last[0]:
            last[0] = text
            try:
                worker.log_event(PROGRESS_TOPIC, {"key": key, "phase": phase, "fraction": fraction})
            except Exception:               # progress is a courtesy; the evaluation goes on
                pass
    return report


def evaluate_on_worker(task_dict: dict, fingerprint: str, source: str, key: str = "",
                       pruner=None):
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
    result = sup.evaluate(source, progress=_reporter(key), env=env, pruner=pruner)
    return result, name, started, time.time()


def _guarded(evaluate, task_dict: dict, fingerprint: str, source: str, key: str, pruner=None):
    """Runs `evaluate` on the worker; a fault of the evaluating code is a CRASH value there (as
    the local map makes it), so that any exception the driver sees comes from Dask itself."""
    started = time.time()
    try:
        return evaluate(task_dict, fingerprint, source, key,
                        **({"pruner": pruner} if pruner is not None else {}))
    except WorkerDataError:
        raise
    except Exception as e:
        return (make_result(Status.CRASH, reason=(
            f"the evaluation failed on its worker: {e.__class__.__name__}: {str(e)[:200]}")),
            _worker_name(), started, time.time())


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
        self.progress: Callable[[str, str, float], None] | None = None   # (key, phase, fraction)
        if self.slots < 1:
            # Workers may still be starting (a batch system's jobs, a worker being restarted).
            try:
                self.client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_S)
            except Exception:
                pass
            self.slots = self._slots()
        if self.slots < 1:
            raise ValueError(f"the Dask cluster has no worker that can run this task after "
                             f"{WAIT_FOR_WORKERS_S} s"
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

    def imap(self, jobs: Iterable[tuple]) -> Iterator[Done]:
        jobs = [unpack(j) for j in jobs]
        if not jobs:
            return iter(())
        return self._results(jobs)

    def _results(self, jobs: list[tuple[str, str, object]]) -> Iterator[Done]:
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
                key, source, pruner = queue.popleft()
                # pure=False and a unique name: never deduplicated or cached by Dask.
                fut = self.client.submit(_guarded, self.evaluate, self.task_dict,
                                         self.fingerprint, source, key, pruner,
                                         key=f"evolve-eval-{key}-{run}", pure=False,
                                         resources=self.resources)
                pending[fut.key] = fut
                meta[fut.key] = (key, time.time())
                stream.add(fut)

        progress = self.progress
        if progress is not None:
            running = {k for k, _, _ in jobs}

            def on_event(event) -> None:
                msg = event[1]
                # Only this map's evaluations still running: a late report would bring back
                # one that has finished.
                if isinstance(msg, dict) and msg.get("key") in running:
                    progress(msg["key"], str(msg.get("phase")), float(msg.get("fraction", 0)))
            self.client.subscribe_topic(PROGRESS_TOPIC, on_event)
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
                if progress is not None:
                    running.discard(done.key)
                top_up()
                yield done
        finally:
            if progress is not None:
                try:
                    self.client.unsubscribe_topic(PROGRESS_TOPIC)
                except Exception:
                    pass
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
            # Not the genome (the supervisor turns all it does into a result, and _guarded any
            # fault of its own): Dask could not run the task at all, e.g. a scheduler or worker
            # without this package. Charging it to the genome would fail every evaluation.
            first = (str(value).strip().splitlines() or [""])[0][:200]
            raise ClusterError(f"the cluster cannot run evaluations ({value.__class__.__name__}: "
                               f"{first}); is autoevolve installed on the scheduler and workers?")
        return Done(key, result, "dask", submitted, time.time())

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()
