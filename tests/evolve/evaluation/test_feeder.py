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
