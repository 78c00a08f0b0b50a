"""From a language model's reply to a vetted child genome: parse the reply, apply its edits, and
check the child before any evaluation time is spent on it.

    parsed = parse_response(reply)                  # ParsedResponse: description, blocks, ...
    edit = apply_response(parent_source, parsed)    # EditResult: the child, or a one-line reason
    verdict = vet_child([parent_source], edit.child, known_ids)   # Verdict: applied / invalid /
                                                                  # duplicate, with a reason

The reply format (program.md, "How to answer"): a line `DESCRIPTION: <one line>`, then edit blocks

    <<<<<<< SEARCH
    lines copied from the current file
    =======
    the lines that replace them
    >>>>>>> REPLACE

(5 to 9 marker characters are accepted, inside or outside ``` fences), or the whole new file in
one ```python block. `<think>...</think>` sections of reasoning models are dropped first.

Each SEARCH block is located in the file as it stands after the blocks before it, trying in turn
(the first level with any match decides; more than one match at a level is a failure, never a
guess):
    exact        the lines are equal
    trailing_ws  equal after removing trailing whitespace
    indent       equal after removing leading whitespace, with one consistent indentation shift
                 over the block; the replacement is re-indented by the same shift
    fuzzy        the one window of as many lines whose difflib ratio (stripped lines) is at least
                 FUZZY_RATIO, with no other such window elsewhere; blocks of FUZZY_MIN_LINES
                 non-blank lines or more only, so a short line is never edited by resemblance
When the blocks fail and the reply also holds a whole file, the whole file is the child.

vet_child: the child parses, passes the contract check (genome.contract), adds no static-check
problem its parents do not have (genome.static_check), and is new: its identity
(genome.record.identity) differs from every parent's and from `known_ids`, and it is not a near
duplicate of a parent. Near duplicate = equal normalised forms, where the normalised form drops
docstrings, bare strings, print(...) statements and `pass`, and renames every name the file binds
(variables, functions, classes, arguments) by order of first binding. A similarity ratio cut-off
on whole files (e.g. 0.995) would also reject one-constant changes such as TOTAL_BATCH_TOKENS
2**19 -> 2**18 (ratio > 0.9999 on seeds/baseline.py), which are among the best known edits.

What it does not do: talk to the model (genome.llm), write prompts (genome.prompt), or run the
child. Nothing here raises on any input text.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from genome.contract import check_tree, parse
from genome.record import identity, tree_form, tree_identity
from genome.static_check import check_static, check_tree_static

FUZZY_RATIO = 0.92          # difflib ratio a window must reach to count as the SEARCH text
FUZZY_MIN_LINES = 3         # non-blank SEARCH lines needed before fuzzy matching is tried
CLOSEST = 3                 # windows scored in full for the "closest place" hint of a failure
DESCRIPTION_CHARS = 200     # a description is one line; longer ones are cut

_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\b.*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\b.*$")
_FENCE_OPEN = re.compile(r"^\s*```+\s*([\w+-]*)\s*$")
_FENCE_CLOSE = re.compile(r"^\s*```+\s*$")
_DESCRIPTION = re.compile(r"^[\s>*_#`-]*description[\s*_`]*:[\s*_`]*(.*?)[\s*_`]*$", re.I)
_THINK = re.compile(r"<think>.*?(</think>|\Z)", re.S | re.I)


@dataclass(frozen=True)
class ParsedResponse:
    """What a reply says. problems: one line per malformed block (never about the description:
    an empty `description` means the reply has none)."""

    description: str = ""
    blocks: tuple[tuple[str, str], ...] = ()     # (search, replace) texts, in reply order
    whole_file: str | None = None                # a complete genome in a ```python block
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class EditResult:
    child: str | None = None
    reason: str = ""                   # one line, when child is None
    matches: tuple[str, ...] = ()      # how each block matched (exact, ...), or ("whole_file",)

    @property
    def applied(self) -> bool:
        return self.child is not None


@dataclass(frozen=True)
class Verdict:
    outcome: str                       # "applied", "invalid" or "duplicate"
    reason: str = ""                   # one line, unless applied
    child_id: str = ""


# -- parsing -----------------------------------------------------------------------------------

def _one_line(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 3].rstrip() + "..."


def _looks_like_genome(code: str) -> bool:
    return "from evolve import harness" in code and "harness.submit" in code


def strip_thinking(text: str) -> str:
    """The reply without its <think>...</think> sections (an unclosed one runs to the end; a
    closing tag without an opening one, as some chat templates leave it, ends a leading one)."""
    text = _THINK.sub("", text)
    return text.rsplit("</think>", 1)[1] if "</think>" in text else text


def _description(line: str) -> str:
    found = _DESCRIPTION.match(line)
    return _one_line(found.group(1)) if found else ""


def parse_response(text: str) -> ParsedResponse:
    """Read a reply into description, edit blocks and an optional whole file (module docstring).
    The description comes from the first DESCRIPTION line outside code fences, else from the
    first one inside a fence (some models fence their whole answer)."""
    if not isinstance(text, str):
        return ParsedResponse(problems=("the reply is not text",))
    lines = strip_thinking(text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    description, fenced_description = "", ""
    blocks, problems, candidates = [], [], []
    fence: list[str] | None = None       # lines of the open ``` fence, None outside one
    fence_lang, fence_has_blocks = "", False

    def close_fence() -> None:
        code = "\n".join(fence).rstrip("\n") + "\n"
        if not fence_has_blocks and fence_lang in ("python", "py", "python3", "") \
                and _looks_like_genome(code):
            candidates.append(code)

    i = 0
    while i < len(lines):
        line = lines[i]
        if _SEARCH.match(line):
            n = len(blocks) + len(problems) + 1
            block, i, problem = _read_block(lines, i + 1, n)
            if problem:
                problems.append(problem)
            else:
                blocks.append(block)
            fence_has_blocks = fence_has_blocks or fence is not None
            continue
        if fence is None:
            opened = _FENCE_OPEN.match(line)
            if opened:
                fence, fence_lang, fence_has_blocks = [], opened.group(1).lower(), False
            elif not description:
                description = _description(line)
        elif _FENCE_CLOSE.match(line):
            close_fence()
            fence = None
        else:
            fence.append(line)
            fenced_description = fenced_description or _description(line)
        i += 1
    if fence is not None:
        close_fence()                                   # a last fence left open
    whole = max(candidates, key=len) if candidates else None
    return ParsedResponse(description or fenced_description, tuple(blocks), whole,
                          tuple(problems))


def _read_block(lines: list[str], i: int, n: int) -> tuple[tuple[str, str], int, str]:
    """Read one block after its SEARCH line: ((search, replace), next index, problem or '')."""
    search: list[str] = []
    while i < len(lines) and not _DIVIDER.match(lines[i]):
        if _SEARCH.match(lines[i]) or _REPLACE.match(lines[i]):
            # A new SEARCH line is left for the caller to read; a REPLACE line ends this block.
            after = i if _SEARCH.match(lines[i]) else i + 1
            return ("", ""), after, f"block {n} has no ======= line between SEARCH and REPLACE"
        search.append(lines[i])
        i += 1
    if i >= len(lines):
        return ("", ""), i, f"block {n} has no ======= line and no >>>>>>> REPLACE line"
    i += 1
    replace: list[str] = []
    while i < len(lines) and not _REPLACE.match(lines[i]):
        if _SEARCH.match(lines[i]):
            return ("", ""), i, f"block {n} is not closed with a >>>>>>> REPLACE line"
        replace.append(lines[i])
        i += 1
    if i >= len(lines):
        return ("", ""), i, f"block {n} is not closed with a >>>>>>> REPLACE line"
    return ("\n".join(search), "\n".join(replace)), i + 1, ""


# -- applying ----------------------------------------------------------------------------------

def _trim(lines: list[str]) -> list[str]:
    """Without blank lines at either end."""
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _indent(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


def _shift(lines: list[str], delta: int) -> list[str]:
    """Lines re-indented by `delta` columns (clamped at column 0); blank lines left alone."""
    out = []
    for line in lines:
        if not line.strip():
            out.append(line)
        else:
            text = line.expandtabs(4)
            out.append(" " * max(0, _indent(text) + delta) + text.lstrip())
    return out


def _indent_delta(window: list[str], search: list[str]) -> int | None:
    """The one indentation shift that turns `search` into `window` line by line, else None."""
    delta = None
    for have, want in zip(window, search):
        if not have.strip() and not want.strip():
            continue
        if have.strip() != want.strip():
            return None
        d = _indent(have) - _indent(want)
        if delta is None:
            delta = d
        elif d != delta:
            return None
    return 0 if delta is None else delta


def _stripped(lines: Iterable[str]) -> str:
    return "\n".join(line.strip() for line in lines)


def _fuzzy(lines: list[str], search: list[str]) -> tuple[list[int], int, float]:
    """(starts of windows at or above FUZZY_RATIO, best start, best ratio) for the search.
    quick_ratio (an upper bound of ratio) skips most windows: ratio is computed only where the
    bound reaches FUZZY_RATIO, and for the CLOSEST windows with the highest bounds (for the
    "closest place" hint), which keeps a 12-line block on a 350-line file in milliseconds."""
    n = len(search)
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(_stripped(search))                   # b2j of the search text, built once
    bounds = []
    for start in range(0, len(lines) - n + 1):
        matcher.set_seq1(_stripped(lines[start:start + n]))
        bounds.append((matcher.quick_ratio(), start))
    if not bounds:
        return [], -1, 0.0
    bounds.sort(reverse=True)
    scores: dict[int, float] = {}
    for k, (bound, start) in enumerate(bounds):
        if bound < FUZZY_RATIO and k >= CLOSEST:
            break
        matcher.set_seq1(_stripped(lines[start:start + n]))
        scores[start] = matcher.ratio()
    best = max(scores, key=lambda s: (scores[s], -s))
    hits = sorted(s for s, r in scores.items() if r >= FUZZY_RATIO)
    return hits, best, scores[best]


def _locate(lines: list[str], search: list[str]) -> tuple[str, list[int], int, float]:
    """(level, match starts, indentation shift, best fuzzy ratio) for one SEARCH block."""
    n = len(search)
    windows = range(0, len(lines) - n + 1)
    exact = [s for s in windows if lines[s:s + n] == search]
    if exact:
        return "exact", exact, 0, 1.0
    rs = [line.rstrip() for line in search]
    trailing = [s for s in windows if [x.rstrip() for x in lines[s:s + n]] == rs]
    if trailing:
        return "trailing_ws", trailing, 0, 1.0
    shifted = [(s, d) for s in windows for d in [_indent_delta(lines[s:s + n], search)]
               if d is not None]
    if shifted:
        return "indent", [s for s, _ in shifted], shifted[0][1], 1.0
    if sum(1 for line in search if line.strip()) < FUZZY_MIN_LINES:
        return "", [], 0, 0.0
    hits, best, ratio = _fuzzy(lines, search)
    if not hits:
        return "", [], 0, ratio
    # Windows next to the best one overlap it and score high too; only a match elsewhere is
    # a second place.
    apart = [s for s in hits if abs(s - best) >= n]
    starts = [best] + apart
    return "fuzzy", starts, _first_indent(lines[best:best + n]) - _first_indent(search), ratio


def _first_indent(lines: list[str]) -> int:
    return next((_indent(line) for line in lines if line.strip()), 0)


def apply_edits(source: str, blocks: Sequence[tuple[str, str]]) -> EditResult:
    """Apply the blocks in order; the child source, or a reason naming the block that failed."""
    if not blocks:
        return EditResult(reason="there are no SEARCH/REPLACE blocks to apply")
    text = source.replace("\r\n", "\n")
    ends_newline = text.endswith("\n")
    lines = (text[:-1] if ends_newline else text).split("\n")
    matches = []
    for n, (search_text, replace_text) in enumerate(blocks, 1):
        search = _trim(search_text.replace("\r\n", "\n").split("\n"))
        replace = _trim(replace_text.replace("\r\n", "\n").split("\n"))
        if not search:
            return EditResult(reason=f"block {n}: the SEARCH part is empty; copy the lines to "
                                     "replace from the current file")
        level, starts, delta, ratio = _locate(lines, search)
        if not starts:
            closest = f" (closest place is {ratio:.0%} similar)" if ratio > 0 else ""
            return EditResult(reason=f"block {n}: the SEARCH lines were not found in the current "
                                     f"file{closest}; first line: {_one_line(search[0], 80)!r}")
        if len(starts) > 1:
            where = ", ".join(str(s + 1) for s in starts[:5])
            return EditResult(reason=f"block {n}: the SEARCH lines match {len(starts)} places "
                                     f"(lines {where}); include more lines to make them unique")
        start = starts[0]
        lines[start:start + len(search)] = _shift(replace, delta) if delta else replace
        matches.append(level)
    child = "\n".join(lines) + ("\n" if ends_newline else "")
    return EditResult(child=child, matches=tuple(matches))


def apply_response(source: str, parsed: ParsedResponse) -> EditResult:
    """The child a parsed reply describes: its blocks applied to `source`, or else its whole
    file; a reason when neither gives one."""
    if parsed.blocks and not parsed.problems:
        result = apply_edits(source, parsed.blocks)
        if result.applied or parsed.whole_file is None:
            return result
    if parsed.whole_file is not None:
        return EditResult(child=parsed.whole_file, matches=("whole_file",))
    if parsed.problems:
        return EditResult(reason=parsed.problems[0])
    return EditResult(reason="the reply has no SEARCH/REPLACE blocks and no whole file in a "
                             "```python block")


# -- vetting -----------------------------------------------------------------------------------

class _Normaliser(ast.NodeTransformer):
    """Drops what cannot change a score and renames the names a file binds (see module doc)."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.Name(id=self.names.get(node.id, node.id), ctx=node.ctx)

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self.names.get(node.arg, node.arg)
        node.annotation = None
        return self.generic_visit(node)

    def rename_def(self, node):
        node.name = self.names.get(node.name, node.name)
        return self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = rename_def

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                kept = [s for s in body if not _droppable(s)]
                setattr(node, field, kept or [ast.Pass()])
        return node


def _droppable(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr):
        value = stmt.value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return True
        return isinstance(value, ast.Call) and isinstance(value.func, ast.Name) \
            and value.func.id == "print"
    return False


def _bound_names(tree: ast.AST) -> dict[str, str]:
    """Names the file binds (not imports, not builtins), numbered by first binding in source
    order."""
    imported = {"harness"}
    found: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imported.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            found.append((node.lineno, node.col_offset, node.id))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.arg)):
            name = node.arg if isinstance(node, ast.arg) else node.name
            found.append((node.lineno, node.col_offset, name))
    names: dict[str, str] = {}
    for _, _, name in sorted(found):
        if name not in names and name not in imported and not hasattr(builtins, name):
            names[name] = f"_v{len(names)}"
    return names


def normalised_form(source: str) -> str | None:
    """The text two near-duplicate genomes share (module docstring); None if it does not parse."""
    tree, _ = parse(source)
    if tree is None:
        return None
    return tree_form(_Normaliser(_bound_names(tree)).visit(tree))


def vet_child(parents: Sequence[str], child: str, known_ids: frozenset[str] | set[str] = frozenset()
              ) -> Verdict:
    """Whether `child` may be evaluated: Verdict('applied'), or 'invalid' / 'duplicate' with a
    one-line reason written for the model that made it."""
    tree, problem = parse(child)
    if tree is None:
        shown = _source_line(child, problem.line)
        return Verdict("invalid", f"the new file {problem.message} (line {problem.line}{shown})")
    child_id = tree_identity(tree)
    if any(identity(p) == child_id for p in parents):
        return Verdict("duplicate", "the new file has the same code as the parent (only "
                                    "comments, docstrings or formatting differ)", child_id)
    if child_id in known_ids:
        return Verdict("duplicate", "this exact code was already evaluated; propose a "
                                    "different change", child_id)
    form = normalised_form(child)
    if any(normalised_form(p) == form for p in parents):
        return Verdict("duplicate", "the new file differs from the parent only in names, "
                                    "print calls, strings or `pass`", child_id)
    report = check_tree(tree)
    if not report.ok:
        return Verdict("invalid", f"the new file breaks the genome contract: {report.first()}",
                       child_id)
    inherited = {(p.code, p.message) for src in parents for p in check_static(src).problems}
    for p in check_tree_static(child, tree).problems:
        if (p.code, p.message) not in inherited:
            return Verdict("invalid", f"the new file fails the static check: line {p.line}: "
                                      f"{p.message}", child_id)
    return Verdict("applied", "", child_id)


def _source_line(source: str, line: int) -> str:
    lines = source.split("\n")
    if 1 <= line <= len(lines) and lines[line - 1].strip():
        return f": {_one_line(lines[line - 1], 100)!r}"
    return ""
