"""What pruning would have done to a finished run: `python -m evolve prune-report RUN`.

The run's evaluations are replayed in the order they finished, and each is judged by the
pruning rule (evolve.search.pruning) at every checkpoint, against the curves of its parent and
of the best genome known when it started; nothing is killed, so this is pruning in shadow
mode, from the archive alone. The report gives, for the checkpoints:

- the rank correlation (Spearman) between the loss near the checkpoint and the final val_bpb
  over the run's scored evaluations: how much the early curve says about the end;
- the share of training time pruning would have saved (1 - checkpoint, per pruned run);
- the false kills: pruned evaluations whose genome still beat its parent by more than the
  noise floor, or is on the Pareto front; and their rate among the pruned.

It reads a run and prints; it changes nothing.
"""

from __future__ import annotations

import math

import pandas as pd

from evolve.search.pruning import (CHECKPOINTS, MARGIN, MIN_RUNS, credible, end_ratio,
                                   first_prune, loss_at, median_curve)


def curves_by_eval(run) -> dict[int, list[tuple[float, float]]]:
    """eval_id -> [(progress, loss), ...] in the order the losses arrived."""
    curves: dict[int, list[tuple[float, float]]] = {}
    for row in run.curves.itertuples():
        curves.setdefault(int(row.eval_id), []).append((float(row.progress), float(row.loss)))
    return curves


def shadow(run, checkpoints=CHECKPOINTS, margin: float = MARGIN) -> pd.DataFrame:
    """One row per first evaluation of a genome (kind eval), in the order it started: eval_id,
    genome_id, parent_id, status, val_bpb, training_seconds, pruned_at (the first checkpoint
    that would have stopped it, or NaN), loss and bar there, and the references used."""
    curves = curves_by_eval(run)
    evals = run.evals[run.evals.kind == "eval"].sort_values("started_at")
    parents = {g: (p[0] if len(p) else None) for g, p in zip(run.df.genome_id, run.df.parent_ids)}
    done = run.evals[(run.evals.status == "ok") & run.evals.kind.isin(("eval", "confirm"))]
    ratios = sorted(r for r in (end_ratio(curves.get(int(i), []), b)
                                for i, b in zip(done.eval_id, done.val_bpb)) if r is not None)
    typical = ratios[len(ratios) // 2] if len(ratios) >= 3 else None
    val = dict(zip(done.eval_id.astype(int), done.val_bpb))
    rows = []
    for e in evals.itertuples():
        before = done[done.finished_at <= e.started_at]
        refs = []
        parent = parents.get(e.genome_id)
        if parent is not None:
            refs += list(before[before.genome_id == parent].eval_id)
        if len(before):
            best = before.groupby("genome_id").val_bpb.mean().idxmin()
            refs += list(before[before.genome_id == best].eval_id)
        ref_curves = [curves[i] for i in dict.fromkeys(refs)
                      if i in curves and credible(curves[i], val.get(i), typical)]
        population = [curves[i] for i in before.eval_id
                      if i in curves and credible(curves[i], val.get(i), typical)]
        if len(population) < MIN_RUNS:
            ref_curves = []                      # too few credible runs to judge by
        elif ref_curves:
            ref_curves.append(median_curve(population, checkpoints))
        d = first_prune(curves.get(int(e.eval_id), []), ref_curves, checkpoints, margin)
        rows.append({"eval_id": int(e.eval_id), "genome_id": e.genome_id, "parent_id": parent,
                     "status": e.status, "val_bpb": e.val_bpb,
                     "training_seconds": e.training_seconds,
                     "pruned_at": d.checkpoint if d else math.nan,
                     "loss": d.loss if d else math.nan, "bar": d.bar if d else math.nan,
                     "references": len(ref_curves)})
    return pd.DataFrame(rows, columns=["eval_id", "genome_id", "parent_id", "status", "val_bpb",
                                       "training_seconds", "pruned_at", "loss", "bar",
                                       "references"])


def summary(run, table: pd.DataFrame, checkpoints=CHECKPOINTS) -> dict:
    """The figures of the report (see the module docstring), from `shadow(run)`."""
    curves = curves_by_eval(run)
    ok = table[table.status == "ok"]
    correlation = {}
    for c in checkpoints:
        pairs = [(loss_at(curves.get(i, []), c), b) for i, b in zip(ok.eval_id, ok.val_bpb)]
        pairs = [(x, b) for x, b in pairs if x is not None and b == b]
        correlation[c] = ((pd.Series([x for x, _ in pairs]).corr(pd.Series([b for _, b in pairs]),
                                                                  method="spearman"), len(pairs))
                          if len(pairs) >= 3 else (math.nan, len(pairs)))
    seconds = table.training_seconds.fillna(0)
    pruned = table[table.pruned_at.notna()]
    saved = float(((1 - pruned.pruned_at) * pruned.training_seconds.fillna(0)).sum())
    noise = run.noise_floor or 0.0
    means = run.df.set_index("genome_id").val_bpb
    front = set(run.pareto().genome_id)
    done = run.evals[(run.evals.status == "ok") & run.evals.kind.isin(("eval", "confirm"))]
    started = dict(zip(run.evals.eval_id, run.evals.started_at))

    def beat_all_before(eval_id, g) -> bool:
        before = done[done.finished_at <= started.get(eval_id, 0.0)]
        mine = means.get(g)
        return mine == mine and mine is not None and len(before) > 0 and \
            mine < before.val_bpb.min() - noise

    false = [g for e, g, p in zip(pruned.eval_id, pruned.genome_id, pruned.parent_id)
             if g in front or beat_all_before(e, g)
             or (p in means.index and means.get(g) == means.get(g)
                 and means.get(p) == means.get(p) and means[g] < means[p] - noise)]
    return {"evaluations": len(table), "pruned": len(pruned),
            "saved_share": saved / float(seconds.sum()) if seconds.sum() else 0.0,
            "false_kills": len(false),
            "false_kill_rate": len(false) / len(pruned) if len(pruned) else 0.0,
            "correlation": correlation, "noise_floor": noise}


def format_report(run, s: dict) -> list[str]:
    lines = [f"pruning in shadow over {run.run_dir}: {s['evaluations']} evaluations, "
             f"{s['pruned']} would have been stopped",
             f"training time saved: {100 * s['saved_share']:.1f} %",
             f"false kills: {s['false_kills']} of {s['pruned']} pruned "
             f"({100 * s['false_kill_rate']:.1f} %; a pruned genome that beat its parent by more "
             f"than the noise floor {s['noise_floor']:.4f}, or is on the front)"]
    for c, (rho, n) in s["correlation"].items():
        shown = "n/a" if rho != rho else f"{rho:+.2f}"
        lines.append(f"loss at {100 * c:.0f} % vs final val_bpb: Spearman {shown} (n={n})")
    return lines
