"""The prompts of LLM mutation and LLM crossover: chat messages built from program.md, the
parent(s) and what the search has learnt so far.

    ctx = PromptContext(program=open("program.md").read(), front=..., failures=..., tried=...)
    messages = mutation_prompt(parent_source, measurement_of(parent_result), ctx)
    messages = crossover_prompt(a_source, a_meas, b_source, b_meas, ctx)
    messages += [{"role": "assistant", "content": reply}, retry_message(reason)]   # a re-ask

A mutation prompt holds, in this order: program.md (objective, contract, ideas, how to answer),
the ideas already tried with their outcome (so the model does not rediscover them), recent
failures with the last lines of their errors, a few genomes of the Pareto front with their
description and diff as inspiration, and last the parent's measurements and source, next to the
task. A crossover prompt holds both parents instead of one; the edits go against parent A.

Sizes are bounded so a long run does not grow the prompt without end: the newest TRIED_MAX
ideas, FAILURES_MAX failures with STDERR_LINES lines each, FRONT_MAX front genomes with diffs cut
at DIFF_CHARS, LOSS_POINTS points of each loss curve. The context's tuples are taken to be in
chronological order (newest last); the front in the order given (best first).

What it does not do: call a model (genome.llm), read the archive (the engine fills
PromptContext), or parse replies (genome.edits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

TRIED_MAX = 60          # newest ideas listed as already tried
FAILURES_MAX = 5        # newest failures shown with their error
STDERR_LINES = 8        # last lines of each failure's stderr
STDERR_CHARS = 1200     # ... and at most this many characters of them
FRONT_MAX = 4           # Pareto-front genomes shown as inspiration
DIFF_CHARS = 3000       # a front genome's diff is cut after this many characters
LINE_CHARS = 200        # descriptions and reasons are one line, cut here
LOSS_POINTS = 8         # (step, loss) points shown per loss curve

SYSTEM = (
    "You are a machine-learning research engineer. You improve a single-file GPT training "
    "script that is trained for a fixed wall-clock budget and scored on held-out text "
    "(val_bpb, lower is better) and training throughput (tokens/s, higher is better). "
    "You propose one focused change per answer and follow program.md exactly: its genome "
    "contract and its response format (a line `DESCRIPTION: <one line>`, then SEARCH/REPLACE "
    "blocks whose SEARCH lines are copied exactly from the current file, or the whole new file "
    "in one ```python block).")


@dataclass(frozen=True)
class Measurement:
    """What the trusted evaluation measured for one genome; None where nothing was measured."""

    val_bpb: float | None = None             # bits per byte, lower is better
    tokens_per_sec: float | None = None      # training throughput
    peak_memory_mb: float | None = None      # MiB, host or device
    status: str = ""                         # "ok", "crash", "timeout", ...; "" = not evaluated
    reason: str = ""                         # one line, when not ok
    losses: tuple[tuple[int, float], ...] = ()   # (step, training loss) from harness.log


@dataclass(frozen=True)
class PromptContext:
    program: str                                          # the text of program.md
    front: tuple[tuple[str, str, Measurement], ...] = ()  # (description, diff, measurement)
    failures: tuple[tuple[str, str, str, str], ...] = ()  # (description, status, reason,
                                                          #  stderr tail)
    tried: tuple[tuple[str, str], ...] = ()               # (description, outcome), e.g.
                                                          # ("MATRIX_LR 0.04 -> 0.05",
                                                          #  "val_bpb 1.012 (parent 1.015)")


def measurement_of(result: Any) -> Measurement:
    """A Measurement from any record with the fields of evolve.evaluation.result.EvalResult (read by name,
    so genome/ does not import evolve/); None gives an empty one (not evaluated)."""
    if result is None:
        return Measurement()
    status = getattr(result, "status", "")
    losses = []
    for point in getattr(result, "losses", ()) or ():
        try:
            losses.append((int(point[0]), float(point[1])))
        except (TypeError, ValueError, IndexError):
            continue
    return Measurement(val_bpb=_number(getattr(result, "val_bpb", None)),
                       tokens_per_sec=_number(getattr(result, "tokens_per_sec", None)),
                       peak_memory_mb=_number(getattr(result, "peak_memory_mb", None)),
                       status=str(getattr(status, "value", status) or ""),
                       reason=str(getattr(result, "reason", "") or ""),
                       losses=tuple(losses))


def _number(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _line(text: Any, limit: int = LINE_CHARS) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3].rstrip() + "..."


def _fmt(x: Any, spec: str) -> str | None:
    x = _number(x)
    return None if x is None else format(x, spec)


def format_measurement(m: Measurement) -> str:
    """One line such as `val_bpb 1.0234 | tokens/s 12,345 | peak memory 1,234 MB | status ok`."""
    parts = []
    for label, value in (("val_bpb", _fmt(m.val_bpb, ".4f")),
                         ("tokens/s", _fmt(m.tokens_per_sec, ",.0f")),
                         ("peak memory", _fmt(m.peak_memory_mb, ",.0f"))):
        if value is not None:
            parts.append(f"{label} {value}" + (" MB" if label == "peak memory" else ""))
    parts.append(f"status {m.status or 'not evaluated'}")
    if m.reason and m.status != "ok":
        parts.append(f"reason: {_line(m.reason)}")
    return " | ".join(parts)


def format_losses(losses: tuple[tuple[int, float], ...]) -> str:
    """Up to LOSS_POINTS evenly spaced points, first and last included ('' when none)."""
    points = [(s, x) for s, x in losses if _number(x) is not None]
    if not points:
        return ""
    if len(points) > LOSS_POINTS:
        last = len(points) - 1
        picks = sorted({round(k * last / (LOSS_POINTS - 1)) for k in range(LOSS_POINTS)})
        points = [points[k] for k in picks]
    return ", ".join(f"step {s}: {x:.3f}" for s, x in points)


def _tail(text: str) -> str:
    lines = [line.rstrip() for line in str(text).strip().splitlines() if line.strip()]
    tail = "\n".join(lines[-STDERR_LINES:])
    return tail[-STDERR_CHARS:]


def _tried_section(ctx: PromptContext) -> str:
    if not ctx.tried:
        return ""
    shown = ctx.tried[-TRIED_MAX:]
    more = len(ctx.tried) - len(shown)
    lines = [f"- {_line(d)} -> {_line(o, 120)}" for d, o in shown]
    head = "# Ideas already tried (do not propose them again; build on what worked)\n"
    note = f"({more} older ideas not shown)\n" if more else ""
    return head + note + "\n".join(lines)


def _failures_section(ctx: PromptContext) -> str:
    if not ctx.failures:
        return ""
    out = ["# Recent failures (avoid these mistakes)"]
    for description, status, reason, stderr in ctx.failures[-FAILURES_MAX:]:
        out.append(f"- {_line(description)}: {status}: {_line(reason)}")
        tail = _tail(stderr or "")
        if tail:
            out.append("```text\n" + tail + "\n```")
    return "\n".join(out)


def _front_section(ctx: PromptContext) -> str:
    if not ctx.front:
        return ""
    out = ["# Inspiration: genomes on the Pareto front (val_bpb vs tokens/s)"]
    for k, (description, diff, meas) in enumerate(ctx.front[:FRONT_MAX], 1):
        out.append(f"## {k}. {_line(description)}\n{format_measurement(meas)}")
        diff = str(diff or "").strip()
        if diff:
            if len(diff) > DIFF_CHARS:
                diff = diff[:DIFF_CHARS] + "\n... (diff cut)"
            out.append("```diff\n" + diff + "\n```")
    return "\n".join(out)


def _genome_section(title: str, source: str, meas: Measurement) -> str:
    lines = [f"# {title}", f"Measurements: {format_measurement(meas)}"]
    losses = format_losses(meas.losses)
    if losses:
        lines.append(f"Training loss: {losses}")
    return "\n".join(lines) + "\n```python\n" + source.rstrip("\n") + "\n```"


def _messages(sections: list[str]) -> list[dict]:
    user = "\n\n".join(s for s in sections if s)
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def mutation_prompt(parent_source: str, parent_measurement: Measurement,
                    ctx: PromptContext) -> list[dict]:
    """Chat messages asking for one change to the parent (module docstring)."""
    task = ("# Your task\n"
            "Propose ONE change to the current file that you expect to lower val_bpb within the "
            "same time budget, or to raise tokens/s without hurting val_bpb. Prefer an idea that "
            "is not in the list of ideas already tried. Keep to the genome contract. Answer with "
            "the line `DESCRIPTION: <what you changed and why, one line>` and then SEARCH/REPLACE "
            "blocks against the current file (or the whole new file in one ```python block).")
    return _messages(["# Research agenda (program.md)\n" + ctx.program.strip(),
                      _tried_section(ctx), _failures_section(ctx), _front_section(ctx),
                      _genome_section("The current file (the parent)", parent_source,
                                      parent_measurement),
                      task])


def crossover_prompt(a_source: str, a_meas: Measurement, b_source: str, b_meas: Measurement,
                     ctx: PromptContext) -> list[dict]:
    """Chat messages asking for one file that combines the strengths of parents A and B."""
    task = ("# Your task\n"
            "Write ONE new file that combines the strengths of parent A and parent B: take from "
            "each the parts that likely explain its measurements, so the result lowers val_bpb "
            "or raises tokens/s compared with both. Keep to the genome contract. Answer with the "
            "line `DESCRIPTION: <what you combined, one line>` and then SEARCH/REPLACE blocks "
            "against parent A (the current file), or the whole new file in one ```python block.")
    return _messages(["# Research agenda (program.md)\n" + ctx.program.strip(),
                      _tried_section(ctx), _failures_section(ctx), _front_section(ctx),
                      _genome_section("Parent B", b_source, b_meas),
                      _genome_section("Parent A (the current file: SEARCH lines come from here)",
                                      a_source, a_meas),
                      task])


def retry_message(reason: str) -> dict:
    """The user message that re-asks after an unusable reply, with the reason fed back."""
    return {"role": "user", "content": (
        f"Your answer could not be used: {reason}\n"
        "Answer again in full, against the original current file (none of your edits were "
        "applied): the line `DESCRIPTION: <one line>`, then SEARCH/REPLACE blocks whose SEARCH "
        "lines are copied exactly, with their indentation, from the current file, or the whole "
        "new file in one ```python block.")}
