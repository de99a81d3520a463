"""The SDK's wait() returns with the message that carries the final execution: it does not wait for the
stream's end (the server's status after it), a round of the server's and grpc's work on the 1-step row's
path (bench/README.md)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import voltorch
from voltorch.v1 import events_pb2, workflows_pb2, workflows_pb2_grpc

HOLD = 30.0  # the most the stream is held open after its result (the test releases it at once)


class _HeldOpen(workflows_pb2_grpc.WorkflowServiceServicer):
    """WatchExecution sends the terminal event with the final execution, then keeps the stream open until
    released: a client that waits for the stream's end waits as long."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def WatchExecution(self, request, context) -> Iterator[workflows_pb2.WatchExecutionResponse]:
        final = workflows_pb2.WatchExecutionResponse(
            event=events_pb2.Event(id="ev1", sequence=7, type="workflow.execution.completed"),
            execution=workflows_pb2.Execution(
                id=request.execution_id, status=workflows_pb2.EXECUTION_STATUS_COMPLETED
            ),
        )
        yield workflows_pb2.WatchExecutionResponse(updates=[final]) if request.max_batch else final
        self.release.wait(HOLD)


@pytest.fixture
def held_open() -> Iterator[tuple[str, _HeldOpen]]:
    servicer = _HeldOpen()
    server = grpc.server(ThreadPoolExecutor(4))
    workflows_pb2_grpc.add_WorkflowServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    servicer.release.set()
    server.stop(None)


def test_wait_returns_with_the_final_execution_not_at_the_streams_end(held_open) -> None:
    target, servicer = held_open
    with voltorch.Client(target) as client:
        # Without returning at the result this raises DeadlineExceededError (the stream stays open).
        execution = client.workflows.wait("wfx-1", timeout=HOLD / 3)
    assert execution.id == "wfx-1" and execution.status == "completed"
    assert not servicer.release.is_set()  # returned while the stream was still open
