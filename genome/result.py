"""What every genome operator returns, and the contract all operators keep.

An operator is a plain function with one of two signatures:

    mutation(parent: Genome | str, rng: random.Random) -> OpResult
    crossover(a: Genome | str, b: Genome | str, rng: random.Random) -> OpResult

and this contract, which tests/genome/test_properties.py checks on every seed:

- It never raises: bad input (source that does not parse, a genome without the harness, nothing
  to change) gives `OpResult.not_applicable(reason)`.
- It is deterministic: the same input and the same `random.Random(seed)` give the same result.
  It draws randomness only from `rng` and iterates syntax trees in source order.
- An applied result carries the child's source and a one-line description of the change
  ("MATRIX_LR 0.04 -> 0.05"); the child passes the contract check (genome.contract), introduces
  no new static-check problem (genome.static_check), and differs from every parent by identity.
  `finish` enforces all three, so an operator cannot hand back a broken or unchanged child.

`call_guarded(fn, *args)` runs an operator so that an unexpected exception also becomes
not_applicable, with a reason starting "operator error:" (the tests fail on such reasons; the
engine never sees an exception). The registry (genome.operators) calls every operator so.

What it does not do: pick operators, or record genomes (genome.record does).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import Callable, Sequence

from genome.contract import check_tree, parse
from genome.record import Genome, identity
from genome.static_check import check_static, check_tree_static


class Status(str, enum.Enum):
    APPLIED = "applied"
    NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True)
class OpResult:
    status: Status
    child: str | None = None          # the child's source when applied
    description: str = ""             # one line, when applied
    reason: str = ""                  # one line, when not applicable

    @property
    def applied(self) -> bool:
        return self.status is Status.APPLIED

    @classmethod
    def success(cls, child: str, description: str) -> "OpResult":
        return cls(Status.APPLIED, child=child, description=description)

    @classmethod
    def not_applicable(cls, reason: str) -> "OpResult":
        return cls(Status.NOT_APPLICABLE, reason=reason)


def source_of(genome_or_source: Genome | str) -> str | None:
    """The source text of a Genome or a str; None for anything else."""
    if isinstance(genome_or_source, Genome):
        return genome_or_source.source
    if isinstance(genome_or_source, str):
        return genome_or_source
    return None


@functools.lru_cache(maxsize=64)
def _static_keys(source: str) -> frozenset[tuple[str, str]]:
    return frozenset((p.code, p.message) for p in check_static(source).problems)


def finish(parents: Sequence[str], child: str, description: str) -> OpResult:
    """The applied result, or not_applicable when the child is identical to a parent, fails the
    contract check, or has a static problem that none of its parents has."""
    tree, problem = parse(child)
    if tree is None:
        return OpResult.not_applicable(f"child does not parse: line {problem.line}: "
                                       f"{problem.message}")
    child_id = identity(child)      # cached by text: Genome.child(child, ...) will not redo it
    if any(identity(p) == child_id for p in parents):
        return OpResult.not_applicable("the change leaves the code identical to a parent")
    report = check_tree(tree)
    if not report.ok:
        return OpResult.not_applicable(f"child fails the contract check: {report.first()}")
    inherited = set().union(*(_static_keys(p) for p in parents)) if parents else set()
    for problem in check_tree_static(child, tree).problems:
        if (problem.code, problem.message) not in inherited:
            return OpResult.not_applicable(
                f"child fails the static check: line {problem.line}: {problem.message}")
    return OpResult.success(child, " ".join(description.split()))


def call_guarded(fn: Callable[..., OpResult], *args) -> OpResult:
    """fn(*args), with any exception or a result of the wrong type turned into
    not_applicable('operator error: ...'): the engine never sees an operator's exception."""
    try:
        result = fn(*args)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        return OpResult.not_applicable(f"operator error: {type(e).__name__}: {first}")
    if not isinstance(result, OpResult):
        return OpResult.not_applicable(
            f"operator error: returned {type(result).__name__}, not OpResult")
    return result
