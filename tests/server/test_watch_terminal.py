"""Waiting for a workflow's result without its step events: WatchExecutionRequest.terminal_only sends the
terminal event alone, carrying the final execution, so the SDK's wait() is one stream message and no
GetExecution; clients that do not ask still get every event."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc
import pytest
import voltorch
from polling import until
from templates import HELD
from voltorch.v1 import workflows_pb2
from voltorch_server.app import VoltorchServer

BOTH_BACKENDS = True  # the followers are the event log's, whose delivery differs on PostgreSQL
WAIT = 20.0


@pytest.fixture
def held(client: voltorch.Client, echo_agent: VoltorchServer) -> voltorch.Client:
    client.workflows.register_template(HELD)
    return client


def _waiting(client: voltorch.Client, eid: str) -> None:
    """Returns once step w waits for its signal (step a has completed)."""
    for ev in client.workflows.watch(eid, timeout=WAIT):
        if ev.type == "workflow.step.started" and ev.step_id == "w":
            return
    raise AssertionError("the execution ended before step w started")


def _read_in_thread(call: Any) -> tuple[list[Any], threading.Thread]:
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.extend(call), daemon=True)
    reader.start()
    return got, reader


@pytest.mark.parametrize("max_batch", [0, 500])
def test_terminal_only_sends_the_end_alone_with_the_final_execution(held, workflows_stub, max_batch):
    eid = held.workflows.start("held").execution.id
    _waiting(held, eid)
    req = workflows_pb2.WatchExecutionRequest(execution_id=eid, terminal_only=True, max_batch=max_batch)
    got, reader = _read_in_thread(workflows_stub.WatchExecution(req, timeout=WAIT))
    held.workflows.signal(eid, "go")
    reader.join(WAIT)
    assert not reader.is_alive()
    assert len(got) == 1  # no message for the steps still to come (w's end, b's start and end)
    [msg] = got
    [end] = msg.updates if max_batch else [msg]
    assert end.event.type == "workflow.execution.completed"
    assert end.execution.id == eid
    assert end.execution.status == workflows_pb2.EXECUTION_STATUS_COMPLETED
    assert {s.step_id: s.status for s in end.execution.steps} == {
        s: workflows_pb2.STEP_STATUS_COMPLETED for s in ("a", "w", "b")
    }
    # The same answer replayed for a finished execution, and equal to GetExecution's.
    [again] = list(workflows_stub.WatchExecution(req, timeout=WAIT))
    [again_end] = again.updates if max_batch else [again]
    assert again_end.event.sequence == end.event.sequence
    got_exec = workflows_stub.GetExecution(
        workflows_pb2.GetExecutionRequest(execution_id=eid), timeout=WAIT
    ).execution
    assert again_end.execution == got_exec == end.execution


def test_a_watcher_without_terminal_only_still_gets_every_event(held, workflows_stub):
    eid = held.workflows.start("held").execution.id
    held.workflows.signal(eid, "go")
    single = list(
        workflows_stub.WatchExecution(workflows_pb2.WatchExecutionRequest(execution_id=eid), timeout=WAIT)
    )
    types = [m.event.type for m in single]
    assert types[0] == "workflow.execution.started" and types[-1] == "workflow.execution.completed"
    assert types.count("workflow.step.completed") == 3
    assert not any(m.HasField("execution") for m in single)  # include_execution not asked


def test_terminal_only_ends_with_failures_and_cancellation_too(held, workflows_stub):
    eid = held.workflows.start("held").execution.id
    _waiting(held, eid)
    req = workflows_pb2.WatchExecutionRequest(execution_id=eid, terminal_only=True)
    got, reader = _read_in_thread(workflows_stub.WatchExecution(req, timeout=WAIT))
    held.workflows.cancel(eid, "enough")
    reader.join(WAIT)
    assert [m.event.type for m in got] == ["workflow.execution.cancelled"]
    assert got[0].execution.status == workflows_pb2.EXECUTION_STATUS_CANCELLED


class _Methods(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Records the RPCs a client makes and how many messages each stream brought."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        self.calls.append((details.method.rsplit("/", 1)[-1], 1))
        return continuation(details, request)

    def intercept_unary_stream(self, continuation: Callable, details: Any, request: Any) -> Any:
        return _Counted(continuation(details, request), details.method.rsplit("/", 1)[-1], self.calls)


class _Counted:
    """A stream call that records its messages as they come (a caller may stop reading at its result and
    cancel the rest); everything else is the call's."""

    def __init__(self, call: Any, name: str, calls: list[tuple[str, int]]) -> None:
        self._call, self._name, self._calls = call, name, calls
        self._at = len(calls)
        calls.append((name, 0))

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> Any:
        msg = next(self._call)
        self._calls[self._at] = (self._name, self._calls[self._at][1] + 1)
        return msg

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


def test_sdk_wait_is_one_stream_message_and_no_get(held, server: VoltorchServer):
    eid = held.workflows.start("held").execution.id
    _waiting(held, eid)
    seen = _Methods()
    with voltorch.Client(server.target, interceptors=[seen]) as c:
        done = threading.Event()
        result: list[voltorch.Execution] = []

        def wait() -> None:
            result.append(c.workflows.wait(eid, timeout=WAIT))
            done.set()

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        held.workflows.signal(eid, "go")
        assert done.wait(WAIT)
    assert seen.calls == [("WatchExecution", 1)]
    [execution] = result
    assert execution.status == "completed"
    assert execution == held.workflows.get(eid)
    assert [s.structured_output for s in execution.steps if s.step_id == "b"] == [{"text": "last"}]


def test_sdk_wait_returns_at_once_for_a_finished_execution(held):
    eid = held.workflows.start("held").execution.id
    held.workflows.signal(eid, "go")
    first = held.workflows.wait(eid, timeout=WAIT)
    assert first.status == "completed"
    assert held.workflows.wait(eid, timeout=WAIT) == first == held.workflows.get(eid)


def test_an_end_committed_while_the_watch_subscribes_is_replayed(held, server: VoltorchServer):
    """_follow_end subscribes live, then reads the status: an execution that ended in between (here: before)
    has its terminal event replayed from the log instead of awaited forever."""
    from voltorch_server.components.events import EventFilter

    eid = held.workflows.start("held").execution.id
    held.workflows.signal(eid, "go")
    assert held.workflows.wait(eid, timeout=WAIT).status == "completed"
    engine = server.runtime.workflows
    flt = EventFilter(types=("workflow.execution.completed",), correlation_id=eid)
    follower = engine._follow_end(eid, flt)
    try:
        got = follower.take(WAIT, 10)
    finally:
        follower.close()
    assert [(e.type, e.data["execution_id"]) for e in got] == [("workflow.execution.completed", eid)]


def test_a_running_executions_end_is_taken_live_without_reading_the_log(
    held, workflows_stub, server, monkeypatch
):
    """terminal_only on a running execution: the watch subscribes live and reads its status once; the end
    comes to it as it is published, with nothing read from the log for it or for where the log stands."""
    events = server.runtime.events
    base = events.subscriber_count
    eid = held.workflows.start("held").execution.id
    _waiting(held, eid)
    until(lambda: events.subscriber_count == base)  # _waiting's own watch has gone
    reads: list[str] = []
    for name in ("read_after", "start_position", "last_sequence"):
        real = getattr(events, name)
        monkeypatch.setattr(
            events, name, lambda *a, _n=name, _r=real, **k: (reads.append(_n), _r(*a, **k))[1]
        )
    req = workflows_pb2.WatchExecutionRequest(execution_id=eid, terminal_only=True)
    got, reader = _read_in_thread(workflows_stub.WatchExecution(req, timeout=WAIT))
    until(lambda: events.subscriber_count == base + 1)
    held.workflows.signal(eid, "go")
    reader.join(WAIT)
    assert [m.event.type for m in got] == ["workflow.execution.completed"]
    assert reads == []
