"""What pruning did, or would have done, to a run: `python -m evolve prune-report RUN`.

An evaluation judged by a live pruner (`--prune shadow` or `on`; its `pruner` column says which)
holds the pruner's own decision: `pruned_at`, the checkpoint where the supervisor's pruner said
stop, judged live against the references of its generation's start. Every other evaluation
(`--prune off`, before references existed, a run made before pruning was live, or the part of
a run resumed in another mode) is replayed from the archive: each first evaluation, in
the order it started, is judged by the same rule (evolve.search.pruning) at every checkpoint,
against what was scored before it started. The report gives, for the checkpoints:

- the rank correlation (Spearman) between the loss near the checkpoint and the final val_bpb
  over the run's scored evaluations: how much the early curve says about the end;
- the share of training time pruning saved (`on`) or would have saved (1 - checkpoint, per
  pruned run);
- the false kills: pruned evaluations whose genome still beat its parent by more than the
  noise floor, is on the Pareto front, or beat everything scored before it; and their rate
  among the pruned. A run stopped at its checkpoint has no final score, so in a `--prune on`
  run only the decisions made in shadow can be checked; the report says how many were not.

It reads a run and prints; it changes nothing.
"""

from __future__ import annotations

import math

import pandas as pd

from evolve.search.pruning import (CHECKPOINTS, MARGIN, first_prune, loss_at, references)


def curves_by_eval(run) -> dict[int, list[tuple[float, float]]]:
    """eval_id -> [(progress, loss), ...] in the order the losses arrived."""
    curves: dict[int, list[tuple[float, float]]] = {}
    for row in run.curves.itertuples():
        curves.setdefault(int(row.eval_id), []).append((float(row.progress), float(row.loss)))
    return curves


def recorded(run) -> bool:
    """Whether some of the run's evaluations carry a live pruner's decisions."""
    return _marks(run) or run.meta.get("config", {}).get("prune", "off") in ("shadow", "on")


def _judged_live(run, e) -> bool:
    """Whether this evaluation was judged by a live pruner (its decision is in the archive);
    else it is replayed. A run resumed in another mode mixes both."""
    mark = getattr(e, "pruner", None)
    if isinstance(mark, str) and mark:
        return True
    return not _marks(run) and run.meta.get("config", {}).get("prune", "off") in ("shadow", "on")


def _marks(run) -> bool:
    return "pruner" in run.evals and run.evals.pruner.fillna("").astype(str).str.len().gt(0).any()


def shadow(run, checkpoints=CHECKPOINTS, margin: float = MARGIN) -> pd.DataFrame:
    """One row per first evaluation of a genome (kind eval), in the order it started: eval_id,
    genome_id, parent_id, status, val_bpb, training_seconds, pruned_at (the first checkpoint
    that stopped it or would have, or NaN), loss and bar there, and the references used (NaN
    where the decision was recorded live)."""
    curves = curves_by_eval(run)
    evals = run.evals[run.evals.kind == "eval"].sort_values("started_at")
    parents = {g: (p[0] if len(p) else None) for g, p in zip(run.df.genome_id, run.df.parent_ids)}
    done = run.evals[(run.evals.status == "ok") & run.evals.kind.isin(("eval", "confirm"))]
    rows = []
    for e in evals.itertuples():
        curve = curves.get(int(e.eval_id), [])
        parent = parents.get(e.genome_id)
        if _judged_live(run, e):
            at = getattr(e, "pruned_at", math.nan)
            at = math.nan if at is None else float(at)
            bar = getattr(e, "prune_bar", math.nan)
            loss = loss_at(curve, at) if at == at else None
            row = dict(pruned_at=at, loss=math.nan if loss is None else loss,
                       bar=math.nan if bar is None else float(bar), references=math.nan)
        else:
            before = done[done.finished_at <= e.started_at]
            pairs = [(int(i), g, b) for i, g, b in zip(before.eval_id, before.genome_id,
                                                        before.val_bpb)]
            best = before.groupby("genome_id").val_bpb.mean().idxmin() if len(before) else None
            refs = references([(curves.get(i, []), b) for i, g, b in pairs if g == parent],
                              [(curves.get(i, []), b) for i, g, b in pairs if g == best],
                              [(curves.get(i, []), b) for i, _, b in pairs], checkpoints,
                              owners=[g for _, g, _ in pairs], named={parent, best} - {None})
            d = first_prune(curve, refs, checkpoints, margin)
            row = dict(pruned_at=d.checkpoint if d else math.nan,
                       loss=d.loss if d else math.nan, bar=d.bar if d else math.nan,
                       references=len(refs))
        rows.append({"eval_id": int(e.eval_id), "genome_id": e.genome_id, "parent_id": parent,
                     "status": e.status, "val_bpb": e.val_bpb,
                     "training_seconds": e.training_seconds, **row})
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
    # Training time of each run in full: a run stopped at checkpoint c trained c of it.
    stopped = table.status == "pruned"
    full = table.training_seconds.fillna(0).where(~stopped,
                                                  table.training_seconds.fillna(0) / table.pruned_at)
    pruned = table[table.pruned_at.notna()]
    saved = float(((1 - pruned.pruned_at) * full[pruned.index]).sum())
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

    judged = pruned[pruned.status != "pruned"]          # ran on: their end is known
    false = [g for e, g, p in zip(judged.eval_id, judged.genome_id, judged.parent_id)
             if g in front or beat_all_before(e, g)
             or (p in means.index and means.get(g) == means.get(g)
                 and means.get(p) == means.get(p) and means[g] < means[p] - noise)]
    return {"evaluations": len(table), "pruned": len(pruned), "stopped": int(stopped.sum()),
            "live": recorded(run),
            "saved_share": saved / float(full.sum()) if full.sum() else 0.0,
            "false_kills": len(false), "checked": len(judged),
            "false_kill_rate": len(false) / len(judged) if len(judged) else 0.0,
            "correlation": correlation, "noise_floor": noise}


def format_report(run, s: dict) -> list[str]:
    how = ("decisions recorded live" if s["live"] else
           "no live decisions in the run; replayed from its archive")
    lines = [f"pruning over {run.run_dir} ({how}): {s['evaluations']} first evaluations, "
             f"{s['pruned']} judged hopeless, {s['stopped']} of them stopped",
             f"training time saved: {100 * s['saved_share']:.1f} %"
             + ("" if s["stopped"] else " (would have been)"),
             f"false kills: {s['false_kills']} of {s['checked']} judged hopeless that ran to the "
             f"end ({100 * s['false_kill_rate']:.1f} %; one that beat its parent or everything "
             f"scored before it by more than the noise floor {s['noise_floor']:.4f}, or is on "
             "the front)"]
    if s["stopped"]:
        lines.append(f"  {s['stopped']} stopped runs have no final score to check; "
                     "measure the false-kill rate with --prune shadow")
    for c, (rho, n) in s["correlation"].items():
        shown = "n/a" if rho != rho else f"{rho:+.2f}"
        lines.append(f"loss at {100 * c:.0f} % vs final val_bpb: Spearman {shown} (n={n})")
    return lines
