"""How often an AST-mutated child of a seed still trains, exports and scores.

    python benchmarks/mutant_survival.py [--seed-file seeds/cpu.py] [--n 50] [--budget 5]

Makes N children of the seed with genome.operators.mutate (random operator, rng seeds 0..N-1),
evaluates each on the CPU task with a short budget, and prints one line per child and the OK
fraction overall and per operator. A child that is OK here trained and produced a finite score;
the budget is too short to say anything about quality. Not part of CI.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter, defaultdict
from pathlib import Path


def main() -> None:
    from genome.operators import mutate

    from evolve.data.prepare import ensure_prepared
    from evolve.evaluation.supervisor import Supervisor
    from evolve.evaluation.task import Task

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed-file", default=str(Path(__file__).parent.parent / "seeds" / "cpu.py"))
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--budget", type=float, default=5.0)
    args = ap.parse_args()
    task = Task.for_device("cpu", budget_s=args.budget, eval_tokens=2 ** 13)
    data = ensure_prepared(task)
    if isinstance(data, str):
        raise SystemExit(f"error: {data}")
    sup = Supervisor(task, data)
    parent = Path(args.seed_file).read_text()
    by_op: dict[str, Counter] = defaultdict(Counter)
    total = Counter()
    for i in range(args.n):
        name, res = mutate(parent, random.Random(i))
        if not res.applied:
            print(f"{i:3d} not applicable: {res.reason[:100]}")
            continue
        r = sup.evaluate(res.child)
        by_op[name][r.status.value] += 1
        total[r.status.value] += 1
        bpb = f"{r.val_bpb:.4f}" if r.ok else r.reason[:80]
        print(f"{i:3d} {name:<18} {r.status.value:<8} {bpb}  ({res.description})", flush=True)
    n = sum(total.values())
    print(f"ok_fraction: {total['ok'] / n:.3f} ({total['ok']}/{n}); statuses: {dict(total)}")
    for name, c in sorted(by_op.items()):
        print(f"  {name:<18} ok {c['ok']}/{sum(c.values())}  {dict(c)}")


if __name__ == "__main__":
    main()
