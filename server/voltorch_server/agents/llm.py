"""The LLM agent: any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, Ollama, ...) through the
real `openai` package.

The API key is read from the server's environment at call time (the variable named in the settings)
and is never stored or returned; without it the agent answers as the offline agent and says so.
Retries are ours (the client's own `max_retries` is 0) so they are visible: 429, 5xx, timeouts and
connection errors are retried with exponential backoff, honouring Retry-After. Every attempt first takes
a permit from the endpoint's limiter (shared by all agents on that base URL + key + model, see
limiter.py), which decides how many calls the endpoint gets at once and in which priority order. The
attempt's HTTP exchange runs where the agent's `calls` run it (llm_clients.py): in a server, in its LLM
call process (llm_process.py), off the server's GIL.

`openai` is imported in the functions that use it (here, in llm_clients.py and llm_process.py), not at
the top: loading it is ~0.6 s of CPU, nearly half of a server's start-up, and a server that makes no LLM
call never needs it. An agent's call loads it before it takes the endpoint's permit (see `_ask`).
"""

from __future__ import annotations

import email.utils
import itertools
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..telemetry import context_from, tracer
from ._tools import Reply, offline_model, run_tool_loop
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
from .llm_clients import AnswerStopped, CallRequest, InProcessCalls, LlmCalls
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
    import openai

    if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError | openai.RateLimitError):
        return True
    return isinstance(exc, openai.APIStatusError) and (
        exc.status_code >= 500 or exc.status_code in (408, 409)
    )


def _outcome(exc: Exception) -> Outcome:
    """What a failed call tells the endpoint's limiter."""
    import openai

    if isinstance(exc, openai.RateLimitError):
        return Outcome.THROTTLED
    if isinstance(exc, openai.APITimeoutError):
        return Outcome.OVERLOADED
    if isinstance(exc, openai.APIStatusError) and exc.status_code == 503:
        return Outcome.OVERLOADED
    return Outcome.FAILED


def _failure(exc: Exception) -> tuple[Exception, Mapping[str, str]]:
    """A failed call's error as the agent handles it, and the headers of the answer the call had: a status
    error's, or those of an answer whose reading stopped (cancelled, failed mid-stream; a connection that
    failed mid-way is handled as its own error, AnswerStopped.error); {} when the endpoint did not answer."""
    if isinstance(exc, AnswerStopped):
        return exc.error or exc, exc.headers
    headers = getattr(getattr(exc, "response", None), "headers", None)
    return exc, headers if headers is not None else {}


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
        calls: LlmCalls | None = None,
    ):
        """on_call(model, input_tokens, output_tokens, duration, error_type=...) observes every HTTP call
        (the server passes Metrics.record_llm_call); `limiters` are the server's endpoint limiters
        (None: calls are not limited, e.g. an agent built alone in a test); `calls` is where the HTTP
        calls run, shared by the server's LLM agents (None: this agent's own, on its threads)."""
        self.settings = settings
        self.defaults = defaults or LlmDefaults()
        self.env = os.environ if env is None else env
        self.on_call = on_call
        self.limiters = limiters
        self._own_calls = calls is None
        self.calls: LlmCalls = InProcessCalls() if calls is None else calls
        self._requests = itertools.count(1)
        if self.env.get(self.key_env):
            self.calls.warm()

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
        # The server's first import of `openai` (~0.6 s), at its first call, before the endpoint's permit:
        # a failed attempt needs its types (the LLM call process's errors are rebuilt as them), and loading
        # them then would hold the permit, and the call process's locks, that much longer.
        import openai

        # Streamed, so the text is published as it grows (AgentTask.delta); usage comes in the last chunk.
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
                request = CallRequest(key, self.base_url, body, timeout, request_id, final)
                try:
                    answer = self.calls.call(request, task, cancel)
                except Exception as failed:
                    exc, headers = _failure(failed)
                    outcome = _outcome(exc)
                    if isinstance(exc, openai.APITimeoutError) and timeout < per_call:
                        outcome = Outcome.ABANDONED  # cut short by the task's deadline, not the endpoint's
                    if isinstance(exc, AgentError) and exc.code == "CANCELLED":
                        # Stopped reading: says nothing of the endpoint's load, but an answer's
                        # rate-limit headers (AnswerStopped's, see _failure) still hold its calls.
                        outcome = Outcome.ABANDONED
                    if permit is not None:
                        permit.release(
                            outcome, retry_after=retry_after(exc), headers=headers, error=_describe(exc)
                        )
                    self._observe(0, 0, time.monotonic() - began, _error_type(exc))
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
                error = answer.error
                if error is not None:
                    if permit is not None:
                        permit.release(Outcome.OK, headers=answer.headers)  # the endpoint answered
                    self._observe(0, 0, time.monotonic() - began, error.code)
                    raise error
                reply = answer.reply
                assert reply is not None  # an answer has a reply or an error
                if permit is not None:
                    used = reply.usage.total_tokens
                    permit.release(Outcome.OK, headers=answer.headers, tokens_used=used or None)
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
        import openai

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
        if self._own_calls:
            self.calls.close()


def _error_type(exc: Exception) -> str:
    """The failure's type, as raised where the call ran (LlmProcessError carries the child's)."""
    return getattr(exc, "type_name", None) or type(exc).__name__


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    msg = getattr(exc, "message", None) or str(exc) or _error_type(exc)
    return f"HTTP {status}: {msg}" if status else f"{_error_type(exc)}: {msg}"
