"""The remote worker stream on the wire (CoordinationService.Connect), both directions.

A worker sends WorkerHello, WorkerHeartbeat, TaskResult and TaskProgress (worker_message_pb, written by the
SDK's Worker; worker_message_from_pb, read by the server); the server sends WorkerWelcome, TaskAssignment
and CancelTask (welcome_pb, assignment_pb and cancel_pb, written by the server from its own objects as
they are; server_message_from_pb, read by the Worker). A task's instruction and trace parent are `text`
and `traceparent` here, as on both sides (the proto's `task` and `trace_context.traceparent`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..v1 import common_pb2
from ..v1 import coordination_pb2 as pb
from ._conditions import (
    TaskError,
    TokenUsage,
    ToolSpec,
    seconds_from_pb,
    task_error_from_pb,
    task_error_pb,
    tool_from_pb,
    tool_pb,
    usage_from_pb,
    usage_pb,
)
from ._executions import Time
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

# -- what a worker sends ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerHello:
    """The first message of a stream: who the worker is (agent_id "" = the server generates one)."""

    agent_id: str = ""
    name: str = ""
    capabilities: tuple[str, ...] = ()
    max_concurrency: int = 0  # 0 = 1
    labels: dict[str, str] = field(default_factory=dict)
    sdk_version: str = ""
    tools: tuple[ToolSpec, ...] = ()


@dataclass(frozen=True)
class WorkerHeartbeat:
    running_task_ids: tuple[str, ...] = ()
    time: datetime | None = None  # the worker's clock, informational


@dataclass(frozen=True)
class TaskResult:
    """One assignment's outcome: an output (text, and JSON when structured) or an error."""

    task_id: str
    attempt: int
    output: str = ""
    structured_output: Any = None
    error: TaskError | None = None
    usage: TokenUsage | None = None  # None: not reported
    duration: float | None = None  # seconds, worker-measured (informational)


@dataclass(frozen=True)
class TaskProgress:
    task_id: str
    attempt: int
    message: str = ""
    fraction: float | None = None  # 0..1 when known
    details: dict[str, Any] = field(default_factory=dict)


WorkerMessage = WorkerHello | WorkerHeartbeat | TaskResult | TaskProgress


# -- what the server sends ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerWelcome:
    agent_id: str
    session_id: str
    heartbeat_interval: float  # seconds: send a heartbeat at least this often
    heartbeat_timeout: float  # seconds of silence after which the worker is offline
    server_version: str


@dataclass(frozen=True)
class TaskAssignment:
    task_id: str
    attempt: int  # 1 on first dispatch, +1 per re-dispatch; echoed in the TaskResult
    text: str  # the instruction
    context: dict[str, Any]
    coordination_id: str = ""
    execution_id: str = ""
    step_id: str = ""
    deadline: datetime | None = None
    priority: Priority = Priority.NORMAL
    correlation_id: str = ""
    traceparent: str = ""  # W3C: start the task's span as a child of this


@dataclass(frozen=True)
class CancelTask:
    task_id: str
    attempt: int  # 0 = any attempt
    reason: str = ""


ServerMessage = WorkerWelcome | TaskAssignment | CancelTask


# -- what the writers of server messages read (the types above, or the server's) ----------------------------


class TaskAssignmentLike(Protocol):
    @property
    def task_id(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def context(self) -> dict[str, Any]: ...
    @property
    def coordination_id(self) -> str: ...
    @property
    def execution_id(self) -> str: ...
    @property
    def step_id(self) -> str: ...
    @property
    def deadline(self) -> Time: ...
    @property
    def priority(self) -> Priority: ...
    @property
    def correlation_id(self) -> str: ...
    @property
    def traceparent(self) -> str: ...


class CancelTaskLike(Protocol):
    @property
    def task_id(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def reason(self) -> str: ...


# -- writers -----------------------------------------------------------------------------------------------


def hello_pb(h: WorkerHello) -> pb.WorkerHello:
    return pb.WorkerHello(
        agent_id=h.agent_id,
        name=h.name,
        capabilities=list(h.capabilities),
        max_concurrency=h.max_concurrency,
        labels=h.labels,
        sdk_version=h.sdk_version,
        tools=[tool_pb(t) for t in h.tools],
    )


def heartbeat_pb(h: WorkerHeartbeat) -> pb.WorkerHeartbeat:
    return pb.WorkerHeartbeat(running_task_ids=list(h.running_task_ids), time=to_timestamp(h.time))


def result_pb(r: TaskResult) -> pb.TaskResult:
    m = pb.TaskResult(
        task_id=r.task_id,
        attempt=r.attempt,
        output=r.output,
        error=task_error_pb(r.error),
        usage=None if r.usage is None else usage_pb(r.usage),
        duration=to_duration(r.duration),
    )
    if r.structured_output is not None:
        m.structured_output.CopyFrom(to_value(r.structured_output))
    return m


def progress_pb(p: TaskProgress) -> pb.TaskProgress:
    """`details` is always written (an empty Struct when there are none)."""
    m = pb.TaskProgress(task_id=p.task_id, attempt=p.attempt, message=p.message, details=to_struct(p.details))
    if p.fraction is not None:
        m.fraction = p.fraction
    return m


def worker_message_pb(msg: WorkerMessage) -> pb.WorkerMessage:
    if isinstance(msg, WorkerHello):
        return pb.WorkerMessage(hello=hello_pb(msg))
    if isinstance(msg, WorkerHeartbeat):
        return pb.WorkerMessage(heartbeat=heartbeat_pb(msg))
    if isinstance(msg, TaskResult):
        return pb.WorkerMessage(result=result_pb(msg))
    if isinstance(msg, TaskProgress):
        return pb.WorkerMessage(progress=progress_pb(msg))
    raise TypeError(f"not a worker message: {msg!r}")


def welcome_pb(w: WorkerWelcome) -> pb.WorkerWelcome:
    return pb.WorkerWelcome(
        agent_id=w.agent_id,
        session_id=w.session_id,
        heartbeat_interval=to_duration(w.heartbeat_interval),
        heartbeat_timeout=to_duration(w.heartbeat_timeout),
        server_version=w.server_version,
    )


def assignment_pb(t: TaskAssignmentLike) -> pb.TaskAssignment:
    """`context` and `trace_context` are always written (empty when there are none)."""
    return pb.TaskAssignment(
        task_id=t.task_id,
        attempt=t.attempt,
        coordination_id=t.coordination_id,
        execution_id=t.execution_id,
        step_id=t.step_id,
        task=t.text,
        context=to_struct(t.context),
        trace_context=common_pb2.TraceContext(traceparent=t.traceparent),
        deadline=to_timestamp(t.deadline),
        priority=t.priority.pb,
        correlation_id=t.correlation_id,
    )


def cancel_pb(c: CancelTaskLike) -> pb.CancelTask:
    return pb.CancelTask(task_id=c.task_id, attempt=c.attempt, reason=c.reason)


# -- readers -----------------------------------------------------------------------------------------------


def hello_from_pb(m: pb.WorkerHello) -> WorkerHello:
    return WorkerHello(
        agent_id=m.agent_id,
        name=m.name,
        capabilities=tuple(m.capabilities),
        max_concurrency=m.max_concurrency,
        labels=dict(m.labels),
        sdk_version=m.sdk_version,
        tools=tuple(tool_from_pb(t) for t in m.tools),
    )


def heartbeat_from_pb(m: pb.WorkerHeartbeat) -> WorkerHeartbeat:
    return WorkerHeartbeat(tuple(m.running_task_ids), to_datetime(m.time, m.HasField("time")))


def result_from_pb(m: pb.TaskResult) -> TaskResult:
    return TaskResult(
        task_id=m.task_id,
        attempt=m.attempt,
        output=m.output,
        structured_output=from_value(m.structured_output) if m.HasField("structured_output") else None,
        error=task_error_from_pb(m.error, m.HasField("error")),
        usage=usage_from_pb(m.usage) if m.HasField("usage") else None,
        duration=seconds_from_pb(m, "duration", "result.duration"),
    )


def progress_from_pb(m: pb.TaskProgress) -> TaskProgress:
    return TaskProgress(
        task_id=m.task_id,
        attempt=m.attempt,
        message=m.message,
        fraction=m.fraction if m.HasField("fraction") else None,
        details=from_struct(m.details),
    )


def worker_message_from_pb(m: pb.WorkerMessage) -> WorkerMessage | None:
    """None for a message with no kind set (or one this version does not know)."""
    kind = m.WhichOneof("message")
    if kind == "hello":
        return hello_from_pb(m.hello)
    if kind == "heartbeat":
        return heartbeat_from_pb(m.heartbeat)
    if kind == "result":
        return result_from_pb(m.result)
    if kind == "progress":
        return progress_from_pb(m.progress)
    return None


def welcome_from_pb(m: pb.WorkerWelcome) -> WorkerWelcome:
    return WorkerWelcome(
        agent_id=m.agent_id,
        session_id=m.session_id,
        heartbeat_interval=from_duration(m.heartbeat_interval),
        heartbeat_timeout=from_duration(m.heartbeat_timeout),
        server_version=m.server_version,
    )


def assignment_from_pb(m: pb.TaskAssignment) -> TaskAssignment:
    return TaskAssignment(
        task_id=m.task_id,
        attempt=m.attempt,
        text=m.task,
        context=from_struct(m.context),
        coordination_id=m.coordination_id,
        execution_id=m.execution_id,
        step_id=m.step_id,
        deadline=to_datetime(m.deadline, m.HasField("deadline")),
        priority=Priority.of(m.priority),
        correlation_id=m.correlation_id,
        traceparent=m.trace_context.traceparent,
    )


def cancel_from_pb(m: pb.CancelTask) -> CancelTask:
    return CancelTask(m.task_id, m.attempt, m.reason)


def server_message_from_pb(m: pb.ServerMessage) -> ServerMessage | None:
    """None for a message with no kind set (or one this version does not know)."""
    kind = m.WhichOneof("message")
    if kind == "welcome":
        return welcome_from_pb(m.welcome)
    if kind == "assignment":
        return assignment_from_pb(m.assignment)
    if kind == "cancel":
        return cancel_from_pb(m.cancel)
    return None
