"""How far a genome can raise its recorded throughput by asking for batches it throws away.

    python benchmarks/bench_throughput.py [--device cpu|cuda] [--budget S] [--factor K]

Evaluates seeds/cpu.py (cpu) or seeds/baseline.py (cuda) as written, then a copy that asks for
K times the rows per step and trains on the first DEVICE_BATCH_SIZE of them (the same training,
step for step). Prints, for both, the tokens the harness handed out per training second, the
scorer's timing of the submitted model (model_tokens_per_sec), the recorded tokens_per_sec
and val_bpb, then the ratio of the two recorded throughputs: the inflation the cap leaves (1.0
would be none; without the cap it would be about K). Figures only: nothing here asserts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SEEDS = Path(__file__).resolve().parents[1] / "seeds"


def discarding(source: str, factor: int) -> str:
    """The seed, asking for `factor` times its rows per step and training on its own share."""
    loop = "for inputs, targets in harness.train_batches(DEVICE_BATCH_SIZE):"
    if loop not in source:
        raise SystemExit("the seed's training loop has changed; update this benchmark")
    return source.replace(loop, f"for inputs, targets in harness.train_batches(DEVICE_BATCH_SIZE * {factor}):\n"
                                "    inputs, targets = inputs[:DEVICE_BATCH_SIZE], targets[:DEVICE_BATCH_SIZE]")


def main() -> None:
    from evolve.data.prepare import ensure_prepared
    from evolve.evaluation.supervisor import Supervisor
    from evolve.evaluation.task import Task

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--budget", type=float, default=None, help="training seconds (task default)")
    ap.add_argument("--factor", type=int, default=16, help="rows asked for per row trained on")
    args = ap.parse_args()
    task = Task.for_device(args.device, **({"budget_s": args.budget} if args.budget else {}))
    data = ensure_prepared(task, progress=False)
    if isinstance(data, str):
        raise SystemExit(f"error: {data}")
    sup = Supervisor(task, data)
    seed = (SEEDS / ("cpu.py" if args.device == "cpu" else "baseline.py")).read_text()
    recorded = {}
    for name, source in (("honest", seed), (f"discard_x{args.factor}", discarding(seed, args.factor))):
        r = sup.evaluate(source)
        handed = r.tokens / r.training_seconds if r.tokens and r.training_seconds else None
        recorded[name] = r.tokens_per_sec
        fmt = lambda v: "-" if v is None else f"{v:,.0f}"  # noqa: E731
        print(f"{name}: status {r.status.value}  val_bpb {r.val_bpb}  handed {fmt(handed)} tok/s  "
              f"model {fmt(r.model_tokens_per_sec)} tok/s  recorded {fmt(r.tokens_per_sec)} tok/s"
              + (f"  ({r.reason})" if r.reason else ""), flush=True)
    a, b = recorded.values()
    if a and b:
        print(f"recorded_ratio: {b / a:.3f}  (discarding / honest)")


if __name__ == "__main__":
    main()
