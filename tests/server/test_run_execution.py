"""RunExecution: StartExecution and WatchExecution in one call. Its first message is the start's answer,
the rest are the execution's events exactly as WatchExecution sends them; bad requests are refused before
anything is started."""

from __future__ import annotations

import threading
from typing import Any

import grpc
import pytest
import voltorch
from google.protobuf import struct_pb2
from polling import until
from templates import HELD
from voltorch import AgentTask, ParameterSpec, RetryPolicy, Step, WorkflowTemplate
from voltorch.errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    from_rpc_error,
)
from voltorch.v1 import workflows_pb2
from voltorch_server.app import VoltorchServer

BOTH_BACKENDS = True  # the followers are the event log's, whose delivery differs on PostgreSQL
WAIT = 20.0
ONE = WorkflowTemplate(
    name="one",
    parameters=[ParameterSpec("n", "integer", default=1)],
    steps=[Step("a", AgentTask("say {{n}}", ["echo"]))],
)


@pytest.fixture
def wf(client: voltorch.Client, echo_agent: VoltorchServer) -> voltorch.Client:
    client.workflows.register_template(HELD)
    client.workflows.register_template(ONE)
    return client


def _run(name: str, **fields: Any) -> workflows_pb2.RunExecutionRequest:
    return workflows_pb2.RunExecutionRequest(
        start=workflows_pb2.StartExecutionRequest(template_name=name), **fields
    )


def _events(messages: list[workflows_pb2.RunExecutionResponse]) -> list[tuple[int, str]]:
    return [(u.event.sequence, u.event.type) for m in messages for u in m.updates]


def test_a_run_sends_its_start_then_the_executions_events_as_watch_execution_does(wf, workflows_stub) -> None:
    call = workflows_stub.RunExecution(_run("held"), timeout=WAIT)
    first = next(call)
    assert first.HasField("start") and not first.updates
    eid = first.start.execution.id
    assert eid and not first.start.existing
    assert first.start.execution.status == workflows_pb2.EXECUTION_STATUS_RUNNING
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.extend(call), daemon=True)
    reader.start()
    for ev in wf.workflows.watch(eid, timeout=WAIT):  # the run's stream is still open: w waits
        if ev.type == "workflow.step.started" and ev.step_id == "w":
            break
    wf.workflows.signal(eid, "go")
    reader.join(WAIT)
    assert not reader.is_alive()  # ended after the terminal event by itself
    assert all(not m.HasField("start") and m.updates for m in got)
    watched = [
        (u.event.sequence, u.event.type)
        for m in workflows_stub.WatchExecution(
            workflows_pb2.WatchExecutionRequest(execution_id=eid, max_batch=500)
        )
        for u in m.updates
    ]
    assert _events(got) == watched
    assert watched[-1][1] == "workflow.execution.completed"


@pytest.mark.parametrize("after", [0, 1])
def test_a_client_that_leaves_leaves_no_follower_behind(wf, workflows_stub, server, after) -> None:
    """Cancelled after the start's message or after an event: either way the server unsubscribes it (by
    then grpc has asked the handler for its next message, so its stream has begun; a client that leaves
    before the start's message: test_a_client_that_leaves_during_the_start_...)."""
    before = server.runtime.events.subscriber_count
    call = workflows_stub.RunExecution(_run("held"), timeout=WAIT)
    messages = [next(call) for _ in range(1 + after)]
    assert messages[0].HasField("start")
    assert server.runtime.events.subscriber_count == before + 1
    call.cancel()
    until(lambda: server.runtime.events.subscriber_count == before)
    wf.workflows.cancel(messages[0].start.execution.id)


def test_a_stopping_server_ends_a_run_with_where_to_resume(wf, workflows_stub, server) -> None:
    call = workflows_stub.RunExecution(_run("held", terminal_only=True), timeout=WAIT)
    assert next(call).HasField("start")  # its follower registered, nothing more to come until the end
    server.stop(grace=5.0)
    with pytest.raises(grpc.RpcError) as raised:
        next(call)
    err = from_rpc_error(raised.value)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE and err.reason == "STREAM_CLOSED"
    assert err.metadata["from_sequence"].isdigit()  # as WatchExecution: follow on with it from there


def test_a_client_that_leaves_during_the_start_leaves_no_follower_behind(
    wf, workflows_stub, server, monkeypatch
) -> None:
    """Cancelled while the server is still writing the start: the handler goes on (the start commits),
    subscribes and finds nobody to send to; its follower goes with it."""
    engine = server.runtime.workflows
    entered, release, followed = threading.Event(), threading.Event(), threading.Event()
    real_start, real_run = engine.start_execution, engine.run_execution

    def held_start(*args: Any, **kwargs: Any) -> Any:  # the real start, once the client has gone
        entered.set()
        assert release.wait(WAIT)
        return real_start(*args, **kwargs)

    def run(*args: Any, **kwargs: Any) -> Any:  # the real start and follow, noted once it has subscribed
        try:
            return real_run(*args, **kwargs)
        finally:
            followed.set()

    monkeypatch.setattr(engine, "start_execution", held_start)
    monkeypatch.setattr(engine, "run_execution", run)
    before = server.runtime.events.subscriber_count
    call = workflows_stub.RunExecution(_run("held", terminal_only=True), timeout=WAIT)
    assert entered.wait(WAIT)
    call.cancel()
    release.set()
    assert followed.wait(WAIT)  # the handler went on past the cancel and subscribed
    until(lambda: server.runtime.events.subscriber_count == before)
    [started] = wf.workflows.list(template_name="held")
    wf.workflows.cancel(started.id)


def test_terminal_only_sends_the_start_and_the_result_alone(wf, workflows_stub) -> None:
    messages = list(workflows_stub.RunExecution(_run("one", terminal_only=True), timeout=WAIT))
    assert len(messages) == 2
    start, [end] = messages[0].start, messages[1].updates
    assert end.event.type == "workflow.execution.completed"
    assert end.execution.id == start.execution.id
    assert end.execution.status == workflows_pb2.EXECUTION_STATUS_COMPLETED
    assert "say 1" in end.execution.steps[0].output


@pytest.mark.parametrize("terminal_only", [True, False])
def test_a_run_reads_none_of_its_events_back_from_the_log(
    wf, workflows_stub, server, monkeypatch, terminal_only
):
    """Its follower is subscribed before the start commits: every event of the run is taken as it is
    published, and nothing is read to learn where the log stands."""
    events = server.runtime.events
    reads: list[str] = []
    for name in ("read_after", "start_position", "last_sequence"):
        real = getattr(events, name)
        monkeypatch.setattr(
            events, name, lambda *a, _n=name, _r=real, **k: (reads.append(_n), _r(*a, **k))[1]
        )
    messages = list(workflows_stub.RunExecution(_run("one", terminal_only=terminal_only), timeout=WAIT))
    assert messages[-1].updates[-1].event.type == "workflow.execution.completed"
    seqs = [seq for seq, _ in _events(messages)]
    assert seqs == sorted(set(seqs)) and (len(seqs) == 1) == terminal_only  # in order, none twice
    assert reads == []


def test_include_execution_attaches_the_state_to_every_event(wf, workflows_stub) -> None:
    messages = list(workflows_stub.RunExecution(_run("one", include_execution=True), timeout=WAIT))
    updates = [u for m in messages[1:] for u in m.updates]
    assert len(updates) > 2
    assert all(u.execution.id == messages[0].start.execution.id for u in updates)


def test_a_repeated_request_id_starts_nothing_and_replays_the_first_run(wf, workflows_stub) -> None:
    req = _run("one")
    req.start.request_id = "run-once"
    first = list(workflows_stub.RunExecution(req, timeout=WAIT))
    again = list(workflows_stub.RunExecution(req, timeout=WAIT))
    assert again[0].start.existing and again[0].start.execution.id == first[0].start.execution.id
    assert again[0].start.execution.status == workflows_pb2.EXECUTION_STATUS_COMPLETED
    assert _events(again) == _events(first)
    assert len(list(wf.workflows.list(template_name="one"))) == 1


@pytest.mark.parametrize(
    "request_, field",
    [
        (workflows_pb2.RunExecutionRequest(), "start"),
        (_run("one", max_batch=-1), "max_batch"),
        (
            workflows_pb2.RunExecutionRequest(
                start=workflows_pb2.StartExecutionRequest(
                    template_name="one",
                    parameters=struct_pb2.Struct(fields={"n": struct_pb2.Value(string_value="x")}),
                )
            ),
            "start.parameters.n",
        ),
        (
            workflows_pb2.RunExecutionRequest(
                start=workflows_pb2.StartExecutionRequest(template_name="one", labels={"": "x"})
            ),
            "start.labels[]",
        ),
    ],
)
def test_a_bad_request_names_its_field_and_starts_nothing(wf, workflows_stub, request_, field) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        list(workflows_stub.RunExecution(request_, timeout=WAIT))
    err = from_rpc_error(raised.value)
    assert isinstance(err, InvalidArgumentError)
    assert err.fields[0] == field
    assert list(wf.workflows.list()) == []


def test_a_run_without_its_start_is_a_missing_field(wf, workflows_stub) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        list(workflows_stub.RunExecution(workflows_pb2.RunExecutionRequest(terminal_only=True), timeout=WAIT))
    err = from_rpc_error(raised.value)
    assert isinstance(err, InvalidArgumentError)
    assert (err.fields, err.reason) == (["start"], "FIELD_REQUIRED")  # as any required field left empty
    with pytest.raises(grpc.RpcError) as raised:  # an empty start is there: its own fields are missing
        list(workflows_stub.RunExecution(_run(""), timeout=WAIT))
    err = from_rpc_error(raised.value)
    assert isinstance(err, InvalidArgumentError)
    assert (err.fields, err.reason) == (["start.template_name"], "FIELD_REQUIRED")


def test_an_unknown_template_is_not_found_and_starts_nothing(wf, workflows_stub) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        list(workflows_stub.RunExecution(_run("nope"), timeout=WAIT))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(NotFoundError):
        wf.workflows.run("nope")
    assert list(wf.workflows.list()) == []


# -- the SDK's run() ---------------------------------------------------------------------------------------


def test_run_returns_the_final_execution(wf) -> None:
    done = wf.workflows.run("one", {"n": 7}, timeout=WAIT)
    assert done.status == "completed"
    assert "say 7" in done.steps[0].output


def test_run_returns_a_failed_execution_rather_than_raising(wf) -> None:
    wf.workflows.register_template(
        WorkflowTemplate(
            name="fails",
            steps=[Step("a", AgentTask("fail now", ["echo"]), retry=RetryPolicy(max_attempts=1))],
        )
    )
    done = wf.workflows.run("fails", timeout=WAIT)
    assert done.status == "failed"


def test_run_names_its_bad_field_under_start(wf) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        wf.workflows.run("one", {"n": "x"})
    assert err.value.fields == ["start.parameters.n"]
    assert list(wf.workflows.list()) == []


def test_run_raises_deadline_exceeded_when_its_timeout_passes(wf) -> None:
    with pytest.raises(DeadlineExceededError):
        wf.workflows.run("held", timeout=0.5)  # w waits for a signal that never comes
    # (on a loaded machine the deadline may pass while the start is still being written)
    until(lambda: len(list(wf.workflows.list(template_name="held"))) == 1)
    [left] = wf.workflows.list(template_name="held")
    assert not left.done  # the execution goes on: only the caller stopped waiting
    wf.workflows.cancel(left.id)


def test_run_again_with_its_request_id_returns_the_first_result(wf) -> None:
    first = wf.workflows.run("one", {"n": 3}, request_id="run-twice", timeout=WAIT)
    again = wf.workflows.run("one", {"n": 3}, request_id="run-twice", timeout=WAIT)
    assert again.id == first.id and again.status == "completed"
    assert again.steps[0].output == first.steps[0].output
    with pytest.raises(AlreadyExistsError) as err:  # the same key for another request
        wf.workflows.run("one", {"n": 4}, request_id="run-twice", timeout=WAIT)
    assert err.value.reason == "REQUEST_ID_REUSED"
    assert len(list(wf.workflows.list(template_name="one"))) == 1


# -- the early follower on error and repeat paths, and for a run that waits in the queue --


def _run_start(
    name: str, request_id: str = "", n: int | None = None, **fields
) -> workflows_pb2.RunExecutionRequest:
    """A run whose start carries a request id and parameter n."""
    start = workflows_pb2.StartExecutionRequest(template_name=name, request_id=request_id)
    if n is not None:
        start.parameters.update({"n": n})
    return workflows_pb2.RunExecutionRequest(start=start, **fields)


@pytest.mark.parametrize("terminal_only", [False, True])
def test_repeat_and_reuse_of_a_request_id_leave_no_follower(
    wf, workflows_stub, server, terminal_only
) -> None:
    events = server.runtime.events
    before = events.subscriber_count
    first = list(
        workflows_stub.RunExecution(_run_start("one", "rid", 1, terminal_only=terminal_only), timeout=WAIT)
    )
    again = list(
        workflows_stub.RunExecution(_run_start("one", "rid", 1, terminal_only=terminal_only), timeout=WAIT)
    )
    assert again[0].start.existing and again[0].start.execution.id == first[0].start.execution.id
    assert [u.event.sequence for m in again for u in m.updates] == [
        u.event.sequence for m in first for u in m.updates
    ]
    with pytest.raises(grpc.RpcError) as raised:
        list(
            workflows_stub.RunExecution(
                _run_start("one", "rid", 2, terminal_only=terminal_only), timeout=WAIT
            )
        )
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError):
        list(workflows_stub.RunExecution(_run_start("nope"), timeout=WAIT))
    assert events.subscriber_count == before


def test_a_queued_run_gets_every_event(wf, workflows_stub, server, monkeypatch) -> None:
    """Queued (no slot free), begun later by the admission thread: the early follower has all its events."""
    engine = server.runtime.workflows
    monkeypatch.setattr(engine, "limit", lambda: 0)
    call = workflows_stub.RunExecution(_run_start("one", n=3, max_batch=1), timeout=WAIT)
    first = next(call)
    assert first.start.execution.status == workflows_pb2.EXECUTION_STATUS_QUEUED
    monkeypatch.undo()
    engine.wake_admission()
    got = [(u.event.sequence, u.event.type) for m in call for u in m.updates]
    watched = [
        (m.event.sequence, m.event.type)
        for m in workflows_stub.WatchExecution(
            workflows_pb2.WatchExecutionRequest(execution_id=first.start.execution.id), timeout=WAIT
        )
    ]
    assert got == watched and got[0][1] == "workflow.execution.queued"
    assert got[-1][1] == "workflow.execution.completed"
