"""Evaluations on a Dask cluster (evolve.search.cluster) beyond the map conformance suite:
worker death and re-runs, data that differs on a worker, a scheduler that goes away, and a
real run through the CLI on a LocalCluster of 2 worker processes, killed (-9) and resumed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, TINY, leftover_processes, small_task
from tests.evolve.search.map_fakes import fake_on_worker

pytest.importorskip("distributed")

CPU = {"device": "cpu"}


def _map(client, **kw):
    from evolve.search.cluster import DaskMap

    return DaskMap(client, kw.pop("task", CPU), kw.pop("fingerprint", "f" * 16), **kw)


def _wait_for(path, n=1, timeout=30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = os.listdir(path)
        if len(names) >= n:
            return names
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} starts in {path}")


def test_a_worker_killed_mid_evaluation_is_rerun_elsewhere(fragile, tmp_path):
    """The worker process running an evaluation is killed: the evaluation runs again on a
    worker and is recorded once, and the phases reach the driver as they happen. (A real
    genome dies with its worker: the CLI kill -9 test below checks that no genome is left.)"""
    import threading

    started, done = tmp_path / "started", tmp_path / "done"
    started.mkdir(), done.mkdir()
    emap = _map(fragile, evaluate=fake_on_worker)
    phases, killed = [], []
    emap.progress = lambda key, phase, fraction: phases.append((key, phase))

    def kill_the_running_worker():
        name = _wait_for(started)[0]
        killed.append(int(name.split(".")[1]))
        os.kill(killed[0], signal.SIGKILL)            # the worker process, mid-evaluation

    t = threading.Thread(target=kill_the_running_worker)
    t.start()
    result = [d for d in emap.imap([("k", f"name=k;sleep=2;bpb=1.5;marks={done};started={started}")])]
    t.join()
    assert len(result) == 1 and result[0].result.ok and result[0].result.val_bpb == 1.5
    pids = {int(n.split(".")[1]) for n in os.listdir(started)}
    assert len(pids) == 2 and killed[0] in pids       # started twice, on two worker processes
    assert len(os.listdir(done)) == 1                 # finished once
    assert phases.count(("k", "starting")) == 2 and ("k", "scoring") in phases, phases
    # each genome tree on a worker gets that worker's share of the host's memory
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    shares = fragile.run(_memory_share)
    assert shares and all(0 < m <= ram / 2 for m in shares.values()), shares


def _memory_share(dask_worker):          # client.run passes the worker by this name
    from evolve.search import cluster

    return cluster._memory_share(dask_worker)


def test_an_evaluation_that_kills_every_worker_ends_as_a_crash(fragile, tmp_path):
    done = {d.key: d.result for d in _map(fragile, evaluate=fake_on_worker).imap(
        [("killer", "name=killer;sleep=0.5;die=1"), ("a", "name=a;sleep=0.2;bpb=1.25"),
         ("b", "name=b;sleep=0.2;bpb=1.5")])}
    assert done["killer"].status.value == "crash"
    assert done["killer"].reason.startswith("killed 2 workers"), done["killer"].reason
    assert done["a"].ok and done["b"].ok


def test_a_worker_on_other_data_stops_the_run_with_one_line(fragile):
    from evolve.search.cluster import WorkerDataError

    task = small_task(budget_s=1.0)
    with pytest.raises(WorkerDataError, match="data fingerprint differs from the run's"):
        list(_map(fragile, task=task, fingerprint="0" * 16).imap([("g", TINY.read_text())]))
    other = small_task(budget_s=1.0, dataset="climbmix")
    with pytest.raises(WorkerDataError, match="data not prepared: .*python -m evolve prepare"):
        list(_map(fragile, task=other).imap([("g", TINY.read_text())]))


def test_a_scheduler_that_goes_away_ends_the_map_with_one_line(tmp_path):
    from distributed import Client

    from evolve.search.cluster import ClusterLost

    code = ("from distributed import LocalCluster; import time\n"
            "c = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)\n"
            "print(c.scheduler_address, flush=True); time.sleep(600)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        client = Client(p.stdout.readline().strip(), timeout="20s")
        stream = _map(client, evaluate=fake_on_worker).imap(
            [("fast", "name=fast;sleep=0.1"), ("slow", "name=slow;sleep=30")])
        assert next(stream).key == "fast"
        os.killpg(p.pid, signal.SIGKILL)
        t = time.monotonic()
        with pytest.raises(ClusterLost, match="scheduler went away"):
            next(stream)
        assert time.monotonic() - t < 20
        client.close()
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def test_a_cluster_run_killed_then_resumed_runs_nothing_twice(prepared, autoevolve_home, tmp_path):
    """The CLI on `--cluster local:2` (real supervisors on two worker processes): kill -9 of the
    driver mid-generation leaves no genome running; the resume says at once what it found,
    keeps every finished evaluation, runs none twice and finishes the generation. (The engine's
    resume does not depend on the map, so this is also the kill -9 test of the local map's.)"""
    run_dir = tmp_path / "on-dask"
    # budget 2 s: two evaluations start side by side on 2 cores, and their imports may outrun
    # the start-up allowance (by 2.1 s once, on 1 s); a first step is then allowed
    # min(budget, allowance) after it
    cmd = [sys.executable, "-m", "evolve", "--population", "3", "--generations", "0",
           "--budget", "2", "--device", "cpu", "--vocab-size", "512", "--seed", str(TINY),
           "--no-confirm", "--run-dir", str(run_dir), "--cluster", "local:2"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "AUTOEVOLVE_HOME": str(autoevolve_home)}
    p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    db = run_dir / "archive.sqlite"
    deadline, rows = time.monotonic() + 240, []
    while time.monotonic() < deadline and p.poll() is None and not rows:
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
                    rows = c.execute("SELECT genome_id FROM evals").fetchall()
            except sqlite3.Error:
                rows = []
        time.sleep(0.1)
    assert p.poll() is None and rows, "the run ended before it could be killed"
    p.send_signal(signal.SIGKILL)                     # the driver only: its workers must follow
    p.wait()
    deadline = time.monotonic() + 30
    while leftover_processes(autoevolve_home / "scratch") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leftover_processes(autoevolve_home / "scratch")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        before = c.execute("SELECT eval_id, genome_id, worker FROM evals").fetchall()
    # resumed on one worker: two genomes starting side by side on 2 cores can outrun the
    # start-up allowance and end invalid, which is not what this test is about; and with
    # another pruning mode, which a resume may change
    r = subprocess.run([sys.executable, "-m", "evolve", "--resume", str(run_dir), "--cluster",
                        "local:1", "--prune", "off"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "(Dask cluster local:1)" in r.stderr
    assert "\nconfirmed: no (1 OK of 1 evaluation(s): a single draw)" in r.stdout, r.stdout
    # said at once, before anything runs: what was found and what is left
    done = len(before)
    lines = r.stderr.strip().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("resuming: "))
    assert lines[at].startswith("resuming: 0 generation(s) finished") and \
        f"generation 0: {done} of 3 evaluated, {3 - done} left" in lines[at], lines[at]
    assert not any(line.startswith("gen ") for line in lines[:at])
    gen0 = next(line for line in lines if line.startswith("gen 0/0"))
    assert f"{done} kept from before the resume, 0 reused" in gen0, gen0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        after = c.execute("SELECT eval_id, genome_id, worker FROM evals").fetchall()
        statuses = [s for (s,) in c.execute("SELECT status FROM evals")]
    assert after[:len(before)] == before and len(after) > len(before)
    assert len({g for _, g, _ in after}) == len(after)        # none evaluated twice
    assert all(w.startswith("tcp://") for _, _, w in after), after
    assert "ok" in statuses, statuses
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        config = json.loads(c.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
    assert config["prune"] == "off" and config["population"] == 3


def test_a_worker_whose_sandbox_shares_the_network_refuses(prepared, monkeypatch):
    """Without a network namespace a genome could connect to the scheduler on loopback and
    have Dask run its code outside the sandbox: such a worker evaluates nothing."""
    from evolve.evaluation import supervisor as sup_mod
    from evolve.search import cluster

    class NoNamespaces:                  # what a supervisor reports where unshare is refused
        def __init__(self, task, data, **kw):
            self.sandbox_desc = "session+rlimits+env+landlock7+nocaps+seccomp"

    monkeypatch.setattr(sup_mod, "Supervisor", NoNamespaces)
    monkeypatch.setattr(cluster, "_SUPERVISORS", {})
    task = small_task(budget_s=1.0)
    with pytest.raises(cluster.WorkerDataError, match="no network namespace"):
        cluster._supervisor(task.to_dict(), task.fingerprint(prepared.fingerprint))
    assert cluster._SUPERVISORS == {}


def test_workers_with_other_autoevolve_code_are_refused_at_start(fragile, monkeypatch):
    """connect() asks the scheduler and every worker for the hash of the code that decides a
    score: a worker that runs other code (another checkout, or none) is refused before the run
    starts, with one line naming it."""
    from evolve.search import cluster

    import types

    monkeypatch.setattr(cluster, "code_hash", lambda: "0" * 16)   # the driver's own, changed
    # the shared client, behind a proxy: a refused cluster is closed, this one must live on
    client = types.SimpleNamespace(run=fragile.run, run_on_scheduler=fragile.run_on_scheduler,
                                   close=lambda: None)
    with pytest.raises(cluster.ClusterError, match=r"worker tcp://\S+ runs other autoevolve code"):
        cluster._checked(client, None)


class _StartingCluster:
    """A client whose workers join only while the map waits for them (`joins`), or never."""

    def __init__(self, joins: bool):
        self.joins, self.waited = joins, []
        self.workers: dict = {}

    def scheduler_info(self):
        return {"workers": self.workers}

    def wait_for_workers(self, n, timeout=None):
        self.waited.append((n, timeout))
        if not self.joins:
            raise TimeoutError("no worker")
        self.workers = {"tcp://w1": {"nthreads": 2}}


def test_a_map_waits_for_workers_that_are_still_starting():
    from evolve.search.cluster import WAIT_FOR_WORKERS_S, DaskMap

    late = _StartingCluster(joins=True)
    assert DaskMap(late, {"device": "cpu"}, "f" * 16).slots == 2
    assert late.waited == [(1, WAIT_FOR_WORKERS_S)] and WAIT_FOR_WORKERS_S == 60
    never = _StartingCluster(joins=False)
    with pytest.raises(ValueError, match=f"no worker that can run this task after {WAIT_FOR_WORKERS_S} s"):
        DaskMap(never, {"device": "cpu"}, "f" * 16)
