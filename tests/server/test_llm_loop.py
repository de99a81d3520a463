"""The LLM agents' event loop (agents/llm_loop.py): every call's HTTP on its one thread, through the real
`openai` client against the local stub; the agent's thread waits for it, cancels it, and gets its text."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from openai_stub import StubLLM, completion
from polling import until
from voltorch_server.agents.base import AgentError, AgentTask, CancelSignal
from voltorch_server.agents.llm import LlmAgent, LlmDefaults, LlmSettings
from voltorch_server.agents.llm_loop import LlmLoop
from voltorch_server.components.coordination import CoordinationEngine, CoordinationRequest
from voltorch_server.components.events import EventLog
from voltorch_server.config import Config
from voltorch_server.storage.stores import SqlCoordination, SqlEvents

KEY_ENV = "VOLTORCH_TEST_LLM_KEY"
WAIT = 10


@pytest.fixture
def stub() -> Iterator[StubLLM]:
    s = StubLLM()
    yield s
    if s.gate is not None:
        s.gate.set()
    s.close()


def _agent(stub: StubLLM, defaults: LlmDefaults | None = None, **settings) -> LlmAgent:
    return LlmAgent(
        LlmSettings(base_url=stub.base_url, api_key_env=KEY_ENV, **settings),
        defaults or LlmDefaults(model="stub-model", max_retries=2, timeout=5),
        env={KEY_ENV: "sk-test-123"},
    )


def _task(**kw) -> AgentTask:
    return AgentTask(task_id="c:0", coordination_id="c", text="Say hi", **kw)


def _loop_threads(loop: LlmLoop) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == loop.name]


def test_the_loop_runs_while_it_has_users_and_stops_with_the_last():
    loop = LlmLoop(name="voltorch-llm-loop-test-users")
    assert not loop.running and loop.tasks() == 0
    loop.attach()
    loop.attach()
    assert loop.submit(asyncio.sleep(0, result="ran")).result(WAIT) == "ran"
    assert len(_loop_threads(loop)) == 1  # two users, one thread
    loop.detach()
    assert loop.running
    loop.detach()
    assert not loop.running and _loop_threads(loop) == []
    with pytest.raises(RuntimeError, match="without attach"):
        loop.detach()
    with pytest.raises(RuntimeError, match="no user attached"):
        loop.submit(asyncio.sleep(0))
    loop.attach()  # a new user after the stop starts it again
    assert loop.submit(asyncio.sleep(0, result=1)).result(WAIT) == 1
    loop.detach()
    assert not loop.running


def test_stopping_the_loop_cancels_the_calls_still_running():
    loop = LlmLoop(name="voltorch-llm-loop-test-stop")
    loop.attach()
    forever = loop.submit(asyncio.Event().wait())
    until(lambda: loop.tasks() == 1, WAIT)
    loop.detach()
    assert forever.cancelled() and not loop.running


def test_the_agents_calls_run_on_the_loop_and_its_close_stops_the_loop(stub):
    defaults = LlmDefaults(model="stub-model", max_retries=0, timeout=5)
    a, b = _agent(stub, defaults), _agent(stub, defaults)
    assert not defaults.loop.running  # started by the first call, not by building an agent
    assert a.run(_task(), CancelSignal()).output == "default"
    assert b.run(_task(), CancelSignal()).output == "default"
    assert len(_loop_threads(defaults.loop)) == 1  # both agents' calls on the one loop
    a.close()
    assert defaults.loop.running  # b still uses it
    b.close()
    b.close()  # twice: nothing more to leave
    assert not defaults.loop.running and _loop_threads(defaults.loop) == []


def test_a_cancel_mid_stream_stops_the_loops_task(stub):
    """The task is cancelled after its first piece of text: the call stops reading (the stub holds the
    rest back), its task on the loop ends and the agent says CANCELLED."""
    stub.script.append((200, {}, completion("Hello there, streaming world")))
    stub.pace = threading.Semaphore(0)  # never released: the stub waits before its next piece
    cancel = CancelSignal()
    seen: list[str] = []

    def on_delta(text: str) -> None:
        seen.append(text)
        cancel.set("user")

    a = _agent(stub)
    with pytest.raises(AgentError) as exc:
        a.run(_task(on_delta=on_delta), cancel)
    assert exc.value.code == "CANCELLED" and seen == ["Hello th"]
    until(lambda: a.defaults.loop.tasks() == 0, WAIT)
    a.close()


def test_a_cancel_while_waiting_for_the_answer_stops_the_loops_task():
    gate = threading.Event()
    stub = StubLLM(gate=gate)
    try:
        a = _agent(stub)
        cancel = CancelSignal()
        errors: list[AgentError] = []

        def run() -> None:
            try:
                a.run(_task(), cancel)
            except AgentError as exc:
                errors.append(exc)

        t = threading.Thread(target=run)
        t.start()
        assert stub.wait_for(lambda s: s.in_flight == 1)
        until(lambda: a.defaults.loop.tasks() == 1, WAIT)
        cancel.set("user")
        t.join(WAIT)
        assert [e.code for e in errors] == ["CANCELLED"] and len(stub.requests) == 1
        until(lambda: a.defaults.loop.tasks() == 0, WAIT)
        a.close()
    finally:
        gate.set()
        stub.close()


def test_the_task_deadline_bounds_the_call_on_the_loop():
    """An endpoint that never answers: the attempt's timeout is what is left of the task's deadline (not
    the agent's 30 s per call), so the call ends with a timeout and leaves nothing on the loop."""
    gate = threading.Event()
    stub = StubLLM(gate=gate)
    try:
        a = _agent(stub, LlmDefaults(model="stub-model", max_retries=0, timeout=30))
        with pytest.raises(AgentError) as exc:
            a.run(_task(deadline=time.time() + 0.3), CancelSignal())
        assert exc.value.code == "LLM_UNAVAILABLE" and "APITimeoutError" in exc.value.message
        until(lambda: a.defaults.loop.tasks() == 0, WAIT)
        a.close()
    finally:
        gate.set()
        stub.close()


def test_a_429_is_retried_after_its_retry_after_with_each_attempt_on_the_loop(stub):
    stub.script += [
        (429, {"retry-after-ms": "50"}, {"error": {"message": "slow down", "type": "rate_limit_error"}}),
        (200, {}, completion("after the wait")),
    ]
    a = _agent(stub)
    assert a.run(_task(), CancelSignal()).output == "after the wait"
    assert len(stub.requests) == 2 and stub.times[1] - stub.times[0] >= 0.05
    assert a.defaults.loop.tasks() == 0
    a.close()


def test_many_concurrent_calls_complete_on_the_one_loop():
    gate = threading.Event()
    stub = StubLLM(gate=gate, keep_alive=True)
    n = 48
    try:
        a = _agent(stub)
        outs: list[str] = []
        live: list[str] = []
        threads = [
            threading.Thread(
                target=lambda: outs.append(a.run(_task(on_delta=live.append), CancelSignal()).output)
            )
            for _ in range(n)
        ]
        for t in threads:
            t.start()
        assert stub.wait_for(lambda s: s.in_flight == n)
        assert a.defaults.loop.tasks() == n and len(_loop_threads(a.defaults.loop)) == 1
        gate.set()
        for t in threads:
            t.join(WAIT)
        assert outs == ["default"] * n and "".join(live) == "default" * n and stub.served == n
        a.close()
        assert not a.defaults.loop.running
    finally:
        gate.set()
        stub.close()


def test_a_stopping_coordination_engine_leaves_no_loop_thread(stub, db, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-456")
    eng = CoordinationEngine(SqlCoordination(db), EventLog(SqlEvents(db)), Config(builtin_agents=False))
    eng.start()
    loop = eng.llm_defaults.loop
    try:
        eng.register_agent(
            "gpt",
            kind="llm",
            capabilities=["analysis"],
            llm=LlmSettings(model="stub-model", base_url=stub.base_url, api_key_env=KEY_ENV, timeout=5),
        )
        c = eng.wait(
            eng.request(CoordinationRequest(task="Analyse this", required_capabilities=("analysis",))).id,
            WAIT,
        )
        assert c.status == "completed" and loop.running
    finally:
        eng.stop()
    assert not loop.running and _loop_threads(loop) == []


def test_a_failing_text_listener_stops_the_call_on_the_loop(stub):
    """The listener runs on the agent's thread; when it raises, the call on the loop is cancelled (it
    stops reading) and the agent fails the attempt as before."""
    stub.script.append((200, {}, completion("Hello there, streaming world")))
    stub.pace = threading.Semaphore(0)  # the stub holds the rest back: only a cancel ends the call

    def on_delta(text: str) -> None:
        raise RuntimeError("listener broke")

    a = _agent(stub, LlmDefaults(model="stub-model", max_retries=0, timeout=30))
    with pytest.raises(AgentError) as exc:
        a.run(_task(on_delta=on_delta), CancelSignal())
    assert exc.value.code == "LLM_ERROR" and "listener broke" in exc.value.message
    until(lambda: a.defaults.loop.tasks() == 0, WAIT)
    a.close()
