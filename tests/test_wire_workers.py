"""voltorch.wire's worker stream mapping (CoordinationService.Connect): what the server sends a worker
(welcome, assignment, cancel) is written by it from the server's own objects, as before; what a worker
sends (hello, heartbeat, result, progress) is written by it for the SDK and read by it for the server;
each wire type survives a round trip."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import pytest
import voltorch
from google.protobuf.duration_pb2 import Duration
from google.protobuf.json_format import ParseDict
from google.protobuf.struct_pb2 import Struct, Value
from google.protobuf.timestamp_pb2 import Timestamp
from voltorch import wire
from voltorch.v1 import common_pb2
from voltorch.v1 import coordination_pb2 as pb
from voltorch.worker import _result as handler_result
from voltorch_server import __version__
from voltorch_server.agents.base import AgentTask, TokenUsage, ToolSpec
from voltorch_server.agents.remote import (
    Assignment,
    CancelTaskMsg,
    HeartbeatMsg,
    ProgressMsg,
    TaskResultMsg,
    WorkerHello,
)
from voltorch_server.priority import Priority
from voltorch_server.servicers.coordination import (
    hello_from_pb,
    server_message_pb,
    welcome_pb,
    worker_message_from_pb,
)

T = 1764589908  # whole seconds; the fractions below are exact in binary


def _value(obj: Any) -> Value:
    return ParseDict(obj, Value())


def _struct(obj: dict[str, Any]) -> Struct:
    s = Struct()
    s.update(obj)
    return s


def _same_bytes(got: Any, expected: Any) -> bool:
    return got.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)


def _server_task() -> AgentTask:
    return AgentTask(
        task_id="t1",
        coordination_id="c1",
        text="do it",
        context={"k": [1, "2"], "previous_output": "x"},
        capabilities=("text",),  # the server's own: not on the wire
        attempt=3,
        deadline=T + 30.125,
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        correlation_id="corr",
        priority=Priority.HIGH,
        execution_id="e1",
        step_id="s1",
        agent_id="w1",
    )


def _expected_assignment() -> pb.ServerMessage:
    """What the server sent for _server_task() before the mapping moved, spelled out."""
    return pb.ServerMessage(
        assignment=pb.TaskAssignment(
            task_id="t1",
            attempt=3,
            coordination_id="c1",
            execution_id="e1",
            step_id="s1",
            task="do it",
            context=_struct({"k": [1, "2"], "previous_output": "x"}),
            trace_context=common_pb2.TraceContext(
                traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            ),
            deadline=Timestamp(seconds=T + 30, nanos=125_000_000),
            priority=common_pb2.PRIORITY_HIGH,
            correlation_id="corr",
        )
    )


def test_the_server_sends_an_assignment_as_before() -> None:
    got = server_message_pb(Assignment(_server_task()))
    assert got == _expected_assignment() and _same_bytes(got, _expected_assignment())


def test_a_bare_assignment_still_carries_its_context_and_trace_context() -> None:
    got = server_message_pb(Assignment(AgentTask(task_id="t", coordination_id="", text="x")))
    expected = pb.ServerMessage(
        assignment=pb.TaskAssignment(
            task_id="t",
            attempt=1,
            task="x",
            context=Struct(),  # present, empty
            trace_context=common_pb2.TraceContext(),  # present, empty
            priority=common_pb2.PRIORITY_NORMAL,
        )
    )
    assert got == expected and _same_bytes(got, expected)
    assert not got.assignment.HasField("deadline")


def test_the_server_sends_a_cancel_as_before() -> None:
    got = server_message_pb(CancelTaskMsg("t1", 2, "re-dispatched"))
    expected = pb.ServerMessage(cancel=pb.CancelTask(task_id="t1", attempt=2, reason="re-dispatched"))
    assert got == expected and _same_bytes(got, expected)


def _hello() -> pb.WorkerHello:
    return pb.WorkerHello(
        agent_id="w1",
        name="Worker one",
        capabilities=["text", "math"],
        max_concurrency=4,
        labels={"zone": "a"},
        sdk_version="voltorch-python/1.0",
        tools=[
            pb.ToolSpec(name="add", description="adds", parameters=_struct({"type": "object"})),
            pb.ToolSpec(name="noop"),
        ],
    )


def test_the_server_reads_a_hello() -> None:
    assert hello_from_pb(_hello()) == WorkerHello(
        agent_id="w1",
        name="Worker one",
        capabilities=("text", "math"),
        max_concurrency=4,
        labels={"zone": "a"},
        sdk_version="voltorch-python/1.0",
        tools=(ToolSpec("add", "adds", {"type": "object"}), ToolSpec("noop")),
    )
    assert hello_from_pb(pb.WorkerHello()) == WorkerHello()


def _result(**kwargs: Any) -> pb.WorkerMessage:
    return pb.WorkerMessage(result=pb.TaskResult(**kwargs))


def test_the_server_reads_results_progress_and_heartbeats() -> None:
    ok = _result(
        task_id="t1",
        attempt=2,
        output='{"n": 1}',
        structured_output=_value({"n": 1}),
        usage=pb.TokenUsage(prompt_tokens=1, completion_tokens=2, total_tokens=3, cost=0.25, llm_calls=1),
        duration=Duration(seconds=1, nanos=500_000_000),
    )
    assert worker_message_from_pb(ok) == TaskResultMsg(
        task_id="t1",
        attempt=2,
        output='{"n": 1}',
        structured_output={"n": 1},
        usage=TokenUsage(1, 2, 3, 0.25, 1),
    )
    failed = _result(task_id="t1", attempt=1, error=pb.TaskError(code="X", message="m", retryable=True))
    assert worker_message_from_pb(failed) == TaskResultMsg(
        task_id="t1", attempt=1, error_code="X", error_message="m", error_retryable=True, failed=True
    )
    # an empty error is still a failure; an empty output is a success with no output
    empty_error = _result(task_id="t", attempt=1, error=pb.TaskError())
    assert worker_message_from_pb(empty_error) == TaskResultMsg("t", 1, failed=True)
    assert worker_message_from_pb(_result(task_id="t", attempt=1)) == TaskResultMsg("t", 1)

    progress = pb.WorkerMessage(
        progress=pb.TaskProgress(
            task_id="t1", attempt=2, message="half", fraction=0.0, details=_struct({"d": [1]})
        )
    )
    assert worker_message_from_pb(progress) == ProgressMsg("t1", 2, "half", 0.0, {"d": [1]})
    unknown = pb.WorkerMessage(progress=pb.TaskProgress(task_id="t1", attempt=2))
    assert worker_message_from_pb(unknown) == ProgressMsg("t1", 2, "", None, {})

    beat = pb.WorkerMessage(
        heartbeat=pb.WorkerHeartbeat(running_task_ids=["a", "b"], time=Timestamp(seconds=T))
    )
    assert worker_message_from_pb(beat) == HeartbeatMsg(("a", "b"))
    assert worker_message_from_pb(pb.WorkerMessage(hello=_hello())) is None  # a second hello: ignored
    assert worker_message_from_pb(pb.WorkerMessage()) is None


def test_the_server_welcomes_as_before() -> None:
    got = welcome_pb("w1", "wses-1", 5.0, 15.25)
    expected = pb.ServerMessage(
        welcome=pb.WorkerWelcome(
            agent_id="w1",
            session_id="wses-1",
            heartbeat_interval=Duration(seconds=5),
            heartbeat_timeout=Duration(seconds=15, nanos=250_000_000),
            server_version=f"voltorch/{__version__}",
        )
    )
    assert got == expected and _same_bytes(got, expected)


# -- the SDK's side: what its Worker sends, as before, and what it reads ------------------------------------


def _task() -> voltorch.WorkerTask:
    sent: list[pb.WorkerMessage] = []
    return voltorch.WorkerTask("t1", 2, "x", {}, _send=sent.append)


def test_the_worker_sends_results_as_before() -> None:
    """Text, JSON (its text indented, and structured), a refusal, a handler's exception: as before."""
    task = _task()

    def sent(value: Any) -> pb.WorkerMessage:
        return wire.worker_message_pb(handler_result(task, value, 1.25))

    took = Duration(seconds=1, nanos=250_000_000)
    cases = [
        ("text", _result_pb(task_id="t1", attempt=2, output="text", duration=took)),
        (None, _result_pb(task_id="t1", attempt=2, duration=took)),
        (
            {"n": 1, "s": [1.5, None]},
            _result_pb(
                task_id="t1",
                attempt=2,
                output='{\n  "n": 1,\n  "s": [\n    1.5,\n    null\n  ]\n}',
                structured_output=_value({"n": 1, "s": [1.5, None]}),
                duration=took,
            ),
        ),
        (
            voltorch.TaskFailed("no", code="C", retryable=True),
            _result_pb(
                task_id="t1",
                attempt=2,
                error=pb.TaskError(code="C", message="no", retryable=True),
                duration=took,
            ),
        ),
        (
            ValueError("x" * 5000),
            _result_pb(
                task_id="t1",
                attempt=2,
                error=pb.TaskError(code="HANDLER_ERROR", message=("ValueError: " + "x" * 5000)[:4096]),
                duration=took,
            ),
        ),
    ]
    for value, expected in cases:
        got = sent(value)
        assert got == expected and _same_bytes(got, expected), value
        assert not got.result.HasField("usage")  # a worker reports no usage


def _result_pb(**kwargs: Any) -> pb.WorkerMessage:
    return pb.WorkerMessage(result=pb.TaskResult(**kwargs))


def test_the_worker_sends_progress_hello_and_heartbeats_as_before() -> None:
    sent: list[pb.WorkerMessage] = []
    task = voltorch.WorkerTask("t1", 2, "x", {}, _send=sent.append)
    task.progress("half", 0.0, {"d": [1]})
    task.progress("busy")
    assert sent == [
        pb.WorkerMessage(
            progress=pb.TaskProgress(
                task_id="t1", attempt=2, message="half", fraction=0.0, details=_struct({"d": [1]})
            )
        ),
        pb.WorkerMessage(progress=pb.TaskProgress(task_id="t1", attempt=2, message="busy", details=Struct())),
    ]
    assert sent[1].progress.HasField("details") and not sent[1].progress.HasField("fraction")
    with pytest.raises(ValueError):  # details that are not JSON fail the handler's call, not the stream
        task.progress("bad", details={"x": object()})

    hello = wire.WorkerHello(
        agent_id="w1",
        name="Worker one",
        capabilities=("text", "math"),
        max_concurrency=4,
        labels={"zone": "a"},
        sdk_version="voltorch-python/1.0",
        tools=(wire.ToolSpec("add", "adds", {"type": "object"}), wire.ToolSpec("noop")),
    )
    got = wire.worker_message_pb(hello)
    assert got == pb.WorkerMessage(hello=_hello()) and _same_bytes(got, pb.WorkerMessage(hello=_hello()))
    assert wire.hello_from_pb(got.hello) == hello

    beat = wire.worker_message_pb(wire.WorkerHeartbeat(("a", "b"), _at(T + 0.5)))
    assert beat == pb.WorkerMessage(
        heartbeat=pb.WorkerHeartbeat(
            running_task_ids=["a", "b"], time=Timestamp(seconds=T, nanos=500_000_000)
        )
    )


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_the_worker_reads_what_the_server_sends() -> None:
    a = wire.server_message_from_pb(server_message_pb(Assignment(_server_task())))
    assert a == wire.TaskAssignment(
        task_id="t1",
        attempt=3,
        text="do it",
        context={"k": [1, "2"], "previous_output": "x"},
        coordination_id="c1",
        execution_id="e1",
        step_id="s1",
        deadline=_at(T + 30.125),
        priority=wire.Priority.HIGH,
        correlation_id="corr",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    assert wire.server_message_from_pb(welcome_pb("w1", "s", 2.5, 7.5)) == wire.WorkerWelcome(
        "w1", "s", 2.5, 7.5, f"voltorch/{__version__}"
    )
    assert wire.server_message_from_pb(server_message_pb(CancelTaskMsg("t1", 0, "r"))) == wire.CancelTask(
        "t1", 0, "r"
    )
    assert wire.server_message_from_pb(pb.ServerMessage()) is None


def test_the_wire_types_survive_a_round_trip() -> None:
    assignment = wire.server_message_from_pb(server_message_pb(Assignment(_server_task())))
    assert isinstance(assignment, wire.TaskAssignment)
    assert wire.assignment_from_pb(wire.assignment_pb(assignment)) == assignment
    assert _same_bytes(wire.assignment_pb(assignment), _expected_assignment().assignment)
    welcome = wire.WorkerWelcome("w1", "s", 0.5, 1.5, "v")
    assert wire.welcome_from_pb(wire.welcome_pb(welcome)) == welcome
    cancel = wire.CancelTask("t", 2, "why")
    assert wire.cancel_from_pb(wire.cancel_pb(cancel)) == cancel
    messages: list[wire.WorkerMessage] = [
        wire.WorkerHello("w", "n", ("a",), 2, {"l": "v"}, "sdk", (wire.ToolSpec("t", "d", {"p": 1}),)),
        wire.WorkerHello(),
        wire.WorkerHeartbeat(("t1",), _at(T + 0.000001)),
        wire.WorkerHeartbeat(),
        wire.TaskResult("t", 1, "o", [1, {"a": None}], None, wire.TokenUsage(1, 2, 3, 0.5, 1), 2.5),
        wire.TaskResult("t", 1, error=wire.TaskError("C", "m", True)),
        wire.TaskProgress("t", 1, "m", 0.25, {"d": "x"}),
        wire.TaskProgress("t", 1),
    ]
    for msg in messages:
        assert wire.worker_message_from_pb(wire.worker_message_pb(msg)) == msg


def test_a_worker_task_is_its_assignment_with_a_cancel_flag() -> None:
    a = wire.TaskAssignment("t", 1, "x", {"k": 1}, deadline=_at(T), traceparent="tp")
    task = voltorch.WorkerTask(**{f.name: getattr(a, f.name) for f in fields(a)})
    assert (task.task_id, task.text, task.context, task.deadline, task.traceparent) == (
        "t",
        "x",
        {"k": 1},
        _at(T),
        "tp",
    )
    assert not task.cancelled.is_set()
    task.progress("nobody listens")  # no stream: a no-op
