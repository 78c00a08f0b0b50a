"""The harness as a genome sees it, end to end through a real supervisor and child process.

Train and validation tokens come from disjoint ranges, so a single validation token in any
training batch would show in what the genome reports back through harness.log.
"""

from __future__ import annotations

import numpy as np
import pytest

from evolve.data.prepare import PreparedData
from evolve.evaluation.result import Status
from tests.conftest import small_task

REPORTER = '''
import torch
from evolve import harness

seen_max, rows_ok, batches = 0, True, 0
for x, y in harness.train_batches(4):
    seen_max = max(seen_max, int(x.max()), int(y.max()))
    rows_ok &= bool((x[:, 0] == harness.BOS_ID).all()) and x.dtype == torch.int64
    rows_ok &= tuple(x.shape) == (4, harness.SEQ_LEN) and bool((x[:, 1:] == y[:, :-1]).all())
    batches += 1
harness.log(0, seen_max)
harness.log(1, float(rows_ok))
harness.log(2, batches)
harness.log(3, harness.progress())
harness.submit(torch.nn.Embedding(harness.VOCAB_SIZE, harness.VOCAB_SIZE))
'''


@pytest.fixture(scope="module")
def disjoint_data(tmp_path_factory, autoevolve_home) -> PreparedData:
    rng = np.random.default_rng(0)

    def split(lo, hi, n_docs):
        parts = [np.concatenate([[0], rng.integers(lo, hi, rng.integers(5, 120))])
                 for _ in range(n_docs)]
        return np.concatenate(parts).astype(np.uint16)

    token_bytes = np.ones(512, dtype=np.int32)
    token_bytes[0] = 0
    return PreparedData(root=tmp_path_factory.mktemp("disjoint"),
                        meta={"bos_id": 0, "fingerprint": "disjoint"},
                        train=split(1, 200, 2000), val=split(200, 512, 200),
                        token_bytes=token_bytes)


def test_batches_come_from_train_only_and_stop_at_the_budget(disjoint_data):
    from evolve.evaluation.supervisor import Supervisor

    sup = Supervisor(small_task(budget_s=1.5), disjoint_data)
    assert sup.eval_rows[:, 1:].min() >= 200 or sup.eval_rows[:, 1:].min() == 0
    r = sup.evaluate(REPORTER)
    assert r.status is Status.OK, r.summary()
    report = dict(r.losses)
    assert 0 < report[0] < 200                       # no validation token was ever served
    assert report[1] == 1.0                          # BOS first, int64, shapes, shift by one
    assert report[2] >= 1 and r.tokens == report[2] * 4 * sup.task.seq_len
    assert report[3] == 1.0                          # the loop ended because the budget did
    # the budget, plus the time from its end to the weights' arrival (charged as training)
    assert 1.4 <= r.training_seconds <= 1.5 + 0.6


BREAK_EARLY = """
import torch
from evolve import harness

model = torch.nn.Sequential(torch.nn.Embedding(harness.VOCAB_SIZE, 32),
                            torch.nn.Linear(32, harness.VOCAB_SIZE))
for step, (x, y) in enumerate(harness.train_batches(4096)):
    if step == 2:
        break                 # the next 4096-row batch (~0.5 MB) is already on its way
harness.submit(model)
"""


def test_leaving_the_loop_early_with_a_large_batch_in_flight_still_submits(disjoint_data):
    """submit reads the batch in flight first: the supervisor, blocked sending it, would
    otherwise never read the weights (both ends stuck in sendall until the timeout)."""
    from evolve.evaluation.supervisor import Supervisor

    r = Supervisor(small_task(budget_s=2.0), disjoint_data).evaluate(BREAK_EARLY)
    assert r.status is Status.OK, r.summary()


def test_bad_batch_size_is_the_genomes_error(disjoint_data):
    from evolve.evaluation.supervisor import Supervisor

    sup = Supervisor(small_task(budget_s=1.0), disjoint_data)
    r = sup.evaluate("from evolve import harness\nfor b in harness.train_batches(0):\n    pass\n"
                     "harness.submit(None)\n")
    assert r.status is Status.CRASH and "batch_size must be" in r.reason


def test_running_a_genome_directly_says_how_to_evaluate_it(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    g = tmp_path / "g.py"
    g.write_text("from evolve import harness\nharness.submit(None)\n")
    p = subprocess.run([sys.executable, str(g)], capture_output=True, text=True, cwd=tmp_path,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 2 and "python -m evolve eval" in p.stderr
    assert "Traceback" not in p.stderr
