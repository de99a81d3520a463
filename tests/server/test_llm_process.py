"""The LLM call process (agents/llm_process.py): what only a child process can do to a call. How a call
behaves through it (answers, errors, retries, live text) is test_agents_llm.py's, run both ways."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest
import voltorch
from openai_stub import StubLLM, complete_workflow_answer
from voltorch_server.agents.base import AgentError, AgentTask, CancelSignal
from voltorch_server.agents.llm import LlmAgent, LlmDefaults, LlmSettings
from voltorch_server.agents.llm_clients import CallRequest, InProcessCalls
from voltorch_server.agents.llm_process import LlmProcessError, ProcessCalls, describe_error, rebuild_error
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config

KEY_ENV = "VOLTORCH_TEST_LLM_KEY"
WAIT = 60.0


@pytest.fixture
def calls() -> Iterator[ProcessCalls]:
    c = ProcessCalls()
    yield c
    c.close()


def agent(stub: StubLLM, calls: ProcessCalls, retries: int = 2) -> LlmAgent:
    return LlmAgent(
        LlmSettings(base_url=stub.base_url, api_key_env=KEY_ENV),
        LlmDefaults(model="stub-model", max_retries=retries, timeout=10),
        env={KEY_ENV: "sk-test-123"},
        calls=calls,
    )


def task(**kw) -> AgentTask:
    return AgentTask(task_id="c:0", coordination_id="c", text="Say hi", **kw)


def request(stub: StubLLM) -> CallRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    return CallRequest("sk-test-123", stub.base_url, body, 10.0, "req-1", final=True)


def child(calls: ProcessCalls):
    running = calls._child
    assert running is not None
    return running


def test_an_agent_with_a_key_starts_the_child_before_its_first_call(calls):
    stub = StubLLM()
    try:
        a = agent(stub, calls)
        assert (
            calls.started == 1 and child(calls).proc.poll() is None and child(calls).proc.pid != os.getpid()
        )
        assert a.run(task(), CancelSignal()).output == "default"
        assert calls.started == 1  # the same child serves every call
        LlmAgent(LlmSettings(api_key_env="VOLTORCH_UNSET_KEY"), env={}, calls=calls)
        assert calls.started == 1
    finally:
        stub.close()


def test_a_child_that_dies_mid_call_fails_the_call_and_the_retry_runs_in_a_new_one(calls):
    gate = threading.Event()
    stub = StubLLM(gate=gate)
    try:
        a = agent(stub, calls)
        first = child(calls)
        outs: list[str] = []
        runner = threading.Thread(target=lambda: outs.append(a.run(task(), CancelSignal()).output))
        runner.start()
        assert stub.wait_for(lambda s: s.in_flight == 1)
        gate.set()  # the retry is answered at once; the first call's answer goes to a dead child
        first.proc.kill()
        runner.join(WAIT)
        assert outs == ["default"]
        assert first.gone and calls.started == 2 and child(calls) is not first
    finally:
        gate.set()
        stub.close()


def test_cancel_stops_the_wait_at_once_and_the_child_drops_the_call(calls):
    gate = threading.Event()
    stub = StubLLM(gate=gate)
    try:
        a = agent(stub, calls)
        cancel = CancelSignal()
        errors: list[AgentError] = []

        def run() -> None:
            try:
                a.run(task(), cancel)
            except AgentError as exc:
                errors.append(exc)

        runner = threading.Thread(target=run)
        runner.start()
        assert stub.wait_for(lambda s: s.in_flight == 1)
        cancel.set("stopped by the test")
        runner.join(WAIT)  # the stub still holds the call: only the cancel could end the wait
        assert [e.code for e in errors] == ["CANCELLED"] and "stopped by the test" in errors[0].message
        assert stub.in_flight == 1 and child(calls)._waiting == {}
        gate.set()
        assert stub.wait_for(lambda s: s.in_flight == 0)
        assert a.run(task(), CancelSignal()).output == "default"  # the child still serves
    finally:
        gate.set()
        stub.close()


def test_after_close_the_child_has_exited_and_calls_are_refused_as_connection_errors(calls):
    stub = StubLLM()
    try:
        agent(stub, calls)
        proc = child(calls).proc
        calls.close()
        assert proc.wait(WAIT) == 0
        with pytest.raises(openai.APIConnectionError, match="stopping"):
            calls.call(request(stub), task(), CancelSignal())
    finally:
        stub.close()


@pytest.mark.parametrize(
    "error",
    [
        openai.RateLimitError(
            "slow down",
            response=httpx2.Response(
                429,
                headers={"retry-after-ms": "250", "x-ratelimit-remaining-requests": "0", "server": "stub"},
                request=httpx2.Request("POST", "http://x/v1/chat/completions"),
            ),
            body={"message": "slow down"},
        ),
        openai.APITimeoutError(request=httpx2.Request("POST", "http://x")),
        openai.APIConnectionError(message="refused", request=httpx2.Request("POST", "http://x")),
        AgentError("the model refused: no", code="LLM_REFUSED", retryable=False),
        ValueError("Expecting value: line 1 column 1"),
        KeyError("odd"),
    ],
    ids=["status", "timeout", "connection", "agent", "value", "other"],
)
def test_errors_cross_the_pipe_as_the_openai_client_raised_them(error):
    rebuilt = rebuild_error(describe_error(error))
    if isinstance(error, KeyError):  # not one a call is known to raise: its type is named
        assert isinstance(rebuilt, LlmProcessError) and str(rebuilt) == "KeyError: 'odd'"
        return
    assert type(rebuilt) is type(error) and str(rebuilt) == str(error)
    if isinstance(error, openai.APIStatusError):
        assert isinstance(rebuilt, openai.APIStatusError)
        assert rebuilt.status_code == 429 and rebuilt.message == "slow down" and rebuilt.body == error.body
        # what the agent and the limiter read: Retry-After and the rate-limit headers, no others
        assert dict(rebuilt.response.headers) == {
            "retry-after-ms": "250",
            "x-ratelimit-remaining-requests": "0",
        }
    if isinstance(error, AgentError):
        assert isinstance(rebuilt, AgentError)
        assert (rebuilt.message, rebuilt.code, rebuilt.retryable) == (
            "the model refused: no",
            "LLM_REFUSED",
            False,
        )


def test_a_malformed_answer_keeps_its_code_and_the_endpoints_headers(calls):
    stub = StubLLM()
    try:
        sse = {"content-type": "text/event-stream"}
        stub.script.append((200, sse, b"data: {not json}\n\n"))
        with pytest.raises(AgentError) as exc:
            calls.call(request(stub), task(), CancelSignal())
        assert exc.value.code == "INVALID_OUTPUT" and "not JSON" in exc.value.message
        stub.script.append((200, {"x-ratelimit-remaining-requests": "7"}, b'{"object": "no choices"}'))
        answer = calls.call(request(stub), task(), CancelSignal())
        assert answer.reply is None and answer.error is not None and answer.error.code == "INVALID_OUTPUT"
        assert "no choices" in answer.error.message
        assert answer.headers == {"x-ratelimit-remaining-requests": "7"}
    finally:
        stub.close()


def _server(tmp_path: Path, stub: StubLLM, **config) -> VoltorchServer:
    cfg = Config(
        host="127.0.0.1",
        port=0,
        db=str(tmp_path / "llm.db"),
        shutdown_grace=1.0,
        openai_api_key_env=KEY_ENV,
        openai_base_url=stub.base_url,
        openai_model="stub-model",
        **config,
    )
    return VoltorchServer(cfg).start()


@pytest.mark.parametrize("in_process", [False, True], ids=["child-process", "in-process"])
def test_a_server_runs_its_llm_calls_where_llm_in_process_says(tmp_path, monkeypatch, in_process):
    stub = StubLLM(complete_workflow_answer)
    monkeypatch.setenv(KEY_ENV, "sk-test")
    srv = _server(tmp_path, stub, llm_in_process=in_process)
    try:
        calls = srv.runtime.llm_calls
        with voltorch.Client(srv.target, timeout=10) as client:
            e = client.workflows.execute_complete("Build a CLI calculator").execution
            e = client.workflows.wait(e.id, timeout=WAIT)
            llm = next(c for c in client.orchestrator.health(refresh=True).components if c.name == "llm")
        assert e.status == "completed", e.error
        assert e.usage.llm_calls == len(stub.prompts) == 6
        where = llm.details["calls"]
        assert where.startswith("in the server's process" if in_process else "LLM call process pid"), where
        if in_process:
            assert isinstance(calls, InProcessCalls)
        else:
            assert isinstance(calls, ProcessCalls) and calls.started == 1
            proc = child(calls).proc
    finally:
        srv.stop(grace=1.0)
        stub.close()
    if not in_process:
        assert proc.wait(WAIT) == 0  # the server's stop ends its child
