"""`python -m evolve bench`: search strategies compared at equal compute on one task.

    python -m evolve bench [--strategies evolve hillclimb random evolve-plain] [--rng-seeds 0 1 2]
                           [--compute 150] [--budget 10] [--population 4] [--seed FILE ...]
                           [--out runs/bench]

Each (strategy, rng seed) is one ordinary run of `python -m evolve` in OUT/STRATEGY-SEED, stopped
by `--compute`: before a generation, once its evaluations took that many seconds of wall clock
in all. Equal compute, not an equal number of evaluations: a strategy whose genomes fail fast or
train fast gets more of them. A run already in OUT is resumed (to the same cap), so a killed
bench goes on where it stopped. The strategies:

- `evolve`: NSGA-II with the operator bandit and the tune operator (the defaults);
- `evolve-plain`: the ablation, NSGA-II drawing the mutations uniformly without `tune`;
- `hillclimb`: autoresearch's keep/discard loop; `random`: operators without selection.

Then it prints, per strategy over the seeds, the median and range of the best *confirmed*
val_bpb (a genome scored OK twice: one lucky draw is not a result), the evaluations spent, and
the compute each run needed to reach the hill-climbing median (NaN: never); the pooled noise
floor of all runs, which says how far apart two medians must be to mean anything; and writes
OUT/bench.png (best confirmed val_bpb so far against compute, median and range per strategy).

What it does not do: evaluate anything itself (the runs do, through the usual engine) or judge
significance beyond printing the noise floor.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

STRATEGIES = ("evolve", "evolve-plain", "hillclimb", "random")


def strategy_flags(strategy: str) -> list[str]:
    """The `python -m evolve` flags of a strategy."""
    from genome.operators import MUTATIONS

    if strategy == "evolve":
        return []
    if strategy == "evolve-plain":
        weights = ",".join(f"{n}=1" for n in MUTATIONS if n != "tune")
        return ["--no-bandit", "--operator-weights", weights]
    if strategy in ("hillclimb", "random"):
        return ["--strategy", strategy]
    raise ValueError(f"unknown strategy {strategy!r}: one of {', '.join(STRATEGIES)}")


def run_one(run_dir: Path, strategy: str, rng_seed: int, compute: float, budget: float,
            population: int, seeds: list[str], device: str, log=print) -> int:
    """Run (or resume) one (strategy, rng seed); returns its exit code."""
    if (run_dir / "archive.sqlite").exists():
        cmd = ["--resume", str(run_dir)]
    else:
        cmd = ["--device", device, "--budget", str(budget), "--population", str(population),
               "--generations", "100000", "--compute", str(compute), "--rng-seed", str(rng_seed),
               "--run-dir", str(run_dir), *strategy_flags(strategy)]
        for s in seeds:
            cmd += ["--seed", s]
    log(f"bench: {strategy} rng-seed {rng_seed} -> {run_dir}")
    return subprocess.run([sys.executable, "-m", "evolve", *cmd], stdout=subprocess.DEVNULL,
                          check=False).returncode


def best_so_far(run) -> pd.DataFrame:
    """compute_s (cumulative evaluation seconds) and best (the lowest mean val_bpb among genomes
    scored OK at least twice so far), one row per evaluation in the order they finished."""
    ev = run.evals[run.evals.kind.isin(("eval", "confirm"))].sort_values("finished_at")
    spent, scores, rows, best = 0.0, {}, [], math.nan
    for e in ev.itertuples():
        spent += max(0.0, e.finished_at - e.started_at)
        if e.status == "ok" and e.val_bpb == e.val_bpb:
            scores.setdefault(e.genome_id, []).append(float(e.val_bpb))
            if len(scores[e.genome_id]) >= 2:
                mean = sum(scores[e.genome_id]) / len(scores[e.genome_id])
                best = mean if best != best else min(best, mean)
        rows.append((spent, best))
    return pd.DataFrame(rows, columns=["compute_s", "best"])


def summarize(runs: dict[tuple[str, int], object]) -> tuple[pd.DataFrame, float | None]:
    """(one row per strategy: runs, median_best, min_best, max_best, evaluations (median),
    compute_to_hillclimb (median seconds to reach hill-climbing's median best), pooled noise)."""
    curves = {k: best_so_far(r) for k, r in runs.items()}
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
        n_evals = [int((runs[k].evals.kind.isin(("eval", "confirm"))).sum()) for k in keys]
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


def cmd_bench(args) -> int:
    from evolve.inspect.run import load_run

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [str(Path(s).resolve()) for s in args.seed or []]
    runs = {}
    for strategy in args.strategies:
        for rng_seed in args.rng_seeds:
            run_dir = out / f"{strategy}-{rng_seed}"
            code = run_one(run_dir, strategy, rng_seed, args.compute, args.budget,
                           args.population, seeds, args.device,
                           log=lambda m: print(m, file=sys.stderr, flush=True))
            if not (run_dir / "archive.sqlite").exists():
                print(f"error: the {strategy} run with rng seed {rng_seed} did not start (exit "
                      f"code {code}); run it alone to see why: python -m evolve "
                      f"{' '.join(strategy_flags(strategy))} --run-dir {run_dir}",
                      file=sys.stderr)
                return 1
            runs[(strategy, rng_seed)] = load_run(run_dir)
    table, noise = summarize(runs)
    for line in format_table(table, noise):
        print(line)
    plot(runs, out / "bench.png")
    print(f"wrote {out / 'bench.png'}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="compare search strategies at equal compute (runs them)")
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    p.add_argument("--rng-seeds", type=int, nargs="+", default=[0, 1, 2], metavar="N")
    p.add_argument("--compute", type=float, default=150.0, metavar="S",
                   help="evaluation seconds per run (150)")
    p.add_argument("--budget", type=float, default=10.0, metavar="S",
                   help="training seconds per genome (10)")
    p.add_argument("--population", type=int, default=4, help="genomes per generation (4)")
    p.add_argument("--seed", action="append", metavar="FILE",
                   help="seed genome(s) (default: the device's seeds)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", default="runs/bench", help="where the runs and bench.png go")
    p.set_defaults(func=cmd_bench)
