"""LLM proposals for the engine: the prompt context from the archive, made ahead of time.

    proposer = Proposer(client, program_text, concurrency=4, max_tokens=None)
    proposer.launch(generation, parent_pairs, meas, ctx, known_ids, models)   # returns at once
    ...                                                         # evaluations run meanwhile
    made, waited_s = proposer.collect(generation)               # [(Proposal, parents)], seconds

Why ahead of time: a proposal takes seconds to minutes, and the evaluation workers must not sit
idle while the model thinks. The engine launches the LLM offspring of generation g + 1 as soon as
generation g is planned, from parents of the current population, and collects them when it plans
g + 1. `waited_s` is the time the engine then still had to wait (the workers were idle): it is
shown in every generation summary.

`prompt_context(archive, stats, program)` builds what the model sees about the run: the Pareto
front (descriptions, diffs, measurements), the latest failures with their error tails (a pruned
child with its loss at each checkpoint beside its parent's), and every idea already tried with
its outcome. The same function serves `python -m evolve prompt`, so that
command prints exactly what the model would be sent. The archive is read only in the engine's
thread (SQLite connections are not shared); worker threads get immutable values.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait

from genome.prompt import Measurement, PromptContext, measurement_of

FRONT_SIZE = 4          # front genomes shown as inspiration
FAILURES_SHOWN = 5      # latest failed evaluations shown with their error tails


def prompt_context(archive, program: str) -> PromptContext:
    """The run as the model sees it, read from the archive (means over OK evaluations)."""
    rows = archive.conn.execute(
        "SELECT e.genome_id, e.status, e.val_bpb, e.tokens_per_sec, e.reason, e.stderr_tail, "
        "e.curve, g.description, g.parent_ids, g.diffs FROM evals e JOIN genomes g "
        "USING (genome_id) WHERE e.kind IN ('eval', 'confirm') ORDER BY e.eval_id").fetchall()
    means: dict[str, list[tuple[float, float]]] = {}
    first: dict[str, tuple] = {}
    last_failure: dict[str, str] = {}
    curves: dict[str, list] = {}          # genome -> the curve of its first OK evaluation
    failures = []
    for gid, status, bpb, tps, reason, tail, curve, desc, parents, diffs in rows:
        first.setdefault(gid, (desc, json.loads(parents), json.loads(diffs)))
        if status == "ok":
            means.setdefault(gid, []).append((bpb, tps or 0.0))
            curves.setdefault(gid, json.loads(curve or "[]"))
        elif status == "pruned":
            # what the model needs to learn from a stopped run: where its loss stood against
            # its parent's when it was stopped
            parent = (first[gid][1] or [None])[0]
            failures.append((desc, status, reason or "",
                             pruned_curves(json.loads(curve or "[]"), curves.get(parent))))
            last_failure[gid] = f"pruned: {reason or ''}".strip()
        else:
            failures.append((desc, status, reason or "", tail or ""))
            last_failure[gid] = f"{status}: {reason or ''}".strip()
    mean = {g: (sum(b for b, _ in v) / len(v), sum(t for _, t in v) / len(v))
            for g, v in means.items()}
    front = [g for g, (b, t) in mean.items() if not any(
        ob <= b and ot >= t and (ob, ot) != (b, t) for ob, ot in mean.values())]
    front.sort(key=lambda g: mean[g][0])
    front_rows = tuple(
        (first[g][0], (first[g][2] or [""])[0],
         Measurement(val_bpb=mean[g][0], tokens_per_sec=mean[g][1], status="ok"))
        for g in front[:FRONT_SIZE])
    tried = []
    for gid, (desc, parents, _) in first.items():
        if gid in mean:
            parent = parents[0] if parents else None
            outcome = f"val_bpb {mean[gid][0]:.4f}"
            if parent in mean:
                outcome += f" (parent {mean[parent][0]:.4f})"
        else:
            outcome = last_failure.get(gid, "failed")
        tried.append((desc, outcome))
    return PromptContext(program=program, front=front_rows,
                         failures=tuple(failures[-FAILURES_SHOWN:]), tried=tuple(tried))


def pruned_curves(curve: list, parent: list | None) -> str:
    """A pruned child's training loss at each checkpoint it reached, beside its parent's."""
    from evolve.search.pruning import CHECKPOINTS, loss_at

    reached = max((p for p, _ in curve), default=0.0)
    lines = ["training loss at each checkpoint of the budget, this child vs its parent:"]
    for c in CHECKPOINTS:
        if c > reached + 0.05:
            break
        mine, theirs = loss_at(curve, c), loss_at(parent or [], c)
        lines.append(f"{100 * c:.0f} %: " + (f"{mine:.4f}" if mine is not None else "-")
                     + " vs " + (f"{theirs:.4f}" if theirs is not None else "-"))
    return "\n".join(lines) if len(lines) > 1 else ""


def parent_measurement(archive, genome_id: str) -> Measurement:
    """The parent's latest OK measurement (its training losses included), else its latest."""
    results = archive.results(genome_id)
    ok = [r for r in results if r.ok]
    return measurement_of(ok[-1] if ok else (results[-1] if results else None))


class Proposer:
    """Runs proposals of one LLMClient in a thread pool; thread-safe bookkeeping inside."""

    def __init__(self, client, program: str, concurrency: int = 4,
                 max_tokens: int | None = None):
        self.client = client
        self.program = program
        self.pool = ThreadPoolExecutor(max_workers=max(1, concurrency),
                                       thread_name_prefix="llm")
        self.max_tokens = max_tokens
        self.pending: dict[int, list[tuple[Future, list]]] = {}
        self.lock = threading.Lock()

    @property
    def models(self) -> tuple[str, ...]:
        """The configured model names, in --llm-model order."""
        return tuple(m for m, _ in self.client.settings.models)

    def capped(self, tokens_used: int) -> bool:
        return self.max_tokens is not None and tokens_used >= self.max_tokens

    def launch(self, generation: int, parents_list: list[list], measurements: dict,
               ctx: PromptContext, known_ids: frozenset[str],
               models: list[str | None] | None = None) -> int:
        """Start one proposal per entry of parents_list (1 parent: mutation, 2: crossover),
        the i-th by models[i] (None, or no list: a model drawn by the --llm-model weights)."""
        jobs = []
        models = list(models) if models is not None else [None] * len(parents_list)
        for i, (parents, model) in enumerate(zip(parents_list, models, strict=True)):
            rng = random.Random(f"llm-{generation}-{i}")
            if len(parents) == 2:
                a, b = parents
                fut = self.pool.submit(self.client.propose_crossover, a.source,
                                       measurements[a.id], b.source, measurements[b.id], ctx,
                                       known_ids, rng, model)
            else:
                p = parents[0]
                fut = self.pool.submit(self.client.propose_mutation, p.source,
                                       measurements[p.id], ctx, known_ids, rng, model)
            jobs.append((fut, parents))
        with self.lock:
            self.pending.setdefault(generation, []).extend(jobs)
        return len(jobs)

    def collect(self, generation: int) -> tuple[list[tuple[object, list]], float]:
        """Proposals launched for `generation`, waiting for unfinished ones; (made, waited s)."""
        with self.lock:
            jobs = self.pending.pop(generation, [])
        t = time.monotonic()
        wait([f for f, _ in jobs])
        waited = time.monotonic() - t
        return [(f.result(), parents) for f, parents in jobs], waited

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()
