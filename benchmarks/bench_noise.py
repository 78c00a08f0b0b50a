"""Benchmark of the noise floor: one genome scored again and again, on an idle machine and with
other load, so that the spread of its val_bpb and tokens/s shows what the machine decides.

    python benchmarks/bench_noise.py [--genome seeds/cpu.py] [--budget 20] [--evals 5]
                                     [--clock wall|cpu] [--busy 1] [--out results.jsonl]

Each evaluation is `python -m evolve eval GENOME --budget B --json` in a fresh process (so each
one starts its own supervisor, as a run's first evaluation would), run one after another: the
first `--evals` with the machine otherwise idle, the next `--evals` while `--busy` processes
spin at 100 % of a core each. Without `--clock` the command line's default clock is used (cpu
on CPU where it can be measured), which is also how this script measures a checkout from
before the clock existed.

Prints one line per evaluation and a table per condition: val_bpb min, max and spread (max -
min, the noise floor), tokens/s min and max, wall seconds per evaluation. Figures only: nothing
here asserts a value; run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

SPIN = "while True:\n    pass\n"


def evaluate(genome: str, budget: float, clock: str | None) -> dict:
    cmd = [sys.executable, "-m", "evolve", "eval", genome, "--budget", str(budget), "--json"]
    if clock:
        cmd += ["--clock", clock]
    t = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t
    try:
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        result = {"status": "error", "reason": (out.stderr.strip().splitlines() or ["?"])[-1]}
    keep = ("status", "val_bpb", "tokens_per_sec", "training_seconds", "total_seconds", "reason")
    return {**{k: result.get(k) for k in keep}, "wall": wall}


def summary(rows: list[dict]) -> str:
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return f"no evaluation ended ok ({', '.join(sorted({str(r['status']) for r in rows}))})"
    bpb = [r["val_bpb"] for r in ok]
    tps = [r["tokens_per_sec"] or 0.0 for r in ok]
    return (f"ok {len(ok)}/{len(rows)}  val_bpb {min(bpb):.3f}-{max(bpb):.3f} "
            f"(spread {max(bpb) - min(bpb):.3f})  tokens/s {min(tps):,.0f}-{max(tps):,.0f}  "
            f"wall/eval {statistics.median(r['wall'] for r in rows):.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genome", default="seeds/cpu.py")
    ap.add_argument("--budget", type=float, default=20.0)
    ap.add_argument("--evals", type=int, default=5)
    ap.add_argument("--clock", choices=("wall", "cpu"), default=None)
    ap.add_argument("--busy", type=int, default=1, help="spinning processes in the busy half")
    ap.add_argument("--out", default=None, help="also append each evaluation to this JSONL")
    args = ap.parse_args()
    table = {}
    for condition in ("idle", f"{args.busy} core(s) busy"):
        spinners = [] if condition == "idle" else [
            subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy)]
        rows = []
        try:
            for i in range(args.evals):
                row = evaluate(args.genome, args.budget, args.clock)
                rows.append(row)
                print(f"{condition:>14} {i + 1}/{args.evals}: {row['status']} "
                      f"val_bpb={row['val_bpb']} tokens/s={row['tokens_per_sec']} "
                      f"training_s={row['training_seconds']} wall={row['wall']:.0f} s",
                      flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps({"condition": condition, "clock": args.clock,
                                            "cwd": str(Path.cwd()), **row}) + "\n")
        finally:
            for p in spinners:
                p.kill()
                p.wait()
        table[condition] = summary(rows)
    print(f"\n{args.genome}, budget {args.budget:g} s, clock {args.clock or 'default'}:")
    for condition, line in table.items():
        print(f"  {condition:>14}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
