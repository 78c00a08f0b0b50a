"""The genome record: identity (stable under formatting, comments and docstrings, changed by any
code change), lineage, diffs, and the plain-dict round trip the archive relies on."""

from __future__ import annotations

import ast
import io
import json
import random
import tokenize

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genome.record import Genome, canonical_form, identity
from tests.genome.genome_paths import parent_files, read

FILES = parent_files()
SOURCES = [read(p) for p in FILES]
PROPERTY = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def test_identity_is_16_hex_digits_and_deterministic():
    source = SOURCES[0]
    assert identity(source) == identity(source)
    assert len(identity(source)) == 16 and int(identity(source), 16) >= 0


def test_identity_ignores_comments_docstrings_and_formatting():
    a = 'import torch\nX = 1\ndef f(a, b):\n    return a+b\n'
    b = ('"""A module docstring."""\n# a comment\nimport torch\n\nX = (1)  # one\n\n\n'
         'def f(a,\n      b):\n    """Adds."""\n    return (a + b)\n')
    assert identity(a) == identity(b)


@pytest.mark.parametrize("changed", [
    'import torch\nX = 2\ndef f(a, b):\n    return a+b\n',        # a constant
    'import torch\nX = 1.0\ndef f(a, b):\n    return a+b\n',      # int -> float
    'import torch\nX = True\ndef f(a, b):\n    return a+b\n',     # 1 -> True
    'import torch\nX = 1\ndef f(a, b):\n    return a-b\n',        # an operator
    'import torch\nX = 1\ndef f(b, a):\n    return a+b\n',        # argument order
    'import torch\nX = 1\ndef g(a, b):\n    return a+b\n',        # a name
    'import torch\nX = 1\ndef f(a, b):\n    y = "x"\n    return a+b\n',        # a statement
])
def test_identity_changes_with_any_code_change(changed):
    assert identity(changed) != identity('import torch\nX = 1\ndef f(a, b):\n    return a+b\n')


def test_unparsable_source_has_a_raw_identity():
    assert canonical_form("def (:") is None
    assert identity("def (:") != identity("def (:  ")      # raw text: every byte counts
    assert identity("def (:") == identity("def (:")


def _with_comments(source: str, rng: random.Random) -> str:
    """Add comments at the end of random lines that end a token run (not inside strings)."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    ends = sorted({t.end[0] for t in tokens if t.type == tokenize.NEWLINE})
    lines = source.splitlines(keepends=True)
    for row in rng.sample(ends, min(5, len(ends))):
        line = lines[row - 1]
        lines[row - 1] = line.rstrip("\n") + "  # an added comment\n"
    return "".join(lines)


@PROPERTY
@given(index=st.integers(0, len(SOURCES) - 1), seed=st.integers(0, 2**32 - 1))
def test_identity_stable_under_reformatting_and_comment_edits(index, seed):
    source = SOURCES[index]
    reformatted = ast.unparse(ast.parse(source))       # drops every comment, new layout
    assert identity(reformatted) == identity(source)
    commented = _with_comments(source, random.Random(seed))
    assert commented != source and identity(commented) == identity(source)


@PROPERTY
@given(index=st.integers(0, len(SOURCES) - 1), pick=st.integers(0, 10**6))
def test_identity_changed_by_editing_one_number(index, pick):
    source = SOURCES[index]
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    numbers = [i for i, t in enumerate(tokens) if t.type == tokenize.NUMBER]
    i = numbers[pick % len(numbers)]
    old = tokens[i]
    value = ast.literal_eval(old.string)
    if isinstance(value, complex):
        return
    tokens[i] = old._replace(string=repr(value + 1 if isinstance(value, int) else value * 2 + 1))
    changed = tokenize.untokenize(tokens)
    assert identity(changed) != identity(source)


def test_seed_and_child_lineage_and_diff():
    seed = Genome.seed("X = 1\nY = 2\n", "a seed")
    assert seed.parents == () and seed.generation == 0 and seed.diffs == ()
    child = Genome.child("X = 1\nY = 3\n", [seed], "constant", "Y 2 -> 3")
    assert child.parents == (seed.id,) and child.generation == 1
    assert child.operator == "constant" and child.description == "Y 2 -> 3"
    (diff,) = child.diffs
    assert f"a/{seed.id}.py" in diff and f"b/{child.id}.py" in diff
    assert "-Y = 2\n" in diff and "+Y = 3\n" in diff
    other = Genome.child("X = 5\nY = 2\n", [seed], "constant", "X 1 -> 5")
    both = Genome.child("X = 5\nY = 3\n", [child, other], "constants", "crossover")
    assert both.parents == (child.id, other.id) and both.generation == 2
    assert len(both.diffs) == 2 and "+X = 5" in both.diffs[0] and "+Y = 3" in both.diffs[1]


def test_records_are_immutable():
    seed = Genome.seed("X = 1\n")
    with pytest.raises(Exception):
        seed.source = "X = 2\n"  # type: ignore[misc]


def test_dict_round_trip_through_json():
    seed = Genome.seed(SOURCES[0], "baseline")
    child = Genome.child(SOURCES[0].replace("\n", "\n\n", 1) + "Z = 1\n", [seed], "op", "added Z")
    for genome in (seed, child):
        data = json.loads(json.dumps(genome.to_dict()))
        back = Genome.from_dict(data)
        assert back == genome and back.id == genome.id


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("source"), "no 'source'"),
    (lambda d: d.update(generation="1"), "'generation' must be int"),
    (lambda d: d.update(parents=[1]), "must hold strings"),
    (lambda d: d.update(id="0" * 16), "does not match"),
    (lambda d: d.update(diffs=[]), "one diff each"),
])
def test_from_dict_rejects_corrupt_records(mutate, message):
    data = Genome.child("X = 2\n", [Genome.seed("X = 1\n")], "op", "d").to_dict()
    mutate(data)
    with pytest.raises(ValueError, match=message):
        Genome.from_dict(data)
    with pytest.raises(ValueError, match="must be a dict"):
        Genome.from_dict(["not", "a", "dict"])
