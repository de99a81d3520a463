"""LLM endpoints under load, through the real `openai` client against the local stub: the shared limiter
finds the endpoint's capacity, keeps priorities, restarts clean, and GetHealth / GetMetrics show it."""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import polling
import pytest
import voltorch
from openai_stub import StubLLM
from voltorch_server.agents.base import AgentTask, CancelSignal
from voltorch_server.agents.limiter import Limiters, LimitSettings
from voltorch_server.agents.llm import LlmAgent, LlmDefaults, LlmSettings, limit_settings
from voltorch_server.agents.llm_clients import InProcessCalls
from voltorch_server.agents.llm_process import ProcessCalls
from voltorch_server.app import VoltorchServer
from voltorch_server.components.coordination import CoordinationEngine, CoordinationRequest
from voltorch_server.components.events import EventLog
from voltorch_server.config import Config
from voltorch_server.priority import Priority
from voltorch_server.storage.stores import SqlCoordination, SqlEvents

KEY_ENV = "VOLTORCH_TEST_LLM_KEY"


def _llm_config(config: Config, monkeypatch: pytest.MonkeyPatch, **settings: Any) -> Config:
    """The suite's server config with the OpenAI key variable set (so LLM agents are made) and `settings`."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    return replace(config, shutdown_grace=1.0, openai_api_key_env=KEY_ENV, **settings)


@pytest.mark.parametrize("where", ["in-process", "child-process"])
def test_the_window_converges_near_the_endpoint_capacity_with_few_429s(where):
    """On the agents' threads and through the LLM call process (the server's default: a 429 reaches the
    limiter a pipe later)."""
    stub = StubLLM(latency=0.05, capacity=8, retry_after_ms=20)
    limiters = Limiters(LimitSettings(initial_window=2, max_in_flight=64))
    settings = LlmSettings(model="stub-model", base_url=stub.base_url, api_key_env=KEY_ENV)
    calls = ProcessCalls() if where == "child-process" else InProcessCalls()
    # Several agents on one endpoint share one limiter.
    agents = [
        LlmAgent(settings, LlmDefaults(max_retries=5), env={KEY_ENV: "sk-1"}, limiters=limiters, calls=calls)
        for _ in range(4)
    ]
    errors: list[Exception] = []

    def caller(i: int) -> None:
        for j in range(8):
            try:
                agents[i % 4].run(AgentTask(f"t{i}-{j}", "c", "hello"), CancelSignal())
            except Exception as exc:
                errors.append(exc)

    try:
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        (snap,) = limiters.snapshots()
    finally:
        stub.close()
        calls.close()
    assert not errors
    assert stub.served == 256
    assert stub.peak_in_flight >= 6  # found (about) the capacity ...
    assert stub.rejected <= 8  # ... with a few 429s (at most one window's overshoot), not a storm
    assert snap.throttled == stub.rejected
    assert 6 <= snap.window <= 9 and snap.in_flight == 0 and snap.queue_depth == 0


def test_a_cold_endpoint_takes_32_calls_at_once_by_default():
    """The default initial window: a burst starts at 32 calls and grows as they succeed (64 found a large
    endpoint's capacity a round trip sooner but met several times more 429s from a small one: bench/README's
    llm section); the calls beyond it wait at the limiter."""
    gate = threading.Event()
    stub = StubLLM(gate=gate)
    limiters = Limiters(limit_settings(Config()))
    settings = LlmSettings(model="stub-model", base_url=stub.base_url, api_key_env=KEY_ENV)
    agent = LlmAgent(settings, LlmDefaults(), env={KEY_ENV: "sk-1"}, limiters=limiters)
    outs: list[str] = []
    threads = [
        threading.Thread(
            target=lambda i=i: outs.append(agent.run(AgentTask(f"t{i}", "c", "hi"), CancelSignal()).output)
        )
        for i in range(80)
    ]
    try:
        for t in threads:
            t.start()
        assert stub.wait_for(lambda s: s.in_flight == 32)
        polling.until(lambda: limiters.snapshots()[0].queue_depth == 48, why=limiters.snapshots)
        assert stub.in_flight == 32
    finally:
        gate.set()
        for t in threads:
            t.join(30)
        stub.close()
    assert len(outs) == 80 and stub.rejected == 0


def test_priorities_hold_under_the_limiter(db, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-1")
    gate = threading.Event()
    stub = StubLLM(gate=gate)
    config = Config(builtin_agents=False, llm_max_in_flight=1, llm_initial_window=1)
    eng = CoordinationEngine(SqlCoordination(db), EventLog(SqlEvents(db)), config)
    eng.start()
    try:
        eng.register_agent(
            "gpt",
            kind="llm",
            capabilities=["analysis"],
            max_concurrency=50,  # the endpoint's limit (1) is what holds calls back, not the agent's
            llm=LlmSettings(model="stub-model", base_url=stub.base_url, api_key_env=KEY_ENV),
        )

        def ask(task: str, priority: Priority) -> str:
            return eng.request(
                CoordinationRequest(task=task, required_capabilities=("analysis",), priority=priority)
            ).id

        ids = [ask("first", Priority.NORMAL)]
        assert stub.wait_for(lambda s: s.in_flight == 1)
        (limiter,) = eng.limiters
        for i in range(4):
            ids.append(ask(f"low {i}", Priority.LOW))
        ids.append(ask("normal", Priority.NORMAL))
        ids.append(ask("critical", Priority.CRITICAL))
        # The other six wait for the endpoint's window in the engine's priority queue (holding no agent
        # thread), not at the agent: its own max_concurrency has room.
        assert eng.queue_depth == 6 and limiter.snapshot().queue_depth == 0
        gate.set()
        for cid in ids:
            assert eng.wait(cid, 20).status == "completed"
    finally:
        eng.stop()
        stub.close()
    order = [p.split("\n")[-1] for p in stub.prompts]
    assert order == ["first", "critical", "normal", "low 0", "low 1", "low 2", "low 3"]


@pytest.fixture
def llm_server(config: Config, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[VoltorchServer, StubLLM]]:
    stub = StubLLM(capacity=4, retry_after_ms=10, gate=threading.Event())
    cfg = _llm_config(
        config,
        monkeypatch,
        openai_base_url=stub.base_url,
        openai_model="stub-model",
        llm_initial_window=8,
        llm_backoff=0.5,
        ui_port=-1,  # the console too (its System page charts the endpoints)
    )
    srv = VoltorchServer(cfg).start()
    yield srv, stub
    srv.stop(grace=1.0)
    stub.gate.set()
    stub.close()


def _llm_details(client: voltorch.Client) -> tuple[str, dict[str, str]]:
    c = client.orchestrator.health(refresh=True).component("llm")
    return c.status, c.details


def test_health_and_metrics_show_the_endpoint_and_a_restart_keeps_no_stale_window(llm_server):
    srv, stub = llm_server
    with voltorch.Client(srv.target, timeout=10) as client:
        agents = {a.id: a for a in client.coordination.list_agents()}
        assert agents["analyst"].kind == "llm" and agents["analyst"].max_concurrency == 256  # not 4
        ids = [
            client.coordination.request(f"task {i}", required_capabilities=["analysis"]).id for i in range(12)
        ]
        # 8 calls go (the initial window), the stub holds 4 and turns the others away with a 429.
        assert stub.wait_for(lambda s: s.rejected >= 1)
        stub.gate.set()
        for cid in ids:
            assert client.coordination.wait(cid, 30).status == "completed"
        status, details = _llm_details(client)
        assert status == "HEALTHY"
        (key,) = [k for k in details if k.startswith("endpoint ")]
        assert "stub-model @ 127.0.0.1" in key and "sk-test" not in key
        assert f"429s={stub.rejected}" in details[key]
        window = re.search(r"window=([\d.]+)/256", details[key])
        assert window and float(window.group(1)) < 8  # the 429s cut the window
        m = client.orchestrator.metrics(["voltorch.llm.*"])
        assert m.value("voltorch.llm.throttled") == stub.rejected
        assert m.value("voltorch.llm.window") > 0 and m.value("voltorch.llm.in_flight") == 0

        client.orchestrator.restart_component("llm", "test")
        assert (
            client.coordination.run(
                "after restart", required_capabilities=["analysis"], wait_timeout=30
            ).status
            == "completed"
        )
        _, details = _llm_details(client)
        (value,) = [v for k, v in details.items() if k.startswith("endpoint ")]
        assert "window=8/256" in value and "in_flight=0" in value and "429s=0" in value


def test_the_console_charts_each_endpoint(llm_server):
    srv, stub = llm_server
    stub.gate.set()
    srv.runtime.watcher.collect_metrics()  # an interval before the endpoint exists: no points for it
    with voltorch.Client(srv.target, timeout=10) as client:
        for i in range(3):
            run = client.coordination.run(f"task {i}", required_capabilities=["analysis"], wait_timeout=30)
            assert run.status == "completed"
    srv.runtime.watcher.collect_metrics()
    with urllib.request.urlopen(srv.console.url + "api/metrics/llm", timeout=10) as r:
        body = json.load(r)
    (endpoint,) = body["endpoints"]
    assert "stub-model @ 127.0.0.1" in endpoint["endpoint"] and "sk-test" not in json.dumps(body)
    assert endpoint["calls"] == stub.served + stub.rejected and endpoint["in_flight"] == 0
    (point,) = endpoint["points"]
    assert point["window"] == endpoint["window"] > 0 and point["in_flight"] == point["queue_depth"] == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_health_reports_the_endpoint_degraded_after_consecutive_connection_errors(config, monkeypatch):
    cfg = _llm_config(config, monkeypatch, builtin_agents=False, llm_max_retries=0)
    srv = VoltorchServer(cfg).start()
    try:
        with voltorch.Client(srv.target, timeout=10) as client:
            client.coordination.register_agent(
                "gpt",
                kind="llm",
                capabilities=["analysis"],
                llm=voltorch.LlmSettings(model="m", base_url=f"http://127.0.0.1:{_closed_port()}/v1"),
            )
            for i in range(4):
                c = client.coordination.run(f"t{i}", required_capabilities=["analysis"], wait_timeout=30)
                assert c.status == "failed"
            assert _llm_details(client)[0] == "HEALTHY"  # a few failures are not yet a pattern
            client.coordination.run("t4", required_capabilities=["analysis"], wait_timeout=30)
            health = client.orchestrator.health(refresh=True)
            llm = health.component("llm")
            assert llm.status == "DEGRADED" and health.status == "DEGRADED"
            assert "5 consecutive failed calls" in llm.message and "Connection error" in llm.message
    finally:
        srv.stop(grace=1.0)


def test_a_call_waiting_when_the_limiters_reset_goes_to_the_endpoints_new_limiter():
    gate = threading.Event()
    stub = StubLLM(gate=gate)
    limiters = Limiters(LimitSettings(initial_window=1, max_in_flight=1))
    settings = LlmSettings(model="stub-model", base_url=stub.base_url, api_key_env=KEY_ENV)
    agent = LlmAgent(settings, LlmDefaults(max_retries=0), env={KEY_ENV: "sk-1"}, limiters=limiters)
    outputs: list[str] = []

    def call(i: int) -> None:
        outputs.append(agent.run(AgentTask(f"t{i}", "c", f"call {i}"), CancelSignal()).output)

    threads = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(2)]
    try:
        for t in threads:
            t.start()
        assert stub.wait_for(lambda s: s.in_flight == 1)
        (old,) = limiters
        waited = threading.Event()
        for _ in range(500):
            if old.snapshot().queue_depth == 1:
                break
            waited.wait(0.01)
        assert old.snapshot().queue_depth == 1
        limiters.reset()  # the waiting call moves to the fresh limiter, whose window is free
        assert stub.wait_for(lambda s: s.in_flight == 2)
        gate.set()
        for t in threads:
            t.join(10)
    finally:
        gate.set()
        stub.close()
    assert outputs == ["default", "default"]


def test_executions_waiting_on_the_model_do_not_keep_others_queued_while_the_endpoint_has_room(
    config, monkeypatch
):
    gate = threading.Event()
    stub = StubLLM(gate=gate)
    cfg = _llm_config(
        config,
        monkeypatch,
        openai_base_url=stub.base_url,
        openai_model="stub-model",
        workflow_concurrency=2,
        llm_initial_window=4,
        llm_max_in_flight=4,
    )
    srv = VoltorchServer(cfg).start()
    try:
        with voltorch.Client(srv.target, timeout=10) as client:
            client.workflows.execute_complete("warm-up")  # the endpoint's limiter exists from here
            assert stub.wait_for(lambda s: s.in_flight == 1)
            for i in range(7):
                client.workflows.execute_complete(f"requirement {i}")
            # 2 slots of workflow_concurrency, but the endpoint takes 4: 2 x 4 executions run, and the
            # endpoint is kept full (4 calls in flight, the other 4 waiting for it by priority).
            assert stub.wait_for(lambda s: s.in_flight == 4)
            running, _ = client.workflows.list_page(status="running", page_size=100)
            queued, _ = client.workflows.list_page(status="queued", page_size=100)
            assert len(running) == 8 and not queued
    finally:
        gate.set()
        srv.stop(grace=1.0)
        stub.close()
