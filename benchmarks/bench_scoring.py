"""Where the scorer's time goes, pass by pass: what the probes and the timing cost.

    python benchmarks/bench_scoring.py [--device cpu|cuda] [--genome FILE] [--train S]
                                       [--repeat N]

Trains `--genome` (default: the device's seed) for `--train` seconds through the real
supervisor, keeps a copy of the job it handed the scorer (the exported program, the weights
snapshot, the eval rows), then scores that job `--repeat` more times in this process with
evolve.evaluation.scorer.score, timing each request the scorer sends the model process. The
cost of scoring does not depend on how long the model trained, so a short `--train` measures
the scoring of the full task.

Prints one table: the load, the scored batches, each kind of probe, the timed training passes,
with passes and seconds (the best of the repeats, per row), then what the passes the trust
design requires (scored batches and probes) and the timing cost as a share of the task's
budget. The forward passes are pipelined (the model computes batch i+1 while the scorer scores
batch i), so a request is charged from the end of the one before to the end of its own.
Figures only: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
LABELS = (("load", "load: program checked, weights replaced"),
          ("score", "scored batches"),
          ("causal", "causality probes"),
          ("rows", "row probe (a batch permuted)"),
          ("state", "state probe (the first batch again)"),
          ("timing", "timed training passes (2 fwd+bwd, 1 fwd)"))


def keep_job(task, data, source: str, into: Path) -> dict:
    """Evaluate `source` with the real supervisor and copy the job directory it hands the
    scorer into `into`; returns the evaluation's result fields as a dict."""
    from evolve.evaluation import verdict
    from evolve.evaluation.supervisor import Supervisor

    handed = verdict.run_scorer

    def run_scorer(p, model, jobdir, **kw):
        record = handed(p, model, jobdir, **kw)
        shutil.copytree(jobdir, into, dirs_exist_ok=True)
        return record

    verdict.run_scorer = run_scorer
    try:
        r = Supervisor(task, data).evaluate(source)
    finally:
        verdict.run_scorer = handed
    if not (into / "job.json").exists():
        raise SystemExit(f"error: the evaluation ended {r.status.value} before scoring: {r.reason}")
    return {"status": r.status.value, "training_seconds": r.training_seconds,
            "scoring_seconds": r.scoring_seconds}


def timed_score(job: dict, threads: int) -> tuple[dict, dict[str, tuple[int, float]]]:
    """Score `job` in this process; returns the scorer's record and {kind: (passes, seconds)}."""
    from evolve.evaluation import probes, scorer

    plan: list = []
    marks: list[tuple[str, float]] = []
    host_cls, make_plan, speed = scorer.ModelProcess, probes.plan, scorer.model_tokens_per_sec
    receive, load = host_cls.receive, host_cls.load

    def kept_plan(*a, **kw):
        plan[:] = make_plan(*a, **kw)
        return plan                         # the scorer appends the state probe to this list

    def timed_receive(self, shape, slot):
        out = receive(self, shape, slot)
        marks.append(("pass", time.perf_counter()))
        return out

    def timed_load(self, *a):
        out = load(self, *a)
        marks.append(("load", time.perf_counter()))
        return out

    def timed_speed(host, x):
        out = speed(host, x)
        marks.append(("timing", time.perf_counter()))
        return out

    probes.plan, scorer.model_tokens_per_sec = kept_plan, timed_speed
    host_cls.receive, host_cls.load = timed_receive, timed_load
    try:
        host = scorer.ModelProcess(scorer.host_settings({**job, "threads": threads}))
        time.sleep(3.0)                     # as in an evaluation: it imports while the genome trains
        start = time.perf_counter()
        record = scorer.score(job, host)
    finally:
        probes.plan, scorer.model_tokens_per_sec = make_plan, speed
        host_cls.receive, host_cls.load = receive, load
    out: dict[str, tuple[int, float]] = {}
    before, passes = start, iter(plan)
    for what, at in marks:
        kind = next(passes).kind if what == "pass" else what
        n, s = out.get(kind, (0, 0.0))
        # model_tokens_per_sec runs three passes: forward + backward twice, forward once
        out[kind] = (n + {"load": 0, "timing": 3}.get(what, 1), s + at - before)
        before = at
    return record, out


def main() -> None:
    from evolve.data.prepare import ensure_prepared
    from evolve.evaluation.task import Task

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--genome", default=None, help="default: seeds/cpu.py (cpu), baseline.py (cuda)")
    ap.add_argument("--train", type=float, default=10.0, help="seconds of training before the job")
    ap.add_argument("--repeat", type=int, default=3, help="scorings of the kept job")
    args = ap.parse_args()
    full = Task.for_device(args.device)
    task = Task.for_device(args.device, budget_s=args.train)
    data = ensure_prepared(task)
    if isinstance(data, str):
        raise SystemExit(f"error: {data}")
    genome = Path(args.genome) if args.genome else SEEDS / ("cpu.py" if args.device == "cpu"
                                                          else "baseline.py")
    work = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    try:
        first = keep_job(task, data, genome.read_text(), work / "job")
        job = json.loads((work / "job" / "job.json").read_text())
        for key in ("program", "eval_rows", "token_bytes", "weights_header", "weights"):
            job[key] = str(work / "job" / Path(job[key]).name)
        job.update(dir=str(work / "run"), landlock=False)
        (work / "run").mkdir()
        best: dict[str, tuple[int, float]] = {}
        totals = []
        for _ in range(args.repeat):
            record, parts = timed_score(job, task.threads)
            if record.get("status") != "ok":
                raise SystemExit(f"error: scoring the kept job gave {record}")
            totals.append(sum(s for _, s in parts.values()))
            for kind, (n, s) in parts.items():
                if kind not in best or s < best[kind][1]:
                    best[kind] = (n, s)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"genome: {genome}  device: {task.device}  eval: {task.eval_rows} rows of {task.seq_len} "
          f"tokens, {task.eval_batch_size} a pass")
    print(f"the evaluation that made the job: {first['status']}, scoring "
          f"{first['scoring_seconds'] or float('nan'):.2f} s by the scorer's clock")
    print()
    print(f"{'part (best of ' + str(args.repeat) + ')':<46}{'passes':>7}{'seconds':>9}{'per pass':>10}")
    for kind, label in LABELS:
        n, s = best.get(kind, (0, float("nan")))
        per = f"{s / n:10.3f}" if n else f"{'':>10}"
        print(f"{label:<46}{n:7d}{s:9.2f}{per}")
    print(f"{'total (best whole scoring)':<46}{'':>7}{min(totals):9.2f}")
    required = sum(best.get(k, (0, 0.0))[1] for k in ("causal", "rows", "state"))
    timing = best.get("timing", (0, 0.0))[1]
    scored = best.get("score", (0, 0.0))[1]
    budget = full.budget_s
    print()
    print(f"probes: {required:.2f} s, {100 * required / budget:.1f} % of the task's {budget:g} s "
          f"budget; timing: {timing:.2f} s, {100 * timing / budget:.1f} %; the scored batches "
          f"themselves: {scored:.2f} s, {100 * scored / budget:.1f} %")


if __name__ == "__main__":
    main()
