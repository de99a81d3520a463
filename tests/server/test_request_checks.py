"""Requests checked at the door: every Timestamp and Duration field of every request (found from the
descriptors), Values with no kind, undecodable bytes — INVALID_ARGUMENT naming the field, nothing written,
no traceback."""

from __future__ import annotations

import logging
import threading

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rpc_catalog import WELL_KNOWN_CHECKED, all_rpcs, call_raw, field_paths, reach
from voltorch.v1 import (
    coordination_pb2,
    coordination_pb2_grpc,
    events_pb2,
    state_pb2,
    state_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)
from voltorch_server.app import VoltorchServer
from voltorch_server.servicers import check_request

_BAD_TIMESTAMPS = [
    {"nanos": -1},
    {"nanos": 1_000_000_000},
    {"seconds": 253_402_300_800},  # 10000-01-01
    {"seconds": -62_135_596_801},  # before 0001-01-01
]
_BAD_DURATIONS = [
    {"seconds": 315_576_000_001},
    {"seconds": -315_576_000_001},
    {"nanos": 1_000_000_000},
    {"seconds": 1, "nanos": -1},
    {"seconds": -1, "nanos": 1},
]


def _cases() -> list[tuple[str, str, str, dict[str, int]]]:
    """(rpc path, field path, well-known type, bad value) for every Timestamp/Duration in every request."""
    out = []
    for rpc in all_rpcs():
        for path, steps in field_paths(rpc.method.input_type, WELL_KNOWN_CHECKED):
            wkt = steps[-1].message_type.full_name
            for bad in _BAD_TIMESTAMPS if wkt.endswith("Timestamp") else _BAD_DURATIONS:
                out.append((rpc.path, path, wkt, bad))
    return out


CASES = _cases()
RPCS = {r.path: r for r in all_rpcs()}


def test_the_table_covers_the_fields_the_issue_names():
    paths = {(rpc, field) for rpc, field, _, _ in CASES}
    assert ("/voltorch.v1.WorkflowService/ListExecutions", "created_after") in paths
    assert ("/voltorch.v1.WorkflowService/ListExecutions", "created_before") in paths
    assert ("/voltorch.v1.StateService/SetKey", "ttl") in paths
    assert ("/voltorch.v1.WorkflowService/RegisterTemplate", "template.steps[0].timeout") in paths
    assert len({p for p, _, _, _ in CASES}) >= 10  # many requests carry times


def _violations(exc: grpc.RpcError) -> list[str]:
    """The fields named by the BadRequest detail of a failed call."""
    status = rpc_status.from_call(exc)
    fields: list[str] = []
    for d in status.details if status else []:
        br = error_details_pb2.BadRequest()
        if d.Unpack(br):
            fields.extend(v.field for v in br.field_violations)
    return fields


def _reason(exc: grpc.RpcError) -> str:
    """The ErrorInfo.reason of a failed call."""
    status = rpc_status.from_call(exc)
    for d in status.details if status else []:
        info = error_details_pb2.ErrorInfo()
        if d.Unpack(info):
            return info.reason
    return ""


@pytest.fixture
def channel(server: VoltorchServer):
    with grpc.insecure_channel(server.target) as ch:
        yield ch


def test_every_time_field_of_every_request_is_checked(server, channel, caplog):
    """Each bad Timestamp/Duration, in each request that has one, is INVALID_ARGUMENT naming that field."""
    caplog.set_level(logging.WARNING)
    failures = []
    for rpc_path, field, _wkt, bad in CASES:
        rpc = RPCS[rpc_path]
        req = rpc.request_type()
        steps = next(s for p, s in field_paths(rpc.method.input_type, WELL_KNOWN_CHECKED) if p == field)
        target = reach(req, steps)
        for k, v in bad.items():
            setattr(target, k, v)
        code, details = call_raw(channel, rpc, req.SerializeToString())
        if code != grpc.StatusCode.INVALID_ARGUMENT or not details.startswith(f"{field}: "):
            failures.append((rpc_path, field, bad, code, details))
    assert not failures, failures
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_list_executions_with_a_bad_created_after_names_it(server):
    stub = workflows_pb2_grpc.WorkflowServiceStub(grpc.insecure_channel(server.target))
    req = workflows_pb2.ListExecutionsRequest()
    req.created_after.nanos = -1
    with pytest.raises(grpc.RpcError) as err:
        stub.ListExecutions(req)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(err.value) == ["created_after"]
    assert _reason(err.value) == "TIMESTAMP_INVALID"
    req = workflows_pb2.ListExecutionsRequest()
    req.created_before.seconds = 10**12
    with pytest.raises(grpc.RpcError) as err:
        stub.ListExecutions(req)
    assert _violations(err.value) == ["created_before"]


@pytest.mark.parametrize(
    ("service", "rpc", "request_", "field"),
    [
        ("workflows", "ListExecutions", workflows_pb2.ListExecutionsRequest(status=99), "status"),  # type: ignore[arg-type]  # an unknown enum number on purpose (proto3 enums are open; the stubs are not)
        ("coordination", "ListCoordinations", coordination_pb2.ListCoordinationsRequest(status=99), "status"),  # type: ignore[arg-type]  # an unknown enum number on purpose
        ("coordination", "ListAgents", coordination_pb2.ListAgentsRequest(status=99), "status"),  # type: ignore[arg-type]  # an unknown enum number on purpose
        ("coordination", "ListAgents", coordination_pb2.ListAgentsRequest(kind=99), "kind"),  # type: ignore[arg-type]  # an unknown enum number on purpose
    ],
)
def test_a_list_filter_with_an_unknown_enum_number_names_the_field(server, service, rpc, request_, field):
    channel = grpc.insecure_channel(server.target)
    stubs = {
        "workflows": workflows_pb2_grpc.WorkflowServiceStub(channel),
        "coordination": coordination_pb2_grpc.CoordinationServiceStub(channel),
    }
    with pytest.raises(grpc.RpcError) as err:
        getattr(stubs[service], rpc)(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(err.value) == [field]
    assert _reason(err.value) == "ENUM_VALUE_INVALID"
    channel.close()


def test_a_bad_duration_is_duration_invalid(client):
    req = state_pb2.SetKeyRequest(key="k", value=struct_pb2.Value(number_value=1))
    req.ttl.seconds, req.ttl.nanos = 1, -1
    with pytest.raises(grpc.RpcError) as err:
        client.stubs.state.SetKey(req)
    assert _violations(err.value) == ["ttl"] and _reason(err.value) == "DURATION_INVALID"


# -- Values with no kind ------------------------------------------------------------------------------------


def _kindless_struct() -> struct_pb2.Value:
    v = struct_pb2.Value()
    v.struct_value.fields["ok"].string_value = "fine"
    v.struct_value.fields["user"].SetInParent()  # {"user": <no kind>}: what a misspelt structValue sends
    return v


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (state_pb2.SetKeyRequest(key="k", value=struct_pb2.Value()), "value"),
        (state_pb2.SetKeyRequest(key="k", value=_kindless_struct()), 'value["user"]'),
        (
            state_pb2.SetKeyRequest(
                key="k",
                value=struct_pb2.Value(
                    list_value=struct_pb2.ListValue(
                        values=[struct_pb2.Value(number_value=1), _kindless_struct()]
                    )
                ),
            ),
            'value[1]["user"]',
        ),
        (
            state_pb2.TransactionRequest(
                on_success=[
                    state_pb2.StateOperation(
                        set=state_pb2.SetKeyRequest(key="a", value=struct_pb2.Value(number_value=1))
                    ),
                    state_pb2.StateOperation(set=state_pb2.SetKeyRequest(key="b", value=_kindless_struct())),
                ]
            ),
            'on_success[1].set.value["user"]',
        ),
    ],
)
def test_a_value_with_no_kind_is_rejected_and_nothing_is_written(client, request_, field):
    stub = client.stubs.state
    method = stub.SetKey if isinstance(request_, state_pb2.SetKeyRequest) else stub.Transaction
    with pytest.raises(grpc.RpcError) as err:
        method(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(err.value) == [field]
    assert _reason(err.value) == "VALUE_INVALID"
    assert stub.ListKeys(state_pb2.ListKeysRequest()).kvs == []


def test_kindless_values_in_events_and_structs_are_rejected(client):
    ev = events_pb2.Event(type="t.x", source="s")
    ev.data.SetInParent()
    with pytest.raises(grpc.RpcError) as err:
        client.stubs.events.PublishBatch(
            events_pb2.PublishBatchRequest(events=[events_pb2.Event(type="t.ok", source="s"), ev])
        )
    assert _violations(err.value) == ["events[1].data"]
    req = workflows_pb2.StartExecutionRequest(template_name="complete-workflow")
    req.parameters.fields["requirement"].SetInParent()
    with pytest.raises(grpc.RpcError) as err:
        client.stubs.workflows.StartExecution(req)
    assert _violations(err.value) == ['parameters["requirement"]']
    types = {
        e.type for e in client.stubs.events.ListEvents(events_pb2.ListEventsRequest(page_size=1000)).events
    }
    assert "t.ok" not in types  # the batch was refused whole


def test_check_request_accepts_what_is_valid():
    v = struct_pb2.Value()
    v.struct_value.fields["a"].list_value.values.add().null_value = struct_pb2.NULL_VALUE
    check_request(state_pb2.SetKeyRequest(key="k", value=v))  # no exception
    req = workflows_pb2.ListExecutionsRequest()
    req.created_after.seconds, req.created_after.nanos = 253_402_300_799, 999_999_999
    check_request(req)


# -- undecodable bytes --------------------------------------------------------------------------------------


def test_undecodable_bytes_are_invalid_argument_with_one_log_line(server, channel, caplog):
    caplog.set_level(logging.DEBUG)  # a new server: its limiter has logged nothing yet
    rpc = RPCS["/voltorch.v1.StateService/SetKey"]
    for _ in range(20):
        code, details = call_raw(channel, rpc, b"\xff\xff\xff\xff")
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid voltorch.v1.SetKeyRequest" in details
    lines = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(lines) == 1  # rate limited
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert state_pb2_grpc.StateServiceStub(channel).ListKeys(state_pb2.ListKeysRequest()).kvs == []


def test_undecodable_bytes_never_reach_the_decoder_before_auth(config):
    token = "admin-token-0123456789"
    with (
        VoltorchServer(config.with_overrides(auth_tokens=f"admin:{token}")) as srv,
        grpc.insecure_channel(srv.target) as ch,
    ):
        code, _ = call_raw(ch, RPCS["/voltorch.v1.StateService/SetKey"], b"\xff\xff\xff\xff")
        assert code == grpc.StatusCode.UNAUTHENTICATED
        raw = ch.unary_unary("/voltorch.v1.StateService/SetKey")
        with pytest.raises(grpc.RpcError) as err:
            raw(b"\xff\xff\xff\xff", metadata=[("authorization", f"Bearer {token}")], timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _reason(err.value) == "REQUEST_UNDECODABLE"


def test_a_bad_later_message_on_a_worker_stream_ends_it_naming_the_field(server, channel):
    from voltorch.v1 import coordination_pb2 as cpb
    from voltorch.v1 import coordination_pb2_grpc

    hello = cpb.WorkerMessage(hello=cpb.WorkerHello(agent_id="checked-worker", capabilities=["x"]))
    bad = cpb.WorkerMessage(result=cpb.TaskResult(task_id="t-1", attempt=1))
    bad.result.structured_output.struct_value.fields["answer"].SetInParent()  # no kind
    welcomed = threading.Event()

    def messages():
        yield hello
        welcomed.wait(10)
        yield bad

    call = coordination_pb2_grpc.CoordinationServiceStub(channel).Connect(messages(), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        for msg in call:
            if msg.HasField("welcome"):
                welcomed.set()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(err.value) == ['result.structured_output["answer"]']
