"""voltorch.wire's execution mapping: the SDK's types survive a round trip; the server's read models are
written by the same functions, as they are, with their times to the nanosecond."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import ParseDict
from google.protobuf.struct_pb2 import Struct, Value
from google.protobuf.timestamp_pb2 import Timestamp
from voltorch import wire
from voltorch.v1 import common_pb2, coordination_pb2, workflows_pb2
from voltorch_server.agents.base import TokenUsage
from voltorch_server.components.coordination import TaskError
from voltorch_server.components.workflows import Execution, Signal, StepExecution, WaitingFor
from voltorch_server.components.workflows.templates import Budget
from voltorch_server.priority import Priority
from voltorch_server.servicers.workflows import execution_pb, signal_pb

T = 1764589908  # whole seconds; the fractions below are exact in binary, so the expected nanos are exact
STEP_STATUSES = ("pending", "running", "retrying", "completed", "failed", "skipped", "cancelled")
ENDED = frozenset({"completed", "failed", "skipped", "cancelled"})
USAGE = TokenUsage(10, 20, 30, 0.5, 2)
ERROR = TaskError("AGENT_FAILED", "boom", True)


def _ts(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


def _value(obj: Any) -> Value:
    return ParseDict(obj, Value())


def _server_step(i: int, status: str, children: tuple[StepExecution, ...] = ()) -> StepExecution:
    return StepExecution(
        step_id=f"s{i}",
        name=f"step {i}",
        status=status,
        attempts=i,
        output=f"out {i}" if i % 2 else "",
        structured_output={"k": [1, 2.5, None, True, "x"]} if i % 3 == 0 else None,
        error=ERROR if status == "failed" else None,
        agent_id=f"a{i}" if i % 2 else "",
        coordination_id="c1" if i == 2 else "",
        start_time=T + i + 0.25 if status != "pending" else None,
        end_time=T + i + 0.5 if status in ENDED else None,
        next_retry_time=T + 9.125 if status == "retrying" else None,
        children=children,
        usage=USAGE if i % 2 else TokenUsage(),
    )


def _expected_step(
    i: int, status: str, children: tuple[workflows_pb2.StepExecution, ...] = ()
) -> workflows_pb2.StepExecution:
    """What the server wrote for _server_step(i, status) before the mapping moved, spelled out."""
    pb = workflows_pb2.StepExecution(
        step_id=f"s{i}",
        name=f"step {i}",
        status=getattr(workflows_pb2, f"STEP_STATUS_{status.upper()}"),
        attempts=i,
        output=f"out {i}" if i % 2 else "",
        agent_id=f"a{i}" if i % 2 else "",
        coordination_id="c1" if i == 2 else "",
        children=children,
        usage=coordination_pb2.TokenUsage(
            prompt_tokens=10, completion_tokens=20, total_tokens=30, cost=0.5, llm_calls=2
        )
        if i % 2
        else coordination_pb2.TokenUsage(),
    )
    if i % 3 == 0:
        pb.structured_output.CopyFrom(_value({"k": [1, 2.5, None, True, "x"]}))
    if status == "failed":
        pb.error.CopyFrom(coordination_pb2.TaskError(code="AGENT_FAILED", message="boom", retryable=True))
    if status != "pending":
        pb.start_time.CopyFrom(_ts(T + i, 250_000_000))
    if status in ENDED:
        pb.end_time.CopyFrom(_ts(T + i, 500_000_000))
    if status == "retrying":
        pb.next_retry_time.CopyFrom(_ts(T + 9, 125_000_000))
    return pb


def _server_execution() -> Execution:
    """Steps of every status (and a fan-out of them), waits of every kind, a budget, an error, times."""
    fan_out = tuple(_server_step(10 + j, s) for j, s in enumerate(STEP_STATUSES))
    return Execution(
        id="e1",
        request_id="r1",
        template_name="tpl",
        template_version=3,
        status="paused",
        parameters={"a": 1, "b": {"c": [1, "2"]}},
        result={"ok": True, "n": 0.25},
        error=ERROR,
        priority=Priority.HIGH,
        labels={"team": "x", "env": "y"},
        correlation_id="corr",
        trace_id="abc",
        create_time=T + 0.0625,
        start_time=T + 0.125,
        end_time=None,
        update_time=T + 3.75,
        steps=(
            *(_server_step(i, s) for i, s in enumerate(STEP_STATUSES)),
            _server_step(7, "running", fan_out),
        ),
        usage=USAGE + USAGE,
        budget=Budget(1000, 1.5, 7),
        waiting=(
            WaitingFor("s1", "signal", signal="go", deadline=T + 60.5),
            WaitingFor("s2", "approval", signal="approval", prompt="ok?", data={"x": [1]}),
            WaitingFor("s3", "sleep", deadline=T + 1.25),
            WaitingFor("s4", "start_after", deadline=T + 2.0),
        ),
        replica_id="rep-1",
        epoch=4,
    )


def _expected_execution() -> workflows_pb2.Execution:
    fan_out = tuple(_expected_step(10 + j, s) for j, s in enumerate(STEP_STATUSES))
    parameters = Struct()
    parameters.update({"a": 1, "b": {"c": [1, "2"]}})
    return workflows_pb2.Execution(
        id="e1",
        request_id="r1",
        template_name="tpl",
        template_version=3,
        status=workflows_pb2.EXECUTION_STATUS_PAUSED,
        parameters=parameters,
        steps=[
            *(_expected_step(i, s) for i, s in enumerate(STEP_STATUSES)),
            _expected_step(7, "running", fan_out),
        ],
        result=_value({"ok": True, "n": 0.25}),
        error=coordination_pb2.TaskError(code="AGENT_FAILED", message="boom", retryable=True),
        priority=common_pb2.PRIORITY_HIGH,
        labels={"team": "x", "env": "y"},
        correlation_id="corr",
        trace_id="abc",
        create_time=_ts(T, 62_500_000),
        start_time=_ts(T, 125_000_000),
        update_time=_ts(T + 3, 750_000_000),
        usage=coordination_pb2.TokenUsage(
            prompt_tokens=20, completion_tokens=40, total_tokens=60, cost=1.0, llm_calls=4
        ),
        budget=workflows_pb2.Budget(max_tokens=1000, max_cost=1.5, max_llm_calls=7),
        waiting=[
            workflows_pb2.WaitingFor(
                step_id="s1",
                kind=workflows_pb2.WAIT_KIND_SIGNAL,
                signal="go",
                deadline=_ts(T + 60, 500_000_000),
            ),
            workflows_pb2.WaitingFor(
                step_id="s2",
                kind=workflows_pb2.WAIT_KIND_APPROVAL,
                signal="approval",
                prompt="ok?",
                data=_value({"x": [1]}),
            ),
            workflows_pb2.WaitingFor(
                step_id="s3", kind=workflows_pb2.WAIT_KIND_SLEEP, deadline=_ts(T + 1, 250_000_000)
            ),
            workflows_pb2.WaitingFor(
                step_id="s4", kind=workflows_pb2.WAIT_KIND_START_AFTER, deadline=_ts(T + 2)
            ),
        ],
        replica_id="rep-1",
        epoch=4,
    )


def test_the_server_writes_a_rich_execution_as_before() -> None:
    got = execution_pb(_server_execution())
    assert got == _expected_execution()
    # byte for byte, the field order included
    assert got.SerializeToString(deterministic=True) == _expected_execution().SerializeToString(
        deterministic=True
    )


def test_an_execution_with_nothing_set_writes_no_optional_field() -> None:
    e = Execution(
        id="e2",
        request_id="",
        template_name="t",
        template_version=1,
        status="pending",
        parameters={},
        result=None,
        error=None,
        priority=Priority.NORMAL,
        labels={},
        correlation_id="",
        trace_id="",
        create_time=T,
        start_time=None,
        end_time=None,
        update_time=T,
    )
    pb = execution_pb(e)
    assert [f for f in ("result", "error", "budget", "start_time", "end_time") if pb.HasField(f)] == []
    assert pb.HasField("usage") and pb.usage == coordination_pb2.TokenUsage()  # always present, zero


def test_server_times_keep_their_nanoseconds() -> None:
    """The server's epoch seconds go to the writers as they are: no datetime (microseconds) in between."""
    when = 1764589908.123456789  # as a float: ...123456716...
    pb = execution_pb(replace(_server_execution(), create_time=when))
    assert pb.create_time.seconds == 1764589908 and pb.create_time.nanos % 1000 != 0
    assert wire.from_timestamp(pb.create_time) == when


def test_a_server_signal_is_written_under_the_wire_names() -> None:
    pb = signal_pb(Signal("g1", "e1", "go", {"p": 1}, "rq", "alice", T + 0.5, consumed_by="s1"))
    assert pb == workflows_pb2.Signal(
        id="g1",
        execution_id="e1",
        name="go",
        payload=_value({"p": 1}),
        request_id="rq",
        sender="alice",
        create_time=_ts(T, 500_000_000),
        consumed_by_step="s1",
    )
    kept = signal_pb(Signal("g2", "e1", "x", None, "", "", T))
    assert kept.consumed_by_step == "" and kept.payload.WhichOneof("kind") == "null_value"


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_the_sdk_types_survive_a_round_trip() -> None:
    """SDK type -> pb -> SDK type is the identity, for every field and nested type."""
    read = wire.execution_from_pb(execution_pb(_server_execution()))  # an SDK execution with everything set
    assert read.steps[7].children[4].error == wire.TaskError("AGENT_FAILED", "boom", True)
    assert read.waiting[1].data == {"x": [1]} and read.budget == wire.Budget(1000, 1.5, 7)
    assert read.create_time == _at(T + 0.0625) and read.end_time is None
    assert read.priority is wire.Priority.HIGH and read.status == "paused"
    assert wire.execution_from_pb(wire.execution_pb(read)) == read

    step = read.steps[2]
    assert step.status == "retrying" and step.next_retry_time == _at(T + 9.125)
    assert wire.step_execution_from_pb(wire.step_execution_pb(step)) == step
    for w in read.waiting:
        assert wire.waiting_from_pb(wire.waiting_pb(w)) == w

    signal = wire.Signal("g1", "e1", "go", [1, "two"], "rq", "bob", _at(T + 0.000001), "s3")
    assert wire.signal_from_pb(wire.signal_pb(signal, signal.consumed_by_step)) == signal
    assert wire.signal_from_pb(wire.signal_pb(signal, signal.consumed_by_step)).create_time == _at(
        T + 0.000001
    )  # microseconds kept
