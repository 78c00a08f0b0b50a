"""Mutation: perturb one module-level ALL_CAPS number (the hyperparameter block of a genome).

    perturb_constant(parent, rng) -> OpResult      # "MATRIX_LR 0.04 -> 0.0523"

Candidates are the top-level `NAME = literal` assignments whose value holds numbers: ints,
floats, `-x`, `2**19` (the exponent moves: 2**19 -> 2**18) and tuples of these (one element
moves: (0.8, 0.95) -> (0.8, 0.96)). The scale of the move comes from genome.perturb (log-normal
for rates and decays, +-1 for counts, x2 or /2 for powers of two; seeds are never changed).
The child must keep the rules of genome.constraints; when halving TOTAL_BATCH_TOKENS would break
the batch rule, DEVICE_BATCH_SIZE is halved with it (and said so in the description). A
candidate whose proposals all break a rule is passed over for the next one, in an order drawn
from `rng`. Only the literal is replaced, so comments and formatting around it stay.

Run: python -m genome mutate FILE --operator constant --seed 1

What it does not do: change numbers inside functions (genome.mutate_literals) or derived
constants such as `MODEL_DIM = DEPTH * ASPECT_RATIO` (change their inputs instead).
"""

from __future__ import annotations

import random

import libcst as cst

from genome import constraints, perturb
from genome.cst_tree import apply_edits, code, parse, replace_nodes
from genome.literals import (ModuleConstant, Slot, literal_value, module_constants, number_node,
                             numeric_values, slots)
from genome.record import Genome
from genome.result import OpResult, finish, source_of

TRIES_PER_CANDIDATE = 4


def _movable(name: str, slot: Slot) -> bool:
    if slot.base is not None:
        return perturb.kind(name, 2) != "frozen"
    k = perturb.kind(name, slot.value)
    return k != "frozen" and (slot.value != 0 or k == "decay")


def _candidates(name: str, slot: Slot, rng: random.Random) -> list[cst.BaseExpression]:
    """New literal nodes for one slot, in the order to try them."""
    if slot.base is not None:
        return [cst.Integer(str(e)) for e in perturb.exponent_proposals(int(slot.value), rng)]
    return [number_node(v, slot.node)
            for v in perturb.proposals(name, slot.value, rng, TRIES_PER_CANDIDATE)]


def _batch_repair(const: ModuleConstant, old: object, new: object,
                  consts: dict[str, ModuleConstant], values: dict) -> tuple | None:
    """When TOTAL shrank by a whole factor, shrink DEVICE by the same factor: (edit, text)."""
    if const.name not in constraints.TOTAL_BATCH or not isinstance(old, int) \
            or not isinstance(new, int) or new >= old or old % new:
        return None
    factor = old // new
    for name in constraints.DEVICE_BATCH:
        dev = consts.get(name)
        if dev is None or not isinstance(dev.value, cst.Integer):
            continue
        value = values.get(name)
        if isinstance(value, int) and value % factor == 0 and value // factor >= 1:
            new_node = number_node(value // factor, dev.value)
            return ((dev.index, dev.value, new_node), f"{name} {value} -> {value // factor}",
                    name, value // factor)
    return None


def perturb_constant(parent: Genome | str, rng: random.Random) -> OpResult:
    """Move one module-level ALL_CAPS number; see the module docstring."""
    source = source_of(parent)
    module = parse(source) if source is not None else None
    if module is None:
        return OpResult.not_applicable("the source does not parse")
    consts = {c.name: c for c in module_constants(source)}
    values = numeric_values(source)
    candidates = [(c, s) for c in consts.values() for s in slots(c.value) if _movable(c.name, s)]
    if not candidates:
        return OpResult.not_applicable("no module-level ALL_CAPS number to change")
    rng.shuffle(candidates)
    refused = ""
    for const, slot in candidates:
        for new_node in _candidates(const.name, slot, rng):
            new_expr = replace_nodes(const.value, [(slot.node, new_node)])
            changed = {const.name: literal_value(new_expr)}
            edits = [(const.index, slot.node, new_node)]
            description = f"{const.name} {code(const.value)} -> {code(new_expr)}"
            broken = constraints.violations(numeric_values(source, changed), [values])
            if broken:
                repair = _batch_repair(const, values.get(const.name), changed[const.name],
                                       consts, values)
                if repair is not None:
                    edit, text, name, value = repair
                    changed[name] = value
                    if not constraints.violations(numeric_values(source, changed), [values]):
                        edits.append(edit)
                        description += f", {text} (keeps the batch a multiple of the row length)"
                        broken = []
            if broken:
                refused = broken[0]
                continue
            child = apply_edits(source, edits)
            return finish([source], child, description)
    return OpResult.not_applicable(
        "no change kept the constraints" + (f" (last: {refused})" if refused else ""))
