"""client.coordination: agents (register, list with live status and statistics) and coordinations
(request in any mode, get / wait, cancel, list)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from voltorch.v1 import coordination_pb2 as pb
from voltorch.v1 import coordination_pb2_grpc

from ._convert import from_duration, from_struct, from_value, to_datetime, to_duration, to_struct, to_value
from ._enums import names, values
from ._priority import Priority
from ._rpc import call, pages

Seconds = float | timedelta

_KINDS = values(pb.AgentKind)
_KIND_NAMES = names(pb.AgentKind)
_AGENT_STATUS = values(pb.AgentStatus)
_AGENT_STATUS_NAMES = names(pb.AgentStatus)
_MODES = values(pb.CoordinationMode)
_MODE_NAMES = names(pb.CoordinationMode)
_STATUS = values(pb.CoordinationStatus)
_STATUS_NAMES = names(pb.CoordinationStatus)
_CAP_MODES = values(pb.CapabilityUpdateMode)
TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out"})
_MAX_LONG_POLL = 55.0


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


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    kind: str  # "llm" | "offline" | "remote" | "function"
    capabilities: tuple[str, ...]
    max_concurrency: int
    status: str  # "idle" | "busy" | "offline" | "error"
    current_load: int
    success_rate: float
    error_rate: float
    avg_latency: float  # seconds
    tasks_completed: int
    tasks_failed: int
    llm: LlmSettings | None
    labels: dict[str, str]
    register_time: datetime | None
    last_seen_time: datetime | None
    last_error: TaskError | None


@dataclass(frozen=True)
class AgentResult:
    """What one agent did within a coordination."""

    agent_id: str
    position: int
    task_id: str
    attempts: int
    output: str
    structured_output: Any
    error: TaskError | None
    latency: float  # seconds
    usage: TokenUsage
    skipped: bool
    condition_result: bool | None
    start_time: datetime | None
    end_time: datetime | None


@dataclass(frozen=True)
class SelectionCandidate:
    agent_id: str
    score: float
    success_rate: float
    avg_latency: float
    current_load: int
    max_concurrency: int
    eligible: bool
    reason: str


@dataclass(frozen=True)
class AgentSelection:
    selected_agent_ids: tuple[str, ...]
    candidates: tuple[SelectionCandidate, ...]
    explanation: str


@dataclass(frozen=True)
class Coordination:
    id: str
    status: str  # "queued" | "running" | "completed" | "failed" | "cancelled" | "timed_out"
    mode: str
    task: str
    request_id: str = ""
    source_agent_id: str = ""
    target_agent_id: str = ""
    agent_ids: tuple[str, ...] = ()
    required_capabilities: tuple[str, ...] = ()
    context: dict[str, Any] = field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    timeout: float | None = None
    condition: Condition | None = None
    correlation_id: str = ""
    trace_id: str = ""
    results: tuple[AgentResult, ...] = ()
    output: str = ""
    structured_output: Any = None
    error: TaskError | None = None
    selection: AgentSelection | None = None
    queue_position: int = 0
    create_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


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


def task_error_from_pb(m: pb.TaskError, present: bool) -> TaskError | None:
    return TaskError(m.code, m.message, m.retryable) if present else None


def _llm_pb(s: LlmSettings) -> pb.LlmSettings:
    m = pb.LlmSettings(
        model=s.model, base_url=s.base_url, api_key_env=s.api_key_env, system_prompt=s.system_prompt
    )
    if s.temperature is not None:
        m.temperature = s.temperature
    if s.timeout is not None:
        m.timeout.CopyFrom(to_duration(s.timeout))
    if s.max_tokens is not None:
        m.max_tokens = s.max_tokens
    return m


def _llm(m: pb.LlmSettings) -> LlmSettings:
    return LlmSettings(
        model=m.model,
        base_url=m.base_url,
        api_key_env=m.api_key_env,
        system_prompt=m.system_prompt,
        temperature=m.temperature if m.HasField("temperature") else None,
        timeout=from_duration(m.timeout) if m.HasField("timeout") else None,
        max_tokens=m.max_tokens if m.HasField("max_tokens") else None,
    )


def _usage(m: pb.TokenUsage) -> TokenUsage:
    return TokenUsage(m.prompt_tokens, m.completion_tokens, m.total_tokens)


def _agent(m: pb.Agent) -> Agent:
    return Agent(
        id=m.id,
        name=m.name,
        kind=_KIND_NAMES.get(m.kind, "unspecified"),
        capabilities=tuple(m.capabilities),
        max_concurrency=m.max_concurrency,
        status=_AGENT_STATUS_NAMES.get(m.status, "unspecified"),
        current_load=m.current_load,
        success_rate=m.success_rate,
        error_rate=m.error_rate,
        avg_latency=from_duration(m.avg_latency),
        tasks_completed=m.tasks_completed,
        tasks_failed=m.tasks_failed,
        llm=_llm(m.llm) if m.HasField("llm") else None,
        labels=dict(m.labels),
        register_time=to_datetime(m.register_time, m.HasField("register_time")),
        last_seen_time=to_datetime(m.last_seen_time, m.HasField("last_seen_time")),
        last_error=task_error_from_pb(m.last_error, m.HasField("last_error")),
    )


def _result(m: pb.AgentResult) -> AgentResult:
    return AgentResult(
        agent_id=m.agent_id,
        position=m.position,
        task_id=m.task_id,
        attempts=m.attempts,
        output=m.output,
        structured_output=from_value(m.structured_output) if m.HasField("structured_output") else None,
        error=task_error_from_pb(m.error, m.HasField("error")),
        latency=from_duration(m.latency),
        usage=_usage(m.usage),
        skipped=m.skipped,
        condition_result=m.condition_result if m.HasField("condition_result") else None,
        start_time=to_datetime(m.start_time, m.HasField("start_time")),
        end_time=to_datetime(m.end_time, m.HasField("end_time")),
    )


def _selection(m: pb.AgentSelection) -> AgentSelection:
    return AgentSelection(
        tuple(m.selected_agent_ids),
        tuple(
            SelectionCandidate(
                c.agent_id,
                c.score,
                c.success_rate,
                from_duration(c.avg_latency),
                c.current_load,
                c.max_concurrency,
                c.eligible,
                c.reason,
            )
            for c in m.candidates
        ),
        m.explanation,
    )


def _coordination(m: pb.Coordination) -> Coordination:
    return Coordination(
        id=m.id,
        status=_STATUS_NAMES.get(m.status, "unspecified"),
        mode=_MODE_NAMES.get(m.mode, "sequential"),
        task=m.task,
        request_id=m.request_id,
        source_agent_id=m.source_agent_id,
        target_agent_id=m.target_agent_id,
        agent_ids=tuple(m.agent_ids),
        required_capabilities=tuple(m.required_capabilities),
        context=from_struct(m.context),
        priority=Priority.of(m.priority),
        timeout=from_duration(m.timeout) if m.HasField("timeout") else None,
        condition=condition_from_pb(m.condition) if m.HasField("condition") else None,
        correlation_id=m.correlation_id,
        trace_id=m.trace_id,
        results=tuple(_result(r) for r in m.results),
        output=m.output,
        structured_output=from_value(m.structured_output) if m.HasField("structured_output") else None,
        error=task_error_from_pb(m.error, m.HasField("error")),
        selection=_selection(m.selection) if m.HasField("selection") else None,
        queue_position=m.queue_position,
        create_time=to_datetime(m.create_time, m.HasField("create_time")),
        start_time=to_datetime(m.start_time, m.HasField("start_time")),
        end_time=to_datetime(m.end_time, m.HasField("end_time")),
    )


def _enum(table: dict[str, int], value: str, what: str) -> int:
    if not value:
        return 0
    try:
        return table[value.lower()]
    except KeyError:
        raise ValueError(f"unknown {what} {value!r}; use one of {', '.join(table)}") from None


class CoordinationClient:
    def __init__(self, stub: coordination_pb2_grpc.CoordinationServiceStub, timeout: float | None):
        self.stub = stub
        self.timeout = timeout

    # -- agents ---------------------------------------------------------------------------------

    def register_agent(
        self,
        agent_id: str = "",
        *,
        kind: str = "offline",
        capabilities: Sequence[str] = (),
        name: str = "",
        max_concurrency: int = 0,
        llm: LlmSettings | None = None,
        labels: dict[str, str] | None = None,
        replace: bool = False,
    ) -> Agent:
        """Register an agent ("llm", "offline" or "remote" — remote ones stay offline until a Worker
        connects with that id). replace=True redefines an existing one, keeping its statistics."""
        req = pb.RegisterAgentRequest(
            agent_id=agent_id,
            name=name,
            kind=_enum(_KINDS, kind, "agent kind"),
            capabilities=list(capabilities),
            max_concurrency=max_concurrency,
            labels=labels or {},
            replace=replace,
        )
        if llm is not None:
            req.llm.CopyFrom(_llm_pb(llm))
        return _agent(call(self.stub.RegisterAgent, req, timeout=self.timeout).agent)

    def unregister_agent(self, agent_id: str, *, force: bool = False) -> Agent:
        req = pb.UnregisterAgentRequest(agent_id=agent_id, force=force)
        return _agent(call(self.stub.UnregisterAgent, req, timeout=self.timeout).agent)

    def update_capabilities(
        self, agent_id: str, capabilities: Sequence[str], *, mode: str = "replace"
    ) -> Agent:
        """mode: "replace", "add" or "remove"."""
        req = pb.UpdateCapabilitiesRequest(
            agent_id=agent_id, capabilities=list(capabilities), mode=_enum(_CAP_MODES, mode, "mode")
        )
        return _agent(call(self.stub.UpdateCapabilities, req, timeout=self.timeout).agent)

    def get_agent(self, agent_id: str) -> Agent:
        req = pb.GetAgentRequest(agent_id=agent_id)
        return _agent(call(self.stub.GetAgent, req, timeout=self.timeout).agent)

    def list_agents(
        self, *, capabilities: Sequence[str] = (), status: str = "", kind: str = "", page_size: int = 0
    ) -> Iterator[Agent]:
        """Agents ordered by id with live status and statistics (all pages)."""

        def fetch(token: str) -> tuple[list[Agent], str]:
            req = pb.ListAgentsRequest(
                capabilities=list(capabilities),
                status=_enum(_AGENT_STATUS, status, "agent status"),
                kind=_enum(_KINDS, kind, "agent kind"),
                page_size=page_size,
                page_token=token,
            )
            resp = call(self.stub.ListAgents, req, timeout=self.timeout)
            return [_agent(a) for a in resp.agents], resp.next_page_token

        return pages(fetch)

    # -- coordinations --------------------------------------------------------------------------

    def submit(
        self,
        task: str,
        *,
        mode: str = "sequential",
        source_agent_id: str = "",
        target_agent_id: str = "",
        agent_ids: Sequence[str] = (),
        required_capabilities: Sequence[str] = (),
        context: dict[str, Any] | None = None,
        priority: Priority | int | str | None = None,
        timeout: Seconds | None = None,
        condition: Condition | None = None,
        correlation_id: str = "",
        request_id: str = "",
        max_agents: int = 0,
    ) -> tuple[Coordination, bool]:
        """Queue a coordination; returns it (status "queued") and whether request_id matched an
        earlier request (then nothing new was queued)."""
        req = pb.RequestCoordinationRequest(
            request_id=request_id,
            source_agent_id=source_agent_id,
            target_agent_id=target_agent_id,
            agent_ids=list(agent_ids),
            required_capabilities=list(required_capabilities),
            mode=_enum(_MODES, mode, "mode"),
            task=task,
            context=to_struct(context),
            priority=int(Priority.of(priority)),
            correlation_id=correlation_id,
            max_agents=max_agents,
        )
        if timeout is not None:
            req.timeout.CopyFrom(to_duration(timeout))
        if condition is not None:
            req.condition.CopyFrom(condition_pb(condition))
        resp = call(self.stub.RequestCoordination, req, timeout=self.timeout)
        return _coordination(resp.coordination), resp.existing

    def request(self, task: str, **kwargs: Any) -> Coordination:
        """Queue a coordination (see submit for the arguments); returns at once."""
        return self.submit(task, **kwargs)[0]

    def run(self, task: str, *, wait_timeout: Seconds | None = None, **kwargs: Any) -> Coordination:
        """Request a coordination and wait until it ends (or wait_timeout passes)."""
        return self.wait(self.request(task, **kwargs).id, wait_timeout)

    def get(self, coordination_id: str, *, wait: Seconds | None = None) -> Coordination:
        """The coordination; with `wait` (<= 60 s) the server long-polls until it is terminal."""
        req = pb.GetCoordinationRequest(coordination_id=coordination_id)
        deadline = self.timeout
        if wait:
            req.wait_timeout.CopyFrom(to_duration(wait))
            seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
            deadline = seconds + (self.timeout or 10.0)
        return _coordination(call(self.stub.GetCoordination, req, timeout=deadline).coordination)

    def wait(self, coordination_id: str, timeout: Seconds | None = None) -> Coordination:
        """Block until the coordination is terminal or `timeout` passes; return its state either way."""
        limit = (
            None
            if timeout is None
            else time.monotonic()
            + (timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout))
        )
        while True:
            remaining = _MAX_LONG_POLL if limit is None else min(_MAX_LONG_POLL, limit - time.monotonic())
            c = self.get(coordination_id, wait=max(remaining, 0.001))
            if c.done or (limit is not None and time.monotonic() >= limit):
                return c

    def cancel(self, coordination_id: str, reason: str = "") -> Coordination:
        req = pb.CancelCoordinationRequest(coordination_id=coordination_id, reason=reason)
        return _coordination(call(self.stub.CancelCoordination, req, timeout=self.timeout).coordination)

    def list(
        self, *, status: str = "", agent_id: str = "", correlation_id: str = "", page_size: int = 0
    ) -> Iterator[Coordination]:
        """Coordinations newest first (all pages)."""

        def fetch(token: str) -> tuple[list[Coordination], str]:
            req = pb.ListCoordinationsRequest(
                status=_enum(_STATUS, status, "status"),
                agent_id=agent_id,
                correlation_id=correlation_id,
                page_size=page_size,
                page_token=token,
            )
            resp = call(self.stub.ListCoordinations, req, timeout=self.timeout)
            return [_coordination(c) for c in resp.coordinations], resp.next_page_token

        return pages(fetch)
