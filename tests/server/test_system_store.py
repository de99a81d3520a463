"""Recorded errors and metric history through their components (`ErrorLog`, `MetricHistory`) on one
database, SQLite and PostgreSQL.

A server on PostgreSQL keeps these in each replica's local SQLite until issue 12 moves them, so the
server-level tests (test_tracing.py, test_metrics.py) never put them on PostgreSQL; these do: an error
written with its system.error event, listed newest first with filters and pages, found by its trace or
correlation, pruned; metric samples kept for the retention window, thinned, read back in order."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from polling import until
from voltorch_server import telemetry
from voltorch_server.components.events import EventLog
from voltorch_server.components.system import MAX_SAMPLES_PER_SERIES, ErrorLog, MetricHistory, Sample
from voltorch_server.storage import Database
from voltorch_server.storage.stores import SqlEvents, SqlSystem

BOTH_BACKENDS = True  # every test using `db` runs on SQLite and on PostgreSQL (tests/conftest.py)

TRACE = 0x0AF7651916CD43DD8448EB211C80319C


@pytest.fixture
def errors(db: Database) -> Iterator[ErrorLog]:
    events = EventLog(SqlEvents(db))
    events.start()
    yield ErrorLog(SqlSystem(db), events)
    events.stop()


def in_span(trace_id: int, span_id: int) -> NonRecordingSpan:
    return NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(1)))


def test_an_error_is_kept_with_its_event_and_its_trace(errors: ErrorLog) -> None:
    with trace.use_span(in_span(TRACE, 0x1234)), telemetry.correlated("job-7"):
        rec = errors.record("workflows", "step timeout", "the step timed out", details={"step": "s1"})
    assert (rec.code, rec.trace_id, rec.span_id) == ("STEP_TIMEOUT", format(TRACE, "032x"), "0" * 12 + "1234")
    (event,) = errors.events.read_after(rec.event_sequence - 1, 1)
    assert event.sequence == rec.event_sequence
    assert event.type == "system.error" and event.data["error_id"] == rec.id
    assert event.correlation_id == "job-7"
    (listed,), _ = errors.list(trace_id=rec.trace_id)
    assert listed == rec
    assert errors.matching({rec.trace_id}, set(), 10) == [rec]
    assert errors.matching(set(), {"job-7"}, 10) == [rec]
    assert errors.matching({"f" * 32}, {"job-8"}, 10) == []


def test_errors_list_newest_first_filtered_and_paged(errors: ErrorLog) -> None:
    recs = [
        errors.record("state" if i < 5 else "events", "E_ODD" if i % 2 else "E_EVEN", f"error {i}")
        for i in range(7)
    ]
    page, token = errors.list(component="state", size=2)
    assert [e.message for e in page] == ["error 4", "error 3"] and token
    seen = [e.message for e in page]
    while token:
        page, token = errors.list(component="state", size=2, token=token)
        seen += [e.message for e in page]
    assert seen == [f"error {i}" for i in range(4, -1, -1)]
    assert [e.message for e in errors.list(code="E_ODD", component="state")[0]] == ["error 3", "error 1"]
    assert [e.message for e in errors.list(since=recs[5].time)[0]] == ["error 6", "error 5"]
    assert errors.list(component="workflows") == ([], "")


def test_pruning_drops_only_the_older_errors(errors: ErrorLog) -> None:
    old = errors.record("state", "E_OLD", "old")
    until(lambda: time.time() > old.time)
    new = errors.record("state", "E_NEW", "new")
    assert errors.prune(old.time) == 0  # nothing is older than the oldest
    until(lambda: time.time() > new.time)
    assert errors.prune(new.time) == 1
    assert [e.id for e in errors.list()[0]] == [new.id]
    assert errors.prune(time.time()) == 1
    assert errors.list() == ([], "")


def test_history_retention_and_thinning(db: Database) -> None:
    history = MetricHistory(SqlSystem(db), retention_seconds=100.0)
    now = 10_000.0
    history.record([Sample("x", {}, now - 500, 1.0)], now - 500)
    many = [Sample("y", {"a": "1"}, now - 90 + i * 0.05, float(i)) for i in range(1500)]
    history.record(many, now)
    (series,) = history.query(lambda name: True)
    assert series.name == "y"  # "x" fell out of the retention window
    assert len(series.samples) <= MAX_SAMPLES_PER_SERIES
    assert series.samples[-1].value == 1499.0
    assert [s.value for s in series.samples] == sorted(s.value for s in series.samples)


def test_history_series_come_back_in_name_and_attribute_order(db: Database) -> None:
    history = MetricHistory(SqlSystem(db), retention_seconds=0.0)
    names = ["b", "B", "a_x", "a.y"]
    history.record(
        [Sample(n, {"k": v}, 100.0 + i, float(i)) for i, n in enumerate(names) for v in "ba"], 200.0
    )
    history.record([Sample("b", {"k": "a"}, 50.0, -1.0)], 200.0)  # older, recorded later
    got = history.query(lambda name: name != "a.y", since=0.0)
    assert [(s.name, s.attributes["k"]) for s in got] == [
        ("B", "a"),
        ("B", "b"),
        ("a_x", "a"),
        ("a_x", "b"),
        ("b", "a"),
        ("b", "b"),
    ]
    assert [x.value for x in got[4].samples] == [-1.0, 0.0]  # by time
    assert history.query(lambda name: True, since=103.0)[0].name == "a.y"
