"""CoordinationEngine through its Python API: modes, selection, load, priority, cancel, timeouts, errors.

Agents are in-process function agents (a real implementation of the agent interface) whose behaviour
the tests control with events and gates; nothing in the engine is mocked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import fields
from typing import Any

import pytest
from voltorch_server.agents.base import AgentError, AgentTask, CancelSignal, Latch, ToolResult, ToolSpec
from voltorch_server.components.coordination import (
    Coordination,
    CoordinationCondition,
    CoordinationEngine,
    CoordinationRequest,
)
from voltorch_server.components.events import EventFilter, EventLog
from voltorch_server.config import Config
from voltorch_server.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from voltorch_server.priority import Priority
from voltorch_server.storage.stores import SqlCoordination, SqlEvents

BOTH_BACKENDS = True  # every test using `db` runs on SQLite and on PostgreSQL (tests/conftest.py)

WAIT = 10.0


@pytest.fixture
def events(db) -> EventLog:
    return EventLog(SqlEvents(db))


@pytest.fixture
def engine(db, events) -> Iterator[CoordinationEngine]:
    eng = CoordinationEngine(SqlCoordination(db), events, Config(builtin_agents=False))
    eng.start()
    yield eng
    eng.stop()


def echo(name: str) -> Callable[[AgentTask, CancelSignal], str]:
    """An agent that answers '<name>(<input>)' where input is the previous output or the task text."""

    def run(task: AgentTask, cancel: CancelSignal) -> str:
        return f"{name}({task.context.get('previous_output', task.text)})"

    return run


class Gate:
    """An agent body that blocks until released (or cancelled), recording what it saw."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)
        self.seen: list[str] = []
        self.cancelled: list[str] = []
        self.saw_cancel = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, task: AgentTask, cancel: CancelSignal) -> str:
        with self.lock:
            self.seen.append(task.text)
        self.entered.release()
        while not self.release.wait(0.01):  # bounded: watches release and cancel together
            if cancel.is_set():
                with self.lock:
                    self.cancelled.append(task.text)
                self.saw_cancel.set()
                raise AgentError("stopped", code="CANCELLED")
        return f"done:{task.text}"

    def wait_entered(self, n: int = 1) -> None:
        for _ in range(n):
            assert self.entered.acquire(timeout=WAIT), "agent was never called"


def run(engine: CoordinationEngine, **kw) -> Coordination:
    c = engine.request(CoordinationRequest(**kw))
    return engine.wait(c.id, WAIT)


def events_of(events: EventLog, *types: str, correlation_id: str = "") -> list:
    flt = EventFilter(types=types, correlation_id=correlation_id)
    return events.read_after(0, 10_000, flt)


# -- modes -----------------------------------------------------------------------------------------


def test_plain_task_runs_one_agent_selected_by_capability(engine):
    engine.register_agent("a", kind="function", capabilities=["x"], runtime=echo("a"))
    engine.register_agent("b", kind="function", capabilities=["y"], runtime=echo("b"))
    queued = engine.request(CoordinationRequest(task="t", required_capabilities=("y",)))
    assert queued.status == "queued"
    c = engine.wait(queued.id, WAIT)
    assert c.status == "completed"
    assert c.output == "b(t)"
    assert [r.agent_id for r in c.results] == ["b"]
    assert c.selection is not None and c.selection.selected_agent_ids == ("b",)
    assert c.target_agent_id == "b" and c.agent_ids == ("b",)


def test_the_selection_and_the_agents_task_are_the_constructors_objects(engine):
    """A dispatch builds its candidates and the agent's task without their frozen dataclass __init__ (~16
    objects a workflow step): they are the objects the constructors make, every field set, in order."""
    got: list[AgentTask] = []

    def keep(task: AgentTask, cancel: CancelSignal) -> str:
        got.append(task)
        return "ok"

    engine.register_agent("a", kind="function", capabilities=["x"], runtime=keep)
    engine.register_agent("b", kind="function", capabilities=["y"], runtime=echo("b"))
    c = run(engine, task="t", required_capabilities=("x",), context={"k": [1]})
    assert c.status == "completed" and c.selection is not None
    assert [x.reason for x in c.selection.candidates] == ["selected: best score", "missing capability: x"]
    made_objects: list[Any] = [*c.selection.candidates, got[0]]
    for made in made_objects:
        rebuilt = type(made)(**{f.name: getattr(made, f.name) for f in fields(made)})
        assert rebuilt == made and list(vars(rebuilt).items()) == list(vars(made).items())
    task = got[0]
    assert task.on_delta is not None and task.on_last_delta is not None and task.context == {"k": [1]}


def test_plain_task_with_source_runs_only_the_source(engine):
    engine.register_agent("a", kind="function", capabilities=["x"], runtime=echo("a"))
    engine.register_agent("b", kind="function", capabilities=["x"], runtime=echo("b"))
    c = run(engine, task="t", source_agent_id="a")
    assert c.status == "completed" and c.output == "a(t)" and c.agent_ids == ("a",)
    assert c.selection is None


def test_sequential_target_gets_the_source_output(engine):
    engine.register_agent("a", kind="function", runtime=echo("a"))
    engine.register_agent("b", kind="function", runtime=echo("b"))
    c = run(engine, task="t", source_agent_id="a", target_agent_id="b", context={"k": 1})
    assert c.status == "completed"
    assert [r.output for r in c.results] == ["a(t)", "b(a(t))"]
    assert c.output == "b(a(t))" and c.target_agent_id == "b"


def test_sequential_target_selected_by_capability_never_the_source(engine):
    engine.register_agent("a", kind="function", capabilities=["review"], runtime=echo("a"))
    engine.register_agent("b", kind="function", capabilities=["review"], runtime=echo("b"))
    c = run(engine, task="t", source_agent_id="a", required_capabilities=("review",))
    assert c.agent_ids == ("a", "b") and c.output == "b(a(t))"


def test_sequential_stops_when_the_source_fails(engine):
    def boom(task, cancel):
        raise AgentError("no good", code="BAD_INPUT", retryable=False)

    calls = []
    engine.register_agent("a", kind="function", runtime=boom)
    engine.register_agent("b", kind="function", runtime=lambda t, c: calls.append(t) or "x")
    c = run(engine, task="t", source_agent_id="a", target_agent_id="b")
    assert c.status == "failed"
    assert c.error is not None
    assert c.error.code == "BAD_INPUT" and not c.error.retryable
    assert calls == [] and len(c.results) == 1


def test_parallel_runs_all_and_reports_a_failed_branch(engine):
    started = threading.Barrier(3, timeout=WAIT)

    def branch(name: str, fail: bool = False):
        def fn(task, cancel):
            started.wait()  # all three run at the same time
            if fail:
                raise RuntimeError("kaboom")
            return {"by": name}

        return fn

    engine.register_agent("p1", kind="function", runtime=branch("p1"))
    engine.register_agent("p2", kind="function", runtime=branch("p2", fail=True))
    engine.register_agent("p3", kind="function", runtime=branch("p3"))
    c = run(engine, task="t", mode="parallel", agent_ids=("p1", "p2", "p3"))
    assert c.status == "completed"
    assert [r.agent_id for r in c.results] == ["p1", "p2", "p3"]
    assert c.results[1].error is not None
    assert c.results[1].error.code == "AGENT_CRASHED" and "kaboom" in c.results[1].error.message
    assert c.structured_output == [{"by": "p1"}, None, {"by": "p3"}]
    assert '"p1"' in c.output and '"p3"' in c.output


def test_parallel_fails_only_when_every_branch_fails(engine):
    def boom(task, cancel):
        raise AgentError("down", code="UPSTREAM", retryable=True)

    engine.register_agent("p1", kind="function", runtime=boom)
    engine.register_agent("p2", kind="function", runtime=boom)
    c = run(engine, task="t", mode="parallel", agent_ids=("p1", "p2"))
    assert c.status == "failed"
    assert c.error is not None
    assert c.error.code == "ALL_AGENTS_FAILED" and c.error.retryable
    assert "p1: UPSTREAM" in c.error.message and "p2: UPSTREAM" in c.error.message


def test_parallel_selection_picks_distinct_capable_agents(engine):
    for name in ("s1", "s2", "s3", "s4"):
        engine.register_agent(name, kind="function", capabilities=["scan"], runtime=echo(name))
    engine.register_agent("other", kind="function", capabilities=["else"], runtime=echo("other"))
    c = run(engine, task="t", mode="parallel", required_capabilities=("scan",), max_agents=3)
    assert c.status == "completed"
    assert len(c.agent_ids) == 3 and len(set(c.agent_ids)) == 3
    assert "other" not in c.agent_ids


@pytest.mark.parametrize(
    ("condition", "runs"),
    [
        (CoordinationCondition(contains="APPROVED"), True),
        (CoordinationCondition(contains="REJECTED"), False),
        (CoordinationCondition(regex=r"score=(0\.9|1)"), True),
        (CoordinationCondition(regex=r"score=0\.[0-5]"), False),
        (CoordinationCondition(json_path="review.approved", json_value=True), True),
        (CoordinationCondition(json_path="review.findings[1]", json_value="b"), True),
        (CoordinationCondition(json_path="review.score", json_value=0.9), True),
        (CoordinationCondition(json_path="review.missing", json_value=None), False),
        (CoordinationCondition(contains="APPROVED", negate=True), False),
    ],
)
def test_conditional_runs_the_target_only_when_the_condition_holds(engine, condition, runs):
    source_out = {
        "review": {"approved": True, "findings": ["a", "b"], "score": 0.9},
        "tag": "APPROVED score=0.9",
    }
    engine.register_agent("src", kind="function", runtime=lambda t, c: source_out)
    engine.register_agent("dst", kind="function", runtime=echo("dst"))
    c = run(
        engine,
        task="t",
        mode="conditional",
        source_agent_id="src",
        target_agent_id="dst",
        condition=condition,
    )
    assert c.status == "completed"
    assert len(c.results) == 2
    target = c.results[1]
    assert target.condition_result is runs
    assert target.skipped is (not runs)
    if runs:
        assert c.output.startswith("dst(")
    else:
        assert c.structured_output == source_out


def test_pipeline_feeds_each_output_to_the_next(engine):
    for name in ("a", "b", "c", "d"):
        engine.register_agent(name, kind="function", runtime=echo(name))
    c = run(engine, task="x", mode="pipeline", source_agent_id="a", agent_ids=("b", "c"), target_agent_id="d")
    assert c.status == "completed"
    assert c.output == "d(c(b(a(x))))"
    assert c.agent_ids == ("a", "b", "c", "d")
    assert [r.position for r in c.results] == [0, 1, 2, 3]


def test_pipeline_may_repeat_an_agent_and_stops_at_the_first_failure(engine):
    engine.register_agent("a", kind="function", runtime=echo("a"))
    c = run(engine, task="x", mode="pipeline", agent_ids=("a", "a"))
    assert c.output == "a(a(x))"

    def fail(task, cancel):
        raise AgentError("broken", code="E")

    engine.register_agent("f", kind="function", runtime=fail)
    c = run(engine, task="x", mode="pipeline", agent_ids=("a", "f", "a"))
    assert c.error is not None
    assert c.status == "failed" and c.error.code == "E" and len(c.results) == 2


# -- selection and load ----------------------------------------------------------------------------


def test_selection_prefers_the_higher_success_rate_and_explains_it(engine, events):
    def flaky(task, cancel):
        if task.text == "fail":
            raise AgentError("nope")
        return "ok"

    engine.register_agent("good", kind="function", capabilities=["w"], runtime=echo("good"))
    engine.register_agent("bad", kind="function", capabilities=["w"], runtime=flaky)
    assert run(engine, task="fail", source_agent_id="bad").status == "failed"
    assert engine.get_agent("bad").success_rate == 0.0
    assert engine.get_agent("bad").error_rate == 1.0
    c = run(engine, task="t", required_capabilities=("w",))
    assert c.agent_ids == ("good",)
    started = events_of(events, "coordination.started", correlation_id=c.correlation_id)
    assert len(started) == 1
    sel = started[0].data["selection"]
    assert sel["selected_agent_ids"] == ["good"]
    by_id = {cand["agent_id"]: cand for cand in sel["candidates"]}
    assert by_id["good"]["score"] > by_id["bad"]["score"]
    assert by_id["bad"]["success_rate"] == 0.0
    assert "selected good" in sel["explanation"]


def test_selection_spreads_load_and_skips_full_or_incapable_agents(engine):
    gate = Gate()
    for name in ("w1", "w2", "w3"):
        engine.register_agent(name, kind="function", capabilities=["work"], max_concurrency=10, runtime=gate)
    engine.register_agent("idle-but-incapable", kind="function", capabilities=["other"], runtime=gate)
    ids = [
        engine.request(CoordinationRequest(task=f"t{i}", required_capabilities=("work",))).id
        for i in range(6)
    ]
    gate.wait_entered(6)
    loads = {a.id: a.current_load for a in engine.list_agents(capabilities=("work",))[0]}
    assert loads == {"w1": 2, "w2": 2, "w3": 2}
    assert all(a.status == "busy" for a in engine.list_agents(capabilities=("work",))[0])
    gate.release.set()
    done = [engine.wait(i, WAIT) for i in ids]
    assert {c.status for c in done} == {"completed"}
    assert engine.get_agent("idle-but-incapable").tasks_completed == 0


def test_max_concurrency_is_never_exceeded_under_100_concurrent_requests(engine):
    limits = {"m1": 1, "m2": 2, "m3": 4}
    current = dict.fromkeys(limits, 0)
    peak = dict.fromkeys(limits, 0)
    lock = threading.Lock()
    release = threading.Event()

    def worker(name: str):
        def fn(task, cancel):
            with lock:
                current[name] += 1
                peak[name] = max(peak[name], current[name])
            release.wait(0.002)  # bounded: a tiny bit of work, so tasks overlap
            with lock:
                current[name] -= 1
            return name

        return fn

    for name, limit in limits.items():
        engine.register_agent(
            name, kind="function", capabilities=["job"], max_concurrency=limit, runtime=worker(name)
        )
    with ThreadPoolExecutor(20) as pool:
        ids = list(
            pool.map(
                lambda i: (
                    engine.request(CoordinationRequest(task=f"j{i}", required_capabilities=("job",))).id
                ),
                range(100),
            )
        )
    results = [engine.wait(i, 30) for i in ids]
    assert [c.status for c in results].count("completed") == 100
    assert all(peak[n] <= limits[n] for n in limits), peak
    assert all(peak[n] >= 1 for n in limits), peak
    assert sum(engine.get_agent(n).tasks_completed for n in limits) == 100
    assert all(engine.get_agent(n).current_load == 0 for n in limits)


def test_queued_when_all_capable_agents_are_busy(engine):
    gate = Gate()
    engine.register_agent("solo", kind="function", capabilities=["c"], runtime=gate)
    first = engine.request(CoordinationRequest(task="first", required_capabilities=("c",)))
    gate.wait_entered()
    second = engine.request(CoordinationRequest(task="second", required_capabilities=("c",)))
    assert engine.get(second.id).status == "queued"
    assert engine.get(second.id).queue_position == 1
    assert engine.get(first.id).status == "running"
    gate.release.set()
    assert engine.wait(second.id, WAIT).status == "completed"


def test_priority_order_critical_high_normal_low(engine):
    gate = Gate()
    engine.register_agent("solo", kind="function", capabilities=["c"], runtime=gate)
    blocker = engine.request(CoordinationRequest(task="blocker", source_agent_id="solo"))
    gate.wait_entered()
    order = [Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.CRITICAL, Priority.LOW]
    ids = [
        engine.request(CoordinationRequest(task=f"{p.name}-{i}", source_agent_id="solo", priority=p)).id
        for i, p in enumerate(order)
    ]
    assert [engine.get(i).queue_position for i in ids] == [4, 3, 2, 1, 5]
    gate.release.set()
    for i in [blocker.id, *ids]:
        assert engine.wait(i, WAIT).status == "completed"
    assert gate.seen == ["blocker", "CRITICAL-3", "HIGH-2", "NORMAL-1", "LOW-0", "LOW-4"]


def test_aging_lets_an_old_low_request_pass_a_new_high_one():
    from voltorch_server.components.coordination import AgingQueue

    q: AgingQueue[str] = AgingQueue(aging=30.0)
    q.push("low-old", Priority.LOW, enqueued=20.0)  # at t=100 it waited 80 s: 1 + 80/30 = 3.67 > 3
    q.push("high-new", Priority.HIGH, enqueued=100.0)
    q.push("critical-new", Priority.CRITICAL, enqueued=100.0)  # 4 > 3.67
    q.push("low-new", Priority.LOW, enqueued=100.0)
    assert list(q) == ["critical-new", "low-old", "high-new", "low-new"]
    assert q.remove("low-old") and not q.remove("low-old")
    assert q.pop() == "critical-new" and len(q) == 2


# -- cancel and timeouts ---------------------------------------------------------------------------


def test_cancel_a_running_coordination_stops_the_agent_and_frees_it(engine, events):
    gate = Gate()
    engine.register_agent("g", kind="function", runtime=gate)
    c = engine.request(CoordinationRequest(task="long", source_agent_id="g", correlation_id="corr-1"))
    gate.wait_entered()
    cancelled = engine.cancel(c.id, "user changed their mind")
    assert cancelled.status == "cancelled"
    assert cancelled.error.code == "CANCELLED" and "user changed their mind" in cancelled.error.message
    assert engine.get_agent("g").current_load == 0
    assert engine.wait(c.id, 0).status == "cancelled"
    assert gate.saw_cancel.wait(WAIT)  # the agent saw the cancel signal
    assert gate.cancelled == ["long"]
    c2 = engine.request(CoordinationRequest(task="next", source_agent_id="g"))
    gate.wait_entered()
    gate.release.set()
    assert engine.wait(c2.id, WAIT).status == "completed"
    # cancelling again returns it unchanged; a completed one cannot be cancelled
    assert engine.cancel(c.id).status == "cancelled"
    with pytest.raises(FailedPrecondition):
        engine.cancel(c2.id)
    evs = events_of(events, "coordination.cancelled", correlation_id="corr-1")
    assert len(evs) == 1 and "user changed their mind" in evs[0].data["error"]["message"]


def test_cancel_a_queued_coordination(engine):
    gate = Gate()
    engine.register_agent("g", kind="function", runtime=gate)
    busy = engine.request(CoordinationRequest(task="busy", source_agent_id="g"))
    gate.wait_entered()
    queued = engine.request(CoordinationRequest(task="waiting", source_agent_id="g"))
    assert engine.cancel(queued.id).status == "cancelled"
    gate.release.set()
    assert engine.wait(busy.id, WAIT).status == "completed"
    assert gate.seen == ["busy"]
    assert engine.queue_depth == 0
    with pytest.raises(NotFound):
        engine.cancel("coord_nope")


def test_timeout_while_running_and_while_queued(engine, events):
    gate = Gate()
    engine.register_agent("g", kind="function", runtime=gate)
    running = engine.request(CoordinationRequest(task="slow", source_agent_id="g", timeout=0.2))
    queued = engine.request(CoordinationRequest(task="never", source_agent_id="g", timeout=0.3))
    r = engine.wait(running.id, WAIT)
    assert r.status == "timed_out" and r.error.code == "TIMEOUT" and r.error.retryable
    assert r.results[0].error.code == "TIMEOUT"
    q = engine.wait(queued.id, WAIT)
    assert q.status in ("timed_out",)
    assert len(events_of(events, "coordination.timed_out")) == 2
    gate.release.set()
    assert engine.get_agent("g").tasks_failed >= 1  # a task that overran counts against the agent


# -- requests: validation and idempotency ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"task": ""}, InvalidArgument, "task"),
        ({"task": "   "}, InvalidArgument, "task"),
        ({"task": "t", "mode": "round-robin"}, InvalidArgument, "mode"),
        ({"task": "t", "source_agent_id": "ghost"}, NotFound, "source_agent_id"),
        ({"task": "t", "source_agent_id": "a", "target_agent_id": "ghost"}, NotFound, "target_agent_id"),
        ({"task": "t", "mode": "parallel", "agent_ids": ("a", "ghost")}, NotFound, "agent_ids[1]"),
        ({"task": "t", "source_agent_id": "bad id!"}, InvalidArgument, "source_agent_id"),
        ({"task": "t", "agent_ids": ("a",)}, InvalidArgument, "agent_ids"),
        (
            {"task": "t", "mode": "conditional", "source_agent_id": "a", "target_agent_id": "b"},
            InvalidArgument,
            "condition",
        ),
        (
            {
                "task": "t",
                "mode": "conditional",
                "target_agent_id": "b",
                "condition": CoordinationCondition(contains="x"),
            },
            InvalidArgument,
            "source_agent_id",
        ),
        (
            {
                "task": "t",
                "mode": "conditional",
                "source_agent_id": "a",
                "condition": CoordinationCondition(regex="("),
            },
            InvalidArgument,
            "condition.regex",
        ),
        (
            {
                "task": "t",
                "mode": "conditional",
                "source_agent_id": "a",
                "condition": CoordinationCondition(),
            },
            InvalidArgument,
            "condition",
        ),
        (
            {"task": "t", "source_agent_id": "a", "condition": CoordinationCondition(contains="x")},
            InvalidArgument,
            "condition",
        ),
        ({"task": "t", "mode": "parallel", "target_agent_id": "b"}, InvalidArgument, "target_agent_id"),
        ({"task": "t", "mode": "parallel", "agent_ids": ("a", "a")}, InvalidArgument, "agent_ids"),
        ({"task": "t", "mode": "pipeline", "agent_ids": ("a",)}, InvalidArgument, "agent_ids"),
        ({"task": "t", "source_agent_id": "a", "target_agent_id": "a"}, InvalidArgument, "target_agent_id"),
        (
            {"task": "t", "required_capabilities": ("no such cap",)},
            InvalidArgument,
            "required_capabilities[0]",
        ),
        ({"task": "t", "timeout": -1}, InvalidArgument, "timeout"),
        ({"task": "t", "timeout": 10 * 24 * 3600}, InvalidArgument, "timeout"),
        ({"task": "t", "priority": 9}, InvalidArgument, "priority"),
        ({"task": "t", "context": {"x": object()}}, InvalidArgument, "context"),
        ({"task": "t", "mode": "parallel", "max_agents": 99}, InvalidArgument, "max_agents"),
        ({"task": "x" * 100_001}, InvalidArgument, "task"),
    ],
)
def test_bad_requests_name_the_field_and_write_nothing(engine, events, kwargs, error, field):
    engine.register_agent("a", kind="function", runtime=echo("a"))
    engine.register_agent("b", kind="function", runtime=echo("b"))
    before = events.last_sequence()
    with pytest.raises(error) as exc:
        engine.request(CoordinationRequest(**kwargs))
    if error is InvalidArgument:
        assert exc.value.violations[0].field == field
    else:
        assert exc.value.metadata["field"] == field
    assert engine.list()[0] == []
    assert events.last_sequence() == before


def test_no_capable_agent_is_a_failed_precondition(engine):
    engine.register_agent("a", kind="function", capabilities=["x"], runtime=echo("a"))
    with pytest.raises(FailedPrecondition) as exc:
        engine.request(CoordinationRequest(task="t", required_capabilities=("quantum",)))
    assert exc.value.reason == "NO_CAPABLE_AGENT"
    with pytest.raises(FailedPrecondition):  # the only capable one is the source
        engine.request(CoordinationRequest(task="t", source_agent_id="a", required_capabilities=("x",)))


def test_the_agent_found_capable_last_time_is_asked_again_not_trusted(engine):
    """The plan asks first the agent it found capable last time: once that agent is gone or has lost the
    capability, the request is still checked against every agent."""
    engine.register_agent("a", kind="function", capabilities=["x"], runtime=echo("a"))
    engine.request(CoordinationRequest(task="t", required_capabilities=("x",)))
    engine.update_capabilities("a", ["y"])
    with pytest.raises(FailedPrecondition) as exc:
        engine.request(CoordinationRequest(task="t", required_capabilities=("x",)))
    assert exc.value.reason == "NO_CAPABLE_AGENT"
    engine.register_agent("b", kind="function", capabilities=["x"], runtime=echo("b"))
    engine.request(CoordinationRequest(task="t", required_capabilities=("x",)))
    engine.unregister_agent("b", force=True)
    with pytest.raises(FailedPrecondition):
        engine.request(CoordinationRequest(task="t", required_capabilities=("x",)))


def test_request_id_makes_requests_idempotent(engine):
    engine.register_agent("a", kind="function", runtime=echo("a"))
    req = CoordinationRequest(task="t", source_agent_id="a", request_id="req-1")
    first, existing = engine.submit(req)
    assert not existing
    second, existing = engine.submit(req)
    assert existing and second.id == first.id
    assert engine.wait(first.id, WAIT).status == "completed"
    assert engine.submit(req)[0].id == first.id
    with pytest.raises(AlreadyExists):
        engine.submit(CoordinationRequest(task="different", source_agent_id="a", request_id="req-1"))
    assert len(engine.list()[0]) == 1


def test_events_carry_the_correlation_id_and_come_once(engine, events):
    engine.register_agent("a", kind="function", runtime=echo("a"))
    engine.register_agent("b", kind="function", runtime=echo("b"))
    c = run(engine, task="t", source_agent_id="a", target_agent_id="b", correlation_id="wf-42")
    types = [e.type for e in events_of(events, "coordination.*", correlation_id="wf-42")]
    assert types == [
        "coordination.requested",
        "coordination.started",
        "coordination.task.started",
        "coordination.task.completed",
        "coordination.task.started",
        "coordination.task.completed",
        "coordination.completed",
    ]
    done = events_of(events, "coordination.completed", correlation_id="wf-42")[0]
    assert done.data["coordination_id"] == c.id and done.data["output"] == "b(a(t))"
    assert [e.data["agent_id"] for e in events_of(events, "agent.registered")] == ["a", "b"]


def test_a_finished_coordination_is_answered_once_committed_with_its_events(engine, events, monkeypatch):
    """The engine lock is released before COMMIT: in between, wait() and get() must not answer the end
    (a caller reading the events next would miss coordination.completed, and a failed COMMIT would have
    answered an end that never happened)."""
    gate = Gate()
    engine.register_agent("solo", kind="function", capabilities=["c"], runtime=gate)
    c = engine.request(CoordinationRequest(task="t", required_capabilities=("c",)))
    gate.wait_entered()
    real = engine.journal.db
    body_done, commit = threading.Event(), threading.Event()

    class CommitHeld:
        """The database, whose next transaction waits before its COMMIT (after the body: locks released)."""

        def __getattr__(self, name: str):
            return getattr(real, name)

        @contextmanager
        def write(self, **kw):
            with real.write(**kw) as tx:
                yield tx
                body_done.set()
                assert commit.wait(WAIT)

    monkeypatch.setattr(engine.journal, "db", CommitHeld())
    answers: list[Coordination] = []
    gate.release.set()
    assert body_done.wait(WAIT)  # the outcome's transaction has run, not committed
    waiter = threading.Thread(target=lambda: answers.append(engine.wait(c.id, WAIT)))
    getter = threading.Thread(target=lambda: answers.append(engine.get(c.id)))
    waiter.start()
    getter.start()
    try:
        waiter.join(0.3)  # bounded: neither may answer while the COMMIT is held
        assert (
            waiter.is_alive()
            and getter.is_alive()
            and answers == []
            and events_of(events, "coordination.completed") == []
        )
    finally:
        commit.set()
    waiter.join(WAIT)
    getter.join(WAIT)
    assert [a.status for a in answers] == ["completed", "completed"]
    assert [e.data["coordination_id"] for e in events_of(events, "coordination.completed")] == [c.id]


def test_list_filters_and_pages(engine):
    engine.register_agent("a", kind="function", runtime=echo("a"))
    engine.register_agent("b", kind="function", runtime=echo("b"))
    ids = [
        run(engine, task=f"t{i}", source_agent_id="a" if i % 2 else "b", correlation_id=f"c{i % 3}").id
        for i in range(7)
    ]
    page, token = engine.list(page_size=3)
    assert [c.id for c in page] == ids[::-1][:3] and token
    page2, _ = engine.list(page_size=3, page_token=token)
    assert [c.id for c in page2] == ids[::-1][3:6]
    assert {c.id for c in engine.list(agent_id="a")[0]} == {ids[i] for i in (1, 3, 5)}
    assert {c.id for c in engine.list(correlation_id="c0")[0]} == {ids[i] for i in (0, 3, 6)}
    assert len(engine.list(status="completed")[0]) == 7
    with pytest.raises(InvalidArgument):
        engine.list(page_size=3, page_token=token, status="failed")
    with pytest.raises(InvalidArgument):
        engine.list(status="weird")


# -- a caller's transaction that rolls back (prepare / submit_in) ------------------------------------


class _RolledBack(Exception):
    pass


def test_a_placement_whose_transaction_rolls_back_leaves_no_coordination_and_no_load(db, engine, events):
    """A caller places a coordination in its own transaction (a workflow step's), which then rolls back:
    the coordination its agent took in memory is withdrawn (the agent is free, nothing is queued, nobody
    knows the coordination), and the agent takes the next one."""
    engine.register_agent(
        "one", kind="function", capabilities=["one"], max_concurrency=1, runtime=echo("one")
    )
    prepared = engine.prepare(CoordinationRequest(task="never", required_capabilities=("one",)))
    with pytest.raises(_RolledBack), db.write() as tx:
        placed = engine.submit_in(tx, prepared)
        assert placed.written and engine.get_agent("one").current_load == 1  # given to the agent in memory
        raise _RolledBack
    assert engine.get_agent("one").current_load == 0
    assert engine.queue_depth == 0 and engine.active_count == 0
    with pytest.raises(NotFound):
        engine.get(prepared.id)
    assert engine.list()[0] == []
    assert all(e.data["coordination_id"] != prepared.id for e in events_of(events, "coordination.requested"))
    assert run(engine, task="next", required_capabilities=("one",)).output == "one(next)"


def test_a_rolled_back_placement_gives_back_an_older_coordination_its_dispatch_took(db, engine):
    """The placement's dispatch also gave the agent an older queued coordination: rolled back, that one is
    queued again as it was (not started, its place in the queue kept), the agent's load is as before, and
    it runs once the agent is free."""
    gate = Gate()
    engine.register_agent("one", kind="function", capabilities=["one"], max_concurrency=1, runtime=gate)
    first = engine.request(CoordinationRequest(task="first", required_capabilities=("one",)))
    gate.wait_entered()
    older = engine.request(CoordinationRequest(task="older", required_capabilities=("one",)))
    assert engine.get(older.id).status == "queued" and engine.queue_depth == 1
    prepared = engine.prepare(CoordinationRequest(task="new", required_capabilities=("one",)))
    agent = engine.agents["one"]
    # The engine lock held throughout (after the database's writer lock, in the engine's order): no
    # dispatch of the engine's own gives the room made here to the older coordination first.
    with pytest.raises(_RolledBack), db.write() as tx, engine.journal.lock:
        agent.max_concurrency = 2  # room for one more task, given by the placement's dispatch
        try:
            engine.submit_in(tx, prepared)
            taken = engine.get(older.id)
            assert taken.status == "running" and taken.agent_ids == ("one",)  # the older one went first
            assert engine.get(prepared.id).status == "queued" and agent.load == 2
            raise _RolledBack
        finally:
            agent.max_concurrency = 1
    assert engine.get_agent("one").current_load == 1  # the first coordination's task only
    assert engine.queue_depth == 1 and engine.active_count == 2
    again = engine.get(older.id)
    assert again.status == "queued" and again.queue_position == 1 and again.start_time is None
    assert again.agent_ids == ("",) and not again.results
    with pytest.raises(NotFound):
        engine.get(prepared.id)
    gate.release.set()
    assert engine.wait(first.id, WAIT).status == "completed"
    done = engine.wait(older.id, WAIT)
    assert done.status == "completed" and done.output == "done:older"
    assert gate.seen == ["first", "older"]


def _one_agent(engine: CoordinationEngine) -> list[str]:
    """Agent "one" (capability "one", one task at a time) answering 'done:<task>'; the tasks it was given."""
    seen: list[str] = []

    def body(task: AgentTask, cancel: CancelSignal) -> str:
        seen.append(task.text)
        return f"done:{task.text}"

    engine.register_agent("one", kind="function", capabilities=["one"], max_concurrency=1, runtime=body)
    return seen


def _place_inline(db, engine: CoordinationEngine, task: str) -> tuple[str, Any]:
    """A coordination placed in its caller's transaction and given at once to an in-process agent, as a
    workflow step's is: (its id, the inline task the caller runs in its own thread)."""
    prepared = engine.prepare(CoordinationRequest(task=task, required_capabilities=("one",)))
    with db.write() as tx:
        placed = engine.submit_in(tx, prepared)
    engine.run_after(placed.after)
    assert placed.inline is not None
    return prepared.id, placed.inline


def test_an_inline_outcome_whose_transaction_rolls_back_runs_again(db, engine):
    """An in-process agent's outcome recorded in its caller's transaction (`complete_in`: a workflow step's
    checkpoint) that then rolls back (the checkpoint failed, or was fenced): the coordination is not left
    finished in memory while the database has it running. It runs again, its outcome is written, and the
    agent's slot is free."""
    seen = _one_agent(engine)
    cid, inline = _place_inline(db, engine, "first")
    outcome = engine.run_inline(inline)
    assert outcome is not None
    with pytest.raises(_RolledBack), db.write() as tx:
        c, _after = engine.complete_in(tx, inline, outcome)
        assert c is not None and c.status == "completed"  # in memory, not yet committed
        raise _RolledBack
    done = engine.wait(cid, WAIT)
    assert done.status == "completed" and done.output == "done:first"
    assert seen == ["first", "first"]
    assert engine.store.row(cid)["status"] == "completed"
    assert engine.get_agent("one").current_load == 0
    assert run(engine, task="next", required_capabilities=("one",)).output == "done:next"


def test_a_rolled_back_inline_outcome_gives_back_the_coordination_its_dispatch_took(db, engine):
    """The outcome's dispatch gave the freed agent an older queued coordination: rolled back, that one is
    given back (it was never launched) and runs once the agent is free, as the first one runs again."""
    seen = _one_agent(engine)
    first, inline = _place_inline(db, engine, "first")
    queued = engine.request(CoordinationRequest(task="queued", required_capabilities=("one",)))
    assert engine.get(queued.id).status == "queued"  # the agent's one slot is the inline task's
    outcome = engine.run_inline(inline)
    assert outcome is not None
    with pytest.raises(_RolledBack), db.write() as tx:
        engine.complete_in(tx, inline, outcome)
        assert engine.get(queued.id).status == "running"  # the freed slot went to it, in memory
        raise _RolledBack
    assert engine.wait(queued.id, WAIT).output == "done:queued"
    assert engine.wait(first, WAIT).output == "done:first"
    assert sorted(seen) == ["first", "first", "queued"]
    assert engine.get_agent("one").current_load == 0


def test_a_rolled_back_inline_outcome_runs_again_when_loading_it_again_fails_at_first(
    db, engine, monkeypatch
):
    """The database that lost the outcome's transaction may still not answer when the coordination is loaded
    again (an outage): the load is tried again, and the coordination still runs (it is not left running
    in the database with nothing here to run it, its waiters and its step waiting for its timeout)."""
    _one_agent(engine)
    cid, inline = _place_inline(db, engine, "first")
    outcome = engine.run_inline(inline)
    assert outcome is not None
    refused = threading.Event()
    adopt = engine.store.adopt

    def down_once(tx: Any, owner: str, **kw: Any) -> Any:
        if kw.get("coordination_id") == cid and not refused.is_set():
            refused.set()
            raise _RolledBack("the database does not answer")
        return adopt(tx, owner, **kw)

    monkeypatch.setattr(engine.store, "adopt", down_once)
    with pytest.raises(_RolledBack), db.write() as tx:
        engine.complete_in(tx, inline, outcome)
        raise _RolledBack
    assert refused.wait(WAIT)
    done = engine.wait(cid, WAIT)
    assert done.status == "completed" and done.output == "done:first"


def test_an_agents_outcome_whose_write_fails_runs_again(db, engine, monkeypatch):
    """An agent's outcome recorded on its own (the agent ran on the pool) whose transaction fails (the database
    refused the write, or lost it): the coordination is not left finished in memory, answered to a waiter,
    while the database has it running with nothing here to run it. It is loaded again, runs again, and its
    outcome is written."""
    seen = _one_agent(engine)
    refused = threading.Event()
    update = engine.store.update

    def refuse_once(tx: Any, row: dict[str, Any], owner: str) -> bool:
        if row["status"] == "completed" and not refused.is_set():
            refused.set()
            raise _RolledBack("the database refused the write")
        return update(tx, row, owner)

    monkeypatch.setattr(engine.store, "update", refuse_once)
    cid = engine.request(CoordinationRequest(task="first", required_capabilities=("one",))).id
    assert refused.wait(WAIT)
    done = engine.wait(cid, WAIT)
    assert done.status == "completed" and done.output == "done:first"
    assert seen == ["first", "first"]
    assert engine.store.row(cid)["status"] == "completed"
    assert engine.get_agent("one").current_load == 0


def test_a_parallel_outcome_whose_write_fails_stops_the_other_branch_it_gives_out_again(
    db, engine, monkeypatch
):
    """One branch's outcome of a parallel coordination fails to be written: the coordination is loaded again
    and runs again, every branch anew. The attempt another branch's agent is still running is told to stop
    (its slot is freed for the new attempt): not left running unseen beside the new one, past the agent's
    max_concurrency, its outcome recorded by nobody."""
    started, arm, refused, first_ended = (threading.Event() for _ in range(4))
    stopped: list[bool] = []

    def slow(task: AgentTask, cancel: CancelSignal) -> str:
        if not started.is_set():
            started.set()
            stopped.append(cancel.wait(WAIT))
            first_ended.set()
        return "slow"

    def fast(task: AgentTask, cancel: CancelSignal) -> str:
        started.wait(WAIT)
        arm.set()
        return "fast"

    engine.register_agent("slow", kind="function", capabilities=["x"], max_concurrency=1, runtime=slow)
    engine.register_agent("fast", kind="function", capabilities=["x"], max_concurrency=1, runtime=fast)
    update = engine.store.update

    def refuse_once(tx: Any, row: dict[str, Any], owner: str) -> bool:
        if arm.is_set() and not refused.is_set():
            refused.set()
            raise _RolledBack("the database refused the write")
        return update(tx, row, owner)

    monkeypatch.setattr(engine.store, "update", refuse_once)
    cid = engine.request(CoordinationRequest(task="t", mode="parallel", agent_ids=("slow", "fast"))).id
    assert refused.wait(WAIT)
    done = engine.wait(cid, WAIT)
    assert done.status == "completed"
    assert first_ended.wait(WAIT + 1)
    assert stopped == [True]  # the first attempt was told to stop, not left running beside the new one


def test_a_rolled_back_placement_loads_again_an_older_coordination_its_dispatch_failed(db, engine):
    """The placement's dispatch failed an older queued coordination (the agent it names was gone from the
    engine then): rolled back, that one is not left failed in memory while the database has it queued. It
    is loaded again as the database has it and runs once its agent is free."""
    gate = Gate()
    engine.register_agent("two", kind="function", capabilities=["two"], max_concurrency=1, runtime=gate)
    _one_agent(engine)
    first = engine.request(CoordinationRequest(task="first", target_agent_id="two"))
    gate.wait_entered()
    older = engine.request(CoordinationRequest(task="older", target_agent_id="two"))
    assert engine.get(older.id).status == "queued"
    prepared = engine.prepare(CoordinationRequest(task="new", required_capabilities=("one",)))
    # The engine lock held throughout: nothing of the engine's own dispatches or reloads the older one
    # while its agent is away.
    with pytest.raises(_RolledBack), db.write() as tx, engine.journal.lock:
        two = engine.agents.pop("two")  # gone from the engine, as if unregistered, without a dispatch
        try:
            engine.submit_in(tx, prepared)
            failed = engine.runs.live[older.id]  # in memory (a read answers what was committed)
            assert failed.status == "failed" and failed.error is not None
            assert failed.error.code == "AGENT_UNREGISTERED"
        finally:
            engine.agents["two"] = two
        raise _RolledBack
    gate.release.set()
    assert engine.wait(first.id, WAIT).status == "completed"
    done = engine.wait(older.id, WAIT)
    assert done.status == "completed" and done.output == "done:older"
    assert gate.seen == ["first", "older"]
    with pytest.raises(NotFound):
        engine.get(prepared.id)


def test_a_rolled_back_dispatch_that_failed_a_running_coordination_stops_its_task_before_it_runs_again(
    db, engine
):
    """The placement's dispatch failed an older parallel coordination (one of its agents was gone from the
    engine then) while its other task ran on an agent: `finish` freed that agent's slot and meant to cancel
    the task after the commit. Rolled back, the coordination is loaded again and its task given out again:
    the first attempt is told to stop then, not left running beside the new one on the same agent."""
    two, three = Gate(), Gate()
    engine.register_agent("two", kind="function", capabilities=["two"], max_concurrency=1, runtime=two)
    engine.register_agent("three", kind="function", capabilities=["three"], max_concurrency=1, runtime=three)
    _one_agent(engine)
    blocker = engine.request(CoordinationRequest(task="blocker", target_agent_id="three"))
    three.wait_entered()
    par = engine.request(CoordinationRequest(task="par", mode="parallel", agent_ids=("two", "three")))
    two.wait_entered()  # its task on "two" runs; the one for "three" is queued
    prepared = engine.prepare(CoordinationRequest(task="new", required_capabilities=("one",)))
    with pytest.raises(_RolledBack), db.write() as tx, engine.journal.lock:
        gone = engine.agents.pop("three")  # gone from the engine, as if unregistered, without a dispatch
        try:
            engine.submit_in(tx, prepared)
            assert engine.runs.live[par.id].status == "failed"  # in memory only
        finally:
            engine.agents["three"] = gone
        raise _RolledBack
    assert two.saw_cancel.wait(WAIT), "the first attempt on 'two' was never told to stop"
    assert two.cancelled == ["par"]
    three.release.set()
    two.release.set()
    assert engine.wait(blocker.id, WAIT).status == "completed"
    done = engine.wait(par.id, WAIT)
    assert done.status == "completed" and done.output
    assert engine.get_agent("two").current_load == 0


def test_a_rolled_back_placement_its_own_dispatch_failed_is_never_answered_to_a_waiter_as_failed(db, engine):
    """The placement's dispatch failed the new coordination itself (its agent was gone from the engine
    then), and the transaction rolled back: a waiter that found it in memory meanwhile is not answered with
    that failure, which was never committed; it reads what the database has (nothing)."""
    engine.register_agent("two", kind="function", capabilities=["two"], runtime=echo("two"))
    _one_agent(engine)  # room for a dispatch to look at the queue
    prepared = engine.prepare(CoordinationRequest(task="new", target_agent_id="two"))
    waiting = threading.Event()

    class Watched(Latch):
        def wait(self, timeout: float | None = None) -> bool:
            waiting.set()
            return super().wait(timeout)

    answers: list[Any] = []

    def waiter() -> None:
        try:
            answers.append(engine.wait(prepared.id, WAIT))
        except NotFound as exc:
            answers.append(exc)

    thread = threading.Thread(target=waiter)
    with pytest.raises(_RolledBack), db.write() as tx:
        with engine.journal.lock:
            two = engine.agents.pop("two")  # gone from the engine, as if unregistered, without a dispatch
            try:
                engine.submit_in(tx, prepared)
            finally:
                engine.agents["two"] = two
            new = engine.runs.live[prepared.id]
            assert new.status == "failed"  # in memory only
            new.done = Watched()
        thread.start()
        assert waiting.wait(WAIT)  # the waiter waits for the commit
        raise _RolledBack
    thread.join(WAIT)
    assert len(answers) == 1 and isinstance(answers[0], NotFound), answers


def test_a_task_already_cancelled_starts_no_tool_call(engine):
    """A tool-calling agent whose task was cancelled (its execution cancelled, its step timed out) and that
    calls a tool still (the next of a model turn's calls): no child coordination is started for it, whose
    tool (an email sent, a file written) would begin for a caller that is gone before the cancel reaches it."""
    tooled: list[str] = []
    engine.register_agent(
        "tooler",
        kind="function",
        capabilities=["tools"],
        runtime=lambda task, cancel: tooled.append(task.text) or "done",
        tools=(ToolSpec("note", "Write a note"),),
    )
    results: list[ToolResult] = []
    entered, called = threading.Event(), threading.Event()

    def caller(task: AgentTask, cancel: CancelSignal) -> str:
        entered.set()
        assert cancel.wait(WAIT)
        assert task.toolbox is not None
        results.append(task.toolbox.call(task, "note", {}, cancel))
        called.set()
        return "never recorded"

    engine.register_agent("caller", kind="function", capabilities=["calls"], runtime=caller)
    cid = engine.request(CoordinationRequest(task="t", target_agent_id="caller")).id
    assert entered.wait(WAIT)
    engine.cancel(cid, "stop")
    assert called.wait(WAIT)
    assert results[0].coordination_id == "" and "cancelled" in results[0].error
    assert [c.id for c in engine.list()[0]] == [cid]  # no child coordination
