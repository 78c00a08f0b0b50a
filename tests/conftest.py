"""Shared fixtures: a small prepared dataset, a supervisor for a seconds-long CPU task, and one
small real engine run.

AUTOEVOLVE_HOME points at a per-session temporary directory, so tests never touch the user's
cache. The data is the embedded stdlib corpus with a 512-token vocabulary (prepared in ~3 s).

`small_run` is the one real engine run of the session, shared read-only by the engine tests
(tests/evolve/search/test_engine.py) and the inspection tests (tests/evolve/inspect/): a test
that changes a run copies `small_run.dir` first (shutil.copytree; the directory is small).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
ADVERSARIAL = FIXTURES / "adversarial"
REPO = Path(__file__).resolve().parent.parent
TINY = FIXTURES / "engine" / "tiny.py"
CRASH = ADVERSARIAL / "crash.py"


@pytest.fixture(scope="session")
def autoevolve_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("autoevolve_home")
    old = os.environ.get("AUTOEVOLVE_HOME")
    os.environ["AUTOEVOLVE_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("AUTOEVOLVE_HOME", None)
    else:
        os.environ["AUTOEVOLVE_HOME"] = old


def small_task(**overrides):
    from evolve.evaluation.task import Task

    base = dict(vocab_size=512, budget_s=4.0, eval_tokens=16 * 64, eval_batch_size=8,
                seq_len=64, startup_s=20.0, submit_s=20.0, score_s=90.0)
    base.update(overrides)
    return Task.for_device("cpu", **base)


@pytest.fixture(scope="session")
def prepared(autoevolve_home):
    from evolve.data.prepare import PreparedData, prepare

    data = prepare(small_task(), progress=False, log=lambda m: None)
    assert isinstance(data, PreparedData), data
    return data


@pytest.fixture(scope="session")
def supervisor(prepared):
    from evolve.evaluation.supervisor import Supervisor

    # 3 GiB of address space: enough for torch, small enough that a memory bomb fails fast.
    return Supervisor(small_task(), prepared, memory_limit_bytes=3 * 2 ** 30)


@pytest.fixture(scope="session")
def quick_supervisor(prepared):
    """The supervisor with a 0.5 s budget, for genomes whose outcome does not depend on how
    long they train (refused graphs, probes, crashes, sandbox walls): the suite's time is
    mostly evaluations, and each is ~3.5 s shorter this way."""
    from evolve.evaluation.supervisor import Supervisor

    return Supervisor(small_task(budget_s=0.5), prepared, memory_limit_bytes=3 * 2 ** 30)


@dataclasses.dataclass(frozen=True)
class SmallRun:
    dir: Path                 # the run directory (archive.sqlite); read it, never write it
    exit_code: int            # what Engine.run() returned
    logs: tuple[str, ...]     # the engine's log lines, one summary per generation
    finished: tuple[int, ...]  # the generations passed to the on_generation hook, in order


def _archive_digest(run_dir: Path) -> str:
    """A digest of the archive's content, to tell whether a test wrote into the shared run."""
    import sqlite3

    conn = sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, prepared):
    """One short real CPU run, built once for the session and shared read-only.

    Seeds tiny.py and the crashing adversarial genome (crash.py), population 2, one generation
    after the initial one, confirmation on, budget 1 s: generation 0 is the two seeds (tiny.py
    scores and is confirmed, crash.py crashes in setup), generation 1 two children of tiny.py
    (and the confirmation of a child that beats it). So the run has a score, a crash, a
    confirmed best, children with a one-step lineage and both generations finished: what the
    engine, table, figure, page, report and command tests read. 5-6 evaluations in all.
    """
    from genome.record import Genome

    from evolve.evaluation.supervisor import Supervisor
    from evolve.inspect.run import load_run
    from evolve.search.archive import Archive
    from evolve.search.engine import Engine, EngineConfig
    from evolve.search.workers import LocalMap

    task = small_task(budget_s=1.0)
    sup = Supervisor(task, prepared)
    config = EngineConfig(population=2, generations=1)
    d = tmp_path_factory.mktemp("small_run") / "run"
    archive = Archive.create(d, {"config": config.to_dict(), "task": task.to_dict(),
                                 "fingerprint": sup.fingerprint})
    seeds = [Genome.seed(TINY.read_text(), "seed tiny.py"),
             Genome.seed(CRASH.read_text(), "seed crash.py")]
    logs: list[str] = []
    finished: list[int] = []
    engine = Engine(archive, LocalMap(sup), config, seeds, log=logs.append, show_progress=False,
                    on_generation=finished.append)
    code = engine.run()
    archive.close()
    run = load_run(d)
    assert run.df.val_bpb.notna().any(), run.evals[["status", "reason"]]
    assert (run.evals.status == "crash").any(), run.evals[["status", "reason"]]
    digest = _archive_digest(d)
    yield SmallRun(d, code, tuple(logs), tuple(finished))
    assert _archive_digest(d) == digest, "a test wrote into the shared run (copy it first)"


def leftover_processes(root: Path) -> list[int]:
    """Pids of live processes whose working directory is under root (a genome's scratch)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{name}/cwd")
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if cwd.startswith(str(root)) and state not in (b"Z", b"X"):
            out.append(int(name))
    return out
