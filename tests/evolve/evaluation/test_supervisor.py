"""The supervisor against the adversarial fixtures of RELIABILITY.md, plus the controls.

Every genome here runs as a real child process under the real sandbox and, when it submits, is
scored by the real scorer process. Budgets are a few seconds.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import signal
import subprocess
import sys
import time

from pathlib import Path

import numpy as np
import pytest

from evolve.evaluation.result import Status
from evolve.evaluation import sandbox
from evolve.evaluation.sandbox import landlock_abi
from tests.conftest import ADVERSARIAL, REPO, leftover_processes, small_task


@pytest.fixture(scope="module")
def disk_supervisor(prepared):
    """The quick supervisor's task with a 1 s budget: the disk checks run at random times while
    the genome lives (some of what they must see is gone once the tree is dead), and 0.5 s of
    training leaves too few of them to be sure of one."""
    from evolve.evaluation.supervisor import Supervisor

    return Supervisor(small_task(budget_s=1.0), prepared, memory_limit_bytes=3 * 2 ** 30)


def run(supervisor, name: str, **kw):
    return supervisor.evaluate((ADVERSARIAL / f"{name}.py").read_text(), **kw)


def uniform_bpb(supervisor) -> float:
    """bpb of a model that predicts every token with probability 1/V (hand-computed)."""
    rows = supervisor.eval_rows
    w = supervisor.token_bytes[rows[:, 1:].astype(np.int64)]
    return (w > 0).sum() * math.log(supervisor.task.vocab_size) / (math.log(2) * w.sum())


@pytest.fixture(scope="module")
def honest(supervisor):
    """The honest control, evaluated once for the tests of this module that compare with it."""
    return run(supervisor, "honest")


# A reference no honest run comes near (0.01 nats at every checkpoint): a pruner over it says
# "stop" at the first checkpoint where the run reported a loss. The honest control reporting at
# every step, so that every checkpoint's window (10 % of the budget) holds reports even on a
# loaded machine.
LOW = tuple((p, 0.01) for p in (0.15, 0.2, 0.35, 0.4, 0.55, 0.6))
CHATTY = (ADVERSARIAL / "honest.py").read_text().replace("if step % 10 == 0:", "if True:")


def test_a_shadow_pruner_records_its_decision_and_never_stops_the_run(supervisor):
    from evolve.search.pruning import Pruner

    assert "if True:" in CHATTY
    r = supervisor.evaluate(CHATTY, pruner=Pruner.of([LOW], stop=False))
    assert r.status is Status.OK and r.val_bpb is not None, r.summary()
    assert r.pruned_at in (0.2, 0.4, 0.6) and r.prune_bar == pytest.approx(0.01 * 1.05)
    assert r.pruner == "shadow"
    assert max(p for p, _ in r.curve) > 0.9                      # it trained to the end


def test_a_pruner_that_stops_ends_the_run_at_its_checkpoint(supervisor):
    from evolve.search.pruning import Pruner

    budget = supervisor.task.budget_s
    r = supervisor.evaluate(CHATTY, pruner=Pruner.of([LOW], stop=True))
    assert r.status is Status.PRUNED and r.val_bpb is None and r.pruner == "on", r.summary()
    assert r.pruned_at in (0.2, 0.4, 0.6) and f"{100 * r.pruned_at:.0f} % of the budget" in r.reason
    # stopped by the supervisor's clock at the checkpoint (plus its 50 ms poll), the scorer
    # never run; the partial curve is kept
    assert r.pruned_at * budget <= r.training_seconds < r.pruned_at * budget + 0.5, r.summary()
    assert r.scoring_seconds is None and r.curve
    assert max(p for p, _ in r.curve) <= r.pruned_at + 0.05
    assert r.tokens > 0 and r.tokens_per_sec > 0


def test_honest_genome_scores_below_uniform(supervisor, honest):
    r = honest
    assert r.status is Status.OK, r.summary()
    assert math.isfinite(r.val_bpb) and 0 < r.val_bpb < uniform_bpb(supervisor)
    assert r.tokens > 0 and r.tokens_per_sec > 0
    # the budget plus the charged time from its end to the weights' arrival (within allowance)
    assert supervisor.task.budget_s - 0.1 <= r.training_seconds <= supervisor.task.budget_s + 1.6
    # embedding, two linear layers with biases
    assert r.num_params == 512 * 512 + (512 * 512 + 512) + (512 * 512 + 512)
    assert r.losses and r.fingerprint == supervisor.fingerprint
    # the same losses, placed on the budget by the supervisor's clock as they arrived
    assert [x for _, x in r.curve] == [x for _, x in r.losses]
    progress = [p for p, _ in r.curve]
    assert progress == sorted(progress) and 0 <= progress[0] and progress[-1] <= 1.1, progress


def test_fake_printed_score_is_never_a_score(quick_supervisor):
    r = run(quick_supervisor, "fake_score")
    assert r.status is Status.INVALID and r.val_bpb is None
    assert "submit" in r.reason


def test_lookahead_model_is_a_cheat(quick_supervisor):
    r = run(quick_supervisor, "lookahead")
    assert r.status is Status.CHEAT and r.val_bpb is None
    assert "causality" in r.reason or "row probe" in r.reason


def test_stateful_model_is_invalid(quick_supervisor):
    r = run(quick_supervisor, "stateful")
    assert r.status is Status.INVALID and "state" in r.reason, r.summary()


def test_nan_is_diverged(supervisor, quick_supervisor):
    # a non-finite training loss needs steps; non-finite logits are found at scoring
    for name, sup in (("nan_loss", supervisor), ("nan_logits", quick_supervisor)):
        r = run(sup, name)
        assert r.status is Status.DIVERGED and r.val_bpb is None, (name, r.summary())


def test_crash_reports_the_exception_line(quick_supervisor):
    r = run(quick_supervisor, "crash")
    assert r.status is Status.CRASH
    assert r.reason == "ValueError: shapes do not match: 384 vs 512"
    assert "Traceback" in r.stderr_tail and r.exit_code == 1


def test_segfault_reports_the_signal(quick_supervisor):
    r = run(quick_supervisor, "segfault")
    assert r.status is Status.CRASH and r.signal == "SIGSEGV"


def test_a_flood_of_weights_is_spooled_to_disk_not_held_in_memory(quick_supervisor):
    """A genome announces a 512 MiB snapshot through the raw channel socket: the supervisor's own
    process (a Dask worker, on a cluster) must not grow by it, or the genome could get its
    worker restarted, and itself re-run, whenever its training looked bad."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    scratch = set(quick_supervisor.scratch_root.iterdir())
    r = run(quick_supervisor, "weights_flood")
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert not r.ok, r.summary()
    assert grew < 256 * 2 ** 20, f"the supervisor's peak memory grew by {grew >> 20} MiB"
    assert set(quick_supervisor.scratch_root.iterdir()) <= scratch       # the spool is gone too


def test_a_refusal_that_quotes_a_lone_surrogate_is_stored_as_valid_text(quick_supervisor, tmp_path):
    from evolve.search.archive import Archive

    r = run(quick_supervisor, "surrogate_reason")
    assert not r.ok and "stored with pickle" in r.reason, r.summary()
    r.reason.encode("utf-8")                              # valid text: stored, printed
    archive = Archive.create(tmp_path / "run", {"config": {}, "task": {}, "fingerprint": "x"})
    with archive.conn:
        archive.conn.execute("INSERT INTO genomes VALUES ('g', '', '[]', 'seed', '', '[]', 0, 0)")
    archive.add_eval("g", r, "eval", 0, "cpu", 0.0, 1.0)
    assert archive.results("g")[0].reason == r.reason
    archive.close()


def test_descriptors_parked_in_the_channel_do_not_outlive_the_evaluation(quick_supervisor):
    """A genome that never reads its batch and parks 256 MiB of memfds in the supervisor's
    receive queue: when the evaluation ends the feeder has stopped and the memory is freed."""
    import threading

    from evolve.evaluation.feeder import Feeder

    def shmem_mb() -> float:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Shmem:")) / 1024

    before = shmem_mb()
    run(quick_supervisor, "parked_fds")
    assert not [t for t in threading.enumerate() if isinstance(t, Feeder) and t.is_alive()]
    assert shmem_mb() - before < 128, (before, shmem_mb())


def test_memory_bomb_is_oom(quick_supervisor):
    r = run(quick_supervisor, "membomb")
    assert r.status is Status.OOM, r.summary()
    assert run(quick_supervisor, "honest").ok            # the next genome runs normally


def test_memory_bomb_without_an_address_limit_is_stopped_by_the_memory_cgroup(prepared):
    """The CUDA path: no address-space rlimit, so only the tree's memory cgroup stops it."""
    from evolve.evaluation.supervisor import Supervisor

    sup = Supervisor(small_task(), prepared, memory_limit_bytes=2 * 2 ** 30, address_limit=False)
    if "memcg" not in sup.sandbox_desc:
        pytest.skip("no writable memory cgroup here")
    r = sup.evaluate((ADVERSARIAL / "membomb.py").read_text())
    assert r.status is Status.OOM and "host memory limit" in r.reason, r.summary()
    assert not list(Path("/sys/fs/cgroup/memory").glob(f"autoevolve-eval-{os.getpid()}-*"))


def test_not_python_and_no_harness_are_refused_before_running(quick_supervisor):
    r = run(quick_supervisor, "not_python")
    assert r.status is Status.INVALID and "not valid Python" in r.reason
    r = quick_supervisor.evaluate("print('hello')\n")
    assert r.status is Status.INVALID and "harness" in r.reason
    assert r.total_seconds is None                        # no process was started


def test_unexportable_model_is_invalid(quick_supervisor):
    r = run(quick_supervisor, "no_export")
    assert r.status is Status.INVALID and "torch.export" in r.reason


def test_hang_times_out_and_leaves_no_process(prepared):
    from evolve.evaluation.supervisor import Supervisor

    sup = Supervisor(small_task(budget_s=1.0, startup_s=2.0, submit_s=2.0), prepared)
    t = time.monotonic()
    r = run(sup, "hang")
    assert r.status is Status.TIMEOUT
    assert time.monotonic() - t < 2.0 + 1.0 + 2.0 + 5.0   # allowances + polling/kill grace
    assert leftover_processes(sup.scratch_root) == []


def test_escaped_daemon_and_fork_bomb_leave_no_process(quick_supervisor):
    r = run(quick_supervisor, "escape")
    assert r.status is Status.INVALID
    time.sleep(0.2)
    assert leftover_processes(quick_supervisor.scratch_root) == []
    r = run(quick_supervisor, "forkbomb")
    assert r.status is Status.CRASH and "processes" in r.reason, r.summary()
    assert leftover_processes(quick_supervisor.scratch_root) == []


def test_threads_and_setsid_children_count_as_tasks(quick_supervisor):
    """Adversary round 6: 1,500 threads and 300 setsid()ed children, which the session count
    misses, trained to `ok`; ~30,000 would take every pid of the host. Where the tree has a
    pids cgroup (the `pids` layer), it holds at most cgroups.MAX_TASKS tasks: a fork bomb."""
    if "pids" not in quick_supervisor.sandbox_desc:
        pytest.skip("no pids cgroup here (needs root or a delegated cgroup tree)")
    r = run(quick_supervisor, "uncounted_tasks")
    assert r.status is Status.CRASH and "processes and threads (fork bomb)" in r.reason, \
        r.summary()
    assert leftover_processes(quick_supervisor.scratch_root) == []


def test_snooping_genome_reaches_no_data_secret_or_harness(quick_supervisor, prepared, tmp_path,
                                                           monkeypatch):
    import evolve.harness

    secret = tmp_path / "home" / ".netrc"
    secret.parent.mkdir()
    secret.write_text("machine api.example password hunter2\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-for-genomes")
    harness_file = evolve.harness.__file__
    before = open(harness_file, "rb").read()
    source = ((ADVERSARIAL / "snoop.py").read_text()
              .replace("TARGET_VAL", str(prepared.root / "val.bin"))
              .replace("TARGET_SECRET_FILE", str(secret))
              .replace("TARGET_HARNESS", harness_file))
    r = quick_supervisor.evaluate(source, log_dir=tmp_path / "logs")
    out = (tmp_path / "logs" / "stdout.txt").read_text()
    assert r.status is Status.INVALID
    assert "ENV_SECRET None" in out
    assert open(harness_file, "rb").read() == before
    if landlock_abi() >= 1:
        assert "READ_DENIED VAL" in out and "READ_DENIED HOME_FILE" in out
        assert "WRITE_DENIED HARNESS" in out
    else:
        assert r.status in (Status.CHEAT, Status.INVALID)


def test_killed_supervisor_leaves_no_genome_and_scratch_is_swept(prepared, autoevolve_home):
    from evolve.evaluation.scratch import sweep_scratch

    script = (
        "import sys; from pathlib import Path\n"
        "from evolve.data.prepare import PreparedData\n"
        "from evolve.evaluation.supervisor import Supervisor\n"
        "from tests.conftest import small_task\n"
        f"d = PreparedData.open(Path({str(prepared.root)!r}))\n"
        "s = Supervisor(small_task(budget_s=60.0), d)\n"
        "print('ready', flush=True)\n"
        f"s.evaluate(open({str(ADVERSARIAL / 'hang.py')!r}).read())\n")
    p = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout.readline().strip() == b"ready"
    scratch_root = autoevolve_home / "scratch"
    deadline = time.monotonic() + 30
    while not leftover_processes(scratch_root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftover_processes(scratch_root), "the genome never started"
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + 10
    while leftover_processes(scratch_root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftover_processes(scratch_root) == []
    assert sweep_scratch(scratch_root) >= 1              # the dead supervisor's directories


def test_pickled_model_file_is_refused_before_loading(quick_supervisor):
    r = run(quick_supervisor, "pickled_model")
    assert r.status is Status.INVALID and r.val_bpb is None, r.summary()
    assert "pickle" in r.reason


def test_forged_submit_message_does_not_inflate_throughput(supervisor):
    r = run(supervisor, "early_submit")
    assert r.status is Status.OK, r.summary()
    # after the forged "S" no more data was served (the one batch already in flight aside),
    # and the clock ran to the process's end
    assert dict(r.losses)[0] <= 2.0 and r.tokens <= 2 * 8 * supervisor.task.seq_len
    assert r.training_seconds > 0.05


def test_discarded_batches_do_not_raise_throughput(supervisor, honest):
    """Asking for 16x the rows a step trains on multiplies the tokens handed out per second;
    the recorded tokens/s is capped by the scorer's timing of the submitted model, which is the
    honest twin's model, also when the exported graph cuts its gradients to look cheap to
    train. (Wall-clock figures on a shared machine move with its load, so the test compares
    each evaluation with itself and the scorer's timings with each other, with margins;
    benchmarks/bench_throughput.py measures the inflation left on seeds/cpu.py.)"""
    def handed(r):
        return r.tokens / r.training_seconds

    assert honest.status is Status.OK, honest.summary()
    assert honest.tokens_per_sec == pytest.approx(min(handed(honest), honest.model_tokens_per_sec))
    # The honest model's speed, the reference. Load only ever slows a timed pass, and passes
    # of this tiny model take ~10 ms, so one busy moment can halve one figure (20,900 against
    # a usual ~40,000 tokens/s, once in a suite): a figure the check would fail on is measured
    # once more, and the faster of the two is the reference.
    reference = [honest.model_tokens_per_sec]

    def honest_speed(at_least: float) -> float:
        if max(reference) <= at_least and len(reference) == 1:
            again = run(supervisor, "honest")
            assert again.status is Status.OK, again.summary()
            reference.append(again.model_tokens_per_sec)
        return max(reference)

    # on the 4 s supervisor: on 1 s the budget can end before a first large batch
    for name in ("discard_batches", "detach_eps", "buffer_hide"):
        r = run(supervisor, name)
        assert r.status is Status.OK, r.summary()
        # the cap, not the claim (the claim is 16x the rows trained on; on a slow start the
        # cap may not bind, hence the min)
        assert r.tokens_per_sec == pytest.approx(min(handed(r), r.model_tokens_per_sec))
        # The same model as the twin's, timed alike: a graph whose backward is nearly free
        # (detached, hidden in buffers) is charged three forward passes a training pass;
        # uncharged it would time ~3x faster.
        assert r.model_tokens_per_sec < 2 * honest_speed(r.model_tokens_per_sec / 2), (
            name, r.model_tokens_per_sec, reference)


MISALIGNED = """
import torch
from evolve import harness

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.temperature = torch.nn.Parameter(torch.ones(()))           # 4 bytes first
        self.emb = torch.nn.Embedding(harness.VOCAB_SIZE, harness.VOCAB_SIZE)
        self.register_buffer("positions", torch.arange(harness.SEQ_LEN))  # int64 after it

    def forward(self, x):
        bias = 0 * self.positions[: x.shape[1]].float()[None, :, None]
        return self.emb(x) * self.temperature + bias

model = Net()
opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
for x, y in harness.train_batches(8):
    loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
    opt.zero_grad()
    loss.backward()
    opt.step()
harness.submit(model)
"""


def test_weights_of_any_dtype_at_any_offset_of_the_snapshot_load(quick_supervisor):
    """An honest model whose int64 buffer follows a 0-d fp32 parameter in the snapshot (an
    8-byte dtype at an offset of 4 mod 8) used to be refused by the model process (adversary
    round 16 found it): it scores."""
    r = quick_supervisor.evaluate(MISALIGNED)
    assert r.status is Status.OK, r.summary()


def test_a_cheap_branch_on_the_timed_batch_is_refused(quick_supervisor):
    """cond_timed_batch.py (adversary round 16) recognises the first eval batch's rows by
    their tokens 1..3, here taken from the supervisor's eval rows as an attacker would compute
    them offline, and branches to a cheap path on that batch: refused before it runs."""
    rows = quick_supervisor.eval_rows[:quick_supervisor.task.eval_batch_size, 1:4]
    source = (ADVERSARIAL / "cond_timed_batch.py").read_text()
    r = quick_supervisor.evaluate(source.replace("@FINGERPRINTS@", repr(rows.tolist())))
    assert r.status is Status.INVALID and r.val_bpb is None, r.summary()
    assert "cond" in r.reason, r.reason


@pytest.mark.skipif(landlock_abi() < 1, reason="needs landlock")
def test_nothing_can_be_left_in_dev_shm(quick_supervisor, tmp_path):
    import glob

    quick_supervisor.evaluate((ADVERSARIAL / "shm_persist.py").read_text(), log_dir=tmp_path)
    out = (tmp_path / "stdout.txt").read_text()
    # Denied (no private /dev/shm) or written to a tmpfs that died with the evaluation.
    assert "SHM_WRITE_DENIED" in out or "tmpfs" in quick_supervisor.sandbox_desc, out
    assert not glob.glob("/dev/shm/autoevolve-shm-probe-*")


def test_inductor_s_parallel_compile_pool_works_in_the_sandbox(quick_supervisor, tmp_path):
    """torch.compile builds kernels in a pool of worker processes; in the sandbox the pool
    starts (a private /dev/shm holds its semaphores) and its workers run jobs, so compiling
    a genome is not serial (issue 13)."""
    from tests.conftest import FIXTURES

    quick_supervisor.evaluate((FIXTURES / "sandbox" / "compile_pool.py").read_text(),
                              log_dir=tmp_path)
    out = (tmp_path / "stdout.txt").read_text().strip()
    assert out.startswith("POOL "), out + (tmp_path / "stderr.txt").read_text()[-2000:]
    kind, threads, result = out.split()[1:4]
    cores = len(os.sched_getaffinity(0))       # the genome is granted this process's cores
    assert kind == "SubprocPool" and int(threads) >= min(2, cores) and float(result) == 4.0, out


@pytest.mark.skipif(not {"mountns", "ipcns", "netns"} <= set(sandbox.namespaces()[1]),
                    reason="needs mount, IPC and network namespaces")
def test_no_state_survives_and_nothing_else_is_visible(quick_supervisor, tmp_path):
    import socket as socket_module

    listener = socket_module.socket(socket_module.AF_INET, socket_module.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.2)
    source = (ADVERSARIAL / "state_carrier.py").read_text().replace(
        "UDP_PORT = 0", f"UDP_PORT = {listener.getsockname()[1]}")
    lines = []
    for run in ("first", "second"):
        quick_supervisor.evaluate(source, log_dir=tmp_path / run)
        lines.append((tmp_path / run / "stdout.txt").read_text().strip())
    first, second = lines
    assert "MADE=/tmp/autoevolve-carry,/dev/shm/autoevolve-carry,sysv" in first, first
    assert "FOUND= " in second, second               # nothing from the first run
    # init of its namespace, the genome and its daemon: no process of this machine is visible
    assert int(first.split("PROCS=")[1].split()[0]) <= 3, first
    assert "UDP=sent" not in first, first
    try:
        leaked = listener.recv(16)
    except OSError:
        leaked = b""
    assert leaked == b""
    assert not os.path.exists("/tmp/autoevolve-carry") and not os.path.exists("/dev/shm/autoevolve-carry")


# Scorer integrity: the exported program is untrusted code, and probes cannot be dodged.
# Each fixture is a genome whose only aim is a better recorded val_bpb than it earned.
@pytest.mark.parametrize("name, status, words", [
    ("graph_writes_verdict", Status.INVALID, "aten::from_file"),
    ("graph_reads_rows", Status.INVALID, "aten::from_file"),
    ("random_op", Status.INVALID, "aten::rand_like"),
    ("strided_peek", Status.INVALID, "aten::as_strided"),
    ("symlink_model", Status.INVALID, "not a regular file"),
    ("offset_lookahead", Status.CHEAT, "causality probe"),
    ("edge_lookahead", Status.CHEAT, "causality probe"),
    ("sparse_lookahead", Status.CHEAT, "causality probe"),
    ("probe_aware_lookahead", Status.CHEAT, "causality probe"),
])
def test_scorer_integrity_attack_gets_no_score(quick_supervisor, name, status, words):
    r = run(quick_supervisor, name)
    assert r.status is status and r.val_bpb is None, r.summary()
    assert words in r.reason, r.reason


@pytest.mark.parametrize("attack, words", [("sympy", "symbolic-shape"), ("guards", "guards_code")])
def test_code_planted_in_the_archive_never_runs(quick_supervisor, attack, words):
    marker = Path("/tmp/autoevolve-archive-code-ran")
    marker.unlink(missing_ok=True)
    source = (ADVERSARIAL / "archive_code.py").read_text().replace(
        'ATTACK = "sympy"', f'ATTACK = "{attack}"')
    r = quick_supervisor.evaluate(source)
    assert r.status is Status.INVALID and r.val_bpb is None, r.summary()
    assert words in r.reason, r.reason
    assert not marker.exists()


def test_validation_text_cannot_be_rebuilt_from_readable_files(quick_supervisor, tmp_path):
    # Honest training on this task reaches ~3 bpb; the memorised table reached 0.13 when the
    # validation files were readable. Hidden, the rebuild fails and the table is empty.
    r = quick_supervisor.evaluate((ADVERSARIAL / "rebuild_val.py").read_text(), log_dir=tmp_path)
    out = (tmp_path / "stdout.txt").read_text()
    assert "rebuild failed" in out and "Permission denied" in out and "idlelib" in out, out
    assert r.val_bpb is None or r.val_bpb > 1.0, r.summary()


def test_training_after_the_budget_is_invalid(supervisor):
    r = run(supervisor, "overtime")
    assert r.status is Status.INVALID and r.val_bpb is None, r.summary()
    assert "after the budget" in r.reason, r.reason


def test_time_before_the_first_batch_is_bounded_by_what_imports_need(supervisor, tmp_path):
    r = supervisor.evaluate((ADVERSARIAL / "pretrain.py").read_text(), log_dir=tmp_path)
    # The clock started at the import allowance, long before the genome asked for data: by
    # then its budget was spent, so its pre-training bought it no batch at all.
    assert supervisor.startup_allowance < supervisor.task.startup_s
    assert r.startup_seconds is not None and r.startup_seconds <= supervisor.startup_allowance + 1.0
    assert "TOKENS 0" in (tmp_path / "stdout.txt").read_text(), r.summary()


@pytest.mark.skipif(not {"mountns"} <= set(sandbox.namespaces()[1]), reason="needs a mount namespace")
def test_no_state_can_be_kept_in_file_metadata(quick_supervisor, tmp_path):
    import shutil
    import tempfile

    # Outside /tmp, which the genome sees as its own empty tmpfs: a file it cannot read but
    # could reach by path on the host's filesystem.
    outside = Path(tempfile.mkdtemp(prefix="autoevolve-metadata-", dir="/var/tmp"))
    target = outside / "outside.txt"
    target.write_text("not the genome's")
    target.chmod(0o644)
    os.utime(target, (1000, 2000))
    readable = REPO / "evolve" / "__init__.py"          # read by every genome's imports
    st = readable.stat()
    os.utime(readable, (0, st.st_mtime))               # access time 1970: a read would stamp it
    try:
        source = (ADVERSARIAL / "metadata_carrier.py").read_text()
        source = source.replace("@TARGET@", str(target)).replace("@READABLE@", str(readable))
        quick_supervisor.evaluate(source, log_dir=tmp_path / "logs")
        line = (tmp_path / "logs" / "stdout.txt").read_text().strip()
        assert line == "META chmod=refused setxattr=refused utime=refused chown=refused read=done", line
        after = target.stat()
        assert (after.st_mode & 0o7777, after.st_atime, after.st_mtime) == (0o644, 1000, 2000)
        assert os.listxattr(target) == []
        assert readable.stat().st_atime == 0               # no access time was stamped
    finally:
        os.utime(readable, (st.st_atime, st.st_mtime))
        shutil.rmtree(outside, ignore_errors=True)


def test_a_deep_nest_of_directories_ends_in_a_result_and_is_removed(quick_supervisor):
    """1,500 levels: more than MAX_DEPTH (128). Walked by full paths, each check of a nest
    like it cost the supervisor 1.55 s of CPU charged to no one (adversary round 10,
    supervisor_walk.py); now it is a fault, and removed."""
    before = set(quick_supervisor.scratch_root.iterdir())
    r = run(quick_supervisor, "deep_dirs")
    assert r.status is Status.CRASH and "nested deeper than 128" in r.reason, r.summary()
    assert set(quick_supervisor.scratch_root.iterdir()) <= before      # scratch and scorer dirs gone
    assert not leftover_processes(quick_supervisor.scratch_root)


def test_empty_directories_count_against_the_scratch_limit(disk_supervisor, monkeypatch):
    from evolve.evaluation import scratch as module

    monkeypatch.setattr(module, "MAX_SCRATCH_ENTRIES", 2_000)
    r = run(disk_supervisor, "dir_fill")
    assert r.status is Status.CRASH and "files and directories in scratch" in r.reason, r.summary()
    assert not leftover_processes(disk_supervisor.scratch_root)


def test_what_lies_past_path_max_is_counted_and_removed(disk_supervisor, monkeypatch):
    """long_path.py writes 1 MiB below a path longer than PATH_MAX: the walk goes by directory
    descriptors, so it is counted (here against a limit of 512 KiB)."""
    from evolve.evaluation import scratch as module

    monkeypatch.setattr(module, "SCRATCH_LIMIT", 2 ** 19)
    before = set(disk_supervisor.scratch_root.iterdir())
    r = run(disk_supervisor, "long_path")
    assert r.status is Status.CRASH and "in scratch" in r.reason, r.summary()
    assert set(disk_supervisor.scratch_root.iterdir()) <= before
    assert not leftover_processes(disk_supervisor.scratch_root)


def test_deleted_files_the_genome_holds_count_against_the_scratch_limit(disk_supervisor,
                                                                       monkeypatch):
    """unlinked_fill.py (adversary round 11) unlinks its files and keeps their descriptors: no
    name for the walk to find, but blocks on the disk. Here 3 x 1 MiB against a limit of 2 MiB.
    (Its mapped mode, and every other way of holding, are counted by the same held_bytes:
    test_held_bytes_finds_deleted_files_by_descriptor_and_mapping.)"""
    mode = "open"
    from evolve.evaluation import scratch as module

    monkeypatch.setattr(module, "SCRATCH_LIMIT", 2 * 2 ** 20)
    source = (ADVERSARIAL / "unlinked_fill.py").read_text()
    for old, new in (('MODE = "open"', f'MODE = "{mode}"'), ("SIZE = 4 * 2 ** 30 - 4096", "SIZE = 2 ** 20"),
                     ("FLAT = 190_000", "FLAT = 0")):
        assert old in source
        source = source.replace(old, new)
    r = disk_supervisor.evaluate(source)
    assert r.status is Status.CRASH and "in scratch" in r.reason, r.summary()
    assert "wrote more than 2 MiB (deleted files still held included)" in r.reason, r.reason
    assert not leftover_processes(disk_supervisor.scratch_root)


@pytest.mark.parametrize("name, old, new", [
    # a helper whose main thread exited alone: /proc/PID/fd lists nothing, its thread holds them
    ("zombie_leader", "COUNT, SIZE = 3, 4 * 2 ** 30 - 4096", "COUNT, SIZE = 3, 64 * 2 ** 20"),
    # stdout and stderr unlinked and filled through fds 1 and 2 on the way out, after the last
    # check of a live tree: counted once more when the tree is dead
    ("log_hide", "SIZE = 4 * 2 ** 30 - 4096", "SIZE = 128 * 2 ** 20"),
    # deleted programs held by the processes running them: no descriptor, no mapping (x86_64)
    pytest.param("exe_hold", "SIZE = 64 * 2 ** 20", "SIZE = 64 * 2 ** 20", marks=pytest.mark.skipif(
        os.uname().machine != "x86_64", reason="the fixture runs an x86_64 program")),
])
def test_disk_hidden_from_the_checks_is_counted(disk_supervisor, monkeypatch, name, old, new):
    """Adversary rounds 12 and 13: ways to hold disk past the scratch limit (here 64 MiB; the
    files 3 x 64 or 2 x 128 MiB) out of the checks' sight, each an honest trainer otherwise."""
    from evolve.evaluation import scratch as module

    monkeypatch.setattr(module, "SCRATCH_LIMIT", 64 * 2 ** 20)
    source = (ADVERSARIAL / f"{name}.py").read_text()
    assert old in source
    r = disk_supervisor.evaluate(source.replace(old, new))
    assert r.status is Status.CRASH and "in scratch" in r.reason, r.summary()
    assert not leftover_processes(disk_supervisor.scratch_root)


def test_held_bytes_finds_deleted_files_by_descriptor_and_mapping(tmp_path):
    """scratch.held_bytes on a real process: a deleted file held open, another mapped with no
    descriptor left anywhere, each counted once at its allocated size; a named file and a memfd
    are not counted (the walk and the memory cgroup see those)."""
    import subprocess
    import sys

    from evolve.evaluation.scratch import held_bytes

    child = subprocess.Popen([sys.executable, "-c", f"""
import ctypes, os, sys, time
os.chdir({str(tmp_path)!r})
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
keep = []
for name, mapped in (("a", False), ("b", True)):
    fd = os.open(name, os.O_CREAT | os.O_RDWR, 0o600)
    os.posix_fallocate(fd, 0, 2 ** 20)
    os.unlink(name)
    if mapped:       # by libc, not Python's mmap (which keeps a copy of the descriptor)
        keep.append(libc.mmap(None, 4096, 1, 1, fd, 0))     # PROT_READ, MAP_SHARED
        os.close(fd)
    else:
        keep.append(fd)
named = os.open("named", os.O_CREAT | os.O_RDWR, 0o600)
os.posix_fallocate(named, 0, 2 ** 20)
mem = os.memfd_create("m")
os.ftruncate(mem, 2 ** 20)
print("ready", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        device = os.stat(tmp_path).st_dev
        assert held_bytes([child.pid, child.pid], device) == 2 * 2 ** 20
        assert held_bytes([child.pid], device + 1) == 0          # another filesystem's
        assert held_bytes([2 ** 22 + 7], device) == 0           # no such process
    finally:
        child.kill()
        child.wait()


def test_the_walk_leaves_no_access_time_behind(tmp_path):
    """Adversary round 12 timed its hiding to the supervisor's walk; a directory's access time
    would tell it when the walk listed it, so the walk opens directories with O_NOATIME (a
    relatime mount updates an access time older than the modification time on a listing)."""
    from evolve.evaluation.scratch import _dir_size

    d = tmp_path / "scratch"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_bytes(b"x" * 4096)
    for path in (d, d / "sub"):
        os.utime(path, (1_000_000, time.time()))          # accessed long before modified
    assert _dir_size(d) > 0
    assert os.stat(d).st_atime == 1_000_000 and os.stat(d / "sub").st_atime == 1_000_000


def test_disk_use_counts_blocks_of_directories(tmp_path):
    from evolve.evaluation.scratch import SCRATCH_LIMIT, _dir_size

    for i in range(50):
        (tmp_path / f"d{i}").mkdir()
    assert _dir_size(tmp_path) >= 50 * 512                 # sizes of files alone: 0
    assert _dir_size(tmp_path, max_entries=10) == SCRATCH_LIMIT + 1


def test_disk_use_is_measured_past_path_max_and_deep_nests_are_a_fault(tmp_path):
    import time

    from evolve.evaluation.scratch import MAX_DEPTH, SCRATCH_LIMIT, _dir_size

    fd = os.open(tmp_path, os.O_RDONLY)
    for _ in range(100):                            # 100 x 201 bytes: past PATH_MAX
        os.mkdir("n" * 200, dir_fd=fd)
        fd, old = os.open("n" * 200, os.O_RDONLY, dir_fd=fd), fd
        os.close(old)
    with open(os.open("payload", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "wb") as f:
        f.write(b"x" * 2 ** 20)
    t = time.process_time()
    assert 2 ** 20 <= _dir_size(tmp_path) < SCRATCH_LIMIT
    assert time.process_time() - t < 0.5            # ~2 ms: no entry costs its depth
    for _ in range(MAX_DEPTH - 100):
        os.mkdir("m", dir_fd=fd)
        fd, old = os.open("m", os.O_RDONLY, dir_fd=fd), fd
        os.close(old)
    os.close(fd)
    assert _dir_size(tmp_path) == SCRATCH_LIMIT + 1


def test_a_fault_of_the_supervisor_is_a_crash_result_not_an_exception(quick_supervisor, monkeypatch):
    from evolve.evaluation import scratch as module

    def broken(path, pids):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(module, "disk_used", broken)
    before = set(quick_supervisor.scratch_root.iterdir())
    r = run(quick_supervisor, "honest")
    assert r.status is Status.CRASH and "the supervisor failed: RecursionError" in r.reason
    assert set(quick_supervisor.scratch_root.iterdir()) <= before
    assert not leftover_processes(quick_supervisor.scratch_root)       # the genome's tree was killed


def test_a_scratch_directory_outside_tmp_stays_writable(prepared, autoevolve_home, monkeypatch):
    """The usual layout (~/.cache/autoevolve/scratch on the root filesystem, which the sandbox
    makes read-only around it): the genome can still write and export there."""
    import shutil
    import tempfile

    from evolve.evaluation.supervisor import Supervisor

    home = Path(tempfile.mkdtemp(prefix="autoevolve-home-", dir="/var/tmp"))
    try:
        cache = autoevolve_home / "import_seconds.json"      # measured once per session
        if cache.exists():
            shutil.copy(cache, home / "import_seconds.json")
        monkeypatch.setenv("AUTOEVOLVE_HOME", str(home))
        sup = Supervisor(small_task(), prepared)
        assert str(sup.scratch_root).startswith(str(home))
        r = sup.evaluate((ADVERSARIAL / "honest.py").read_text())
        assert r.status is Status.OK, r.summary()
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the fixture uses x86_64 syscall numbers")
def test_root_inside_the_sandbox_can_do_nothing_privileged(quick_supervisor, tmp_path):
    if "seccomp" not in quick_supervisor.sandbox_desc:
        pytest.skip("no seccomp/capability layer on this system")
    quick_supervisor.evaluate((ADVERSARIAL / "privileged_calls.py").read_text(), log_dir=tmp_path)
    line = (tmp_path / "stdout.txt").read_text().strip()
    assert line.startswith("CALLS "), line
    results = dict(item.split("=") for item in line.split()[1:])
    assert set(results) == {"keyring", "adjtimex", "hostname", "mknod", "kmsg", "vsock",
                            "unix_socket", "socketpair", "unshare_user", "mincore", "fadvise",
                            "shadow", "cgroup_procs", "setxattr", "utime", "chown",
                            "dgram_pair", "send_fds", "send_plain", "inotify", "fanotify",
                            "dnotify"}, results
    assert results.pop("socketpair") == "ok"          # pipes between a genome's own processes
    assert results.pop("send_plain") == "ok"          # bytes, not descriptors
    assert set(results.values()) == {"refused"}, results


@pytest.mark.parametrize("name, mode, words", [
    ("late_constants", None, "not in the weights sent at submit"),
    ("late_bias", "constant", "bytes of tensor constants"),
    ("late_bias", "literals", "float literals"),
    ("int_literals", None, "literal arguments hold"),
    ("cat_codebook", None, "literal arguments hold"),
    ("direct_edges", None, "after the weights arrived"),
    ("early_submit_claim", None, "after the weights arrived"),
])
def test_values_computed_after_the_snapshot_cannot_hide_in_the_graph(quick_supervisor, name,
                                                                     mode, words):
    source = (ADVERSARIAL / f"{name}.py").read_text()
    if mode:
        source = source.replace("@MODE@", mode)
    sup = quick_supervisor
    if words == "after the weights arrived":
        # These work 8-12 s after their weights; the rule is the same at any allowance, so the
        # test gives them 3 s instead of 10 (EXPORT_MIN_S) and waits 14 s less in all.
        sup = copy.copy(quick_supervisor)
        sup.export_allowed = 3.0
    r = sup.evaluate(source)
    assert r.status is Status.INVALID and r.val_bpb is None, r.summary()
    assert words in r.reason, r.reason


@pytest.mark.parametrize("mode", ["int64", "float64"])
def test_weights_packed_several_to_an_element_cannot_be_unpacked_in_the_graph(quick_supervisor,
                                                                             mode):
    """Adversary round 20 sent a 2-bit table 32 weights to an int64, decoded after the lookup by
    division with rounding and a remainder, and was charged an eighth of its table's cost by
    the throughput timing (4.5-6.3x its twin's recorded tokens/s); the same decoder on float64
    elements holding exact integers. Both are refused before the program runs."""
    source = (ADVERSARIAL / "lowbit_table.py").read_text().replace("@MODE@", mode)
    sup = copy.copy(quick_supervisor)       # packing 33.5 M weights takes ~1.3 s: 2.5 s budget,
    sup.task = dataclasses.replace(sup.task, budget_s=2.5)  # of which the genome trains 0.5
    r = sup.evaluate(source)
    assert r.status is Status.INVALID and r.val_bpb is None, r.summary()
    assert "computed from the weights" in r.reason, r.reason


SLOW_FIRST_STEP = """
import time
import torch
from evolve import harness

model = torch.nn.Embedding(harness.VOCAB_SIZE, harness.VOCAB_SIZE)
for step, (x, y) in enumerate(harness.train_batches(8)):
    if step == 0:
        time.sleep(harness.BUDGET_S + 1.5)      # a cold first step longer than the whole budget
harness.submit(model)
"""


LATE_SUBMIT = """
import time
import torch
from evolve import harness

model = torch.nn.Embedding(harness.VOCAB_SIZE, harness.VOCAB_SIZE)
for x, y in harness.train_batches(8):
    pass
time.sleep(0.25)                                # inside the allowance, after the budget
harness.submit(model)
"""


def test_time_between_the_budget_and_the_weights_is_charged_as_training(quick_supervisor):
    r = quick_supervisor.evaluate(LATE_SUBMIT)
    assert r.status is Status.OK, r.summary()
    assert r.training_seconds >= quick_supervisor.task.budget_s + 0.2, r.summary()


def test_a_first_step_longer_than_the_budget_is_charged_not_refused(prepared):
    # A cold start (its imports may still run when the clock starts): the first step may
    # finish after the budget, within the cold start-up allowance.
    from evolve.evaluation.supervisor import Supervisor

    cold = Supervisor(small_task(), prepared, memory_limit_bytes=3 * 2 ** 30, use_zygote=False)
    r = cold.evaluate(SLOW_FIRST_STEP)
    assert r.status is Status.OK, r.summary()
    assert r.training_seconds > cold.task.budget_s + 1.0, r.summary()


def test_a_forked_genome_s_first_steps_get_the_forked_allowance_only(supervisor):
    if not supervisor.use_zygote:
        pytest.skip("no zygote here (needs root namespaces)")
    r = run(supervisor, "first_steps_overrun")
    assert r.status is Status.INVALID and r.val_bpb is None, r.summary()
    assert "after the budget" in r.reason, r.reason


def test_a_first_step_is_allowed_what_imports_take_not_more(supervisor):
    assert supervisor.startup_allowance < 5.0           # the fixture trains 5 s past the budget
    r = run(supervisor, "first_batch_overtime")
    assert r.status is Status.INVALID and r.val_bpb is None, r.summary()
    assert "after the budget" in r.reason, r.reason


@pytest.mark.parametrize("name, words", [
    ("median_step", "after the budget"),
    ("packed_constants", "reinterprets bits"),
])
def test_training_after_the_budget_in_disguise_is_invalid(supervisor, name, words):
    r = run(supervisor, name)
    assert r.status is Status.INVALID and r.val_bpb is None, r.summary()
    assert words in r.reason, r.reason


SWAPPED_WEIGHTS = """
import torch
from evolve import harness

V = harness.VOCAB_SIZE
model = torch.nn.Embedding(V, V)
with torch.no_grad():
    model.weight.zero_()                        # uniform logits: what the snapshot carries
for _ in harness.train_batches(8):
    break
harness._send_weights(model)
with torch.no_grad():
    model.weight.copy_(torch.randn(V, V) * 20)  # what the exported program would hold
harness._send_weights = lambda m: None
harness.submit(model)
"""


def test_the_scored_weights_are_the_snapshot_not_the_exported_ones(quick_supervisor):
    r = quick_supervisor.evaluate(SWAPPED_WEIGHTS)
    assert r.status is Status.OK, r.summary()
    assert r.val_bpb == pytest.approx(uniform_bpb(quick_supervisor), rel=1e-4), r.summary()


def test_a_genome_with_mixed_dtypes_scores_under_the_tasks_autocast(prepared, quick_supervisor):
    """Issue 13: a genome trained under bf16 autocast with a bf16 output layer exports fine but
    runs only under autocast. A task that scores under autocast to bfloat16 (as the cuda task
    does) scores it, its probes included; without autocast, submit's run of the exported
    program on one eval-shaped batch ends it in seconds, as invalid, naming the problem."""
    from evolve.evaluation.supervisor import Supervisor

    source = (REPO / "tests" / "fixtures" / "genomes" / "mixed_dtype.py").read_text()
    bf16 = Supervisor(small_task(budget_s=1.0, autocast="bfloat16"), prepared,
                      memory_limit_bytes=3 * 2 ** 30)
    assert bf16.fingerprint != quick_supervisor.fingerprint
    r = bf16.evaluate(source)
    assert r.status is Status.OK and r.val_bpb is not None, r.summary()
    assert r.model_tokens_per_sec                         # the timed passes ran too
    r = quick_supervisor.evaluate(source)
    assert r.status is Status.INVALID, r.summary()
    assert "failed on an eval-shaped batch" in r.reason and "dtype" in r.reason, r.reason
    assert r.scoring_seconds is None


def test_a_cuda_genome_gets_expandable_segments_unless_the_user_chose():
    from evolve.evaluation.supervisor import device_env

    assert device_env("cpu", {}) == {}
    assert device_env("cuda", {}) == {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    assert device_env("cuda:1", {"PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:128"}) == {
        "PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:128"}


def test_a_thread_without_memory_is_passed_over_a_live_one_is_not():
    """held_bytes treats unreadable descriptors as hiding, except in a thread that has let go
    of its memory (exiting: the kernel makes its files root's, and a supervisor that is not
    root would read that as hiding, failing an honest genome on its way out)."""
    import subprocess
    import sys

    from evolve.evaluation.scratch import _let_go

    me = os.getpid()
    assert not _let_go(f"/proc/{me}/task/{me}")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:           # exited, not reaped: a zombie, no memory
        if os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
            break
        time.sleep(0.05)
    try:
        assert _let_go(f"/proc/{child.pid}/task/{child.pid}")
    finally:
        child.wait()
    assert _let_go(f"/proc/{child.pid}/task/{child.pid}")          # gone altogether


def test_held_bytes_counts_a_removed_directory_and_reads_each_descriptor_table_once(tmp_path,
                                                                                    monkeypatch):
    """Adversary round 14: a directory grown by long names, emptied, removed and held open
    keeps its blocks (dir_hold.py); 900 threads over one table of 4,000 descriptors made each
    count cost the supervisor 5.6 s when every thread's table was read (fd_fanout.py). Threads
    of a table are recognised with kcmp, and a count past MAX_HELD_STATS is a fault."""
    import threading

    from evolve.evaluation import scratch as module

    d = tmp_path / "grown"
    d.mkdir()
    for i in range(600):
        (d / (f"{i:05d}" + "x" * 200)).touch()
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for p in d.iterdir():
            p.unlink()
        d.rmdir()
        st = os.fstat(fd)
        assert st.st_nlink == 0 and st.st_blocks * 512 >= 64 * 1024      # blocks kept
        assert module.held_bytes([os.getpid()], st.st_dev) >= st.st_blocks * 512
        me = threading.get_native_id()
        seen = []
        done = threading.Event()
        t = threading.Thread(target=lambda: (seen.append(threading.get_native_id()), done.wait()))
        t.start()
        try:
            while not seen:
                time.sleep(0.01)
            if module._KCMP is not None and module._kcmp(me, me, module._KCMP_FILES) == 0:
                assert module._table_seen(seen[0], [me])                 # one table, two threads
            monkeypatch.setattr(module, "MAX_HELD_STATS", 3)
            assert module.held_bytes([os.getpid()], st.st_dev) == module.SCRATCH_LIMIT + 1
        finally:
            done.set()
            t.join()
    finally:
        os.close(fd)
