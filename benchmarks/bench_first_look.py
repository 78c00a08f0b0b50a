"""The timings the README quotes for a newcomer, measured by running the README's own commands.

    python benchmarks/bench_first_look.py [--tests] [--out DIR]

Runs, one after the other, as a new user would (each a fresh `python` process):
- `python -m evolve eval seeds/cpu.py --json`: one evaluation on the CPU task at its default
  budget; prints the wall time and the supervisor's split (startup, training, scoring);
- `python -m evolve --population 4 --generations 2 --budget 20`: the README's "first look" run,
  into a temporary run directory;
- with `--tests`, the README's test command (`python -m pytest -q`), which takes ~10 minutes.

It prints one Markdown table with the date, the machine's core count and its load average
before and after each command, so a figure measured on a busy machine shows as such. The
data must already be prepared (the first `python -m evolve` prepares it); preparation is not
timed here. Figures only: nothing asserts a speed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess, tuple[float, float]]:
    """Runs `cmd` from the repository root; returns (wall seconds, process, (load before, after))."""
    before = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    return wall, proc, (before, os.getloadavg()[0])


def _row(what: str, wall: float, load: tuple[float, float], detail: str) -> str:
    return f"| {what} | {wall:.1f} s ({wall / 60:.1f} min) | {load[0]:.2f} / {load[1]:.2f} | {detail} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", action="store_true", help="also time the README's test command")
    ap.add_argument("--out", default=None, help="keep the first-look run directory here")
    args = ap.parse_args()

    rows: list[str] = []
    wall, proc, load = _timed([sys.executable, "-m", "evolve", "eval", "seeds/cpu.py", "--json"])
    try:
        r = json.loads(proc.stdout)
        detail = (f"status {r['status']}, val_bpb {r['val_bpb']:.4f}, startup "
                  f"{r['startup_seconds']:.1f} s, training {r['training_seconds']:.1f} s, "
                  f"scoring {r['scoring_seconds']:.1f} s, supervisor total {r['total_seconds']:.1f} s")
    except (ValueError, KeyError, TypeError):
        detail = f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
    rows.append(_row("`python -m evolve eval seeds/cpu.py`", wall, load, detail))

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.out or os.path.join(tmp, "first-look")
        wall, proc, load = _timed([sys.executable, "-m", "evolve", "--population", "4",
                                   "--generations", "2", "--budget", "20", "--run-dir", run_dir])
        last = [ln for ln in proc.stderr.splitlines() if ln.startswith("gen ")][-1:]
        detail = f"exit {proc.returncode}; " + (last[0].split("  fail")[0] if last else "no summary")
        rows.append(_row("`python -m evolve --population 4 --generations 2 --budget 20`",
                         wall, load, detail))

    if args.tests:
        wall, proc, load = _timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"])
        tail = proc.stdout.strip().splitlines()[-1:] or ["no output"]
        rows.append(_row("`python -m pytest -q`", wall, load, tail[0]))

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"measured {now} on {os.cpu_count()} cores (load average: 1-minute, before / after)\n")
    print("| command | wall time | load | detail |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
