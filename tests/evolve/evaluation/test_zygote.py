"""Genomes and scorers forked from the zygote (evolve.evaluation.zygote): torch is already
imported, and the walls are a cold start's. The attack fixtures of test_supervisor.py run
through the zygote too (the session's supervisors are CPU ones, and the tests run as root where
the namespaces allow it); this file checks what is particular to forking.
"""

from __future__ import annotations

import os
import signal

import pytest

from evolve.evaluation import sandbox
from evolve.evaluation.result import Status
from evolve.evaluation.supervisor import Supervisor
from tests.conftest import REPO, small_task

pytestmark = pytest.mark.skipif(
    tuple(sandbox.namespaces()[0]) != ("unshare", *sandbox.ROOT_NAMESPACES),
    reason="the zygote needs namespaces without a user namespace (root)")

PROBE = """
import os, sys, torch
from evolve import harness
environ = open("/proc/self/environ", "rb").read()
print("PRE", sorted(n for n in ("torch", "torch._dynamo", "torch.export") if n in sys.modules))
print("SECRET", b"sk-zygote-test" in environ or "sk-zygote-test" in str(dict(os.environ)))
print("PID", os.getpid(), "PROCS", sum(n.isdigit() for n in os.listdir("/proc")))
import numpy
print("DRAW", numpy.random.randint(1 << 30))
for x, y in harness.train_batches(4):
    pass
harness.submit(torch.nn.Embedding(harness.VOCAB_SIZE, harness.VOCAB_SIZE))
"""


def lines(path) -> dict[str, str]:
    return {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in path.read_text().splitlines()
            if " " in ln}


@pytest.fixture(scope="module")
def forked(prepared, autoevolve_home):
    # Its own environment: a zygote of its own, started after the secret was set.
    os.environ["OPENAI_API_KEY"] = "sk-zygote-test"
    try:
        sup = Supervisor(small_task(budget_s=1.0), prepared, memory_limit_bytes=3 * 2 ** 30,
                         env={"AUTOEVOLVE_TEST": "zygote"})
        assert sup.use_zygote
        yield sup
    finally:
        os.environ.pop("OPENAI_API_KEY", None)


def test_a_forked_genome_starts_with_torch_imported_and_walls_like_a_cold_one(forked, tmp_path):
    r = forked.evaluate(PROBE, log_dir=tmp_path / "a")
    assert r.status is Status.OK, r.summary()
    out = lines(tmp_path / "a" / "stdout.txt")
    assert out["PRE"] == "['torch', 'torch._dynamo', 'torch.export']", out
    assert out["SECRET"] == "False", out              # the engine's environment never reaches it
    # PID 2 of a namespace of its own (1 is the runner's waiter); nothing else visible
    assert out["PID"].split()[0] == "2" and int(out["PID"].split()[2]) <= 3, out
    # the clock starts at once: its imports were done before it was forked
    assert r.startup_seconds is not None and r.startup_seconds <= forked.forked_allowance
    again = forked.evaluate(PROBE, log_dir=tmp_path / "b")
    assert again.status is Status.OK, again.summary()
    # numpy's global stream is drawn afresh in each child, not the zygote's copied state
    assert lines(tmp_path / "b" / "stdout.txt")["DRAW"] != out["DRAW"]


def test_a_dead_zygote_is_replaced(forked):
    z = forked._zygote_for({})
    os.kill(z.proc.pid, signal.SIGKILL)
    z.proc.wait()
    r = forked.evaluate(PROBE)
    assert r.status is Status.OK, r.summary()
    assert forked._zygote_for({}) is not z


def test_a_zygote_that_cannot_fork_means_a_cold_start_not_a_crash(forked, monkeypatch, tmp_path):
    from evolve.evaluation import zygote

    def wedged(self, request, fds, timeout=30.0):
        raise OSError("the zygote did not answer")

    monkeypatch.setattr(zygote.Zygote, "spawn", wedged)
    r = forked.evaluate(PROBE, log_dir=tmp_path)
    assert r.status is Status.OK, r.summary()
    # started cold: its own imports, so the longer allowance of a cold start applied
    assert "torch._dynamo" not in lines(tmp_path / "stdout.txt")["PRE"]


def test_a_forked_genome_gets_half_a_second_before_its_clock_starts(forked, tmp_path):
    from tests.conftest import ADVERSARIAL

    r = forked.evaluate((ADVERSARIAL / "free_body.py").read_text(), log_dir=tmp_path)
    out = (tmp_path / "stdout.txt").read_text()
    assert "FREE_STEPS" in out, out                    # it did train off the clock before asking
    assert forked.forked_allowance == 0.5
    assert r.startup_seconds is not None and r.startup_seconds <= 0.5 + 0.05, r.summary()


def test_the_zygote_kills_only_a_child_it_has_not_reaped(forked):
    """A kill request names a pid: the zygote acts only on a child of its own that has not been
    reaped (a reaped pid may be anyone's by now), and a reaped child's handle asks nothing."""
    import subprocess
    import time

    from evolve.evaluation import zygote

    z = forked._zygote_for({})
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        z.kill(bystander.pid)                      # not the zygote's child
        time.sleep(0.5)
        assert bystander.poll() is None, "the zygote killed a process that is not its child"
    finally:
        bystander.kill()
        bystander.wait()

    class Zyg:
        asked: list[int] = []

        def wait(self, pid, block):
            return pid, 0, None

        def kill(self, pid):
            self.asked.append(pid)

    child = zygote.Forked(Zyg(), 12345)
    assert child.wait4(block=False)[0] == 12345 and child.reaped
    child.kill()
    assert Zyg.asked == []


WINDOW = """
import os, sys, time
from evolve.evaluation import zygote

real = zygote._libc()


class SlowPrctl:
    # The child's prctl comes 1 s late: time for the test to kill the waiting parent first.
    def __getattr__(self, name):
        return getattr(real, name)

    def prctl(self, *args):
        time.sleep(1.0)
        return real.prctl(*args)


zygote._libc = lambda: SlowPrctl()
print("go", flush=True)


def entry():
    open(sys.argv[1], "w").close()
    time.sleep(60)


zygote.walled(entry)
"""


def test_a_parent_killed_before_pid_1_armed_its_death_signal_takes_pid_1_along(tmp_path):
    """walled(): the namespace's PID 1 arms PR_SET_PDEATHSIG after the fork; a parent SIGKILLed
    in between sent it no signal, and a genome would have run on with no one to kill it (a
    supervisor killed as its genome started, under load). PID 1 checks, and leaves."""
    import subprocess
    import sys
    import time

    marker = tmp_path / "ran"
    p = subprocess.Popen([sys.executable, "-c", WINDOW, str(marker)], stdout=subprocess.PIPE,
                         cwd=REPO)
    try:
        assert p.stdout.readline().strip() == b"go"
        time.sleep(0.4)                    # unshare, mount, fork: the child now sleeps in prctl
        p.kill()
        p.wait()
        time.sleep(1.5)                    # the child's prctl returns 0.6 s after the kill
        assert not marker.exists(), "PID 1 ran its entry after its parent was killed"
    finally:
        p.kill()
        subprocess.run(["pkill", "-KILL", "-f", str(marker)], check=False)


def test_a_preexec_child_whose_parent_is_already_gone_never_runs():
    """zygote.killed_with(parent): the child of a parent that died before the death signal was
    armed (here: a parent it never had) exits 70 instead of running its program."""
    import subprocess

    from evolve.evaluation import zygote

    p = subprocess.Popen(["sleep", "60"], preexec_fn=zygote.killed_with(os.getpid() + 1))
    assert p.wait(timeout=10) == 70
    p = subprocess.Popen(["true"], preexec_fn=zygote.killed_with(os.getpid()))
    assert p.wait(timeout=10) == 0
