"""The runs of `python -m evolve bench`: each search strategy as an ordinary run, capped by compute.

    run_one(run_dir, "evolve", rng_seed=0, compute=150, budget=10, population=4, seeds=[], ...)

Each (strategy, rng seed) is one run of `python -m evolve` in OUT/STRATEGY-SEED, stopped by
`--compute`: before a generation, once its evaluations took that many seconds of wall clock in
all. Equal compute, not an equal number of evaluations: a strategy whose genomes fail fast or
train fast gets more of them. A run already there is resumed (to the same cap), so a killed
bench goes on where it stopped. The strategies:

- `evolve`: NSGA-II with the operator bandit and the tune operator (the defaults);
- `evolve-plain`: the ablation, NSGA-II drawing the mutations uniformly without `tune`;
- `hillclimb`: autoresearch's keep/discard loop; `random`: operators without selection.

What it does not do: evaluate anything itself (the runs do, through the usual engine), or read
and compare the runs (evolve.inspect.bench does).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
