"""voltorch.wire: the one proto mapping, read leniently (SDK) or as a request (server)."""

from __future__ import annotations

import pytest
from voltorch import wire
from voltorch.v1 import workflows_pb2
from voltorch_server.components.workflows.templates import (
    AgentTaskSpec,
    ConditionSpec,
    ParameterSpec,
    StepSpec,
    Template,
)
from voltorch_server.errors import InvalidArgument
from voltorch_server.servicers.workflows import template, template_pb


def _one_step() -> workflows_pb2.WorkflowTemplate:
    return wire.template_pb(wire.WorkflowTemplate("t", [wire.Step("a", wire.AgentTask("x", ["c"]))]))


def test_a_request_with_an_unknown_enum_names_the_field_a_reply_reads_the_default() -> None:
    pb = wire.template_pb(
        wire.WorkflowTemplate(
            "t",
            [wire.Step("a", wire.CoordinationStep("x", agent_ids=["p"]))],
            parameters=[wire.ParameterSpec("p")],
        )
    )
    pb.steps[0].coordination.mode = 99  # type: ignore[assignment]  # an unknown enum number on purpose (proto3 enums are open; the stubs are not)
    with pytest.raises(wire.WireError) as err:
        wire.template_from_pb(pb, request=True)
    assert err.value.field == "template.steps[0].coordination.mode"
    lenient = wire.template_from_pb(pb).steps[0].kind
    assert isinstance(lenient, wire.CoordinationStep) and lenient.mode == "sequential"
    pb.parameters[0].type = 42  # type: ignore[assignment]  # an unknown enum number on purpose (proto3 enums are open; the stubs are not)
    with pytest.raises(wire.WireError) as err:
        wire.template_from_pb(pb, request=True)
    assert err.value.field == "template.parameters[0].type"  # parameters are read first
    assert wire.template_from_pb(pb).parameters[0].type == "string"


def test_a_request_with_a_negative_duration_names_the_field_and_zero_counts_as_unset() -> None:
    pb = _one_step()
    pb.steps[0].timeout.FromSeconds(-1)
    with pytest.raises(wire.WireError) as err:
        wire.template_from_pb(pb, request=True)
    assert err.value.field == "template.steps[0].timeout"
    assert wire.template_from_pb(pb).steps[0].timeout == -1
    pb.steps[0].timeout.FromSeconds(0)
    assert wire.template_from_pb(pb, request=True).steps[0].timeout is None
    assert wire.template_from_pb(pb).steps[0].timeout == 0


def test_the_server_reads_a_request_as_invalid_argument_naming_the_field() -> None:
    pb = _one_step()
    pb.default_retry.max_backoff.FromSeconds(-3)
    with pytest.raises(InvalidArgument) as err:
        template(pb)
    assert err.value.violations[0].field == "template.default_retry.max_backoff"


def test_a_server_template_survives_the_wire_both_ways() -> None:
    pb = wire.template_pb(
        wire.WorkflowTemplate(
            "t",
            [
                wire.Step("a", wire.AgentTask("x", ["c"], context={"k": [1, 2]})),
                wire.Step(
                    "b",
                    wire.ConditionStep("a", wire.Condition.field_equals("v", [1, "x"]), ["c"]),
                    depends_on=["a"],
                ),
                wire.Step("c", wire.FanOut("a", wire.AgentTask("y")), retry=wire.RetryPolicy(2, 0.5)),
            ],
            parameters=[wire.ParameterSpec("p", default=[1]), wire.ParameterSpec("q", "integer", True)],
            timeout=30,
        )
    )
    t = template(pb)
    assert isinstance(t, Template) and all(isinstance(s, StepSpec) for s in t.steps)
    assert t.parameters == (
        ParameterSpec("p", default=[1], has_default=True),
        ParameterSpec("q", "integer", True),
    )
    condition, task = t.steps[1].kind, t.steps[0].kind
    assert isinstance(condition, ConditionSpec) and condition.predicate.json_value == [1, "x"]
    assert isinstance(task, AgentTaskSpec) and task.context == {"k": [1, 2]}
    again = template_pb(t)
    assert again == pb
    assert template(again) == t
