"""Shared by the tests of evolve.inspect's tables, figures, page and report: one real run and
the helpers that check what is drawn and written.

`small_run_dir` is one short real CPU run, built once for the session: seeds tiny.py and the
crashing adversarial genome, population 1, one generation after the initial one; that is 3-4
trainings of ~1 s budget (the seed, its confirmation, one child and perhaps the child's
confirmation) plus a crash. Tests that change a run change a copy (`copy_run`).
`only_failures_archive` writes a run with no score at all, in milliseconds.
"""

from __future__ import annotations

import io
import shutil
from html.parser import HTMLParser

import pytest

from evolve.evaluation.result import Status, make_result
from evolve.inspect.run import load_run
from evolve.search.archive import Archive
from tests.conftest import ADVERSARIAL, FIXTURES, small_task

TINY = FIXTURES / "engine" / "tiny.py"
CRASH = ADVERSARIAL / "crash.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def small_run_dir(tmp_path_factory, prepared):
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


def only_failures_archive(d):
    """A run whose two seeds both failed (a timeout and a crash) in generation 0. The archive
    is returned open, as the engine holds it while a run is being written."""
    from genome.record import Genome

    seeds = [Genome.seed(TINY.read_text(), "seed tiny.py"), Genome.seed(CRASH.read_text(), "c")]
    archive = empty_archive(d, seeds)
    archive.add_eval(seeds[0].id, make_result(Status.TIMEOUT, reason="budget + grace ran out"),
                     "eval", 0, "cpu", 0.0, 1.0)
    archive.add_eval(seeds[1].id, make_result(Status.CRASH, reason="exit code 1",
                                              stderr_tail="Traceback\nValueError: shapes"),
                     "eval", 0, "cpu", 1.0, 2.0)
    archive.finish_generation(0, [], {"generation": 0, "failures": {"crash": 1, "timeout": 1}})
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


def parse_page(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page
