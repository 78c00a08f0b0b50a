"""The pruning rule: whether a run, seen up to a checkpoint of its budget, can still do well.

A genome's training-loss curve (EvalResult.curve: the losses its harness reported, placed on
the budget by the supervisor's clock) is compared at checkpoints (20 %, 40 %, 60 % of the
budget) with the curves of reference runs finished before it started: its parent's and the
best genome's so far. The rule is deliberately conservative, because train.py ties its
learning-rate schedule to progress (warmdown in the last half), so early loss is a biased
signal: prune only when the run's loss at the checkpoint is above the *worst* reference loss
there by more than `margin` (relative). A genome with no reference, or no loss reported near the
checkpoint, is never pruned.

The losses are the genome's claims, and a lying genome cannot earn a score with them. It could
still lower the bar for others: an adversary reported a loss of 0.01 throughout, and as the
best genome (and its children's parent) it made every honest child look hopeless. So a curve
is a reference only when its end agrees with its own scored val_bpb as the run's curves
typically do (`credible`): the end of the curve over val_bpb is at least half the run's median
of that ratio (the ratio is bytes per token and the train/validation gap, alike across genomes
of one run). A curve can still be credible at its end and claim low losses before it, so the
references always include the run's median curve (`median_curve`: at each checkpoint, the median
loss of every credible scored run so far), and the bar is the worst of them: one genome's claims
cannot put it below the median of the run. Nothing is judged before MIN_RUNS credible runs are
known (two liars finishing first made the median theirs), and a curve claiming less at a
checkpoint than 0.9 x its own end is no reference.

`references(...)` picks the reference curves for one run from what was scored before it, and a
`Pruner` (an immutable record: those references, the checkpoints, and whether to stop the run or
only record the decision) travels with the evaluation to the supervisor, which asks it at each
checkpoint of the budget by its own clock (evolve.evaluation.supervisor).

This module decides from curves it is given; it reads no archive, kills nothing and stores
nothing (the engine builds Pruners, the supervisor acts on them, the report is
evolve.inspect.prune_report).
"""

from __future__ import annotations

import dataclasses
from typing import Collection, Sequence

CHECKPOINTS = (0.2, 0.4, 0.6)   # shares of the budget at which a run is judged
WINDOW = 0.1                    # losses reported in (checkpoint - WINDOW, checkpoint] are averaged
MARGIN = 0.05                   # relative: prune above the worst reference by more than 5 %

Curve = Sequence[tuple[float, float]]     # (progress 0..1, loss)


@dataclasses.dataclass(frozen=True)
class Decision:
    checkpoint: float
    prune: bool
    loss: float | None          # the run's mean loss near the checkpoint
    bar: float | None           # the worst reference loss there, times (1 + margin)


MODES = ("off", "shadow", "on")    # --prune: never judge / judge and record / judge and stop

CREDIBLE = 0.5                  # a reference's end/val_bpb at least half the run's median
EARLY_FLOOR = 0.9               # no checkpoint of a reference below 0.9 x its own end loss
MIN_RUNS = 3                    # credible scored runs needed before anything is judged


def end_ratio(curve: Curve, val_bpb: float | None) -> float | None:
    """The curve's last reported losses (the final WINDOW of the budget) over its val_bpb."""
    end = loss_at(curve, max((p for p, _ in curve), default=0.0))
    if end is None or not val_bpb or val_bpb != val_bpb:
        return None
    return end / val_bpb


def credible(curve: Curve, val_bpb: float | None, typical: float | None,
             checkpoints: Sequence[float] = CHECKPOINTS) -> bool:
    """Whether a finished run's curve may serve as a reference (see the module docstring):
    `typical` is the median end_ratio of the run's scored curves (None: too few to tell, so
    every curve is taken). Also, no checkpoint may claim a loss below 0.9 x the curve's own
    end: training loss falls, and an adversary claimed 0.5 up to 70 % of its budget and its
    true losses after, to stay credible at its end."""
    end = loss_at(curve, max((p for p, _ in curve), default=0.0))
    if end is not None and any(x is not None and x < EARLY_FLOOR * end
                               for x in (loss_at(curve, c) for c in checkpoints)):
        return False
    if typical is None:
        return True
    ratio = end_ratio(curve, val_bpb)
    return ratio is not None and ratio >= CREDIBLE * typical


def median_curve(curves: Sequence[Curve], checkpoints: Sequence[float] = CHECKPOINTS) -> Curve:
    """A curve with one point per checkpoint: the median of the curves' losses there (among
    those that reported near it)."""
    out = []
    for c in checkpoints:
        losses = sorted(x for x in (loss_at(curve, c) for curve in curves) if x is not None)
        if losses:
            out.append((c, losses[len(losses) // 2]))
    return out


def loss_at(curve: Curve, checkpoint: float, window: float = WINDOW) -> float | None:
    """Mean reported loss in (checkpoint - window, checkpoint]; None when nothing was reported
    there (a run that reports rarely is not judged on a point far from the checkpoint)."""
    near = [loss for p, loss in curve if checkpoint - window < p <= checkpoint]
    return sum(near) / len(near) if near else None


def decide(curve: Curve, references: Sequence[Curve], checkpoint: float,
           margin: float = MARGIN) -> Decision:
    """The decision for one run at one checkpoint, from its curve up to there."""
    loss = loss_at(curve, checkpoint)
    ref = [x for x in (loss_at(r, checkpoint) for r in references) if x is not None]
    if loss is None or not ref:
        return Decision(checkpoint, False, loss, None)
    bar = max(ref) * (1 + margin)
    return Decision(checkpoint, loss > bar, loss, bar)


def first_prune(curve: Curve, references: Sequence[Curve],
                checkpoints: Sequence[float] = CHECKPOINTS,
                margin: float = MARGIN) -> Decision | None:
    """The first checkpoint at which the run would have been stopped, or None."""
    for c in checkpoints:
        d = decide(curve, references, c, margin)
        if d.prune:
            return d
    return None


def complete(curve: Curve, checkpoints: Sequence[float] = CHECKPOINTS) -> bool:
    """Whether a curve reported near every checkpoint and near its end (the last WINDOW of the
    budget): only such curves say what is typical of the run."""
    return all(loss_at(curve, c) is not None for c in (*checkpoints, 1.0))


def references(parent: Sequence[tuple[Curve, float | None]],
               best: Sequence[tuple[Curve, float | None]],
               done: Sequence[tuple[Curve, float | None]],
               checkpoints: Sequence[float] = CHECKPOINTS,
               owners: Sequence[str] | None = None,
               named: Collection[str] = ()) -> list[Curve]:
    """The reference curves for a run, from (curve, val_bpb) pairs scored before it started:
    its parent's evaluations, the best genome's, and every scored evaluation of the run (`done`).
    Only complete curves (reports near every checkpoint and the end) say what is typical and
    count as runs; only credible curves are references; nothing is judged before MIN_RUNS of
    them; whenever there is a reference, the run's median curve is one too (see the module
    docstring). And nothing is judged when the parent or the best genome has scored
    evaluations but no credible curve: the bar is the worst reference, so leaving one out can
    only lower it (adversary round 6 made an honest parent's curve look atypical with forged
    curves, and its honest child was pruned against theirs). With `owners` (the genome of each
    `done` entry) a genome votes once, with its first complete curve: adversary round 7's
    genome and its own confirmation were two of three votes, and set the median to its lie.
    `named` (owners of the parent and the best genome) are left out of the median curve, which
    must come from others: they are references already, and a credible low curve of theirs also
    pulled the median down a place (adversary round 8)."""
    whole, others, voted = [], [], set()
    for i, (c, b) in enumerate(done):
        who = owners[i] if owners is not None else i
        if complete(c, checkpoints) and who not in voted:
            voted.add(who)
            whole.append((c, b))
            if who not in named:
                others.append((c, b))
    ratios = sorted(r for r in (end_ratio(c, b) for c, b in whole) if r is not None)
    typical = ratios[len(ratios) // 2] if len(ratios) >= MIN_RUNS else None
    population = [c for c, b in whole if credible(c, b, typical, checkpoints)]
    if len(population) < MIN_RUNS:
        return []
    refs: list[Curve] = []
    for named in (parent, best):
        mine = [c for c, b in named if credible(c, b, typical, checkpoints)]
        if named and not mine:
            return []
        for c in mine:
            if list(c) not in [list(r) for r in refs]:
                refs.append(c)
    median = [c for c, b in others if credible(c, b, typical, checkpoints)]
    if refs and not median:
        return []                      # nothing but the references themselves to compare with
    if refs:
        refs.append(median_curve(median, checkpoints))
    return refs


@dataclasses.dataclass(frozen=True)
class Pruner:
    """What the supervisor needs to judge one run: immutable and small, so it pickles to a
    cluster worker with the genome. `stop` False is shadow mode: decide and record, never kill."""

    references: tuple[tuple[tuple[float, float], ...], ...]
    stop: bool
    checkpoints: tuple[float, ...] = CHECKPOINTS
    margin: float = MARGIN

    @classmethod
    def of(cls, refs: Sequence[Curve], stop: bool) -> "Pruner | None":
        """A Pruner over these references, or None when there is nothing to judge by."""
        if not refs:
            return None
        return cls(tuple(tuple((float(p), float(x)) for p, x in r) for r in refs), stop)

    def decide(self, curve: Curve, checkpoint: float) -> Decision:
        return decide(curve, self.references, checkpoint, self.margin)
