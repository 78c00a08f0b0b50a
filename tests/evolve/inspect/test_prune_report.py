"""python -m evolve prune-report over the session's small run: the shadow table and the figures."""

from __future__ import annotations

import math

from evolve.inspect.prune_report import shadow, summary
from evolve.inspect.run import load_run


def test_shadow_judges_every_first_evaluation_and_kills_nothing(small_run_dir):
    run = load_run(small_run_dir)
    table = shadow(run)
    evals = run.evals[run.evals.kind == "eval"]
    assert sorted(table.eval_id) == sorted(evals.eval_id)
    assert set(table.pruned_at.dropna()) <= {0.2, 0.4, 0.6}
    s = summary(run, table)
    assert s["evaluations"] == len(evals) and 0 <= s["pruned"] <= len(evals)
    assert 0.0 <= s["saved_share"] < 1.0 and 0.0 <= s["false_kill_rate"] <= 1.0
    assert set(s["correlation"]) == {0.2, 0.4, 0.6}
    for rho, n in s["correlation"].values():
        assert math.isnan(rho) or -1 <= rho <= 1


def test_the_command_prints_the_figures(small_run_dir, capsys):
    from evolve.cli import main

    try:
        main(["prune-report", str(small_run_dir)])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    assert "pruning in shadow over" in out and "training time saved:" in out
    assert "false kills:" in out and "loss at 20 % vs final val_bpb: Spearman" in out
