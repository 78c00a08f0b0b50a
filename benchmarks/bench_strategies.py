"""evolve vs hillclimb vs random at the same number of evaluations, on the CPU task.

    python benchmarks/bench_strategies.py [--population 4] [--generations 3] [--budget 20]
                                          [--rng-seeds 0 1 2] [--seed FILE] [--out DIR]

Runs `python -m evolve` once per (strategy, rng seed) into OUT/<strategy>-<seed>, then prints a
table of the best confirmed val_bpb of each run, the mean per strategy, and the number of
evaluations each spent (equal by construction: population x (generations + 1) plus
confirmations). Long: about population x (generations + 1) x (budget + 15 s) per run on CPU.
Not part of CI.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--population", type=int, default=4)
    ap.add_argument("--generations", type=int, default=3)
    ap.add_argument("--budget", type=float, default=20.0)
    ap.add_argument("--rng-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seed", action="append", default=None, help="seed genome(s)")
    ap.add_argument("--out", default="runs/bench-strategies")
    args = ap.parse_args()
    from evolve import load_run

    rows = []
    for strategy in ("evolve", "hillclimb", "random"):
        for s in args.rng_seeds:
            run_dir = Path(args.out) / f"{strategy}-{s}"
            if not (run_dir / "archive.sqlite").exists():
                cmd = [sys.executable, "-m", "evolve", "--device", "cpu", "--strategy", strategy,
                       "--population", str(args.population), "--generations",
                       str(args.generations), "--budget", str(args.budget), "--rng-seed", str(s),
                       "--run-dir", str(run_dir)]
                for f in args.seed or []:
                    cmd += ["--seed", f]
                print(f"running {strategy} rng-seed {s} ...", file=sys.stderr, flush=True)
                subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
            run = load_run(run_dir)
            best = run.best() if run.df.val_bpb.notna().any() else None
            rows.append((strategy, s, best.val_bpb if best is not None else float("nan"),
                         int((run.evals.kind != "replay").sum())))
    print(f"{'strategy':<10} {'rng':>3} {'best_val_bpb':>12} {'evals':>6}")
    for strategy, s, bpb, n in rows:
        print(f"{strategy:<10} {s:>3} {bpb:>12.5f} {n:>6}")
    for strategy in ("evolve", "hillclimb", "random"):
        vals = [b for st, _, b, _ in rows if st == strategy and b == b]
        if vals:
            spread = statistics.stdev(vals) if len(vals) > 1 else 0.0
            print(f"mean {strategy:<10} {statistics.mean(vals):.5f} ± {spread:.5f} over {len(vals)} runs")


if __name__ == "__main__":
    main()
