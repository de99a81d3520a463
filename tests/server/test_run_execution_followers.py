"""RunExecution's early follower on error and repeat paths, and for a run that waits in the queue."""

from __future__ import annotations

import grpc
import pytest
import voltorch
from templates import HELD
from voltorch import AgentTask, ParameterSpec, Step, WorkflowTemplate
from voltorch.v1 import workflows_pb2
from voltorch_server.app import VoltorchServer

BOTH_BACKENDS = True
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


def _run(
    name: str, request_id: str = "", n: int | None = None, **fields
) -> workflows_pb2.RunExecutionRequest:
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
        workflows_stub.RunExecution(_run("one", "rid", 1, terminal_only=terminal_only), timeout=WAIT)
    )
    again = list(
        workflows_stub.RunExecution(_run("one", "rid", 1, terminal_only=terminal_only), timeout=WAIT)
    )
    assert again[0].start.existing and again[0].start.execution.id == first[0].start.execution.id
    assert [u.event.sequence for m in again for u in m.updates] == [
        u.event.sequence for m in first for u in m.updates
    ]
    with pytest.raises(grpc.RpcError) as raised:
        list(workflows_stub.RunExecution(_run("one", "rid", 2, terminal_only=terminal_only), timeout=WAIT))
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError):
        list(workflows_stub.RunExecution(_run("nope"), timeout=WAIT))
    assert events.subscriber_count == before


def test_a_queued_run_gets_every_event(wf, workflows_stub, server, monkeypatch) -> None:
    """Queued (no slot free), begun later by the admission thread: the early follower has all its events."""
    engine = server.runtime.workflows
    monkeypatch.setattr(engine, "limit", lambda: 0)
    call = workflows_stub.RunExecution(_run("one", n=3, max_batch=1), timeout=WAIT)
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
