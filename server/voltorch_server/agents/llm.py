"""The LLM agent: any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, Ollama, ...) through the
real `openai` package.

The API key is read from the server's environment at call time (the variable named in the settings)
and is never stored or returned; without it the agent answers as the offline agent and says so.
Retries are ours (the client's own `max_retries` is 0) so they are visible: 429, 5xx, timeouts and
connection errors are retried with exponential backoff, honouring Retry-After. Every attempt first takes
a permit from the endpoint's limiter (shared by all agents on that base URL + key + model, see
limiter.py), which decides how many calls the endpoint gets at once and in which priority order.
"""

from __future__ import annotations

import email.utils
import itertools
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx2
import openai

from ..telemetry import context_from, tracer
from ._tools import Reply, ToolCall, offline_model, parse_arguments, run_tool_loop
from .base import Agent, AgentError, AgentOutput, AgentTask, CancelSignal, TokenUsage
from .limiter import (
    EndpointLimiter,
    LimitCancelled,
    Limiters,
    LimitReset,
    LimitSettings,
    Outcome,
    Permit,
    estimate_tokens,
)
from .llm_clients import NOT_SENT, EndpointClients, new_client
from .offline import (
    ANALYSIS,
    DELIVERY,
    PLANNING,
    REVIEW,
    SUMMARY,
    choose_capability,
    offline_output,
    streamed,
)

log = logging.getLogger("voltorch.agents.llm")

MAX_RETRY_AFTER = 60.0
MAX_CONTEXT_CHARS = 200_000


@dataclass(frozen=True)
class LlmSettings:
    """Settings of one LLM agent; empty/None fields fall back to the server config."""

    model: str = ""
    base_url: str = ""
    api_key_env: str = ""
    system_prompt: str = ""
    temperature: float | None = None
    timeout: float | None = None
    max_tokens: int | None = None
    tools: tuple[str, ...] = ()  # tools offered by other agents that the model may call
    max_tool_iterations: int = 0  # 0 = DEFAULT_TOOL_ITERATIONS

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["tools"] = list(self.tools)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> LlmSettings | None:
        if d is None:
            return None
        values = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        values["tools"] = tuple(values.get("tools", ()))
        return cls(**values)


@dataclass(frozen=True)
class LlmDefaults:
    model: str = "gpt-4o-mini"
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    max_retries: int = 3
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # model -> USD per 1M in, out

    def cost(self, model: str, usage: TokenUsage) -> float:
        """USD of one call's tokens (0 for a model without a price)."""
        per_in, per_out = self.prices.get(model, (0.0, 0.0))
        return (usage.prompt_tokens * per_in + usage.completion_tokens * per_out) / 1_000_000


def limit_settings(config: Any) -> LimitSettings:
    """The endpoint limits from the server config (its llm_* settings)."""
    return LimitSettings(
        max_in_flight=config.llm_max_in_flight,
        initial_window=config.llm_initial_window,
        backoff=config.llm_backoff,
        requests_per_minute=config.llm_requests_per_minute,
        tokens_per_minute=config.llm_tokens_per_minute,
        aging=config.coordination_aging_seconds,
        degraded_after=config.llm_degraded_after,
    ).checked()


# The JSON shape each capability answers with, so a pipeline works the same with LLM or offline agents.
_SHAPES: list[tuple[tuple[str, ...], str]] = [
    (
        ANALYSIS,
        '{"summary": str, "requirements": [{"id", "title", "description", "priority"}], '
        '"components": [{"name", "responsibility"}], "risks": [{"risk", "mitigation"}]}',
    ),
    (
        PLANNING,
        '{"tasks": [{"id": "task-1", "title", "description", "capability": "coding"|"testing"|'
        '"documentation", "depends_on": [task ids]}]} with 3 to 8 tasks',
    ),
    (
        tuple(DELIVERY),
        '{"task_id", "deliverable", "files": [{"path", "language", "content"}], "notes": [str]}',
    ),
    (REVIEW, '{"approved": bool, "score": number 0..1, "findings": [{"severity", "task_id", "message"}]}'),
    (SUMMARY, '{"summary": markdown string}'),
]


def _system_prompt(settings: LlmSettings, task: AgentTask) -> str:
    if settings.system_prompt:
        base = settings.system_prompt
    else:
        caps = ", ".join(task.agent_capabilities) or "general tasks"
        base = f"You are {task.agent_id or 'an agent'} in a team of AI agents; your capabilities: {caps}."
    cap = choose_capability(task.capabilities, task.agent_capabilities, task.context)
    for group, shape in _SHAPES:
        if cap in group:
            return f"{base}\nAnswer with one JSON object only (no prose, no code fences) shaped as: {shape}."
    return base


def _user_message(task: AgentTask) -> str:
    """The task's text, then its context as JSON on one line: json's C encoder writes it (with `indent`
    the json module falls back to its pure-Python encoder, ~8x the CPU, and the model reads the
    indentation as tokens)."""
    if not task.context:
        return task.text
    ctx = json.dumps(task.context, default=str)
    if len(ctx) > MAX_CONTEXT_CHARS:
        ctx = ctx[:MAX_CONTEXT_CHARS] + "\n... (truncated)"
    return f"{task.text}\n\nContext (JSON):\n{ctx}"


def parse_json_output(text: str) -> Any:
    """The JSON value in a model's answer (code fences allowed), or None when it is not JSON."""
    s = text.strip()
    m = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", s, re.DOTALL) if s.startswith("```") else None
    if m:
        s = m.group(1)
    if not s or s[0] not in "{[":
        return None
    try:
        return json.loads(s)
    except ValueError:
        return None


def retry_after(exc: Exception) -> float | None:
    """Seconds from a Retry-After / retry-after-ms header of a failed response, if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return min(MAX_RETRY_AFTER, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return None if when is None else min(MAX_RETRY_AFTER, max(0.0, when.timestamp() - time.time()))


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError | openai.RateLimitError):
        return True
    return isinstance(exc, openai.APIStatusError) and (
        exc.status_code >= 500 or exc.status_code in (408, 409)
    )


def _outcome(exc: Exception) -> Outcome:
    """What a failed call tells the endpoint's limiter."""
    if isinstance(exc, openai.RateLimitError):
        return Outcome.THROTTLED
    if isinstance(exc, openai.APITimeoutError):
        return Outcome.OVERLOADED
    if isinstance(exc, openai.APIStatusError) and exc.status_code == 503:
        return Outcome.OVERLOADED
    return Outcome.FAILED


def _headers(obj: Any) -> Mapping[str, str]:
    headers = getattr(getattr(obj, "response", None), "headers", None)
    return headers if headers is not None else {}


def backoff(attempt: int, base: float = 0.5, cap: float = 8.0) -> float:
    return min(cap, base * 2**attempt) * (1 + random.random() * 0.1)


class LlmAgent(Agent):
    kind = "llm"

    def __init__(
        self,
        settings: LlmSettings,
        defaults: LlmDefaults | None = None,
        env: Mapping[str, str] | None = None,
        on_call: Callable[..., None] | None = None,
        limiters: Limiters | None = None,
    ):
        """on_call(model, input_tokens, output_tokens, duration, error_type=...) observes every HTTP call
        (the server passes Metrics.record_llm_call); `limiters` are the server's endpoint limiters
        (None: calls are not limited, e.g. an agent built alone in a test)."""
        self.settings = settings
        self.defaults = defaults or LlmDefaults()
        self.env = os.environ if env is None else env
        self.on_call = on_call
        self.limiters = limiters
        self._clients: dict[tuple[str, str], EndpointClients] = {}
        self._requests = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def key_env(self) -> str:
        return self.settings.api_key_env or self.defaults.api_key_env

    @property
    def model(self) -> str:
        return self.settings.model or self.defaults.model

    @property
    def base_url(self) -> str:
        return self.settings.base_url or self.defaults.base_url

    def endpoint_limiter(self) -> EndpointLimiter | None:
        key = self.env.get(self.key_env, "")
        if self.limiters is None or not key:
            return None
        return self.limiters.for_endpoint(self.base_url, key, self.model)

    def clients(self, key: str) -> EndpointClients:
        """The openai clients this agent calls its endpoint with (made on first use)."""
        base_url = self.base_url
        with self._lock:
            clients = self._clients.get((key, base_url))
            if clients is None:
                clients = EndpointClients(lambda: new_client(key, base_url))
                self._clients[(key, base_url)] = clients
            return clients

    def run(self, task: AgentTask, cancel: CancelSignal) -> AgentOutput:
        key = self.env.get(self.key_env, "")
        messages = [
            {"role": "system", "content": _system_prompt(self.settings, task)},
            {"role": "user", "content": _user_message(task)},
        ]
        tools, turns = self.settings.tools, self.settings.max_tool_iterations
        if not key:
            if tools:  # the same protocol, played deterministically
                return run_tool_loop(
                    task, cancel, messages, tools, offline_model(task), turns, parse_json_output
                )
            note = f"(LLM agent running offline: ${self.key_env} is not set)"
            return streamed(task, offline_output(task, note=note))
        if tools:
            return run_tool_loop(
                task,
                cancel,
                messages,
                tools,
                lambda msgs, schemas: self._ask(key, msgs, schemas, task, cancel, final=False),
                turns,
                parse_json_output,
            )
        reply = self._ask(key, messages, [], task, cancel, final=True)
        return AgentOutput(reply.content, parse_json_output(reply.content), reply.usage)

    def _ask(
        self,
        key: str,
        messages: list[dict[str, Any]],
        schemas: list[dict[str, Any]],
        task: AgentTask,
        cancel: CancelSignal,
        *,
        final: bool,
    ) -> Reply:
        """One model turn, retried on 429 / 5xx / timeouts / connection errors, each attempt after a permit
        from the endpoint's limiter. `final`: this turn's answer is the agent's output (no tool loop goes
        on), so the text read with the end of the stream is the task's last (AgentTask.delta last=True)."""
        clients = self.clients(key)
        # Streamed, so the text is published as it grows (AgentTask.delta); usage comes in the last chunk.
        # Sent with the client's documented request method (`client.post`, "undocumented endpoints") with
        # the body as the plain JSON it already is: `chat.completions.create` walks every parameter
        # through its TypedDict transform first, a tenth of the server's CPU per call when hundreds of
        # calls run at once (bench suite llm). The request on the wire is the same. The URL is given whole
        # (the client's base URL + the path, as the client would join them): joining a relative path
        # re-parses the base URL on every call. The client's X-Stainless-* headers are left out (NOT_SENT).
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            **({"tools": schemas} if schemas else {}),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.settings.temperature is not None:
            body["temperature"] = self.settings.temperature
        if self.settings.max_tokens is not None:
            body["max_tokens"] = self.settings.max_tokens
        # Ours, as the client's own would be (one per request, kept across its retries), without the
        # os.urandom call per request its uuid4 costs.
        request_id = f"voltorch-{task.task_id}-{next(self._requests)}"
        per_call = self.settings.timeout or self.defaults.timeout
        retries = max(0, self.defaults.max_retries)
        since = self.limiters.clock() if self.limiters else 0.0
        tokens = estimate_tokens(messages, self.settings.max_tokens)
        for attempt in range(retries + 1):
            if cancel.is_set():
                raise AgentError(f"cancelled: {cancel.reason}", code="CANCELLED")
            permit = self._permit(key, task, cancel, tokens, since)
            remaining = task.remaining(time.time())
            timeout = per_call if remaining is None else max(0.001, min(per_call, remaining))
            with tracer.start_as_current_span(
                "llm.chat", context=context_from(task.traceparent) if task.traceparent else None
            ) as span:
                span.set_attribute("llm.model", self.model)
                span.set_attribute("llm.attempt", attempt + 1)
                began = time.monotonic()
                try:
                    with clients.lease() as client:
                        raw = client.post(
                            f"{client.base_url}chat/completions",
                            cast_to=httpx2.Response,
                            body=body,
                            options={
                                "timeout": timeout,
                                "idempotency_key": request_id,
                                "headers": NOT_SENT,
                            },
                            stream=True,
                        )
                        chunks = _receive(raw, task, cancel, final)
                except Exception as exc:
                    outcome = _outcome(exc)
                    if isinstance(exc, openai.APITimeoutError) and timeout < per_call:
                        outcome = Outcome.ABANDONED  # cut short by the task's deadline, not the endpoint's
                    if isinstance(exc, AgentError) and exc.code == "CANCELLED":
                        outcome = (
                            Outcome.ABANDONED
                        )  # stopped reading mid-stream: says nothing of the endpoint
                    if permit is not None:
                        permit.release(
                            outcome, retry_after=retry_after(exc), headers=_headers(exc), error=_describe(exc)
                        )
                    self._observe(0, 0, time.monotonic() - began, type(exc).__name__)
                    span.record_exception(exc)
                    delay = self._retry_delay(exc, attempt, retries, task)
                    if permit is not None and outcome in (Outcome.THROTTLED, Outcome.OVERLOADED):
                        permit.limiter.record_throttle_wait(delay)
                    log.warning(
                        "LLM call %s/%s for %s failed (%s); retrying in %.2fs",
                        attempt + 1,
                        retries + 1,
                        task.task_id,
                        _describe(exc),
                        delay,
                    )
                    span.add_event("retry", {"delay": delay})
                    if cancel.wait(delay):
                        raise AgentError(f"cancelled: {cancel.reason}", code="CANCELLED") from None
                    continue
                try:
                    reply = _parse(chunks)
                except AgentError as exc:
                    if permit is not None:
                        permit.release(Outcome.OK, headers=raw.headers)  # the endpoint answered
                    self._observe(0, 0, time.monotonic() - began, exc.code)
                    raise
                if permit is not None:
                    used = reply.usage.total_tokens
                    permit.release(Outcome.OK, headers=raw.headers, tokens_used=used or None)
                cost = self.defaults.cost(self.model, reply.usage)
                reply = replace(reply, usage=replace(reply.usage, cost=cost, llm_calls=1))
                self._observe(
                    reply.usage.prompt_tokens, reply.usage.completion_tokens, time.monotonic() - began, ""
                )
                return reply
        raise AssertionError("unreachable")  # the last attempt raises in _retry_delay

    def _permit(
        self, key: str, task: AgentTask, cancel: CancelSignal, tokens: int, since: float
    ) -> Permit | None:
        """Wait for the endpoint's limiter to let this attempt go (None when there is no limiter). A
        limiter reset while waiting (RestartComponent "llm") sends the call to the endpoint's new one."""
        if self.limiters is None:
            return None
        remaining = task.remaining(time.time())
        deadline = None if remaining is None else self.limiters.clock() + remaining
        while True:
            limiter = self.limiters.for_endpoint(self.base_url, key, self.model)
            try:
                return limiter.acquire(
                    int(task.priority), tokens=tokens, cancel=cancel, deadline=deadline, since=since
                )
            except LimitReset:
                continue
            except LimitCancelled as exc:
                if cancel.is_set():
                    raise AgentError(f"cancelled: {cancel.reason}", code="CANCELLED") from None
                raise AgentError(str(exc), code="LLM_UNAVAILABLE", retryable=True) from None

    def _observe(self, input_tokens: int, output_tokens: int, duration: float, error_type: str) -> None:
        if self.on_call is not None:
            try:
                self.on_call(self.model, input_tokens, output_tokens, duration, error_type=error_type)
            except Exception:
                log.exception("LLM call observer failed")

    def _retry_delay(self, exc: Exception, attempt: int, retries: int, task: AgentTask) -> float:
        """How long to wait before the next attempt; raises AgentError when there is none."""
        if isinstance(exc, AgentError):
            raise exc
        if not isinstance(exc, openai.OpenAIError):
            if isinstance(exc, ValueError):  # the body was not JSON
                raise AgentError(
                    f"LLM endpoint returned a malformed response (not JSON): {exc}", code="INVALID_OUTPUT"
                ) from None
            raise AgentError(f"LLM call failed: {_describe(exc)}", code="LLM_ERROR", retryable=True) from None
        if not _retryable(exc):
            code = (
                "LLM_AUTH"
                if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError)
                else "LLM_ERROR"
            )
            raise AgentError(f"LLM endpoint rejected the request: {_describe(exc)}", code=code) from None
        if attempt >= retries:
            code = "LLM_RATE_LIMITED" if isinstance(exc, openai.RateLimitError) else "LLM_UNAVAILABLE"
            raise AgentError(
                f"LLM endpoint still failing after {attempt + 1} attempts: {_describe(exc)}",
                code=code,
                retryable=True,
            ) from None
        delay = retry_after(exc)
        delay = backoff(attempt) if delay is None else delay
        remaining = task.remaining(time.time())
        if remaining is not None and delay >= remaining:
            raise AgentError(
                f"LLM endpoint asked to retry after {delay:.1f}s, beyond the task deadline: {_describe(exc)}",
                code="LLM_RATE_LIMITED" if isinstance(exc, openai.RateLimitError) else "LLM_UNAVAILABLE",
                retryable=True,
            ) from None
        return delay

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            try:
                c.close()
            except Exception:
                pass


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"HTTP {status}: {msg}" if status else f"{type(exc).__name__}: {msg}"


def _receive(
    response: Any, task: AgentTask, cancel: CancelSignal, final: bool = False
) -> list[dict[str, Any]]:
    """Read a streamed answer to its end, handing the text to the task as it arrives. The server-sent
    events are read as plain JSON (building the client's typed chunk per event costs CPU for the few
    fields used here), and per piece the socket gave, not per event: the complete `data:` lines of a piece
    are decoded in one json.loads and their text handed over as one delta. An endpoint that answers a
    stream request with one JSON completion is read as a single chunk. `final`: the text read with the
    stream's end is handed over as the task's last (written with the outcome, not published alone: an
    answer that arrives in one read, as most short ones do, costs no write of its own)."""
    chunks: list[dict[str, Any]] = []
    kind = response.headers.get("content-type", "")
    try:
        if not kind.startswith("text/event-stream"):
            return _whole(response, kind, task, final)
        rest = b""
        for piece in response.iter_bytes():
            if cancel.is_set():
                raise AgentError(f"cancelled: {cancel.reason}", code="CANCELLED")
            lines = (rest + piece).split(b"\n")
            rest = lines.pop()  # an unfinished line waits for the next piece
            if _events(lines, chunks, task, final):
                return chunks
        _events([rest], chunks, task, final, end=True)
    finally:
        response.close()
    return chunks


def _events(
    lines: list[bytes], chunks: list[dict[str, Any]], task: AgentTask, final: bool = False, end: bool = False
) -> bool:
    """Add the events of these complete lines to `chunks` and their text to the task's live output; True
    at the end of the stream ([DONE]). `final`: text read with the end (`end`: the body ended) is the
    task's last."""
    data: list[bytes] = []
    done = False
    for line in lines:
        if line.startswith(b"data:"):
            value = line[5:].strip()
            if value == b"[DONE]":
                done = True
                break
            data.append(value)
    if not data:
        return done
    try:
        decoded = json.loads(b"[" + b",".join(data) + b"]")
    except ValueError:
        decoded = [_event(d) for d in data]  # names the event that is not JSON
    text: list[str] = []
    for chunk in decoded:
        if not isinstance(chunk, dict):
            continue
        if isinstance(chunk.get("error"), dict):
            message = chunk["error"].get("message") or "error"
            raise AgentError(f"LLM endpoint failed mid-stream: {message}", code="LLM_ERROR", retryable=True)
        chunks.append(chunk)
        for choice in chunk.get("choices") or ():
            piece = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
            if isinstance(piece, str):
                text.append(piece)
    if text:
        task.delta("".join(text), last=final and (done or end))
    return done


def _event(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise AgentError(
            f"LLM endpoint returned a malformed response: an event is not JSON: {data[:200]!r}",
            code="INVALID_OUTPUT",
        ) from None


def _whole(response: Any, kind: str, task: AgentTask, final: bool = False) -> list[dict[str, Any]]:
    """A completion that came whole instead of streamed, as one chunk."""
    response.read()
    try:
        body = response.json()
    except ValueError:
        raise AgentError(
            f"LLM endpoint returned a malformed response: the body is not JSON server-sent events "
            f"(content-type {kind or 'missing'})",
            code="INVALID_OUTPUT",
        ) from None
    if not isinstance(body, dict):
        return []
    choices = [
        {**c, "delta": c.get("message") or {}} for c in body.get("choices") or () if isinstance(c, dict)
    ]
    for c in choices:
        if isinstance(c["delta"].get("content"), str):
            task.delta(c["delta"]["content"], last=final)
    return [{**body, "choices": choices}] if "choices" in body else [body]


def _count(value: Any) -> int:
    """A count from the JSON (0 when absent or not a positive number)."""
    return int(value) if isinstance(value, int | float) and value > 0 else 0


def _parse(chunks: list[dict[str, Any]]) -> Reply:
    """The answer assembled from its chunks: text, tool calls (their pieces joined by index), usage."""
    parts: list[str] = []
    refusal: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    seen_choice = False
    usage = TokenUsage()
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            seen_choice = True
            raw_delta = choice.get("delta")
            delta: dict[str, Any] = raw_delta if isinstance(raw_delta, dict) else {}
            piece = delta.get("content")
            if isinstance(piece, str):
                parts.append(piece)
            said_no = delta.get("refusal")
            if isinstance(said_no, str):
                refusal.append(said_no)
            for tc in delta.get("tool_calls") or ():
                if not isinstance(tc, dict):
                    continue
                call = calls.setdefault(_count(tc.get("index")), {"id": "", "name": "", "arguments": ""})
                raw_fn = tc.get("function")
                fn: dict[str, Any] = raw_fn if isinstance(raw_fn, dict) else {}
                call["id"] = tc.get("id") or call["id"]
                call["name"] += fn.get("name") or ""
                call["arguments"] += fn.get("arguments") or ""
        u = chunk.get("usage")
        if isinstance(u, dict):
            usage = TokenUsage(
                _count(u.get("prompt_tokens")),
                _count(u.get("completion_tokens")),
                _count(u.get("total_tokens")),
            )
    if not seen_choice:
        raise AgentError(
            "LLM endpoint returned a malformed response: no choices (is base_url an OpenAI-compatible "
            "/v1 endpoint?)",
            code="INVALID_OUTPUT",
        )
    tool_calls = tuple(
        ToolCall(c["id"] or f"call_{i}", c["name"], parse_arguments(c["arguments"], c["name"]))
        for i, c in sorted(calls.items())
    )
    if not parts and not tool_calls:
        if refusal:
            raise AgentError(f"the model refused: {''.join(refusal)}", code="LLM_REFUSED")
        raise AgentError(
            "LLM endpoint returned a malformed response: choices[0].message.content is missing",
            code="INVALID_OUTPUT",
        )
    return Reply("".join(parts), tool_calls, usage)
