"""The tune operator (genome.tune): structure identity, the search space, and an Optuna sampler
that learns from scored genomes of the same structure and ignores the others."""

from __future__ import annotations

import math
import random
import statistics

from genome.constraints import violations
from genome.literals import numeric_values
from genome.operators import MUTATIONS, mutate
from genome.perturb import kind
from genome.tune import Trial, structure, tune
from tests.conftest import REPO

CPU = (REPO / "seeds" / "cpu.py").read_text()
ONE = """import torch
from evolve import harness

LR = 0.04  # the one tunable number
SEED = 1

model = torch.nn.Linear(4, 4)
harness.submit(model)
"""


def _lr(source: str) -> float:
    return numeric_values(source)["LR"]


def test_structure_abstracts_the_numbers_and_nothing_else():
    _, child = mutate(CPU, random.Random(0), "tune")
    assert child.applied and structure(child.child) == structure(CPU)
    _, const = mutate(CPU, random.Random(3), "constant")
    assert structure(const.child) == structure(CPU)
    _, act = mutate(CPU, random.Random(0), "activation")
    assert act.applied and structure(act.child) != structure(CPU)
    assert structure("def (") is None
    assert structure(ONE.replace("SEED = 1", "SEED = 2")) != structure(ONE)   # frozen: code


def test_it_learns_from_scored_genomes_of_the_same_structure_only():
    # twelve scored variants of ONE: the best LR is 0.02, the parent has 0.04
    rng = random.Random(5)
    lrs = [0.01 * 16 ** rng.random() for _ in range(12)]
    trials = [Trial(ONE.replace("LR = 0.04", f"LR = {lr:.4g}"), 2 + math.log10(lr / 0.02) ** 2)
              for lr in lrs]
    learned = [_lr(tune(ONE, random.Random(s), trials).child) for s in range(8)]
    blind = [_lr(tune(ONE, random.Random(s)).child) for s in range(8)]

    def miss(xs):
        return statistics.median(abs(math.log(x / 0.02)) for x in xs)
    assert miss(learned) < miss(blind) and miss(learned) < math.log(2), (learned, blind)
    result = tune(ONE, random.Random(0), trials)
    assert result.description.startswith("tune (12 trials of this structure): LR 0.04 -> ")
    # the same numbers in another structure are not trials of this one
    other = [Trial(t.source.replace("Linear(4, 4)", "Linear(4, 4, bias=False)"), t.value)
             for t in trials]
    assert tune(ONE, random.Random(0), other).description.startswith("tune: LR 0.04 -> ")
    # and what is told is the archive's, as given: the same trials, the same child
    assert tune(ONE, random.Random(0), trials) == result


def test_the_space_stays_near_the_parent_and_children_keep_the_rules():
    values = numeric_values(CPU)
    for seed in range(12):
        result = MUTATIONS["tune"](CPU, random.Random(seed))
        assert result.applied, result.reason
        new = numeric_values(result.child)
        moved = [k for k in values if new.get(k) != values[k] and isinstance(values[k], float)
                 and values[k] > 0]
        for k in moved:
            assert values[k] / 4.01 <= new[k] <= values[k] * 4.01, (k, values[k], new[k])
        assert not violations(new, [values])
        frozen = [k for k, v in values.items() if isinstance(v, (int, float))
                  and kind(k, v) == "frozen"]
        assert frozen and all(new[k] == values[k] for k in frozen)       # LOG_EVERY, ...
    assert not tune("x = 1\n", random.Random(0)).applied
