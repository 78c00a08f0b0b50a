"""Shared by the tests of evolve.inspect's tables, figures, page and report: one real run and
the helpers that check what is drawn and written.

`small_run_dir` is the session's one short real CPU run (`small_run` in tests/conftest.py, shared
with the engine tests): seeds tiny.py and the crashing adversarial genome, population 2, one
generation after the initial one, so it has a score, a crash, a confirmed best and children.
Tests that change a run change a copy (`copy_run`).
`only_failures_archive` writes a run with no score at all, in milliseconds.
"""

from __future__ import annotations

import io
import shutil
import time
from html.parser import HTMLParser

import pytest

from evolve.evaluation.result import Status, make_result
from evolve.search.archive import Archive
from tests.conftest import CRASH, TINY

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def small_run_dir(small_run):
    """The session's shared real run (tests/conftest.py): read it, or change a copy_run."""
    return small_run.dir


def copy_run(run_dir, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    return dst


def with_pruned_child(run_dir, tmp_path):
    """A copy of a run plus one child of its best genome that `--prune on` stopped at 20 % of
    its budget (status pruned, its partial curve, no score), finished after everything else."""
    from genome.record import Genome

    from evolve.inspect.run import load_run

    d = copy_run(run_dir, tmp_path)
    best = load_run(d).best()
    archive = Archive.open(d)
    parent = archive.genome(best.genome_id)
    child = Genome.child(parent.source + "\nHOPELESS_EDIT = 1\n", [parent], operator="constant",
                         description="LEARNING_RATE 0.003 -> 3.0")
    archive.add_genome(child, 1)
    archive.add_eval(child.id, make_result(
        Status.PRUNED, reason="stopped at 20 % of the budget: training loss there above 6.1",
        pruned_at=0.2, prune_bar=6.1, training_seconds=0.2, tokens=640,
        curve=((0.1, 9.5), (0.2, 9.0)), losses=((0, 9.5), (10, 9.0))),
        "eval", 1, "cpu", time.time() + 3600, time.time() + 3601)
    archive.close()
    return d, child.id


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
