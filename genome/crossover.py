"""Crossover of two parent genomes: uniform over hyperparameters, or over whole definitions.

    cross_constants(a, b, rng) -> OpResult    # "constants from b: DEPTH 6, EMBED_LR 0.45 (2 of 9)"
    cross_definitions(a, b, rng) -> OpResult  # "definitions from b: MLP, norm (2 of 3)"

Both parents must pass the contract check. Both build the child on parent a's text (its layout,
comments and any code b lacks) and bring in parts of b:

- cross_constants: the module-level ALL_CAPS constants that both parents define as literals
  and that differ; each comes from b with probability 1/2 (at least one from each parent when
  two or more differ). The child must keep genome.constraints with respect to either parent
  (batch multiples, head dims); up to TRIES masks are drawn before giving up.
- cross_definitions: the top-level functions and classes that both define by the same name and
  that differ in code (comments and docstrings aside); each comes from b with probability 1/2,
  likewise. A definition from b that needs a top-level function, class or ALL_CAPS constant
  that a lacks brings it along (placed before the first definition taken from b).

The child passes the contract check and has no static problem its parents lack (genome.result
.finish); it records both parents when the caller makes a Genome of it (Genome.child).

Run: python -m genome cross A B [--operator constants|definitions] [--seed N]

What it does not do: line-level merges inside a definition, or crossover of more than two.
"""

from __future__ import annotations

import ast
import random
from functools import lru_cache

import libcst as cst

from genome import constraints
from genome.contract import check_source
from genome.cst_tree import INSERT_BEFORE, apply_edits, code, parse
from genome.literals import NOT_LITERAL, literal_value, module_constants, numeric_values
from genome.record import Genome, identity
from genome.result import OpResult, finish, source_of

TRIES = 8


@lru_cache(maxsize=64)
def _contract_problem(source: str) -> str:
    return check_source(source).first()


def _sources(a, b) -> tuple[str, str] | OpResult:
    """Both parents' text, or not_applicable when one does not parse or breaks the contract
    (a crossover child is made of valid genomes only)."""
    sa, sb = source_of(a), source_of(b)
    if sa is None or sb is None or parse(sa) is None or parse(sb) is None:
        return OpResult.not_applicable("a parent does not parse")
    for label, source in (("a", sa), ("b", sb)):
        problem = _contract_problem(source)
        if problem:
            return OpResult.not_applicable(f"parent {label} fails the contract check: {problem}")
    return sa, sb


def _mask(n: int, rng: random.Random) -> list[bool]:
    """n coin flips (True: take b's version), with both parents represented when n >= 2."""
    if n == 1:
        return [True]
    while True:
        mask = [rng.random() < 0.5 for _ in range(n)]
        if any(mask) and not all(mask):
            return mask


def cross_constants(a: Genome | str, b: Genome | str, rng: random.Random) -> OpResult:
    """Uniform crossover of the ALL_CAPS literal constants both parents define."""
    pair = _sources(a, b)
    if isinstance(pair, OpResult):
        return pair
    sa, sb = pair
    in_b = {c.name: c for c in module_constants(sb)}
    differing = []
    for const in module_constants(sa):
        other = in_b.get(const.name)
        if other is None:
            continue
        va, vb = literal_value(const.value), literal_value(other.value)
        if va is NOT_LITERAL or vb is NOT_LITERAL or (va == vb and type(va) is type(vb)):
            continue
        differing.append((const, other))
    if not differing:
        return OpResult.not_applicable("the parents share no differing ALL_CAPS literal constant")
    references = [numeric_values(sa), numeric_values(sb)]
    refused = ""
    for _ in range(TRIES):
        mask = _mask(len(differing), rng)
        taken = [(ca, cb) for (ca, cb), from_b in zip(differing, mask) if from_b]
        edits = [(ca.index, ca.value, cb.value) for ca, cb in taken]
        child = apply_edits(sa, edits)
        broken = constraints.violations(numeric_values(child), references)
        if broken:
            refused = broken[0]
            continue
        names = ", ".join(f"{cb.name} {code(cb.value)}" for _, cb in taken)
        return finish([sa, sb], child, f"constants from b: {names} "
                                       f"({len(taken)} of {len(differing)})")
    return OpResult.not_applicable(f"no mix of constants kept the constraints (last: {refused})")


def _definitions(module: cst.Module) -> dict[str, tuple[int, cst.CSTNode]]:
    """name -> (index, node) of top-level defs and classes defined exactly once."""
    seen: dict[str, list[tuple[int, cst.CSTNode]]] = {}
    for index, stmt in enumerate(module.body):
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            seen.setdefault(stmt.name.value, []).append((index, stmt))
    return {name: found[0] for name, found in seen.items() if len(found) == 1}


def _top_level_names(source: str) -> set[str]:
    names: set[str] = set()
    for stmt in ast.parse(source).body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in stmt.names)
        else:
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
    return names


def _used_names(node: cst.CSTNode) -> set[str]:
    tree = ast.parse(code_block(node))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def code_block(node: cst.CSTNode) -> str:
    """Source text of a statement, as a module of its own."""
    return cst.Module(body=[node]).code


def _dependencies(sb: str, chosen: list[cst.CSTNode], have: set[str]) -> list[cst.CSTNode]:
    """Top-level statements of b that the chosen definitions need and a lacks, in b's order."""
    module_b = parse(sb)
    providers: dict[str, cst.CSTNode] = {}
    for stmt in module_b.body:
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            providers[stmt.name.value] = stmt
    for const in module_constants(sb):
        providers.setdefault(const.name, module_b.body[const.index])
    needed: list[cst.CSTNode] = []
    todo = list(chosen)
    while todo:
        for name in sorted(_used_names(todo.pop())):
            stmt = providers.get(name)
            if name in have or stmt is None or any(stmt is s for s in needed):
                continue
            needed.append(stmt)
            have = have | {name}
            todo.append(stmt)
    order = {id(s): i for i, s in enumerate(module_b.body)}
    return sorted(needed, key=lambda s: order[id(s)])


def cross_definitions(a: Genome | str, b: Genome | str, rng: random.Random) -> OpResult:
    """Uniform crossover of the top-level functions and classes both parents define."""
    pair = _sources(a, b)
    if isinstance(pair, OpResult):
        return pair
    sa, sb = pair
    defs_a, defs_b = _definitions(parse(sa)), _definitions(parse(sb))
    differing = [(name, defs_a[name], defs_b[name][1]) for name in defs_a if name in defs_b
                 and identity(code_block(defs_a[name][1])) != identity(code_block(defs_b[name][1]))]
    if not differing:
        return OpResult.not_applicable("the parents share no differing top-level definition")
    have = _top_level_names(sa)
    last = ""
    for _ in range(TRIES):
        mask = _mask(len(differing), rng)
        taken = [(name, ia, nb) for (name, ia, nb), from_b in zip(differing, mask) if from_b]
        edits: list[tuple] = [
            (index, node_a, node_b.with_changes(leading_lines=node_a.leading_lines))
            for _, (index, node_a), node_b in taken]
        extra = _dependencies(sb, [nb for _, _, nb in taken], have)
        first = min(index for _, (index, _), _ in taken)
        edits += [(first, INSERT_BEFORE, stmt) for stmt in extra]
        result = finish([sa, sb], apply_edits(sa, edits),
                        f"definitions from b: {', '.join(n for n, _, _ in taken)} "
                        f"({len(taken)} of {len(differing)})"
                        + (f", with {', '.join(_label(s) for s in extra)}" if extra else ""))
        if result.applied:
            return result
        last = result.reason
    return OpResult.not_applicable(f"no mix of definitions gave a valid child (last: {last})")


def _label(stmt: cst.CSTNode) -> str:
    if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
        return stmt.name.value
    return code(stmt.body[0].targets[0].target) if isinstance(stmt, cst.SimpleStatementLine) \
        and isinstance(stmt.body[0], cst.Assign) else code(stmt)
