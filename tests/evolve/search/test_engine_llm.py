"""LLM offspring in a real engine run: the real openai client against a local scripted
OpenAI-compatible server, real evaluations, accounting in the archive."""

from __future__ import annotations

import dataclasses

from evolve.search.archive import Archive
from evolve.search.engine import Engine, EngineConfig
from evolve.inspect.run import load_run
from tests.conftest import FIXTURES, REPO, small_task
from tests.llm_server import LLMServer, Reply

TINY = FIXTURES / "engine" / "tiny.py"
EMBED = "EMBED_DIM = 32          # width of the token embedding"


def edit(description: str, old: str, new: str) -> str:
    return (f"DESCRIPTION: {description}\n\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n"
            ">>>>>>> REPLACE\n")


def test_llm_children_are_evaluated_and_accounted(prepared, tmp_path):
    from genome.llm import LLMClient, settings_from_env
    from genome.record import Genome

    from evolve.search.proposals import Proposer
    from evolve.evaluation.supervisor import Supervisor
    from evolve.search.workers import LocalMap

    tiny = TINY.read_text()
    replies = [
        # proposal 1: an edit that does not apply, then a good one (the error is fed back)
        Reply(content=edit("lower the LR", "LEARNING_RATE = 0.5", "LEARNING_RATE = 0.1")),
        Reply(content=edit("lower the learning rate to 0.002",
                           "LEARNING_RATE = 0.003   # AdamW step size",
                           "LEARNING_RATE = 0.002   # AdamW step size"), usage=(900, 40)),
        # proposal 2: rate limited, then a copy of the parent, then invalid Python, then good
        Reply(status=429, content=None, body='{"error": {"message": "slow down"}}'),
        Reply(content="DESCRIPTION: nothing\n```python\n" + tiny + "\n```\n"),
        Reply(content=edit("broken", EMBED, "EMBED_DIM = = 32")),
        Reply(content=edit("wider embedding, 48 channels", EMBED, EMBED.replace("32", "48"))),
    ]
    with LLMServer(replies=replies, api_key="k") as server:
        settings = settings_from_env("test-model", env={"OPENAI_BASE_URL": server.url,
                                                        "OPENAI_API_KEY": "k"})
        settings = dataclasses.replace(settings, backoff_s=0.05, timeout_s=20, edit_retries=3)
        client = LLMClient(settings)
        assert client.preflight() is None
        proposer = Proposer(client, (REPO / "program.md").read_text(), concurrency=1)
        task = small_task(budget_s=1.0)
        sup = Supervisor(task, prepared)
        config = EngineConfig(population=2, generations=1, llm_share=1.0, confirm=False)
        archive = Archive.create(tmp_path / "run", {"config": config.to_dict(),
                                                    "task": task.to_dict(),
                                                    "fingerprint": sup.fingerprint})
        logs: list[str] = []
        engine = Engine(archive, LocalMap(sup), config, [Genome.seed(tiny, "seed tiny.py")],
                        log=logs.append, show_progress=False, proposer=proposer)
        assert engine.run() == 0
        archive.close()
        proposer.close()
        texts = [r.text() for r in server.chat_requests()]
    assert "were not found" in texts[1]                  # the failed edit was fed back
    run = load_run(tmp_path / "run")
    llm = run.df[run.df.operator.isin(["llm_mutate", "llm_cross"])]
    assert set(llm.description) == {"lower the learning rate to 0.002", "wider embedding, 48 channels"}
    assert (llm.prompt_tokens > 0).all() and (llm.llm_model == "test-model").all()
    assert (llm.generation == 1).all() and llm.n_evals.min() == 1
    # the model is an arm of the operator bandit, credited with both its children
    assert run.operators.set_index("operator").loc["llm:test-model", "children"] == 2
    outcomes = list(run.llm_calls.outcome)
    assert outcomes.count("applied") == 2 and "apply_failed" in outcomes
    assert "duplicate" in outcomes and "invalid" in outcomes
    assert any("workers waited" in line for line in logs)
    assert "tokens in total" in logs[-1]
    # `python -m evolve prompt` shows what the model would see next: the ideas already tried.
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "evolve", "prompt", str(tmp_path / "run"),
                        str(llm.genome_id.iloc[0])], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0 and "===== user =====" in p.stdout
    assert "lower the learning rate to 0.002" in p.stdout and "## The harness API" in p.stdout


def test_llm_off_without_endpoint_says_why(monkeypatch):
    from genome.llm import settings_from_env

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    reason = settings_from_env("some-model")
    assert isinstance(reason, str) and "off" in reason


def test_unreachable_endpoint_fails_fast_at_start(tmp_path, autoevolve_home, prepared):
    import os
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:                 # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), "AUTOEVOLVE_HOME": str(autoevolve_home),
           "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "OPENAI_API_KEY": "k"}
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "evolve", "--device", "cpu", "--vocab-size", "512",
                        "--seed", str(TINY), "--llm-model", "m", "--run-dir", str(tmp_path / "r")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "LLM endpoint" in p.stderr and "Traceback" not in p.stderr
    assert time.monotonic() - t < 60
