"""Pages of large items: coordinations, executions and templates each within their own limits, but a page
of them larger than the 4 MiB a gRPC message may carry, answered RESOURCE_EXHAUSTED 'Sent message larger
than max'. A page now ends early, with a next_page_token, and paging through finds every item."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import voltorch
from google.protobuf import struct_pb2
from voltorch.v1 import coordination_pb2 as co
from voltorch.v1 import coordination_pb2_grpc, workflows_pb2_grpc
from voltorch.v1 import events_pb2 as ev
from voltorch.v1 import orchestrator_pb2 as orc
from voltorch.v1 import state_pb2 as st
from voltorch.v1 import workflows_pb2 as wf
from voltorch_server.app import VoltorchServer

BIG = "x" * 900_000


def _all(call: Callable[..., Any], request: Any, field: str) -> tuple[int, int]:
    """(items on the first page, items over all pages)."""
    page = call(request, timeout=10)
    first = total = len(getattr(page, field))
    while page.next_page_token:
        request.page_token = page.next_page_token
        page = call(request, timeout=10)
        total += len(getattr(page, field))
    return first, total


def test_large_coordinations_executions_and_templates_page(echo_agent: VoltorchServer) -> None:
    with grpc.insecure_channel(echo_agent.target) as channel:
        coordination = coordination_pb2_grpc.CoordinationServiceStub(channel)
        workflows = workflows_pb2_grpc.WorkflowServiceStub(channel)
        for _ in range(6):
            coordination.RequestCoordination(
                co.RequestCoordinationRequest(source_agent_id="echo", task="t", context={"blob": BIG}),
                timeout=10,
            )
        first, total = _all(coordination.ListCoordinations, co.ListCoordinationsRequest(), "coordinations")
        assert first < 6 and total == 6

        step = wf.StepSpec(id="s1", agent_task=wf.AgentTaskStep(agent_id="echo", task="{{p}}"))
        template = wf.WorkflowTemplate(name="blob", parameters=[wf.ParameterSpec(name="p")], steps=[step])
        workflows.RegisterTemplate(wf.RegisterTemplateRequest(template=template), timeout=10)
        for _ in range(6):
            workflows.StartExecution(
                wf.StartExecutionRequest(template_name="blob", parameters={"p": BIG}), timeout=10
            )
        first, total = _all(workflows.ListExecutions, wf.ListExecutionsRequest(), "executions")
        assert first < 6 and total == 6

        tasks = [
            wf.StepSpec(id=f"s{j}", agent_task=wf.AgentTaskStep(agent_id="echo", task="y" * 90_000))
            for j in range(35)
        ]
        for i in range(3):
            big = wf.WorkflowTemplate(name=f"big{i}", steps=tasks)
            workflows.RegisterTemplate(wf.RegisterTemplateRequest(template=big), timeout=10)
        first, total = _all(workflows.ListTemplates, wf.ListTemplatesRequest(), "templates")
        assert first < total and total >= 4  # the three big ones, "blob" and the built-in ones


def test_pages_of_number_lists_stay_within_a_message(client: voltorch.Client) -> None:
    """A list of numbers is short as JSON and six times longer as a protobuf Value (`0,` is an 11-byte
    double): three values of 340 kB JSON (1.9 MB each on the wire) made a page the 1 MiB budget let through
    and the 4 MiB message limit did not. ListKeys, GetHistory and ListEvents answered RESOURCE_EXHAUSTED."""
    zeros = [0] * 170_000
    for i in range(3):
        client.state.set(f"zeros/{i}", zeros)
        client.state.set("zeros/history", zeros)
    stubs = client.stubs
    first, total = _all(stubs.state.ListKeys, st.ListKeysRequest(prefix="zeros/"), "kvs")
    assert first < 4 and total == 4
    first, total = _all(stubs.state.GetHistory, st.GetHistoryRequest(key="zeros/history"), "entries")
    assert first < 3 and total == 3
    data = struct_pb2.Value()
    data.list_value.values.extend([struct_pb2.Value(number_value=0)] * 170_000)
    for _ in range(3):
        stubs.events.Publish(
            ev.PublishRequest(event=ev.Event(type="zeros", correlation_id="zeros", data=data))
        )
    first, total = _all(
        stubs.events.ListEvents, ev.ListEventsRequest(filter=ev.EventFilter(types=["zeros"])), "events"
    )
    assert first < 3 and total == 3
    correlation = stubs.events.GetCorrelation(ev.GetCorrelationRequest(correlation_id="zeros"), timeout=10)
    assert 0 < len(correlation.nodes) < 3 and correlation.truncated


def test_a_page_of_agents_with_many_labels_stays_within_a_message(client: voltorch.Client) -> None:
    """An agent may carry 64 labels of 1024 characters (66 kB): a page of 100 such agents (6.6 MB) made
    ListAgents answer RESOURCE_EXHAUSTED 'Sent message larger than max'."""
    labels = {f"l{j}": "v" * 1024 for j in range(64)}
    for i in range(100):
        client.stubs.coordination.RegisterAgent(
            co.RegisterAgentRequest(agent_id=f"labelled-{i:03}", kind=co.AGENT_KIND_OFFLINE, labels=labels),
            timeout=10,
        )
    first, total = _all(client.stubs.coordination.ListAgents, co.ListAgentsRequest(), "agents")
    assert first < 100 and total >= 100
    assert sum(1 for a in client.coordination.list_agents() if a.id.startswith("labelled-")) == 100


def test_a_page_of_schedules_with_large_parameters_stays_within_a_message(echo_agent: VoltorchServer) -> None:
    """Six schedules whose parameters hold 900 kB made a 5.4 MB page: ListSchedules answered
    RESOURCE_EXHAUSTED 'Sent message larger than max'."""
    with grpc.insecure_channel(echo_agent.target) as channel:
        workflows = workflows_pb2_grpc.WorkflowServiceStub(channel)
        step = wf.StepSpec(id="s1", agent_task=wf.AgentTaskStep(agent_id="echo", task="{{p}}"))
        template = wf.WorkflowTemplate(name="ticking", parameters=[wf.ParameterSpec(name="p")], steps=[step])
        workflows.RegisterTemplate(wf.RegisterTemplateRequest(template=template), timeout=10)
        for i in range(6):
            schedule = wf.Schedule(id=f"big-{i}", template_name="ticking", cron="0 0 1 1 *", paused=True)
            schedule.parameters.update({"p": BIG})
            workflows.CreateSchedule(wf.CreateScheduleRequest(schedule=schedule), timeout=10)
        first, total = _all(workflows.ListSchedules, wf.ListSchedulesRequest(), "schedules")
        assert first < 6 and total == 6


def test_a_full_page_of_long_errors_stays_within_a_message(
    server: VoltorchServer, client: voltorch.Client
) -> None:
    """Errors keep 4 KiB of message (an agent's error may be that long): a page of 1000 made 4.4 MB and
    ListErrors answered RESOURCE_EXHAUSTED 'Sent message larger than max'."""
    for _ in range(1000):
        server.runtime.errors.record("workflows", "STEP_FAILED", "m" * 4096, details={"output": "x" * 200})
    request = orc.ListErrorsRequest(page_size=1000)
    first, total = _all(client.stubs.orchestrator.ListErrors, request, "errors")
    assert first < 1000 and total == 1000
