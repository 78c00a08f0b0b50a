"""The one door into pandas: `from evolve import load_run; run = load_run(RUN_DIR)`.

    run.df          one row per genome: genome_id, parent_ids, operator, description,
                    generation, status, val_bpb (mean of OK evaluations), val_bpb_std, n_evals,
                    n_ok, tokens_per_sec, peak_memory_mb, num_params, on_front, reason
    run.evals       one row per evaluation (every EvalResult field, kind, worker, started_at
                    and finished_at as UTC datetimes; run.df's created_at too)
    run.pareto()    the non-dominated genomes (val_bpb down, tokens_per_sec up), best first
    run.best()      the row of the genome with the lowest mean val_bpb (confirmed, see best())
    run.lineage(id) rows from the seed down to the genome (first parent at each step)
    run.source(id)  the genome's source text
    run.noise_floor the pooled standard deviation of val_bpb over repeated evaluations
    run.curves      training-loss curves, long format: eval_id, genome_id, kind, status,
                    progress (0..1 of the budget, supervisor's clock), loss (the genome's claim)
    run.llm_calls   one row per language-model call: generation, genome_id (the child, if any),
                    operator, model, prompt_tokens, completion_tokens, latency_s, outcome, error
                    (run.df has llm_model, prompt_tokens, completion_tokens per genome)
    run.llm_proposals one row per proposal: generation, model, operator, genome_id (None when
                    the model gave no child)

The archive is opened read-only; loading a run that is still being written is safe.
Replays (kind = replay) appear in run.evals but never change run.df.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from evolve.search.archive import Archive
from evolve.search.noise import pooled_std

SCORED_KINDS = ("eval", "confirm")


def pareto_mask(bpb: np.ndarray, tps: np.ndarray) -> np.ndarray:
    """True for points no other point dominates (lower bpb and higher tps, one strictly)."""
    n = len(bpb)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        better = (bpb <= bpb[i]) & (tps >= tps[i]) & ((bpb < bpb[i]) | (tps > tps[i]))
        mask[i] = not better.any()
    return mask


def noise_floor(evals: pd.DataFrame) -> float | None:
    ok = evals[(evals.status == "ok") & evals.kind.isin(SCORED_KINDS)]
    return pooled_std(zip(ok.genome_id, ok.val_bpb))


class Run:
    def __init__(self, run_dir: Path, archive: Archive):
        self.run_dir = Path(run_dir)
        self._archive = archive
        self.meta = archive.meta()
        self.evals = pd.read_sql_query("SELECT * FROM evals ORDER BY eval_id", archive.conn)
        genomes = pd.read_sql_query(
            "SELECT genome_id, parent_ids, operator, description, generation, created_at "
            "FROM genomes ORDER BY rowid", archive.conn)
        genomes["parent_ids"] = genomes.parent_ids.map(lambda s: tuple(json.loads(s)))
        genomes["created_at"] = _when(genomes.created_at)
        for column in ("started_at", "finished_at"):
            self.evals[column] = _when(self.evals[column])
        self.llm_calls = (pd.read_sql_query("SELECT * FROM llm_calls ORDER BY call_id", archive.conn)
                          if archive.has_table("llm_calls") else pd.DataFrame(columns=[
                              "call_id", "generation", "genome_id", "operator", "model",
                              "prompt_tokens", "completion_tokens", "latency_s", "outcome",
                              "error", "started_at"]))
        self.llm_proposals = (
            pd.read_sql_query("SELECT * FROM llm_proposals ORDER BY proposal_id", archive.conn)
            if archive.has_table("llm_proposals") else pd.DataFrame(columns=[
                "proposal_id", "generation", "model", "operator", "genome_id"]))
        self.df = self._genome_table(genomes)
        self._add_llm_columns()
        self.noise_floor = noise_floor(self.evals) if len(self.evals) else None
        self.generations = archive.generations()

    def _genome_table(self, genomes: pd.DataFrame) -> pd.DataFrame:
        ev = self.evals[self.evals.kind.isin(SCORED_KINDS)] if len(self.evals) else self.evals
        rows = []
        for gid in genomes.genome_id:
            mine = ev[ev.genome_id == gid] if len(ev) else ev
            ok = mine[mine.status == "ok"] if len(mine) else mine
            last = mine.iloc[-1] if len(mine) else None
            rows.append({
                "genome_id": gid,
                "status": ("ok" if len(ok) else last.status) if last is not None else "pending",
                "val_bpb": ok.val_bpb.mean() if len(ok) else np.nan,
                "val_bpb_std": ok.val_bpb.std(ddof=1) if len(ok) >= 2 else np.nan,
                "n_evals": len(mine), "n_ok": len(ok),
                "tokens_per_sec": ok.tokens_per_sec.mean() if len(ok) else np.nan,
                "peak_memory_mb": ok.peak_memory_mb.max() if len(ok) else np.nan,
                "num_params": ok.num_params.iloc[-1] if len(ok) else np.nan,
                "reason": "" if len(ok) or last is None else last.reason,
            })
        df = genomes.merge(pd.DataFrame(rows, columns=[
            "genome_id", "status", "val_bpb", "val_bpb_std", "n_evals", "n_ok", "tokens_per_sec",
            "peak_memory_mb", "num_params", "reason"]), on="genome_id", how="left")
        scored = df.val_bpb.notna() & df.tokens_per_sec.notna()
        df["on_front"] = False
        if scored.any():
            idx = df.index[scored]
            df.loc[idx, "on_front"] = pareto_mask(df.loc[idx, "val_bpb"].to_numpy(),
                                                  df.loc[idx, "tokens_per_sec"].to_numpy())
        return df

    def _add_llm_columns(self) -> None:
        """Tokens of the proposal that made each genome (all its calls, retries included)."""
        calls = self.llm_calls[self.llm_calls.genome_id.notna()]
        if len(calls):
            by = calls.groupby("genome_id").agg(
                llm_model=("model", "last"), prompt_tokens=("prompt_tokens", "sum"),
                completion_tokens=("completion_tokens", "sum")).reset_index()
            self.df = self.df.merge(by, on="genome_id", how="left")
        else:
            self.df["llm_model"] = None
            self.df["prompt_tokens"] = np.nan
            self.df["completion_tokens"] = np.nan

    def __repr__(self) -> str:
        finished = sum(g["population"] is not None for g in self.generations)
        text = (f"Run({str(self.run_dir)!r}: {len(self.df)} genomes, {len(self.evals)} "
                f"evaluations, {finished} generation(s) finished")
        try:
            b = self.best()
        except ValueError:
            return text + ", no score yet)"
        confirmed = "confirmed" if b.n_ok >= 2 else "n=1, not confirmed"
        noise = f", noise {self.noise_floor:.4f}" if self.noise_floor else ""
        return text + f", best {b.genome_id[:8]} val_bpb {b.val_bpb:.4f} ({confirmed}){noise})"

    @property
    def curves(self) -> pd.DataFrame:
        """Training-loss curves in long format: one row per reported loss, with eval_id,
        genome_id, kind, status, progress (0..1 of the budget, by the supervisor's clock when
        the report arrived) and loss (the genome's own report: a claim, never a score)."""
        columns = ["eval_id", "genome_id", "kind", "status", "progress", "loss"]
        if "curve" not in self.evals:                     # an archive from before curves
            return pd.DataFrame(columns=columns)
        rows = [(e.eval_id, e.genome_id, e.kind, e.status, float(p), float(x))
                for e in self.evals.itertuples() for p, x in json.loads(e.curve or "[]")]
        return pd.DataFrame(rows, columns=columns)

    @property
    def operators(self) -> pd.DataFrame:
        """The operator bandit as the engine sees it now (evolve.search.bandit): per mutation
        operator (and crossover, and each language model as `llm:<model>`, where they are
        arms), its evaluated children, successes (beat the first parent by more than the
        noise floor, or on the front), failures (a model's proposals without a child
        included), success_rate and probability: how often one draw over all these arms
        would pick it, before a parent it does not apply to passes the draw on (uniform when
        the run draws without the bandit: --no-bandit or --operator-weights). The engine
        draws the language models' slots that way; the rest of a generation it draws among
        the other arms only, and with a fixed --llm-share the models among themselves."""
        from evolve.search import bandit

        by_id = self.df.set_index("genome_id")
        children = []
        for r in self.df.itertuples():
            operator = bandit.child_operator(r.operator, r.llm_model if isinstance(
                r.llm_model, str) else None)
            if bandit.arm_of(operator) is not None:
                children.append(bandit.Child(
                    operator, r.status != "pending", None if r.val_bpb != r.val_bpb else r.val_bpb,
                    _first_parent_bpb(by_id, r.parent_ids), bool(r.on_front)))
        failed = self.llm_proposals[self.llm_proposals.genome_id.isna()]
        children += [bandit.Child(bandit.llm_arm(m), True, None, None, False)
                     for m in failed.model]                  # no child: a failure (as the engine)
        config = self.meta.get("config", {})
        drawn = config.get("bandit", True) and not config.get("operator_weights")
        # crossover is an arm where the engine let the bandit decide its share (as
        # Engine.crossover_arm; runs from before it had a fixed 0.2)
        crossover = drawn and config.get("crossover_prob", 0.2) is None and \
            config.get("strategy", "evolve") == "evolve"
        # each language model the run was given is an arm where the bandit draws (as
        # Engine.llm_arms); runs from before recorded no models and fixed the LLM's share
        models = self.meta.get("llm_models", []) if drawn else []
        arms = bandit.credit(bandit.arm_names(crossover, models), children, self.noise_floor)
        p = bandit.probabilities(arms) if drawn else {a.name: 1 / len(arms) for a in arms}
        return pd.DataFrame([{"operator": a.name, "children": a.children,
                              "successes": a.successes, "failures": a.failures,
                              "success_rate": a.successes / a.children if a.children else np.nan,
                              "probability": p[a.name]} for a in arms])

    def pareto(self) -> pd.DataFrame:
        return self.df[self.df.on_front].sort_values("val_bpb").reset_index(drop=True)

    def best(self) -> pd.Series:
        """The lowest mean val_bpb. When the run confirms bests (the default), only genomes
        measured OK at least twice qualify, as in the engine; else any scored genome."""
        scored = self.df[self.df.val_bpb.notna()]
        if not len(scored):
            raise ValueError("no genome of this run has a score yet")
        if self.meta.get("config", {}).get("confirm", True) and (scored.n_ok >= 2).any():
            scored = scored[scored.n_ok >= 2]
        return scored.sort_values(["val_bpb", "tokens_per_sec"], ascending=[True, False]).iloc[0]

    def lineage(self, genome_id: str) -> pd.DataFrame:
        """From the seed (first row) to genome_id (last row), following first parents."""
        by_id = self.df.set_index("genome_id")
        chain = []
        gid = genome_id
        while gid is not None and gid in by_id.index and gid not in chain:
            chain.append(gid)
            parents = by_id.loc[gid, "parent_ids"]
            gid = parents[0] if parents else None
        if not chain:
            raise KeyError(f"no genome {genome_id!r} in this run")
        return by_id.loc[list(reversed(chain))].reset_index()

    def source(self, genome_id: str) -> str:
        g = self._archive.genome(genome_id)
        if g is None:
            raise KeyError(f"no genome {genome_id!r} in this run")
        return g.source

    def diffs(self, genome_id: str) -> tuple[str, ...]:
        g = self._archive.genome(genome_id)
        if g is None:
            raise KeyError(f"no genome {genome_id!r} in this run")
        return g.diffs


def _first_parent_bpb(by_id: pd.DataFrame, parents) -> float | None:
    if not len(parents) or parents[0] not in by_id.index:
        return None
    bpb = by_id.val_bpb.get(parents[0])
    return None if bpb != bpb else float(bpb)


def _when(seconds: pd.Series) -> pd.Series:
    """Epoch seconds (as the archive stores them) as timezone-aware UTC datetimes."""
    return pd.to_datetime(seconds, unit="s", utc=True)


def load_run(run_dir: str | Path) -> Run:
    """Open a run directory for analysis (read-only)."""
    return Run(Path(run_dir), Archive.open(Path(run_dir), readonly=True))
