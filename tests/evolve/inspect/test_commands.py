"""show, lineage, replay and export as a user runs them: real subprocesses on one small real run
(the session's shared `small_run`, see tests/conftest.py), asserting on their output, the archive
and the files they write."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from evolve.search.archive import Archive
from evolve.inspect.run import load_run
from tests.evolve.inspect.conftest import copy_run
from tests.conftest import REPO, TINY, small_task


def evolve(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "evolve", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=timeout)


def one_line_error(p, *words):
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def run_dir(small_run):
    """The session's shared real run (tests/conftest.py): commands that change it get a copy."""
    return small_run.dir




def test_show_lists_only_the_front(run_dir):
    p = evolve("show", run_dir)
    assert p.returncode == 0, p.stderr
    run = load_run(run_dir)
    front_lines = p.stdout.split("\nnoise_floor: ")[0].splitlines()[2:]
    shown = [line.split()[0] for line in front_lines if line]
    assert shown == [g[:8] for g in run.pareto().genome_id]          # front only, by val_bpb
    assert not set(shown) & {g[:8] for g in run.df.genome_id[~run.df.on_front]}
    best = run.best()
    assert f"best: {best.genome_id[:8]} val_bpb {best.val_bpb:.6f}" in p.stdout
    assert "noise_floor: " in p.stdout
    assert f"totals: {len(run.df)} genomes" in p.stdout and "failures: " in p.stdout
    # the operator bandit: every mutation operator, its evaluated children and its chance
    ops = run.operators
    assert list(ops.columns) == ["operator", "children", "successes", "failures",
                                 "success_rate", "probability"]
    kids = run.df[run.df.operator.isin(set(ops.operator)) & (run.df.status != "pending")]
    assert ops.children.sum() == len(kids) > 0
    assert (ops.successes + ops.failures == ops.children).all()
    assert abs(ops.probability.sum() - 1) < 1e-9
    assert (ops[ops.children == 0].probability > 0).all()            # the prior: still tried
    table_lines = p.stdout.split("\noperators (")[1].splitlines()[2:]
    assert [line.split()[0] for line in table_lines] == list(ops.operator)


def test_show_and_the_failure_table_tell_pruned_runs_from_failures(run_dir, tmp_path):
    from evolve.inspect.commands import totals
    from evolve.inspect.tables import failure_table
    from tests.evolve.inspect.conftest import with_pruned_child

    d, child = with_pruned_child(run_dir, tmp_path)
    run = load_run(d)
    assert run.df.set_index("genome_id").status[child] == "pruned"
    assert run.evals.set_index("genome_id").pruned_at[child] == 0.2
    line = totals(run)
    assert ", pruned 1" in line and "pruned" not in line.split("failures: ")[1].split(",")[0]
    assert "pruned" not in set(failure_table(run).status)
    assert "pruned" not in totals(load_run(run_dir))          # said only when some were


def test_lineage_of_best_starts_at_a_seed(run_dir):
    run = load_run(run_dir)
    best = run.best().genome_id
    chain = run.lineage(best)
    p = evolve("lineage", run_dir)
    assert p.returncode == 0, p.stderr
    steps = [line.split() for line in p.stdout.splitlines() if line.startswith("step ")]
    assert [s[2] for s in steps] == list(chain.genome_id)
    assert steps[0][3] == "seed" and steps[-1][2] == best
    assert p.stdout.count("--- a/") == len(chain) - 1               # one diff per child step
    q = evolve("lineage", run_dir, best[:6], "--no-diff")
    assert q.returncode == 0, q.stderr
    assert "--- a/" not in q.stdout and q.stdout.count("\nstep ") == len(chain)


def test_replay_stores_replay_rows_and_prints_both_values(run_dir, tmp_path):
    d = copy_run(run_dir, tmp_path)
    run = load_run(d)
    # A child of a seed: a two-step lineage (two evaluations) that still has a step change.
    seeds = set(run.df.genome_id[run.df.operator == "seed"])
    kids = run.df[(run.df.operator != "seed") & run.df.val_bpb.notna()
                  & run.df.parent_ids.map(lambda p: bool(p) and set(p) <= seeds)]
    target = kids.genome_id.iloc[0] if len(kids) else run.best().genome_id
    chain = run.lineage(target)
    p = evolve("replay", d, target[:8])
    assert p.returncode == 0, p.stderr
    after = load_run(d)
    replays = after.evals[after.evals.kind == "replay"]
    assert list(replays.genome_id) == list(chain.genome_id)         # seed first, in order
    assert (replays.worker == "replay").all()
    assert after.df.equals(run.df)                                  # replays never change df
    assert sum(line.startswith("replay ") for line in p.stderr.splitlines()) == len(chain)
    rows = {line.split()[1]: line for line in p.stdout.splitlines()[2:]
            if line.split() and line.split()[0].isdigit()}
    for r, rep in zip(chain.itertuples(), replays.itertuples()):
        line = rows[r.genome_id[:8]]
        assert f"{r.val_bpb:.6f}" in line                           # the original ...
        if rep.status == "ok":
            assert f"{rep.val_bpb:.6f}" in line                     # ... and the replayed one
    assert "noise_floor: " in p.stdout
    if (replays.status == "ok").all():
        assert "lineage_change: original " in p.stdout


def test_export_out_is_the_standalone_genome(run_dir, tmp_path):
    from genome.contract import check_source

    out = tmp_path / "best.py"
    p = evolve("export", run_dir, "--out", out)
    assert p.returncode == 0, p.stderr
    run = load_run(run_dir)
    source = out.read_text()
    assert source == run.source(run.best().genome_id)
    assert check_source(source).ok
    one_line_error(evolve("export", run_dir, "--out", out), "already exists")


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_export_git_has_one_commit_per_step(run_dir, tmp_path):
    repo = tmp_path / "history"
    p = evolve("export", run_dir, "best", "--git", repo)
    assert p.returncode == 0, p.stderr
    run = load_run(run_dir)
    best = run.best().genome_id
    log = subprocess.run("git log --oneline | wc -l", shell=True, cwd=repo, text=True,
                         capture_output=True)
    assert int(log.stdout) == len(run.lineage(best))
    assert (repo / "train.py").read_text() == run.source(best)
    head = subprocess.run(["git", "log", "-1", "--format=%B"], cwd=repo, text=True,
                          capture_output=True).stdout
    assert f"genome: {best}" in head and "val_bpb: " in head and "tokens_per_sec: " in head
    one_line_error(evolve("export", run_dir, "--git", repo), "already exists")


def test_export_tsv_has_one_row_per_evaluated_genome(run_dir, tmp_path):
    tsv = tmp_path / "results.tsv"
    p = evolve("export", run_dir, "--tsv", tsv)
    assert p.returncode == 0, p.stderr
    run = load_run(run_dir)
    lines = tsv.read_text().splitlines()
    assert lines[0] == "commit\tval_bpb\tmemory_gb\tstatus\tdescription"
    rows = [line.split("\t") for line in lines[1:]]
    evaluated = list(dict.fromkeys(run.evals[run.evals.kind.isin(["eval", "confirm"])].genome_id))
    assert [r[0] for r in rows] == [g[:7] for g in evaluated]
    keep = set(run.pareto().genome_id) | set(run.lineage(run.best().genome_id).genome_id)
    for (commit, bpb, mem, status, desc), gid in zip(rows, evaluated):
        g = run.df.set_index("genome_id").loc[gid]
        if g.status == "ok":
            assert bpb == f"{g.val_bpb:.6f}" and status == ("keep" if gid in keep else "discard")
            assert mem == f"{g.peak_memory_mb / 1024:.1f}"
        else:
            assert bpb == "0.000000" and status == "crash"
        assert desc.startswith(g.description)


def test_bad_input_is_one_line(run_dir, tmp_path):
    from genome.record import Genome, identity

    one_line_error(evolve("show", tmp_path), "not a run directory")
    # ... and where to find the ids that do exist
    one_line_error(evolve("lineage", run_dir, "zzzz"), "no genome 'zzzz'", "show lists the front",
                   f"python -m evolve export {run_dir} --tsv FILE")
    # An ambiguous prefix: add a genome whose id shares its first hex digit with another's.
    d = copy_run(run_dir, tmp_path)
    ids = load_run(d).df.genome_id
    base = TINY.read_text()
    source = next(s for s in (base + f"\nEXTRA = {i}\n" for i in range(10_000))
                  if identity(s)[0] == ids[0][0])
    archive = Archive.open(d)
    archive.add_genome(Genome.seed(source, "seed extra"), 0)
    archive.set_meta("fingerprint", "0" * 16)          # as if recorded on other data
    archive.close()
    one_line_error(evolve("lineage", d, ids[0][0]), "ambiguous")
    one_line_error(evolve("replay", d, ids[0]), "other data")
    assert not (load_run(d).evals.kind == "replay").any()
    # A run in which nothing has been scored yet.
    empty = tmp_path / "empty"
    archive = Archive.create(empty, {"config": {}, "task": small_task().to_dict(),
                                     "fingerprint": "x"})
    archive.add_genome(Genome.seed(base, "seed tiny.py"), 0)
    archive.close()
    one_line_error(evolve("show", empty), "no scored genome yet")
    one_line_error(evolve("export", empty, "--out", tmp_path / "x.py"), "no scored genome yet")
    # A file that is not SQLite where the archive should be.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "archive.sqlite").write_text("not a database")
    one_line_error(evolve("show", bad), "not a readable archive")
