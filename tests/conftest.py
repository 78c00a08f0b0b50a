"""Shared fixtures: a small prepared dataset and a supervisor for a seconds-long CPU task.

AUTOEVOLVE_HOME points at a per-session temporary directory, so tests never touch the user's
cache. The data is the embedded stdlib corpus with a 512-token vocabulary (prepared in ~3 s).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
ADVERSARIAL = FIXTURES / "adversarial"
REPO = Path(__file__).resolve().parent.parent


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
