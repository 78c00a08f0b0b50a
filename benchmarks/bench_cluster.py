"""Evaluations per hour on a LocalCluster of 1 and of 2 worker processes, on the CPU task.

    python benchmarks/bench_cluster.py [--evals 6] [--budget 10] [--workers 1,2]

Each configuration evaluates the same `--evals` genomes (seeds/cpu.py with a distinct comment,
so no two are the same genome) through DaskMap on `--cluster local:N`, every genome pinned to
one thread (OMP_NUM_THREADS=1), and prints evaluations per hour of wall time and the ratio to
the first configuration. On a machine with N cores, N one-thread workers should come close to
N times one; what is left is the shared overhead (the scorer's processes, imports, disk).
Figures only: nothing asserts a speed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    from evolve.data.prepare import PreparedData, ensure_prepared
    from evolve.evaluation.task import Task
    from evolve.search.cluster import DaskMap, connect

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evals", type=int, default=6)
    ap.add_argument("--budget", type=float, default=10.0, help="training seconds per genome")
    ap.add_argument("--workers", default="1,2", help="worker counts to compare")
    args = ap.parse_args()
    task = Task.for_device("cpu", budget_s=args.budget)
    data = ensure_prepared(task)
    if not isinstance(data, PreparedData):
        raise SystemExit(f"error: {data}")
    fingerprint = task.fingerprint(data.fingerprint)
    seed = (ROOT / "seeds" / "cpu.py").read_text()

    rows, first = [], None
    for n in [int(w) for w in args.workers.split(",")]:
        client, cluster = connect(f"local:{n}", task, local_kwargs={
            "env": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}})
        emap = DaskMap(client, task, fingerprint, cluster=cluster)
        try:
            list(emap.imap([("warm", seed + "\n# warm-up\n")]))     # workers load the data once
            jobs = [(f"g{i}", seed + f"\n# variant {n}.{i}\n") for i in range(args.evals)]
            t = time.perf_counter()
            done = list(emap.imap(jobs))
            wall = time.perf_counter() - t
        finally:
            emap.close()
        ok = [d.result for d in done if d.result.ok]
        per_hour = len(done) / wall * 3600
        first = first or per_hour
        rows.append((n, len(done), len(ok), wall, per_hour, per_hour / first,
                     statistics.median(r.val_bpb for r in ok) if ok else float("nan"),
                     statistics.median(r.tokens_per_sec for r in ok) if ok else float("nan")))
        print(f"local:{n}: {len(done)} evaluations in {wall:.1f} s", flush=True)

    print(f"\nbudget {args.budget:g} s, {args.evals} evaluations per configuration, "
          "one thread per genome\n")
    print("| workers | evaluations (ok) | wall s | evaluations / hour | ratio | median val_bpb "
          "| median tok/s |")
    print("|---|---|---|---|---|---|---|")
    for n, total, ok, wall, ph, ratio, bpb, tps in rows:
        print(f"| {n} | {total} ({ok}) | {wall:.1f} | {ph:.0f} | {ratio:.2f} | {bpb:.4f} | {tps:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
