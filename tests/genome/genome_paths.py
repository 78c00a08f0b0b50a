"""Paths shared by the tests of genome/: fixture genomes, and the seeds once they exist.

`parent_files()` is every file the property tests vary: seeds/*.py (picked up automatically as
the seeds are written) plus the fixture genomes of tests/fixtures/genomes/*.py.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO / "seeds"
FIXTURES = REPO / "tests" / "fixtures"
GENOMES = FIXTURES / "genomes"
GOLDEN = GENOMES / "golden"
BAD = GENOMES / "bad"
ADVERSARIAL = FIXTURES / "adversarial"


def parent_files() -> list[Path]:
    seeds = sorted(p for p in SEEDS.glob("*.py") if not p.name.startswith("_"))
    return seeds + sorted(GENOMES.glob("*.py"))


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")
