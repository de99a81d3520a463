"""The agent registry (persisted definitions, live status, statistics), the built-in team, remote worker
sessions at the engine level (re-dispatch, stale results, heartbeats) and recovery after a restart."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from voltorch_server.agents.base import AgentError, AgentTask, CancelSignal
from voltorch_server.agents.remote import (
    Assignment,
    CancelTaskMsg,
    HeartbeatMsg,
    TaskResultMsg,
    WorkerHello,
    WorkerSession,
)
from voltorch_server.components.coordination import CoordinationEngine, CoordinationRequest
from voltorch_server.components.events import EventFilter, EventLog
from voltorch_server.config import Config
from voltorch_server.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from voltorch_server.storage.stores import SqlCoordination, SqlEvents

BOTH_BACKENDS = True  # every test using `db` runs on SQLite and on PostgreSQL (tests/conftest.py)

WAIT = 10.0


def make_engine(db, **overrides) -> CoordinationEngine:
    cfg = Config(builtin_agents=False, **overrides)
    eng = CoordinationEngine(SqlCoordination(db), EventLog(SqlEvents(db)), cfg)
    eng.start()
    return eng


@pytest.fixture
def engine(db) -> Iterator[CoordinationEngine]:
    eng = make_engine(db)
    yield eng
    eng.stop()


def ok(task: AgentTask, cancel: CancelSignal) -> str:
    return "ok"


def assignment(session: WorkerSession) -> AgentTask:
    msg = session.next_message(WAIT)
    assert isinstance(msg, Assignment), msg
    return msg.task


def types(engine: CoordinationEngine, pattern: str) -> list:
    return engine.events.read_after(0, 10_000, EventFilter(types=(pattern,)))


# -- registry ----------------------------------------------------------------------------------------


def test_register_validate_replace_and_unregister(engine):
    a = engine.register_agent(
        "a1", kind="function", capabilities=["x", "y", "x"], max_concurrency=3, runtime=ok
    )
    assert (a.kind, a.capabilities, a.max_concurrency, a.status, a.success_rate) == (
        "function",
        ("x", "y"),
        3,
        "idle",
        1.0,
    )
    with pytest.raises(AlreadyExists):
        engine.register_agent("a1", kind="function", runtime=ok)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "robot"}, "kind"),
        ({"kind": "offline", "capabilities": ["bad cap"]}, "capabilities[0]"),
        ({"kind": "offline", "max_concurrency": 5000}, "max_concurrency"),
        ({"kind": "offline", "max_concurrency": -1}, "max_concurrency"),
        ({"kind": "function"}, "runtime"),
        ({"kind": "offline", "runtime": ok}, "runtime"),
        (
            {
                "kind": "llm",
                "llm": __import__("voltorch_server.agents.llm").agents.llm.LlmSettings(temperature=3),
            },
            "llm.temperature",
        ),
        ({"kind": "offline", "labels": {"k": "v" * 2000}}, "labels['k']"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidArgument) as exc:
            engine.register_agent("a2", **kwargs)
        assert exc.value.violations[0].field == field
    assert run_ok(engine, "a1")
    replaced = engine.register_agent("a1", kind="function", capabilities=["z"], runtime=ok, replace=True)
    assert replaced.capabilities == ("z",) and replaced.tasks_completed == 1  # statistics kept
    gone = engine.unregister_agent("a1")
    assert gone.id == "a1"
    with pytest.raises(NotFound):
        engine.get_agent("a1")
    with pytest.raises(NotFound):
        engine.unregister_agent("a1")
    assert [e.data["agent_id"] for e in types(engine, "agent.registered")] == ["a1"]
    assert [e.data["agent_id"] for e in types(engine, "agent.unregistered")] == ["a1"]
    assert [e.data["agent_id"] for e in types(engine, "agent.updated")] == ["a1"]


def run_ok(engine, agent_id: str) -> bool:
    c = engine.request(CoordinationRequest(task="t", source_agent_id=agent_id))
    return engine.wait(c.id, WAIT).status == "completed"


def test_update_capabilities_replace_add_remove(engine):
    engine.register_agent("a", kind="offline", capabilities=["x"])
    assert engine.update_capabilities("a", ["y"], "add").capabilities == ("x", "y")
    assert engine.update_capabilities("a", ["y"], "add").capabilities == ("x", "y")
    assert engine.update_capabilities("a", ["x", "nope"], "remove").capabilities == ("y",)
    assert engine.update_capabilities("a", ["p", "q"]).capabilities == ("p", "q")
    with pytest.raises(InvalidArgument):
        engine.update_capabilities("a", ["p"], "merge")
    with pytest.raises(NotFound):
        engine.update_capabilities("ghost", ["p"])
    # takes effect for the next selection
    c = engine.request(CoordinationRequest(task="t", required_capabilities=("q",)))
    assert engine.wait(c.id, WAIT).agent_ids == ("a",)


def test_list_agents_filters_and_pages(engine):
    for i in range(5):
        engine.register_agent(f"ag{i}", kind="offline", capabilities=["even" if i % 2 == 0 else "odd", "all"])
    engine.register_agent("rem", kind="remote", capabilities=["all"])
    page, token = engine.list_agents(page_size=4)
    assert [a.id for a in page] == ["ag0", "ag1", "ag2", "ag3"] and token
    rest, token2 = engine.list_agents(page_size=4, page_token=token)
    assert [a.id for a in rest] == ["ag4", "rem"] and token2 == ""
    assert [a.id for a in engine.list_agents(capabilities=["even", "all"])[0]] == ["ag0", "ag2", "ag4"]
    assert [a.id for a in engine.list_agents(status="offline")[0]] == ["rem"]
    assert [a.id for a in engine.list_agents(kind="remote")[0]] == ["rem"]
    with pytest.raises(InvalidArgument):
        engine.list_agents(status="sleepy")
    with pytest.raises(InvalidArgument):
        engine.list_agents(page_size=4, page_token=token, kind="offline")


def test_statistics_are_moving_averages_of_every_outcome_and_persist(db):
    eng = make_engine(db)

    def sometimes(task, cancel):
        if task.text == "fail":
            raise AgentError("failed on purpose", code="PURPOSE")
        return "fine"

    eng.register_agent("s", kind="function", runtime=sometimes)
    for text in ("ok", "fail", "ok", "ok"):
        eng.wait(eng.request(CoordinationRequest(task=text, source_agent_id="s")).id, WAIT)
    a = eng.get_agent("s")
    assert (a.tasks_completed, a.tasks_failed) == (3, 1)
    assert a.success_rate == 0.75 and a.error_rate == 0.25
    assert a.last_error is not None
    assert a.avg_latency > 0 and a.last_error.code == "PURPOSE" and a.last_seen_time
    eng.stop()
    eng2 = make_engine(db)
    b = eng2.get_agent("s")
    assert b.last_error is not None
    assert (b.tasks_completed, b.tasks_failed, b.success_rate, b.last_error.code) == (3, 1, 0.75, "PURPOSE")
    assert b.status == "offline"  # a function agent's runtime does not survive a new engine
    eng2.stop()


def test_repeated_failures_put_an_agent_in_error_and_selection_skips_it(engine):
    def broken(task, cancel):
        raise AgentError("always")

    engine.register_agent("broken", kind="function", capabilities=["w"], runtime=broken)
    engine.register_agent("fine", kind="function", capabilities=["w"], runtime=ok)
    for _ in range(5):
        engine.wait(engine.request(CoordinationRequest(task="t", source_agent_id="broken")).id, WAIT)
    assert engine.get_agent("broken").status == "error"
    for _ in range(3):
        c = engine.wait(engine.request(CoordinationRequest(task="t", required_capabilities=("w",))).id, WAIT)
        assert c.agent_ids == ("fine",)
        reasons = {cand.agent_id: cand.reason for cand in c.selection.candidates}
        assert "error" in reasons["broken"]


def test_unregister_busy_agent_needs_force_and_redispatches(engine):
    release = threading.Event()
    entered = threading.Event()

    def slow(task, cancel):
        entered.set()
        release.wait(WAIT)
        return "slow"

    engine.register_agent("busy", kind="function", capabilities=["w"], runtime=slow)
    c = engine.request(CoordinationRequest(task="t", required_capabilities=("w",)))
    assert entered.wait(WAIT)
    with pytest.raises(FailedPrecondition):
        engine.unregister_agent("busy")
    engine.register_agent("other", kind="function", capabilities=["w"], runtime=ok)
    engine.unregister_agent("busy", force=True)
    done = engine.wait(c.id, WAIT)
    release.set()
    assert done.status == "completed" and done.agent_ids == ("other",)
    assert done.results[0].attempts == 2
    assert len(types(engine, "coordination.task.redispatched")) == 1


def test_builtin_team_is_registered_once_offline_or_llm(db, monkeypatch):
    monkeypatch.delenv("VOLTORCH_TEST_OPENAI_KEY", raising=False)
    cfg: dict[str, Any] = {"builtin_agents": True, "openai_api_key_env": "VOLTORCH_TEST_OPENAI_KEY"}
    eng = CoordinationEngine(SqlCoordination(db), EventLog(SqlEvents(db)), Config(**cfg))
    eng.start()
    agents = {a.id: a for a in eng.list_agents()[0]}
    assert set(agents) == {"analyst", "planner", "coder", "tester", "writer", "reviewer"}
    assert {a.kind for a in agents.values()} == {"offline"}
    assert agents["analyst"].capabilities == ("analysis", "requirements")
    assert agents["coder"].capabilities == ("coding", "implementation")
    eng.stop()
    eng.start()  # restart: nothing registered twice
    eng.stop()
    monkeypatch.setenv("VOLTORCH_TEST_OPENAI_KEY", "sk-test")
    eng2 = CoordinationEngine(SqlCoordination(db), EventLog(SqlEvents(db)), Config(**cfg))
    eng2.start()
    agents = {a.id: a for a in eng2.list_agents()[0]}
    assert {a.kind for a in agents.values()} == {"llm"}
    assert agents["planner"].capabilities == ("planning",)
    eng2.stop()
    assert len(types(eng2, "agent.registered")) == 6
    assert len(types(eng2, "agent.updated")) == 6


# -- remote workers (engine level) ---------------------------------------------------------------------


def test_worker_session_runs_tasks_and_lost_tasks_are_redispatched_with_stale_results_ignored(engine):
    s1 = engine.connect_worker(WorkerHello(agent_id="r", capabilities=("remote",), max_concurrency=2))
    assert engine.get_agent("r").status == "idle" and engine.get_agent("r").kind == "remote"
    c = engine.request(CoordinationRequest(task="work", source_agent_id="r", correlation_id="corr-r"))
    t1 = assignment(s1)
    assert (t1.attempt, t1.text, t1.coordination_id, t1.correlation_id) == (1, "work", c.id, "corr-r")
    assert engine.get_agent("r").current_load == 1
    s1.close("connection reset", "disconnected")  # the worker vanished mid-task
    assert engine.get_agent("r").status == "offline"
    assert engine.get(c.id).status == "running"
    s2 = engine.connect_worker(WorkerHello(agent_id="r", capabilities=("remote",)))
    t2 = assignment(s2)
    assert t2.task_id == t1.task_id and t2.attempt == 2
    s2.receive(TaskResultMsg(t1.task_id, 1, output="stale"))  # superseded attempt: ignored
    assert engine.get(c.id).status == "running"
    s2.receive(TaskResultMsg(t2.task_id, 2, output="fresh"))
    done = engine.wait(c.id, WAIT)
    assert done.status == "completed" and done.output == "fresh" and done.results[0].attempts == 2
    s2.receive(TaskResultMsg(t2.task_id, 2, output="again"))  # repeated: ignored
    assert engine.get(c.id).output == "fresh"
    a = engine.get_agent("r")
    assert (a.tasks_completed, a.tasks_failed) == (1, 1)  # the lost attempt counted against it


def test_worker_results_with_errors_heartbeats_and_cancel(engine):
    s = engine.connect_worker(WorkerHello(agent_id="w", capabilities=("c",)))
    c = engine.request(CoordinationRequest(task="t", required_capabilities=("c",)))
    t = assignment(s)
    s.receive(
        TaskResultMsg(
            t.task_id, t.attempt, failed=True, error_code="BAD", error_message="nope", error_retryable=True
        )
    )
    done = engine.wait(c.id, WAIT)
    assert done.status == "failed" and (done.error.code, done.error.retryable) == ("BAD", True)
    # a heartbeat naming a task the server does not expect gets a CancelTask back
    s.receive(HeartbeatMsg(("coord_x:0",)))
    msg = s.next_message(WAIT)
    assert isinstance(msg, CancelTaskMsg) and msg.task_id == "coord_x:0"
    # cancelling a coordination sends CancelTask for its running task
    c2 = engine.request(CoordinationRequest(task="t2", source_agent_id="w"))
    t2 = assignment(s)
    engine.cancel(c2.id, "stop it")
    msg = s.next_message(WAIT)
    assert isinstance(msg, CancelTaskMsg) and (msg.task_id, msg.attempt) == (t2.task_id, t2.attempt)
    assert "stop it" in msg.reason
    assert engine.get_agent("w").current_load == 0


def test_a_silent_worker_is_marked_offline_and_its_task_goes_elsewhere(db):
    eng = make_engine(db, worker_heartbeat_interval=0.05, worker_heartbeat_timeout=0.2)
    try:
        quiet = eng.connect_worker(WorkerHello(agent_id="quiet", capabilities=("c",)))
        c = eng.request(CoordinationRequest(task="t", required_capabilities=("c",)))
        assignment(quiet)
        eng.register_agent("backup", kind="function", capabilities=["c"], runtime=ok)
        done = eng.wait(c.id, WAIT)
        assert done.status == "completed" and done.agent_ids == ("backup",)
        assert quiet.closed.is_set() and quiet.close_kind == "timeout"
        assert eng.get_agent("quiet").status == "offline"
        assert [e.data["agent_id"] for e in types(eng, "agent.disconnected")] == ["quiet"]
    finally:
        eng.stop()


def test_a_newer_connection_replaces_the_older_and_kind_mismatch_is_refused(engine):
    s1 = engine.connect_worker(WorkerHello(agent_id="dup", capabilities=("c",)))
    s2 = engine.connect_worker(WorkerHello(agent_id="dup", capabilities=("c", "d")))
    assert s1.closed.is_set() and s1.close_kind == "replaced" and not s2.closed.is_set()
    assert engine.get_agent("dup").capabilities == ("c", "d")
    assert engine.get_agent("dup").status == "idle"
    engine.register_agent("local", kind="offline")
    with pytest.raises(FailedPrecondition):
        engine.connect_worker(WorkerHello(agent_id="local"))
    with pytest.raises(InvalidArgument):
        engine.connect_worker(WorkerHello(agent_id="bad id"))
    anon = engine.connect_worker(WorkerHello(capabilities=("c",)))
    assert anon.agent_id.startswith("worker_")


# -- restart -------------------------------------------------------------------------------------------


def test_queued_and_running_coordinations_survive_a_restart(db):
    eng = make_engine(db)
    eng.register_agent("later", kind="remote", capabilities=["c"])  # pre-registered, offline
    queued = eng.request(CoordinationRequest(task="waiting", source_agent_id="later"))
    entered = threading.Event()

    def hang(task, cancel):
        entered.set()
        cancel.wait(WAIT)
        raise AgentError("abandoned")

    eng.register_agent("fn", kind="function", runtime=hang)
    running = eng.request(
        CoordinationRequest(task="in flight", source_agent_id="fn", target_agent_id="later")
    )
    assert entered.wait(WAIT)
    eng.stop()  # like a crash: nothing is finished

    eng2 = make_engine(db)
    try:
        assert eng2.get(queued.id).status == "queued"
        assert eng2.get(running.id).status == "running"
        eng2.register_agent("fn", kind="function", runtime=lambda t, c: f"fn:{t.attempt}", replace=True)
        s = eng2.connect_worker(WorkerHello(agent_id="later", capabilities=("c",)))
        seen = {}
        for _ in range(2):
            t = assignment(s)
            seen[t.text] = t
            s.receive(
                TaskResultMsg(t.task_id, t.attempt, output=f"later:{t.context.get('previous_output', '')}")
            )
        assert set(seen) == {"waiting", "in flight"}
        r = eng2.wait(running.id, WAIT)
        assert r.status == "completed"
        assert [x.output for x in r.results] == ["fn:2", "later:fn:2"]  # attempt numbers keep growing
        assert eng2.wait(queued.id, WAIT).status == "completed"
    finally:
        eng2.stop()


def test_a_deadline_that_passed_while_down_times_out_at_start(db):
    eng = make_engine(db)
    eng.register_agent("later", kind="remote")
    c = eng.request(CoordinationRequest(task="t", source_agent_id="later", timeout=0.05))
    eng.stop()
    eng2 = make_engine(db)
    try:
        assert eng2.wait(c.id, WAIT).status == "timed_out"
    finally:
        eng2.stop()
