"""Publish on PostgreSQL in few round trips: a batch is appended by one statement once the events counter
is locked, and a replica's follower reads only for commits it has not delivered yet (a NOTIFY's head
tells it; its own commits it delivers without a read)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from polling import until
from voltorch_server.components.events import EventLog, NewEvent
from voltorch_server.storage import open_database
from voltorch_server.storage.postgres import PgTx
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


def test_a_publish_batch_is_one_statement_after_the_counter_lock(
    two: tuple[EventLog, EventLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = two
    a.emit("warm.up")  # the first write of a connection may read the catalog
    statements: list[str] = []
    real = PgTx.execute

    def execute(self: PgTx, sql: str, params: Any = ()) -> Any:
        statements.append(sql)
        return real(self, sql, params)

    monkeypatch.setattr(PgTx, "execute", execute)
    receipts = a.publish_batch([NewEvent("x.y", data={"i": i}, source="s") for i in range(20)])
    assert len(statements) == 2, statements  # the lock, then the append (rows, counter and NOTIFY)
    assert "FOR UPDATE" in statements[0]
    assert [r.sequence for r in receipts] == list(range(2, 22))
    assert a.last_sequence() == 21
    stored = a.store.after(1, 100)
    assert stored == [r.event for r in receipts]  # what the caller got is what was written
    assert all(e.time >= receipts[0].event.time == receipts[-1].event.time for e in stored)
    statements.clear()
    one = a.publish_one(NewEvent("x.y"))  # group-committed: the lock travels with BEGIN
    assert len(statements) == 1 and "unnest" in statements[0], statements
    assert one.sequence == 22 and a.last_sequence() == 22


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
