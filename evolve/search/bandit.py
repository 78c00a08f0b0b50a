"""The operator bandit: which mutation operator to draw next, learnt from what its children did.

Each mutation operator (genome.operators.MUTATIONS, `tune` included) is an arm, and so is
crossover (one arm, CROSSOVER, for genome.operators.CROSSOVERS) where the engine lets the bandit
decide the crossover share (no --crossover-prob given), and so is each configured language model
(`llm:<model>`, credited with the children of that model's LLM mutations and crossovers, and
with a failure for each of its proposals that gave no child) where a model is configured. A child is a
success when it scored and either beat its first parent's mean val_bpb by more than the run's
noise floor or is on the Pareto front now; a failure when it was evaluated and is not (failed
evaluations included); a child not evaluated yet does not count. The next operator is drawn by
Thompson sampling: one draw from each arm's Beta(1 + successes, 1 + failures) posterior, the
largest wins. The uniform prior keeps every arm being tried (an arm with no children draws from
Beta(1, 1)), and the draws come from the caller's random stream, so a run's plan depends only
on its archive and its rng seed: a resumed run plans what it would have.

`credit(children, noise)` turns child records into arm counts; the engine builds the records
from its archive, `python -m evolve show` and `run.operators` from the run's DataFrame, so both
apply this one rule. `probabilities` estimates how often each arm would be drawn now.

What it does not do: apply an operator or call a model (the engine does: it draws the language
models' arms a generation ahead, when it launches their proposals; evolve.search.engine).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Iterable, Sequence

PRIOR = (1.0, 1.0)          # Beta(successes + 1, failures + 1): every arm keeps being tried
CROSSOVER = "crossover"     # the arm of every crossover operator
LLM_PREFIX = "llm:"         # a language model's arm is LLM_PREFIX + its name
LLM_OPERATORS = ("llm_mutate", "llm_cross")   # the operators of a model's children
DRAWS = 4000                # Monte Carlo draws behind `probabilities`


@dataclass(frozen=True)
class Child:
    """What the bandit needs of one child: its operator and how it did."""
    operator: str
    evaluated: bool
    val_bpb: float | None          # mean over OK evaluations, None when none was OK
    parent_bpb: float | None       # the first parent's mean val_bpb
    on_front: bool


@dataclass(frozen=True)
class Arm:
    name: str
    successes: int = 0
    failures: int = 0

    @property
    def children(self) -> int:
        return self.successes + self.failures


def success(child: Child, noise: float) -> bool:
    if child.val_bpb is None or not math.isfinite(child.val_bpb):
        return False
    beat = child.parent_bpb is not None and child.val_bpb < child.parent_bpb - noise
    return beat or child.on_front


def arm_names(crossover: bool, models: Sequence[str] = ()) -> list[str]:
    """The arms: every mutation operator, crossover when the bandit decides its share, and
    one per language model."""
    from genome.operators import MUTATIONS

    return list(MUTATIONS) + ([CROSSOVER] if crossover else []) + [llm_arm(m) for m in models]


def llm_arm(model: str) -> str:
    return LLM_PREFIX + model


def model_of(arm: str) -> str | None:
    """The model of a language model's arm, None for any other arm."""
    return arm[len(LLM_PREFIX):] if arm.startswith(LLM_PREFIX) else None


def child_operator(operator: str, model: str | None) -> str:
    """What a child credits: a language model's children its model's arm (when the model is
    known), every other child its operator."""
    return llm_arm(model) if operator in LLM_OPERATORS and model else operator


def arm_of(operator: str) -> str | None:
    """The arm a child's operator credits: itself for a mutation or a model's arm, CROSSOVER
    for a crossover, None for anything else (seeds, a model's child of unknown model)."""
    from genome.operators import CROSSOVERS, MUTATIONS

    if operator in MUTATIONS or model_of(operator):
        return operator
    return CROSSOVER if operator in CROSSOVERS else None


def credit(names: Sequence[str], children: Iterable[Child], noise: float | None) -> list[Arm]:
    """One arm per name, in that order, credited with the evaluated children of that operator
    (children of other operators are ignored)."""
    counts = {n: [0, 0] for n in names}
    for c in children:
        arm = arm_of(c.operator) if c.operator not in counts else c.operator
        if arm in counts and c.evaluated:
            counts[arm][0 if success(c, noise or 0.0) else 1] += 1
    return [Arm(n, s, f) for n, (s, f) in counts.items()]


def choose(arms: Sequence[Arm], rng: random.Random) -> str:
    """Thompson sampling: the arm whose posterior draw is largest."""
    draws = [(rng.betavariate(PRIOR[0] + a.successes, PRIOR[1] + a.failures), a.name)
             for a in arms]
    return max(draws)[1]


def probabilities(arms: Sequence[Arm], draws: int = DRAWS, seed: int = 0) -> dict[str, float]:
    """How often `choose` would pick each arm now (a seeded Monte Carlo estimate)."""
    rng = random.Random(seed)
    wins = {a.name: 0 for a in arms}
    for _ in range(draws):
        wins[choose(arms, rng)] += 1
    return {n: w / draws for n, w in wins.items()}
