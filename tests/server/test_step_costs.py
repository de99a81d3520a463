"""What one workflow step must not cost: waking threads that have nothing to do (the coordination deadline
timer for a deadline after its next look, workflow admission when nothing is queued) and one statement per
event (a transaction's events go in with one INSERT). Each test counts the work, so it fails when the
shortcut is lost, and checks that the behaviour the shortcut skips still happens when it is needed."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from engines import WAIT, Engines
from opentelemetry.sdk.metrics.export import AggregationTemporality
from polling import until
from voltorch_server.agents.base import AgentError, AgentTask, CancelSignal
from voltorch_server.components.coordination import AgentState, CoordinationEngine, CoordinationRequest
from voltorch_server.components.events import EventFilter, EventLog, NewEvent
from voltorch_server.components.workflows import AgentTaskSpec, StepSpec, Template
from voltorch_server.config import Config
from voltorch_server.storage.stores import SqlCoordination, SqlEvents
from voltorch_server.telemetry import trace_ids_from


class CountingCondition(threading.Condition):
    """A condition that counts its notify_all() calls (each one wakes the thread waiting on it)."""

    def __init__(self) -> None:
        super().__init__(threading.Lock())
        self.notified = 0

    def notify_all(self) -> None:
        self.notified += 1
        super().notify_all()


@pytest.fixture
def coordination(db) -> Iterator[CoordinationEngine]:
    eng = CoordinationEngine(SqlCoordination(db), EventLog(SqlEvents(db)), Config(builtin_agents=False))
    eng._wake = CountingCondition()  # before start(): the timer thread waits on it
    eng.start()
    yield eng
    eng.stop()


def test_a_coordination_wakes_the_deadline_timer_only_when_its_deadline_comes_first(
    coordination: CoordinationEngine,
) -> None:
    wake = coordination._wake
    assert isinstance(wake, CountingCondition)
    coordination.register_agent(
        "up", kind="function", capabilities=("up",), runtime=lambda t, c: t.text.upper()
    )
    until(lambda: coordination._timer_until > 0, why=lambda: "the timer thread never went to sleep")
    for i in range(20):  # the default timeout (300 s): long after the timer's next look (<= 1 s)
        c = coordination.request(CoordinationRequest(task=f"t{i}", required_capabilities=("up",)))
        assert coordination.wait(c.id, WAIT).status == "completed"
    assert wake.notified == 0

    release = threading.Event()

    def slow(task: AgentTask, cancel: CancelSignal) -> str:
        release.wait(WAIT)
        return "late"

    coordination.register_agent("slow", kind="function", runtime=slow)
    # asleep with over half a second to go (it looks at least once a second): the deadline comes first
    until(lambda: coordination._timer_until - time.time() > 0.5)
    c = coordination.request(CoordinationRequest(task="x", source_agent_id="slow", timeout=0.05))
    assert wake.notified == 1  # a deadline before the timer's next look wakes it
    try:
        done = coordination.wait(c.id, WAIT)
        assert done.status == "timed_out" and done.error is not None and done.error.code == "TIMEOUT"
    finally:
        release.set()


def test_a_finished_execution_wakes_admission_only_when_one_is_queued(engines: Engines) -> None:
    wf = engines.workflows
    wake = wf._admit_wanted = CountingCondition()
    wf.register_template(
        Template(name="one", steps=(StepSpec("s", AgentTaskSpec("x", capabilities=("upper",))),))
    )
    for _ in range(5):
        e, _ = wf.start_execution("one")
        assert engines.finished(e.id).status == "completed"
    assert wake.notified == 0

    release = threading.Event()

    def gate(task: AgentTask, cancel: CancelSignal) -> str:
        release.wait(WAIT)
        return "ok"

    engines.coordination.register_agent("gate", kind="function", capabilities=("gate",), runtime=gate)
    wf.register_template(
        Template(name="held", steps=(StepSpec("s", AgentTaskSpec("x", capabilities=("gate",))),))
    )
    wf.concurrency = 1
    first, _ = wf.start_execution("held")
    second, _ = wf.start_execution("one")
    assert wf.get(second.id).status == "queued"
    release.set()
    assert engines.finished(first.id).status == "completed"
    assert engines.finished(second.id).status == "completed"  # the freed slot admitted it
    assert wake.notified >= 1


# -- a transaction's events: one INSERT ------------------------------------------------------------------


def test_a_transactions_events_go_in_with_one_insert_numbered_as_they_were_appended(db) -> None:
    log = EventLog(SqlEvents(db))
    log.emit("before.any")  # the log's head is 1
    heard: list = []
    log.add_listener(heard.append)
    statements: list[str] = []
    with db.write() as tx:
        conn = tx.conn
        conn.set_trace_callback(statements.append)
        [a] = log.append(tx, [NewEvent("t.a", id="a", correlation_id="c")])
        b, c = log.append(tx, [NewEvent("t.b", causation_id="a"), NewEvent("t.c", id="c")])
        again, d = log.append(tx, [NewEvent("t.c", id="c"), NewEvent("t.d")])
        assert heard == []  # nothing is heard before the commit
    conn.set_trace_callback(None)
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO EVENTS")]
    assert len(inserts) == 1, statements
    assert [e.sequence for e in (a, b, c, d)] == [2, 3, 4, 5]
    assert b.correlation_id == "c"  # its cause was appended earlier in the same transaction, not yet written
    assert again == c  # an id appended earlier in the transaction is a duplicate, not a second row
    stored = log.read_after(1, 10)
    assert [(e.sequence, e.id, e.type) for e in stored] == [(e.sequence, e.id, e.type) for e in (a, b, c, d)]
    assert [e.sequence for e in heard] == [2, 3, 4, 5]
    assert log.emit("after.all").sequence == 6


def test_a_rolled_back_transactions_events_are_neither_written_nor_heard(db) -> None:
    log = EventLog(SqlEvents(db))
    heard: list = []
    log.add_listener(heard.append)
    with pytest.raises(RuntimeError), db.write() as tx:
        log.append(tx, [NewEvent("t.a"), NewEvent("t.b")])
        raise RuntimeError("rolled back")
    assert heard == [] and log.read_after(0, 10) == [] and log.last_sequence() == 0
    with db.write() as tx:
        [e] = log.append(tx, [NewEvent("t.c")])
    assert e.sequence == 1 and [x.sequence for x in heard] == [1]


# -- a new coordination's row: one INSERT with its dispatched state ---------------------------------------


def test_a_dispatched_coordination_is_written_with_one_insert_and_no_update(
    db, coordination: CoordinationEngine
) -> None:
    release = threading.Event()

    def gate(task: AgentTask, cancel: CancelSignal) -> str:
        release.wait(WAIT)
        return "done"

    coordination.register_agent("g", kind="function", capabilities=("g",), runtime=gate)
    statements: list[str] = []
    with db.write() as tx:
        conn = tx.conn  # the writer connection every transaction uses
    conn.set_trace_callback(statements.append)
    try:
        c = coordination.request(CoordinationRequest(task="x", required_capabilities=("g",)))
        written = [s.split("(")[0].split(" SET")[0].strip() for s in statements if "coordinations" in s]
        assert written == ["INSERT INTO coordinations"], statements
        row = db.query_one("SELECT status, agent_ids, attempts FROM coordinations WHERE id = ?", (c.id,))
        assert tuple(row) == ("running", '["g"]', "[1]")  # the insert carries what dispatch decided
    finally:
        conn.set_trace_callback(None)
        release.set()
    assert coordination.wait(c.id, WAIT).status == "completed"
    row = db.query_one("SELECT status, output FROM coordinations WHERE id = ?", (c.id,))
    assert tuple(row) == ("completed", "done")


# -- ids: no system call per id ----------------------------------------------------------------------------


def test_ids_make_no_system_call_and_stay_unique_and_time_ordered(
    db, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = EventLog(SqlEvents(db))

    def no_syscall(n: int) -> bytes:
        raise AssertionError("os.urandom called: a system call that releases the GIL, per id")

    monkeypatch.setattr(os, "urandom", no_syscall)
    ids = [e.id for e in log.publish(*(NewEvent("t.x") for _ in range(5_000)))]  # ids made by the log
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("evt_") and len(i) == len("evt_") + 24 for i in ids)
    assert ids == sorted(ids, key=lambda i: i[:18])  # the time part leads: ids sort by creation


# -- an agent's statistics: not rewritten with every success ------------------------------------------------


def test_successes_write_their_agents_statistics_once_a_second_failures_at_once(
    db, coordination: CoordinationEngine
) -> None:
    def maybe(task: AgentTask, cancel: CancelSignal) -> str:
        if task.text == "fail":
            raise AgentError("on purpose", code="PURPOSE")
        return "ok"

    coordination.register_agent("m", kind="function", capabilities=("m",), runtime=maybe)
    statements: list[str] = []
    with db.write() as tx:
        conn = tx.conn
    conn.set_trace_callback(statements.append)
    start = time.monotonic()
    try:
        for i in range(10):
            c = coordination.request(CoordinationRequest(task=f"t{i}", required_capabilities=("m",)))
            assert coordination.wait(c.id, WAIT).status == "completed"
    finally:
        conn.set_trace_callback(None)
    elapsed = time.monotonic() - start
    writes = [s for s in statements if s.startswith("UPDATE agents")]
    # the first at once, the rest left for the engine's timer (about one write per second from each)
    assert 1 <= len(writes) < 10, writes
    assert len(writes) <= 2 * (int(elapsed) + 2), (elapsed, writes)

    def stored() -> tuple:
        return tuple(db.query_one("SELECT tasks_completed, tasks_failed FROM agents WHERE id = 'm'"))

    until(lambda: stored() == (10, 0), why=lambda: stored())  # the timer writes them (<= ~1 s)
    c = coordination.request(CoordinationRequest(task="fail", required_capabilities=("m",)))
    assert coordination.wait(c.id, WAIT).status == "failed"
    assert stored() == (10, 1)  # a failure is written with its outcome
    c = coordination.request(CoordinationRequest(task="last", required_capabilities=("m",)))
    assert coordination.wait(c.id, WAIT).status == "completed"
    coordination.stop()  # writes what is left
    assert stored() == (11, 1)


def test_an_agents_window_sums_kept_up_to_date_match_a_recount() -> None:
    state = AgentState("a", "a", "function", ("x",), 1, None, {}, 0.0)
    rng = random.Random(7)
    for i in range(3 * (state.window.maxlen or 0) + 17):
        state.record(rng.random() < 0.8, rng.random() / 10, None)
        if i % 37 == 0:
            n = sum(1 for ok, _ in state.window if ok)
            assert state.success_rate == pytest.approx(n / len(state.window))
            assert state.avg_latency == pytest.approx(sum(lat for _, lat in state.window) / len(state.window))


def test_a_traceparent_is_parsed_once_for_all_the_events_that_carry_it() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    first = trace_ids_from(parent)
    hits = trace_ids_from.cache_info().hits
    assert trace_ids_from(parent) is first and trace_ids_from.cache_info().hits == hits + 1
    assert (first.trace_id, first.span_id) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert trace_ids_from("00-not-a-traceparent") == trace_ids_from("") and not trace_ids_from("x").trace_id


# -- live filters: routed by type, checked only for the rest ----------------------------------------------


def test_a_follower_of_exact_types_checks_only_the_rest_of_its_filter_per_event(db) -> None:
    log = EventLog(SqlEvents(db))
    follower = log.subscribe(EventFilter(types=("t.end", "t.fail"), correlation_id="c"))
    check = follower._sub.match  # what the broadcaster asks about each event offered (routed by type)
    assert check is not None
    owner = check.__self__  # type: ignore[attr-defined]  # the filter whose bound matches() it is
    assert (owner.types, owner.correlation_id) == ((), "c")
    assert log.subscribe(EventFilter(types=("t.end",)))._sub.match is None  # the types say it all
    log.publish(
        NewEvent("t.end", correlation_id="other"),
        NewEvent("t.step", correlation_id="c"),
        NewEvent("t.fail", correlation_id="c"),
    )
    got = follower.get(timeout=WAIT)
    assert got is not None and (got.type, got.correlation_id) == ("t.fail", "c")
    assert follower.get(timeout=0.05) is None


# -- a step's metrics: aggregated in plain Python, not through the SDK's instruments ----------------------


class _CountingMeter:
    """A real SDK meter whose synchronous instruments count the measurements made through them."""

    def __init__(self, meter: Any, made: list[str]):
        self._meter, self._made = meter, made

    def __getattr__(self, name: str) -> Any:
        create = getattr(self._meter, name)
        if not name.startswith("create_") or name.startswith("create_observable"):
            return create
        made = self._made

        def counted(*args: Any, **kwargs: Any) -> Any:
            instrument = create(*args, **kwargs)

            class Counted:
                def __getattr__(self, attr: str) -> Any:
                    real = getattr(instrument, attr)
                    if attr not in ("add", "record", "set"):
                        return real

                    def call(*a: Any, **k: Any) -> Any:
                        made.append(f"{instrument.name}.{attr}")
                        return real(*a, **k)

                    return call

            return Counted()

        return counted


def test_a_steps_metrics_make_no_measurement_through_the_sdk() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from voltorch_server.metrics import InMemoryReader, Metrics, plain_histograms

    made: list[str] = []
    histograms = plain_histograms()
    reader = InMemoryReader(histograms.values(), AggregationTemporality.CUMULATIVE)
    provider = MeterProvider(metric_readers=[reader.sdk])

    class Provider:
        def get_meter(self, *args: Any, **kwargs: Any) -> Any:
            return _CountingMeter(provider.get_meter(*args, **kwargs), made)

    try:
        metrics = Metrics(Provider(), reader, histograms)  # type: ignore[arg-type]
        for _ in range(3):  # what a step, its coordination and its agent task record, and a workflow's end
            metrics.agent_load.set(1, {"agent.id": "a"})
            metrics.record_step(0.02, "completed", kind="agent_task")
            metrics.record_coordination(0.01, "completed", mode="sequential")
            metrics.record_agent_task("a", 0.005, success=True)
            metrics.agent_load.set(0, {"agent.id": "a"})
            metrics.workflows_started.add(1, {"template": "t"})
            metrics.workflow_finished("completed", 0.1, template="t")
        assert made == []
        data = reader.get_metrics_data()
        assert data is not None
        points: dict[str, list[Any]] = {
            m.name: list(m.data.data_points)
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }
        (step,) = points["voltorch.workflow.step.duration"]
        assert step.count == 3 and step.sum == pytest.approx(0.06)
        assert dict(step.attributes or {}) == {"status": "completed", "kind": "agent_task"}
        assert [p.value for p in points["voltorch.coordinations"]] == [3]
        assert [p.value for p in points["voltorch.agent.tasks"]] == [3]
        assert [p.value for p in points["voltorch.agent.load"]] == [0]  # the last value set
        assert [p.value for p in points["voltorch.workflows.completed"]] == [3]
        (wf,) = points["voltorch.workflow.duration"]
        assert wf.count == 3 and tuple(wf.explicit_bounds)[0] == 0.001  # the seconds buckets
    finally:
        provider.shutdown()


# -- a step's spans: built directly while nothing records them -------------------------------------------


def test_a_step_span_nothing_records_is_built_without_the_sdk_in_the_parents_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from voltorch_server import telemetry

    telemetry.install()
    assert not telemetry.recording()

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the span went through the SDK's tracer (sampler, attributes, processors)")

    monkeypatch.setattr(telemetry.tracer, "start_as_current_span", refuse)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with telemetry.internal_span(
        "workflow.step", context=telemetry.context_from(parent), attributes={"voltorch.step_id": "s"}
    ) as span:
        assert not span.is_recording()
        inside = telemetry.current_trace()
        with telemetry.internal_span("agent.task") as child:  # under the current span
            nested = telemetry.current_trace()
            assert not child.is_recording()
    assert inside.trace_id == nested.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert len({inside.span_id, nested.span_id, "b7ad6b7169203331"}) == 3  # each span its own id
    assert telemetry.current_trace().traceparent == ""  # no span left current afterwards
    with telemetry.internal_span("workflow.execute"), telemetry.internal_span("workflow.step"):
        first = telemetry.current_trace()  # the inner span's ids drawn first: its parent's on the way
    assert first.trace_id and first.trace_id != inside.trace_id


# -- a component's own events: prepared without re-checking what it vouches for --------------------------


def test_a_components_own_event_is_logged_as_a_published_one_and_refused_as_it_would_be(db) -> None:
    from voltorch_server.components.events import prepare_own
    from voltorch_server.errors import InvalidArgument
    from voltorch_server.priority import Priority

    log = EventLog(SqlEvents(db))
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    data = {"coordination_id": "c1", "task": "é ünïcode", "n": [1, 2.5, None], "ok": True}
    kw: dict[str, Any] = {"correlation_id": "corr", "priority": Priority.HIGH, "traceparent": parent}
    [published] = log.publish(NewEvent("coordination.started", "coordination", data=data, **kw))
    with db.write() as tx:
        [own] = log.append(tx, [prepare_own("coordination.started", "coordination", data, **kw)])

    def fields(e: Any) -> tuple:
        return (e.type, e.source, e.data, e.correlation_id, e.priority, e.trace_id, e.span_id)

    assert fields(own) == fields(published) and own.sequence == published.sequence + 1
    selection = '{"selected_agent_ids":["a"],"explanation":"ü"}'  # made once, for the row and the event
    with db.write() as tx:
        [spliced] = log.append(tx, [prepare_own("t.x", "s", {"n": 1}, raw={"selection": selection})])
        [alone] = log.append(tx, [prepare_own("t.x", "s", {}, raw={"a": "[1]"})])
    assert spliced.data == {"n": 1, "selection": {"selected_agent_ids": ["a"], "explanation": "ü"}}
    assert alone.data == {"a": [1]}

    def refused(data: Any, traceparent: str = "", correlation_id: str = "") -> None:
        with pytest.raises(InvalidArgument) as own:
            prepare_own("t.x", "s", data, traceparent=traceparent, correlation_id=correlation_id)
        with pytest.raises(InvalidArgument) as checked:
            log.publish(
                NewEvent("t.x", "s", data=data, traceparent=traceparent, correlation_id=correlation_id)
            )
        assert (own.value.violations, own.value.reason) == (checked.value.violations, checked.value.reason)

    refused({"bad": float("nan")})
    refused({"big": "x" * (1 << 20)})
    refused({"a": 1}, traceparent="00-not-a-traceparent")
    refused({"a": 1}, correlation_id="c" * 200)
    refused({"a": 1}, correlation_id="line\nbreak")


def test_a_correlation_id_the_log_refuses_is_still_refused_for_own_events(engines: Engines) -> None:
    from voltorch_server.errors import InvalidArgument

    coordination = engines.coordination
    with pytest.raises(InvalidArgument) as long:  # the engine allows 256 characters, the log 128
        coordination.request(
            CoordinationRequest(task="x", required_capabilities=("upper",), correlation_id="c" * 200)
        )
    assert long.value.violations[0].field == "correlation_id"
    engines.workflows.register_template(
        Template(name="one", steps=(StepSpec("s", AgentTaskSpec("x", capabilities=("upper",))),))
    )
    with pytest.raises(InvalidArgument) as control:
        engines.workflows.start_execution("one", correlation_id="line\nbreak")
    assert control.value.violations[0].field == "correlation_id"
    assert engines.workflows.list()[0] == []  # nothing half-written


def test_events_that_read_nothing_are_appended_as_the_log_stores_and_delivers_them(db) -> None:
    """The engines' own events (no id, no cause to look up) are made in one pass: each field of what the
    caller gets back is what the log stores and what listeners hear, sequences and times in order, also
    when an event that reads the log (an id) comes between them in the same transaction."""
    import dataclasses

    from voltorch_server.components.events import prepare_own
    from voltorch_server.priority import Priority
    from voltorch_server.telemetry import current_trace, internal_span

    log = EventLog(SqlEvents(db))
    log.emit("before.any")
    heard: list = []
    log.add_listener(heard.append)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with internal_span("test.ambient"), db.write() as tx:  # a trace for the events that carry none
        ambient = current_trace()
        got = log.append(tx, [prepare_own("t.a", "s", {"n": 1}, correlation_id="c", traceparent=parent)])
        got += log.append(tx, [NewEvent("t.id", id="given")])
        got += log.append(
            tx,
            [
                prepare_own("t.b", "s", {"x": "é"}, priority=Priority.HIGH),
                NewEvent(
                    "t.c", source="me", target="you", data=[1], causation_id="given", correlation_id="k"
                ),
            ],
        )
    stored = log.read_after(1, 10)
    names = [f.name for f in dataclasses.fields(stored[0])]

    def fields(e: Any) -> list:
        return [getattr(e, n) for n in names]

    assert [fields(e) for e in got] == [fields(e) for e in stored] == [fields(e) for e in heard]
    assert [e.sequence for e in got] == [2, 3, 4, 5]
    assert got[0].trace_id == "0af7651916cd43dd8448eb211c80319c" and got[2].trace_id == ambient.trace_id
    assert got[2].priority is Priority.HIGH and got[3].causation_id == "given"
    assert all(got[i].time <= got[i + 1].time for i in range(3))
