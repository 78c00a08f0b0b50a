"""What python -m evolve bench prints and draws (evolve.inspect.bench): best-so-far at equal
compute, the summary table and the figure, on synthetic runs (a real bench takes tens of
minutes)."""

from __future__ import annotations

import math
import types

import pandas as pd
import pytest

from evolve.inspect import bench as compare
from tests.evolve.inspect.conftest import check_png


def _run(evals, noise=0.01):
    """A synthetic run: (genome, status, val_bpb, seconds) per evaluation, in finishing order."""
    t, rows = 0.0, []
    for g, status, bpb, secs in evals:
        rows.append(dict(genome_id=g, kind="eval", status=status, val_bpb=bpb, started_at=t,
                         finished_at=t + secs))
        t += secs
    return types.SimpleNamespace(evals=pd.DataFrame(rows), noise_floor=noise)


def test_best_so_far_counts_only_confirmed_genomes_against_compute():
    run = _run([("a", "ok", 2.0, 10), ("b", "ok", 1.5, 10), ("a", "ok", 2.2, 10),
                ("b", "crash", None, 5), ("b", "ok", 1.7, 10)])
    c = compare.best_so_far(run)
    assert list(c.compute_s) == [10, 20, 30, 35, 45]
    assert math.isnan(c.best[1]) and c.best[2] == pytest.approx(2.1) and c.best[4] == pytest.approx(1.6)


def test_the_summary_and_the_figure(tmp_path):
    runs = {("hillclimb", 0): _run([("h", "ok", 2.0, 10), ("h", "ok", 2.0, 10)]),
            ("hillclimb", 1): _run([("h", "ok", 1.9, 10), ("h", "ok", 1.9, 10)], noise=0.02),
            ("evolve", 0): _run([("e", "ok", 1.8, 5), ("e", "ok", 1.8, 5), ("x", "oom", None, 1)]),
            ("evolve", 1): _run([("e", "ok", 2.5, 5), ("e", "ok", 2.5, 5)])}
    table, noise = compare.summarize(runs)
    row = table.set_index("strategy")
    assert row.loc["hillclimb", "median_best"] == pytest.approx(1.95)
    assert row.loc["evolve", "min_best"] == 1.8 and row.loc["evolve", "max_best"] == 2.5
    assert row.loc["evolve", "evaluations"] == 2.5
    assert row.loc["evolve", "compute_to_hillclimb"] == 10        # one run got there at 10 s
    assert noise == pytest.approx(math.sqrt((0.01 ** 2 * 3 + 0.02 ** 2) / 4))
    text = "\n".join(compare.format_table(table, noise))
    assert "hillclimb" in text and "1.95000" in text and "noise floor" in text
    compare.plot(runs, tmp_path / "bench.png")
    check_png(tmp_path / "bench.png")


def test_real_runs_and_the_compute_cap(small_run_dir):
    """load_run gives datetimes; each run is taken at the cap (it checks it between generations
    only, so it may have gone on)."""
    from evolve.inspect.run import load_run

    run = load_run(small_run_dir)
    c = compare.best_so_far(run)
    assert len(c) == int(run.evals.kind.isin(("eval", "confirm")).sum()) > 0
    assert (c.compute_s.diff().dropna() >= 0).all() and c.compute_s.iloc[-1] > 0
    runs = {("evolve", 0): run, ("hillclimb", 0): run}
    whole, _ = compare.summarize(runs)
    cut, _ = compare.summarize(runs, cap=float(c.compute_s.iloc[0]))
    assert (cut.evaluations == 1).all() and (whole.evaluations == len(c)).all()
