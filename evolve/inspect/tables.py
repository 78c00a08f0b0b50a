"""Tables and text of one run: the pandas side of the notebook and of `evolve report`'s page.

    from evolve import load_run
    from evolve.inspect import tables
    run = load_run("runs/20250101-120000-cpu")
    tables.lineage_table(run)       # a DataFrame; tables.noise_text(run) a string

Every function takes a loaded run (evolve.inspect.run.Run; operator_counts takes its run.df)
and returns a pandas DataFrame or a string, so notebooks/analysis.ipynb stays a thin list of
calls and all of it is tested as code. evolve.inspect.figures draws from these frames and
evolve.inspect.page lays them out in report.html.

What it does not do: draw, format HTML or write files; change the archive, or decide anything
(the engine does). It reads the run through evolve.inspect.run.load_run only.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from evolve.inspect.run import SCORED_KINDS, pareto_mask
from evolve.evaluation.result import finite_or_none as _num

LLM_TOKEN_COLUMNS = ("prompt_tokens", "completion_tokens")


def _best_id(run) -> str | None:
    try:
        return str(run.best().genome_id)
    except ValueError:
        return None


def progress_frame(run) -> pd.DataFrame:
    """One row per scored evaluation (kind eval or confirm) in the order they finished:
    index, genome_id, kind, generation, status, val_bpb, running_best (lowest single OK val_bpb
    so far), confirmed_bpb, set on the evaluation that confirmed a new best (the genome's second
    OK measurement, whose mean beat every earlier confirmed genome), and confirmed_best, the
    lowest confirmed mean so far: a single lucky measurement can sit a noise floor below it."""
    cols = ["index", "eval_id", "genome_id", "kind", "generation", "status", "val_bpb",
            "running_best", "confirmed_bpb", "confirmed_best", "description"]
    ev = run.evals
    if not len(ev):
        return pd.DataFrame(columns=cols)
    ev = ev[ev.kind.isin(SCORED_KINDS)].sort_values("eval_id").reset_index(drop=True)
    ok_bpb = ev.val_bpb.where(ev.status == "ok")
    seen: dict[str, list[float]] = {}
    confirmed, best = [], math.inf
    for gid, bpb in zip(ev.genome_id, ok_bpb):
        mark = np.nan
        if _num(bpb) is not None:
            xs = seen.setdefault(gid, [])
            xs.append(float(bpb))
            mean = sum(xs) / len(xs)
            if len(xs) == 2 and mean < best:       # first time this genome is confirmed
                best, mark = mean, mean
        confirmed.append(mark)
    desc = run.df.set_index("genome_id").description
    return pd.DataFrame({
        "index": np.arange(len(ev)), "eval_id": ev.eval_id, "genome_id": ev.genome_id,
        "kind": ev.kind, "generation": ev.generation, "status": ev.status,
        "val_bpb": ok_bpb, "running_best": ok_bpb.cummin(), "confirmed_bpb": confirmed,
        "confirmed_best": pd.Series(confirmed, dtype=float).ffill(),
        "description": [str(desc.get(g, "")) for g in ev.genome_id]}, columns=cols)


def fronts_by_generation(run) -> pd.DataFrame:
    """The Pareto front as it stood at the end of each generation: rows of generation,
    genome_id, val_bpb, tokens_per_sec (means over the OK evaluations recorded up to then)."""
    cols = ["generation", "genome_id", "val_bpb", "tokens_per_sec"]
    ev = run.evals
    if not len(ev):
        return pd.DataFrame(columns=cols)
    ok = ev[(ev.status == "ok") & ev.kind.isin(SCORED_KINDS) & ev.tokens_per_sec.notna()]
    out = []
    for g in sorted(set(ok.generation)):
        means = ok[ok.generation <= g].groupby("genome_id")[["val_bpb", "tokens_per_sec"]].mean()
        mask = pareto_mask(means.val_bpb.to_numpy(), means.tokens_per_sec.to_numpy())
        front = means[mask].reset_index()
        front.insert(0, "generation", int(g))
        out.append(front)
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def front_table(run) -> pd.DataFrame:
    """The current Pareto front, best val_bpb first, in the columns people compare."""
    front = run.pareto()
    return pd.DataFrame({
        "genome": front.genome_id.str[:8], "val_bpb": front.val_bpb,
        "val_bpb_std": front.val_bpb_std, "n_ok": front.n_ok,
        "tokens_per_sec": front.tokens_per_sec.round(0), "peak_memory_mb": front.peak_memory_mb,
        "generation": front.generation, "operator": front.operator,
        "description": front.description})


def front_history(run) -> pd.DataFrame:
    """Per finished generation, the engine's own summary: best, front size, hypervolume."""
    rows = []
    for g in run.generations:
        s = g.get("summary")
        if not s:
            continue
        rows.append({"generation": g["generation"], "best_bpb": s.get("best_bpb"),
                     "best": (s.get("best_id") or "")[:8], "front_size": s.get("front_size"),
                     "hypervolume": s.get("hypervolume"), "evals_total": s.get("evals_total"),
                     "population": len(g.get("population") or ()),
                     "failures": " ".join(f"{k}:{v}" for k, v in
                                          sorted((s.get("failures") or {}).items()))})
    return pd.DataFrame(rows, columns=["generation", "best_bpb", "best", "front_size",
                                       "hypervolume", "evals_total", "population", "failures"])


def lineage_table(run, genome_id: str | None = None) -> pd.DataFrame:
    """From the seed to `genome_id` (default: run.best()), one row per step with the change of
    val_bpb against the step before and the unified diff against the first parent (a crossover
    names its second parent in second_parent)."""
    cols = ["step", "genome", "operator", "description", "status", "val_bpb", "change",
            "tokens_per_sec", "n_ok", "second_parent", "diff"]
    genome_id = genome_id or _best_id(run)
    if genome_id is None:
        return pd.DataFrame(columns=cols)
    chain = run.lineage(genome_id)
    bpb = chain.val_bpb.astype(float)
    return pd.DataFrame({
        "step": np.arange(len(chain)), "genome": chain.genome_id.str[:8],
        "operator": chain.operator, "description": chain.description, "status": chain.status,
        "val_bpb": bpb, "change": bpb.diff(), "tokens_per_sec": chain.tokens_per_sec.round(0),
        "n_ok": chain.n_ok,
        "second_parent": [p[1][:8] if len(p) > 1 else "" for p in chain.parent_ids],
        "diff": [(run.diffs(g) or ("",))[0] if i else "" for i, g in enumerate(chain.genome_id)]},
        columns=cols)


def operator_stats(run) -> pd.DataFrame:
    """operator_counts of the run, with its LLM calls when it records them."""
    return operator_counts(run.df, getattr(run, "llm_calls", None))


def operator_counts(df: pd.DataFrame, llm_calls: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per operator (seeds left out) over run.df: children proposed, evaluated, valid (scored
    OK), improved (mean val_bpb below the first parent's), on the front, and the rates. When the
    run used a language model, also llm_tokens (prompt + completion) and
    llm_tokens_per_improvement: from `llm_calls` (run.llm_calls, which also counts the calls
    that produced no child) when given, else from run.df's prompt_tokens/completion_tokens
    columns; both are absent in runs made before LLM operators existed. The last row, `all`,
    sums every operator."""
    bpb = df.set_index("genome_id").val_bpb
    kids = df[df.operator != "seed"].copy()
    parent_bpb = kids.parent_ids.map(lambda p: bpb.get(p[0], np.nan) if len(p) else np.nan)
    kids["evaluated"] = kids.status != "pending"
    kids["valid"] = kids.val_bpb.notna()
    kids["improved"] = kids.val_bpb < parent_bpb.astype(float)      # NaN compares False
    agg = {"children": ("genome_id", "size"), "evaluated": ("evaluated", "sum"),
           "valid": ("valid", "sum"), "improved": ("improved", "sum"),
           "on_front": ("on_front", "sum")}
    rates = ["valid_rate", "improved_rate"]
    if not len(kids):
        return pd.DataFrame(columns=["operator", *agg, *rates])
    out = kids.groupby("operator").agg(**agg)
    tokens = _llm_tokens(df, llm_calls)
    if tokens is not None:
        out = out.join(tokens, how="outer").fillna(0)
    out.loc["all"] = out.sum()
    out = out.astype(int)
    out["valid_rate"] = out.valid / out.evaluated.where(out.evaluated > 0)
    out["improved_rate"] = out.improved / out.evaluated.where(out.evaluated > 0)
    if tokens is not None:
        out["llm_tokens_per_improvement"] = out.llm_tokens / out.improved.where(out.improved > 0)
    return out.rename_axis("operator").reset_index()


def _llm_tokens(df: pd.DataFrame, llm_calls: pd.DataFrame | None) -> pd.Series | None:
    """Prompt + completion tokens per operator, or None when the run has no LLM token counts."""
    if llm_calls is not None and len(llm_calls) and "operator" in llm_calls.columns:
        src = llm_calls
    elif all(c in df.columns for c in LLM_TOKEN_COLUMNS):
        src = df[df.operator != "seed"]
    else:
        return None
    if not all(c in src.columns for c in LLM_TOKEN_COLUMNS) or \
            not src[list(LLM_TOKEN_COLUMNS)].notna().any().any():
        return None
    total = sum(pd.to_numeric(src[c], errors="coerce").fillna(0) for c in LLM_TOKEN_COLUMNS)
    return total.groupby(src.operator).sum().rename("llm_tokens")


def failure_table(run) -> pd.DataFrame:
    """Failed evaluations (kind eval or confirm) grouped by status and reason, most frequent
    first, with the genomes and the last line the genome wrote to stderr. Pruned runs are not
    failures (prune-report tells of them)."""
    cols = ["status", "reason", "count", "genomes", "last_stderr_line"]
    ev = run.evals
    bad = ev[~ev.status.isin(("ok", "pruned")) & ev.kind.isin(SCORED_KINDS)] if len(ev) else ev
    if not len(bad):
        return pd.DataFrame(columns=cols)
    rows = []
    for (status, reason), grp in bad.groupby(["status", bad.reason.fillna("")], sort=False):
        tails = [t.strip().splitlines()[-1] for t in grp.stderr_tail.fillna("") if t.strip()]
        ids = list(dict.fromkeys(grp.genome_id.str[:8]))
        rows.append({"status": status, "reason": reason, "count": len(grp),
                     "genomes": " ".join(ids[:6]) + (" ..." if len(ids) > 6 else ""),
                     "last_stderr_line": tails[-1][:200] if tails else ""})
    return pd.DataFrame(rows, columns=cols).sort_values("count", ascending=False,
                                                        kind="stable").reset_index(drop=True)


def noise_text(run) -> str:
    """The noise floor in words, and how the best's gain over its seed compares with it."""
    ev = run.evals
    ok = ev[(ev.status == "ok") & ev.kind.isin(SCORED_KINDS)] if len(ev) else ev
    repeated = int((ok.groupby("genome_id").size() >= 2).sum()) if len(ok) else 0
    if run.noise_floor is None:
        text = "noise_floor: unknown (no genome was evaluated OK twice yet)"
    else:
        text = (f"noise_floor: {run.noise_floor:.6f} bits per byte (pooled standard deviation "
                f"of val_bpb over {repeated} genome(s) evaluated OK at least twice)")
    lineage = lineage_table(run)
    first, last = (_num(lineage.val_bpb.iloc[0]), _num(lineage.val_bpb.iloc[-1])) \
        if len(lineage) > 1 else (None, None)
    if first is not None and last is not None:
        gain = last - first
        text += f"\nbest vs its seed: {gain:+.6f} bits per byte"
        if run.noise_floor:
            text += f" ({abs(gain) / run.noise_floor:.1f} x the noise floor)"
    return text
