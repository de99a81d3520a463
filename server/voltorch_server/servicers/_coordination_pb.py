"""Proto <-> Python for the CoordinationService: requests and worker stream messages read here; agents and
coordinations are written by voltorch.wire."""

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
    Coordination,
    CoordinationCondition,
    CoordinationRequest,
)
from ..errors import InvalidArgument
from ..priority import parse_priority
from ._convert import duration_to_seconds, py_to_struct, struct_to_py, ts, value_to_py
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
    return wire.agent_pb(a)


# -- coordinations ---------------------------------------------------------------------------------


def condition_from_pb(c: pb.CoordinationCondition) -> CoordinationCondition:
    if c.WhichOneof("predicate") is None:
        raise InvalidArgument(
            "condition", "set contains, regex or json_field_equals", reason="CONDITION_INVALID"
        )
    return to_server(wire.condition_from_pb(c))


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


def coordination_pb(c: Coordination) -> pb.Coordination:
    """voltorch.wire's mapping, given the server's coordination as it is (no copy on GetCoordination's
    path) and its condition under the wire's names."""
    return wire.coordination_pb(c, to_wire(c.condition) if c.condition is not None else None)


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
