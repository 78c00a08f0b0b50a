"""The contract check and the static check: one bad fixture per rule (tests/fixtures/genomes/bad,
each naming its expected code on line 1 and marking the offending line with `# <- bad`), and
clean genomes (seeds, fixture genomes, ordinary training-script idioms) that must pass."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from genome.contract import CheckReport, Problem, check_file, check_source
from genome.static_check import check_all, check_static
from tests.genome.genome_paths import ADVERSARIAL, BAD, parent_files, read

BAD_FILES = sorted(BAD.glob("*.py"))
HEADER = re.compile(r"^# expect: (?P<code>[\w-]+)(?: line (?P<line>\d+))?")


def expectation(path: Path) -> tuple[int, str]:
    text = read(path)
    m = HEADER.match(text)
    assert m, f"{path.name} has no '# expect: CODE' first line"
    if m.group("line"):
        return int(m.group("line")), m.group("code")
    lines = [i for i, line in enumerate(text.splitlines(), 1) if "# <- bad" in line]
    assert len(lines) == 1, f"{path.name} must mark exactly one line with '# <- bad'"
    return lines[0], m.group("code")


def test_every_rule_has_a_bad_fixture():
    codes = {expectation(p)[1] for p in BAD_FILES}
    rules = {"syntax", "harness-import", "harness-submit", "harness-private", "harness-unknown",
             "harness-assign", "evolve-module", "data-path", "result-channel", "builtins",
             "sys-modules", "monkeypatch", "secrets", "ctypes", "gc-objects", "frames",
             "dynamic-code", "undefined-name", "unresolved-import", "relative-import"}
    assert rules <= codes, f"rules without a bad fixture: {sorted(rules - codes)}"


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.stem)
def test_bad_fixture_is_reported_at_its_line(path):
    line, code = expectation(path)
    report = check_all(read(path))
    assert not report.ok
    assert any(p.line == line and p.code == code for p in report.problems), report.problems
    # One rule per fixture; a missing harness import also means harness.submit is not the
    # harness's, and `harness` is then an undefined name.
    allowed = {code, "harness-submit", "undefined-name"} if code == "harness-import" else {code}
    assert {p.code for p in report.problems} <= allowed, report.problems
    for p in report.problems:
        assert p.message and "\n" not in p.message


@pytest.mark.parametrize("path", parent_files(), ids=lambda p: p.name)
def test_seeds_and_fixture_genomes_pass(path):
    report = check_all(read(path))
    assert report.ok, report.lines(path.name)


def test_adversarial_fixtures_with_static_evidence_are_flagged():
    if not ADVERSARIAL.is_dir():
        pytest.skip("no adversarial fixtures")
    expected = {"fake_score.py": "result-channel", "snoop.py": "secrets", "not_python.py": "syntax",
                "weights_flood.py": "result-channel",     # socket(AF_UNIX, SOCK_STREAM, 0, fd)
                "parked_fds.py": "result-channel",        # socket(*[AF_UNIX, SOCK_STREAM, 0, fd])
                "alias_private.py": "harness-private",    # h = harness; h._send(...)
                "alias_forms.py": "harness-assign"}       # (h,) = (harness,), defaults, lists
    for name, code in expected.items():
        if (ADVERSARIAL / name).exists():
            assert code in {p.code for p in check_file(ADVERSARIAL / name).problems}, name
    if (ADVERSARIAL / "honest.py").exists():
        assert check_file(ADVERSARIAL / "honest.py").ok


CLEAN = '''"""A genome that names autoevolve, val.bin and AUTOEVOLVE_HOME in its docstring only."""
import gc
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from evolve import harness

os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
os.environ.setdefault("OMP_NUM_THREADS", "4")
WORKERS = int(os.environ.get("NUM_WORKERS", "1"))
torch.backends.cuda.matmul.allow_tf32 = True
gc.collect()
gc.freeze()


class Net(nn.Module):
    """Docstrings may say val_bpb and evolve.evaluation.scorer."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(harness.VOCAB_SIZE, harness.VOCAB_SIZE)

    def forward(self, x):
        return self.emb(x)


model = Net().to(harness.DEVICE)
compiled = torch.compile(model)
model.eval()
t0 = time.time()
for step, (inputs, targets) in enumerate(harness.train_batches(8)):
    loss = F.cross_entropy(compiled(inputs).flatten(0, 1), targets.flatten())
    loss.backward()
    if harness.progress() > 0.5:
        print(f"step {step} loss {loss.item():.3f} elapsed {time.time() - t0:.1f}s")
    harness.log(step, loss.item())
harness.submit(model)
'''


def test_ordinary_training_idioms_are_not_flagged():
    report = check_all(CLEAN)
    assert report.ok, report.lines("clean")


def test_report_is_a_frozen_value():
    report = check_source("x = (")
    assert isinstance(report, CheckReport) and isinstance(report.problems, tuple)
    assert report.problems == (Problem(1, "syntax", report.problems[0].message),)
    with pytest.raises(Exception):
        report.problems = ()  # type: ignore[misc]
    assert report.lines("f.py")[0].startswith("f.py:1: does not parse")


@pytest.mark.parametrize("source", ["", "\x00", "x = 1\n" * 3, "(" * 500 + ")" * 500,
                                    "\ufeffx = 1"])
def test_check_never_raises(source):
    assert isinstance(check_all(source), CheckReport)
    assert not check_source(source).ok


def test_problems_come_in_line_order_without_duplicates():
    source = ("import sys\nfrom evolve import harness\n"
              "a = sys.modules\nb = harness._t0\nc = sys.modules\nharness.submit(None)\n")
    problems = check_source(source).problems
    assert [p.line for p in problems] == [3, 4, 5]
    assert len(set(problems)) == len(problems)


def test_static_check_scopes():
    source = ("import torch\nfrom evolve import harness\n"
              "def f(a):\n    b = [a * i for i in range(3)]\n    return g(b) + LATER\n"
              "def g(b):\n    global LATE\n    LATE = 1\n    return sum(b)\n"
              "class C:\n    size = 3\n    def m(self):\n    " "    return self.size + LATE\n"
              "LATER = 2\n"
              "try:\n    import no_such_optional_module\nexcept ImportError:\n    pass\n"
              "harness.submit(None)\n")
    assert check_static(source).ok, check_static(source).problems
    assert [p.code for p in check_static("print(undefined_thing)\n").problems] == ["undefined-name"]
    assert check_static("from os import *\nprint(anything)\n").ok     # star import: unknowable
