"""genome.llm against a real OpenAI-compatible HTTP server on 127.0.0.1 (tests/llm_server.py),
through the real `openai` client: proposals, re-asks with the error fed back, accounting,
transport failures, and preflight. Every test makes a handful of local requests at most."""

from __future__ import annotations

import dataclasses
import random
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from genome.contract import check_source
from genome.llm import LLMClient, LLMSettings, parse_models, settings_from_env
from genome.prompt import Measurement, PromptContext
from genome.record import identity
from tests.genome.genome_paths import FIXTURES, REPO, read
from tests.llm_server import LLMServer, Reply

TINY = read(FIXTURES / "engine" / "tiny.py")
CTX = PromptContext(program=read(REPO / "program.md"),
                    tried=(("EMBED_DIM 32 -> 16", "val_bpb 3.1 (worse)"),))
MEAS = Measurement(val_bpb=3.0, tokens_per_sec=5000.0, peak_memory_mb=300.0, status="ok",
                   losses=((0, 6.2), (20, 4.0)))
KEY = "sk-test-secret-0123"

GOOD = ("DESCRIPTION: lower the learning rate for a steadier descent\n"
        "<<<<<<< SEARCH\nLEARNING_RATE = 0.003   # AdamW step size\n=======\n"
        "LEARNING_RATE = 0.002   # AdamW step size\n>>>>>>> REPLACE\n")
UNMATCHED = ("DESCRIPTION: bigger batch\n<<<<<<< SEARCH\nBATCH = 8\n=======\nBATCH = 16\n"
             ">>>>>>> REPLACE\n")
BROKEN = ("DESCRIPTION: oops\n<<<<<<< SEARCH\nclass Bigram(torch.nn.Module):\n=======\n"
          "class Bigram(torch.nn.Module:\n>>>>>>> REPLACE\n")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # Traffic stays on 127.0.0.1: a proxy from the environment must not take it elsewhere.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server():
    with LLMServer(models=("test-model", "other"), api_key=KEY) as s:
        yield s


def make_client(server: LLMServer, **kw) -> LLMClient:
    base = dict(models=(("test-model", 1.0),), base_url=server.url, api_key=KEY, timeout_s=5.0,
                max_retries=2, backoff_s=0.01, edit_retries=2)
    base.update(kw)
    return LLMClient(LLMSettings(**base))


def mutate(client: LLMClient, known=frozenset()):
    return client.propose_mutation(TINY, MEAS, CTX, known, random.Random(0))


def outcomes(proposal) -> list[str]:
    return [c.outcome for c in proposal.calls]


def test_good_edit_gives_a_child_that_keeps_the_contract(server):
    server.push(Reply(content=GOOD, usage=(1000, 80)))
    proposal = mutate(make_client(server))
    assert proposal.reason == "" and proposal.operator == "llm_mutate"
    assert proposal.child_source == TINY.replace("0.003", "0.002")
    assert check_source(proposal.child_source).ok
    assert proposal.description == "lower the learning rate for a steadier descent"
    (call,) = proposal.calls
    assert (call.model, call.prompt_tokens, call.completion_tokens, call.outcome, call.error) == \
        ("test-model", 1000, 80, "applied", "")
    assert call.latency_s > 0 and call.started_at > 0
    (request,) = server.chat_requests()
    assert request.body["model"] == "test-model" and request.body["temperature"] == 0.8
    assert "EMBED_DIM 32 -> 16 -> val_bpb 3.1 (worse)" in request.text()
    assert "LEARNING_RATE = 0.003" in request.text() and "## The harness API" in request.text()


def test_unmatched_edit_is_retried_with_the_error_fed_back(server):
    server.push(Reply(content=UNMATCHED), Reply(content=GOOD))
    proposal = mutate(make_client(server))
    assert outcomes(proposal) == ["apply_failed", "applied"]
    assert proposal.child_source is not None
    error = proposal.calls[0].error
    assert error.startswith("block 1: the SEARCH lines were not found")
    first, second = server.chat_requests()
    assert error not in first.text() and error in second.text()
    assert [m["role"] for m in second.body["messages"]] == ["system", "user", "assistant", "user"]


def test_invalid_python_then_a_good_edit(server):
    server.push(Reply(content=BROKEN), Reply(content=GOOD))
    proposal = mutate(make_client(server))
    assert outcomes(proposal) == ["invalid", "applied"]
    assert "does not parse" in proposal.calls[0].error
    assert proposal.calls[0].error in server.chat_requests()[1].text()


def test_copies_and_known_children_are_duplicates_and_retries_are_bounded(server):
    child = TINY.replace("0.003", "0.002")
    server.push(Reply(content="DESCRIPTION: same\n```python\n" + TINY + "```\n"),
                Reply(content=GOOD),
                Reply(content="DESCRIPTION: renamed\n```python\n"
                      + TINY.replace("Bigram", "Pair") + "```\n"),
                Reply(content=GOOD))
    proposal = mutate(make_client(server), known=frozenset({identity(child)}))
    assert proposal.child_source is None
    assert outcomes(proposal) == ["duplicate"] * 3
    assert proposal.reason.startswith("no usable child in 3 replies; last: ")
    assert "already evaluated" in proposal.calls[1].error
    assert len(server.chat_requests()) == 3                 # the fourth reply is never asked for
    assert proposal.prompt_tokens == 3 * 120 and proposal.completion_tokens == 3 * 30


def test_rate_limit_then_success_backs_off_and_records_both(server):
    server.push(Reply(status=429), Reply(status=429, headers=(("Retry-After-Ms", "20"),)),
                Reply(content=GOOD))
    proposal = mutate(make_client(server))
    assert outcomes(proposal) == ["error", "error", "applied"]
    assert proposal.calls[0].error.startswith("HTTP 429 from ")
    assert proposal.calls[0].prompt_tokens is None
    assert len(server.chat_requests()) == 3


def test_server_errors_are_retried_a_bounded_number_of_times(server):
    server.push(*[Reply(status=503)] * 5)
    proposal = mutate(make_client(server, max_retries=2))
    assert proposal.child_source is None
    assert outcomes(proposal) == ["error"] * 3                 # 1 + max_retries, no re-asks
    assert len(server.chat_requests()) == 3
    assert "HTTP 503" in proposal.reason


def test_a_slow_reply_times_out_once(server):
    server.push(Reply(content=GOOD, delay_s=5.0))
    proposal = mutate(make_client(server, timeout_s=0.3))
    assert proposal.child_source is None and outcomes(proposal) == ["error"]
    assert "within 0.3 s (timeout)" in proposal.reason
    assert len(server.chat_requests()) == 1


def test_a_trickling_reply_is_cut_by_the_watchdog(server):
    # Every byte arrives within the 0.3 s read timeout, so only the watchdog ends the wait.
    server.push(Reply(content=GOOD, trickle_s=0.1))
    proposal = mutate(make_client(server, timeout_s=0.3))
    assert proposal.child_source is None and outcomes(proposal) == ["error"]
    assert "within 0.3 s (timeout)" in proposal.reason
    assert len(server.chat_requests()) == 1


def test_empty_garbage_and_huge_replies_are_recorded(server):
    server.push(Reply(content=""), Reply(content="I think you should try a bigger model."),
                Reply(content="DESCRIPTION: big\n" + "x = 1\n" * 20000))
    proposal = mutate(make_client(server))
    assert proposal.child_source is None
    assert outcomes(proposal) == ["error", "apply_failed", "error"]
    errors = [c.error for c in proposal.calls]
    assert errors[0] == "the reply is empty"
    assert "no SEARCH/REPLACE blocks" in errors[1]
    assert errors[2].startswith("the reply is too long (120,017 characters")
    third = server.chat_requests()[2]
    assert len(third.text()) < 40_000                          # the huge reply is echoed cut


def test_a_body_that_is_not_a_completion_ends_the_proposal(server):
    server.push(Reply(body="<html>502 bad gateway</html>"), Reply(body='{"id": 1}'))
    client = make_client(server)
    first = mutate(client)
    second = mutate(client)
    for proposal in (first, second):
        assert proposal.child_source is None and outcomes(proposal) == ["error"]
    assert first.reason.startswith(f"the reply from {server.url} is not JSON")
    assert "is not a chat completion" in second.reason
    assert len(server.chat_requests()) == 2


def test_a_long_reasoning_section_does_not_count_against_the_size_cap(server):
    server.push(Reply(content="<think>" + "hmm, " * 20_000 + "</think>\n" + GOOD))
    proposal = mutate(make_client(server))
    assert outcomes(proposal) == ["applied"]
    assert proposal.description.startswith("lower the learning rate")


def test_missing_description_is_asked_for(server):
    server.push(Reply(content=GOOD.split("\n", 1)[1]), Reply(content=GOOD))
    proposal = mutate(make_client(server))
    assert outcomes(proposal) == ["apply_failed", "applied"]
    assert "DESCRIPTION" in proposal.calls[0].error


def test_crossover_shows_both_parents_and_edits_parent_a(server):
    b = TINY.replace("EMBED_DIM = 32", "EMBED_DIM = 64")
    server.push(Reply(content=GOOD.replace("DESCRIPTION: lower", "DESCRIPTION: take B's")))
    client = make_client(server)
    proposal = client.propose_crossover(TINY, MEAS, b, Measurement(status="crash"), CTX,
                                        frozenset(), random.Random(1))
    assert proposal.operator == "llm_cross" and outcomes(proposal) == ["applied"]
    assert proposal.child_source == TINY.replace("0.003", "0.002")
    text = server.chat_requests()[0].text()
    assert "EMBED_DIM = 64" in text and "EMBED_DIM = 32" in text


def test_concurrent_proposals_share_one_client(server):
    server.push(*[Reply(content=GOOD)] * 4)
    client = make_client(server, models=(("test-model", 1.0), ("other", 3.0)))
    with ThreadPoolExecutor(4) as pool:
        proposals = list(pool.map(lambda seed: client.propose_mutation(
            TINY, MEAS, CTX, frozenset(), random.Random(seed)), range(4)))
    assert all(p.child_source == TINY.replace("0.003", "0.002") for p in proposals)
    models = sorted(r.body["model"] for r in server.chat_requests())
    assert len(models) == 4 and set(models) <= {"test-model", "other"}


# -- preflight ---------------------------------------------------------------------------------

def test_preflight_passes_for_a_served_model(server):
    assert make_client(server).preflight() is None
    assert [r.path for r in server.requests] == ["/v1/models"]


def test_preflight_probes_an_unlisted_model(server):
    assert make_client(server, models=(("missing", 1.0),)).preflight().startswith(
        "model 'missing' does not answer at ")
    server.push(Reply(content="OK"))
    assert make_client(server, models=(("alias", 1.0),)).preflight() is None
    assert server.chat_requests()[-1].body["max_tokens"] == 1


def test_preflight_says_the_key_was_rejected_without_printing_it(server):
    reason = make_client(server, api_key="sk-wrong-key-4567").preflight()
    assert "rejected the API key (HTTP 401)" in reason and "OPENAI_API_KEY" in reason
    assert "sk-wrong-key-4567" not in reason
    assert "sk-wrong-key-4567" not in repr(make_client(server).settings)
    assert KEY not in repr(make_client(server).settings)


def test_preflight_fails_fast_on_an_unreachable_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = LLMSettings(models=(("m", 1.0),), base_url=f"http://127.0.0.1:{port}/v1",
                           api_key="x")
    reason = LLMClient(settings).preflight()
    assert reason.startswith(f"cannot reach the LLM endpoint http://127.0.0.1:{port}/v1")


# -- settings ----------------------------------------------------------------------------------

def test_models_spec_with_weights_and_ollama_tags():
    assert parse_models("a:3, b:1") == (("a", 3.0), ("b", 1.0))
    assert parse_models("qwen2.5-coder:7b") == (("qwen2.5-coder:7b", 1.0),)
    assert parse_models("mistral:7:2") == (("mistral:7", 2.0),)
    assert "positive" in parse_models("a:0")
    assert "twice" in parse_models("a,a:2")
    assert "empty" in parse_models(" , ")


def test_settings_from_env():
    assert settings_from_env(None, {"OPENAI_API_KEY": "k"}).startswith("LLM operators are off")
    off = settings_from_env("m", {})
    assert off.startswith("LLM operators are off") and "OPENAI_BASE_URL" in off
    hosted = settings_from_env("m", {"OPENAI_API_KEY": "k"})
    assert hosted.base_url == "https://api.openai.com/v1" and hosted.api_key == "k"
    local = settings_from_env("a:3,b", {"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"})
    assert local.models == (("a", 3.0), ("b", 1.0)) and local.api_key == "unused"
    assert "http://" in settings_from_env("m", {"OPENAI_BASE_URL": "localhost:8000"})
    assert dataclasses.replace(local, timeout_s=0).problem().startswith("the LLM timeout")
    assert local.worst_case_s() == 3 * (4 * 181.0 + 3 * 30.0)
