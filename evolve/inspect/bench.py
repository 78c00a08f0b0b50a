"""What `python -m evolve bench` prints and draws: strategies compared over their runs.

For each strategy over its rng seeds (the runs of evolve.search.bench), each run taken at the
compute cap: the median and range of the best *confirmed* val_bpb (a genome scored OK twice: one lucky draw is not a result), the
evaluations spent, and the compute each run needed to reach the hill-climbing median (NaN:
never); the pooled noise floor of all runs, which says how far apart two medians must be to
mean anything; and bench.png, the best confirmed val_bpb so far against compute (median and
range per strategy, evolve.inspect.figures.plot_bench).

It reads runs; it runs and changes nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd


def best_so_far(run) -> pd.DataFrame:
    """compute_s (cumulative evaluation seconds) and best (the lowest mean val_bpb among genomes
    scored OK at least twice so far), one row per evaluation in the order they finished."""
    ev = run.evals[run.evals.kind.isin(("eval", "confirm"))].sort_values("finished_at")
    took = ev.finished_at - ev.started_at
    if pd.api.types.is_timedelta64_dtype(took):        # load_run gives datetimes
        took = took.dt.total_seconds()
    spent, scores, rows, best = 0.0, {}, [], math.nan
    for e, secs in zip(ev.itertuples(), took):
        spent += max(0.0, float(secs))
        if e.status == "ok" and e.val_bpb == e.val_bpb:
            scores.setdefault(e.genome_id, []).append(float(e.val_bpb))
            if len(scores[e.genome_id]) >= 2:
                mean = sum(scores[e.genome_id]) / len(scores[e.genome_id])
                best = mean if best != best else min(best, mean)
        rows.append((spent, best))
    return pd.DataFrame(rows, columns=["compute_s", "best"])


def summarize(runs: dict[tuple[str, int], object],
              cap: float | None = None) -> tuple[pd.DataFrame, float | None]:
    """(one row per strategy: runs, median_best, min_best, max_best, evaluations (median),
    compute_to_hillclimb (median seconds to reach hill-climbing's median best), pooled noise),
    each run taken at `cap` seconds of compute: a run checks its cap only between generations,
    so it may have gone on past it, and what it found after does not count."""
    curves = {k: best_so_far(r) for k, r in runs.items()}
    if cap is not None:
        curves = {k: c[c.compute_s <= cap] for k, c in curves.items()}
    final = {k: (c.best.iloc[-1] if len(c) else math.nan) for k, c in curves.items()}
    hill = [b for (s, _), b in final.items() if s == "hillclimb" and b == b]
    target = float(np.median(hill)) if hill else math.nan
    rows = []
    for strategy in dict.fromkeys(s for s, _ in runs):
        keys = [k for k in runs if k[0] == strategy]
        best = [final[k] for k in keys if final[k] == final[k]]
        reach = []
        for k in keys:
            hit = curves[k][curves[k].best <= target] if target == target else curves[k][:0]
            reach.append(float(hit.compute_s.iloc[0]) if len(hit) else math.nan)
        n_evals = [len(curves[k]) for k in keys]
        rows.append({"strategy": strategy, "runs": len(keys),
                     "median_best": float(np.median(best)) if best else math.nan,
                     "min_best": min(best) if best else math.nan,
                     "max_best": max(best) if best else math.nan,
                     "evaluations": float(np.median(n_evals)),
                     "compute_to_hillclimb": (float(np.nanmedian(reach))
                                              if any(x == x for x in reach) else math.nan)})
    pooled = [r.noise_floor for r in runs.values() if r.noise_floor]
    noise = float(np.sqrt(np.mean(np.square(pooled)))) if pooled else None
    return pd.DataFrame(rows), noise


def format_table(table: pd.DataFrame, noise: float | None) -> list[str]:
    def f(x, spec):
        return "-" if x != x else format(x, spec)
    lines = [f"{'strategy':<13} {'runs':>4} {'median best':>11} {'range':>19} {'evals':>6} "
             f"{'s to hillclimb':>14}"]
    for r in table.itertuples():
        lines.append(f"{r.strategy:<13} {r.runs:>4} {f(r.median_best, '.5f'):>11} "
                     f"{f(r.min_best, '.5f') + '..' + f(r.max_best, '.5f'):>19} "
                     f"{f(r.evaluations, '.0f'):>6} {f(r.compute_to_hillclimb, '.0f'):>14}")
    lines.append("best: lowest mean val_bpb confirmed by a second evaluation; range over rng "
                 "seeds; s to hillclimb: evaluation seconds to reach hill-climbing's median best")
    lines.append(f"noise floor (pooled over the runs): {noise:.5f}" if noise else
                 "noise floor: unknown (no genome was evaluated twice)")
    return lines


def plot(runs: dict[tuple[str, int], object], path: Path) -> None:
    """OUT/bench.png: evolve.inspect.figures.plot_bench over the runs' best-so-far curves."""
    from evolve.inspect.figures import plot_bench

    plot_bench({k: best_so_far(r) for k, r in runs.items()}).savefig(path)
