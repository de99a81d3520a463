"""Proto <-> Python for the CoordinationService (agents, coordinations, worker stream messages)."""

from __future__ import annotations

from typing import Any

from voltorch import wire
from voltorch.v1 import common_pb2
from voltorch.v1 import coordination_pb2 as pb

from ..agents.base import AgentTask, TokenUsage, ToolSpec
from ..agents.llm import LlmSettings
from ..agents.remote import (
    Assignment,
    CancelTaskMsg,
    HeartbeatMsg,
    ProgressMsg,
    TaskResultMsg,
    WorkerHello,
)
from ..components.coordination import (
    AgentInfo,
    AgentResult,
    Coordination,
    CoordinationCondition,
    CoordinationRequest,
    Selection,
)
from ..errors import InvalidArgument
from ..priority import parse_priority
from ._convert import duration, duration_to_seconds, py_to_struct, py_to_value, struct_to_py, ts, value_to_py
from ._wire import reading, to_server, to_wire


def enum_name(names: dict[int, str], value: int, field: str, *, unspecified: str = "") -> str:
    with reading():
        return wire.enum_name(names, value, field, unspecified=unspecified, request=True)


# -- agents ----------------------------------------------------------------------------------------


def llm_from_pb(m: pb.LlmSettings) -> LlmSettings:
    with reading():
        return to_server(wire.llm_from_pb(m, request=True))


def tools_from_pb(tools: Any) -> tuple[ToolSpec, ...]:
    return tuple(to_server(wire.tool_from_pb(t)) for t in tools)


def agent_pb(a: AgentInfo) -> pb.Agent:
    return pb.Agent(
        id=a.id,
        name=a.name,
        kind=wire.AGENT_KINDS.numbers[a.kind],
        capabilities=list(a.capabilities),
        max_concurrency=a.max_concurrency,
        status=wire.AGENT_STATUSES.numbers[a.status],
        current_load=a.current_load,
        success_rate=a.success_rate,
        error_rate=a.error_rate,
        avg_latency=duration(a.avg_latency),
        tasks_completed=a.tasks_completed,
        tasks_failed=a.tasks_failed,
        llm=wire.llm_pb(to_wire(a.llm)) if a.llm else None,
        labels=a.labels,
        register_time=ts(a.register_time),
        last_seen_time=ts(a.last_seen_time),
        last_error=wire.task_error_pb(a.last_error),
        tools=[wire.tool_pb(to_wire(t)) for t in a.tools],
    )


# -- coordinations ---------------------------------------------------------------------------------


def condition_from_pb(c: pb.CoordinationCondition) -> CoordinationCondition:
    if c.WhichOneof("predicate") is None:
        raise InvalidArgument(
            "condition", "set contains, regex or json_field_equals", reason="CONDITION_INVALID"
        )
    return to_server(wire.condition_from_pb(c))


def condition_pb(c: CoordinationCondition | None) -> pb.CoordinationCondition | None:
    return None if c is None else wire.condition_pb(to_wire(c))


def request_from_pb(r: pb.RequestCoordinationRequest) -> CoordinationRequest:
    priority = parse_priority(r.priority)
    return CoordinationRequest(
        task=r.task,
        mode=enum_name(wire.COORDINATION_MODES.names, r.mode, "mode", unspecified="sequential"),
        source_agent_id=r.source_agent_id,
        target_agent_id=r.target_agent_id,
        agent_ids=tuple(r.agent_ids),
        required_capabilities=tuple(r.required_capabilities),
        context=struct_to_py(r.context),
        priority=priority,
        timeout=duration_to_seconds(r.timeout, "timeout"),
        condition=condition_from_pb(r.condition) if r.HasField("condition") else None,
        correlation_id=r.correlation_id,
        request_id=r.request_id,
        max_agents=r.max_agents,
    )


def _selection_pb(s: Selection | None) -> pb.AgentSelection | None:
    if s is None:
        return None
    return pb.AgentSelection(
        selected_agent_ids=list(s.selected_agent_ids),
        candidates=[
            pb.SelectionCandidate(
                agent_id=c.agent_id,
                score=c.score,
                success_rate=c.success_rate,
                avg_latency=duration(c.avg_latency),
                current_load=c.current_load,
                max_concurrency=c.max_concurrency,
                eligible=c.eligible,
                reason=c.reason,
            )
            for c in s.candidates
        ],
        explanation=s.explanation,
    )


def result_pb(r: AgentResult) -> pb.AgentResult:
    m = pb.AgentResult(
        agent_id=r.agent_id,
        position=r.position,
        task_id=r.task_id,
        attempts=r.attempts,
        output=r.output,
        error=wire.task_error_pb(r.error),
        latency=duration(r.latency),
        usage=wire.usage_pb(r.usage),
        skipped=r.skipped,
        start_time=ts(r.start_time),
        end_time=ts(r.end_time),
    )
    if r.structured_output is not None:
        m.structured_output.CopyFrom(py_to_value(r.structured_output))
    if r.condition_result is not None:
        m.condition_result = r.condition_result
    return m


def coordination_pb(c: Coordination) -> pb.Coordination:
    m = pb.Coordination(
        id=c.id,
        request_id=c.request_id,
        mode=wire.COORDINATION_MODES.numbers[c.mode],
        status=wire.COORDINATION_STATUSES.numbers[c.status],
        source_agent_id=c.source_agent_id,
        target_agent_id=c.target_agent_id,
        agent_ids=list(c.agent_ids),
        required_capabilities=list(c.required_capabilities),
        task=c.task,
        context=py_to_struct(c.context),
        priority=c.priority.pb,
        timeout=duration(c.timeout),
        condition=condition_pb(c.condition),
        correlation_id=c.correlation_id,
        trace_id=c.trace_id,
        results=[result_pb(r) for r in c.results],
        output=c.output,
        error=wire.task_error_pb(c.error),
        selection=_selection_pb(c.selection),
        queue_position=c.queue_position,
        create_time=ts(c.create_time),
        start_time=ts(c.start_time),
        end_time=ts(c.end_time),
    )
    if c.structured_output is not None:
        m.structured_output.CopyFrom(py_to_value(c.structured_output))
    return m


# -- worker stream ---------------------------------------------------------------------------------


def hello_from_pb(h: pb.WorkerHello) -> WorkerHello:
    return WorkerHello(
        agent_id=h.agent_id,
        name=h.name,
        capabilities=tuple(h.capabilities),
        max_concurrency=h.max_concurrency,
        labels=dict(h.labels),
        sdk_version=h.sdk_version,
        tools=tools_from_pb(h.tools),
    )


def worker_message_from_pb(m: pb.WorkerMessage) -> Any:
    """The session message for a worker message (None for one to ignore, e.g. a second hello)."""
    kind = m.WhichOneof("message")
    if kind == "heartbeat":
        return HeartbeatMsg(tuple(m.heartbeat.running_task_ids))
    if kind == "result":
        r = m.result
        failed = r.HasField("error")
        return TaskResultMsg(
            task_id=r.task_id,
            attempt=r.attempt,
            output=r.output,
            structured_output=value_to_py(r.structured_output) if r.HasField("structured_output") else None,
            error_code=r.error.code if failed else "",
            error_message=r.error.message if failed else "",
            error_retryable=r.error.retryable if failed else False,
            failed=failed,
            usage=TokenUsage(
                r.usage.prompt_tokens,
                r.usage.completion_tokens,
                r.usage.total_tokens,
                r.usage.cost,
                r.usage.llm_calls,
            ),
        )
    if kind == "progress":
        p = m.progress
        return ProgressMsg(
            task_id=p.task_id,
            attempt=p.attempt,
            message=p.message,
            fraction=p.fraction if p.HasField("fraction") else None,
            details=struct_to_py(p.details),
        )
    return None


def _assignment_pb(t: AgentTask) -> pb.TaskAssignment:
    return pb.TaskAssignment(
        task_id=t.task_id,
        attempt=t.attempt,
        coordination_id=t.coordination_id,
        execution_id=t.execution_id,
        step_id=t.step_id,
        task=t.text,
        context=py_to_struct(t.context),
        trace_context=common_pb2.TraceContext(traceparent=t.traceparent),
        deadline=ts(t.deadline),
        priority=t.priority.pb,
        correlation_id=t.correlation_id,
    )


def server_message_pb(msg: Any) -> pb.ServerMessage:
    if isinstance(msg, Assignment):
        return pb.ServerMessage(assignment=_assignment_pb(msg.task))
    if isinstance(msg, CancelTaskMsg):
        return pb.ServerMessage(
            cancel=pb.CancelTask(task_id=msg.task_id, attempt=msg.attempt, reason=msg.reason)
        )
    raise TypeError(f"not a server message: {msg!r}")
