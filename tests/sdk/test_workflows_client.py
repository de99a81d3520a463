"""client.workflows: dataclasses in and out (never protos), iterators, typed errors."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
import voltorch
from voltorch import (
    AgentTask,
    Condition,
    ConditionStep,
    CoordinationStep,
    Execution,
    FanOut,
    ParameterSpec,
    RetryPolicy,
    StartResult,
    Step,
    WorkflowEvent,
    WorkflowTemplate,
)
from voltorch.errors import DeadlineExceededError, InvalidArgumentError
from voltorch.wire import template_from_pb, template_pb


def test_templates_convert_both_ways_without_loss():
    t = WorkflowTemplate(
        name="conv",
        description="d",
        category="c",
        parameters=(
            ParameterSpec("a", "list", default=[1], max=3),
            ParameterSpec("b", "boolean", required=True),
        ),
        default_retry=RetryPolicy(2, 0.25, 2.0, 4.0, ("X",)),
        timeout=30.0,
        labels={"k": "v"},
        steps=(
            Step(
                "s1", AgentTask("t", ("cap",), context={"x": 1}, json_output=True, fallback_to_any_agent=True)
            ),
            Step(
                "s2", CoordinationStep("t", "parallel", agent_ids=("a", "b")), depends_on=("s1",), timeout=3.0
            ),
            Step("s3", ConditionStep("s1", Condition.contains("yes"), ("s4",), ()), depends_on=("s1",)),
            Step(
                "s4",
                FanOut("s1", AgentTask("{{item}}", agent_id="w"), "items", 2, 10, True, True),
                allow_failure=True,
            ),
        ),
    )
    back = template_from_pb(template_pb(t))
    assert tuple(back.steps) == t.steps
    assert tuple(back.parameters) == t.parameters
    assert (back.default_retry, back.timeout, back.labels) == (t.default_retry, 30.0, {"k": "v"})


@pytest.mark.parametrize(
    ("template", "error"),
    [
        (
            WorkflowTemplate(
                "x", [Step("a", AgentTask("t", ["c"]))], parameters=[ParameterSpec("p", "float")]
            ),
            ValueError,
        ),
        (WorkflowTemplate("x", [Step("a", CoordinationStep("t", "broadcast"))]), ValueError),
        (WorkflowTemplate("x", [Step("a", "not a kind")]), TypeError),  # type: ignore[arg-type]  # a wrong kind on purpose
    ],
)
def test_bad_definitions_are_caught_before_sending(template, error):
    with pytest.raises(error):
        template_pb(template)


def test_start_get_watch_list_return_dataclasses(client):
    started = client.workflows.execute_complete("Build a tiny todo list API", skip_review=True)
    assert isinstance(started, StartResult) and isinstance(started.execution, Execution)
    events = list(client.workflows.watch(started.execution.id, include_execution=True, timeout=30))
    assert all(isinstance(ev, WorkflowEvent) for ev in events)
    assert events[-1].type == "workflow.execution.completed" and events[-1].execution.done
    assert {ev.step_id for ev in events if ev.step_id} >= {"analyse", "generate_tasks", "summary"}
    e = client.workflows.get(started.execution.id)
    assert isinstance(e.create_time, datetime) and e.end_time >= e.start_time
    assert e.step("summary").status == "completed"
    with pytest.raises(KeyError):
        e.step("review")
    page, token = client.workflows.list_page(page_size=1)
    assert [x.id for x in page] == [e.id] and token == ""


def test_wait_with_a_timeout_raises_a_typed_error(client, server):
    release = threading.Event()
    server.runtime.coordination.register_agent(
        "slow",
        kind="function",
        capabilities=("slow",),
        runtime=lambda task, cancel: release.wait(30) and "ok",
    )
    client.workflows.register_template(WorkflowTemplate("slow", [Step("a", AgentTask("x", ["slow"]))]))
    eid = client.workflows.start("slow").execution.id
    with pytest.raises(DeadlineExceededError):
        client.workflows.wait(eid, timeout=0.3)
    release.set()
    assert client.workflows.wait(eid, timeout=30).status == "completed"


def test_errors_are_typed_with_field_violations(client):
    with pytest.raises(InvalidArgumentError) as err:
        client.workflows.start("complete-workflow", {"requirement": ""})
    assert err.value.fields == ["parameters.requirement"]
    with pytest.raises(voltorch.NotFoundError):
        client.workflows.get_template("missing")
