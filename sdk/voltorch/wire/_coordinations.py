"""Agents and coordinations on the wire: Agent, Coordination with its AgentResults and AgentSelection, both
directions.

As for executions, the SDK reads answers into these types and the server writes its own read models with
the same `*_pb` functions (the `...Like` protocols: times as datetimes or epoch seconds, durations as
seconds). A coordination's condition is given to coordination_pb apart: the server names its predicates
differently and hands it over as a wire Condition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..v1 import coordination_pb2 as pb
from ._conditions import (
    Condition,
    LlmSettings,
    LlmSettingsLike,
    TaskError,
    TaskErrorLike,
    TokenUsage,
    TokenUsageLike,
    ToolSpec,
    ToolSpecLike,
    condition_from_pb,
    condition_pb,
    llm_from_pb,
    llm_pb,
    task_error_from_pb,
    task_error_pb,
    tool_from_pb,
    tool_pb,
    usage_from_pb,
    usage_pb,
)
from ._enums import AGENT_KINDS, AGENT_STATUSES, COORDINATION_MODES, COORDINATION_STATUSES
from ._executions import TERMINAL, Time
from ._priority import Priority
from ._values import (
    from_duration,
    from_struct,
    from_value,
    to_datetime,
    to_duration,
    to_struct,
    to_timestamp,
    to_value,
)

# -- the SDK's types --------------------------------------------------------------------------------------


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
    tools: tuple[ToolSpec, ...] = ()  # the functions it offers to tool-calling LLM agents


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


# -- what the writers read (the SDK's types above, or the server's read models) ---------------------------


class AgentLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def capabilities(self) -> Sequence[str]: ...
    @property
    def max_concurrency(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def current_load(self) -> int: ...
    @property
    def success_rate(self) -> float: ...
    @property
    def error_rate(self) -> float: ...
    @property
    def avg_latency(self) -> float: ...
    @property
    def tasks_completed(self) -> int: ...
    @property
    def tasks_failed(self) -> int: ...
    @property
    def llm(self) -> LlmSettingsLike | None: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def register_time(self) -> Time: ...
    @property
    def last_seen_time(self) -> Time: ...
    @property
    def last_error(self) -> TaskErrorLike | None: ...
    @property
    def tools(self) -> Sequence[ToolSpecLike]: ...


class AgentResultLike(Protocol):
    @property
    def agent_id(self) -> str: ...
    @property
    def position(self) -> int: ...
    @property
    def task_id(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def output(self) -> str: ...
    @property
    def structured_output(self) -> Any: ...
    @property
    def error(self) -> TaskErrorLike | None: ...
    @property
    def latency(self) -> float: ...
    @property
    def usage(self) -> TokenUsageLike: ...
    @property
    def skipped(self) -> bool: ...
    @property
    def condition_result(self) -> bool | None: ...
    @property
    def start_time(self) -> Time: ...
    @property
    def end_time(self) -> Time: ...


class SelectionCandidateLike(Protocol):
    @property
    def agent_id(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def success_rate(self) -> float: ...
    @property
    def avg_latency(self) -> float: ...
    @property
    def current_load(self) -> int: ...
    @property
    def max_concurrency(self) -> int: ...
    @property
    def eligible(self) -> bool: ...
    @property
    def reason(self) -> str: ...


class AgentSelectionLike(Protocol):
    @property
    def selected_agent_ids(self) -> Sequence[str]: ...
    @property
    def candidates(self) -> Sequence[SelectionCandidateLike]: ...
    @property
    def explanation(self) -> str: ...


class CoordinationLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def task(self) -> str: ...
    @property
    def request_id(self) -> str: ...
    @property
    def source_agent_id(self) -> str: ...
    @property
    def target_agent_id(self) -> str: ...
    @property
    def agent_ids(self) -> Sequence[str]: ...
    @property
    def required_capabilities(self) -> Sequence[str]: ...
    @property
    def context(self) -> dict[str, Any]: ...
    @property
    def priority(self) -> Priority: ...
    @property
    def timeout(self) -> float | None: ...
    @property
    def correlation_id(self) -> str: ...
    @property
    def trace_id(self) -> str: ...
    @property
    def results(self) -> Sequence[AgentResultLike]: ...
    @property
    def output(self) -> str: ...
    @property
    def structured_output(self) -> Any: ...
    @property
    def error(self) -> TaskErrorLike | None: ...
    @property
    def selection(self) -> AgentSelectionLike | None: ...
    @property
    def queue_position(self) -> int: ...
    @property
    def create_time(self) -> Time: ...
    @property
    def start_time(self) -> Time: ...
    @property
    def end_time(self) -> Time: ...


# -- writers -----------------------------------------------------------------------------------------------


def agent_pb(a: AgentLike) -> pb.Agent:
    return pb.Agent(
        id=a.id,
        name=a.name,
        kind=AGENT_KINDS.numbers[a.kind],
        capabilities=list(a.capabilities),
        max_concurrency=a.max_concurrency,
        status=AGENT_STATUSES.numbers[a.status],
        current_load=a.current_load,
        success_rate=a.success_rate,
        error_rate=a.error_rate,
        avg_latency=to_duration(a.avg_latency),
        tasks_completed=a.tasks_completed,
        tasks_failed=a.tasks_failed,
        llm=llm_pb(a.llm) if a.llm else None,
        labels=a.labels,
        register_time=to_timestamp(a.register_time),
        last_seen_time=to_timestamp(a.last_seen_time),
        last_error=task_error_pb(a.last_error),
        tools=[tool_pb(t) for t in a.tools],
    )


def selection_pb(s: AgentSelectionLike | None) -> pb.AgentSelection | None:
    if s is None:
        return None
    return pb.AgentSelection(
        selected_agent_ids=list(s.selected_agent_ids),
        candidates=[
            pb.SelectionCandidate(
                agent_id=c.agent_id,
                score=c.score,
                success_rate=c.success_rate,
                avg_latency=to_duration(c.avg_latency),
                current_load=c.current_load,
                max_concurrency=c.max_concurrency,
                eligible=c.eligible,
                reason=c.reason,
            )
            for c in s.candidates
        ],
        explanation=s.explanation,
    )


def agent_result_pb(r: AgentResultLike) -> pb.AgentResult:
    m = pb.AgentResult(
        agent_id=r.agent_id,
        position=r.position,
        task_id=r.task_id,
        attempts=r.attempts,
        output=r.output,
        error=task_error_pb(r.error),
        latency=to_duration(r.latency),
        usage=usage_pb(r.usage),
        skipped=r.skipped,
        start_time=to_timestamp(r.start_time),
        end_time=to_timestamp(r.end_time),
    )
    if r.structured_output is not None:
        m.structured_output.CopyFrom(to_value(r.structured_output))
    if r.condition_result is not None:
        m.condition_result = r.condition_result
    return m


def coordination_pb(c: CoordinationLike, condition: Condition | None) -> pb.Coordination:
    """`condition`: the SDK's c.condition, or the server's transcribed to the wire's Condition."""
    m = pb.Coordination(
        id=c.id,
        request_id=c.request_id,
        mode=COORDINATION_MODES.numbers[c.mode],
        status=COORDINATION_STATUSES.numbers[c.status],
        source_agent_id=c.source_agent_id,
        target_agent_id=c.target_agent_id,
        agent_ids=list(c.agent_ids),
        required_capabilities=list(c.required_capabilities),
        task=c.task,
        context=to_struct(c.context),
        priority=c.priority.pb,
        timeout=to_duration(c.timeout),
        condition=None if condition is None else condition_pb(condition),
        correlation_id=c.correlation_id,
        trace_id=c.trace_id,
        results=[agent_result_pb(r) for r in c.results],
        output=c.output,
        error=task_error_pb(c.error),
        selection=selection_pb(c.selection),
        queue_position=c.queue_position,
        create_time=to_timestamp(c.create_time),
        start_time=to_timestamp(c.start_time),
        end_time=to_timestamp(c.end_time),
    )
    if c.structured_output is not None:
        m.structured_output.CopyFrom(to_value(c.structured_output))
    return m


# -- readers -----------------------------------------------------------------------------------------------


def agent_from_pb(m: pb.Agent) -> Agent:
    return Agent(
        id=m.id,
        name=m.name,
        kind=AGENT_KINDS.names.get(m.kind, "unspecified"),
        capabilities=tuple(m.capabilities),
        max_concurrency=m.max_concurrency,
        status=AGENT_STATUSES.names.get(m.status, "unspecified"),
        current_load=m.current_load,
        success_rate=m.success_rate,
        error_rate=m.error_rate,
        avg_latency=from_duration(m.avg_latency),
        tasks_completed=m.tasks_completed,
        tasks_failed=m.tasks_failed,
        llm=llm_from_pb(m.llm) if m.HasField("llm") else None,
        labels=dict(m.labels),
        register_time=to_datetime(m.register_time, m.HasField("register_time")),
        last_seen_time=to_datetime(m.last_seen_time, m.HasField("last_seen_time")),
        last_error=task_error_from_pb(m.last_error, m.HasField("last_error")),
        tools=tuple(tool_from_pb(t) for t in m.tools),
    )


def agent_result_from_pb(m: pb.AgentResult) -> AgentResult:
    return AgentResult(
        agent_id=m.agent_id,
        position=m.position,
        task_id=m.task_id,
        attempts=m.attempts,
        output=m.output,
        structured_output=from_value(m.structured_output) if m.HasField("structured_output") else None,
        error=task_error_from_pb(m.error, m.HasField("error")),
        latency=from_duration(m.latency),
        usage=usage_from_pb(m.usage),
        skipped=m.skipped,
        condition_result=m.condition_result if m.HasField("condition_result") else None,
        start_time=to_datetime(m.start_time, m.HasField("start_time")),
        end_time=to_datetime(m.end_time, m.HasField("end_time")),
    )


def selection_from_pb(m: pb.AgentSelection) -> AgentSelection:
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


def coordination_from_pb(m: pb.Coordination) -> Coordination:
    return Coordination(
        id=m.id,
        status=COORDINATION_STATUSES.names.get(m.status, "unspecified"),
        mode=COORDINATION_MODES.names.get(m.mode, "sequential"),
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
        results=tuple(agent_result_from_pb(r) for r in m.results),
        output=m.output,
        structured_output=from_value(m.structured_output) if m.HasField("structured_output") else None,
        error=task_error_from_pb(m.error, m.HasField("error")),
        selection=selection_from_pb(m.selection) if m.HasField("selection") else None,
        queue_position=m.queue_position,
        create_time=to_datetime(m.create_time, m.HasField("create_time")),
        start_time=to_datetime(m.start_time, m.HasField("start_time")),
        end_time=to_datetime(m.end_time, m.HasField("end_time")),
    )
