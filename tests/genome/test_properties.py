"""Properties every operator keeps, on every seed in seeds/ (picked up automatically) and every
fixture genome: an operator returns either a child that passes the contract check, has no new
static problem and differs from its parent by identity, or not_applicable with a reason; it is
deterministic for a seed; it never raises, whatever it is given."""

from __future__ import annotations

import random
from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genome.contract import check_source
from genome.operators import CROSSOVERS, MUTATIONS, Operator, cross, mutate
from genome.record import Genome, identity
from genome.result import OpResult, Status, call_guarded
from genome.static_check import check_all, check_static
from tests.genome.genome_paths import parent_files, read

FILES = parent_files()
SOURCES = [read(p) for p in FILES]
SEEDS = st.integers(0, 2**32 - 1)
STATIC_CODES = {"undefined-name", "unresolved-import", "relative-import"}
PROPERTY = settings(max_examples=8, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@lru_cache(maxsize=None)
def _parent_report(source: str) -> tuple[bool, frozenset]:
    """(passes the contract, its static problems as (code, message)) for a parent."""
    static = frozenset((p.code, p.message) for p in check_static(source).problems)
    return check_source(source).ok, static


def assert_valid(result: OpResult, parents: list[str]) -> None:
    assert isinstance(result, OpResult)
    if result.status is Status.NOT_APPLICABLE:
        assert result.child is None and result.reason and "\n" not in result.reason
        assert not result.reason.startswith("operator error"), result.reason
        return
    assert all(_parent_report(p)[0] for p in parents), "applied to a parent breaking the contract"
    report = check_all(result.child)
    contract = [p for p in report.problems if p.code not in STATIC_CODES]
    assert not contract, contract
    static = {(p.code, p.message) for p in report.problems if p.code in STATIC_CODES}
    assert static <= set().union(*(_parent_report(p)[1] for p in parents))
    assert all(identity(result.child) != identity(p) for p in parents)
    assert result.description and "\n" not in result.description


def test_the_seed_set_is_not_empty():
    assert len(FILES) >= 2 and all(check_source(s).ok for s in SOURCES)


@pytest.mark.parametrize("name", sorted(MUTATIONS))
@pytest.mark.parametrize("index", range(len(FILES)), ids=[p.name for p in FILES])
def test_each_mutation_on_each_parent(name, index):
    result = MUTATIONS[name](SOURCES[index], random.Random(index))
    assert_valid(result, [SOURCES[index]])
    # Deterministic for a seed, and a Genome gives what its source gives.
    assert MUTATIONS[name](Genome.seed(SOURCES[index]), random.Random(index)) == result


@pytest.mark.parametrize("name", sorted(MUTATIONS))
@PROPERTY
@given(index=st.integers(0, len(FILES) - 1), seed=SEEDS)
def test_mutation_properties(name, index, seed):
    source = SOURCES[index]
    assert_valid(MUTATIONS[name](source, random.Random(seed)), [source])


@pytest.mark.parametrize("name", sorted(CROSSOVERS))
@PROPERTY
@given(i=st.integers(0, len(FILES) - 1), j=st.integers(0, len(FILES) - 1), seed=SEEDS)
def test_crossover_properties(name, i, j, seed):
    a, b = SOURCES[i], SOURCES[j]
    result = CROSSOVERS[name](a, b, random.Random(seed))
    assert_valid(result, [a, b])
    if i == j:
        assert not result.applied


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(FILES) - 1), seed=SEEDS)
def test_chains_of_random_mutations_stay_valid(index, seed):
    rng = random.Random(seed)
    genome = Genome.seed(SOURCES[index])
    for _ in range(4):
        name, result = mutate(genome, rng)
        assert_valid(result, [genome.source])
        if not result.applied:
            break
        genome = Genome.child(result.child, [genome], name, result.description)
    assert check_source(genome.source).ok


JUNK = [None, 42, b"from evolve import harness", "", "x = (", "\x00", "def f(:\n",
        "import torch\nX = 1\n", "from evolve import harness\nLR = 0.1\n"]


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_mutations_never_raise_on_bad_input(name):
    fn = MUTATIONS[name].fn                   # the raw function: no guard in between
    for junk in JUNK:
        result = fn(junk, random.Random(0))
        assert isinstance(result, OpResult) and not result.applied, (junk, result)
        assert result.reason and not result.reason.startswith("operator error")


@pytest.mark.parametrize("name", sorted(CROSSOVERS))
def test_crossovers_never_raise_on_bad_input(name):
    fn = CROSSOVERS[name].fn
    for junk in JUNK:
        result = fn(junk, SOURCES[0], random.Random(0))
        assert not result.applied and not result.reason.startswith("operator error")
        result = fn(SOURCES[0], junk, random.Random(0))
        assert not result.applied and not result.reason.startswith("operator error")


@settings(max_examples=20, deadline=None)
@given(text=st.text(max_size=200), seed=SEEDS)
def test_mutations_on_arbitrary_text(text, seed):
    for op in MUTATIONS.values():
        result = op.fn(text, random.Random(seed))
        assert not result.applied and not result.reason.startswith("operator error")


def test_guard_turns_exceptions_into_values():
    def broken(parent, rng):
        raise RuntimeError("boom\nsecond line")

    result = Operator("broken", "test", "raises", broken)("x", random.Random(0))
    assert result == OpResult.not_applicable("operator error: RuntimeError: boom")
    assert call_guarded(lambda: "not a result").reason.startswith("operator error: returned str")


def test_registry_doors_pick_an_applicable_operator_deterministically():
    source = SOURCES[0]
    first = mutate(source, random.Random(5))
    assert first == mutate(source, random.Random(5)) and first[1].applied and first[0] in MUTATIONS
    name, result = mutate("x = (", random.Random(0))
    assert name == "" and not result.applied and "constant:" in result.reason
    assert not mutate(source, random.Random(0), "no-such-op")[1].applied
    name, result = cross(SOURCES[0], SOURCES[-1], random.Random(1))
    assert name in CROSSOVERS and result.applied
