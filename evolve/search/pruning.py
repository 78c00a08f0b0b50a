"""The pruning rule: whether a run, seen up to a checkpoint of its budget, can still do well.

A genome's training-loss curve (EvalResult.curve: the losses its harness reported, placed on
the budget by the supervisor's clock) is compared at checkpoints (20 %, 40 %, 60 % of the
budget) with the curves of reference runs finished before it started: its parent's and the
best genome's so far. The rule is deliberately conservative, because train.py ties its
learning-rate schedule to progress (warmdown in the last half), so early loss is a biased
signal: prune only when the run's loss at the checkpoint is above the *worst* reference loss
there by more than `margin` (relative). A genome with no reference, or no loss reported near the
checkpoint, is never pruned.

The losses are the genome's claims. A genome that lies can only avoid being pruned (costing
compute), never earn a score, so no trust rests on them.

This module decides from curves it is given; it reads no archive, kills nothing and stores
nothing (the shadow report is evolve.inspect.prune_report).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

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
