"""Exports of a finished (or running) run: a standalone genome, a git history, a results.tsv.

    python -m evolve export RUN [GENOME|best] --out FILE    # the genome's train.py
    python -m evolve export RUN [GENOME|best] --git DIR     # one commit per lineage step
    python -m evolve export RUN [GENOME|best] --tsv FILE    # autoresearch's results.tsv

Each writer takes plain data (texts, `LineageStep` records, a `load_run` Run) and returns None
on success or a one-line error string saying what to do; none raises for a bad target. No
writer overwrites anything: an existing file, or a non-empty directory for --git, is refused,
so an export never destroys a researcher's earlier one.

The results.tsv format is autoresearch's: `commit val_bpb memory_gb status description`,
tab-separated, commit = the first 7 hex digits of the genome id, val_bpb with 6 decimals
(0.000000 for a failure), memory_gb = peak memory in GiB with 1 decimal, status keep (on the
Pareto front or on the chosen lineage) / discard (scored, but neither) / crash (any failure).

What it does not do: read the archive (commands.py hands it a Run), evaluate, or push anywhere.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

from evolve.evaluation.result import finite_or_none as _num

TSV_HEADER = ("commit", "val_bpb", "memory_gb", "status", "description")
SCORED_KINDS = ("eval", "confirm")        # replays never change what a genome scored
GIT_NAME = "autoevolve"
GIT_EMAIL = "autoevolve@localhost"


@dataclasses.dataclass(frozen=True)
class LineageStep:
    """One commit of a --git export: the step's source and what the run measured."""

    genome_id: str
    source: str
    operator: str
    description: str
    parent_ids: tuple[str, ...]
    status: str                       # ok, pending or the last failure status
    val_bpb: float | None             # mean of OK evaluations
    val_bpb_std: float | None         # sample std (n >= 2)
    n_ok: int
    tokens_per_sec: float | None
    peak_memory_mb: float | None
    created_at: float                 # wall clock (time.time()) the genome was proposed



def step_from_row(row, source: str) -> LineageStep:
    """A LineageStep from one row of run.df / run.lineage() and the genome's source."""
    return LineageStep(
        genome_id=row.genome_id, source=source, operator=row.operator,
        description=row.description, parent_ids=tuple(row.parent_ids), status=row.status,
        val_bpb=_num(row.val_bpb), val_bpb_std=_num(row.val_bpb_std), n_ok=int(row.n_ok),
        tokens_per_sec=_num(row.tokens_per_sec), peak_memory_mb=_num(row.peak_memory_mb),
        created_at=row.created_at.timestamp() if hasattr(row.created_at, "timestamp")
        else float(row.created_at))


def one_line(text: str) -> str:
    """Tabs and newlines would break a TSV row or a commit subject: fold them into spaces."""
    return " ".join(str(text).split())


# -- --out ---------------------------------------------------------------------------------------
def write_new_file(path: Path, text: str) -> str | None:
    """Write text to a file that must not exist yet (exclusive create, so no race either)."""
    path = Path(path)
    if not path.parent.is_dir():
        return f"{path.parent} is not a directory; create it first"
    try:
        with open(path, "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        return f"{path} already exists; choose another path or remove it"
    except OSError as e:
        return f"cannot write {path} ({e.strerror or e})"
    return None


# -- --tsv ---------------------------------------------------------------------------------------
def tsv_rows(df, evals, keep: set[str]) -> list[tuple[str, str, str, str, str]]:
    """Rows of results.tsv: one per genome the engine evaluated, in the order of its first
    evaluation. `df` is run.df, `evals` run.evals, `keep` the genome ids marked keep."""
    if not len(evals):
        return []
    scored = evals[evals.kind.isin(SCORED_KINDS)]
    order = list(dict.fromkeys(scored.sort_values("eval_id").genome_id))
    by_id = df.set_index("genome_id")
    rows = []
    for gid in order:
        if gid not in by_id.index:
            continue
        g = by_id.loc[gid]
        bpb = _num(g.val_bpb)
        mem = _num(g.peak_memory_mb)
        if g.status != "ok" or bpb is None:
            status, bpb_text, mem_text = "crash", "0.000000", "0.0"   # autoresearch's crash row
        else:
            status = "keep" if gid in keep else "discard"
            bpb_text, mem_text = f"{bpb:.6f}", f"{(mem or 0.0) / 1024:.1f}"
        desc = one_line(g.description)
        if status == "crash":
            reason = f": {one_line(g.reason)}" if g.reason else ""
            desc = f"{desc} ({g.status}{reason})"
        rows.append((gid[:7], bpb_text, mem_text, status, desc))
    return rows


def tsv_text(rows) -> str:
    return "".join("\t".join(r) + "\n" for r in [TSV_HEADER, *rows])


# -- --git ---------------------------------------------------------------------------------------
def commit_message(step: LineageStep) -> str:
    """Subject = the step's description; body = greppable `key: value` metrics."""
    def f(x, fmt):
        return format(x, fmt) if x is not None else "-"

    lines = [one_line(step.description) or step.operator, "",
             f"val_bpb: {f(step.val_bpb, '.6f')}",
             f"val_bpb_std: {f(step.val_bpb_std, '.6f')}",
             f"n_ok: {step.n_ok}",
             f"tokens_per_sec: {f(step.tokens_per_sec, '.1f')}",
             f"peak_memory_mb: {f(step.peak_memory_mb, '.1f')}",
             f"status: {step.status}",
             f"operator: {step.operator}",
             f"genome: {step.genome_id}"]
    if step.parent_ids:
        lines.append(f"parents: {' '.join(step.parent_ids)}")
    return "\n".join(lines) + "\n"


def _git(repo: Path, *args: str, env: dict | None = None, stdin: str | None = None) -> str | None:
    """Run one git command in repo; None on success, else a one-line reason."""
    try:
        p = subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True, text=True,
                           env=env, timeout=60)
    except FileNotFoundError:
        return "git is not installed (needed for --git); install it or use --out"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"git {args[0]} failed ({e})"
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
        return f"git {args[0]} failed in {repo}: {last}"
    return None


def git_lineage(directory: Path, steps: list[LineageStep]) -> str | None:
    """Create a new git repository at `directory` with one commit per step (seed first), each
    holding the step's source as train.py. Refuses a directory that exists and is not empty;
    on failure it removes what it created."""
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        return f"{directory} already exists; choose a new directory for --git"
    if not directory.parent.is_dir():
        return f"{directory.parent} is not a directory; create it first"
    created = not directory.exists()
    try:
        directory.mkdir(exist_ok=True)
    except OSError as e:
        return f"cannot create {directory} ({e.strerror or e})"
    err = _git_commits(directory, steps)
    if err:
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            shutil.rmtree(directory / ".git", ignore_errors=True)
            (directory / "train.py").unlink(missing_ok=True)
    return err


def _git_commits(repo: Path, steps: list[LineageStep]) -> str | None:
    # The user's global configuration may sign commits or run hooks; this repository gets its
    # own identity and no signing, and commits skip hooks (--no-verify).
    setup = [("init", "-q"), ("symbolic-ref", "HEAD", "refs/heads/main"),
             ("config", "user.name", GIT_NAME), ("config", "user.email", GIT_EMAIL),
             ("config", "commit.gpgsign", "false")]
    for args in setup:
        err = _git(repo, *args)
        if err:
            return err
    for step in steps:
        (repo / "train.py").write_text(step.source, encoding="utf-8")
        # Dated when the genome was proposed, so `git log` reads as the search's own timeline.
        when = f"{int(step.created_at)} +0000"
        env = {**os.environ, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
        # --allow-empty: the history has exactly one commit per step, whatever the file holds.
        err = (_git(repo, "add", "train.py")
               or _git(repo, "commit", "-q", "--no-verify", "--allow-empty", "-F", "-",
                       env=env, stdin=commit_message(step)))
        if err:
            return err
    return None
