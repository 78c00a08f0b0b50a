"""Benchmark of the evaluation path: loader throughput and per-evaluation overhead.

    python benchmarks/bench_eval.py [--device cpu|cuda] [--budget S]

Prints, as `key: value` lines:
- packer_tokens_per_sec: best-fit packing alone, one core, at the GPU row shape (2049 tokens,
  128 rows a batch) on the prepared stdlib data;
- harness_tokens_per_sec: what the supervisor can hand to a genome that only consumes batches
  (packing + socket + tensor conversion in the child): the loader's ceiling per evaluation;
- startup_seconds: process start to the first training batch (Python, torch import, sandbox);
- scoring_seconds / scoring_wall_seconds: scoring a tiny model (the scorer's own clock, and the
  supervisor's from the start of scoring to the verdict, process starts included), i.e. what
  every evaluation pays on top of its training budget; overhead_seconds: all of it together.
autoresearch's baseline consumes ~1.7 M tokens/s on an H100; the loader must stay well above.
Figures only: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import time

CONSUMER = '''
import torch
from evolve import harness
for x, y in harness.train_batches({rows}):
    pass
harness.submit(torch.nn.Embedding(harness.VOCAB_SIZE, harness.VOCAB_SIZE).to(harness.DEVICE))
'''


def main() -> None:
    from evolve.data.loader import BestFitPacker
    from evolve.data.prepare import ensure_prepared
    from evolve.evaluation.supervisor import Supervisor
    from evolve.evaluation.task import Task

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None)
    ap.add_argument("--budget", type=float, default=10.0, help="seconds of the consumer genome")
    args = ap.parse_args()
    task = Task.for_device(args.device, budget_s=args.budget)
    data = ensure_prepared(task)
    if isinstance(data, str):
        raise SystemExit(f"error: {data}")

    packer = BestFitPacker(data.train, data.bos_id, row_len=2049)
    packer.rows(128)                                   # warm the buffer
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < 3.0:
        n += packer.rows(128).size
    print(f"packer_tokens_per_sec: {n / (time.perf_counter() - t):.3e}")

    sup = Supervisor(task, data)
    rows = 128 if task.seq_len >= 1024 else 256        # ~262 K / ~65 K tokens a batch
    marks: dict[str, float] = {}

    def progress(phase: str, fraction: float) -> None:
        marks.setdefault(phase, time.perf_counter())

    r = sup.evaluate(CONSUMER.format(rows=rows), progress=progress)
    ended = time.perf_counter()
    print(f"harness_status: {r.status.value}")
    print(f"harness_tokens_per_sec: {r.tokens_per_sec or 0:.3e}")
    print(f"harness_batch_tokens: {rows * task.seq_len}")
    print(f"startup_seconds: {r.startup_seconds or float('nan'):.2f}")
    print(f"scoring_seconds: {r.scoring_seconds or float('nan'):.2f}  (the scorer's own clock)")
    if "scoring" in marks:
        print(f"scoring_wall_seconds: {ended - marks['scoring']:.2f}  (scorer and model processes, "
              "start to verdict)")
    overhead = (r.total_seconds or 0) - (r.training_seconds or 0)
    print(f"overhead_seconds: {overhead:.2f}  (total minus training: startup, export, scoring)")
    print(f"eval_tokens: {task.eval_rows * task.seq_len}")
    print(f"device: {r.device}")


if __name__ == "__main__":
    main()
