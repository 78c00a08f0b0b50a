"""Golden tests of genome.edits: reading replies, applying SEARCH/REPLACE blocks at each level of
tolerance, the whole-file fallback, and vetting children (invalid, duplicate, near duplicate)."""

from __future__ import annotations

from genome.contract import check_source
from genome.edits import apply_edits, apply_response, normalised_form, parse_response, vet_child
from genome.record import identity
from tests.genome.genome_paths import FIXTURES, SEEDS, read

TINY = read(FIXTURES / "engine" / "tiny.py")

SOURCE = """\
import math

def f(x):
    y = x + 1
    if y > 2:
        return y * 2
    return y

def g(x):
    return x - 1
"""


def block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


# -- parse_response ----------------------------------------------------------------------------

def test_parse_description_and_blocks_inside_a_fence():
    reply = ("Some thoughts first.\n**DESCRIPTION:** lower the learning rate  \n\n```python\n"
             + block("LEARNING_RATE = 0.003", "LEARNING_RATE = 0.002")
             + block("BATCH_SIZE = 8", "BATCH_SIZE = 16") + "```\nDone.\n")
    parsed = parse_response(reply)
    assert parsed.description == "lower the learning rate"
    assert parsed.blocks == (("LEARNING_RATE = 0.003", "LEARNING_RATE = 0.002"),
                             ("BATCH_SIZE = 8", "BATCH_SIZE = 16"))
    assert parsed.whole_file is None and parsed.problems == ()


def test_parse_whole_file_and_think_section():
    reply = ("<think>maybe DESCRIPTION: not this one</think>\nDescription: rewrite\n"
             "```python\n" + TINY + "```\n")
    parsed = parse_response(reply)
    assert parsed.description == "rewrite"
    assert parsed.blocks == () and parsed.whole_file == TINY


def test_parse_a_fully_fenced_answer_and_a_dangling_think_end():
    reply = ("the model reasoned here</think>\n```\nDESCRIPTION: smaller batch\n"
             + block("BATCH_SIZE = 8", "BATCH_SIZE = 4") + "```\n")
    parsed = parse_response(reply)
    assert parsed.description == "smaller batch"
    assert parsed.blocks == (("BATCH_SIZE = 8", "BATCH_SIZE = 4"),)
    assert parse_response("DESCRIPTION: x\n```python\n" + TINY).whole_file == TINY


def test_parse_ignores_code_fences_that_are_not_a_genome():
    parsed = parse_response("DESCRIPTION: x\n```python\nprint('hi')\n```\n")
    assert parsed.whole_file is None and parsed.blocks == ()


def test_parse_reports_malformed_blocks():
    unclosed = parse_response("DESCRIPTION: x\n<<<<<<< SEARCH\na = 1\n=======\na = 2\n")
    assert unclosed.blocks == () and "block 1 is not closed" in unclosed.problems[0]
    no_divider = parse_response("<<<<<<< SEARCH\na = 1\n>>>>>>> REPLACE\n" + block("b", "c"))
    assert "block 1 has no =======" in no_divider.problems[0]
    assert no_divider.blocks == (("b", "c"),)
    assert no_divider.description == ""


def test_parse_never_raises_on_garbage():
    for text in ["", "\x00\x01", "=======\n>>>>>>> REPLACE", "```", "<<<<<<< SEARCH", "x" * 10000]:
        parsed = parse_response(text)
        assert parsed.blocks == () and parsed.whole_file is None


# -- apply_edits: one golden before/after per level --------------------------------------------

def test_exact():
    result = apply_edits(SOURCE, [("    y = x + 1", "    y = x + 3")])
    assert result.matches == ("exact",)
    assert result.child == SOURCE.replace("y = x + 1", "y = x + 3")


def test_trailing_whitespace():
    result = apply_edits(SOURCE, [("def g(x):   \n    return x - 1\t", "def g(x):\n    return x")])
    assert result.matches == ("trailing_ws",)
    assert result.child == SOURCE.replace("return x - 1", "return x")


def test_indentation_drift_reindents_the_replacement():
    search = "if y > 2:\n    return y * 2"                # the model lost 4 columns
    replace = "if y > 3:\n    return y * 4\nelif y < 0:\n    return 0"
    result = apply_edits(SOURCE, [(search, replace)])
    assert result.matches == ("indent",)
    assert result.child == SOURCE.replace(
        "    if y > 2:\n        return y * 2\n",
        "    if y > 3:\n        return y * 4\n    elif y < 0:\n        return 0\n")


def test_fuzzy_unique_window():
    search = "def f(x):\n    y = x + 1\n    if y > 2:\n        return y*2\n    return y"
    result = apply_edits(SOURCE, [(search, "def f(x):\n    return x")])
    assert result.matches == ("fuzzy",)
    assert result.child == "import math\n\ndef f(x):\n    return x\n\ndef g(x):\n    return x - 1\n"


def test_fuzzy_is_not_tried_for_short_blocks():
    result = apply_edits(SOURCE, [("    y = x + 2", "    y = 0")])
    assert not result.applied and "block 1: the SEARCH lines were not found" in result.reason


def test_ambiguous_search_fails():
    source = "a = 1\nb = 2\na = 1\n"
    result = apply_edits(source, [("a = 1", "a = 5")])
    assert not result.applied
    assert "block 1" in result.reason and "match 2 places (lines 1, 3)" in result.reason


def test_ambiguous_fuzzy_search_fails():
    twice = "def h(a):\n    s = a + 1\n    t = s * 2\n    return t\n\n" * 2
    search = "def h(a):\n    s = a + 1\n    t = s * 3\n    return t"
    result = apply_edits(twice, [(search, "x = 1")])
    assert not result.applied and "match 2 places" in result.reason


def test_missing_search_fails_naming_the_block():
    result = apply_edits(SOURCE, [("    y = x + 1", "    y = x + 2"),
                                  ("totally = different\nlines = here\nand_more = 3", "z = 0")])
    assert not result.applied
    assert result.reason.startswith("block 2: the SEARCH lines were not found")
    assert "'totally = different'" in result.reason


def test_empty_search_fails():
    result = apply_edits(SOURCE, [("\n  \n", "x = 1")])
    assert not result.applied and "block 1: the SEARCH part is empty" in result.reason


def test_blocks_apply_in_order_to_the_edited_file():
    result = apply_edits(SOURCE, [("    y = x + 1", "    y = x + 2"),
                                  ("    y = x + 2", "    y = 7")])
    assert result.applied and "    y = 7\n" in result.child and result.matches == ("exact", "exact")


def test_deletion_and_crlf():
    result = apply_edits(SOURCE.replace("\n", "\r\n"), [("import math\r\n", "")])
    assert result.child == SOURCE.replace("import math\n", "")


# -- apply_response: the whole-file fallback ---------------------------------------------------

def test_whole_file_fallback_when_blocks_fail():
    new = TINY.replace("EMBED_DIM = 32", "EMBED_DIM = 48")
    parsed = parse_response("DESCRIPTION: wider\n" + block("NOT_THERE = 1", "X = 2")
                            + "\n```python\n" + new + "```\n")
    result = apply_response(TINY, parsed)
    assert result.child == new and result.matches == ("whole_file",)


def test_blocks_win_over_whole_file_when_they_apply():
    whole = TINY.replace("EMBED_DIM = 32", "EMBED_DIM = 48")
    parsed = parse_response("DESCRIPTION: x\n" + block("BATCH_SIZE = 8          # rows per step",
                                                        "BATCH_SIZE = 4          # rows per step")
                            + "```python\n" + whole + "```\n")
    result = apply_response(TINY, parsed)
    assert result.matches == ("exact",) and "BATCH_SIZE = 4" in result.child


def test_no_edits_at_all():
    result = apply_response(TINY, parse_response("DESCRIPTION: nothing\nI would change the LR."))
    assert not result.applied and "no SEARCH/REPLACE blocks" in result.reason


# -- vet_child ---------------------------------------------------------------------------------

def test_vet_accepts_a_real_change():
    child = TINY.replace("LEARNING_RATE = 0.003", "LEARNING_RATE = 0.002")
    verdict = vet_child([TINY], child)
    assert verdict.outcome == "applied" and verdict.child_id == identity(child)
    assert check_source(child).ok


def test_vet_rejects_invalid_children():
    broken = vet_child([TINY], TINY.replace("def forward(self, x):", "def forward(self, x:"))
    assert broken.outcome == "invalid" and "does not parse" in broken.reason
    assert "(line 17: 'def forward(self, x:')" in broken.reason
    contract = vet_child([TINY], TINY.replace("harness.submit(model)", "pass"))
    assert contract.outcome == "invalid" and "harness.submit" in contract.reason
    undefined = vet_child([TINY], TINY.replace("lr=LEARNING_RATE", "lr=LEARNING_RAT"))
    assert undefined.outcome == "invalid" and "'LEARNING_RAT' is not defined" in undefined.reason


def test_vet_rejects_duplicates():
    assert vet_child([TINY], TINY + "\n# a comment\n").outcome == "duplicate"
    child = TINY.replace("BATCH_SIZE = 8", "BATCH_SIZE = 9")
    known = vet_child([TINY], child, frozenset({identity(child)}))
    assert known.outcome == "duplicate" and "already evaluated" in known.reason
    renamed = TINY.replace("EMBED_DIM", "WIDTH").replace("Bigram", "Pair")
    printed = TINY.replace("harness.submit(model)", "print('done')\nharness.submit(model)")
    for near in (renamed, printed):
        verdict = vet_child([TINY], near)
        assert verdict.outcome == "duplicate" and "only in names" in verdict.reason


def test_near_duplicate_keeps_one_constant_changes_apart():
    baseline = read(SEEDS / "baseline.py") if (SEEDS / "baseline.py").exists() else TINY
    for old, new in (("TOTAL_BATCH_TOKENS = 2**19", "TOTAL_BATCH_TOKENS = 2**18"),
                     ("BATCH_SIZE = 8", "BATCH_SIZE = 16")):
        if old in baseline:
            assert normalised_form(baseline) != normalised_form(baseline.replace(old, new))
    swapped = "a = 1\nb = 2\nprint(a - b)\nz = a - b\n"
    assert normalised_form(swapped) != normalised_form(swapped.replace("z = a - b", "z = b - a"))
    assert normalised_form("x = max(1, 2)\n") != normalised_form("x = min(1, 2)\n")


def test_the_example_of_program_md_applies_to_the_baseline():
    import textwrap

    program = read(FIXTURES.parent.parent / "program.md")
    answer = program[program.index("## How to answer"):]
    example = textwrap.dedent(answer[answer.index("       <<<<<<< SEARCH"):
                                     answer.index(">>>>>>> REPLACE") + len(">>>>>>> REPLACE")])
    description = answer[answer.index("`DESCRIPTION: halve") + 1:].split("`")[0]
    parsed = parse_response(description + "\n" + example)
    assert parsed.description == "halve the total batch to get twice the optimizer steps"
    baseline = read(SEEDS / "baseline.py")
    result = apply_response(baseline, parsed)
    assert result.matches == ("exact",) and "TOTAL_BATCH_TOKENS = 2**18" in result.child
    assert vet_child([baseline], result.child).outcome == "applied"
