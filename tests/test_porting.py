"""docs/porting.md's worked example: it keeps the contract and scores on the CPU task, and the
guide's links point at files that exist."""

from __future__ import annotations

import re

from tests.conftest import FIXTURES, REPO

PORTED = FIXTURES / "porting" / "ported.py"


def test_the_guide_links_to_files_that_exist():
    text = (REPO / "docs" / "porting.md").read_text()
    links = re.findall(r"\]\((\.\./[^)#]+)\)", text)
    assert "../tests/fixtures/porting/ported.py" in links
    for link in links:
        assert (REPO / "docs" / link).resolve().exists(), link


def test_the_worked_example_passes_the_check():
    """It scores too: tests/evolve/test_cli.py evaluates it with `python -m evolve eval --json`."""
    from genome.contract import check_source

    source = PORTED.read_text()
    report = check_source(source)
    assert report.ok, report.lines(PORTED.name)
    assert source.count("PORTED") >= 6
