"""Run inspection from the shell: show, lineage, replay and export of a run directory.

    python -m evolve show RUN                          # the Pareto front, noise floor, totals
    python -m evolve lineage RUN [GENOME|best] [--no-diff]
    python -m evolve replay RUN [GENOME|best] [--repeats N]
    python -m evolve export RUN [GENOME|best] (--out FILE | --git DIR | --tsv FILE)
    python -m evolve prompt RUN [GENOME|best] [--program FILE]   # what the LLM would be sent

GENOME is an id or a unique prefix of one (8 characters are shown everywhere); `best` (the
default) is run.best(): the lowest mean val_bpb among confirmed genomes. Every command reads
the run through evolve.inspect.run.load_run. Only `replay` writes to the archive: it re-evaluates each
step of a lineage, seed first, on the run's own task and data, and stores each measurement as
kind = replay (replays never change run.df). `add_parsers(subparsers)` registers the four
commands on evolve.cli's parser; each command returns an exit code: 0, or 2 with one line
`error: ...` on stderr for bad input (not a run, unknown or ambiguous id, nothing scored yet,
an export target that exists, data that differ from the run's).

What it does not do: change genomes or evaluations already recorded, or pick what to keep
(the engine does); export logic lives in evolve.inspect.export.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path

from evolve.evaluation.result import finite_or_none as _num

SCORED_KINDS = ("eval", "confirm")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)



# -- opening a run and naming a genome ------------------------------------------------------------
def open_run(run_dir: str):
    """(Run, None) or (None, one-line error)."""
    import pandas as pd

    from evolve.search.archive import ArchiveError
    from evolve.inspect.run import load_run

    try:
        return load_run(Path(run_dir)), None
    except ArchiveError as e:
        return None, str(e)
    except (sqlite3.DatabaseError, pd.errors.DatabaseError, KeyError, ValueError) as e:
        return None, f"{run_dir}: the archive cannot be read ({' '.join(str(e).split())[:200]})"


def totals(run) -> str:
    """`6 genomes (1 pending), 8 evaluations (6 eval, 2 confirm), failures: crash 1, pruned 2,
    3 replays` (pruned: stopped by --prune on, not a failure; said only when some were)."""
    ev = run.evals
    kinds = Counter(ev.kind) if len(ev) else Counter()
    scored = ev[ev.kind.isin(SCORED_KINDS)] if len(ev) else ev
    fails = Counter(scored.status[scored.status != "ok"]) if len(scored) else Counter()
    pruned = fails.pop("pruned", 0)
    pending = int((run.df.status == "pending").sum())
    n_scored = sum(kinds[k] for k in SCORED_KINDS)
    fail_text = ", ".join(f"{k} {v}" for k, v in sorted(fails.items())) or "none"
    return (f"{len(run.df)} genomes ({pending} pending), {n_scored} evaluations "
            f"({kinds['eval']} eval, {kinds['confirm']} confirm), failures: {fail_text}"
            + (f", pruned {pruned}" if pruned else "")
            + (f", {kinds['replay']} replays" if kinds["replay"] else ""))


def resolve(run, ref: str) -> tuple[str | None, str | None]:
    """A genome id from `best` or an id prefix: (id, None) or (None, one-line error)."""
    if ref == "best":
        try:
            return str(run.best().genome_id), None
        except ValueError:
            return None, f"{run.run_dir} has no scored genome yet ({totals(run)})"
    ref_l = ref.strip().lower()
    ids = [g for g in run.df.genome_id if ref_l and g.startswith(ref_l)]
    if not ids:
        return None, (f"no genome {ref!r} in {run.run_dir} (ids are hex; show lists the front, "
                      f"all of them: python -m evolve export {run.run_dir} --tsv FILE)")
    if len(ids) > 1:
        shown = ", ".join(ids[:4]) + (", ..." if len(ids) > 4 else "")
        return None, f"genome {ref!r} is ambiguous in {run.run_dir}: {len(ids)} ids start so " \
                     f"({shown}); give more characters"
    return ids[0], None


# -- formatting ----------------------------------------------------------------------------------
def fmt_bpb(row) -> str:
    """`3.048613 ±0.007222 (n=2)`, or the failure status when nothing scored."""
    bpb = _num(row.val_bpb)
    if bpb is None:
        return "not evaluated" if row.status == "pending" else row.status
    std = _num(row.val_bpb_std)
    return f"{bpb:.6f}" + (f" ±{std:.6f}" if std is not None else "") + f" (n={int(row.n_ok)})"


def fmt_tps(x) -> str:
    x = _num(x)
    return f"{x:,.0f}" if x is not None else "-"


def fmt_mem(mb) -> str:
    mb = _num(mb)
    return f"{mb:,.0f} MiB" if mb is not None else "-"


def table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """Columns padded to their widest cell; the last column is never padded."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        out = [c.rjust(w) if i in right else c.ljust(w)
               for i, (c, w) in enumerate(zip(cells[:-1], widths))]
        return "  ".join(out + [cells[-1]]).rstrip()
    return [line(headers), *[line(r) for r in rows]]


def fmt_noise(noise: float | None, source: str = "pooled std of repeated evaluations") -> str:
    if noise is None:
        return "noise_floor: unknown (no genome was evaluated OK twice)"
    return f"noise_floor: {noise:.6f} ({source})"


# -- show ----------------------------------------------------------------------------------------
def cmd_show(args) -> int:
    run, err = open_run(args.run)
    if err:
        return _fail(err)
    best_id, err = resolve(run, "best")
    if err:
        return _fail(err)
    front = run.pareto()
    rows = [[r.genome_id[:8], fmt_bpb(r), str(int(r.n_evals)), fmt_tps(r.tokens_per_sec),
             fmt_mem(r.peak_memory_mb), r.operator, r.description] for r in front.itertuples()]
    print(f"pareto front of {run.run_dir}: {len(front)} of {int(run.df.val_bpb.notna().sum())} "
          "scored genomes (val_bpb down, tokens/s up)")
    for line in table(["genome", "val_bpb", "evals", "tokens/s", "peak_mem", "operator",
                       "description"], rows, right={2, 3, 4}):
        print(line)
    best = run.df.set_index("genome_id").loc[best_id]
    confirmed = "confirmed" if int(best.n_ok) >= 2 else "measured once, not confirmed"
    print(fmt_noise(run.noise_floor))
    print(f"best: {best_id[:8]} val_bpb {fmt_bpb(best)} tokens/s {fmt_tps(best.tokens_per_sec)} "
          f"({confirmed})")
    print(f"totals: {totals(run)}")
    ops = run.operators
    if ops.children.sum():
        print("operators (bandit arms: children evaluated; success: beat the parent beyond the "
              "noise floor, or on the front; p: chance to be drawn first)")
        rows = [[o.operator, str(o.children), f"{o.successes}",
                 f"{o.success_rate:.0%}" if o.children else "-", f"{o.probability:.2f}"]
                for o in ops.itertuples()]
        for line in table(["operator", "children", "successes", "rate", "p"], rows,
                          right={1, 2, 3, 4}):
            print(line)
    return 0


# -- lineage -------------------------------------------------------------------------------------
def cmd_lineage(args) -> int:
    run, err = open_run(args.run)
    if err:
        return _fail(err)
    gid, err = resolve(run, args.genome)
    if err:
        return _fail(err)
    chain = run.lineage(gid)
    print(f"lineage of {gid}: {len(chain)} steps, seed first")
    prev = None
    for i, r in enumerate(chain.itertuples()):
        print(f"\nstep {i}  {r.genome_id}  {r.operator}  {r.description}")
        change = ""
        bpb, prev_bpb = _num(r.val_bpb), _num(prev.val_bpb) if prev is not None else None
        if bpb is not None and prev_bpb is not None:
            change = f"  change {bpb - prev_bpb:+.6f}"
        print(f"  val_bpb {fmt_bpb(r)}  tokens/s {fmt_tps(r.tokens_per_sec)}  "
              f"peak {fmt_mem(r.peak_memory_mb)}{change}")
        if len(r.parent_ids) > 1:
            print(f"  second parent: {r.parent_ids[1]} (the diff below is against the first)")
        if r.reason:
            print(f"  reason: {r.reason}")
        diffs = run.diffs(r.genome_id)
        if not args.no_diff and diffs and prev is not None:
            sys.stdout.write(diffs[0])
        prev = r
    print()
    print(fmt_noise(run.noise_floor))
    return 0


# -- replay --------------------------------------------------------------------------------------
def _replay_setup(run):
    """(Supervisor, env, None) for the run's own task and data, or (None, None, error)."""
    from evolve.data.prepare import PreparedData, ensure_prepared
    from evolve.evaluation.supervisor import Supervisor
    from evolve.evaluation.task import Task
    from evolve.search.workers import visible_gpus

    try:
        task = Task(**run.meta["task"])
    except (KeyError, TypeError) as e:
        return None, None, f"{run.run_dir} records no usable task ({e}); made by another version?"
    problem = task.problem()
    if problem:
        return None, None, f"{run.run_dir} records an impossible task: {problem}"
    data = ensure_prepared(task, log=_log)
    if not isinstance(data, PreparedData):
        return None, None, data
    fingerprint = task.fingerprint(data.fingerprint)
    if fingerprint != run.meta.get("fingerprint"):
        return None, None, (
            f"{run.run_dir} was recorded on other data or task constants (fingerprint "
            f"{run.meta.get('fingerprint')}, here {fingerprint}); a replay would not be "
            f"comparable. Prepare the run's dataset ({task.dataset}, vocabulary "
            f"{task.vocab_size}) as it was, or replay on the machine that made the run")
    env = {}
    if task.device == "cuda":
        gpus = visible_gpus()
        if not gpus:
            return None, None, f"{run.run_dir} was measured on cuda but no GPU is visible here"
        env = {"CUDA_VISIBLE_DEVICES": gpus[0]}      # one GPU: replays run one at a time
    return Supervisor(task, data), env, None


def _verdict(delta: float | None, noise: float | None) -> str:
    """What a replayed step-to-step change of val_bpb says (negative delta = better)."""
    if delta is None:
        return "-"
    if noise is None:
        return "better" if delta < 0 else "worse"
    if -delta >= noise:
        return "helped"
    return "hurt" if delta >= noise else "within noise"


def cmd_replay(args) -> int:
    from evolve.search.archive import Archive, ArchiveError
    from evolve.search.noise import pooled_std

    if args.repeats < 1:
        return _fail("--repeats must be at least 1")
    run, err = open_run(args.run)
    if err:
        return _fail(err)
    gid, err = resolve(run, args.genome)
    if err:
        return _fail(err)
    sup, env, err = _replay_setup(run)
    if err:
        return _fail(err)
    try:
        archive = Archive.open(run.run_dir)
    except (ArchiveError, sqlite3.Error) as e:
        return _fail(f"cannot open {run.run_dir} for writing ({e})")
    chain = run.lineage(gid)
    n_total = len(chain) * args.repeats
    _log(f"replay: {len(chain)} steps x {args.repeats} on {sup.task.device}, "
         f"budget {sup.task.budget_s:g} s each; stored as kind=replay")
    measured: dict[str, list[float]] = {}
    failed: dict[str, str] = {}
    done = 0
    try:
        for r in chain.itertuples():
            source = run.source(r.genome_id)
            for _ in range(args.repeats):
                started = time.time()
                res = sup.evaluate(source, env=env)
                finished = time.time()
                archive.add_eval(r.genome_id, res, "replay", int(r.generation), "replay",
                                 started, finished)
                done += 1
                if res.ok:
                    measured.setdefault(r.genome_id, []).append(res.val_bpb)
                else:
                    failed[r.genome_id] = res.status.value
                what = (f"val_bpb {res.val_bpb:.6f} tokens/s {fmt_tps(res.tokens_per_sec)}"
                        if res.ok else f"{res.status.value}: {res.reason}")
                _log(f"replay {done}/{n_total} {r.genome_id[:8]} {res.status.value} {what} "
                     f"({finished - started:.1f} s)")
    finally:
        archive.close()
    noise, source = run.noise_floor, "pooled std of repeated evaluations"
    if noise is None:
        noise = pooled_std((g, x) for g, xs in measured.items() for x in xs)
        source = "pooled std of these replays"
    rows, prev_orig, prev_rep = [], None, None
    for i, r in enumerate(chain.itertuples()):
        xs = measured.get(r.genome_id, [])
        rep = sum(xs) / len(xs) if xs else None
        rep_text = f"{rep:.6f} (n={len(xs)})" if xs else failed.get(r.genome_id, "-")
        orig = _num(r.val_bpb)
        d_orig = orig - prev_orig if i and orig is not None and prev_orig is not None else None
        d_rep = rep - prev_rep if i and rep is not None and prev_rep is not None else None
        rows.append([str(i), r.genome_id[:8], r.operator, fmt_bpb(r), rep_text,
                     f"{d_orig:+.6f}" if d_orig is not None else "-",
                     f"{d_rep:+.6f}" if d_rep is not None else "-",
                     _verdict(d_rep, noise) if i else "seed" if r.operator == "seed" else "start",
                     r.description])
        prev_orig, prev_rep = orig, rep
    print(f"replay of {gid}: {len(chain)} steps, {args.repeats} evaluation(s) each")
    for line in table(["step", "genome", "operator", "original", "replayed", "orig_change",
                       "replay_change", "verdict", "description"], rows, right={0, 5, 6}):
        print(line)
    first, last = chain.iloc[0].genome_id, chain.iloc[-1].genome_id
    if len(chain) > 1 and _num(chain.iloc[0].val_bpb) is not None and \
            _num(chain.iloc[-1].val_bpb) is not None and measured.get(first) and measured.get(last):
        rep_first = sum(measured[first]) / len(measured[first])
        rep_last = sum(measured[last]) / len(measured[last])
        print(f"lineage_change: original {chain.iloc[-1].val_bpb - chain.iloc[0].val_bpb:+.6f}, "
              f"replayed {rep_last - rep_first:+.6f} (step 0 -> step {len(chain) - 1})")
    print(fmt_noise(noise, source))
    print(f"replays: {done} stored in {run.run_dir} (kind = replay)")
    return 0


# -- export --------------------------------------------------------------------------------------
def cmd_export(args) -> int:
    from evolve.inspect import export

    run, err = open_run(args.run)
    if err:
        return _fail(err)
    gid, err = resolve(run, args.genome)
    if err and not (args.tsv and args.genome == "best"):
        return _fail(err)
    if args.out:
        source = run.source(gid)
        err = export.write_new_file(Path(args.out), source)
        if err:
            return _fail(err)
        row = run.df.set_index("genome_id").loc[gid]
        device = run.meta.get("task", {}).get("device", "cpu")
        print(f"wrote {args.out}: genome {gid}, val_bpb {fmt_bpb(row)}\n"
              f"score it with: python -m evolve eval {args.out} --device {device}")
        return 0
    if args.git:
        steps = [export.step_from_row(r, run.source(r.genome_id))
                 for r in run.lineage(gid).itertuples()]
        err = export.git_lineage(Path(args.git), steps)
        if err:
            return _fail(err)
        print(f"created {args.git}: a git repository with {len(steps)} commits (seed "
              f"{steps[0].genome_id[:8]} -> {gid[:8]}), train.py at HEAD is genome {gid}")
        return 0
    keep = set(run.df.genome_id[run.df.on_front])
    if gid is not None:
        keep |= set(run.lineage(gid).genome_id)
    rows = export.tsv_rows(run.df, run.evals, keep)
    err = export.write_new_file(Path(args.tsv), export.tsv_text(rows))
    if err:
        return _fail(err)
    counts = Counter(r[3] for r in rows)
    print(f"wrote {args.tsv}: {len(rows)} rows ({counts['keep']} keep, {counts['discard']} "
          f"discard, {counts['crash']} crash)")
    return 0


def cmd_prompt(args) -> int:
    """Print exactly the chat messages an LLM mutation of GENOME would be sent now."""
    from genome.prompt import mutation_prompt

    from evolve.search.archive import Archive
    from evolve.search.proposals import parent_measurement, prompt_context

    run, err = open_run(args.run)
    if err:
        return _fail(err)
    gid, err = resolve(run, args.genome)
    if err:
        return _fail(err)
    program = Path(args.program)
    if not program.is_file():
        return _fail(f"--program {program}: no such file")
    archive = Archive.open(Path(args.run), readonly=True)
    try:
        ctx = prompt_context(archive, program.read_text())
        messages = mutation_prompt(run.source(gid), parent_measurement(archive, gid), ctx)
    finally:
        archive.close()
    for m in messages:
        print(f"===== {m['role']} =====")
        print(m["content"])
    return 0


# -- registration --------------------------------------------------------------------------------
def cmd_prune_report(args) -> int:
    from evolve.inspect.prune_report import format_report, shadow, summary

    run, err = open_run(args.run)
    if err:
        return _fail(err)
    for line in format_report(run, summary(run, shadow(run))):
        print(line)
    return 0


def add_parsers(sub) -> None:
    """Register show, lineage, replay, export, prune-report and prompt on evolve.cli's
    subparsers."""
    genome_help = "a genome id or unique prefix, or best (default)"
    p = sub.add_parser("show", help="the Pareto front of a run, its noise floor and totals")
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("lineage", help="the chain of changes from a seed to a genome")
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.add_argument("genome", nargs="?", default="best", metavar="GENOME", help=genome_help)
    p.add_argument("--no-diff", action="store_true", help="leave out the diffs")
    p.set_defaults(func=cmd_lineage)

    p = sub.add_parser("replay", help="evaluate every step of a lineage again (seed first)")
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.add_argument("genome", nargs="?", default="best", metavar="GENOME", help=genome_help)
    p.add_argument("--repeats", type=int, default=1, metavar="N",
                   help="evaluations per step (1); 2 or more also measure the noise")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("export", help="write a genome, its lineage as git history, or results.tsv")
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.add_argument("genome", nargs="?", default="best", metavar="GENOME", help=genome_help)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="FILE", help="the genome's standalone source")
    target.add_argument("--git", metavar="DIR", help="a new git repository, one commit per step")
    target.add_argument("--tsv", metavar="FILE", help="autoresearch-style results.tsv")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("prune-report", help="what pruning would have done to a run (shadow)")
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.set_defaults(func=cmd_prune_report)

    from evolve.evaluation.supervisor import PACKAGE_ROOT

    p = sub.add_parser("prompt", help="print what the language model would see for a genome")
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.add_argument("genome", nargs="?", default="best", metavar="GENOME", help=genome_help)
    p.add_argument("--program", default=str(PACKAGE_ROOT / "program.md"),
                   help="the research agenda (program.md)")
    p.set_defaults(func=cmd_prompt)
