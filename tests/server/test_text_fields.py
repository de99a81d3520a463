"""A NUL character in a request's text field (an agent's name, a task, a label, a description): PostgreSQL
cannot store one in a text column, so it is INVALID_ARGUMENT naming the field on either backend — never
INTERNAL — and nothing is written. JSON values (state values, event data) may hold one: they are stored
escaped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from voltorch import errors as sdk_errors
from voltorch.v1 import (
    coordination_pb2,
    coordination_pb2_grpc,
    state_pb2,
    state_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)
from voltorch_server.app import VoltorchServer

BOTH_BACKENDS = True  # every test using `server` runs on SQLite and on PostgreSQL (tests/conftest.py)

co, wf = coordination_pb2, workflows_pb2
OFFLINE = co.AGENT_KIND_OFFLINE
STEP = wf.StepSpec(id="s1", agent_task=wf.AgentTaskStep(capabilities=["echo"], task="hi"))

# (service, method, request, the field named)
CASES: dict[str, tuple[str, str, Any, str]] = {
    "agent name": (
        "co",
        "RegisterAgent",
        co.RegisterAgentRequest(agent_id="a", name="x\x00", kind=OFFLINE),
        "name",
    ),
    "agent label": (
        "co",
        "RegisterAgent",
        co.RegisterAgentRequest(agent_id="a", kind=OFFLINE, labels={"k": "v\x00"}),
        'labels["k"]',
    ),
    "coordination task": (
        "co",
        "RequestCoordination",
        co.RequestCoordinationRequest(source_agent_id="echo", task="do\x00it"),
        "task",
    ),
    "template category": (
        "wf",
        "RegisterTemplate",
        wf.RegisterTemplateRequest(template=wf.WorkflowTemplate(name="t", category="c\x00", steps=[STEP])),
        "template.category",
    ),
    "template step task": (
        "wf",
        "RegisterTemplate",
        wf.RegisterTemplateRequest(
            template=wf.WorkflowTemplate(
                name="t",
                steps=[wf.StepSpec(id="s1", agent_task=wf.AgentTaskStep(agent_id="echo", task="\x00"))],
            )
        ),
        "template.steps[0].agent_task.task",
    ),
    "execution label": (
        "wf",
        "StartExecution",
        wf.StartExecutionRequest(
            template_name="complete-workflow", parameters={"requirement": "x"}, labels={"k": "\x00"}
        ),
        'labels["k"]',
    ),
    "requirement": (
        "wf",
        "ExecuteCompleteWorkflow",
        wf.ExecuteCompleteWorkflowRequest(requirement="build\x00"),
        "requirement",
    ),
    "snapshot description": (
        "st",
        "CreateSnapshot",
        state_pb2.CreateSnapshotRequest(description="d\x00"),
        "description",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_nul_in_a_text_field_is_invalid_argument_and_writes_nothing(
    echo_agent: VoltorchServer, case: str
) -> None:
    server = echo_agent
    service, method, request, field = CASES[case]
    events_before = server.runtime.events.last_sequence()
    with grpc.insecure_channel(server.target) as channel:
        stubs: dict[str, Callable[[grpc.Channel], Any]] = {
            "co": coordination_pb2_grpc.CoordinationServiceStub,
            "wf": workflows_pb2_grpc.WorkflowServiceStub,
            "st": state_pb2_grpc.StateServiceStub,
        }
        stub = stubs[service](channel)
        with pytest.raises(grpc.RpcError) as err:
            getattr(stub, method)(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        error = sdk_errors.from_rpc_error(err.value)
        assert [v.field for v in error.field_violations] == [field]
        agents = co_stub_agents(channel)
    assert "a" not in agents
    assert server.runtime.events.last_sequence() == events_before


def co_stub_agents(channel: grpc.Channel) -> list[str]:
    stub = coordination_pb2_grpc.CoordinationServiceStub(channel)
    return [a.id for a in stub.ListAgents(co.ListAgentsRequest(), timeout=10).agents]


def test_a_nul_inside_a_json_value_is_kept(server: VoltorchServer) -> None:
    with grpc.insecure_channel(server.target) as channel:
        stub = state_pb2_grpc.StateServiceStub(channel)
        stub.SetKey(
            state_pb2.SetKeyRequest(key="k", value=struct_pb2.Value(string_value="a\x00b")), timeout=10
        )
        got = stub.GetKey(state_pb2.GetKeyRequest(key="k"), timeout=10)
    assert got.kv.value.string_value == "a\x00b"


def test_a_nul_in_a_parameter_rendered_into_a_task_is_invalid_argument(echo_agent: VoltorchServer) -> None:
    template = wf.WorkflowTemplate(
        name="greet",
        parameters=[wf.ParameterSpec(name="who")],
        steps=[wf.StepSpec(id="s1", agent_task=wf.AgentTaskStep(agent_id="echo", task="hi {{who}}"))],
    )
    with grpc.insecure_channel(echo_agent.target) as channel:
        stub = workflows_pb2_grpc.WorkflowServiceStub(channel)
        stub.RegisterTemplate(wf.RegisterTemplateRequest(template=template), timeout=10)
        events_before = echo_agent.runtime.events.last_sequence()
        request = wf.StartExecutionRequest(template_name="greet", parameters={"who": "a\x00b"})
        with pytest.raises(grpc.RpcError) as err:
            stub.StartExecution(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        assert [v.field for v in sdk_errors.from_rpc_error(err.value).field_violations] == ["parameters.who"]
        assert not stub.ListExecutions(wf.ListExecutionsRequest(), timeout=10).executions
    assert echo_agent.runtime.events.last_sequence() == events_before


def test_an_agent_output_holding_a_nul_fails_its_task_with_invalid_output(server: VoltorchServer) -> None:
    """An agent's output is a text column: one holding a NUL (a worker in another language, a model's
    stray byte) fails the task INVALID_OUTPUT on either backend, as an over-long output does, instead of
    a checkpoint PostgreSQL refuses."""
    import voltorch

    server.runtime.coordination.register_agent(
        "nul", kind="function", capabilities=("nul",), runtime=lambda task, cancel: "a\x00b"
    )
    with voltorch.Client(server.target, timeout=10) as client:
        done = client.coordination.run("say it", required_capabilities=["nul"], wait_timeout=30)
    assert done.status == "failed" and done.error is not None
    assert done.error.code == "INVALID_OUTPUT" and "NUL" in done.error.message
