"""evolve.inspect.tables on the shared real run (see conftest.py), on a run with only failures,
and operator_counts on hand-made frames (with and without LLM token counts)."""

from __future__ import annotations

import pandas as pd
import pytest

from evolve.inspect import tables
from evolve.inspect.run import load_run
from tests.evolve.inspect.conftest import only_failures_archive


def test_progress_marks_the_confirmed_best_and_failures(small_run_dir):
    run = load_run(small_run_dir)
    p = tables.progress_frame(run)
    scored = run.evals[run.evals.kind.isin(["eval", "confirm"])]
    assert list(p.eval_id) == sorted(scored.eval_id) and list(p["index"]) == list(range(len(p)))
    assert (p.status == "crash").sum() == (scored.status == "crash").sum() >= 1
    assert p.val_bpb[p.status != "ok"].isna().all()
    ok = p[p.val_bpb.notna()]
    assert (ok.running_best.diff().dropna() <= 0).all()             # never gets worse
    conf = p[p.confirmed_bpb.notna()]
    confirmed = run.df[run.df.n_ok >= 2]
    assert len(conf) >= 1 and set(conf.genome_id) <= set(confirmed.genome_id)
    assert conf.confirmed_bpb.iloc[-1] == pytest.approx(run.best().val_bpb)


def test_fronts_and_lineage_follow_the_run(small_run_dir):
    run = load_run(small_run_dir)
    fronts = tables.fronts_by_generation(run)
    last = fronts[fronts.generation == fronts.generation.max()]
    assert set(last.genome_id) == set(run.pareto().genome_id)
    assert list(tables.front_table(run).genome) == [g[:8] for g in run.pareto().genome_id]
    assert list(tables.front_history(run).generation) == [0, 1]
    lineage = tables.lineage_table(run)
    chain = run.lineage(run.best().genome_id)
    assert list(lineage.genome) == [g[:8] for g in chain.genome_id]
    assert lineage["diff"].iloc[0] == "" and all(d.startswith("--- a/")
                                                for d in lineage["diff"].iloc[1:])
    assert "noise_floor: " in tables.noise_text(run)


def test_tables_of_a_run_with_only_failures(tmp_path):
    archive = only_failures_archive(tmp_path / "run")
    run = load_run(tmp_path / "run")
    fails = tables.failure_table(run)
    assert set(fails.status) == {"crash", "timeout"}
    assert "ValueError: shapes" in set(fails.last_stderr_line)
    assert tables.lineage_table(run).empty and tables.front_table(run).empty
    archive.close()


def test_operator_stats_counts_and_llm_tokens(small_run_dir):
    run = load_run(small_run_dir)
    stats = tables.operator_stats(run).set_index("operator")
    kids = run.df[run.df.operator != "seed"]
    assert stats.loc["all", "children"] == len(kids) >= 1
    assert stats.loc["all", "valid"] == kids.val_bpb.notna().sum()
    assert "llm_tokens_per_improvement" not in stats.columns        # no LLM in this run
    df = pd.DataFrame({
        "genome_id": ["s", "a", "b", "c", "d"], "parent_ids": [(), ("s",), ("s",), ("a",), ("s",)],
        "operator": ["seed", "llm", "llm", "llm", "constant"],
        "status": ["ok", "ok", "ok", "crash", "pending"],
        "val_bpb": [2.0, 1.9, 2.1, float("nan"), float("nan")],
        "on_front": [False, True, False, False, False]})
    stats = tables.operator_counts(df).set_index("operator")       # a run from before LLMs
    llm = stats.loc["llm"]
    assert (llm.children, llm.evaluated, llm.valid, llm.improved, llm.on_front) == (3, 3, 2, 1, 1)
    assert llm.valid_rate == pytest.approx(2 / 3) and llm.improved_rate == pytest.approx(1 / 3)
    assert stats.loc["constant", "evaluated"] == 0 and pd.isna(stats.loc["constant", "valid_rate"])
    assert "llm_tokens" not in stats.columns
    df["prompt_tokens"] = [None, 100, 200, 300, None]
    df["completion_tokens"] = [None, 10, 20, 30, None]
    stats = tables.operator_counts(df).set_index("operator")
    assert stats.loc["llm", "llm_tokens"] == 660
    assert stats.loc["llm", "llm_tokens_per_improvement"] == 660
    assert pd.isna(stats.loc["constant", "llm_tokens_per_improvement"])
    # Calls that produced no child cost tokens too: counted when run.llm_calls is given.
    calls = pd.DataFrame({"operator": ["llm", "llm", "llm_rewrite"], "genome_id": ["a", None, None],
                          "prompt_tokens": [100, 500, 70], "completion_tokens": [10, 0, 7]})
    stats = tables.operator_counts(df, calls).set_index("operator")
    assert stats.loc["llm", "llm_tokens_per_improvement"] == 610
    rewrite = stats.loc["llm_rewrite"]                  # proposals that never became a child
    assert rewrite.children == 0 and rewrite.llm_tokens == 77
    assert stats.loc["all", "llm_tokens"] == 687


def test_a_run_says_what_it_is_and_its_times_are_datetimes(small_run_dir):
    import pandas as pd

    from evolve.inspect.run import load_run

    run = load_run(small_run_dir)
    text = repr(run)
    assert text.startswith(f"Run({str(small_run_dir)!r}: {len(run.df)} genomes, "
                           f"{len(run.evals)} evaluations, 2 generation(s) finished, best ")
    assert "(confirmed)" in text
    for column in (run.df.created_at, run.evals.started_at, run.evals.finished_at):
        assert isinstance(column.dtype, pd.DatetimeTZDtype) and str(column.dt.tz) == "UTC"
    assert (run.evals.finished_at >= run.evals.started_at).all()


def test_curves_are_long_format_on_the_budget(small_run_dir):
    from evolve.inspect.run import load_run

    run = load_run(small_run_dir)
    c = run.curves
    assert list(c.columns) == ["eval_id", "genome_id", "kind", "status", "progress", "loss"]
    reported = run.evals[run.evals.losses.map(lambda s: s not in (None, "", "[]"))]
    assert len(reported) and set(reported.eval_id) == set(c.eval_id)   # one per reported loss
    assert set(c.eval_id) <= set(run.evals.eval_id)
    assert c.progress.between(0, 1.5).all() and c.loss.notna().all()
    for _, one in c.groupby("eval_id"):                         # in the order they arrived
        assert one.progress.is_monotonic_increasing
