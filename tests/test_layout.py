"""Imports point one way: the trusted evaluation side depends on nothing that searches or shows.

Every module of evolve/, genome/ and kernels/ is parsed with `ast` (lazy imports inside
functions included) and each import is checked against the rules below. The rules are the
design in one table; a wrong-way import fails here with the file, line and rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("evolve", "genome", "kernels")

# (importer prefix, forbidden prefix, why). Prefixes are dotted module names.
RULES = (
    ("evolve.evaluation", "evolve.search", "the code that decides a score never depends on the search"),
    ("evolve.evaluation", "evolve.inspect", "the code that decides a score never depends on inspection"),
    ("evolve.evaluation", "evolve.cli", "the code that decides a score never depends on the CLI"),
    ("evolve.evaluation", "genome", "the trusted side never imports genome code"),
    ("evolve.data", "evolve.search", "data preparation is below the search"),
    ("evolve.data", "evolve.inspect", "data preparation is below inspection"),
    ("evolve.data", "genome", "data preparation never imports genome code"),
    ("evolve.harness", "evolve.data", "the genome's API reaches the trusted side only by the channel"),
    ("evolve.harness", "evolve.search", "the genome's API knows nothing of the search"),
    ("evolve.harness", "evolve.inspect", "the genome's API knows nothing of inspection"),
    ("evolve.search", "evolve.inspect", "the search never depends on what is shown to people"),
    ("evolve.search", "evolve.cli", "the search never depends on the CLI"),
    ("genome", "evolve", "genome/ never imports the engine or the trusted side"),
    ("kernels", "evolve", "kernels/ are plain tensor code"),
    ("kernels", "genome", "kernels/ are plain tensor code"),
)
# evolve.harness may import exactly this from the trusted side: the wire format.
HARNESS_MAY_IMPORT = {"evolve.evaluation.channel", "evolve.evaluation"}
# Only these may import evolve.inspect (besides evolve.inspect itself).
INSPECT_IMPORTERS = ("evolve.cli", "evolve")      # "evolve" is evolve/__init__.py (load_run)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every module this source imports, at any depth."""
    found = []
    package = module if module.count(".") == 0 else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:                       # relative: resolve against the package
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # `from evolve import inspect` imports the submodule evolve.inspect
            found += [(node.lineno, f"{name}.{a.name}") for a in node.names]
    return found


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(source: str, module: str) -> list[str]:
    out = []
    for line, name in imports_of(source, module):
        for importer, forbidden, why in RULES:
            if within(module, importer) and within(name, forbidden):
                if module == "evolve.harness" and name in HARNESS_MAY_IMPORT:
                    continue
                out.append(f"{module}:{line} imports {name}: {why}")
        if within(name, "evolve.inspect") and not within(module, "evolve.inspect") \
                and module not in INSPECT_IMPORTERS:
            out.append(f"{module}:{line} imports {name}: only the CLI, evolve.load_run and "
                       "notebooks may import evolve.inspect")
    return out


def all_modules():
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            yield path, module_name(path)


def test_imports_point_one_way():
    problems = []
    for path, module in all_modules():
        problems += violations(path.read_text(), module)
    assert not problems, "\n".join(problems)


def test_every_package_says_what_lives_there():
    for pkg in ("evolve/data", "evolve/evaluation", "evolve/search", "evolve/inspect"):
        doc = ast.get_docstring(ast.parse((REPO / pkg / "__init__.py").read_text()))
        assert doc and "import" in doc, f"{pkg}/__init__.py needs a docstring saying who may import it"


@pytest.mark.parametrize("module, source", [
    ("evolve.evaluation.scorer", "from evolve.search.engine import Engine\n"),
    ("evolve.evaluation.supervisor", "def f():\n    import genome.record\n"),
    ("evolve.evaluation.sandbox", "from evolve import inspect\n"),
    ("evolve.evaluation.task", "from ..search import archive\n"),
    ("evolve.search.engine", "from evolve.inspect.run import noise_floor_of\n"),
    ("genome.record", "from evolve.search import engine\n"),
    ("kernels.rope", "import evolve.evaluation.result\n"),
    ("evolve.harness", "from evolve.data.loader import eval_rows\n"),
    ("evolve.data.prepare", "from evolve.inspect.report import write_plots\n"),
])
def test_a_wrong_way_import_is_caught(module, source):
    assert violations(source, module), f"{source!r} in {module} should break a rule"


@pytest.mark.parametrize("module, source", [
    ("evolve.harness", "from evolve.evaluation import channel\n"),
    ("evolve.cli", "from evolve.inspect.report import write_plots\n"),
    ("evolve.search.engine", "from evolve.evaluation.result import Status\n"),
    ("evolve.evaluation.supervisor", "from evolve.data.loader import eval_rows\n"),
])
def test_a_right_way_import_passes(module, source):
    assert violations(source, module) == []
