"""LLM mutation and LLM crossover: ask an OpenAI-compatible chat endpoint for a change, apply it,
vet the child, and re-ask with the problem fed back, a bounded number of times.

    settings = settings_from_env("qwen2.5-coder:32b:3,gpt-4.1-mini:1")   # or a one-line reason
    client = LLMClient(settings)
    problem = client.preflight()            # None, or why the endpoint cannot be used
    proposal = client.propose_mutation(parent_src, parent_meas, ctx, known_ids, rng)
    proposal.child_source, proposal.description, proposal.calls    # calls: tokens, latency, ...

Endpoint and key come from OPENAI_BASE_URL and OPENAI_API_KEY, so any OpenAI-compatible server
works (vLLM, Ollama, llama.cpp server, hosted APIs). A base URL without a key is a local server
and gets a placeholder key; a key without a base URL means api.openai.com. `--llm-model` names
one model or several with weights, "a:3,b:1"; a trailing `:<number>` is a weight, so Ollama
tags such as "qwen2.5-coder:7b" need none and a numeric tag takes an explicit one ("m:7:1").
Prompts on seeds/baseline.py are ~24k characters bare and up to ~41k (mutation) or ~58k
(crossover) with a full context, i.e. roughly 7-17k tokens: give local servers a context of
32k tokens (Ollama's default is much smaller and cuts the prompt silently).

One proposal = up to 1 + edit_retries replies of the same model: the one the caller names (the
engine's operator bandit draws it), else one drawn by weight from `rng`. A
reply is used when it parses, its edits apply (genome.edits) and the child passes
genome.edits.vet_child (contract, static check, new identity, not a near duplicate). Each
HTTP call becomes a CallRecord with its outcome:

    applied       the child is returned
    apply_failed  no description, malformed or unmatched edit blocks    -> re-asked
    invalid       the child does not parse or breaks the contract       -> re-asked
    duplicate     same code as a parent, a known identity, or a near copy -> re-asked
    error         HTTP or transport failure, timeout, non-JSON body (ends the proposal); an
                  empty reply or one over max_response_chars (re-asked)

Time is bounded: one HTTP attempt waits at most timeout_s plus a 1 s grace (a watchdog thread
ends the wait even when a server trickles bytes, which a per-read timeout never catches); 429, 408, 409, 5xx and refused connections are retried up to
max_retries times with exponential backoff (backoff_s * 2**k, Retry-After honoured, each wait
at most MAX_BACKOFF_S); a timeout is not retried. So one proposal waits at most
    (1 + edit_retries) * ((1 + max_retries) * (timeout_s + 1) + max_retries * MAX_BACKOFF_S)
(LLMSettings.worst_case_s); in practice a failed call ends the proposal, so re-asks follow only
replies that arrived. The openai client's own retries are off (max_retries=0) so that this
bound holds.

Thread safety: an LLMClient holds immutable settings and one openai.OpenAI client (thread-safe),
and keeps no other state, so proposals may run concurrently from several threads. The API key
is never printed: it is hidden from repr and scrubbed from recorded error text.

What it does not do: choose parents, build the PromptContext, store calls, or evaluate (the
engine does); no streaming, no dollar costs (tokens are recorded; prices differ per provider).
"""

from __future__ import annotations

import math
import os
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import openai

from genome.edits import apply_response, parse_response, strip_thinking, vet_child
from genome.prompt import Measurement, PromptContext, crossover_prompt, mutation_prompt, \
    retry_message

OUTCOMES = ("applied", "apply_failed", "invalid", "duplicate", "error")
DEFAULT_BASE_URL = "https://api.openai.com/v1"
LOCAL_KEY = "unused"          # local servers (Ollama, llama.cpp) ignore the key; openai needs one
MAX_BACKOFF_S = 30.0          # longest wait between two attempts of one call
PREFLIGHT_S = 10.0            # preflight answers within this, or the endpoint is unreachable
WATCHDOG_GRACE_S = 1.0        # past timeout_s before the watchdog gives up on an attempt
RETRY_STATUS = {408, 409, 429}   # plus every 5xx
REPLY_ECHO_CHARS = 4000       # an over-long reply is echoed back to the model cut to this


@dataclass(frozen=True)
class LLMSettings:
    models: tuple[tuple[str, float], ...]     # (model name, weight > 0)
    base_url: str
    api_key: str = field(repr=False)           # never printed
    timeout_s: float = 180.0                   # one HTTP attempt (a local 7B model writes a whole
                                               # 350-line file in ~2-3 min on a small GPU)
    max_retries: int = 3                       # per call, on 429 / 408 / 409 / 5xx / refused
    max_response_chars: int = 60_000           # ~4x the 15k-character baseline genome
    temperature: float = 0.8
    edit_retries: int = 2                      # re-asks with the problem fed back
    backoff_s: float = 1.0                     # first wait between attempts; doubles each time
    max_tokens: int | None = None              # sent as max_tokens when set

    def problem(self) -> str | None:
        """A one-line reason these settings cannot work, else None."""
        if not self.models:
            return "no LLM model given (--llm-model)"
        for name, weight in self.models:
            if not name:
                return "an LLM model name is empty (--llm-model)"
            if not (math.isfinite(weight) and weight > 0):
                return f"LLM model {name}: the weight must be a positive number"
        if not self.base_url.startswith(("http://", "https://")):
            return f"OPENAI_BASE_URL must start with http:// or https:// (got {self.base_url!r})"
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            return "the LLM timeout must be a positive number of seconds"
        if self.max_retries < 0 or self.edit_retries < 0:
            return "LLM retries must be 0 or more"
        if self.max_response_chars < 1000:
            return "max_response_chars must be at least 1000"
        return None

    def worst_case_s(self) -> float:
        """The longest one proposal can take (module docstring), in seconds."""
        per_call = (1 + self.max_retries) * (self.timeout_s + WATCHDOG_GRACE_S) \
            + self.max_retries * MAX_BACKOFF_S
        return (1 + self.edit_retries) * per_call


def parse_models(spec: str) -> tuple[tuple[str, float], ...] | str:
    """'a:3,b:1' -> (('a', 3.0), ('b', 1.0)); a one-line reason when the spec is malformed."""
    models: dict[str, float] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, weight = part, 1.0
        head, sep, tail = part.rpartition(":")
        if sep and head:
            try:
                weight = float(tail)
                name = head
            except ValueError:
                pass                               # an Ollama tag such as "llama3:8b"
        if not (math.isfinite(weight) and weight > 0):
            return f"--llm-model {part}: the weight must be a positive number"
        if name in models:
            return f"--llm-model names {name} twice"
        models[name] = weight
    if not models:
        return "--llm-model is empty: give a model name, or several as name:weight,name:weight"
    return tuple(models.items())


def settings_from_env(models_spec: str | None, env: dict | None = None) -> LLMSettings | str:
    """Settings from --llm-model and OPENAI_BASE_URL / OPENAI_API_KEY (`env`, default the
    process environment), or a one-line reason the LLM operators are off."""
    env = os.environ if env is None else env
    if not models_spec or not models_spec.strip():
        return "LLM operators are off: no --llm-model given"
    models = parse_models(models_spec)
    if isinstance(models, str):
        return models
    key = (env.get("OPENAI_API_KEY") or "").strip()
    base = (env.get("OPENAI_BASE_URL") or "").strip()
    if not key and not base:
        return ("LLM operators are off: set OPENAI_API_KEY for a hosted API, or OPENAI_BASE_URL "
                "for a local server (vLLM, Ollama, llama.cpp: e.g. http://127.0.0.1:11434/v1)")
    settings = LLMSettings(models=models, base_url=base or DEFAULT_BASE_URL,
                           api_key=key or LOCAL_KEY)
    return settings.problem() or settings


@dataclass(frozen=True)
class CallRecord:
    """One HTTP call to the model (one attempt: a retried 429 is a record of its own)."""

    model: str
    prompt_tokens: int | None        # from the response's usage; None when not reported
    completion_tokens: int | None
    latency_s: float                 # wall clock of the attempt
    outcome: str                     # one of OUTCOMES
    error: str                       # one line, unless applied
    started_at: float                # time.time() at the start


@dataclass(frozen=True)
class Proposal:
    child_source: str | None         # None when no reply gave a usable child
    description: str                 # one line (the last one seen when there is no child)
    operator: str                    # "llm_mutate" or "llm_cross"
    calls: tuple[CallRecord, ...]
    reason: str = ""                 # one line, when there is no child

    @property
    def prompt_tokens(self) -> int:
        return sum(c.prompt_tokens or 0 for c in self.calls)

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens or 0 for c in self.calls)

    @property
    def latency_s(self) -> float:
        return sum(c.latency_s for c in self.calls)


@dataclass(frozen=True)
class _Reply:
    text: str | None                 # the content; None on failure
    error: str                       # one line when text is None
    retryable: bool                  # a transport failure worth another attempt
    retry_after: float | None        # seconds the server asked to wait
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    truncated: bool = False          # finish_reason "length"


def pick_model(models: Sequence[tuple[str, float]], rng: random.Random) -> str:
    names = [m for m, _ in models]
    return names[0] if len(names) == 1 else rng.choices(names, [w for _, w in models])[0]


def _first_line(text: Any, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _with_deadline(fn: Callable[[], Any], seconds: float) -> tuple[bool, Any]:
    """(True, fn()) or (False, the exception); (False, None) when fn is still busy after
    `seconds`: it is left to finish in a daemon thread, so it cannot hold up the caller."""
    box: queue.SimpleQueue = queue.SimpleQueue()

    def run() -> None:
        try:
            box.put((True, fn()))
        except BaseException as e:     # handed to the caller as a value
            box.put((False, e))

    threading.Thread(target=run, name="llm-call", daemon=True).start()
    try:
        return box.get(timeout=seconds)
    except queue.Empty:
        return False, None


class LLMClient:
    """Proposals from an OpenAI-compatible endpoint (module docstring: contract, bounds,
    thread safety). Never raises after construction; failures are values."""

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self._client = openai.OpenAI(api_key=settings.api_key, base_url=settings.base_url,
                                     timeout=settings.timeout_s, max_retries=0)

    def close(self) -> None:
        self._client.close()

    # -- errors ------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        key = self.settings.api_key
        return text.replace(key, "***") if key and len(key) >= 4 else text

    def _describe(self, e: BaseException | None, timeout: float) -> tuple[str, bool, float | None]:
        """(one-line error, retryable, Retry-After seconds) for an exception of the client."""
        url = self.settings.base_url
        if e is None or isinstance(e, openai.APITimeoutError):
            return f"no reply from {url} within {timeout:g} s (timeout)", False, None
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e.__context__
            why = _first_line(cause or e, 160)
            return f"cannot reach {url}: {why}", True, None
        if isinstance(e, openai.APIStatusError):
            code = e.status_code
            message = e.message
            if isinstance(e.body, dict) and isinstance(e.body.get("message"), str):
                message = e.body["message"]
            retry_after = _retry_after(e.response.headers)
            retryable = code in RETRY_STATUS or code >= 500
            return self._scrub(f"HTTP {code} from {url}: {_first_line(message, 200)}"), \
                retryable, retry_after
        if isinstance(e, openai.APIResponseValidationError):
            return f"the reply from {url} is not a chat completion", False, None
        if isinstance(e, ValueError):          # json.JSONDecodeError of a non-JSON body
            return f"the reply from {url} is not JSON ({_first_line(e, 100)})", False, None
        return self._scrub(f"{type(e).__name__}: {_first_line(e, 200)}"), False, None

    # -- one call ----------------------------------------------------------------------------

    def _attempt(self, model: str, messages: list[dict]) -> _Reply:
        s = self.settings
        kwargs: dict[str, Any] = {"model": model, "messages": messages,
                                  "temperature": s.temperature, "timeout": s.timeout_s}
        if s.max_tokens:
            kwargs["max_tokens"] = s.max_tokens
        done, value = _with_deadline(lambda: self._client.chat.completions.create(**kwargs),
                                     s.timeout_s + WATCHDOG_GRACE_S)
        if not done:
            error, retryable, retry_after = self._describe(value, s.timeout_s)
            return _Reply(None, error, retryable, retry_after)
        return self._read(value)

    def _read(self, response: Any) -> _Reply:
        """The content and token counts of a chat completion, or why there are none."""
        url = self.settings.base_url
        usage = getattr(response, "usage", None)
        prompt = _count(getattr(usage, "prompt_tokens", None))
        completion = _count(getattr(usage, "completion_tokens", None))
        choices = getattr(response, "choices", None)
        if isinstance(response, (str, bytes)) or not isinstance(choices, list):
            return _Reply(None, f"the reply from {url} is not a chat completion (no choices)",
                          False, None, prompt, completion)
        if not choices:
            return _Reply(None, "the reply has no choices", False, None, prompt, completion)
        choice = choices[0]
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        if content is not None and not isinstance(content, str):
            content = str(content)
        truncated = getattr(choice, "finish_reason", None) == "length"
        return _Reply(content or "", "", False, None, prompt, completion, truncated)

    def _call(self, model: str, messages: list[dict]
              ) -> tuple[_Reply, float, float, list[CallRecord]]:
        """One call with its retries: (last reply, its latency, its start time, a record of each
        failed attempt before it)."""
        failed: list[CallRecord] = []
        for k in range(self.settings.max_retries + 1):
            started, t0 = time.time(), time.monotonic()
            reply = self._attempt(model, messages)
            latency = time.monotonic() - t0
            if reply.text is not None or not reply.retryable or k == self.settings.max_retries:
                return reply, latency, started, failed
            failed.append(CallRecord(model, reply.prompt_tokens, reply.completion_tokens,
                                     latency, "error", reply.error, started))
            wait = reply.retry_after if reply.retry_after is not None \
                else self.settings.backoff_s * 2 ** k
            time.sleep(min(max(wait, 0.0), MAX_BACKOFF_S))
        raise AssertionError("unreachable: the last attempt always returns")

    # -- proposals ---------------------------------------------------------------------------

    def propose_mutation(self, parent_source: str, parent_meas: Measurement, ctx: PromptContext,
                         known_ids: frozenset[str], rng: random.Random,
                         model: str | None = None) -> Proposal:
        """A child of one parent (module docstring); `model`: None draws one by weight."""
        messages = mutation_prompt(parent_source, parent_meas, ctx)
        return self._propose("llm_mutate", parent_source, (parent_source,), messages,
                             known_ids, rng, model)

    def propose_crossover(self, a_src: str, a_meas: Measurement, b_src: str, b_meas: Measurement,
                          ctx: PromptContext, known_ids: frozenset[str],
                          rng: random.Random, model: str | None = None) -> Proposal:
        """A child combining two parents; its edits apply to parent A."""
        messages = crossover_prompt(a_src, a_meas, b_src, b_meas, ctx)
        return self._propose("llm_cross", a_src, (a_src, b_src), messages, known_ids, rng,
                             model)

    def _propose(self, operator: str, base: str, parents: tuple[str, ...], messages: list[dict],
                 known_ids: frozenset[str], rng: random.Random,
                 model: str | None = None) -> Proposal:
        try:
            return self._propose_unguarded(operator, base, parents, messages, known_ids, rng,
                                           model)
        except Exception as e:      # a bug of ours must not reach the engine's loop
            return Proposal(None, "", operator, (), f"llm operator error: {type(e).__name__}: "
                                                    f"{self._scrub(_first_line(e, 200))}")

    def _propose_unguarded(self, operator: str, base: str, parents: tuple[str, ...],
                           messages: list[dict], known_ids: frozenset[str],
                           rng: random.Random, model: str | None = None) -> Proposal:
        s = self.settings
        if model is None:
            model = pick_model(s.models, rng)
        elif model not in dict(s.models):
            raise ValueError(f"model {model!r} is not one of --llm-model")
        messages = list(messages)
        calls: list[CallRecord] = []
        description, reason = "", ""
        for _ in range(s.edit_retries + 1):
            reply, latency, started, failed = self._call(model, messages)
            calls.extend(failed)
            if reply.text is None:                        # transport: re-asking will not help
                calls.append(CallRecord(model, reply.prompt_tokens, reply.completion_tokens,
                                        latency, "error", reply.error, started))
                return Proposal(None, description, operator, tuple(calls), reply.error)
            visible = strip_thinking(reply.text)
            outcome, reason, child, said = self._judge(visible, reply.truncated, base, parents,
                                                       known_ids)
            description = said or description
            calls.append(CallRecord(model, reply.prompt_tokens, reply.completion_tokens,
                                    latency, outcome, reason, started))
            if outcome == "applied":
                return Proposal(child, description, operator, tuple(calls))
            echo = visible
            if len(echo) > REPLY_ECHO_CHARS:
                echo = echo[:REPLY_ECHO_CHARS] + f"\n[... {len(visible):,} characters in all]"
            messages += [{"role": "assistant", "content": echo}, retry_message(reason)]
        replies = s.edit_retries + 1
        return Proposal(None, description, operator, tuple(calls),
                        f"no usable child in {replies} replies; last: {reason}")

    def _judge(self, text: str, truncated: bool, base: str, parents: tuple[str, ...],
               known_ids: frozenset[str]) -> tuple[str, str, str | None, str]:
        """(outcome, one-line reason, child source, description) of one reply's visible text
        (reasoning sections removed, so a long think does not count against the size cap)."""
        cut = " (the reply was cut off at the token limit)" if truncated else ""
        if not text.strip():
            return "error", f"the reply is empty{cut}", None, ""
        if len(text) > self.settings.max_response_chars:
            return "error", (f"the reply is too long ({len(text):,} characters, at most "
                             f"{self.settings.max_response_chars:,}); send only the edit "
                             f"blocks"), None, ""
        parsed = parse_response(text)
        edit = apply_response(base, parsed)
        if not edit.applied:
            return "apply_failed", edit.reason + cut, None, parsed.description
        if not parsed.description:
            return "apply_failed", ("the reply has no line `DESCRIPTION: <one line>` before the "
                                    "edits"), None, ""
        verdict = vet_child(parents, edit.child, known_ids)
        if verdict.outcome != "applied":
            return verdict.outcome, verdict.reason + cut, None, parsed.description
        return "applied", "", edit.child, parsed.description

    # -- preflight ---------------------------------------------------------------------------

    def preflight(self) -> str | None:
        """None when the endpoint answers, accepts the key and serves every model; else a
        one-line reason that says what to check. Waits at most ~PREFLIGHT_S per request."""
        try:
            return self._preflight()
        except Exception as e:
            return self._scrub(f"LLM preflight failed: {type(e).__name__}: {_first_line(e)}")

    def _preflight(self) -> str | None:
        url = self.settings.base_url
        timeout = min(PREFLIGHT_S, self.settings.timeout_s)
        done, value = _with_deadline(lambda: self._client.models.list(timeout=timeout),
                                     timeout + WATCHDOG_GRACE_S)
        listed: set[str] | None = None
        if done:
            listed = {getattr(m, "id", None) for m in getattr(value, "data", None) or []}
        elif isinstance(value, openai.NotFoundError):
            listed = None                       # no /models route: probe each model instead
        else:
            return self._endpoint_problem(value, timeout, "GET /models")
        for name, _ in self.settings.models:
            if listed and name in listed:
                continue
            problem = self._probe(name, timeout)
            if problem:
                served = f" (it serves: {', '.join(sorted(str(m) for m in listed)[:8])})" \
                    if listed else ""
                return f"model {name!r} does not answer at {url}{served}: {problem}; " \
                       f"check --llm-model"
        return None

    def _endpoint_problem(self, e: BaseException | None, timeout: float, what: str) -> str:
        url = self.settings.base_url
        if isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return (f"the LLM endpoint {url} rejected the API key (HTTP {e.status_code}); "
                    f"check OPENAI_API_KEY")
        if e is None or isinstance(e, openai.APITimeoutError):
            return (f"the LLM endpoint {url} did not answer {what} within {timeout:g} s; "
                    f"check OPENAI_BASE_URL and that the server is running")
        if isinstance(e, openai.APIConnectionError):
            return (f"cannot reach the LLM endpoint {url}; check OPENAI_BASE_URL and that the "
                    f"server is running ({self._describe(e, timeout)[0]})")
        return f"the LLM endpoint failed {what}: {self._describe(e, timeout)[0]}"

    def _probe(self, model: str, timeout: float) -> str | None:
        """None when a 1-token completion of `model` succeeds, else the reason."""
        done, value = _with_deadline(lambda: self._client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Say OK."}], max_tokens=1,
            timeout=timeout), timeout + WATCHDOG_GRACE_S)
        if done:
            return None
        if isinstance(value, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return self._endpoint_problem(value, timeout, "a completion")
        return self._describe(value, timeout)[0]


def _retry_after(headers: Any) -> float | None:
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            value = float(headers.get(name)) * scale
        except (TypeError, ValueError, AttributeError):
            continue
        if math.isfinite(value):
            return value
    return None


def _count(x: Any) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) and x >= 0 else None
