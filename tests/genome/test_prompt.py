"""genome.prompt: what a mutation and a crossover prompt contain, in which order, and within
which bounds."""

from __future__ import annotations

from dataclasses import dataclass

from genome import prompt
from genome.prompt import Measurement, PromptContext, crossover_prompt, format_losses, \
    format_measurement, measurement_of, mutation_prompt, retry_message
from tests.genome.genome_paths import FIXTURES, REPO, read

TINY = read(FIXTURES / "engine" / "tiny.py")
PROGRAM = read(REPO / "program.md")
PARENT = Measurement(val_bpb=2.3456, tokens_per_sec=12345.6, peak_memory_mb=789.0, status="ok",
                     losses=tuple((s, 7.0 - s / 100) for s in range(0, 500, 20)))


def context(**kw) -> PromptContext:
    base = dict(
        program=PROGRAM,
        front=(("EMBED_DIM 32 -> 64", "--- a\n+++ b\n-EMBED_DIM = 32\n+EMBED_DIM = 64\n",
                Measurement(2.2, 9000.0, 800.0, "ok")),),
        failures=(("BATCH_SIZE 8 -> 4096", "oom", "host memory ran out",
                   "\n".join(f"trace line {k}" for k in range(30)) + "\nMemoryError: boom"),),
        tried=(("LEARNING_RATE 0.003 -> 0.006", "val_bpb 2.40 (worse)"),
               ("swap relu for gelu", "crash")))
    base.update(kw)
    return PromptContext(**base)


def user_text(messages: list[dict]) -> str:
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "DESCRIPTION:" in messages[0]["content"]
    return messages[1]["content"]


def test_mutation_prompt_holds_every_part_in_order():
    text = user_text(mutation_prompt(TINY, PARENT, context()))
    order = ["## The harness API", "LEARNING_RATE 0.003 -> 0.006 -> val_bpb 2.40 (worse)",
             "BATCH_SIZE 8 -> 4096: oom: host memory ran out", "MemoryError: boom",
             "+EMBED_DIM = 64", "val_bpb 2.3456 | tokens/s 12,346 | peak memory 789 MB",
             "step 0: 7.000", TINY.strip(), "# Your task"]
    positions = [text.find(part) for part in order]
    assert -1 not in positions, [p for p, x in zip(order, positions) if x < 0]
    assert positions == sorted(positions)
    assert "trace line 22" not in text and "trace line 23" in text      # last 8 stderr lines


def test_crossover_prompt_holds_both_parents_a_last():
    other = TINY.replace("EMBED_DIM = 32", "EMBED_DIM = 64")
    text = user_text(crossover_prompt(TINY, PARENT, other, Measurement(status="crash",
                                                                         reason="exit 1"),
                                      context()))
    b, a = text.find("# Parent B"), text.find("# Parent A")
    assert 0 < b < a < text.find("# Your task")
    assert "EMBED_DIM = 64" in text[b:a] and "EMBED_DIM = 32" in text[a:]
    assert "status crash | reason: exit 1" in text
    assert "SEARCH/REPLACE blocks against parent A" in text


def test_bounds_on_tried_front_and_losses():
    tried = tuple((f"idea number {k}", "worse") for k in range(prompt.TRIED_MAX + 15))
    front = tuple((f"front {k}", "+x" * 5000, Measurement(status="ok")) for k in range(9))
    text = user_text(mutation_prompt(TINY, PARENT, context(tried=tried, front=front,
                                                           failures=())))
    assert "idea number 14 " not in text and "idea number 15 " in text
    assert "(15 older ideas not shown)" in text
    assert f"front {prompt.FRONT_MAX - 1}" in text and f"front {prompt.FRONT_MAX}" not in text
    assert text.count("... (diff cut)") == prompt.FRONT_MAX
    assert "Recent failures" not in text
    curve = format_losses(PARENT.losses)
    assert curve.count("step ") == prompt.LOSS_POINTS
    assert curve.startswith("step 0: 7.000") and curve.endswith("step 480: 2.200")


def test_non_finite_numbers_are_not_shown():
    line = format_measurement(Measurement(val_bpb=float("nan"), tokens_per_sec=float("inf"),
                                          status="diverged", reason="loss was nan",
                                          losses=((0, float("nan")),)))
    assert line == "status diverged | reason: loss was nan"
    assert format_measurement(Measurement()) == "status not evaluated"


@dataclass(frozen=True)
class FakeStatus:                 # stands in for evolve.evaluation.result.Status (an str enum)
    value: str


@dataclass(frozen=True)
class ResultLike:
    status: FakeStatus
    val_bpb: float | None
    tokens_per_sec: float
    peak_memory_mb: float | None
    reason: str
    losses: tuple


def test_measurement_of_reads_any_result_record():
    m = measurement_of(ResultLike(FakeStatus("ok"), 1.5, float("nan"), None, "",
                                  ((0, 5.0), (10, "4.5"), ("bad",))))
    assert m == Measurement(1.5, None, None, "ok", "", ((0, 5.0), (10, 4.5)))
    assert measurement_of(None) == Measurement()


def test_retry_message_feeds_the_reason_back():
    message = retry_message("block 2: the SEARCH lines were not found")
    assert message["role"] == "user"
    assert "block 2: the SEARCH lines were not found" in message["content"]
