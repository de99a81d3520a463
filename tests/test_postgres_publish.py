"""Publish on PostgreSQL in few round trips: a group-committed batch is one statement that is its own
transaction (or, with ids to deduplicate, one statement once the events counter is locked), and a
replica's follower reads only for commits it has not delivered yet (a NOTIFY's head tells it; its own
commits it delivers without a read)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from polling import until
from voltorch_server.components.events import EventLog, NewEvent
from voltorch_server.storage import open_database
from voltorch_server.storage.stores import SqlEvents

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def two(pg_dsn: str) -> Iterator[tuple[EventLog, EventLog]]:
    """Two replicas' event logs on one database (not started: no listener unless a test starts one)."""
    dbs = [open_database(pg_dsn), open_database(pg_dsn)]
    logs = [EventLog(SqlEvents(d)) for d in dbs]
    yield logs[0], logs[1]
    for log, d in zip(logs, dbs, strict=True):
        log.stop()
        d.close()


def _count_reads(log: EventLog) -> list[int]:
    """Wraps the store's `after` (the follower's read) so that each call is counted."""
    calls: list[int] = []
    real = log.store.after

    def after(seq: int, limit: int) -> list[Any]:
        calls.append(seq)
        return real(seq, limit)

    log.store.after = after  # type: ignore[method-assign]
    return calls


def test_a_publish_batch_is_one_statement(
    two: tuple[EventLog, EventLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = two
    a.emit("warm.up")  # the first write of a connection may read the catalog
    sent = _count_round_trips(monkeypatch)
    receipts = a.publish_batch([NewEvent("x.y", data={"i": i}, source="s") for i in range(20)])
    # BEGIN, the counter's lock and advance, the rows, the NOTIFY and COMMIT travel together
    assert len(sent) == 1 and "UPDATE voltorch_counters" in sent[0], sent
    assert [r.sequence for r in receipts] == list(range(2, 22))
    assert a.last_sequence() == 21
    stored = a.store.after(1, 100)
    assert stored == [r.event for r in receipts]  # what the caller got is what was written
    assert all(e.time >= receipts[0].event.time == receipts[-1].event.time for e in stored)
    # With an id to look up (a repeat yields the original): the lock travels with BEGIN, then the
    # lookup, the append (rows, counter and NOTIFY in one statement), COMMIT.
    sent.clear()
    batch = a.publish_batch([NewEvent("x.y", id="evt-a"), NewEvent("x.y"), NewEvent("x.y", id="evt-a")])
    assert "FOR UPDATE" in sent[0] and "INSERT INTO events" in sent[2] and sent[3] == "COMMIT", sent
    assert len(sent) == 4 and [r.sequence for r in batch] == [22, 23, 22] and batch[2].duplicate


def _count_round_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement this thread sends through a psycopg cursor (each a round trip), in order; not the
    background threads' (the database probe's `SELECT 1`, the listener)."""
    sent: list[str] = []
    real = psycopg.Cursor.execute
    caller = threading.current_thread()

    def execute(self: psycopg.Cursor, query: Any, *args: Any, **kw: Any) -> Any:
        if threading.current_thread() is caller:
            sent.append(str(query))
        return real(self, query, *args, **kw)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    return sent


def test_a_group_committed_publish_is_one_round_trip(
    two: tuple[EventLog, EventLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two
    a.emit("warm.up")  # the first write of a connection may read the catalog
    sent = _count_round_trips(monkeypatch)
    one = a.publish_one(NewEvent("x.y", data={"n": 1}))
    # BEGIN, the counter's lock and advance, the row, the NOTIFY and COMMIT travel together
    assert len(sent) == 1 and "UPDATE voltorch_counters" in sent[0] and "INSERT INTO events" in sent[0], sent
    assert one.sequence == 2 and a.last_sequence() == 2 and not one.duplicate
    assert a.store.after(1, 10) == [one.event] and one.event.data == {"n": 1}
    b._catch_up(None)  # b delivers a's commits first (as its listener would)
    sent.clear()
    two_ = b.publish_one(NewEvent("x.y"))  # the other replica numbers after it
    assert len(sent) == 1 and two_.sequence == 3 and two_.event.time >= one.event.time
    # An id is looked up under the lock (a repeat yields the original): BEGIN with the lock, the lookup,
    # the append, COMMIT.
    a._catch_up(None)
    sent.clear()
    first = a.publish_one(NewEvent("x.y", id="evt-fixed"))
    assert first.sequence == 4 and len(sent) == 4, sent
    again = b.publish_one(NewEvent("x.y", id="evt-fixed"))
    assert again.duplicate and again.event == first.event and b.last_sequence() == 4


def test_concurrent_publishes_through_two_replicas_are_gap_free_in_time_order(
    two: tuple[EventLog, EventLog],
) -> None:
    """Batches of one statement each (and, mixed in, batches with ids, locked first) from many threads on
    two replicas: every receipt is a distinct sequence, 1..N without a gap, stored as the caller was
    told, and times never decrease with sequence (the clamp is read under the lock, whatever the clocks)."""
    a, b = two
    a.clock = lambda: 2_000_000_000.0  # a is ahead: b's events after a's take a's time
    b.clock = lambda: 1_000_000_000.0
    receipts: list[Any] = []
    lock = threading.Lock()

    def publish(log: EventLog, worker: int) -> None:
        for i in range(15):
            ev = NewEvent("x.y", id=f"evt-{worker}-{i}" if i % 5 == 0 else "", data={"w": worker, "i": i})
            r = log.publish_one(ev)
            with lock:
                receipts.append(r)

    threads = [threading.Thread(target=publish, args=(two[w % 2], w)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(receipts) == 8 * 15 and not any(r.duplicate for r in receipts)
    assert sorted(r.sequence for r in receipts) == list(range(1, 8 * 15 + 1))
    stored = a.store.after(0, 1000)
    assert stored == sorted((r.event for r in receipts), key=lambda e: e.sequence)
    times = [e.time for e in stored]
    assert times == sorted(times)
    assert a.last_sequence() == b.last_sequence() == 8 * 15


def test_a_transaction_that_locked_its_counter_with_begin_rolls_back_and_releases_it(
    two: tuple[EventLog, EventLog],
) -> None:
    a, b = two
    head = a.emit("x.y").sequence
    with pytest.raises(RuntimeError), a.db.write(lock="events") as tx:
        assert tx.counter("events") == head
        tx.set_counter("events", head + 5)
        raise RuntimeError("the body failed")
    assert a.last_sequence() == head  # nothing of it stays
    assert b.emit("x.z").sequence == head + 1  # the lock went with the rollback
    assert a.publish_one(NewEvent("x.w")).sequence == head + 2  # and the connection is usable again


def test_event_times_never_decrease_across_replicas(two: tuple[EventLog, EventLog]) -> None:
    """The time clamp reads the newest time under the counter lock: a replica whose clock is behind
    stamps its events with the other's newest time, never earlier."""
    a, b = two
    a.clock = lambda: 2_000_000_000.0
    b.clock = lambda: 1_000_000_000.0
    first = a.emit("x.a")
    second = b.publish_one(NewEvent("x.b")).event
    assert second.sequence == first.sequence + 1
    assert second.time == first.time == 2_000_000_000.0


def test_a_follower_reads_only_for_commits_it_has_not_delivered(two: tuple[EventLog, EventLog]) -> None:
    a, b = two
    reads_a, reads_b = _count_reads(a), _count_reads(b)
    sub = b.subscribe()
    batch = a.publish_batch([NewEvent("x.y"), NewEvent("x.z")])
    head = batch[-1].sequence
    a._catch_up(head)  # the NOTIFY of its own commit: delivered when it committed
    assert reads_a == []
    b._catch_up(head)  # another replica's commit: one read takes it in
    assert reads_b == [0]
    assert [sub.get(timeout=10).sequence for _ in batch] == [r.sequence for r in batch]  # type: ignore[union-attr]
    b._catch_up(head)  # a second notification of the same commit: nothing to read
    assert reads_b == [0]
    sub.close()


def test_the_listener_wakes_the_follower_with_the_notified_head(two: tuple[EventLog, EventLog]) -> None:
    a, b = two
    heads: list[int | None] = []
    real = b._catch_up

    def catch_up(head: int | None = None, mine: Any = None) -> None:
        heads.append(head)
        real(head, mine)

    b._catch_up = catch_up  # type: ignore[method-assign]
    b.start()
    until(lambda: b._listener.live, timeout=20)
    sent = a.emit("x.y").sequence
    until(lambda: sent in heads and b.delivered_sequence == sent, timeout=20)


def test_a_stopped_listener_no_longer_wakes_its_caller(pg_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    """Once stopped, the listener calls nothing more (its caller may have closed the database since: a
    catch-up then would fail and log an error at every shutdown)."""
    from voltorch_server.storage.postgres import PgDatabase

    db = PgDatabase(pg_dsn)
    closed = threading.Event()
    calls: list[int | None] = []

    def wake(head: int | None) -> None:
        if closed.is_set():
            raise RuntimeError("the database is closed")
        calls.append(head)

    listener = db.listen(["voltorch_test"], wake, idle=0.05)
    try:
        until(lambda: listener.live and len(calls) >= 2, timeout=20)  # woken every idle period
        listener.stop()
        closed.set()
        listener._thread.join(10)
        assert not listener._thread.is_alive()
        assert not [r for r in caplog.records if "notification failed" in r.getMessage()]
    finally:
        db.close()
