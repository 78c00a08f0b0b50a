"""`evolve report` and what the engine calls: files checked as PNG and HTML, write_plots on runs
with no evaluations and with only failures, locate_run, and notebooks/analysis.ipynb executed
headless on the shared real run (see conftest.py)."""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys

from evolve.inspect import report
from evolve.inspect.run import load_run
from tests.conftest import REPO
from tests.evolve.inspect.conftest import (TINY, check_png, copy_run, empty_archive,
                                           only_failures_archive, parse_page, with_pruned_child)

NOTEBOOK = REPO / "notebooks" / "analysis.ipynb"


# -- the notebook ----------------------------------------------------------------------------------
def test_notebook_executes_headless(small_run_dir, monkeypatch, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    # the shared run, plus a child stopped by the pruner (a status only --prune on makes)
    run_dir, pruned = with_pruned_child(small_run_dir, tmp_path)
    monkeypatch.setenv("EVOLVE_RUN", str(run_dir))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Raises CellExecutionError (the test fails) on the first cell that raises.
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2                                          # pareto and progress
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert str(run_dir) in text and "noise_floor: " in text
    assert "1 judged hopeless, 1 of them stopped" in text, text
    last = nb.cells[-1].outputs[-1]["data"]["text/plain"]          # the pruned runs' table
    assert pruned in last and "pruned" in last


def test_locate_run_prefers_the_environment_then_the_newest(tmp_path, small_run_dir):
    assert report.locate_run({"EVOLVE_RUN": str(small_run_dir)}) == (small_run_dir, None)
    path, err = report.locate_run({"EVOLVE_RUN": str(tmp_path)})
    assert path is None and "EVOLVE_RUN" in err
    path, err = report.locate_run({}, root=tmp_path)
    assert path is None and "python -m evolve" in err
    for name, mtime in (("b-old", 1_000_000), ("a-new", 2_000_000)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "archive.sqlite").write_bytes(b"")
        os.utime(tmp_path / name / "archive.sqlite", (mtime, mtime))
    assert report.locate_run({}, root=tmp_path) == (tmp_path / "a-new", None)


# -- report files ----------------------------------------------------------------------------------
def test_report_writes_pngs_and_a_self_contained_page(small_run_dir, tmp_path, capsys):
    d = copy_run(small_run_dir, tmp_path)
    parser = argparse.ArgumentParser()
    report.add_parser(parser.add_subparsers())
    args = parser.parse_args(["report", str(d)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for name in ("progress.png", "pareto.png", "report.html"):
        assert (d / name).is_file() and f"wrote {d / name}" in out
    check_png(d / "progress.png")
    check_png(d / "pareto.png")
    page = parse_page((d / "report.html").read_text(encoding="utf-8"))
    prefix = "data:image/png;base64,"
    assert all(src.startswith(prefix) for src in page.images)
    # The page embeds the very PNGs written beside it.
    assert [base64.b64decode(src[len(prefix):], validate=True) for src in page.images] == \
        [(d / "progress.png").read_bytes(), (d / "pareto.png").read_bytes()]
    run = load_run(d)
    front = next(t for cls, t in page.tables.items() if "front" in cls.split())
    for gid in run.pareto().genome_id:
        assert gid[:8] in front


def test_report_command_bad_input_is_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "evolve", "report", str(tmp_path / "nowhere")],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nowhere" in lines[0], p.stderr


# -- write_plots -----------------------------------------------------------------------------------
def test_write_plots_on_a_run_without_evaluations(tmp_path, capfd):
    from genome.record import Genome

    d = tmp_path / "run"
    archive = empty_archive(d, [Genome.seed(TINY.read_text(), "seed tiny.py")])
    archive.plan_generation(0, archive.genome_ids())
    paths = report.write_plots(d)
    archive.close()
    assert sorted(p.name for p in paths) == ["pareto.png", "progress.png"]
    for p in paths:
        check_png(p)
    assert capfd.readouterr() == ("", "")


def test_write_plots_on_a_run_with_only_failures(tmp_path, capfd):
    d = tmp_path / "run"
    archive = only_failures_archive(d)
    paths = report.write_plots(d)
    assert sorted(p.name for p in paths) == ["pareto.png", "progress.png"]
    for p in paths:
        check_png(p)
    assert capfd.readouterr() == ("", "")
    paths, err = report.write_report(d)                   # the page works without a score too
    assert err is None and len(paths) == 3
    archive.close()


def test_write_plots_never_raises(tmp_path, capfd):
    assert report.write_plots(tmp_path / "missing") == []
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "archive.sqlite").write_bytes(b"not a database at all" * 100)
    assert report.write_plots(tmp_path / "junk") == []
    assert capfd.readouterr() == ("", "")
