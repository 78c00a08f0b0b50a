"""Crossover: children take constants and definitions from both parents, keep the constraints,
record both parents, and are deterministic for a seed."""

from __future__ import annotations

import random

from genome.constraints import violations
from genome.crossover import cross_constants, cross_definitions
from genome.cst_tree import parse
from genome.literals import numeric_values
from genome.record import Genome, identity
from tests.genome.genome_paths import GENOMES, read

A = read(GENOMES / "tiny_gpt.py")
B = read(GENOMES / "tiny_gpt_b.py")


def _definitions(source: str) -> dict[str, str]:
    """name -> identity of each top-level def and class (comments and docstrings aside)."""
    module = parse(source)
    return {stmt.name.value: identity(module.code_for_node(stmt))
            for stmt in module.body if hasattr(stmt, "name")}


def test_constants_come_from_both_parents():
    va, vb = numeric_values(A), numeric_values(B)
    differing = {k for k in va if k in vb and va[k] != vb[k]}
    assert len(differing) >= 5
    taken_from_b: set[str] = set()
    for seed in range(12):
        result = cross_constants(A, B, random.Random(seed))
        assert result.applied, result.reason
        child = numeric_values(result.child)
        from_a = {k for k in differing if child[k] == va[k]}
        from_b = {k for k in differing if child[k] == vb[k]}
        assert from_a | from_b == differing          # each one is one parent's
        assert from_a and from_b                     # and both parents are represented
        taken_from_b |= from_b
        assert result.child.startswith(A[:200])      # built on parent a's text
    # Derived constants may differ too (N_HEAD follows MODEL_DIM); all literals moved at least once.
    assert {k for k in differing if k != "N_HEAD"} <= taken_from_b | {"N_HEAD"}


def test_definitions_come_from_both_parents():
    da, db = _definitions(A), _definitions(B)
    differing = {k for k in da if k in db and da[k] != db[k]}
    assert differing == {"norm", "MLP", "lr_multiplier"}
    seen_from_b: set[str] = set()
    for seed in range(10):
        result = cross_definitions(A, B, random.Random(seed))
        assert result.applied, result.reason
        child = _definitions(result.child)
        from_b = {k for k in differing if child[k] == db[k]}
        from_a = {k for k in differing if child[k] == da[k]}
        assert from_a | from_b == differing and from_a and from_b
        assert all(child[k] == da[k] for k in da if k not in differing)
        seen_from_b |= from_b
    assert seen_from_b == differing


def test_child_records_both_parents():
    ga, gb = Genome.seed(A, "a"), Genome.seed(B, "b")
    result = cross_definitions(ga, gb, random.Random(3))
    child = Genome.child(result.child, [ga, gb], "definitions", result.description)
    assert child.parents == (ga.id, gb.id) and child.generation == 1
    assert len(child.diffs) == 2 and all(d.startswith("--- a/") for d in child.diffs)
    assert Genome.from_dict(child.to_dict()) == child


def test_crossover_is_deterministic():
    for op in (cross_constants, cross_definitions):
        assert op(A, B, random.Random(11)) == op(A, B, random.Random(11))


def test_identical_or_unrelated_parents_give_nothing():
    assert not cross_constants(A, A, random.Random(0)).applied
    assert not cross_definitions(A, A, random.Random(0)).applied
    no_harness = "import torch\nDEPTH = 9\n"
    result = cross_constants(A, no_harness, random.Random(0))
    assert not result.applied and "parent b fails the contract check" in result.reason
    unrelated = "from evolve import harness\nOTHER = 1\nharness.submit(None)\n"
    result = cross_constants(A, unrelated, random.Random(0))
    assert not result.applied and "no differing" in result.reason


def test_crossed_constants_keep_the_batch_rule():
    # a: 2**14 / 16 = 1024 tokens per row-batch; b: 12288 / 8 = 1536. Taking TOTAL from b and
    # DEVICE from a gives 768, a multiple of neither parent's ratio: the rule refuses it.
    a = A.replace("TOTAL_BATCH_TOKENS = 2**14", "TOTAL_BATCH_TOKENS = 2**14")
    b = A.replace("TOTAL_BATCH_TOKENS = 2**14", "TOTAL_BATCH_TOKENS = 12288") \
         .replace("DEVICE_BATCH_SIZE = 16", "DEVICE_BATCH_SIZE = 8")
    refs = [numeric_values(a), numeric_values(b)]
    for seed in range(8):
        result = cross_constants(a, b, random.Random(seed))
        assert result.applied, result.reason
        values = numeric_values(result.child)
        assert (values["TOTAL_BATCH_TOKENS"], values["DEVICE_BATCH_SIZE"]) == (2**14, 8)
        assert violations(values, refs) == []
