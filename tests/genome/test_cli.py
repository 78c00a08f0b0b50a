"""python -m genome, run as a real subprocess: list, mutate, cross, check, and bad input
(one line on stderr, a non-zero exit, never a traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from genome.contract import check_source
from genome.operators import CROSSOVERS, MUTATIONS
from genome.record import identity
from tests.genome.genome_paths import BAD, GENOMES, REPO, read

TINY = GENOMES / "tiny_gpt.py"
TINY_B = GENOMES / "tiny_gpt_b.py"


def run(*args: str | Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "genome", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_list_names_every_operator_once():
    proc = run("list")
    assert proc.returncode == 0
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert names == list(MUTATIONS) + list(CROSSOVERS)


def test_mutate_writes_child_to_stdout_and_description_to_stderr():
    proc = run("mutate", TINY, "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert check_source(proc.stdout).ok and identity(proc.stdout) != identity(read(TINY))
    (line,) = proc.stderr.splitlines()
    name, _, description = line.partition(": ")
    assert name in MUTATIONS and description
    assert run("mutate", TINY, "--seed", "3").stdout == proc.stdout      # reproducible


def test_mutate_with_a_named_operator():
    proc = run("mutate", TINY, "--operator", "window", "--seed", "1")
    assert proc.returncode == 0
    assert proc.stderr.startswith('window: WINDOW_PATTERN "SSL" -> ')
    assert 'WINDOW_PATTERN = "SSL"' not in proc.stdout


def test_cross_writes_a_child_of_both_parents():
    proc = run("cross", TINY, TINY_B, "--operator", "constants", "--seed", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("constants: constants from b: ")
    child = identity(proc.stdout)
    assert check_source(proc.stdout).ok
    assert child not in (identity(read(TINY)), identity(read(TINY_B)))


def test_check_passes_good_files_and_reports_bad_ones_by_line():
    good = run("check", TINY, TINY_B, GENOMES / "minimal.py")
    assert good.returncode == 0 and good.stdout == ""
    assert "3 file(s) pass the contract check" in good.stderr
    bad_files = [BAD / "bad_harness_private.py", BAD / "bad_secrets_key.py"]
    bad = run("check", TINY, *bad_files)
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == [
        f"{bad_files[0]}:5: harness._t0 is a harness internal [harness-private]",
        f"{bad_files[1]}:6: reads the secret environment variable OPENAI_API_KEY [secrets]"]
    assert "2 of 3 files failed" in bad.stderr


@pytest.mark.parametrize("args, code, message", [
    (["mutate", BAD / "bad_syntax.py"], 1, "bad_syntax.py:5: does not parse"),
    (["mutate", BAD / "bad_harness_import_missing.py"], 1, "does not import the harness"),
    (["mutate", GENOMES / "minimal.py"], 1, "no mutation applies to"),
    (["mutate", GENOMES / "minimal.py", "--operator", "constant"], 1,
     "operator constant does not apply to"),
    (["mutate", "no/such/file.py"], 2, "no/such/file.py cannot be read"),
    (["cross", TINY, BAD / "bad_frames.py"], 1, "bad_frames.py:6: "),
    (["mutate", TINY, "--operator", "no-such-operator"], 2, "invalid choice"),
    (["check"], 2, "the following arguments are required"),
])
def test_bad_input_is_one_clear_line(args, code, message):
    proc = run(*args)
    assert proc.returncode == code
    assert proc.stdout == ""
    assert message in proc.stderr
    if code == 1:
        assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("genome: ")
