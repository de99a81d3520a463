"""The server's types <-> voltorch.wire's types, so the proto mapping is written once (in voltorch.wire).

Classes of the same concept share field names; the few that differ are renamed here. A transcription
copies fields by name (nested dataclasses transcribed, their sequences as tuples), so no mapping is
listed field by field a second time. Templates, conditions, LLM settings, ExecuteCompleteWorkflow's
options, a CreateSchedule request's schedule and the messages a worker sends go through here; events use
the value helpers of voltorch.wire directly, and executions, signals, agents, coordinations, schedules,
the messages sent to a worker, keys with their changes and snapshots, health, errors and metrics go to
voltorch.wire's writers as they are, uncopied (its `...Like` protocols: epoch seconds are times there
too, to the nanosecond; what is named differently is passed apart).
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from typing import Any

from voltorch import wire

from ..agents.base import TokenUsage, ToolSpec
from ..agents.llm import LlmSettings
from ..agents.remote import HeartbeatMsg, ProgressMsg, WorkerHello
from ..components.cluster import Member
from ..components.coordination import CoordinationCondition
from ..components.schedules import Schedule
from ..components.workflows import CompleteOptions
from ..components.workflows.templates import (
    AgentTaskSpec,
    ApprovalSpec,
    Budget,
    ConditionSpec,
    CoordinationSpec,
    FanOutSpec,
    ParameterSpec,
    RetryPolicy,
    SleepSpec,
    StepSpec,
    Template,
    WaitSpec,
)
from ..errors import InvalidArgument

_SERVER: dict[type, type] = {
    wire.WorkflowTemplate: Template,
    wire.Step: StepSpec,
    wire.AgentTask: AgentTaskSpec,
    wire.CoordinationStep: CoordinationSpec,
    wire.ConditionStep: ConditionSpec,
    wire.FanOut: FanOutSpec,
    wire.WaitStep: WaitSpec,
    wire.ApprovalStep: ApprovalSpec,
    wire.SleepStep: SleepSpec,
    wire.RetryPolicy: RetryPolicy,
    wire.ParameterSpec: ParameterSpec,
    wire.Condition: CoordinationCondition,
    wire.LlmSettings: LlmSettings,
    wire.Budget: Budget,
    wire.ToolSpec: ToolSpec,
    wire.Member: Member,
    wire.Schedule: Schedule,
    wire.CompleteOptions: CompleteOptions,
    wire.TokenUsage: TokenUsage,
    wire.WorkerHello: WorkerHello,
    wire.WorkerHeartbeat: HeartbeatMsg,
    wire.TaskProgress: ProgressMsg,
}
_WIRE = {server: w for w, server in _SERVER.items()}
# wire name -> server name (the server's names are also its storage keys)
_TO_SERVER_NAMES = {"contains_text": "contains", "regex_pattern": "regex"}
_TO_WIRE_NAMES = {server: w for w, server in _TO_SERVER_NAMES.items()}
_OPAQUE = frozenset({"json_value", "context", "default", "enum", "labels"})  # values, copied as they are
# the server sets these, never a request (a schedule's next_tick_time and last_tick_time have no server
# field of that name)
_SERVER_ONLY = frozenset({"builtin", "create_time", "last_execution_id", "ticks_started", "ticks_skipped"})


def _copy(obj: Any, classes: dict[type, type], names: dict[str, str]) -> Any:
    if isinstance(obj, list | tuple):
        return tuple(_copy(v, classes, names) for v in obj)
    if not is_dataclass(obj) or isinstance(obj, type):
        return obj
    cls = classes[type(obj)]
    wanted = {f.name for f in fields(cls)}
    values = {}
    for f in fields(obj):
        name = names.get(f.name, f.name)
        if name in wanted and name not in _SERVER_ONLY:
            value = getattr(obj, f.name)
            values[name] = value if name in _OPAQUE else _copy(value, classes, names)
    if isinstance(obj, wire.SleepStep | SleepSpec):  # a time: datetime on the wire, epoch seconds here
        until = values.get("until")
        if isinstance(until, datetime):
            values["until"] = until.timestamp()
        elif until is not None:
            values["until"] = datetime.fromtimestamp(until, UTC)
    if isinstance(obj, wire.Schedule) and values["start_time"] is not None:  # to the microsecond
        values["start_time"] = values["start_time"].timestamp()
    if isinstance(obj, Member):  # times: epoch seconds here, datetimes on the wire
        for name in ("start_time", "last_heartbeat"):
            values[name] = datetime.fromtimestamp(values[name], UTC)
    elif isinstance(obj, wire.Member):
        for name in ("start_time", "last_heartbeat"):
            values[name] = values[name].timestamp() if values[name] is not None else 0.0
    if isinstance(obj, wire.ParameterSpec):  # "no default": UNSET on the wire side, has_default here
        values["has_default"] = obj.default is not wire.UNSET
        values["default"] = obj.default if values["has_default"] else None
    elif isinstance(obj, ParameterSpec):
        values["default"] = obj.default if obj.has_default else wire.UNSET
    return cls(**values)


def to_server(obj: Any) -> Any:
    """A wire object (read from a request) as the server's type."""
    return _copy(obj, _SERVER, _TO_SERVER_NAMES)


def to_wire(obj: Any) -> Any:
    """A server object as its wire type (for an answer)."""
    return _copy(obj, _WIRE, _TO_WIRE_NAMES)


class _Reading:
    """Read a request with voltorch.wire (request=True): what it cannot read is INVALID_ARGUMENT. A class
    rather than a @contextmanager: SetKey reads through it, and this costs a fraction of a generator's."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, wire.WireError):
            raise InvalidArgument(exc.field, exc.message, reason=exc.reason) from None


_READING = _Reading()


def reading() -> _Reading:
    """`with reading(): ...` around voltorch.wire's readers of a request."""
    return _READING


def enum_name(names: dict[int, str], value: int, field: str, *, unspecified: str = "") -> str:
    """The name a request's enum field gives (0 is `unspecified`); an unknown number is INVALID_ARGUMENT
    naming `field`."""
    with reading():
        return wire.enum_name(names, value, field, unspecified=unspecified, request=True)
