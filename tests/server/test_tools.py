"""Tool-calling agents: tools offered at registration (JSON schema), the function-calling loop with each
call a child coordination, played offline deterministically and against the local stub with scripted
tool calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import voltorch
from openai_stub import StubLLM, completion
from polling import until
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config

ROOT = Path(__file__).resolve().parents[2]
KEY_ENV = "VOLTORCH_TEST_LLM_KEY"
WAIT = 30.0
ADD = voltorch.ToolSpec(
    "add",
    "Add two numbers",
    {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}},
)
NOTE = voltorch.ToolSpec(
    "write_note", "Write a note", {"type": "object", "properties": {"topic": {"type": "string"}}}
)


def add(task: voltorch.WorkerTask) -> str:
    return str(task.context["arguments"]["a"] + task.context["arguments"]["b"])


@pytest.fixture
def srv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[VoltorchServer]:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    s = VoltorchServer(
        Config(host="127.0.0.1", port=0, db=str(tmp_path / "t.db"), builtin_agents=False)
    ).start()
    yield s
    s.stop(grace=1.0)


def _adding(stub: StubLLM) -> voltorch.LlmSettings:
    """Settings of an LLM agent on the stub that may call the worker's `add` tool."""
    return voltorch.LlmSettings(
        model="stub-model", base_url=stub.base_url, api_key_env=KEY_ENV, tools=["add"]
    )


def _register_assistant(client: voltorch.Client, stub: StubLLM) -> None:
    client.coordination.register_agent("assistant", kind="llm", capabilities=["assistant"], llm=_adding(stub))


def one_step(
    client: voltorch.Client, llm: voltorch.LlmSettings, context: dict | None = None
) -> voltorch.Execution:
    client.coordination.register_agent(
        "assistant", kind="llm", capabilities=["assistant"], llm=llm, replace=True
    )
    client.workflows.register_template(
        voltorch.WorkflowTemplate(
            name="tools",
            steps=[
                voltorch.Step(
                    "ask", voltorch.AgentTask("Sum a and b", agent_id="assistant", context=context or {})
                )
            ],
        )
    )
    return client.workflows.wait(client.workflows.start("tools").execution.id, timeout=WAIT)


def test_offline_agent_plays_the_protocol_with_a_worker_function_and_an_agent_capability(srv):
    with (
        voltorch.Client(srv.target, timeout=10) as client,
        voltorch.Worker(client, "calculator", ["math"], add, tools=[ADD]) as worker,
    ):
        assert worker.connected.wait(WAIT)
        notes = client.coordination.register_agent(
            "notes", kind="offline", capabilities=["documentation"], tools=[NOTE]
        )
        assert notes.tools == (NOTE,) and client.coordination.get_agent("calculator").tools == (ADD,)
        e = one_step(
            client,
            voltorch.LlmSettings(tools=["add", "write_note"], api_key_env="VOLTORCH_TEST_NO_KEY"),
            {"a": 2, "b": 40},
        )
        events = list(client.workflows.watch(e.id, timeout=WAIT))
        assert e.status == "completed", e.error
        step = e.step("ask")
        assert 'add({"a": 2, "b": 40}) -> 42' in step.output
        transcript = step.structured_output["transcript"]
        assert [(t["tool"], t["agent_id"]) for t in transcript] == [
            ("add", "calculator"),
            ("write_note", "notes"),
        ]
        assert transcript[0]["result"] == "42" and transcript[1]["arguments"] == {"topic": "Sum a and b"}
        for t in transcript:  # each call a child coordination of the step, in the execution's story
            child = client.coordination.get(t["coordination_id"])
            assert child.status == "completed" and child.correlation_id == e.correlation_id
            assert child.trace_id == e.trace_id  # in the execution's trace
        called = [u for u in events if u.type == "agent.tool.called"]
        assert [u.data["tool"] for u in called] == ["add", "write_note"]
        assert all(u.data["caller_agent_id"] == "assistant" and u.step_id == "ask" for u in called)
        children = {t["coordination_id"] for t in transcript}
        assert {u.data["coordination_id"] for u in events if u.type == "coordination.completed"} >= children


def test_llm_agent_runs_the_function_calling_loop_against_the_stub(srv, stub):
    stub.script += [
        (200, {}, completion(None, 20, 5, tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}])),
        (200, {}, completion("The sum is 3.", 30, 4)),
    ]
    with (
        voltorch.Client(srv.target, timeout=10) as client,
        voltorch.Worker(client, "calculator", ["math"], add, tools=[ADD]) as worker,
    ):
        assert worker.connected.wait(WAIT)
        e = one_step(client, _adding(stub))
    assert e.status == "completed", e.error
    step = e.step("ask")
    assert step.output == "The sum is 3."
    assert step.structured_output["answer"] == "The sum is 3."
    assert [(t["tool"], t["arguments"], t["result"]) for t in step.structured_output["transcript"]] == [
        ("add", {"a": 1, "b": 2}, "3")
    ]
    first, second = stub.requests
    assert first["tools"] == [
        {
            "type": "function",
            "function": {"name": "add", "description": "Add two numbers", "parameters": ADD.parameters},
        }
    ]
    assistant, tool = second["messages"][-2:]
    assert assistant["role"] == "assistant" and assistant["tool_calls"][0]["function"]["name"] == "add"
    assert tool == {"role": "tool", "tool_call_id": "call_0", "content": "3"}
    assert (step.usage.llm_calls, step.usage.prompt_tokens, step.usage.completion_tokens) == (2, 50, 9)


def test_the_loop_is_bounded_and_unknown_tools_fail_clearly(srv, stub):
    again = completion(None, tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 1}}])
    stub.script += [(200, {}, again)] * 3
    with (
        voltorch.Client(srv.target, timeout=10) as client,
        voltorch.Worker(client, "calculator", ["math"], add, tools=[ADD]) as worker,
    ):
        assert worker.connected.wait(WAIT)
        base = {"model": "stub-model", "base_url": stub.base_url, "api_key_env": KEY_ENV}
        looping = one_step(client, voltorch.LlmSettings(**base, tools=["add"], max_tool_iterations=2))
        missing = one_step(client, voltorch.LlmSettings(**base, tools=["nobody_offers_this"]))
        with pytest.raises(voltorch.InvalidArgumentError) as bad:
            client.coordination.register_agent("x", kind="offline", tools=[voltorch.ToolSpec("has space")])
        with pytest.raises(voltorch.InvalidArgumentError) as bad_schema:
            client.coordination.register_agent(
                "y", kind="offline", tools=[voltorch.ToolSpec("ok", parameters={"type": "string"})]
            )
    assert looping.status == "failed" and looping.error is not None
    assert looping.error.code == "TOOL_LOOP_LIMIT"
    assert len(stub.requests) == 2  # two model turns, then the bound
    assert missing.error is not None
    assert missing.error.code == "TOOL_NOT_FOUND" and "nobody_offers_this" in missing.error.message
    assert bad.value.fields == ["tools[0].name"] and bad_schema.value.fields == ["tools[0].parameters"]


def test_tools_example_runs_offline(server):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "tools.py"), server.target],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "PYTHONPATH": str(ROOT / "sdk")},
    )
    assert out.returncode == 0, out.stderr + out.stdout
    assert "tool call: add" in out.stdout and "-> 42" in out.stdout
    assert json.dumps({"a": 2, "b": 40}) in out.stdout


def test_a_budget_is_held_between_the_model_calls_of_one_tool_loop(srv, stub):
    stub.script += [
        (200, {}, completion(None, tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 1}}]))
    ] * 3
    with (
        voltorch.Client(srv.target, timeout=10) as client,
        voltorch.Worker(client, "calculator", ["math"], add, tools=[ADD]) as worker,
    ):
        assert worker.connected.wait(WAIT)
        _register_assistant(client, stub)
        client.workflows.register_template(
            voltorch.WorkflowTemplate(
                name="tools-budget",
                budget=voltorch.Budget(max_llm_calls=1),
                steps=[voltorch.Step("ask", voltorch.AgentTask("Sum", agent_id="assistant"))],
            )
        )
        e = client.workflows.wait(client.workflows.start("tools-budget").execution.id, timeout=WAIT)
        failed = [u for u in client.workflows.watch(e.id, timeout=WAIT) if u.type == "workflow.step.failed"]
    assert e.status == "failed" and e.error is not None
    assert e.error.code == "BUDGET_EXCEEDED" and "max_llm_calls=1" in e.error.message
    assert len(stub.requests) == 1  # the tool ran; the second model call was never made
    assert e.usage.llm_calls == 1 and e.step("ask").usage.llm_calls == 1  # a failed loop's calls count too
    ask = e.step("ask")  # the step the budget stopped says so: failed, not cancelled without a reason
    assert ask.status == "failed" and ask.error is not None and ask.error.code == "BUDGET_EXCEEDED"
    assert [u.step_id for u in failed] == ["ask"]


def test_cancelling_the_execution_cancels_the_tool_call_in_flight(srv, stub):
    """The step's agent is cancelled with its execution; the tool call it waits on is a task of its own
    and must not run on (and hold the worker) after the run it served has ended."""
    stub.script += [(200, {}, completion(None, tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}]))]
    started, release = threading.Event(), threading.Event()

    def slow_add(task: voltorch.WorkerTask) -> str:
        started.set()
        release.wait(WAIT)
        return add(task)

    with (
        voltorch.Client(srv.target, timeout=10) as client,
        voltorch.Worker(client, "calculator", ["math"], slow_add, tools=[ADD]) as worker,
    ):
        try:
            assert worker.connected.wait(WAIT)
            _register_assistant(client, stub)
            client.workflows.register_template(
                voltorch.WorkflowTemplate(
                    name="tools-cancel",
                    steps=[voltorch.Step("ask", voltorch.AgentTask("Sum", agent_id="assistant"))],
                )
            )
            eid = client.workflows.start("tools-cancel").execution.id
            assert started.wait(WAIT)
            (called,) = until(lambda: list(client.events.list(types="agent.tool.called")))
            assert client.workflows.cancel(eid).status == "cancelled"
            tool_call = called.data["coordination_id"]
            until(
                lambda: client.coordination.get(tool_call).status == "cancelled",
                timeout=10,
                why=lambda: client.coordination.get(tool_call).status,
            )
        finally:
            release.set()
