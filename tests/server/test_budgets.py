"""Budgets and usage: each execution counts tokens in/out, cost and model calls per step and in total;
a budget reached mid-fan-out fails the run (BUDGET_EXCEEDED) before the next model call."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import voltorch
from openai_stub import StubLLM
from voltorch_server.agents.base import AgentTask, CancelSignal, TokenUsage
from voltorch_server.app import VoltorchServer
from voltorch_server.components.workflows.templates import Budget
from voltorch_server.config import Config, parse_prices
from voltorch_server.errors import ResourceExhausted

KEY_ENV = "VOLTORCH_TEST_LLM_KEY"
ITEMS = [{"id": f"t{i}", "title": f"Item {i}"} for i in range(5)]


def answer(prompt: str) -> str:
    return json.dumps({"items": ITEMS}) if "Plan" in prompt else "done"


@pytest.fixture
def llm_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[VoltorchServer, StubLLM]]:
    stub = StubLLM(answer)
    monkeypatch.setenv(KEY_ENV, "sk-test")
    cfg = Config(
        host="127.0.0.1",
        port=0,
        db=str(tmp_path / "b.db"),
        shutdown_grace=1.0,
        builtin_agents=False,
        llm_prices="stub-model=1000/2000",
    )
    srv = VoltorchServer(cfg).start()
    yield srv, stub
    srv.stop(grace=1.0)
    stub.close()


def template(budget: voltorch.Budget | None) -> voltorch.WorkflowTemplate:
    return voltorch.WorkflowTemplate(
        name="budgeted",
        budget=budget,
        steps=[
            voltorch.Step("plan", voltorch.AgentTask("Plan the work", agent_id="gpt", json_output=True)),
            voltorch.Step(
                "each",
                voltorch.FanOut(
                    "plan",
                    voltorch.AgentTask("Do {{item.title}}", agent_id="gpt"),
                    items_path="items",
                    max_parallel=1,
                ),
                depends_on=["plan"],
            ),
            voltorch.Step("report", voltorch.AgentTask("Report", agent_id="gpt"), depends_on=["each"]),
        ],
    )


def register_gpt(client: voltorch.Client, stub: StubLLM) -> None:
    """The LLM agent "gpt" (capability "general") on the stub, (re)defined."""
    client.coordination.register_agent(
        "gpt",
        kind="llm",
        capabilities=["general"],
        llm=voltorch.LlmSettings(model="stub-model", base_url=stub.base_url, api_key_env=KEY_ENV),
        replace=True,
    )


def run(client: voltorch.Client, stub: StubLLM, budget: voltorch.Budget | None) -> voltorch.Execution:
    register_gpt(client, stub)
    client.workflows.register_template(template(budget))
    started = client.workflows.start("budgeted")
    return client.workflows.wait(started.execution.id, timeout=30)


def test_usage_is_counted_per_step_and_in_total(llm_server):
    srv, stub = llm_server
    with voltorch.Client(srv.target, timeout=10) as client:
        e = run(client, stub, None)
        listed = next(iter(client.workflows.list()))
    assert e.status == "completed", e.error
    u = e.usage  # 7 calls of 11 tokens in, 7 out
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens, u.llm_calls) == (77, 49, 126, 7)
    assert u.cost == pytest.approx(7 * 0.025)
    each = e.step("each")
    assert each.usage.llm_calls == 5 and all(c.usage.llm_calls == 1 for c in each.children)
    assert e.step("plan").usage.cost == pytest.approx(0.025)
    assert listed.usage == e.usage  # kept with the execution, not only summed from its steps


def test_usage_survives_a_restart(llm_server):
    srv, stub = llm_server
    with voltorch.Client(srv.target, timeout=10) as client:
        e = run(client, stub, voltorch.Budget(max_tokens=10_000))
    srv.stop(grace=1.0)
    again = VoltorchServer(srv.config).start()
    try:
        with voltorch.Client(again.target, timeout=10) as client:
            back = client.workflows.get(e.id)
    finally:
        again.stop(grace=1.0)
    assert back.usage == e.usage and back.usage.llm_calls == 7
    assert back.step("each").usage == e.step("each").usage and back.budget == voltorch.Budget(
        max_tokens=10_000
    )


def test_a_budget_reached_mid_fan_out_stops_the_remaining_steps(llm_server):
    srv, stub = llm_server
    with voltorch.Client(srv.target, timeout=10) as client:
        e = run(client, stub, voltorch.Budget(max_llm_calls=3))
        events = [u for u in client.workflows.watch(e.id, timeout=10)]
    assert e.status == "failed"
    assert e.error is not None
    assert e.error.code == "BUDGET_EXCEEDED" and "max_llm_calls=3" in e.error.message
    assert len(stub.requests) == 3  # plan and two elements: no call beyond the budget
    kids = e.step("each").children
    assert [k.status for k in kids] == ["completed", "completed", "cancelled", "cancelled", "cancelled"]
    assert e.step("report").status == "cancelled"
    assert e.usage.llm_calls == 3 and e.usage.total_tokens == 54
    failed = next(u for u in events if u.type == "workflow.execution.failed")
    assert failed.data["budget"] == {"limit": "max_llm_calls", "allowed": "3", "used": "3"}
    assert e.budget == voltorch.Budget(max_llm_calls=3)


def test_token_and_cost_limits(llm_server):
    srv, stub = llm_server
    with voltorch.Client(srv.target, timeout=10) as client:
        e = run(client, stub, voltorch.Budget(max_tokens=40))
        assert e.error is not None
        assert e.error.code == "BUDGET_EXCEEDED" and "max_tokens=40" in e.error.message
        assert e.usage.total_tokens == 54  # the third call crossed it; nothing started after
        with pytest.raises(voltorch.InvalidArgumentError) as bad:
            client.workflows.register_template(template(voltorch.Budget(max_cost=-1)))
    assert bad.value.fields == ["template.budget.max_cost"]


def test_prices_and_limits_in_the_small():
    assert parse_prices(" gpt-4o-mini=0.15/0.60, local=0/0") == {
        "gpt-4o-mini": (0.15, 0.6),
        "local": (0.0, 0.0),
    }
    with pytest.raises(ValueError, match="model=in/out"):
        parse_prices("gpt-4o-mini=0.15")
    with pytest.raises(ValueError, match="llm_prices: 'x=1/-2' has a negative price"):
        Config().with_overrides(llm_prices="x=1/-2")
    from voltorch_server.components.workflows import enforce_budget

    enforce_budget(Budget(max_tokens=10), TokenUsage(total_tokens=9))
    enforce_budget(None, TokenUsage(total_tokens=10**9))
    with pytest.raises(ResourceExhausted) as exc:
        enforce_budget(Budget(max_cost=0.5), TokenUsage(cost=0.5))
    assert exc.value.reason == "BUDGET_EXCEEDED" and exc.value.metadata["limit"] == "max_cost"


def test_a_run_whose_last_call_reaches_the_limit_completes(llm_server):
    srv, stub = llm_server
    with voltorch.Client(srv.target, timeout=10) as client:
        e = run(client, stub, voltorch.Budget(max_llm_calls=7))  # exactly the 7 calls it makes
    assert e.status == "completed", e.error
    assert e.usage.llm_calls == 7 and e.step("report").status == "completed"


def test_a_step_still_running_when_the_budget_is_reached_is_cancelled(llm_server):
    """The README's word: nothing further starts and the steps still running are cancelled, their agent
    tasks too (the execution has ended: no result of theirs would be kept)."""
    srv, stub = llm_server
    told = threading.Event()

    def slow(task: AgentTask, cancel: CancelSignal) -> dict[str, str]:
        if cancel.wait(30):
            told.set()
        return {"text": "late"}

    srv.runtime.coordination.register_agent("slow", kind="function", capabilities=("slow",), runtime=slow)
    with voltorch.Client(srv.target, timeout=10) as client:
        register_gpt(client, stub)
        client.workflows.register_template(
            voltorch.WorkflowTemplate(
                name="budget-parallel",
                budget=voltorch.Budget(max_llm_calls=1),
                steps=[
                    voltorch.Step("slow", voltorch.AgentTask("wait", agent_id="slow")),
                    voltorch.Step("fast", voltorch.AgentTask("Answer", agent_id="gpt")),
                    voltorch.Step("after", voltorch.AgentTask("Report", agent_id="gpt"), depends_on=["fast"]),
                ],
            )
        )
        e = client.workflows.wait(client.workflows.start("budget-parallel").execution.id, timeout=30)
    assert e.status == "failed" and e.error is not None and e.error.code == "BUDGET_EXCEEDED"
    assert [e.step(s).status for s in ("slow", "fast", "after")] == ["cancelled", "completed", "cancelled"]
    assert told.wait(10)  # the running step's agent task was cancelled


def test_a_run_whose_last_call_reaches_the_limit_completes_past_a_branch_not_taken(llm_server):
    """The run's last model call reaches the limit; what follows only decides a branch that is not taken (a
    condition, the step it skips): no further call would be made, so the run completes, as it does when the
    call is the last step."""
    srv, stub = llm_server
    with voltorch.Client(srv.target, timeout=10) as client:
        register_gpt(client, stub)
        client.workflows.register_template(
            voltorch.WorkflowTemplate(
                name="branching",
                budget=voltorch.Budget(max_llm_calls=1),
                steps=[
                    voltorch.Step("ask", voltorch.AgentTask("Answer", agent_id="gpt")),
                    voltorch.Step(
                        "check",
                        voltorch.ConditionStep(
                            "ask", voltorch.Condition.contains("escalate"), then_steps=["escalate"]
                        ),
                        depends_on=["ask"],
                    ),
                    voltorch.Step(
                        "escalate", voltorch.AgentTask("Escalate", agent_id="gpt"), depends_on=["check"]
                    ),
                ],
            )
        )
        e = client.workflows.wait(client.workflows.start("branching").execution.id, timeout=30)
    assert e.status == "completed", e.error
    assert e.usage.llm_calls == 1 and e.step("escalate").status == "skipped"
