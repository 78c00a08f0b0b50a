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


def test_a_cpu_clock_adds_the_granted_cores_idle_time_and_the_feeder_s_work():
    tree, idle, feeder = [0.0], [100.0], [None]
    c = CpuClock(lambda: tree[0], 2, (lambda: idle[0], lambda: feeder[0]))
    c.start(0.0)
    tree[0], idle[0] = 1.0, 101.0          # one core busy, the other idle for a second
    assert c.elapsed(1.0) == 1.0           # charged as the wall clock would
    feeder[0] = 0.5                        # the feeder thread appears (started after the clock)
    assert c.elapsed(2.0) == 1.25


def test_idle_core_seconds_and_thread_cpu_seconds_read_the_kernel():
    import threading

    from evolve.evaluation.clock import idle_core_seconds, thread_cpu_seconds

    before = idle_core_seconds(granted_cores())
    me = thread_cpu_seconds(threading.get_native_id())
    t = time.process_time()
    while time.process_time() - t < 0.3:
        pass
    time.sleep(0.3)
    assert idle_core_seconds(granted_cores()) >= before > 0
    assert thread_cpu_seconds(threading.get_native_id()) >= me + 0.25
    assert idle_core_seconds([10 ** 6]) is None and thread_cpu_seconds(2 ** 30) is None


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
# Genomes on a cpu-clock task with one granted core (the first) and a 0.5 s budget. Each prints
# the wall seconds between its first batch and the end of the data.
WALL = """
print(f"wall={time.monotonic() - start:.2f} batches={n} threads={torch.get_num_threads()} "
      f"cores={sorted(os.sched_getaffinity(0))} progress={harness.progress()}", flush=True)
"""
HELPED = """
import os, time, torch
from evolve import harness
helper = os.fork()
if helper == 0:
    while True:          # a second process of the tree, burning the core (it could train)
        pass
model = torch.nn.Embedding(harness.VOCAB_SIZE, harness.VOCAB_SIZE)
start, n = None, 0
for x, y in harness.train_batches(2):
    start = start or time.monotonic()
    n += 1
    time.sleep(0.02)     # the genome itself hardly uses its CPU
""" + WALL + """
os.kill(helper, 9)
harness.submit(model)
"""
IDLE = """
import os, time, torch
from evolve import harness
start, n = None, 0
for x, y in harness.train_batches(2):
    start = start or time.monotonic()
    n += 1
    time.sleep(0.2)      # uses almost no CPU, and leaves its core idle
""" + WALL + """
harness.submit(torch.nn.Embedding(harness.VOCAB_SIZE, harness.VOCAB_SIZE))
"""


@pytest.fixture(scope="module")
def cpu_clock_supervisor(prepared):
    from evolve.evaluation.supervisor import Supervisor
    from tests.conftest import small_task

    task = small_task(budget_s=0.5, submit_s=1.0, clock="cpu", threads=1)
    try:
        return Supervisor(task, prepared, memory_limit_bytes=3 * 2 ** 30)
    except ValueError as e:
        pytest.skip(str(e))


def _run(sup, source, tmp_path, spinners=0):
    """Evaluate with `spinners` processes outside the tree spinning on the granted core."""
    spin = [subprocess.Popen([sys.executable, "-c", "import os\nos.sched_setaffinity(0, "
                              f"{sup.cores})\nwhile True: pass"]) for _ in range(spinners)]
    try:
        r = sup.evaluate(source, log_dir=tmp_path)
    finally:
        for p in spin:
            p.kill()
            p.wait()
    out = (tmp_path / "stdout.txt").read_text()
    return r, dict(part.split("=", 1) for part in out.split())


def test_every_process_of_the_tree_is_charged_to_its_cpu_clock(cpu_clock_supervisor, tmp_path):
    """A helper process burning the core spends the budget: the data ends after about 0.5 s
    of wall time, not the ~15 s the genome's own CPU would take, and the genome was granted
    one core and one torch thread."""
    r, out = _run(cpu_clock_supervisor, HELPED, tmp_path)
    assert float(out["wall"]) < WALL_FACTOR * 0.5, (out, r.summary())
    assert out["threads"] == "1" and out["cores"] == str(granted_cores()[:1])
    assert float(out["progress"]) == 1.0
    assert r.status.value == "ok", r.summary()
    assert r.training_seconds <= 1.5 and r.model_tokens_per_sec > 0      # timed by its clock


def test_a_granted_core_left_idle_is_charged(cpu_clock_supervisor, tmp_path):
    """Adversary round 9: counting CPU time alone, a genome using fewer threads than its grant
    got that many times the wall time (one torch thread on two cores: 2x, 0.08 bpb better than
    honest). Idle granted cores are charged: a genome that sleeps is done in about 0.5 s of
    wall time, within the wall limit (2 s), unless other processes take most of its core."""
    r, out = _run(cpu_clock_supervisor, IDLE, tmp_path)
    assert float(out["wall"]) < WALL_FACTOR * 0.5, (out, r.summary())
    assert r.status.value == "ok", r.summary()


def test_time_others_take_is_not_charged_and_a_starved_genome_ends_at_the_wall_limit(
        cpu_clock_supervisor, tmp_path):
    """With another process spinning on its one core, the idle genome is charged neither that
    process's time nor idle time: its clock hardly moves, and the wall limit ends it."""
    r, _ = _run(cpu_clock_supervisor, IDLE, tmp_path, spinners=1)   # killed in its loop
    assert r.status.value == "timeout" and f"{WALL_FACTOR:g} x the budget" in r.reason, r.summary()
    assert r.training_seconds < 0.5
    assert r.total_seconds < WALL_FACTOR * 0.5 + 1.0 + 15.0
