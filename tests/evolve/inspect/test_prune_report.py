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
    assert "pruning over" in out and "training time saved:" in out
    assert "false kills:" in out and "loss at 20 % vs final val_bpb: Spearman" in out


# A synthetic run for the shadow rule: (eval_id, genome_id, parent, started, finished, val_bpb,
# curve). HONEST falls as training does; LIAR trains the same but claims 0.5 for 70 % of its
# budget and its true losses after (tests/fixtures/adversarial: forged_curve.py's sibling).
HONEST = [(0.07, 7.6), (0.15, 6.9), (0.2, 6.6), (0.35, 6.3), (0.4, 6.2), (0.55, 6.1),
          (0.6, 6.05), (0.8, 5.95), (0.95, 5.9)]
LIAR = [(p, 0.5) for p in (0.07, 0.15, 0.2, 0.35, 0.4, 0.55, 0.6, 0.7)] + [(0.8, 5.95), (0.95, 5.9)]
HOPELESS = [(p, x + 2.0) for p, x in HONEST]


def synthetic_run(evals):
    import types

    import pandas as pd

    ev = pd.DataFrame([dict(eval_id=i, genome_id=g, kind="eval", status="ok", val_bpb=v,
                            started_at=s, finished_at=f, training_seconds=10.0)
                       for i, g, _, s, f, v, _ in evals])
    curves = pd.DataFrame([dict(eval_id=i, progress=p, loss=x) for i, *_, c in evals for p, x in c])
    df = pd.DataFrame([dict(genome_id=g, parent_ids=[p] if p else [], val_bpb=v)
                       for i, g, p, s, f, v, _ in evals])
    run = types.SimpleNamespace(evals=ev, curves=curves, df=df, run_dir="synthetic",
                                noise_floor=0.002, meta={})    # no live decisions: replayed
    run.pareto = lambda: df.nsmallest(1, "val_bpb")
    return run


def test_liars_that_finish_first_cannot_get_an_honest_genome_pruned():
    from evolve.inspect.prune_report import shadow, summary

    for evals in ([(1, "A", None, 0, 20, 2.96, LIAR), (2, "H", None, 21, 41, 2.95, HONEST),
                   (3, "H2", "H", 42, 62, 2.94, HONEST), (4, "H3", "H", 63, 83, 2.93, HONEST)],
                  [(1, "H0", None, 0, 20, 2.95, HONEST), (2, "A1", None, 21, 41, 2.97, LIAR),
                   (3, "A2", None, 42, 62, 2.90, LIAR), (4, "H", None, 63, 83, 2.92, HONEST),
                   (5, "H4", "H0", 84, 104, 2.94, HONEST)]):
        table = shadow(synthetic_run(evals))
        assert table.pruned_at.isna().all(), table
    # ... while a hopeless genome after three honest runs is still judged, and a pruned genome
    # that beat everything scored before it is counted as a false kill
    run = synthetic_run([(1, "H0", None, 0, 20, 2.95, HONEST), (2, "H1", None, 21, 41, 2.94, HONEST),
                         (3, "H2", None, 42, 62, 2.96, HONEST),
                         (4, "X", "H0", 63, 83, 2.80, HOPELESS)])
    table = shadow(run)
    assert list(table.pruned_at.fillna(-1)) == [-1, -1, -1, 0.2], table
    assert summary(run, table)["false_kills"] == 1
