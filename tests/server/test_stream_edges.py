"""Streams at their edges: clients that leave mid-stream, grpc.health.v1 List, anonymous stream caps."""

from __future__ import annotations

import logging
import threading
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from polling import until
from voltorch.v1 import (
    coordination_pb2,
    coordination_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    state_pb2,
    state_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)
from voltorch_server.app import VoltorchServer


def _no_errors_recorded(server: VoltorchServer) -> None:
    with grpc.insecure_channel(server.target) as ch:
        orch = orchestrator_pb2_grpc.OrchestratorServiceStub(ch)
        errors = orch.ListErrors(orchestrator_pb2.ListErrorsRequest()).errors
        assert [(e.component, e.code, e.message) for e in errors] == []
        assert orch.GetHealth(orchestrator_pb2.GetHealthRequest()).error_count == 0


def _reflection_list(ch: grpc.Channel) -> grpc.RpcError | None:
    """What `grpcurl list` does: ask for the services, read the answer, leave."""
    stub = reflection_pb2_grpc.ServerReflectionStub(ch)
    sent = threading.Event()

    def requests():
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        sent.wait(10)  # keep the request stream open until the answer is read, as grpcurl does

    call = stub.ServerReflectionInfo(requests())
    assert next(call).list_services_response.service
    call.cancel()
    sent.set()
    return None


def _subscribe(ch: grpc.Channel) -> None:
    call = events_pb2_grpc.EventServiceStub(ch).Subscribe(events_pb2.SubscribeRequest(from_sequence=1))
    next(call)
    call.cancel()


def _watch(ch: grpc.Channel) -> None:
    stub = state_pb2_grpc.StateServiceStub(ch)
    stub.SetKey(state_pb2.SetKeyRequest(key="w", value=_one()))
    call = stub.Watch(state_pb2.WatchRequest(prefix="", start_revision=1))
    next(call)
    call.cancel()


def _watch_execution(ch: grpc.Channel) -> None:
    stub = workflows_pb2_grpc.WorkflowServiceStub(ch)
    ex = stub.ExecuteCompleteWorkflow(
        workflows_pb2.ExecuteCompleteWorkflowRequest(requirement="Build a tiny calculator")
    ).execution
    call = stub.WatchExecution(workflows_pb2.WatchExecutionRequest(execution_id=ex.id))
    next(call)
    call.cancel()


def _worker(ch: grpc.Channel) -> None:
    stub = coordination_pb2_grpc.CoordinationServiceStub(ch)
    hello = coordination_pb2.WorkerMessage(
        hello=coordination_pb2.WorkerHello(agent_id="leaver", capabilities=["x"])
    )
    stop = threading.Event()

    def messages():
        yield hello
        stop.wait(10)

    call = stub.Connect(messages())
    assert next(call).HasField("welcome")
    call.cancel()
    stop.set()


def _one():
    from google.protobuf import struct_pb2

    return struct_pb2.Value(number_value=1)


LEAVERS = {
    "reflection": _reflection_list,
    "subscribe": _subscribe,
    "watch": _watch,
    "watch_execution": _watch_execution,
    "worker": _worker,
}


@pytest.mark.parametrize("how", ["cancel", "close"])
def test_clients_leaving_mid_stream_are_not_errors(server, caplog, how):
    """Each stream, left by its client (call cancelled, or the whole channel closed as on Ctrl-C), leaves
    no ERROR log line, no recorded error, no error count."""
    caplog.set_level(logging.DEBUG)
    for name, leave in LEAVERS.items():
        ch = grpc.insecure_channel(server.target)
        try:
            leave(ch)
        finally:
            if how == "close":
                ch.close()
        until(lambda: server.stream_limit.open_streams == 0)
        if how == "cancel":
            ch.close()
        bad = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not bad, (name, [r.getMessage() for r in bad])
    _no_errors_recorded(server)


# -- grpc.health.v1 List ------------------------------------------------------------------------------------


def test_health_list_answers_every_service_with_its_status(server):
    with grpc.insecure_channel(server.target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        statuses = stub.List(health_pb2.HealthListRequest()).statuses
        serving = health_pb2.HealthCheckResponse.SERVING
        for name in ("", "voltorch.v1.StateService", "voltorch.v1.EventService", "state", "events"):
            assert statuses[name].status == serving, name
        for name, st in statuses.items():  # List agrees with Check
            assert stub.Check(health_pb2.HealthCheckRequest(service=name)).status == st.status
    _no_errors_recorded(server)


def test_health_list_after_shutdown_began_says_not_serving(config):
    srv = VoltorchServer(config).start()
    try:
        srv.health.enter_graceful_shutdown()
        with grpc.insecure_channel(srv.target) as ch:
            statuses = health_pb2_grpc.HealthStub(ch).List(health_pb2.HealthListRequest()).statuses
        assert statuses
        assert {s.status for s in statuses.values()} == {health_pb2.HealthCheckResponse.NOT_SERVING}
    finally:
        srv.stop(grace=1.0)


# -- anonymous streams have their own cap -------------------------------------------------------------------

_TOKEN = "agent-token-0123456789"


def _open_health_watch(ch: grpc.Channel) -> tuple[grpc.StatusCode, Any]:
    call = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
    try:
        next(call)
        return grpc.StatusCode.OK, call
    except grpc.RpcError as exc:
        return exc.code(), call


@pytest.mark.parametrize("auth", [True, False])
def test_anonymous_streams_cannot_lock_out_subscribers(config, auth):
    overrides: dict[str, Any] = {"max_streams": 3, "max_anonymous_streams": 2, "max_workers": 16}
    if auth:
        overrides["auth_tokens"] = f"agent:{_TOKEN}"
    metadata = [("authorization", f"Bearer {_TOKEN}")] if auth else None
    with VoltorchServer(config.with_overrides(**overrides)) as srv, grpc.insecure_channel(srv.target) as ch:
        watches = [_open_health_watch(ch) for _ in range(10)]  # ten anonymous probes
        codes = [code for code, _ in watches]
        assert codes.count(grpc.StatusCode.OK) == 2
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 8
        assert srv.stream_limit.open_anonymous_streams == 2
        stub = events_pb2_grpc.EventServiceStub(ch)
        subs = [
            stub.Subscribe(events_pb2.SubscribeRequest(), metadata=metadata, timeout=30) for _ in range(3)
        ]
        for s in subs:
            assert next(s).HasField("heartbeat")  # every subscriber got its slot
        for s in subs:
            s.cancel()
        for _, call in watches:
            call.cancel()
        until(lambda: srv.stream_limit.open_streams == 0)
