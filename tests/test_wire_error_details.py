"""voltorch.wire's error details mapping: the server's status for a domain error carries ErrorInfo,
BadRequest and PreconditionFailure as before (objects and bytes), the SDK reads them into its typed
exception (through a real call), and the details survive a round trip."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import cast

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from voltorch import errors as sdk_errors
from voltorch import wire
from voltorch.v1 import coordination_pb2, coordination_pb2_grpc
from voltorch_server import errors as e
from voltorch_server.servicers import ErrorInterceptor

_DETAILS_KEY = "grpc-status-details-bin"
Failing = tuple[int, list[BaseException]]  # the port of a server whose one method raises the first error


def _any(msg) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


@pytest.fixture
def failing() -> Iterator[Failing]:
    """A server (its port) whose one method raises the first error in the list, through the server's
    ErrorInterceptor."""
    raising: list[BaseException] = []

    def fail(request: bytes, context: grpc.ServicerContext) -> bytes:
        raise raising[0]

    handler = grpc.unary_unary_rpc_method_handler(fail)
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[ErrorInterceptor()])
    srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", {"Fail": handler}),))
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield port, raising
    srv.stop(None)


def _failed_call(failing: Failing, exc: BaseException) -> grpc.RpcError:
    port, raising = failing
    raising[:] = [exc]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.RpcError) as err:
        channel.unary_unary("/t.T/Fail")(b"", timeout=10)
    return err.value


def _sent(failing: Failing, exc: BaseException) -> status_pb2.Status:
    """The google.rpc.Status the server sent for exc, as the client received it."""
    call = cast(grpc.Call, _failed_call(failing, exc))
    return status_pb2.Status.FromString(dict(call.trailing_metadata() or ())[_DETAILS_KEY])


def _same_bytes(got: status_pb2.Status, expected: status_pb2.Status) -> bool:
    return got.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)


def _invalid() -> e.InvalidArgument:
    return e.InvalidArgument(
        "key", "must not be empty", more=[e.FieldViolation("ttl", "negative")], reason="FIELD_REQUIRED"
    )


def _expected_invalid() -> status_pb2.Status:
    return status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT,
        message="key: must not be empty; ttl: negative",
        details=[
            _any(error_details_pb2.ErrorInfo(reason="FIELD_REQUIRED", domain="voltorch.dev")),
            _any(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field="key", description="must not be empty"
                        ),
                        error_details_pb2.BadRequest.FieldViolation(field="ttl", description="negative"),
                    ]
                )
            ),
        ],
    )


def _conflict() -> e.Conflict:
    return e.Conflict(
        "version conflict on 'cas'",
        violations=[e.PreconditionViolation("VERSION", "cas", "expected version 1, current 2")],
        metadata={"key": "cas"},
    )


def _expected_conflict() -> status_pb2.Status:
    return status_pb2.Status(
        code=code_pb2.FAILED_PRECONDITION,
        message="version conflict on 'cas'",
        details=[
            _any(
                error_details_pb2.ErrorInfo(
                    reason="VERSION_CONFLICT", domain="voltorch.dev", metadata={"key": "cas"}
                )
            ),
            _any(
                error_details_pb2.PreconditionFailure(
                    violations=[
                        error_details_pb2.PreconditionFailure.Violation(
                            type="VERSION", subject="cas", description="expected version 1, current 2"
                        )
                    ]
                )
            ),
        ],
    )


def test_the_server_writes_field_violations_as_before(failing: Failing) -> None:
    got = _sent(failing, _invalid())
    assert got == _expected_invalid() and _same_bytes(got, _expected_invalid())


def test_the_server_writes_precondition_violations_as_before(failing: Failing) -> None:
    got = _sent(failing, _conflict())
    assert got == _expected_conflict() and _same_bytes(got, _expected_conflict())


def test_the_server_writes_error_info_alone_when_there_are_no_violations(failing: Failing) -> None:
    got = _sent(failing, e.NotFound("execution", "x1"))
    expected = status_pb2.Status(
        code=code_pb2.NOT_FOUND,
        message="execution 'x1' not found",
        details=[
            _any(
                error_details_pb2.ErrorInfo(
                    reason="EXECUTION_NOT_FOUND",
                    domain="voltorch.dev",
                    metadata={"resource_type": "execution", "name": "x1"},
                )
            )
        ],
    )
    assert got == expected and _same_bytes(got, expected)
    bare = _sent(
        failing, e.FailedPrecondition("not now", reason="EXECUTION_TERMINAL")
    )  # no violations: no detail
    assert [d.type_url.rsplit("/", 1)[1] for d in bare.details] == ["google.rpc.ErrorInfo"]


def test_an_internal_error_names_only_its_id(failing: Failing) -> None:
    got = _sent(failing, RuntimeError("secret stack"))
    (detail,) = got.details
    info = error_details_pb2.ErrorInfo()
    assert detail.Unpack(info) and info.reason == "INTERNAL" and info.domain == "voltorch.dev"
    assert list(info.metadata) == ["error_id"] and info.metadata["error_id"] in got.message
    assert "secret" not in got.message


def test_the_details_survive_a_round_trip() -> None:
    read = wire.error_details_from_pb(_expected_invalid().details)
    assert read == wire.ErrorDetails(
        reason="FIELD_REQUIRED",
        domain="voltorch.dev",
        field_violations=[
            wire.FieldViolation("key", "must not be empty"),
            wire.FieldViolation("ttl", "negative"),
        ],
    )
    again = wire.error_details_pb(
        read.reason,
        read.metadata,
        domain=read.domain,
        field_violations=read.field_violations,
        precondition_violations=read.precondition_violations,
    )
    assert again == list(_expected_invalid().details)
    conflict = wire.error_details_from_pb(_expected_conflict().details)
    assert conflict.metadata == {"key": "cas"} and conflict.precondition_violations == [
        wire.PreconditionViolation("VERSION", "cas", "expected version 1, current 2")
    ]
    assert wire.error_details_from_pb([]) == wire.ErrorDetails()


def test_the_sdk_reads_what_the_server_sent(failing: Failing) -> None:
    invalid = sdk_errors.from_rpc_error(_failed_call(failing, _invalid()))
    assert type(invalid) is sdk_errors.InvalidArgumentError
    assert (invalid.reason, invalid.metadata) == ("FIELD_REQUIRED", {})
    assert invalid.field_violations == [
        sdk_errors.FieldViolation("key", "must not be empty"),
        sdk_errors.FieldViolation("ttl", "negative"),
    ]
    conflict = sdk_errors.from_rpc_error(_failed_call(failing, _conflict()))
    assert type(conflict) is sdk_errors.ConflictError and conflict.message == "version conflict on 'cas'"
    assert (conflict.reason, conflict.metadata) == ("VERSION_CONFLICT", {"key": "cas"})
    assert conflict.precondition_violations == [
        sdk_errors.PreconditionViolation("VERSION", "cas", "expected version 1, current 2")
    ]
    assert conflict.field_violations == []


def test_an_error_echoing_a_huge_value_still_arrives_as_itself(failing: Failing) -> None:
    """A message and details that echo an over-long input are bounded: the client gets the error's own
    code and field, not RESOURCE_EXHAUSTED for trailers over grpc's metadata limit."""
    huge = "x" * 20_000
    many = [e.FieldViolation(f"f{i}", f"bad {huge}") for i in range(50)]
    exc = e.InvalidArgument("agent_id", f"got {huge!r}", more=many)
    call = cast(grpc.Call, _failed_call(failing, exc))
    assert call.code() == grpc.StatusCode.INVALID_ARGUMENT and len(call.details() or "") < 2_000
    read = sdk_errors.from_rpc_error(cast(grpc.RpcError, call))
    assert read.field_violations[0].field == "agent_id" and len(read.field_violations) <= 10
    missing = sdk_errors.from_rpc_error(_failed_call(failing, e.NotFound("agent", huge)))
    assert type(missing) is sdk_errors.NotFoundError and missing.reason == "AGENT_NOT_FOUND"


def test_an_over_long_agent_id_is_invalid_argument_over_the_wire(server) -> None:
    with grpc.insecure_channel(server.target) as channel:
        stub = coordination_pb2_grpc.CoordinationServiceStub(channel)
        request = coordination_pb2.RegisterAgentRequest(
            agent_id="a" * 10_000, kind=coordination_pb2.AGENT_KIND_OFFLINE
        )
        with pytest.raises(grpc.RpcError) as err:
            stub.RegisterAgent(request, timeout=10)
        invalid = sdk_errors.from_rpc_error(err.value)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert invalid.field_violations[0].field == "agent_id"
        with pytest.raises(grpc.RpcError) as err:
            stub.GetAgent(coordination_pb2.GetAgentRequest(agent_id="b" * 10_000), timeout=10)
        assert err.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
        listed = stub.ListAgents(coordination_pb2.ListAgentsRequest(), timeout=10).agents
        assert all(len(a.id) < 10_000 for a in listed)  # nothing half-registered
