"""voltorch.wire's CompleteWorkflowOptions mapping: the SDK's execute_complete writes it as before, the
server reads it strictly (a negative duration names the field), and it survives a round trip."""

from __future__ import annotations

from datetime import timedelta

import pytest
from google.protobuf.duration_pb2 import Duration
from voltorch import wire
from voltorch.v1 import workflows_pb2
from voltorch_server.components.workflows import CompleteOptions
from voltorch_server.components.workflows.templates import Budget, RetryPolicy
from voltorch_server.errors import InvalidArgument
from voltorch_server.servicers.workflows import _options


def _expected() -> workflows_pb2.CompleteWorkflowOptions:
    return workflows_pb2.CompleteWorkflowOptions(
        max_tasks=5,
        max_parallel=2,
        skip_review=True,
        timeout=Duration(seconds=600),
        step_timeout=Duration(seconds=30, nanos=500_000_000),
        retry=workflows_pb2.RetryPolicy(
            max_attempts=4,
            initial_backoff=Duration(nanos=250_000_000),
            backoff_multiplier=1.5,
            non_retryable_errors=["INVALID_OUTPUT"],
        ),
        budget=workflows_pb2.Budget(max_tokens=1000, max_cost=0.5),
        approve_tasks=True,
    )


def test_the_server_reads_the_options() -> None:
    assert _options(_expected()) == CompleteOptions(
        max_tasks=5,
        max_parallel=2,
        skip_review=True,
        timeout=600.0,
        step_timeout=30.5,
        retry=RetryPolicy(4, 0.25, 1.5, None, ("INVALID_OUTPUT",)),
        budget=Budget(1000, 0.5, 0),
        approve_tasks=True,
    )
    assert _options(workflows_pb2.CompleteWorkflowOptions()) == CompleteOptions()
    zero = workflows_pb2.CompleteWorkflowOptions(timeout=Duration(), budget=workflows_pb2.Budget())
    assert _options(zero) == CompleteOptions(budget=Budget())  # a zero timeout is unset; a set budget is kept


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (workflows_pb2.CompleteWorkflowOptions(timeout=Duration(seconds=-1)), "options.timeout"),
        (workflows_pb2.CompleteWorkflowOptions(step_timeout=Duration(nanos=-1)), "options.step_timeout"),
        (
            workflows_pb2.CompleteWorkflowOptions(
                retry=workflows_pb2.RetryPolicy(max_backoff=Duration(seconds=-2))
            ),
            "options.retry.max_backoff",
        ),
    ],
)
def test_a_negative_duration_names_its_field(
    options: workflows_pb2.CompleteWorkflowOptions, field: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        _options(options)
    assert err.value.violations[0].field == field and err.value.reason == "DURATION_INVALID"


def test_the_sdk_writes_the_options_as_before() -> None:
    options = wire.CompleteOptions(
        max_tasks=5,
        max_parallel=2,
        skip_review=True,
        timeout=timedelta(minutes=10),
        step_timeout=30.5,
        retry=wire.RetryPolicy(4, 0.25, 1.5, None, ["INVALID_OUTPUT"]),
        budget=wire.Budget(1000, 0.5),
        approve_tasks=True,
    )
    got = wire.complete_options_pb(options)
    assert got == _expected()
    assert got.SerializeToString(deterministic=True) == _expected().SerializeToString(deterministic=True)
    bare = wire.complete_options_pb(wire.CompleteOptions())
    assert bare == workflows_pb2.CompleteWorkflowOptions() and bare.ByteSize() == 0


def test_the_options_survive_a_round_trip() -> None:
    read = wire.complete_options_from_pb(_expected())
    assert read == wire.CompleteOptions(
        5,
        2,
        True,
        600.0,
        30.5,
        wire.RetryPolicy(4, 0.25, 1.5, None, ("INVALID_OUTPUT",)),
        wire.Budget(1000, 0.5),
        True,
    )
    assert wire.complete_options_from_pb(wire.complete_options_pb(read)) == read
