"""`python -m evolve` as a user runs it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ADVERSARIAL, REPO


def evolve(*args, home=None):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if home:
        env["AUTOEVOLVE_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "evolve", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=300)


def test_eval_json_of_an_honest_genome(prepared, autoevolve_home):
    """The genome is docs/porting.md's worked example, so this also shows that it scores."""
    p = evolve("eval", str(REPO / "tests" / "fixtures" / "porting" / "ported.py"), "--device",
               "cpu", "--vocab-size", "512", "--budget", "2", "--json", home=autoevolve_home)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    for key in ("status", "val_bpb", "tokens_per_sec", "training_seconds", "total_seconds",
                "peak_memory_mb", "num_params", "reason"):
        assert key in d
    assert d["status"] == "ok" and d["val_bpb"] > 0, d


def test_eval_summary_of_a_bad_file(prepared, autoevolve_home):
    p = evolve("eval", str(ADVERSARIAL / "not_python.py"), "--device", "cpu", "--vocab-size",
               "512", home=autoevolve_home)
    assert p.returncode == 1
    lines = p.stdout.strip().splitlines()
    # the reason right under the status; no rows of unmeasured "-" fields
    assert lines[0] == "status: invalid" and lines[1].startswith("reason: not valid Python")
    assert not any(line.endswith(": -") for line in lines), lines
    assert "Traceback" not in p.stderr


def test_user_errors_are_one_line(tmp_path, capsys, monkeypatch):
    """One real subprocess for the exit code and stderr as a shell sees them; the other
    mistakes through the same main() in this process (a Python start each cost ~1.5 s)."""
    p = evolve("eval", str(tmp_path / "missing.py"), home=tmp_path)
    assert p.returncode == 2 and p.stderr.strip() == f"error: {tmp_path / 'missing.py'}: no such file"
    monkeypatch.setenv("AUTOEVOLVE_HOME", str(tmp_path))
    monkeypatch.chdir(REPO)

    def cli(*argv):
        from evolve.cli import main

        try:
            code = main(list(argv))
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err

    (tmp_path / "bin.py").write_bytes(b"\xff\xfe\x00binary")
    code, _, err = cli("eval", str(tmp_path / "bin.py"))
    assert code == 2 and "UTF-8" in err and "Traceback" not in err
    code, _, err = cli("eval", str(ADVERSARIAL / "honest.py"), "--device", "cpu", "--budget", "-5")
    assert code == 2 and "budget must be positive" in err
    code, _, err = cli("eval", str(ADVERSARIAL / "honest.py"), "--device", "cpu", "--dataset",
                       "climbmix")
    assert code == 2 and "python -m evolve prepare --dataset climbmix" in err
    code, out, _ = cli("--help")
    assert code == 0 and "prepare" in out and "--population" in out
    code, _, err = cli("--resume", str(tmp_path), "--population", "3")
    assert code == 2 and "drop --population" in err
    code, _, err = cli("--resume", str(tmp_path))
    assert code == 2 and "not a run directory" in err
    code, _, err = cli("--prune", "sometimes")
    assert code == 2 and "error: argument --prune: invalid choice" in err
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "archive.sqlite").write_bytes(b"garbage, not sqlite" * 100)
    code, _, err = cli("--resume", str(tmp_path / "corrupt"))
    assert code == 2 and "not a readable archive" in err and "Traceback" not in err
    code, _, err = cli("--seed", str(ADVERSARIAL / "not_python.py"), "--device", "cpu")
    assert code == 2 and "not_python.py" in err and "not valid Python" in err


def run_main(argv, capsys):
    """`python -m evolve ARGV` in this process: (exit code, stderr lines)."""
    import pytest

    from evolve.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code, capsys.readouterr().err.strip().splitlines()


def test_a_misspelled_flag_is_named_with_the_usage_of_its_command(capsys):
    code, err = run_main(["--populaton", "4"], capsys)
    assert code == 2 and err[0] == "error: unknown flag --populaton (did you mean --population?)"
    assert len(err) <= 3 and err[1].startswith("usage: python -m evolve ")
    code, err = run_main(["eval", "--budgt", "3", "x.py"], capsys)
    assert err[0] == "error: unknown flag --budgt (did you mean --budget?)"
    assert len(err) <= 3 and err[1].startswith("usage: python -m evolve eval ")
    code, err = run_main(["show", "RUN", "--budget", "3"], capsys)   # run flag on a subcommand
    assert code == 2 and err[0] == "error: unknown flag --budget" and "evolve show" in err[1]


def test_zero_is_a_value_not_unset(capsys, tmp_path):
    for flag, words in (("--population", "--population must be at least 1"),
                        ("--max-failed-generations", "--max-failed-generations must be at least 1"),
                        ("--llm-concurrency", "--llm-concurrency must be at least 1")):
        code, err = run_main([flag, "0", "--device", "cpu", "--run-dir", str(tmp_path / "r")],
                             capsys)
        assert code == 2 and err == [f"error: {words}"]
        assert not (tmp_path / "r").exists()               # refused before anything was written


def test_a_start_that_cannot_work_fails_before_anything_is_written(capsys, tmp_path, monkeypatch):
    import socket

    import torch

    home = tmp_path / "home"
    monkeypatch.setenv("AUTOEVOLVE_HOME", str(home))
    run_dir = tmp_path / "run"
    base = ["--run-dir", str(run_dir), "--device", "cpu", "--seed", str(ADVERSARIAL / "honest.py")]
    # --llm-model with no endpoint configured: an error naming the variables, not a note
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    code, err = run_main([*base, "--llm-model", "some-model"], capsys)
    assert code == 2 and len(err) == 1 and "OPENAI_BASE_URL" in err[0] and "OPENAI_API_KEY" in err[0]
    # an endpoint that does not answer (a port nobody listens on)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    code, err = run_main([*base, "--llm-model", "some-model"], capsys)
    assert code == 2 and err[-1].startswith("error: LLM endpoint:"), err
    if not torch.cuda.is_available():               # cuda asked for on a machine without one
        code, err = run_main([*base[:2], "--device", "cuda"], capsys)
        assert code == 2 and "no GPU is visible" in err[-1] and "--device cpu" in err[-1]
    assert not run_dir.exists() and not home.exists()   # no run folder, no data prepared


def test_a_missing_seed_file_says_so(tmp_path):
    from evolve.cli import _load_seeds

    genomes, err = _load_seeds([str(tmp_path / "nothere.py")])
    assert genomes is None and err == f"seed {tmp_path / 'nothere.py'}: no such file"


def test_data_preparation_draws_no_progress_bars_into_a_log(capsys, tmp_path, monkeypatch):
    # stderr is captured here, not a terminal: a run started with output to a file or a pipe
    # must not fill it with the tokenizer's carriage-return bars.
    import evolve.data.prepare as prepare

    asked = {}

    def prepared_nothing(task, progress=True, log=print):
        asked["progress"] = progress
        return "no data here (test)"

    monkeypatch.setattr(prepare, "ensure_prepared", prepared_nothing)   # imported at call
    monkeypatch.setenv("AUTOEVOLVE_HOME", str(tmp_path / "home"))
    code, err = run_main(["--run-dir", str(tmp_path / "run"), "--device", "cpu",
                          "--seed", str(ADVERSARIAL / "honest.py")], capsys)
    assert code == 2 and err[-1] == "error: no data here (test)", err
    assert asked == {"progress": False}


def test_the_llm_line_says_who_decides_the_models_share():
    from evolve.cli import _llm_share_line
    from evolve.search.engine import EngineConfig

    two = (("a", 3.0), ("b", 1.0))
    line = _llm_share_line(EngineConfig(), two)
    assert line.startswith("share and model drawn by the operator bandit") and ":W" in line
    assert ":W" not in _llm_share_line(EngineConfig(), (("a", 1.0), ("b", 1.0)))
    assert _llm_share_line(EngineConfig(llm_share=0.5), two).startswith(
        "50% of offspring, model drawn by the operator bandit")
    assert _llm_share_line(EngineConfig(bandit=False), two) == "25% of offspring, models by weight"
    assert _llm_share_line(EngineConfig(operator_weights=(("tune", 1.0),), llm_share=0.1),
                           (("a", 1.0),)) == "10% of offspring"


def test_the_gpu_check_says_in_one_line_when_there_is_no_gpu():
    import shutil

    import pytest

    if shutil.which("nvidia-smi"):
        pytest.skip("an NVIDIA driver is here: the check would run for minutes")
    p = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and p.stdout.strip().splitlines() == [
        "gpu_check: no NVIDIA driver here (nvidia-smi not found); nothing checked"], (
        p.stdout, p.stderr)
