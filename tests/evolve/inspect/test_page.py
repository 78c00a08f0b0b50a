"""evolve.inspect.page: report.html of the shared real run (see conftest.py) is one
self-contained page with the tables people compare, and escapes what genomes and operators wrote."""

from __future__ import annotations

import base64

from evolve.evaluation.result import Status, make_result
from evolve.inspect import page, tables
from evolve.inspect.run import load_run
from evolve.search.archive import Archive
from tests.evolve.inspect.conftest import copy_run, only_failures_archive, parse_page

IMAGES = {"progress.png": b"progress PNG bytes", "pareto.png": b"pareto PNG bytes"}


def test_page_is_self_contained_with_the_tables(small_run_dir):
    run = load_run(small_run_dir)
    html = parse_page(page.report_html(run, IMAGES))
    prefix = "data:image/png;base64,"
    assert [base64.b64decode(src[len(prefix):], validate=True) for src in html.images
            if src.startswith(prefix)] == list(IMAGES.values())
    front = next(t for cls, t in html.tables.items() if "front" in cls.split())
    for gid in run.pareto().genome_id:
        assert gid[:8] in front
    failures = next(t for cls, t in html.tables.items() if "failures" in cls.split())
    assert "crash" in failures and "shapes do not match" in failures
    assert not set(html.tags) & {"script", "iframe", "link"}         # nothing fetched or run


def test_page_escapes_what_genomes_and_operators_wrote(small_run_dir, tmp_path):
    from genome.record import Genome

    d = copy_run(small_run_dir, tmp_path)
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
    run = load_run(d)
    lineage = tables.lineage_table(run)
    assert lineage.genome.iloc[-1] == child.id[:8] and lineage.change.iloc[-1] < 0
    text = page.report_html(run, IMAGES)
    html = parse_page(text)
    assert "script" not in html.tags and "b" not in html.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;" in text


def test_page_of_a_run_with_only_failures(tmp_path):
    archive = only_failures_archive(tmp_path / "run")
    html = parse_page(page.report_html(load_run(tmp_path / "run"), IMAGES))
    failures = next(t for cls, t in html.tables.items() if "failures" in cls.split())
    assert "timeout" in failures and "ValueError: shapes" in failures
    assert "front" not in " ".join(html.tables)                      # "no scored genome yet"
    archive.close()
