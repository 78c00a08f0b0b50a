"""Genomes and token-free variation: the genome record, the contract check, and the mutation
and crossover operators that change a genome without a language model.

    from genome import Genome, check_source, mutate, cross
    seed = Genome.seed(open("seeds/baseline.py").read())
    name, result = mutate(seed, random.Random(1))          # OpResult: child + description
    if result.applied:
        child = Genome.child(result.child, [seed], name, result.description)

Modules: record (Genome, identity), contract (the static lint of program.md's rules),
static_check (names and imports), result (OpResult and the operator contract), operators
(the registry), mutate_* (one family of mutations each), crossover, constraints and perturb
(how far and within which relations numbers move), literals (constants and literal values),
cst_tree (libcst parsing, search and edits).
Command line: python -m genome list | mutate | cross | check (see genome/__main__.py).
Variation by language model (prompt, edits, llm) lives here too and builds on the same record,
contract and static check.

What it does not do: evaluate genomes, talk to language models, or store an archive.
"""

from genome.contract import CheckReport, Problem, check_source
from genome.operators import CROSSOVERS, MUTATIONS, Operator, cross, mutate
from genome.record import Genome, identity
from genome.result import OpResult, Status
from genome.static_check import check_all, check_static

__all__ = ["CROSSOVERS", "CheckReport", "Genome", "MUTATIONS", "OpResult", "Operator", "Problem",
           "Status", "check_all", "check_source", "check_static", "cross", "identity", "mutate"]
