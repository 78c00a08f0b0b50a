"""Looking at a run: notebooks/analysis.ipynb executed headless, `evolve report` files checked as
PNG and HTML, and write_plots on runs with no evaluations and with only failures.

One short real CPU run is built once for the module: seeds tiny.py and the crashing adversarial
genome, population 1, one generation after the initial one; that is 3-4 trainings of ~1 s
budget (the seed, its confirmation, one child and perhaps the child's confirmation) plus a crash.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from evolve.inspect import report
from evolve.search.archive import Archive
from evolve.evaluation.result import Status, make_result
from evolve.inspect.run import load_run
from tests.conftest import ADVERSARIAL, FIXTURES, REPO, small_task

TINY = FIXTURES / "engine" / "tiny.py"
CRASH = ADVERSARIAL / "crash.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NOTEBOOK = REPO / "notebooks" / "analysis.ipynb"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, prepared):
    from genome.record import Genome

    from evolve.search.engine import Engine, EngineConfig
    from evolve.evaluation.supervisor import Supervisor
    from evolve.search.workers import LocalMap

    task = small_task(budget_s=1.0)
    sup = Supervisor(task, prepared)
    # Population 1 with two seeds: generation 0 is just the seeds, generation 1 one child.
    config = EngineConfig(population=1, generations=1)
    d = tmp_path_factory.mktemp("reportrun") / "run"
    archive = Archive.create(d, {"config": config.to_dict(), "task": task.to_dict(),
                                 "fingerprint": sup.fingerprint})
    seeds = [Genome.seed(TINY.read_text(), "seed tiny.py"),
             Genome.seed(CRASH.read_text(), "seed crash.py")]
    Engine(archive, LocalMap(sup), config, seeds, log=lambda m: None, show_progress=False).run()
    archive.close()
    run = load_run(d)
    assert run.df.val_bpb.notna().any(), run.evals[["status", "reason"]]
    assert (run.evals.status == "crash").any(), run.evals[["status", "reason"]]
    return d


def copy_run(run_dir, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    return dst


def empty_archive(d, genomes=()):
    archive = Archive.create(d, {"config": {"population": 2}, "task": {}, "fingerprint": "x"})
    for g in genomes:
        archive.add_genome(g, 0)
    return archive


def check_png(path_or_bytes):
    import matplotlib.image

    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    assert data[:8] == PNG_MAGIC
    pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.shape[1] > 600
    return pixels


class Page(HTMLParser):
    """Tags, <img> sources and the text of each table (by class) of an HTML page."""

    def __init__(self):
        super().__init__()
        self.tags, self.images, self.tables, self._table = [], [], {}, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "table":
            self._table = a.get("class", "")
            self.tables[self._table] = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._table is not None:
            self.tables[self._table] += data


# -- the notebook ----------------------------------------------------------------------------------
def test_notebook_executes_headless(run_dir, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

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


# -- report files ----------------------------------------------------------------------------------
def test_report_writes_pngs_and_a_self_contained_page(run_dir, tmp_path, capsys):
    d = copy_run(run_dir, tmp_path)
    parser = argparse.ArgumentParser()
    report.add_parser(parser.add_subparsers())
    args = parser.parse_args(["report", str(d)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for name in ("progress.png", "pareto.png", "report.html"):
        assert (d / name).is_file() and f"wrote {d / name}" in out
    check_png(d / "progress.png")
    check_png(d / "pareto.png")
    page = Page()
    page.feed((d / "report.html").read_text(encoding="utf-8"))
    page.close()
    assert len(page.images) == 2
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        check_png(base64.b64decode(src[len(prefix):], validate=True))
    run = load_run(d)
    front = next(t for cls, t in page.tables.items() if "front" in cls.split())
    for gid in run.pareto().genome_id:
        assert gid[:8] in front
    failures = next(t for cls, t in page.tables.items() if "failures" in cls.split())
    assert "crash" in failures and "shapes do not match" in failures
    assert not set(page.tags) & {"script", "iframe", "link"}         # nothing fetched or run


def test_report_escapes_what_genomes_and_operators_wrote(run_dir, tmp_path):
    from genome.record import Genome

    d = copy_run(run_dir, tmp_path)
    run = load_run(d)
    best = run.best().genome_id
    archive = Archive.open(d)
    parent = archive.genome(best)
    child = Genome.child(parent.source + "\nX = '<script>alert(1)</script>'\n", [parent],
                         operator="llm", description='<b>bold</b> & "quoted"')
    archive.add_genome(child, 1)
    for kind in ("eval", "confirm"):                 # a confirmed new best: it heads the lineage
        res = make_result(Status.OK, val_bpb=float(run.best().val_bpb) - 0.1,
                          tokens_per_sec=1000.0)
        archive.add_eval(child.id, res, kind, 1, "cpu", 0.0, 1.0)
    archive.close()
    paths, err = report.write_report(d)
    assert err is None and len(paths) == 3
    text = (d / "report.html").read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    assert "script" not in page.tags and "b" not in page.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;" in text
    lineage = report.lineage_table(load_run(d))
    assert lineage.genome.iloc[-1] == child.id[:8] and lineage.change.iloc[-1] < 0


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
    from genome.record import Genome

    d = tmp_path / "run"
    seeds = [Genome.seed(TINY.read_text(), "seed tiny.py"), Genome.seed(CRASH.read_text(), "c")]
    archive = empty_archive(d, seeds)
    archive.add_eval(seeds[0].id, make_result(Status.TIMEOUT, reason="budget + grace ran out"),
                     "eval", 0, "cpu", 0.0, 1.0)
    archive.add_eval(seeds[1].id, make_result(Status.CRASH, reason="exit code 1",
                                              stderr_tail="Traceback\nValueError: shapes"),
                     "eval", 0, "cpu", 1.0, 2.0)
    archive.finish_generation(0, [], {"generation": 0, "failures": {"crash": 1, "timeout": 1}})
    paths = report.write_plots(d)
    assert sorted(p.name for p in paths) == ["pareto.png", "progress.png"]
    for p in paths:
        check_png(p)
    assert capfd.readouterr() == ("", "")
    run = load_run(d)
    fails = report.failure_table(run)
    assert set(fails.status) == {"crash", "timeout"}
    assert "ValueError: shapes" in set(fails.last_stderr_line)
    assert report.lineage_table(run).empty and report.front_table(run).empty
    paths, err = report.write_report(d)                   # the page works without a score too
    assert err is None and len(paths) == 3
    archive.close()


def test_write_plots_never_raises(tmp_path, capfd):
    assert report.write_plots(tmp_path / "missing") == []
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "archive.sqlite").write_bytes(b"not a database at all" * 100)
    assert report.write_plots(tmp_path / "junk") == []
    assert capfd.readouterr() == ("", "")


# -- tables ----------------------------------------------------------------------------------------
def test_progress_marks_the_confirmed_best_and_failures(run_dir):
    run = load_run(run_dir)
    p = report.progress_frame(run)
    scored = run.evals[run.evals.kind.isin(["eval", "confirm"])]
    assert list(p.eval_id) == sorted(scored.eval_id) and list(p["index"]) == list(range(len(p)))
    assert (p.status == "crash").sum() == (scored.status == "crash").sum() >= 1
    assert p.val_bpb[p.status != "ok"].isna().all()
    ok = p[p.val_bpb.notna()]
    assert (ok.running_best.diff().dropna() <= 0).all()             # never gets worse
    conf = p[p.confirmed_bpb.notna()]
    confirmed = run.df[run.df.n_ok >= 2]
    assert len(conf) >= 1 and set(conf.genome_id) <= set(confirmed.genome_id)
    assert conf.confirmed_bpb.iloc[-1] == pytest.approx(run.best().val_bpb)


def test_fronts_and_lineage_follow_the_run(run_dir):
    run = load_run(run_dir)
    fronts = report.fronts_by_generation(run)
    last = fronts[fronts.generation == fronts.generation.max()]
    assert set(last.genome_id) == set(run.pareto().genome_id)
    assert list(report.front_table(run).genome) == [g[:8] for g in run.pareto().genome_id]
    assert list(report.front_history(run).generation) == [0, 1]
    lineage = report.lineage_table(run)
    chain = run.lineage(run.best().genome_id)
    assert list(lineage.genome) == [g[:8] for g in chain.genome_id]
    assert lineage["diff"].iloc[0] == "" and all(d.startswith("--- a/")
                                                for d in lineage["diff"].iloc[1:])
    assert "noise_floor: " in report.noise_text(run)


def test_operator_stats_counts_and_llm_tokens(run_dir):
    import pandas as pd

    run = load_run(run_dir)
    stats = report.operator_stats(run).set_index("operator")
    kids = run.df[run.df.operator != "seed"]
    assert stats.loc["all", "children"] == len(kids) >= 1
    assert stats.loc["all", "valid"] == kids.val_bpb.notna().sum()
    assert "llm_tokens_per_improvement" not in stats.columns        # no LLM in this run
    df = pd.DataFrame({
        "genome_id": ["s", "a", "b", "c", "d"], "parent_ids": [(), ("s",), ("s",), ("a",), ("s",)],
        "operator": ["seed", "llm", "llm", "llm", "constant"],
        "status": ["ok", "ok", "ok", "crash", "pending"],
        "val_bpb": [2.0, 1.9, 2.1, float("nan"), float("nan")],
        "on_front": [False, True, False, False, False]})
    stats = report.operator_counts(df).set_index("operator")       # a run from before LLMs
    llm = stats.loc["llm"]
    assert (llm.children, llm.evaluated, llm.valid, llm.improved, llm.on_front) == (3, 3, 2, 1, 1)
    assert llm.valid_rate == pytest.approx(2 / 3) and llm.improved_rate == pytest.approx(1 / 3)
    assert stats.loc["constant", "evaluated"] == 0 and pd.isna(stats.loc["constant", "valid_rate"])
    assert "llm_tokens" not in stats.columns
    df["prompt_tokens"] = [None, 100, 200, 300, None]
    df["completion_tokens"] = [None, 10, 20, 30, None]
    stats = report.operator_counts(df).set_index("operator")
    assert stats.loc["llm", "llm_tokens"] == 660
    assert stats.loc["llm", "llm_tokens_per_improvement"] == 660
    assert pd.isna(stats.loc["constant", "llm_tokens_per_improvement"])
    # Calls that produced no child cost tokens too: counted when run.llm_calls is given.
    calls = pd.DataFrame({"operator": ["llm", "llm", "llm_rewrite"], "genome_id": ["a", None, None],
                          "prompt_tokens": [100, 500, 70], "completion_tokens": [10, 0, 7]})
    stats = report.operator_counts(df, calls).set_index("operator")
    assert stats.loc["llm", "llm_tokens_per_improvement"] == 610
    rewrite = stats.loc["llm_rewrite"]                  # proposals that never became a child
    assert rewrite.children == 0 and rewrite.llm_tokens == 77
    assert stats.loc["all", "llm_tokens"] == 687


def test_locate_run_prefers_the_environment_then_the_newest(tmp_path, run_dir):
    assert report.locate_run({"EVOLVE_RUN": str(run_dir)}) == (run_dir, None)
    path, err = report.locate_run({"EVOLVE_RUN": str(tmp_path)})
    assert path is None and "EVOLVE_RUN" in err
    path, err = report.locate_run({}, root=tmp_path)
    assert path is None and "python -m evolve" in err
    for name, mtime in (("b-old", 1_000_000), ("a-new", 2_000_000)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "archive.sqlite").write_bytes(b"")
        os.utime(tmp_path / name / "archive.sqlite", (mtime, mtime))
    assert report.locate_run({}, root=tmp_path) == (tmp_path / "a-new", None)
