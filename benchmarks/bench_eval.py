"""Benchmark of the evaluation path: loader throughput and where one evaluation's time goes.

    python benchmarks/bench_eval.py [--device cpu|cuda] [--budget S] [--genome PATH] [--repeat N]
                                    [--cold]

Prints, as `key: value` lines:
- packer_tokens_per_sec: best-fit packing alone, one core, at the GPU row shape (2049 tokens,
  128 rows a batch) on the prepared stdlib data;
- harness_tokens_per_sec: what the supervisor can hand to a genome that only consumes batches
  (packing + socket + tensor conversion in the child): the loader's ceiling per evaluation;
then a table of where each of `--repeat` evaluations' time went (by the supervisor's progress
marks, one column an evaluation), with total / training, the figure the fixed overhead is judged
by. The genome is a batch consumer with a tiny model, or `--genome` (e.g. seeds/cpu.py, whose
import, export and scoring are those of a real model).
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
    ap.add_argument("--repeat", type=int, default=2, help="evaluations, one after the other")
    ap.add_argument("--genome", default=None, help="a genome file instead of the consumer")
    ap.add_argument("--cold", action="store_true",
                    help="start every process cold (no zygote), for comparison")
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

    sup = Supervisor(task, data, use_zygote=not args.cold)
    rows = 128 if task.seq_len >= 1024 else 256        # ~262 K / ~65 K tokens a batch
    source = open(args.genome).read() if args.genome else CONSUMER.format(rows=rows)
    runs = []
    for i in range(args.repeat):
        marks: dict[str, float] = {}

        def progress(phase: str, fraction: float) -> None:
            marks.setdefault(phase, time.perf_counter())

        t = time.perf_counter()
        r = sup.evaluate(source, progress=progress)
        runs.append((f"#{i + 1}", r, t, marks, time.perf_counter()))
    print(f"harness_status: {runs[-1][1].status.value}")
    last = runs[-1][1]
    handed = (last.tokens or 0) / last.training_seconds if last.training_seconds else 0.0
    print(f"harness_tokens_per_sec: {handed:.3e}  (handed out; the recorded figure is capped by "
          f"the scorer's timing of the model: {last.tokens_per_sec or 0:.3e})")
    print(f"harness_batch_tokens: {rows * task.seq_len}")
    print(f"eval_tokens: {task.eval_rows * task.seq_len}")
    print(f"device: {runs[-1][1].device}")
    print(f"processes: {'forked from the zygote' if sup.use_zygote else 'started cold'}")
    print()
    print(f"Where one evaluation's time goes (seconds; {args.genome or 'the consumer genome'}, "
          f"budget {task.budget_s:g} s):")
    print(f"{'phase':<44}" + "".join(f"{name:>8}" for name, *_ in runs))
    rows_out = []
    for label, first, last in (
            ("start: process, imports, to the clock", None, "training"),
            ("training (the budget)", "training", "submitting"),
            ("submit: last step, export, weights", "submitting", "scoring"),
            ("scoring: copy, load, forward, probes", "scoring", None)):
        cells = []
        for _, r, t, marks, ended in runs:
            a_ = t if first is None else marks.get(first)
            b_ = ended if last is None else marks.get(last)
            cells.append(b_ - a_ if a_ is not None and b_ is not None else float("nan"))
        rows_out.append((label, cells))
    allowance = sup.forked_allowance if sup.use_zygote else sup.startup_allowance
    rows_out.insert(1, ("  start-up allowance (clock starts by then)", [allowance for _ in runs]))
    rows_out.append(("  of which the scorer's own clock",
                     [r.scoring_seconds or float("nan") for _, r, *_ in runs]))
    walls = [ended - t for _, _, t, _, ended in runs]
    rows_out.append(("total: evaluate() called to its result", walls))
    rows_out.append(("training seconds (supervisor's clock)",
                     [r.training_seconds or float("nan") for _, r, *_ in runs]))
    for label, cells in rows_out:
        print(f"{label:<44}" + "".join(f"{c:8.2f}" for c in cells))
    ratios = [w / r.training_seconds if r.training_seconds else float("nan")
              for w, (_, r, *_) in zip(walls, runs)]
    print(f"{'total / training':<44}" + "".join(f"{x:8.3f}" for x in ratios))
    print(f"{'tokens handed out per training second':<44}"
          + "".join(f"{(r.tokens or 0) / r.training_seconds:8.1e}" if r.training_seconds else
                    f"{'nan':>8}" for _, r, *_ in runs))
    overhead = walls[-1] - (runs[-1][1].training_seconds or 0)
    print(f"\noverhead_seconds: {overhead:.2f}  (the last: total minus training; the first also"
          " starts the zygote where there is one)")


if __name__ == "__main__":
    main()
