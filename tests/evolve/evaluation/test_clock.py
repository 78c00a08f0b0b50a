"""The budget clock (evolve.evaluation.clock): wall and CPU seconds, and the CPU time of a
process tree, on real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from evolve.evaluation import cgroups
from evolve.evaluation.clock import (WALL_FACTOR, BudgetClock, CpuClock, granted_cores,
                                     make_clock, tree_cpu_seconds)

SPIN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def test_a_wall_clock_counts_seconds_from_its_first_start_only():
    c = BudgetClock()
    assert c.elapsed(100.0) == 0.0 and c.t0 is None
    assert c.start(10.0) == 10.0 and c.start(50.0) == 10.0       # started once
    assert c.elapsed(13.5) == 3.5 and c.virtual_start(13.5) == 10.0
    assert c.wall_limit(60.0) == 60.0


def test_a_cpu_clock_counts_cpu_seconds_per_granted_core_and_never_goes_back():
    readings = iter([5.0, 9.0, 3.0, None, 17.0, 17.0])   # at start, then a read per call
    c = CpuClock(lambda: next(readings), threads=2)
    c.start(100.0)                                    # reads 5.0
    assert c.elapsed(200.0) == 2.0                    # (9 - 5) / 2, whatever the wall says
    assert c.elapsed(200.0) == 2.0                    # a lower reading is not believed
    assert c.elapsed(200.0) == 2.0                    # nor a missing one
    assert c.elapsed(200.0) == 6.0
    assert c.virtual_start(200.0) == 194.0            # progress() sees 6 s used
    assert c.wall_limit(60.0) == WALL_FACTOR * 60.0


def test_make_clock_refuses_what_it_cannot_count():
    assert make_clock("wall", 0, None).kind == "wall"
    assert make_clock("cpu", 2, lambda: 0.0).kind == "cpu"
    with pytest.raises(ValueError, match="cgroup"):
        make_clock("cpu", 2, None)
    with pytest.raises(ValueError, match="unknown clock"):
        make_clock("tsc", 2, None)


def test_tree_cpu_seconds_counts_the_live_descendants_and_says_when_the_tree_is_gone():
    # a parent that idles and a child that spins 0.6 s of CPU, then sleeps until killed
    code = ("import os, subprocess, sys, time\n"
            f"subprocess.Popen([sys.executable, '-c', {SPIN.format(s=0.6) + 'time.sleep(60)'!r}])\n"
            "time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        seen = 0.0
        while time.monotonic() < deadline and seen < 0.6:
            seen = tree_cpu_seconds(p.pid) or 0.0
            time.sleep(0.1)
        assert 0.6 <= seen < 5.0
    finally:
        os.killpg(p.pid, 9)
        p.wait()
    assert tree_cpu_seconds(p.pid) is None


def test_a_cgroup_counts_the_cpu_time_of_its_processes_after_they_died():
    cg = cgroups.MemoryCgroup.create(f"autoevolve-eval-{os.getpid()}-clock", 2 ** 30)
    if cg is None or cg.cpu_seconds() is None:
        pytest.skip("no cgroup here counts CPU time")
    try:
        assert cg.cpu_seconds() == 0.0
        subprocess.run([sys.executable, "-c", SPIN.format(s=0.5)], preexec_fn=cg.enter,
                       check=True)
        assert 0.5 <= cg.cpu_seconds() < 5.0
    finally:
        cg.remove()
    assert not any(p.exists() for p in cg.paths)


def test_granted_cores_are_this_process_affinity():
    assert granted_cores() == sorted(os.sched_getaffinity(0))


# -- the clock in the supervisor ------------------------------------------------------------
# Two genomes on a cpu-clock task with one granted core and a 1 s budget, run side by side.
HELPED = '''
import os, time, torch
from evolve import harness
helper = os.fork()
if helper == 0:
    while True:          # a second process of the tree, burning a core (it could train)
        pass
model = torch.nn.Embedding(harness.VOCAB_SIZE, harness.VOCAB_SIZE)
start, n = None, 0
for x, y in harness.train_batches(2):
    start = start or time.monotonic()
    n += 1
    time.sleep(0.02)     # the genome itself hardly uses its CPU
print(f"wall={time.monotonic() - start:.2f} batches={n} threads={torch.get_num_threads()} "
      f"cores={sorted(os.sched_getaffinity(0))} progress={harness.progress()}", flush=True)
os.kill(helper, 9)
harness.submit(model)
'''
IDLE = '''
import time, torch
from evolve import harness
for x, y in harness.train_batches(2):
    time.sleep(0.2)      # uses almost no CPU: its clock hardly moves
harness.submit(torch.nn.Embedding(harness.VOCAB_SIZE, harness.VOCAB_SIZE))
'''


@pytest.fixture(scope="module")
def cpu_clock_results(prepared, tmp_path_factory):
    from concurrent.futures import ThreadPoolExecutor

    from evolve.evaluation.supervisor import Supervisor
    from tests.conftest import small_task

    task = small_task(budget_s=1.0, submit_s=2.0, clock="cpu", threads=1)
    try:
        sup = Supervisor(task, prepared, memory_limit_bytes=3 * 2 ** 30)
    except ValueError as e:
        pytest.skip(str(e))
    logs = tmp_path_factory.mktemp("cpu_clock")
    with ThreadPoolExecutor(2) as pool:
        helped = pool.submit(sup.evaluate, HELPED, log_dir=logs)
        idle = pool.submit(sup.evaluate, IDLE)
        return helped.result(), (logs / "stdout.txt").read_text(), idle.result(), sup


def test_every_process_of_the_tree_is_charged_to_its_cpu_clock(cpu_clock_results):
    """A helper process burning a core spends the budget: the data ends after about 1 s of
    wall time (the helper's CPU), not the ~30 s that the genome's own CPU would take, and the
    genome was granted one core and one torch thread."""
    r, stdout, _, sup = cpu_clock_results
    fields = dict(part.split("=", 1) for part in stdout.split())
    assert float(fields["wall"]) < 2.5, (stdout, r.summary())
    assert fields["threads"] == "1" and fields["cores"] == str(sup.cores) == str(granted_cores()[:1])
    assert float(fields["progress"]) == 1.0
    assert r.status.value == "ok", r.summary()
    assert r.training_seconds <= 1.0 + 1.0 and r.model_tokens_per_sec > 0     # timed by CPU


def test_a_genome_that_idles_is_stopped_by_the_wall_limit(cpu_clock_results):
    _, _, r, _ = cpu_clock_results
    assert r.status.value == "timeout" and f"{WALL_FACTOR:g} x the budget" in r.reason, r.summary()
    assert r.training_seconds < 1.0                  # it used little of its CPU budget
    assert r.total_seconds < WALL_FACTOR * 1.0 + 2.0 + 15.0
