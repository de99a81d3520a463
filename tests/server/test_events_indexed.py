"""SQLite: lookups by correlation or trace id use their partial indexes (`WHERE column != ''`) instead
of scanning the whole log, which made every watch that re-reads an execution grow with the log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from voltorch_server.components.events import EventFilter, EventLog, NewEvent
from voltorch_server.storage import Database
from voltorch_server.storage.stores import SqlEvents

UNRELATED = 5000
STEP = 100  # the progress handler runs every STEP virtual-machine instructions
MINE = "f" * 32


def _parent(trace_id: str) -> str:
    return f"00-{trace_id}-{'b' * 16}-01"


@pytest.fixture
def store(db: Database) -> Iterator[SqlEvents]:
    events = SqlEvents(db)
    log = EventLog(events)
    news = [
        NewEvent("x.y", correlation_id=f"other-{i}", traceparent=_parent(f"{i + 1:032x}"))
        for i in range(UNRELATED)
    ]
    log.publish(*news, *[NewEvent("x.y", correlation_id="mine", traceparent=_parent(MINE)) for _ in range(3)])
    yield events
    log.stop()


def _work(db: Database, read: Callable[[], Any]) -> tuple[Any, int]:
    """What `read` returns and how many instruction blocks SQLite ran for it on this thread's reader."""
    ticks = [0]

    def tick() -> int:
        ticks[0] += 1
        return 0

    conn = db.read()
    conn.set_progress_handler(tick, STEP)
    try:
        return read(), ticks[0]
    finally:
        conn.set_progress_handler(None, STEP)


def test_a_correlation_lookup_reads_the_index_not_the_log(store: SqlEvents) -> None:
    found, ticks = _work(store.db, lambda: store.of_correlation("mine", 10))
    assert len(found) == 3
    _, scan = _work(store.db, lambda: store.db.query("SELECT count(*) FROM events WHERE data != 'x'"))
    assert ticks < scan // 20


@pytest.mark.parametrize("flt", [EventFilter(correlation_id="mine"), EventFilter(trace_id=MINE)])
def test_a_filtered_replay_reads_the_index_not_the_log(store: SqlEvents, flt: EventFilter) -> None:
    def replay() -> Any:
        return store.matching_after(store.db.read(), 0, flt, 100)

    found, ticks = _work(store.db, replay)
    assert len(found) == 3
    _, scan = _work(store.db, lambda: store.db.query("SELECT count(*) FROM events WHERE data != 'x'"))
    assert ticks < scan // 20


def test_carrying_reads_the_indexes_not_the_log(store: SqlEvents) -> None:
    found, ticks = _work(store.db, lambda: store.carrying({MINE}, {"mine"}, 100))
    assert len(found) == 3
    _, scan = _work(store.db, lambda: store.db.query("SELECT count(*) FROM events WHERE data != 'x'"))
    assert ticks < scan // 20
