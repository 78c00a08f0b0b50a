"""The overtime allowance: how late after the budget the weights may arrive (golden values)."""

from __future__ import annotations

import pytest

from evolve.evaluation.feeder import Feeder
from tests.conftest import small_task


def feeder(budget_s: float, served: list[float]) -> Feeder:
    f = Feeder(None, None, small_task(budget_s=budget_s))
    f.served = served
    return f


def test_allowance_is_one_percent_a_typical_step_the_copy_and_slack():
    # gaps 0.2, 0.3, 0.4 (the last gap, 5.0, is left out): median 0.3
    f = feeder(60.0, [0.0, 0.2, 0.5, 0.9, 5.9])
    assert f.overtime_allowance(500_000_000) == pytest.approx(0.6 + 0.3 + 0.5 + 0.5)


def test_a_chosen_long_median_step_and_a_padded_snapshot_buy_little():
    f = feeder(60.0, [0.0, 9.6, 19.2, 28.8, 38.4])          # every step 9.6 s long
    # the copy term: 1 % of the budget at most (padding 2 GB copied in 1 s bought ~1 s before)
    assert f.overtime_allowance(4 * 2 ** 30) == pytest.approx(0.6 + 1.2 + 0.6 + 0.5)
    assert feeder(10.0, [0.0, 1.0, 2.0]).overtime_allowance(2 * 10 ** 9) == pytest.approx(0.1 + 0.1 + 0.5)
    assert feeder(300.0, [0.0, 1.0, 2.0]).overtime_allowance(2 * 10 ** 9) == pytest.approx(3.0 + 2.0 + 0.5)


def test_fewer_than_three_gaps_give_no_step_term():
    assert feeder(10.0, [0.0, 1.0, 2.0]).overtime_allowance(0) == pytest.approx(0.1 + 0.5)


def test_a_long_run_of_reports_is_thinned_not_cut():
    """Adversary round 7 (from reading): a genome logging every step past 2,000 steps lost its
    later reports, so its curve had no checkpoints after them. Now every other one is dropped
    each time the store is full: 5,000 reports keep the whole span, in order."""
    import socket

    from evolve.evaluation import channel
    from evolve.evaluation.feeder import MAX_REPORTS

    ours, theirs = socket.socketpair()
    f = Feeder(ours, None, small_task(budget_s=10.0))
    f.start_clock(0.0)
    f.start()
    for step in range(5000):
        theirs.sendall(channel.LOSS.pack(b"L", step, 7.0 - step / 1000))
    theirs.close()
    f.join(timeout=30)
    assert not f.is_alive()
    steps = [s for s, _ in f.losses]
    assert MAX_REPORTS // 2 <= len(steps) <= MAX_REPORTS and len(f.curve) == len(steps)
    assert steps[0] == 0 and steps[-1] >= 4990 - 4 and steps == sorted(steps)
    assert len(set(b - a for a, b in zip(steps, steps[1:]))) == 1          # evenly spaced


def test_on_a_cpu_clock_batches_stop_when_the_tree_has_used_its_cpu_seconds():
    """The feeder serves by the budget clock: a CPU clock that has counted budget x threads
    CPU seconds ends the data at once, whatever the wall clock says; the harness is told a
    start from which its progress() shows the CPU budget used."""
    import socket
    import time

    from evolve.evaluation import channel
    from evolve.evaluation.clock import CpuClock

    used = [0.0]
    ours, theirs = socket.socketpair()
    f = Feeder(ours, _Rows(), small_task(budget_s=10.0), clock=CpuClock(lambda: used[0], 2))
    f.start()

    def ask() -> tuple[bytes, float]:
        theirs.sendall(channel.REQUEST.pack(b"B", 2))
        tag, rows, cols, t0 = channel.REPLY.unpack(channel.recv_exact(theirs, channel.REPLY.size))
        if tag == b"D":
            channel.recv_exact(theirs, rows * cols * 2)
        return tag, t0

    tag, t0 = ask()
    assert tag == b"D" and abs(t0 - time.monotonic()) < 1.0     # nothing used yet
    used[0] = 12.0                                   # 12 CPU s over 2 cores: 6 s of 10
    tag, t0 = ask()
    assert tag == b"D" and 5.0 < time.monotonic() - t0 < 7.0
    assert f.served[-1] == pytest.approx(6.0)       # on the budget clock, for the step term
    used[0] = 20.0                                   # 10 s of 10: spent
    assert ask()[0] == b"E"
    theirs.close()
    f.join(timeout=5)


class _Rows:
    """A packer stand-in: zero rows of the right shape."""

    def rows(self, n):
        import numpy as np

        return np.zeros((n, small_task().seq_len + 1), dtype=np.uint16)
