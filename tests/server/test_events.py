"""EventLog at the component level: validation, idempotency, filters (Python and SQL agree), the
replay/live seam under concurrent publishing, listing, causal correlation and retention."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from voltorch_server.components import Closed, Overflow
from voltorch_server.components.events import EventFilter, EventLog, NewEvent, prepare_own
from voltorch_server.errors import InvalidArgument, NotFound, OutOfRange
from voltorch_server.priority import Priority
from voltorch_server.storage import Database
from voltorch_server.storage.stores import SqlEvents

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


BOTH_BACKENDS = True  # every test using `db` runs on SQLite and on PostgreSQL (tests/conftest.py)


@pytest.fixture
def log(db: Database) -> Iterator[EventLog]:
    ev = EventLog(SqlEvents(db), subscriber_buffer=100)
    yield ev
    ev.stop()


def _field(exc: pytest.ExceptionInfo[InvalidArgument]) -> str:
    return exc.value.violations[0].field


def drain(follower, n: int, timeout: float = 10.0) -> list:
    out: list[Any] = []
    while len(out) < n:
        item = follower.get(timeout=timeout)
        assert item is not None, f"timed out after {len(out)} of {n}"
        out.append(item)
    return out


# -- publishing -------------------------------------------------------------------------------------


def test_publish_assigns_gap_free_sequences_and_fields(log: EventLog) -> None:
    a = log.emit("workflow.step.started", {"step": "plan"}, source="workflows", priority="high")
    b, c = log.publish(NewEvent("a.b"), NewEvent("a.c", data=[1, 2]))
    assert (a.sequence, b.sequence, c.sequence) == (1, 2, 3)
    assert a.priority == Priority.HIGH and b.priority == Priority.NORMAL
    assert a.data == {"step": "plan"} and b.data is None and c.data == [1, 2]
    assert a.time <= b.time <= c.time
    assert log.last_sequence() == 3
    stored = log.get(a.id)
    assert stored == a


def test_idempotent_by_id_within_and_across_batches(log: EventLog) -> None:
    first = log.publish_one(NewEvent("x.y", id="req-1", data=1))
    again = log.publish_one(NewEvent("x.y", id="req-1", data=2))
    assert not first.duplicate and again.duplicate
    assert again.sequence == first.sequence and again.event.data == 1
    rs = log.publish_batch(
        [NewEvent("x.y", id="req-2"), NewEvent("x.y", id="req-2"), NewEvent("x.y", id="req-1")]
    )
    assert [r.duplicate for r in rs] == [False, True, True]
    assert rs[1].sequence == rs[0].sequence and rs[2].sequence == first.sequence
    assert log.last_sequence() == 2


def test_batch_is_atomic_and_errors_name_the_index(log: EventLog) -> None:
    log.emit("keep.me")
    with pytest.raises(InvalidArgument) as exc:
        log.publish_batch([NewEvent("ok.one"), NewEvent("Bad Type")])
    assert _field(exc) == "events[1].type"
    with pytest.raises(InvalidArgument) as exc:
        log.publish_batch([])
    assert _field(exc) == "events"
    with pytest.raises(InvalidArgument) as exc:
        log.publish_batch([NewEvent("a.b")] * 1001)
    assert _field(exc) == "events"
    assert [e.type for e in log.read_after(0, 100)] == ["keep.me"]
    assert log.last_sequence() == 1  # nothing half-written, no sequence burnt


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (NewEvent(""), "event.type"),
        (NewEvent("Workflow.Started"), "event.type"),
        (NewEvent("a..b"), "event.type"),
        (NewEvent("a" * 129), "event.type"),
        (NewEvent("a.b", priority=9), "event.priority"),
        (NewEvent("a.b", priority="urgent"), "event.priority"),
        (NewEvent("a.b", data={"x": float("nan")}), "event.data"),
        (NewEvent("a.b", data={"x": object()}), "event.data"),
        (NewEvent("a.b", data="x" * (1 << 20)), "event.data"),
        (NewEvent("a.b", data="\u00e9" * (1 << 19)), "event.data"),  # 2**19 characters, 2**20 + 2 bytes
        (NewEvent("a.b", id="x" * 129), "event.id"),
        (NewEvent("a.b", id="bad\nid"), "event.id"),
        (NewEvent("a.b", source="s" * 257), "event.source"),
        (NewEvent("a.b", traceparent="00-nothex"), "event.trace_context.traceparent"),
        (NewEvent("a.b", tracestate="k=v"), "event.trace_context.traceparent"),
    ],
)
def test_bad_events_are_rejected_naming_the_field(log: EventLog, event: NewEvent, field: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        log.publish_one(event)
    assert _field(exc) == field
    assert log.last_sequence() == 0


def test_trace_context_and_correlation_inheritance(log: EventLog) -> None:
    root = log.emit("job.started", correlation_id="job-1", traceparent=TRACEPARENT)
    assert root.trace_id == "0af7651916cd43dd8448eb211c80319c" and root.span_id == "b7ad6b7169203331"
    child = log.emit("job.step", causation_id=root.id)
    assert child.correlation_id == "job-1"  # inherited from its cause
    a, b = log.publish(
        NewEvent("x.a", id="in-batch", correlation_id="c2"), NewEvent("x.b", causation_id="in-batch")
    )
    assert b.correlation_id == "c2"
    orphan = log.emit("x.c", causation_id="unknown-event")
    assert orphan.correlation_id == ""


def test_append_joins_the_callers_transaction(db: Database, log: EventLog) -> None:
    with pytest.raises(RuntimeError), db.write() as tx:
        log.append(tx, [NewEvent("a.b")])
        raise RuntimeError("rolled back")
    assert log.last_sequence() == 0
    with db.write() as tx:
        [e] = log.append(tx, [NewEvent("a.b")])
    assert e.sequence == 1


def test_listeners_see_committed_events_and_a_bad_listener_is_harmless(log: EventLog) -> None:
    seen: list[int] = []

    def boom(e) -> None:
        raise ValueError("listener bug")

    log.add_listener(boom)
    log.add_listener(lambda e: seen.append(e.sequence))
    log.publish(NewEvent("a.b"), NewEvent("a.c"))
    assert seen == [1, 2]
    log.remove_listener(boom)


def test_appended_events_read_their_data_as_the_stored_ones(db: Database, log: EventLog) -> None:
    """The log decodes an appended event's data only when it is read: the same value (and the same event)
    as the stored one, for every listener and every subscriber, whichever reads it first."""
    datas: list[Any] = [
        {"a": [1, 2.5, None], "b": {"c": "\u00e9\u4e2d"}, "n": 2**70},
        [1, "x"],
        "text",
        None,
        0,
        {},
    ]
    heard: list[Any] = []
    types_only: list[str] = []
    log.add_listener(lambda e: types_only.append(e.type))  # never reads data
    log.add_listener(heard.append)
    follower = log.subscribe()
    with db.write() as tx:
        appended = log.append(tx, [NewEvent("lazy.x", data=d) for d in datas[:3]])
        appended += log.append(tx, [prepare_own("lazy.y", "test", d) for d in datas[3:]])
    assert types_only == ["lazy.x"] * 3 + ["lazy.y"] * 3
    assert not any("data" in vars(e) for e in appended)  # delivered to both listeners, not decoded yet
    assert heard == appended  # the same objects, in order
    followed = drain(follower, len(datas))
    assert [e.sequence for e in followed] == [e.sequence for e in appended]
    for e, data in zip(followed, datas, strict=True):
        stored = log.get(e.id)
        assert e.data == data == stored.data
        assert e.data is e.data  # decoded once
        assert e == stored and repr(e) == repr(stored)
        assert replace(e, sequence=0).data == data


# -- filters ----------------------------------------------------------------------------------------


def _mixed(log: EventLog) -> None:
    log.publish_batch(
        [
            NewEvent("workflow.execution.started", source="workflows", correlation_id="w1"),
            NewEvent("workflow.step.failed", source="workflows", correlation_id="w1", priority="high"),
            NewEvent("coordination.failed", source="coordination", target="agent:a", priority="critical"),
            NewEvent("state.changed", source="state"),
            NewEvent("system.error", source="watcher", priority="low", traceparent=TRACEPARENT),
            NewEvent("workflows.x", source="other"),
        ]
    )


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (EventFilter(), [1, 2, 3, 4, 5, 6]),
        (EventFilter(types=("workflow.*",)), [1, 2]),
        (EventFilter(types=("*.failed",)), [2, 3]),
        (EventFilter(types=("*.error", "state.changed")), [4, 5]),
        (EventFilter(types=("workflow?.x",)), [6]),
        (EventFilter(types=("workflow?x",)), []),
        (EventFilter(types=("state_changed",)), []),  # `_` is literal (PostgreSQL's LIKE: escaped)
        (EventFilter(types=("workflow.*.started",)), [1]),
        (EventFilter(source="workflows"), [1, 2]),
        (EventFilter(target="agent:a"), [3]),
        (EventFilter(correlation_id="w1", min_priority=Priority.HIGH), [2]),
        (EventFilter(min_priority="high"), [2, 3]),
        (EventFilter(trace_id="0af7651916cd43dd8448eb211c80319c"), [5]),
        (EventFilter(types=("*.failed",), source="coordination"), [3]),
    ],
)
def test_filters_agree_in_python_and_sql(log: EventLog, flt: EventFilter, expected: list[int]) -> None:
    _mixed(log)
    everything = log.read_after(0, 100)
    assert [e.sequence for e in everything if flt.matches(e)] == expected  # live delivery
    assert [e.sequence for e in log.read_after(0, 100, flt)] == expected  # replay (SQL)
    assert [e.sequence for e in log.list(flt).events] == expected  # listing (SQL)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"types": ("Workflow.*",)}, "filter.types[0]"),
        ({"types": ("ok.*", "a[b]")}, "filter.types[1]"),
        ({"types": ("",)}, "filter.types[0]"),
        ({"types": tuple(f"t{i}" for i in range(33))}, "filter.types"),
        ({"min_priority": 7}, "filter.min_priority"),
        ({"source": "s" * 257}, "filter.source"),
    ],
)
def test_bad_filters_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        EventFilter(**kwargs)
    assert _field(exc) == field


# -- subscribing ------------------------------------------------------------------------------------


def test_live_only_subscription_starts_after_the_head(log: EventLog) -> None:
    log.emit("old.one")
    with log.subscribe() as f:
        assert f.get(timeout=0) is None
        log.emit("new.one")
        [e] = drain(f, 1)
    assert e.type == "new.one"


def test_replay_then_live_seam_under_concurrent_publishing(log: EventLog) -> None:
    """A subscriber joining mid-stream gets every matching event exactly once, in sequence order."""
    log.publish_batch([NewEvent("seam.a" if i % 3 else "other.x") for i in range(300)])
    flt = EventFilter(types=("seam.*",))
    started, joined = threading.Event(), threading.Event()

    def publisher() -> None:
        for i in range(200):
            log.publish_batch([NewEvent("seam.b" if (i + j) % 3 else "other.y") for j in range(i % 7 + 1)])
            if i == 20:
                started.set()
                joined.wait(10)  # the rest is published while the subscriber replays and follows
        log.emit("seam.end")

    t = threading.Thread(target=publisher)
    t.start()
    assert started.wait(10)
    got: list[Any] = []
    with log.subscribe(flt, from_sequence=1, capacity=100_000) as f:
        joined.set()
        while not got or got[-1].type != "seam.end":
            item = f.get(timeout=10)
            assert item is not None
            got.append(item)
    t.join()
    expected = [e.sequence for e in log.read_after(0, 100_000) if flt.matches(e)]
    assert [e.sequence for e in got] == expected


def test_subscribe_from_time(log: EventLog) -> None:
    a = log.emit("t.a")
    b = log.emit("t.b")
    with log.subscribe(from_time=b.time) as f:
        assert [e.sequence for e in drain(f, 1)] == [b.sequence]
    with log.subscribe(from_time=a.time - 10) as f:
        assert [e.sequence for e in drain(f, 2)] == [a.sequence, b.sequence]
    with log.subscribe(from_time=b.time + 3600) as f:  # after everything: live
        log.emit("t.c")
        assert drain(f, 1)[0].type == "t.c"


def test_subscribe_validates_its_start(log: EventLog) -> None:
    for bad in (0, -1):
        with pytest.raises(InvalidArgument) as exc:
            log.subscribe(from_sequence=bad)
        assert _field(exc) == "from_sequence"
    with pytest.raises(InvalidArgument) as exc:
        log.subscribe(from_sequence=1, from_time=1.0)
    assert _field(exc) == "from_time"


def test_overflow_names_a_resume_point_that_loses_nothing(log: EventLog) -> None:
    with log.subscribe(capacity=10) as f:
        assert f.get(timeout=0) is None  # replay done: the follower is live now
        log.publish_batch([NewEvent("burst.x", data=i) for i in range(50)])  # 50 at once into a buffer of 10
        got = drain(f, 10)
        with pytest.raises(Overflow) as exc:
            f.get(timeout=1)
    assert exc.value.resume_from == got[-1].sequence + 1
    with log.subscribe(from_sequence=exc.value.resume_from) as f:
        got += drain(f, 40)
    assert [e.data for e in got] == list(range(50))


def test_a_burst_during_replay_is_read_from_the_log_without_overflow(log: EventLog) -> None:
    with log.subscribe(capacity=10) as f:
        log.publish_batch([NewEvent("burst.x", data=i) for i in range(50)])
        assert [e.data for e in drain(f, 50)] == list(range(50))


def test_stop_ends_subscriptions_with_a_resume_point(log: EventLog) -> None:
    log.emit("a.b")
    f = log.subscribe(from_sequence=1)
    drain(f, 1)
    log.stop()
    with pytest.raises(Closed) as exc:
        f.get(timeout=5)
    assert exc.value.resume_from == 2


# -- listing ----------------------------------------------------------------------------------------


def test_list_pages_both_ways_with_bounds(log: EventLog) -> None:
    log.publish_batch([NewEvent("p.even" if i % 2 == 0 else "p.odd", data=i) for i in range(25)])
    flt = EventFilter(types=("p.even",))
    seqs, token = [], ""
    while True:
        page = log.list(flt, page_size_=4, page_token=token)
        assert page.head_sequence == 25 and len(page.events) <= 4
        seqs += [e.sequence for e in page.events]
        token = page.next_page_token
        if not token:
            break
    assert seqs == list(range(1, 26, 2))
    desc = log.list(flt, page_size_=100, descending=True, start_sequence=5, end_sequence=20)
    assert [e.sequence for e in desc.events] == [19, 17, 15, 13, 11, 9, 7, 5]


def test_list_by_time_range(db: Database) -> None:
    now = [1000.0]
    log = EventLog(SqlEvents(db), clock=lambda: now[0])
    for i in range(5):
        now[0] = 1000.0 + i
        log.emit("t.x", i)
    now[0] = 900.0  # a clock stepping back never makes times decrease along the log
    late = log.emit("t.y")
    assert late.time == 1004.0
    assert [e.data for e in log.list(start_time=1001, end_time=1003).events] == [1, 2]
    assert [e.sequence for e in log.list(start_time=1004).events] == [5, 6]


def test_list_rejects_bad_tokens_and_bounds(log: EventLog) -> None:
    log.publish_batch([NewEvent("a.b")] * 5)
    page = log.list(page_size_=2)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"page_token": "not-a-token"}, "page_token"),
        ({"page_token": page.next_page_token, "descending": True}, "page_token"),  # other query
        ({"page_size_": -1}, "page_size"),
        ({"start_sequence": -1}, "start_sequence"),
        ({"end_sequence": -5}, "end_sequence"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidArgument) as exc:
            log.list(**kwargs)
        assert _field(exc) == field, kwargs


# -- correlation ------------------------------------------------------------------------------------


def test_correlation_is_causally_ordered(log: EventLog) -> None:
    root = log.emit("job.started", correlation_id="job")
    # An effect published before its cause (client-given ids): causal order, not sequence order.
    late_child = log.emit("job.late", correlation_id="job", causation_id="cause-later")
    cause = log.publish_one(NewEvent("job.cause", id="cause-later", causation_id=root.id)).event
    sibling = log.emit("job.sibling", causation_id=root.id)
    log.emit("unrelated.x", correlation_id="other")
    c = log.correlation("job")
    order = [n.event.id for n in c.nodes]
    assert order == [root.id, cause.id, late_child.id, sibling.id]
    nodes = {n.event.id: n for n in c.nodes}
    assert nodes[root.id].child_ids == (cause.id, sibling.id) and nodes[root.id].depth == 0
    assert nodes[late_child.id].parent_id == cause.id and nodes[late_child.id].depth == 2
    assert c.root_ids == [root.id] and not c.truncated
    assert log.correlation("job", max_events=2).truncated


def test_correlation_survives_cycles_and_rejects_bad_input(log: EventLog) -> None:
    log.publish_one(NewEvent("c.a", id="a", causation_id="b", correlation_id="cyc"))
    log.publish_one(NewEvent("c.b", id="b", causation_id="a", correlation_id="cyc"))
    c = log.correlation("cyc")
    assert [n.event.id for n in c.nodes] == ["a", "b"] and c.root_ids == ["a"]
    assert c.nodes[1].parent_id == "a" and c.nodes[0].child_ids == ("b",)
    with pytest.raises(NotFound):
        log.correlation("nothing")
    with pytest.raises(InvalidArgument) as exc:
        log.correlation("")
    assert _field(exc) == "correlation_id"
    with pytest.raises(InvalidArgument) as exc:
        log.correlation("cyc", max_events=-1)
    assert _field(exc) == "max_events"


# -- retention --------------------------------------------------------------------------------------


def test_compaction_by_count_and_out_of_range(db: Database) -> None:
    log = EventLog(SqlEvents(db), retention_count=5)
    log.publish_batch([NewEvent("r.x", data=i) for i in range(20)])
    assert log.compact() == 15
    assert log.oldest_available() == 16
    assert [e.sequence for e in log.list().events] == [16, 17, 18, 19, 20]
    for call in (
        lambda: log.subscribe(from_sequence=15),
        lambda: log.list(start_sequence=3),
        lambda: log.read_after(0, 10),
    ):
        with pytest.raises(OutOfRange) as exc:
            call()
        assert exc.value.reason == "EVENTS_COMPACTED" and exc.value.metadata == {"oldest_sequence": "16"}
    with log.subscribe(from_sequence=16) as f:
        assert [e.data for e in drain(f, 5)] == [15, 16, 17, 18, 19]
    assert log.compact() == 0


def test_compaction_by_age_can_empty_the_log(db: Database) -> None:
    log = EventLog(SqlEvents(db), retention_seconds=60)
    first = log.emit("r.a")
    log.emit("r.b")
    assert log.compact(now=first.time + 30) == 0
    assert log.compact(now=first.time + 3600) == 2
    assert log.list().events == [] and log.oldest_available() == 3
    with pytest.raises(OutOfRange):
        log.subscribe(from_time=first.time)
    with pytest.raises(OutOfRange):
        log.subscribe(from_sequence=2)
    assert log.emit("r.c").sequence == 3  # sequences are never reused
    with log.subscribe(from_sequence=3) as f:
        assert drain(f, 1)[0].type == "r.c"


def test_a_listing_that_falls_into_compacted_range_is_out_of_range(db: Database) -> None:
    log = EventLog(SqlEvents(db), retention_count=2)
    log.publish_batch([NewEvent("r.x")] * 10)
    page = log.list(page_size_=3)
    log.compact()
    with pytest.raises(OutOfRange):
        log.list(page_size_=3, page_token=page.next_page_token)


class _SignallingLog(EventLog):
    """Tells the test when the background thread has compacted (the real thread, the real compact)."""

    def __init__(self, *args, **kwargs) -> None:
        self.compacted = threading.Event()  # one per log: each backend's run waits for its own
        super().__init__(*args, **kwargs)

    def compact(self, now: float | None = None) -> int:
        n = super().compact(now)
        if n:
            self.compacted.set()
        return n


def test_background_compaction_runs_after_start(db: Database) -> None:
    log = _SignallingLog(SqlEvents(db), retention_count=3, compaction_interval=0.01)
    log.publish_batch([NewEvent("r.x")] * 10)
    log.start()
    try:
        assert log.compacted.wait(10)
        log.check()
        assert log.oldest_available() == 8
    finally:
        log.stop()


def test_concurrent_publishes_share_a_commit_and_keep_their_own_trace(log: EventLog, db: Database) -> None:
    """Publishes queued behind a running write commit together (one transaction: one append time), and each
    event carries the trace of the call that published it, not that of the thread that wrote the batch."""
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    n = 6
    receipts: dict[int, object] = {}

    def publish(i: int) -> None:
        ctx = SpanContext(i + 1, i + 1, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(ctx)))
        try:
            receipts[i] = log.publish_one(NewEvent("group.tick", data=i))
        finally:
            otel_context.detach(token)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(n)]
    # Hold the writer (on PostgreSQL, the events counter row): the first publisher waits for it, the others
    # queue behind it.
    with db.write() as tx:
        tx.counter("events")
        for t in threads:
            t.start()
        queued = threading.Event()
        for _ in range(1000):
            if len(log._group._queue) == n:
                queued.set()
                break
            queued.wait(0.01)
        assert queued.is_set(), "the publishers did not queue"
    for t in threads:
        t.join(10)
    events = [receipts[i].event for i in range(n)]  # type: ignore[attr-defined]
    seqs = sorted(e.sequence for e in events)
    assert seqs == list(range(seqs[0], seqs[0] + n))
    # Those queued behind the first commit together (one transaction: one append time). On SQLite the first
    # joins them (it takes what queued while it waited for the writer lock); on PostgreSQL its batch, one
    # statement, was already sent and waiting for the counter row when they queued (stores/events.py).
    by_seq = sorted(events, key=lambda e: e.sequence)
    shared = by_seq[1:] if db.kind == "postgres" else by_seq
    assert len({e.time for e in shared}) == 1 and by_seq[0].time <= shared[0].time
    assert [e.trace_id for e in events] == [f"{i + 1:032x}" for i in range(n)]
    assert [e.data for e in events] == list(range(n))


@pytest.mark.backends("sqlite")  # PostgreSQL's one-statement publish: tests/test_postgres_publish.py
def test_a_lone_publish_on_sqlite_is_one_statement_and_numbers_follow_every_path(db: Database) -> None:
    """A publish that reads nothing from the log is one INSERT that is its own transaction on SQLite (one
    sqlite call: BEGIN, the head read and COMMIT were three more, each releasing the GIL). Its sequence,
    time clamp and delivery agree with the events appended in transactions before and after it."""
    log = EventLog(SqlEvents(db), subscriber_buffer=100)
    heard: list[int] = []
    log.add_listener(lambda e: heard.append(e.sequence))
    statements: list[str] = []
    try:
        with log.subscribe(EventFilter(types=("lone.*",))) as f:
            (first,) = log.publish(NewEvent("lone.first"))  # a transaction: reads the newest time first
            db._writer.set_trace_callback(statements.append)
            try:
                lone = log.publish_one(NewEvent("lone.tick", data={"n": 1}, correlation_id="c"))
            finally:
                db._writer.set_trace_callback(None)
            with db.write() as tx:  # an append in a caller's transaction numbers after it
                (after,) = log.append(tx, [NewEvent("lone.after")])
            dup = log.publish_one(NewEvent("lone.id", id="lone-1"))  # an id to look up: a transaction
            assert log.publish_one(NewEvent("lone.id", id="lone-1")).duplicate
            assert [e.sequence for e in drain(f, 4)] == [1, 2, 3, 4]
    finally:
        log.stop()
    assert len(statements) == 1 and statements[0].startswith("INSERT INTO events"), statements
    assert (first.sequence, lone.sequence, after.sequence, dup.sequence) == (1, 2, 3, 4)
    assert first.time <= lone.event.time <= after.time <= dup.event.time
    assert heard == [1, 2, 3, 4] and log.delivered_sequence == log.last_sequence() == 4
    assert log.get(lone.event.id) == lone.event
    assert lone.event.data == {"n": 1} and lone.event.correlation_id == "c" and not lone.duplicate


def test_take_drains_what_is_ready_up_to_the_limit_and_waits_only_when_nothing_is(log: EventLog) -> None:
    with log.subscribe(EventFilter(types=("drain.*",))) as f:
        seqs = [r.sequence for r in log.publish_batch([NewEvent("drain.tick", data=i) for i in range(5)])]
        assert [e.sequence for e in f.take(5, limit=3)] == seqs[:3]  # one wake-up takes a burst
        assert [e.sequence for e in f.take(5, limit=3)] == seqs[3:]
        assert f.last == seqs[-1]
        assert f.take(0.01) == []  # nothing ready: waits, then times out
        (one,) = log.publish(NewEvent("drain.tick"))
        assert [e.sequence for e in f.take(5)] == [one.sequence]  # caught up: the event alone
    with log.subscribe(EventFilter(types=("drain.*",)), from_sequence=seqs[0]) as f:
        assert [e.sequence for e in f.take(5, limit=4)] == seqs[:4]  # replay too, in order
        assert [e.sequence for e in f.take(5)] == [*seqs[4:], one.sequence]
