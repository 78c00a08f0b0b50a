"""The registry: every genome operator by name, and the two doors the engine uses.

    from genome.operators import MUTATIONS, CROSSOVERS, mutate, cross
    name, result = mutate(parent, random.Random(7))              # a random applicable mutation
    name, result = mutate(parent, rng, "constant")               # a given one
    name, result = cross(a, b, rng)                              # constants or definitions
    name, result = mutate(parent, rng, "tune", trials=[Trial(source, val_bpb), ...])

`MUTATIONS` and `CROSSOVERS` map a name to an `Operator` (name, family, one-line summary, the
function). Calling an Operator never raises (genome.result.call_guarded); the functions keep the
contract written in genome.result. Operators are plain module-level functions inside frozen
records, so they pickle by reference and can be sent to worker processes.

Operators that learn from scored genomes (`tune`) take them as `trials` (genome.tune.Trial:
source and mean val_bpb); the engine passes the archive's, and without any they still apply.
`mutate` / `cross` without a name try the operators in an order drawn from `rng` and return the
first that applies, so the choice is deterministic for a seed; when none applies the result is
not_applicable with every operator's reason, joined by "; ".

Run: python -m genome list

What it does not do: weight operators by past success (the engine's selection can), or make
Genome records (Genome.child does, from the result).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable

from genome import crossover, mutate_categorical, mutate_constants, mutate_kernels, \
    mutate_literals, mutate_structure, tune
from genome.record import Genome
from genome.result import OpResult, call_guarded


@dataclass(frozen=True)
class Operator:
    name: str
    family: str          # the module it lives in: constants, literals, categorical, ...
    summary: str         # one line, for `python -m genome list`
    fn: Callable[..., OpResult]
    learns: bool = False # takes the scored genomes as `trials`

    def __call__(self, *args, trials=()) -> OpResult:
        return call_guarded(self.fn, *args, *((tuple(trials),) if self.learns else ()))


def _table(*ops: Operator) -> MappingProxyType:
    return MappingProxyType({op.name: op for op in ops})


MUTATIONS = _table(
    Operator("constant", "constants", "move one module-level ALL_CAPS number (log-normal, +-1, x2)",
             mutate_constants.perturb_constant),
    Operator("keyword", "literals", "move a numeric keyword/default named like a hyperparameter "
             "(base=, betas=, std=, weight_decay=)", mutate_literals.perturb_keyword),
    Operator("scale", "literals", "move a float multiplier in init code or a sigmoid/tanh gate "
             "scale", mutate_literals.perturb_scale),
    Operator("activation", "categorical", "swap the MLP activation among relu2, gelu, "
             "gelu_tanh, silu", mutate_categorical.swap_activation),
    Operator("swiglu", "categorical", "turn an activation fed by a Linear into SwiGLU "
             "(Linear width x2)", mutate_categorical.to_swiglu),
    Operator("norm", "categorical", "swap rms_norm <-> layer_norm at one call",
             mutate_categorical.swap_norm),
    Operator("window", "categorical", "edit the attention window pattern (SSSL -> SSSSL, SL, L)",
             mutate_categorical.swap_window),
    Operator("bool", "categorical", "flip a module-level ALL_CAPS boolean",
             mutate_categorical.flip_bool),
    Operator("drop_warmup", "structure", "remove an `if ...warmup...: return` LR guard",
             mutate_structure.drop_warmup),
    Operator("drop_x0", "structure", "remove the x0 skip term and its parameters",
             mutate_structure.drop_x0_skip),
    Operator("drop_value_embeds", "structure", "switch value embeddings off at their one "
             "switch", mutate_structure.drop_value_embeddings),
    Operator("kernel", "kernels", "replace a reference op by its kernel from kernels.SWAPS",
             mutate_kernels.use_kernel),
    Operator("tune", "tune", "move 3 ALL_CAPS numbers together to values an Optuna TPE sampler "
             "proposes from scored genomes of the same structure", tune.tune, learns=True),
)

CROSSOVERS = _table(
    Operator("constants", "crossover", "uniform crossover of shared ALL_CAPS literal constants",
             crossover.cross_constants),
    Operator("definitions", "crossover", "uniform crossover of shared top-level functions and "
             "classes", crossover.cross_definitions),
)


def _first_applicable(table: MappingProxyType, args: tuple, rng: random.Random,
                      name: str | None, trials=()) -> tuple[str, OpResult]:
    if name is not None:
        op = table.get(name)
        if op is None:
            return name, OpResult.not_applicable(
                f"no operator named {name!r} (one of: {', '.join(table)})")
        return name, op(*args, rng, trials=trials)
    names = list(table)
    rng.shuffle(names)
    reasons = []
    for candidate in names:
        result = table[candidate](*args, rng, trials=trials)
        if result.applied:
            return candidate, result
        reasons.append(f"{candidate}: {result.reason}")
    return "", OpResult.not_applicable("; ".join(reasons))


def mutate(parent: Genome | str, rng: random.Random, name: str | None = None,
           trials=()) -> tuple[str, OpResult]:
    """(name, result) of the named mutation, or of the first applicable in a random order;
    `trials` go to the operators that learn from scored genomes."""
    return _first_applicable(MUTATIONS, (parent,), rng, name, trials)


def cross(a: Genome | str, b: Genome | str, rng: random.Random,
          name: str | None = None) -> tuple[str, OpResult]:
    """(name, result) of the named crossover, or of the first applicable in a random order."""
    return _first_applicable(CROSSOVERS, (a, b), rng, name)
