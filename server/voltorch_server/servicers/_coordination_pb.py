"""Proto <-> Python for the CoordinationService: requests read here; agents, coordinations and the worker
stream's messages are mapped by voltorch.wire (what a worker sends transcribed to the session's types)."""

from __future__ import annotations

from typing import Any

from voltorch import wire
from voltorch.v1 import coordination_pb2 as pb

from .. import __version__
from ..agents.base import TokenUsage, ToolSpec
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
from ._convert import duration_to_seconds, struct_to_py
from ._wire import enum_name, reading, to_server, to_wire

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


# -- worker stream: voltorch.wire's mapping; what a worker sends transcribed to the session's messages --


def hello_from_pb(h: pb.WorkerHello) -> WorkerHello:
    return to_server(wire.hello_from_pb(h))


def worker_message_from_pb(m: pb.WorkerMessage) -> HeartbeatMsg | TaskResultMsg | ProgressMsg | None:
    """The session message for a worker message (None for one to ignore, e.g. a second hello)."""
    msg = wire.worker_message_from_pb(m)
    if isinstance(msg, wire.TaskResult):
        return _result(msg)
    if isinstance(msg, wire.WorkerHeartbeat | wire.TaskProgress):
        return to_server(msg)
    return None


def _result(r: wire.TaskResult) -> TaskResultMsg:
    """The session keeps a result's error flat (code, message, retryable, failed)."""
    e = r.error
    return TaskResultMsg(
        task_id=r.task_id,
        attempt=r.attempt,
        output=r.output,
        structured_output=r.structured_output,
        error_code=e.code if e else "",
        error_message=e.message if e else "",
        error_retryable=e.retryable if e else False,
        failed=e is not None,
        usage=TokenUsage() if r.usage is None else to_server(r.usage),
    )


def server_message_pb(msg: Assignment | CancelTaskMsg) -> pb.ServerMessage:
    if isinstance(msg, Assignment):
        return pb.ServerMessage(assignment=wire.assignment_pb(msg.task))
    if isinstance(msg, CancelTaskMsg):
        return pb.ServerMessage(cancel=wire.cancel_pb(msg))
    raise TypeError(f"not a server message: {msg!r}")


def welcome_pb(agent_id: str, session_id: str, interval: float, timeout: float) -> pb.ServerMessage:
    w = wire.WorkerWelcome(agent_id, session_id, interval, timeout, f"voltorch/{__version__}")
    return pb.ServerMessage(welcome=wire.welcome_pb(w))
