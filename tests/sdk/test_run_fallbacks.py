"""The SDK's run() when RunExecution cannot finish the job: a server without it (start, then wait) and a
stream cut after the start (wait). A proxy in front of a real server makes each case; the execution is
started exactly once either way."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import voltorch
from voltorch import AgentTask, Step, WorkflowTemplate
from voltorch.v1 import workflows_pb2, workflows_pb2_grpc
from voltorch_server.app import VoltorchServer

WAIT = 20.0
ONE = WorkflowTemplate(name="one", steps=[Step("a", AgentTask("hello", ["echo"]))])


class _Proxy(workflows_pb2_grpc.WorkflowServiceServicer):
    """Forwards what run()'s fallbacks use to the real server. RunExecution, by `mode`: "old", UNIMPLEMENTED
    (the generated default); "cut", the real call's first message (the start) and UNAVAILABLE; "lost", the
    first call starts the execution on the real server and fails UNAVAILABLE before any message (a replica
    that died before answering), the next ones are forwarded."""

    def __init__(self, real: workflows_pb2_grpc.WorkflowServiceStub, mode: str):
        self.real = real
        self.mode = mode
        self.runs: list[str] = []  # request ids of the RunExecution calls received
        self.starts: list[str] = []  # request ids of the StartExecution calls forwarded
        self.deadlines: dict[str, float | None] = {}  # method -> the seconds its last call had left

    def StartExecution(self, request, context):
        self.starts.append(request.request_id)
        self.deadlines["StartExecution"] = context.time_remaining()
        return self.real.StartExecution(request)

    def GetExecution(self, request, context):
        return self.real.GetExecution(request)

    def WatchExecution(self, request, context):
        self.deadlines["WatchExecution"] = context.time_remaining()
        yield from self.real.WatchExecution(request)

    def RunExecution(self, request, context):
        if self.mode == "old":
            return super().RunExecution(request, context)
        self.runs.append(request.start.request_id)
        if self.mode == "lost" and len(self.runs) > 1:
            return self.real.RunExecution(request)
        return self._cut_after_start(request, context)

    def _cut_after_start(self, request, context) -> Iterator[workflows_pb2.RunExecutionResponse]:
        call = self.real.RunExecution(request)
        first = next(call)
        if self.mode == "cut":
            yield first
        call.cancel()
        context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost (the test's proxy)")


@pytest.fixture
def proxy(
    request: pytest.FixtureRequest, echo_agent: VoltorchServer
) -> Iterator[tuple[voltorch.Client, _Proxy]]:
    server = echo_agent
    with voltorch.Client(server.target, timeout=WAIT) as direct:
        direct.workflows.register_template(ONE)
    with grpc.insecure_channel(server.target) as ch:
        servicer = _Proxy(workflows_pb2_grpc.WorkflowServiceStub(ch), mode=request.param)
        front = grpc.server(ThreadPoolExecutor(4))
        workflows_pb2_grpc.add_WorkflowServiceServicer_to_server(servicer, front)
        port = front.add_insecure_port("127.0.0.1:0")
        front.start()
        try:
            with voltorch.Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
                yield client, servicer
        finally:
            front.stop(None)


@pytest.mark.parametrize("proxy", ["old"], indirect=True)
def test_a_server_without_run_execution_gets_a_start_then_a_wait(proxy, client) -> None:
    via, servicer = proxy
    done = via.workflows.run("one", request_id="run-old-server", timeout=WAIT)
    assert done.status == "completed"
    assert servicer.starts == ["run-old-server"]
    [only] = client.workflows.list(template_name="one")
    assert only.id == done.id


@pytest.mark.parametrize("proxy", ["cut"], indirect=True)
def test_a_stream_cut_after_the_start_is_followed_to_the_end(proxy, client) -> None:
    via, servicer = proxy
    done = via.workflows.run("one", timeout=WAIT)
    assert done.status == "completed"
    assert servicer.starts == []  # started once, by RunExecution
    [only] = client.workflows.list(template_name="one")
    assert only.id == done.id


@pytest.mark.parametrize("proxy", ["old", "cut"], indirect=True)
def test_the_fallback_calls_keep_within_runs_timeout(proxy) -> None:
    """run(timeout=) bounds the whole call: the start and the wait of a fallback get what is left of it,
    not the client's default deadline (WAIT here)."""
    via, servicer = proxy
    assert via.workflows.run("one", timeout=WAIT / 4).status == "completed"
    assert servicer.deadlines  # a fallback was taken
    # (a deadline crosses the wire as an absolute time: the server may see a few ms more than was sent)
    assert all(left is not None and left < WAIT / 2 for left in servicer.deadlines.values()), (
        servicer.deadlines
    )


@pytest.mark.parametrize("proxy", ["lost"], indirect=True)
def test_a_run_lost_before_its_first_message_is_retried_and_starts_nothing_twice(proxy, client) -> None:
    """The channel retries RunExecution after UNAVAILABLE before its first message (SDK service config):
    the execution the lost call started is found again by its request id, not started twice."""
    via, servicer = proxy
    done = via.workflows.run("one", timeout=WAIT)
    assert done.status == "completed"
    assert len(servicer.runs) == 2 and servicer.runs[0] == servicer.runs[1]  # retried, same request id
    assert servicer.starts == []  # no fallback: the retry did it
    [only] = client.workflows.list(template_name="one")
    assert only.id == done.id
