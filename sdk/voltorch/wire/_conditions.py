"""Conditions on an agent's output, task errors, LLM settings and token usage: their Python form and
their proto mapping (one mapping for the SDK and the server)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..v1 import coordination_pb2 as pb
from ._errors import WireError
from ._values import from_duration, from_struct, from_value, to_duration, to_struct, to_value


@dataclass(frozen=True)
class TaskError:
    code: str
    message: str
    retryable: bool


@dataclass(frozen=True)
class Condition:
    """A predicate on a step's output; build with Condition.contains/regex/field_equals."""

    contains_text: str | None = None
    regex_pattern: str | None = None
    json_path: str | None = None
    json_value: Any = None
    negate: bool = False

    @classmethod
    def contains(cls, text: str, *, negate: bool = False) -> Condition:
        return cls(contains_text=text, negate=negate)

    @classmethod
    def regex(cls, pattern: str, *, negate: bool = False) -> Condition:
        return cls(regex_pattern=pattern, negate=negate)

    @classmethod
    def field_equals(cls, path: str, value: Any, *, negate: bool = False) -> Condition:
        return cls(json_path=path, json_value=value, negate=negate)


@dataclass(frozen=True)
class LlmSettings:
    """Settings of an LLM agent. The API key never travels: the server reads the variable named
    `api_key_env` (default OPENAI_API_KEY) from its own environment."""

    model: str = ""
    base_url: str = ""
    api_key_env: str = ""
    system_prompt: str = ""
    temperature: float | None = None
    timeout: float | None = None
    max_tokens: int | None = None
    tools: Sequence[str] = ()  # tools (offered by other agents) the model may call
    max_tool_iterations: int = 0  # 0 = 8


@dataclass(frozen=True)
class ToolSpec:
    """A function an agent offers to tool-calling LLM agents; `parameters` is its arguments' JSON schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None


class ToolSpecLike(Protocol):
    """What tool_pb reads of a tool (the SDK's ToolSpec, or the server's)."""

    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def parameters(self) -> dict[str, Any] | None: ...


def tool_pb(t: ToolSpecLike) -> pb.ToolSpec:
    m = pb.ToolSpec(name=t.name, description=t.description)
    if t.parameters is not None:
        m.parameters.CopyFrom(to_struct(t.parameters))
    return m


def tool_from_pb(m: pb.ToolSpec) -> ToolSpec:
    return ToolSpec(m.name, m.description, from_struct(m.parameters) if m.HasField("parameters") else None)


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int = 0  # tokens in
    completion_tokens: int = 0  # tokens out
    total_tokens: int = 0
    cost: float = 0.0  # USD, priced by the server's llm_prices
    llm_calls: int = 0  # model calls that answered


def seconds_from_pb(msg: Any, name: str, field: str, *, request: bool = False) -> float | None:
    """The duration field `name` of msg in seconds; None when unset. Read as a request, a negative
    duration is a WireError and a zero one counts as unset."""
    if not msg.HasField(name):
        return None
    seconds = from_duration(getattr(msg, name))
    if not request:
        return seconds
    if seconds < 0:
        raise WireError(field, "a duration must not be negative", "DURATION_INVALID")
    return seconds or None


def enum_name(names: dict[int, str], value: int, field: str, *, unspecified: str, request: bool) -> str:
    """The name of an enum number; 0 is `unspecified`. An unknown number read as a request is a
    WireError, else it reads as `unspecified`."""
    if value == 0:
        return unspecified
    if value in names:
        return names[value]
    if request:
        raise WireError(field, f"unknown value {value}", "ENUM_VALUE_INVALID")
    return unspecified


def condition_pb(c: Condition) -> pb.CoordinationCondition:
    m = pb.CoordinationCondition(negate=c.negate)
    if c.contains_text is not None:
        m.contains = c.contains_text
    elif c.regex_pattern is not None:
        m.regex = c.regex_pattern
    elif c.json_path is not None:
        m.json_field_equals.path = c.json_path
        m.json_field_equals.value.CopyFrom(to_value(c.json_value))
    return m


def condition_from_pb(m: pb.CoordinationCondition) -> Condition:
    kind = m.WhichOneof("predicate")
    return Condition(
        contains_text=m.contains if kind == "contains" else None,
        regex_pattern=m.regex if kind == "regex" else None,
        json_path=m.json_field_equals.path if kind == "json_field_equals" else None,
        json_value=from_value(m.json_field_equals.value) if kind == "json_field_equals" else None,
        negate=m.negate,
    )


class TaskErrorLike(Protocol):
    """What the writers read of a task error (the SDK's TaskError, or the server's)."""

    @property
    def code(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def retryable(self) -> bool: ...


class TokenUsageLike(Protocol):
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def total_tokens(self) -> int: ...
    @property
    def cost(self) -> float: ...
    @property
    def llm_calls(self) -> int: ...


def task_error_pb(e: TaskErrorLike | None) -> pb.TaskError | None:
    return None if e is None else pb.TaskError(code=e.code, message=e.message, retryable=e.retryable)


def task_error_from_pb(m: pb.TaskError, present: bool) -> TaskError | None:
    return TaskError(m.code, m.message, m.retryable) if present else None


class LlmSettingsLike(Protocol):
    """What llm_pb reads of LLM settings (the SDK's LlmSettings, or the server's)."""

    @property
    def model(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def api_key_env(self) -> str: ...
    @property
    def system_prompt(self) -> str: ...
    @property
    def temperature(self) -> float | None: ...
    @property
    def timeout(self) -> float | None: ...
    @property
    def max_tokens(self) -> int | None: ...
    @property
    def tools(self) -> Sequence[str]: ...
    @property
    def max_tool_iterations(self) -> int: ...


def llm_pb(s: LlmSettingsLike) -> pb.LlmSettings:
    m = pb.LlmSettings(
        model=s.model,
        base_url=s.base_url,
        api_key_env=s.api_key_env,
        system_prompt=s.system_prompt,
        tools=list(s.tools),
        max_tool_iterations=s.max_tool_iterations,
    )
    if s.temperature is not None:
        m.temperature = s.temperature
    if s.timeout is not None:
        m.timeout.CopyFrom(to_duration(s.timeout))
    if s.max_tokens is not None:
        m.max_tokens = s.max_tokens
    return m


def llm_from_pb(m: pb.LlmSettings, *, request: bool = False) -> LlmSettings:
    return LlmSettings(
        model=m.model,
        base_url=m.base_url,
        api_key_env=m.api_key_env,
        system_prompt=m.system_prompt,
        temperature=m.temperature if m.HasField("temperature") else None,
        timeout=seconds_from_pb(m, "timeout", "llm.timeout", request=request),
        max_tokens=m.max_tokens if m.HasField("max_tokens") else None,
        tools=tuple(m.tools),
        max_tool_iterations=m.max_tool_iterations,
    )


def usage_pb(u: TokenUsageLike) -> pb.TokenUsage:
    return pb.TokenUsage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        total_tokens=u.total_tokens,
        cost=u.cost,
        llm_calls=u.llm_calls,
    )


def usage_from_pb(m: pb.TokenUsage) -> TokenUsage:
    return TokenUsage(m.prompt_tokens, m.completion_tokens, m.total_tokens, m.cost, m.llm_calls)
