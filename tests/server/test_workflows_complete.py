"""ExecuteCompleteWorkflow: with the built-in offline agents on a fresh server, and with OpenAI-compatible
agents (the real `openai` client against a local stub server on 127.0.0.1:0)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import voltorch
from openai_stub import StubLLM
from voltorch import RetryPolicy
from voltorch.v1 import state_pb2
from voltorch.wire import from_value
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config

REQUIREMENT = "Create a simple user authentication system with login and registration functionality"
WAIT = 30.0


def finished_record(client: voltorch.Client, execution_id: str) -> dict:
    """requirement.<id> once the run's end is recorded in it (it commits with the terminal status): follow
    the key's changes (from its first revision) until one holds a terminal status."""
    key = f"requirement.{execution_id}"
    changes = client.stubs.state.Watch(state_pb2.WatchRequest(key=key, start_revision=1), timeout=WAIT)
    try:
        for change in changes:
            record = from_value(change.kv.value)
            if record.get("status") in ("completed", "failed", "cancelled", "timed_out"):
                return record
    finally:
        changes.cancel()
    raise AssertionError(f"{key} never recorded the end of the run")


def test_complete_workflow_with_offline_agents(client):
    started = client.workflows.execute_complete(REQUIREMENT, request_id="auth-1")
    assert started.execution.template_name == "complete-workflow"
    e = client.workflows.wait(started.execution.id, timeout=WAIT)
    assert e.status == "completed", e.error
    assert [s.step_id for s in e.steps] == ["analyse", "generate_tasks", "execute_tasks", "review", "summary"]
    assert all(s.status == "completed" for s in e.steps)
    analysis = e.step("analyse").structured_output
    assert {"summary", "requirements", "components", "risks"} <= set(analysis)
    assert "offline" in analysis["generated_by"]
    tasks = e.step("generate_tasks").structured_output["tasks"]
    children = e.step("execute_tasks").children
    assert len(children) == len(tasks) >= 3
    by_cap: dict[str, set[str]] = {t["capability"]: set() for t in tasks}
    for t, child in zip(tasks, children, strict=True):
        assert child.status == "completed" and child.structured_output["task_id"] == t["id"]
        by_cap[t["capability"]].add(child.agent_id)
    assert (
        by_cap["coding"] == {"coder"}
        and by_cap["testing"] == {"tester"}
        and by_cap["documentation"] == {"writer"}
    )
    assert e.step("analyse").agent_id == "analyst" and e.step("generate_tasks").agent_id == "planner"
    review = e.step("review").structured_output
    assert {"approved", "findings", "score"} <= set(review)
    summary = e.result["summary"]
    assert summary.startswith("# Summary") and REQUIREMENT in summary

    # requirement.<id> state keys, as the seed's orchestrator keeps them
    record = finished_record(client, e.id)
    assert record["status"] == "completed" and record["requirement"] == REQUIREMENT
    assert {"analyst", "planner", "coder", "tester", "writer", "reviewer"} <= set(record["agents"])
    assert client.state.get(f"requirement.{e.id}.summary").value == summary
    assert client.state.get(f"requirement.{e.id}.tasks").value == tasks
    results = client.state.get(f"requirement.{e.id}.results").value
    assert [r["task_id"] for r in results] == [t["id"] for t in tasks] and results[0]["files"]
    assert client.state.get(f"requirement.{e.id}.review").value == review

    # every seed event type of a run is there, correlated by the execution id
    types = {ev.type for ev in client.workflows.watch(e.id, timeout=WAIT)}
    assert {
        "workflow.execution.started",
        "workflow.step.started",
        "workflow.step.completed",
        "workflow.execution.completed",
        "coordination.started",
        "coordination.completed",
    } <= types
    changed = {ev.data["key"] for ev in client.events.list("state.changed")}
    assert f"requirement.{e.id}" in changed and f"requirement.{e.id}.analysis" in changed

    again = client.workflows.execute_complete(REQUIREMENT, request_id="auth-1")
    assert again.existing and again.execution.id == e.id


def test_complete_workflow_options(client):
    e = client.workflows.execute_complete(
        REQUIREMENT, max_tasks=2, max_parallel=1, skip_review=True
    ).execution
    e = client.workflows.wait(e.id, timeout=WAIT)
    assert e.status == "completed"
    assert [s.step_id for s in e.steps] == ["analyse", "generate_tasks", "execute_tasks", "summary"]
    assert len(e.step("execute_tasks").children) == 2
    plan = e.step("generate_tasks").structured_output
    assert len(plan["tasks"]) == 2  # the planner itself honours max_tasks (nothing cut off afterwards)
    assert e.parameters["max_tasks"] == 2


# -- OpenAI-compatible agents --------------------------------------------------------------------------------


def llm_answer(prompt: str, *, broken_review: bool = False) -> str:
    if "senior software analyst" in prompt:
        return (
            'Here is the analysis:\n```json\n{"summary": "Auth system", "requirements": [{"id": "R1", '
            '"title": "Login", "description": "log in", "kind": "core"}], "components": ["api"], "risks": []}\n```'
        )
    if "technical lead" in prompt:
        return json.dumps(
            {
                "tasks": [
                    {
                        "id": "task-1",
                        "title": "Build login",
                        "description": "d",
                        "capability": "coding",
                        "depends_on": [],
                    },
                    {
                        "id": "task-2",
                        "title": "Test login",
                        "description": "d",
                        "capability": "testing",
                        "depends_on": ["task-1"],
                    },
                ]
            }
        )
    if "Carry out this task" in prompt:
        tid = "task-2" if "Test login" in prompt else "task-1"
        return json.dumps(
            {
                "task_id": tid,
                "deliverable": f"done {tid}",
                "files": [{"path": f"{tid}.py", "content": "x"}],
                "notes": [],
            }
        )
    if "code reviewer" in prompt:
        return (
            "Looks fine to me, ship it."
            if broken_review
            else 'Sure: {"approved": true, "score": 0.9, "findings": []}'
        )
    if "final report" in prompt:
        return json.dumps({"summary": "# Report\nAll good."})
    return "{}"


@pytest.fixture
def llm_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request
) -> Iterator[tuple[VoltorchServer, StubLLM]]:
    broken = getattr(request, "param", False)
    stub = StubLLM(lambda p: llm_answer(p, broken_review=broken))
    monkeypatch.setenv("VOLTORCH_TEST_LLM_KEY", "sk-test")
    cfg = Config(
        host="127.0.0.1",
        port=0,
        db=str(tmp_path / "llm.db"),
        shutdown_grace=1.0,
        openai_api_key_env="VOLTORCH_TEST_LLM_KEY",
        openai_base_url=stub.base_url,
        openai_model="stub-model",
        llm_prices="stub-model=1000/2000",  # USD per million tokens: 11 in + 7 out = $0.025 a call
    )
    srv = VoltorchServer(cfg).start()
    yield srv, stub
    srv.stop(grace=1.0)
    stub.close()


def test_complete_workflow_with_openai_compatible_agents(llm_server):
    srv, stub = llm_server
    with voltorch.Client(srv.target, timeout=10) as client:
        e = client.workflows.execute_complete(REQUIREMENT).execution
        e = client.workflows.wait(e.id, timeout=WAIT)
    assert e.status == "completed", e.error
    assert e.step("analyse").structured_output["summary"] == "Auth system"  # parsed from a fenced answer
    assert [c.structured_output["task_id"] for c in e.step("execute_tasks").children] == ["task-1", "task-2"]
    assert e.step("review").structured_output == {
        "approved": True,
        "score": 0.9,
        "findings": [],
    }  # amid prose
    assert e.result == {"summary": "# Report\nAll good."}
    assert any("JSON" in p and REQUIREMENT in p for p in stub.prompts)  # prompts ask for JSON
    assert len(stub.prompts) == 6
    assert (e.usage.llm_calls, e.usage.prompt_tokens, e.usage.completion_tokens) == (6, 66, 42)
    assert e.usage.cost == pytest.approx(6 * 0.025)
    assert e.step("analyse").usage.llm_calls == 1 and e.step("execute_tasks").usage.llm_calls == 2
    assert e.budget is None


def test_complete_workflow_budget_stops_before_the_call_beyond_it(llm_server):
    srv, stub = llm_server
    with voltorch.Client(srv.target, timeout=10) as client:
        e = client.workflows.execute_complete(REQUIREMENT, budget=voltorch.Budget(max_cost=0.05)).execution
        e = client.workflows.wait(e.id, timeout=WAIT)
        with pytest.raises(voltorch.InvalidArgumentError) as bad:
            client.workflows.execute_complete(REQUIREMENT, budget=voltorch.Budget(max_tokens=-1))
    assert e.status == "failed" and e.budget == voltorch.Budget(max_cost=0.05)
    assert e.error is not None and e.error.code == "BUDGET_EXCEEDED" and "max_cost=0.05" in e.error.message
    assert len(stub.prompts) == 2  # analyse and generate_tasks; their $0.05 left nothing for a third call
    assert e.step("execute_tasks").status == "cancelled" and e.usage.llm_calls == 2
    assert bad.value.fields == ["options.budget.max_tokens"]


@pytest.mark.parametrize("llm_server", [True], indirect=True)
def test_unparseable_llm_output_fails_the_step_clearly(llm_server):
    srv, stub = llm_server
    with voltorch.Client(srv.target, timeout=10) as client:
        e = client.workflows.execute_complete(
            REQUIREMENT, retry=RetryPolicy(max_attempts=2, initial_backoff=0.01)
        ).execution
        e = client.workflows.wait(e.id, timeout=WAIT)
        record = finished_record(client, e.id)
    assert e.status == "failed"
    review = e.step("review")
    assert review.status == "failed" and review.attempts == 2
    assert review.error is not None
    assert review.error.code == "INVALID_OUTPUT" and "did not return JSON" in review.error.message
    assert "Looks fine to me" in review.error.message
    assert e.step("summary").status == "cancelled"
    assert e.error is not None
    assert e.error.code == "INVALID_OUTPUT"
    assert record["status"] == "failed" and record["error"]["code"] == "INVALID_OUTPUT"


def test_complete_variants_are_validated_and_serialised_once_per_options(server, client):
    engine = server.runtime.workflows
    short = [
        client.workflows.execute_complete(f"{REQUIREMENT} {i}", max_tasks=2, skip_review=True).execution
        for i in range(3)
    ]
    default = client.workflows.execute_complete(REQUIREMENT).execution
    assert len(engine.complete_definitions) == 2  # one variant per options, not one per call
    stored = {engine.store.row(e.id)["definition"] for e in short}
    assert len(stored) == 1
    (definition,) = stored
    assert '"review"' not in definition  # each options' own variant
    assert '"review"' in engine.store.row(default.id)["definition"]
    for e in (*short, default):
        assert client.workflows.wait(e.id, timeout=WAIT).status == "completed"
